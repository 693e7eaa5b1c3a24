/**
 * @mega/views: server-rendered HTML with Eta templates from `apps/<app>/views` (`.eta`).
 * `return ctx.render('users/list', { users })` renders the template (with the app's default layout,
 * if configured, or the one the template asks for with `<% layout('layouts/main') %>`) and answers
 * `text/html`. Templates see their data as `it`, plus `it.t(key, vars)` when @mega/i18n is installed
 * and `it.csrfToken()` when @mega/security is.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
// Brings the http plugin's ctx members (ctx.reply) into scope.
import type {} from '@mega/http';
import type { ConfigInput, Static } from '@mega/kernel';
import { definePlugin, MegaError, packageVersion, Type } from '@mega/kernel';
import { Eta } from 'eta';

/** The app key `views` of apps/<name>/app.config.ts: the one source of its type and defaults. */
export const ViewsAppConfig = Type.Object({
  views: Type.Object(
    {
      /** Templates directory, relative to the app. */
      dir: Type.String({ minLength: 1, default: 'views' }),
      /** Layout wrapped around every render unless `render(..., { layout: false })`; the page is `it.body` in it. */
      layout: Type.Optional(Type.String({ minLength: 1 })),
      /** Cache compiled templates; unset: on in production (it depends on the environment, so it has no static default). */
      cache: Type.Optional(Type.Boolean()),
    },
    { additionalProperties: false, default: {} },
  ),
});

export type ViewsConfig = Static<typeof ViewsAppConfig>['views'];

export interface RenderOptions {
  /** Layout for this render; `false` for none. */
  layout?: string | false;
  status?: number;
}

declare module '@mega/kernel' {
  /** This plugin's keys of app.config.ts (see the README's config table). */
  interface AppConfig {
    views?: ConfigInput<typeof ViewsAppConfig>['views'];
  }
  interface MegaContext {
    /** Renders a template to HTML and sets the reply's content type; return the result from the controller. */
    render(template: string, data?: Record<string, unknown>, options?: RenderOptions): string;
  }
}

export default definePlugin({
  name: '@mega/views',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/http'],
  config: { app: ViewsAppConfig },
  setup(api) {
    const engines = new Map<string, { eta: Eta; layout: string | undefined }>();
    for (const app of api.kernel.apps) {
      const config = api.appConfig(app).views;
      const views = join(app.dir, config.dir);
      engines.set(app.name, {
        eta: new Eta({ views, cache: config.cache ?? api.kernel.env === 'production', autoEscape: true, defaultExtension: '.eta' }),
        layout: config.layout,
      });
      if (!existsSync(views)) api.log.debug({ app: app.name, views }, 'views: no views directory');
    }
    api.contributeCtx('render', (ctx) => (template: string, data: Record<string, unknown> = {}, options: RenderOptions = {}): string => {
      const engine = engines.get(ctx.app.name);
      if (!engine) throw new MegaError('views.unavailable', `no views for app ${ctx.app.name}`);
      const it: Record<string, unknown> = { ...data };
      if ('t' in ctx && it.t === undefined)
        it.t = (key: string, vars?: Record<string, unknown>) => (ctx as unknown as { t: (k: string, v?: unknown) => string }).t(key, vars);
      if ('csrfToken' in ctx && it.csrfToken === undefined)
        it.csrfToken = () => (ctx as unknown as { csrfToken: () => string }).csrfToken();
      let html: string;
      try {
        html = engine.eta.render(template, it);
        const layout = options.layout === undefined ? engine.layout : options.layout;
        if (layout) html = engine.eta.render(layout, { ...it, body: html });
      } catch (error) {
        const message = (error as Error).message ?? String(error);
        const missing = /not in the views directory|ENOENT|Could not find|does not exist/i.test(message);
        throw new MegaError(missing ? 'views.not_found' : 'views.render_failed', `render ${template} (app ${ctx.app.name}): ${message}`, {
          cause: error,
          status: 500,
        });
      }
      const reply = ctx.reply;
      if (reply) {
        reply.type('text/html; charset=utf-8');
        if (options.status) reply.code(options.status);
      }
      return html;
    });
  },
});
