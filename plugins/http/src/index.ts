/**
 * @mega/http: the Fastify 5 server. Loads each app's route files, passes every route definition
 * through the kernel `route` hook, runs the middleware pipeline around controllers
 * `(req, reply, ctx)`, wraps results in the response envelope and maps errors to
 * `{ error: { code, message, details? } }` with the MegaError's status.
 */

import type { ConfigInput } from '@mega/kernel';
import { definePlugin, packageVersion } from '@mega/kernel';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { HttpAppConfig, HttpGlobalConfig } from './config.js';
import { controllerGenerator, routeGenerator } from './generators.js';
import { HttpServer } from './server.js';

export type { HttpAppKeys, HttpConfig } from './config.js';
export { HttpAppConfig, HttpConfigSchema, HttpGlobalConfig } from './config.js';
export type { ErrorBody, ValidationDetail } from './errors.js';
export { mapError } from './errors.js';
export type { HeaderSet } from './headers.js';
export { DEFAULT_MAX_JSON_DEPTH, parseJson } from './json.js';
export { ENVELOPED, envelope } from './pipeline.js';
export type {
  After,
  AppMiddleware,
  Handler,
  HttpMethods,
  HttpRouteOptions,
  Middleware,
  Router,
  RouterExtension,
  Send,
  Transform,
} from './router.js';
export type { MiddlewarePhase, RouteFileMiddleware, UseOptions } from './server.js';
export { HttpServer, noStore } from './server.js';
export type { UploadedFile, UploadStorage } from './uploads.js';
export { normalizeHost } from './vhost.js';

declare module '@mega/kernel' {
  /** This plugin's keys of mega.config.ts (see the README's config table). */
  interface MegaConfig {
    http?: ConfigInput<typeof HttpGlobalConfig>['http'];
  }
  /** This plugin's keys of app.config.ts (see the README's config table). */
  interface AppConfig {
    routesDir?: ConfigInput<typeof HttpAppConfig>['routesDir'];
  }
  interface MegaServices {
    http: HttpServer;
  }
  interface MegaContext {
    /** The Fastify reply of an HTTP request (undefined for other transports). */
    readonly reply: FastifyReply | undefined;
  }
}

/** Boot stages of @mega/http: other plugins add middleware and routes before 500 / 900. */
export const HTTP_STAGES = { create: 0, loadRoutes: 500, freeze: 900, listen: 1000 } as const;

export default definePlugin({
  name: '@mega/http',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  config: { global: HttpGlobalConfig, app: HttpAppConfig },
  generators: { controller: controllerGenerator, route: routeGenerator },
  setup(api, config) {
    const { kernel } = api;
    const server = new HttpServer(kernel, config.http, (app) => api.appConfig(app));
    api.provide('http', server);
    api.contributeCtx('reply', (ctx) => (ctx.source as FastifyRequest | undefined)?.megaReply ?? undefined);
    api.tap('boot', () => server.create(), { stage: HTTP_STAGES.create });
    // Route files load after every plugin's stage-0 boot taps (router extensions, global middleware).
    api.tap(
      'boot',
      async () => {
        for (const app of kernel.apps) await server.loadRoutes(app);
      },
      { stage: HTTP_STAGES.loadRoutes },
    );
    api.tap('boot', () => server.freeze(), { stage: HTTP_STAGES.freeze });
    // Stage 1000: listen only after every other plugin's boot taps added their routes.
    // Processes that serve no traffic (`mega worker`, `mega scheduler`) build routes but never listen.
    api.tap('boot', () => (kernel.serving ? server.listen() : undefined), { stage: HTTP_STAGES.listen });
    api.onShutdown(() => server.close());
  },
});
