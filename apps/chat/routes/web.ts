import type { Router } from '@mega/http';
import { AuthController } from '../controllers/auth.js';

export default (router: Router) => {
  router.http.get('/', AuthController.home);
  router.http.post('/register', AuthController.register);
  router.http.post('/login', AuthController.login);
  router.http.post('/logout', AuthController.logout);
  router.http.get('/chat', AuthController.chat);
  router.http.get('/api/me', AuthController.me);
  router.http.get('/asp-client.js', AuthController.clientJs);
};
