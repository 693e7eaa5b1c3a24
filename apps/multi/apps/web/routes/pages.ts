import type { Router } from '@mega/http';
import { WebController } from '../controllers/web.js';

export default (router: Router) => {
  router.http.get('/', WebController.home);
  router.http.get('/whoami', WebController.whoami);
  router.http.get('/cross', WebController.cross);
  router.http.post('/feedback', WebController.feedback, {
    schema: { body: { type: 'object', required: ['text'], properties: { text: { type: 'string', maxLength: 500 } } } },
  });
};
