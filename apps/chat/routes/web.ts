import type { Router } from '@mega/http';
import { AuthController } from '../controllers/auth.js';

// Sign-up and login forms: a field that is not a short string is a 400 before the controller runs.
const credentials = {
  body: {
    type: 'object',
    properties: { name: { type: 'string', maxLength: 64 }, password: { type: 'string', maxLength: 200 }, _csrf: { type: 'string' } },
  },
};

export default (router: Router) => {
  router.http.get('/', AuthController.home);
  router.http.post('/register', AuthController.register, { schema: credentials });
  router.http.post('/login', AuthController.login, { schema: credentials });
  router.http.post('/logout', AuthController.logout);
  router.http.get('/chat', AuthController.chat);
  router.http.get('/api/me', AuthController.me);
  router.http.get('/asp-client.js', AuthController.clientJs);
};
