import type { Handler, Middleware } from '@mega/http';
import { AuthError, getApp } from '@mega/kernel';
import { adminPassword } from '../../../admin-password.js';

/** `before` middleware: the dashboard needs a logged-in admin. */
export const requireAdmin: Middleware = async (_req, _reply, ctx) => {
  if (!(await ctx.session.get('admin'))) throw new AuthError('auth.required', 'log in to the admin first');
};

export class AdminController {
  static loginForm: Handler = async (_req, _reply, ctx) => ctx.render('login', { title: ctx.t('login.title'), csrf: ctx.csrfToken() });

  /** Form post: CSRF token checked by @mega/security; the session id is regenerated (fixation). */
  static login: Handler = async (req, reply, ctx) => {
    const { user, password } = req.body as { user?: string; password?: string };
    if (user !== 'admin' || password !== adminPassword()) {
      throw new AuthError('auth.invalid_credentials', 'wrong user or password');
    }
    await ctx.session.regenerate();
    await ctx.session.set('admin', user);
    return reply.redirect('/dashboard', 303);
  };

  static dashboard: Handler = async (_req, _reply, ctx) =>
    ctx.render('dashboard', { title: ctx.t('dashboard.title'), user: await ctx.session.get('admin'), web: getApp('web').hosts });

  static whoami: Handler = async (_req, _reply, ctx) => ({
    app: ctx.app.name,
    hosts: ctx.app.hosts,
    locale: ctx.locale,
    greeting: ctx.t('greeting', { name: 'admin' }),
  });
}
