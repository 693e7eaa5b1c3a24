/** Register, log in, log out (HTML forms with a CSRF token), the pages, and the key endpoint. */

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Handler } from '@mega/http';
import type { MegaContext } from '@mega/kernel';
import { AuthError } from '@mega/kernel';
import { chatPage, loginPage } from '../lib/html.js';
import { hashPassword, verifyPassword } from '../lib/passwords.js';
import { storeOf } from '../lib/store.js';

export interface SessionUser {
  id: string;
  name: string;
}

const NAME_RE = /^[\p{L}\p{N}_.-]{2,32}$/u;

const clientJs = readFileSync(createRequire(import.meta.url).resolve('@mega/asp/client'), 'utf8').replace(
  /\/\/# sourceMappingURL=.*$/m,
  '',
);

export async function currentUser(ctx: MegaContext): Promise<SessionUser | undefined> {
  return ctx.session.get<SessionUser>('user');
}

/** WS `before`: only logged-in sessions may open /ws/chat. The result becomes ctx.auth. */
export async function requireUser(_req: unknown, ctx: MegaContext) {
  const user = await currentUser(ctx);
  const sessionId = ctx.session.id;
  if (!user || !sessionId) throw new AuthError('auth.required', 'log in to chat');
  return { userId: user.id, userName: user.name, sessionId };
}

function form(body: unknown): { name: string; password: string } {
  const b = (body ?? {}) as Record<string, unknown>;
  return { name: String(b.name ?? '').trim(), password: String(b.password ?? '') };
}

async function signIn(ctx: MegaContext, user: SessionUser): Promise<void> {
  await ctx.session.regenerate(); // a new id on login (session fixation)
  await ctx.session.set('user', user);
}

export const AuthController = {
  home: (async (_req, reply, ctx) => {
    if (await currentUser(ctx)) return reply.redirect('/chat', 303);
    return reply.type('text/html').send(loginPage(ctx.csrfToken()));
  }) satisfies Handler,

  register: (async (req, reply, ctx) => {
    const { name, password } = form(req.body);
    const fail = (status: number, message: string) =>
      reply
        .code(status)
        .type('text/html')
        .send(loginPage(ctx.csrfToken(), message, name));
    if (!NAME_RE.test(name)) return fail(400, 'Names are 2-32 letters, digits, _ . or -');
    if (password.length < 8 || password.length > 200) return fail(400, 'Passwords are 8 to 200 characters');
    const user = await storeOf(ctx.app).createUser(name, await hashPassword(password));
    if (!user) return fail(409, `The name ${name} is taken`);
    await signIn(ctx, { id: user.id, name: user.name });
    return reply.redirect('/chat', 303);
  }) satisfies Handler,

  login: (async (req, reply, ctx) => {
    const { name, password } = form(req.body);
    const user = await storeOf(ctx.app).findUser(name);
    if (!user || !(await verifyPassword(password, user.passwordHash))) {
      return reply
        .code(401)
        .type('text/html')
        .send(loginPage(ctx.csrfToken(), 'Wrong name or password', name));
    }
    await signIn(ctx, { id: user.id, name: user.name });
    return reply.redirect('/chat', 303);
  }) satisfies Handler,

  logout: (async (_req, reply, ctx) => {
    await ctx.session.destroy();
    return reply.redirect('/', 303);
  }) satisfies Handler,

  chat: (async (_req, reply, ctx) => {
    const user = await currentUser(ctx);
    if (!user) return reply.redirect('/', 303);
    return reply.type('text/html').send(chatPage(ctx.csrfToken(), user.name));
  }) satisfies Handler,

  /** The session's ASP key, handed over the HTTP session (never over the socket it protects). */
  me: (async (_req, _reply, ctx) => {
    const user = await currentUser(ctx);
    if (!user) throw new AuthError('auth.required', 'log in first');
    return { user, keys: { ws: (await ctx.asp.keys()).ws }, store: storeOf(ctx.app).kind };
  }) satisfies Handler,

  clientJs: (async (_req, reply) => reply.type('text/javascript').send(clientJs)) satisfies Handler,
};
