import type { Router } from '@mega/http';
import { AdminController, requireAdmin } from '../controllers/admin.js';

export default (router: Router) => {
  router.http.get('/', AdminController.loginForm);
  router.http.post('/login', AdminController.login, {
    schema: {
      body: { type: 'object', required: ['user', 'password'], properties: { user: { type: 'string' }, password: { type: 'string' } } },
    },
  });
  router.http.get('/dashboard', AdminController.dashboard, { before: [requireAdmin] });
  router.http.get('/whoami', AdminController.whoami);
};
