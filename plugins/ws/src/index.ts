import type { HttpServer } from '@mega/http';
import { HTTP_STAGES } from '@mega/http';
import type { Kernel } from '@mega/kernel';
import { definePlugin, packageVersion } from '@mega/kernel';
import type { WsConfig } from './config.js';
import { configSchema } from './config.js';
import { WsServer } from './server.js';
import type { BeforeUpgrade, ChannelClass, WsRouteMethod, WsRouteOptions } from './types.js';

export type { WsConfig } from './config.js';
export type { OutboundTransform, Runtime, WsInboundFrame } from './connection.js';
export { CloseCode, ReadyState, WsConnection } from './connection.js';
export type { Agreement, CompressionOptions } from './deflate.js';
export { COMPRESSION_DEFAULTS, negotiateDeflate } from './deflate.js';
export { buildFrame, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT } from './frame.js';
export type { ExtensionOffer } from './handshake.js';
export { acceptKey, negotiateProtocol, parseExtensions, SUPPORTED_VERSIONS } from './handshake.js';
export { PreparedMessage } from './prepared.js';
export type { FrameSink } from './receiver.js';
export { FrameReader } from './receiver.js';
export type { CompiledRoute } from './route.js';
export { DOTTED_TYPE } from './route.js';
export type { CloseListener, ConnectionFilter, OpenListener } from './server.js';
export { WsServer } from './server.js';
export type * from './types.js';

declare module '@mega/kernel' {
  interface MegaServices {
    ws: WsServer;
  }
  interface MegaConfig {
    ws?: WsConfig;
  }
  interface MegaContext {
    /** WS: what the route's `before` returned (an own property of each WS ctx). */
    readonly auth: unknown;
  }
}

declare module '@mega/http' {
  interface Router {
    readonly ws: WsRouteMethod;
  }
}

const NAME = '@mega/ws';

export default definePlugin<WsConfig>({
  name: NAME,
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/http'],
  configKey: 'ws',
  configScope: 'global',
  configSchema,
  setup(kernel: Kernel, config: WsConfig) {
    const http = kernel.use<HttpServer>('http');
    const server = new WsServer(kernel, config ?? {}, http);
    kernel.provide('ws', server, NAME);
    http.extendRouter('ws', (_app, add) => {
      const ws: WsRouteMethod = (path: string, channel: ChannelClass, options: WsRouteOptions = {}) => {
        // `before` becomes a list so `route` taps can append to it.
        const before: BeforeUpgrade[] =
          options.before === undefined ? [] : Array.isArray(options.before) ? [...options.before] : [options.before as BeforeUpgrade];
        add({ kind: 'ws', method: 'GET', path, handler: channel, options: { ...options, before } });
      };
      return ws;
    });
    // After @mega/http loaded the route files (and froze its routes), before it listens.
    kernel.hooks.boot.tapPromise({ name: NAME, stage: HTTP_STAGES.freeze + 50 }, async () => {
      server.compile(http.routes.filter((r) => r.kind === 'ws'));
      server.attach(http.fastify.server);
    });
    kernel.hooks.shutdown.tapPromise(NAME, () => server.close());
  },
  configure(project) {
    project.log("Declare channels in a route file: router.ws('/ws/chat', ChatChannel, { schemas: {...} })");
  },
});
