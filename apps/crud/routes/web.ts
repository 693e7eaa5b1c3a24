import type { Router } from '@mega/http';
import { PagesController } from '../controllers/pages.js';
import { LoginForm, RegisterForm } from '../lib/schemas.js';

export default (router: Router) => {
  router.http.get('/', PagesController.home);
  router.http.post('/register', PagesController.register, { schema: { body: RegisterForm } });
  router.http.post('/login', PagesController.login, { schema: { body: LoginForm } });
  router.http.post('/logout', PagesController.logout);
  router.http.get('/app', PagesController.app);
  router.http.get('/asp-client.js', PagesController.clientJs);
};
