import type { Router } from '@mega/http';
import { ReportsController } from '../controllers/reports.js';

export default (router: Router) => {
  router.http.get('/reports', ReportsController.index);
  router.http.post('/reports', ReportsController.create, { schema: { body: { type: 'object' } } });
  router.http.get('/reports/:id', ReportsController.show);
};
