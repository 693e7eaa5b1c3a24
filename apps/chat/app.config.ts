import { defineAppConfig } from '@mega/kernel';

// No hosts: this app answers on any Host header. Secrets come from the environment (.env); in
// development each plugin falls back to a random one and says so.
export default defineAppConfig({
  session: { cookieName: 'chat_sid' },
  // /ws/chat is an encrypted namespace: every frame both ways is E: + base64url(sealed).
  asp: { websocket: { namespaces: ['/ws/chat'] } },
});
