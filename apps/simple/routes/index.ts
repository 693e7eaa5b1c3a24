import type { Router } from '@mega/http';
import { HelloController } from '../controllers/hello.js';

export default (router: Router) => {
  router.http.get('/', HelloController.home);
  router.http.get('/hello/:name', HelloController.greet);
  router.http.post('/echo', HelloController.echo, {
    schema: { body: { type: 'object' } },
  });
};
