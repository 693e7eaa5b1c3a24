import { HTTP_STAGES } from '@mega/http';
import type { ConfigInput } from '@mega/kernel';
import { definePlugin, packageVersion } from '@mega/kernel';
import { WsGlobalConfig } from './config.js';
import { channelGenerator } from './generators.js';
import { WsServer } from './server.js';
import type { BeforeUpgrade, ChannelClass, WsRouteMethod, WsRouteOptions } from './types.js';

export type { WsConfig } from './config.js';
export { WsConfigSchema, WsGlobalConfig } from './config.js';
export type { InboundTransform, OutboundTransform, Runtime, WsInboundFrame, WsTraffic } from './connection.js';
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
export { connectionOf, WsServer } from './server.js';
export type * from './types.js';

declare module '@mega/kernel' {
  /** This plugin's keys of mega.config.ts (see the README's config table). */
  interface MegaConfig {
    ws?: ConfigInput<typeof WsGlobalConfig>['ws'];
  }
  interface MegaServices {
    ws: WsServer;
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

export default definePlugin({
  name: '@mega/ws',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/http'],
  config: { global: WsGlobalConfig },
  generators: { channel: channelGenerator },
  setup(api, config) {
    const http = api.use('http');
    const server = new WsServer(api.kernel, config.ws, http);
    api.provide('ws', server);
    // router.ws: the one router extension. Its definitions pass the `route` hook like HTTP routes;
    // `serve` makes Fastify route each upgrade to server.upgrade behind the app's phases.
    http.extendRouter('ws', {
      router: (_app, add) => {
        const ws: WsRouteMethod = (path: string, channel: ChannelClass, options: WsRouteOptions = {}) => {
          // `before` becomes a list so `route` taps can append to it.
          const before: BeforeUpgrade[] =
            options.before === undefined ? [] : Array.isArray(options.before) ? [...options.before] : [options.before as BeforeUpgrade];
          add({ method: 'GET', path, handler: channel, options: { ...options, before } });
        };
        return ws;
      },
      serve: () => (req, reply, ctx) => server.upgrade(req, reply, ctx),
    });
    // After @mega/http loaded the route files (and froze its routes), before it listens.
    api.tap(
      'boot',
      () => {
        server.compile(http.routes.filter((r) => r.kind === 'ws'));
        server.attach(http.fastify.server);
      },
      { stage: HTTP_STAGES.freeze + 50 },
    );
    api.onShutdown(() => server.close());
  },
  configure(project) {
    project.log("Declare channels in a route file: router.ws('/ws/chat', ChatChannel, { schemas: {...} })");
  },
});
