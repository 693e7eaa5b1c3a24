/**
 * @mega/http: the Fastify 5 server. Loads each app's route files, passes every route definition
 * through the kernel `route` hook, wraps controllers `(req, reply, ctx)` with the response envelope
 * and maps errors to `{ error: { code, message, details? } }` with the MegaError's status.
 */

import { readFileSync } from 'node:fs';
import type { App, Kernel } from '@mega/kernel';
import { definePlugin } from '@mega/kernel';
import type { HttpConfig } from './config.js';
import { configSchema } from './config.js';
import { HttpServer } from './server.js';

export type { HttpConfig } from './config.js';
export type { Handler, HttpMethods, Router, RouterExtension } from './router.js';
export { HttpServer } from './server.js';

declare module '@mega/kernel' {
  interface MegaServices {
    http: HttpServer;
  }
  interface MegaConfig {
    http?: HttpConfig;
  }
}

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

export default definePlugin<HttpConfig>({
  name: '@mega/http',
  version: pkg.version,
  kernel: '^0.1.0',
  configKey: 'http',
  configScope: 'global',
  configSchema,
  setup(kernel: Kernel, config: HttpConfig) {
    const server = new HttpServer(kernel, config);
    kernel.provide('http', server, '@mega/http');
    kernel.hooks.boot.tapPromise('@mega/http', async () => {
      await server.create();
      for (const app of kernel.apps as App[]) await server.loadRoutes(app);
    });
    // Stage 1000: listen only after every other plugin's boot taps added their routes.
    kernel.hooks.boot.tapPromise({ name: '@mega/http', stage: 1000 }, () => server.listen());
    kernel.hooks.shutdown.tapPromise('@mega/http', () => server.close());
  },
});
