import type { Router } from '@mega/http';
import type {} from '@mega/ws';
import { ChatChannel } from '../channels/chat.js';
import { requireChatUser } from '../controllers/pages.js';

export default (router: Router) => {
  router.ws('/ws/chat', ChatChannel, {
    before: requireChatUser,
    schemas: {
      'chat.send': {
        type: 'object',
        required: ['text'],
        additionalProperties: false,
        properties: { text: { type: 'string', minLength: 1, maxLength: 2000 } },
      },
    },
    compression: true,
  });
};
