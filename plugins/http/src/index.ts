/**
 * @mega/http: the Fastify 5 server. Loads each app's route files, passes every route definition
 * through the kernel `route` hook, runs the middleware pipeline around controllers
 * `(req, reply, ctx)`, wraps results in the response envelope and maps errors to
 * `{ error: { code, message, details? } }` with the MegaError's status.
 */

import type { App, Kernel } from '@mega/kernel';
import { definePlugin, packageVersion } from '@mega/kernel';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { HttpConfig } from './config.js';
import { configSchema } from './config.js';
import { HttpServer } from './server.js';

export type { HttpConfig } from './config.js';
export { DEFAULT_MAX_VALIDATION_DETAILS } from './config.js';
export type { ErrorBody, ValidationDetail } from './errors.js';
export { mapError } from './errors.js';
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
  Transform,
} from './router.js';
export type { MiddlewarePhase, UseOptions } from './server.js';
export { HttpServer } from './server.js';
export type { UploadedFile, UploadStorage } from './uploads.js';
export { normalizeHost } from './vhost.js';

declare module '@mega/kernel' {
  interface MegaServices {
    http: HttpServer;
  }
  interface MegaConfig {
    http?: HttpConfig;
  }
  interface MegaContext {
    /** The Fastify reply of an HTTP request (undefined for other transports). */
    readonly reply: FastifyReply | undefined;
  }
}

/** Boot stages of @mega/http: other plugins add middleware and routes before 500 / 900. */
export const HTTP_STAGES = { create: 0, loadRoutes: 500, freeze: 900, listen: 1000 } as const;

export default definePlugin<HttpConfig>({
  name: '@mega/http',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  configKey: 'http',
  configScope: 'global',
  configSchema,
  setup(kernel: Kernel, config: HttpConfig) {
    const server = new HttpServer(kernel, config);
    kernel.provide('http', server, '@mega/http');
    kernel.contributeCtx('reply', (ctx) => (ctx.source as FastifyRequest | undefined)?.megaReply ?? undefined, '@mega/http');
    kernel.hooks.boot.tapPromise({ name: '@mega/http', stage: HTTP_STAGES.create }, () => server.create());
    // Route files load after every plugin's stage-0 boot taps (router extensions, global middleware).
    kernel.hooks.boot.tapPromise({ name: '@mega/http', stage: HTTP_STAGES.loadRoutes }, async () => {
      for (const app of kernel.apps as App[]) await server.loadRoutes(app);
    });
    kernel.hooks.boot.tapPromise({ name: '@mega/http', stage: HTTP_STAGES.freeze }, async () => server.freeze());
    // Stage 1000: listen only after every other plugin's boot taps added their routes.
    kernel.hooks.boot.tapPromise({ name: '@mega/http', stage: HTTP_STAGES.listen }, () => server.listen());
    kernel.hooks.shutdown.tapPromise('@mega/http', () => server.close());
  },
});
