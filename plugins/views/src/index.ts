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
import type { Kernel, MegaContext } from '@mega/kernel';
import { definePlugin, MegaError, packageVersion } from '@mega/kernel';
import { Eta } from 'eta';

export interface ViewsConfig {
  /** Templates directory, relative to the app (default `views`). */
  dir?: string;
  /** Layout wrapped around every render unless `render(..., { layout: false })`; the page is `it.body` in it. */
  layout?: string;
  /** Cache compiled templates (default: on in production). */
  cache?: boolean;
}

export interface RenderOptions {
  /** Layout for this render; `false` for none. */
  layout?: string | false;
  status?: number;
}

declare module '@mega/kernel' {
  interface MegaContext {
    /** Renders a template to HTML and sets the reply's content type; return the result from the controller. */
    render(template: string, data?: Record<string, unknown>, options?: RenderOptions): string;
  }
}

export default definePlugin<undefined>({
  name: '@mega/views',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/http'],
  configKey: 'views',
  configScope: 'app',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      dir: { type: 'string', default: 'views' },
      layout: { type: 'string' },
      cache: { type: 'boolean' },
    },
  },
  setup(kernel: Kernel) {
    const engines = new Map<string, { eta: Eta; layout: string | undefined }>();
    for (const app of kernel.apps) {
      const config = kernel.appConfig<ViewsConfig>(app, 'views');
      const views = join(app.dir, config.dir ?? 'views');
      engines.set(app.name, {
        eta: new Eta({ views, cache: config.cache ?? kernel.env === 'production', autoEscape: true, defaultExtension: '.eta' }),
        layout: config.layout,
      });
      if (!existsSync(views)) kernel.log.debug({ app: app.name, views }, 'views: no views directory');
    }
    kernel.contributeCtx(
      'render',
      (ctx: MegaContext) =>
        (template: string, data: Record<string, unknown> = {}, options: RenderOptions = {}): string => {
          const engine = engines.get(ctx.app.name);
          if (!engine) throw new MegaError('views.unavailable', `no views for app ${ctx.app.name}`);
          const it: Record<string, unknown> = { ...data };
          if ('t' in ctx && it.t === undefined)
            it.t = (key: string, vars?: Record<string, unknown>) =>
              (ctx as unknown as { t: (k: string, v?: unknown) => string }).t(key, vars);
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
            throw new MegaError(
              missing ? 'views.not_found' : 'views.render_failed',
              `render ${template} (app ${ctx.app.name}): ${message}`,
              {
                cause: error,
                status: 500,
              },
            );
          }
          const reply = ctx.reply;
          if (reply) {
            reply.type('text/html; charset=utf-8');
            if (options.status) reply.code(options.status);
          }
          return html;
        },
      '@mega/views',
    );
  },
});
