import type { Router } from '@mega/http';
import { InfoController, NotesController, SessionController, UsersController } from '../controllers/api.js';
import { CreateNoteBody, IdParams, LoginBody, PageQuery, RegisterBody, UpdateMeBody, UpdateNoteBody } from '../lib/schemas.js';

export default (router: Router) => {
  const { http } = router;
  http.post('/api/users', SessionController.register, { schema: { body: RegisterBody } });
  http.post('/api/session', SessionController.login, { schema: { body: LoginBody } });
  http.delete('/api/session', SessionController.logout);
  // Hands out this session's ASP key and a CSRF token: never cached.
  http.get('/api/me', SessionController.me, { noStore: true });

  http.get('/api/users', UsersController.index, { schema: { querystring: PageQuery } });
  http.patch('/api/users/me', UsersController.updateMe, { schema: { body: UpdateMeBody } });
  http.delete('/api/users/me', UsersController.deleteMe);
  http.get('/api/users/:id', UsersController.show, { schema: { params: IdParams } });

  http.get('/api/notes', NotesController.index, { schema: { querystring: PageQuery } });
  http.post('/api/notes', NotesController.create, { schema: { body: CreateNoteBody } });
  http.get('/api/notes/:id', NotesController.show, { schema: { params: IdParams } });
  http.patch('/api/notes/:id', NotesController.update, { schema: { params: IdParams, body: UpdateNoteBody } });
  http.delete('/api/notes/:id', NotesController.destroy, { schema: { params: IdParams } });

  http.get('/api/outbox', InfoController.outbox);
  http.get('/api/digest', InfoController.digest);
};
