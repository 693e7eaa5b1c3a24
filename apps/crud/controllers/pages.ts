/** The HTML side: the sign-in page and its forms (CSRF token in a field), the app page, the ASP client. */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Handler } from '@mega/http';
import type { MegaContext } from '@mega/kernel';
import { AuthError, isMegaError } from '@mega/kernel';
import type { ChatAuth } from '../channels/chat.js';
import { authenticate, currentUser, register, signIn } from '../lib/accounts.js';
import { appPage, homePage } from '../lib/html.js';

const clientJs = readFileSync(createRequire(import.meta.url).resolve('@mega/asp/client'), 'utf8').replace(
  /\/\/# sourceMappingURL=.*$/m,
  '',
);

/** WS `before`: only signed-in sessions open /ws/chat; the result becomes ctx.auth. */
export async function requireChatUser(_req: unknown, ctx: MegaContext): Promise<ChatAuth> {
  const user = await currentUser(ctx);
  const sessionId = ctx.session.id;
  if (!user || !sessionId) throw new AuthError('auth.required', 'log in to chat');
  return { userId: String(user.id), userName: user.name, sessionId };
}

interface Form {
  email?: string;
  name?: string;
  password?: string;
}

export const PagesController = {
  home: (async (_req, reply, ctx) => {
    if (await currentUser(ctx)) return reply.redirect('/app', 303);
    return reply.type('text/html').send(homePage(ctx.csrfToken()));
  }) satisfies Handler,

  register: (async (req, reply, ctx) => {
    const body = req.body as Form;
    try {
      const user = await register(ctx, { email: body.email ?? '', name: body.name ?? '', password: body.password ?? '' });
      await signIn(ctx, user);
      return reply.redirect('/app', 303);
    } catch (error) {
      if (!isMegaError(error) || error.status >= 500) throw error;
      return reply
        .code(error.status)
        .type('text/html')
        .send(homePage(ctx.csrfToken(), { error: error.message, email: body.email ?? '', name: body.name ?? '' }));
    }
  }) satisfies Handler,

  login: (async (req, reply, ctx) => {
    const body = req.body as Form;
    try {
      await signIn(ctx, await authenticate(ctx, body.email ?? '', body.password ?? ''));
      return reply.redirect('/app', 303);
    } catch (error) {
      if (!isMegaError(error) || error.status >= 500) throw error;
      return reply
        .code(error.status)
        .type('text/html')
        .send(homePage(ctx.csrfToken(), { error: error.message, email: body.email ?? '' }));
    }
  }) satisfies Handler,

  logout: (async (_req, reply, ctx) => {
    await ctx.session.destroy();
    return reply.redirect('/', 303);
  }) satisfies Handler,

  app: (async (_req, reply, ctx) => {
    const user = await currentUser(ctx);
    if (!user) return reply.redirect('/', 303);
    return reply.type('text/html').send(appPage(ctx.csrfToken(), user.name));
  }) satisfies Handler,

  clientJs: (async (_req, reply) => reply.type('text/javascript').send(clientJs)) satisfies Handler,
};
