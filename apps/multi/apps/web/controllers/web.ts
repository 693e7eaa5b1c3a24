import type { Handler } from '@mega/http';
import { getApp } from '@mega/kernel';

export class WebController {
  static home: Handler = async (_req, _reply, ctx) => {
    const visits = ((await ctx.session.get<number>('visits')) ?? 0) + 1;
    await ctx.session.set('visits', visits);
    return ctx.render('index', { title: ctx.t('home.title'), visits, locale: ctx.locale });
  };

  /** JSON: which app answered, and its per-app settings. */
  static whoami: Handler = async (_req, _reply, ctx) => ({
    app: ctx.app.name,
    hosts: ctx.app.hosts,
    locale: ctx.locale,
    greeting: ctx.t('home.greeting', { name: 'web' }),
  });

  /** Code without a ctx reaches another app by name. */
  static cross: Handler = async () => {
    const admin = getApp('admin');
    return { from: 'web', other: admin.name, otherHosts: admin.hosts };
  };

  /** A JSON write: needs an Origin in this app's hosts (or a CORS-allowed origin). */
  static feedback: Handler = async (req) => ({ received: (req.body as { text?: string }).text ?? '' });
}
