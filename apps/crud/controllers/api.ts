/** The JSON API: accounts and the session, users, the caller's notes, the outbox and the digest. */
import type { Handler } from '@mega/http';
import { NotFoundError } from '@mega/kernel';
import { authenticate, publicUser, register, requireUser, signIn } from '../lib/accounts.js';
import { lastDigest } from '../lib/digest.js';
import { historyOf } from '../lib/history.js';
import { outboxOf } from '../lib/outbox.js';
import { hashPassword } from '../lib/passwords.js';
import type { CreateNoteBody, IdParams, LoginBody, PageQuery, RegisterBody, UpdateMeBody, UpdateNoteBody } from '../lib/schemas.js';

export const SessionController = {
  /** POST /api/users: sign up (and sign in); a welcome mail is queued. 409 `users.email_taken`. */
  register: (async (req, reply, ctx) => {
    const user = await register(ctx, req.body as RegisterBody);
    await signIn(ctx, user);
    reply.code(201).header('location', `/api/users/${user.id}`);
    return publicUser(user);
  }) satisfies Handler,

  /** POST /api/session: sign in. 401 `auth.invalid_credentials`. */
  login: (async (req, _reply, ctx) => {
    const { email, password } = req.body as LoginBody;
    const user = await authenticate(ctx, email, password);
    await signIn(ctx, user);
    return publicUser(user);
  }) satisfies Handler,

  /** DELETE /api/session: sign out (needs the `x-csrf-token` header: there is no body). */
  logout: (async (_req, reply, ctx) => {
    await ctx.session.destroy();
    reply.code(204);
    return undefined;
  }) satisfies Handler,

  /** GET /api/me: who I am, a CSRF token for bodiless writes, and this session's ASP key for /ws/chat. */
  me: (async (_req, _reply, ctx) => {
    const me = await requireUser(ctx);
    const user = await ctx.models.User.findOrFail(me.id);
    return {
      user: publicUser(user),
      csrf: ctx.csrfToken(),
      keys: { ws: (await ctx.asp.keys()).ws },
      stores: { history: historyOf(ctx.app).kind, outbox: outboxOf(ctx.app).kind },
    };
  }) satisfies Handler,
};

export const UsersController = {
  /** GET /api/users?limit&cursor: everyone, oldest first, a page at a time. */
  index: (async (req, _reply, ctx) => {
    await requireUser(ctx);
    const { limit, cursor } = req.query as PageQuery;
    const page = await ctx.models.User.list({ limit, cursor: cursor ?? null });
    return { items: page.items.map(publicUser), nextCursor: page.nextCursor };
  }) satisfies Handler,

  show: (async (req, _reply, ctx) => {
    await requireUser(ctx);
    return publicUser(await ctx.models.User.findOrFail((req.params as IdParams).id));
  }) satisfies Handler,

  /** PATCH /api/users/me: change my name and/or password. */
  updateMe: (async (req, _reply, ctx) => {
    const me = await requireUser(ctx);
    const { name, password } = req.body as UpdateMeBody;
    const user = await ctx.models.User.update(me.id, {
      ...(name !== undefined ? { name: name.trim() } : {}),
      ...(password !== undefined ? { password_hash: await hashPassword(password) } : {}),
    });
    if (name !== undefined) await ctx.session.set('user', { id: user.id, name: user.name });
    return publicUser(user);
  }) satisfies Handler,

  /** DELETE /api/users/me: my account and (by the foreign key's cascade) my notes; signs out. */
  deleteMe: (async (_req, reply, ctx) => {
    const me = await requireUser(ctx);
    await ctx.models.User.delete(me.id);
    await ctx.session.destroy();
    reply.code(204);
    return undefined;
  }) satisfies Handler,
};

const noteNotFound = (id: number) => new NotFoundError('notes.not_found', `no note ${id} of yours`, { details: { id } });

export const NotesController = {
  /** GET /api/notes?limit&cursor: my notes, newest first; pages stay stable while notes are added. */
  index: (async (req, _reply, ctx) => {
    const me = await requireUser(ctx);
    const { limit, cursor } = req.query as PageQuery;
    return ctx.models.Note.list({ where: { user_id: me.id }, orderBy: { id: 'desc' }, limit, cursor: cursor ?? null });
  }) satisfies Handler,

  create: (async (req, reply, ctx) => {
    const me = await requireUser(ctx);
    const note = await ctx.models.Note.create({ ...(req.body as CreateNoteBody), user_id: me.id });
    reply.code(201).header('location', `/api/notes/${note.id}`);
    return note;
  }) satisfies Handler,

  /** Someone else's note is a 404, like one that does not exist: ids are not an oracle. */
  show: (async (req, _reply, ctx) => {
    const me = await requireUser(ctx);
    const { id } = req.params as IdParams;
    const note = await ctx.models.Note.findBy({ id, user_id: me.id });
    if (!note) throw noteNotFound(id);
    return note;
  }) satisfies Handler,

  update: (async (req, _reply, ctx) => {
    const me = await requireUser(ctx);
    const { id } = req.params as IdParams;
    // The owner is part of the where: checking and writing is one statement.
    const n = await ctx.models.Note.update({ id, user_id: me.id }, req.body as UpdateNoteBody);
    if (n === 0) throw noteNotFound(id);
    return ctx.models.Note.findOrFail(id);
  }) satisfies Handler,

  destroy: (async (req, reply, ctx) => {
    const me = await requireUser(ctx);
    const { id } = req.params as IdParams;
    if ((await ctx.models.Note.delete({ id, user_id: me.id })) === 0) throw noteNotFound(id);
    reply.code(204);
    return undefined;
  }) satisfies Handler,
};

export const InfoController = {
  /** GET /api/outbox: the mails queued for me (the welcome mail job's work). */
  outbox: (async (_req, _reply, ctx) => {
    const me = await requireUser(ctx);
    const mails = await outboxOf(ctx.app).list(me.id);
    return { store: outboxOf(ctx.app).kind, items: mails.map(({ _id, ...m }) => ({ id: _id, ...m })) };
  }) satisfies Handler,

  /** GET /api/digest: what the Digest schedule last counted in this process (null before its first tick). */
  digest: (async () => ({ digest: lastDigest() ?? null })) satisfies Handler,
};
