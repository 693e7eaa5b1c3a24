/**
 * @mega/bus: `ctx.bus` per app (memory, NATS or cluster transport) and the owner of every NATS
 * connection of the project (service `nats`: other plugins get `api.use('nats').connection(alias)`
 * and never open their own).
 */
import type { MegaTracer } from '@mega/adapters';
import { AdapterSet, pickAlias } from '@mega/adapters';
import type { ConfigInput, Static } from '@mega/kernel';
import { ConfigError, definePlugin, packageVersion, Type } from '@mega/kernel';
import type { NatsConnection } from '@nats-io/transport-node';
import { Bus } from './bus.js';
import { ClusterTransport, inCluster } from './drivers/cluster.js';
import { MemoryTransport } from './drivers/memory.js';
import { NatsTransport } from './drivers/nats.js';
import type { NatsOutbox, OutboxOptions } from './outbox.js';
import { createBusRelay } from './primary.js';
import type { Transport } from './transport.js';

export type { LatencySnapshot, OpStatsSnapshot } from '@mega/adapters';
export type { BusStats, Handler, MessageMeta, RequestOptions } from './bus.js';
export { Bus } from './bus.js';
export type { BusWire } from './drivers/cluster.js';
export { NatsDeclaration } from './drivers/nats.js';
export type { OutboxOptions, OutboxStats } from './outbox.js';
export { DEFAULT_OUTBOX_BYTES, DEFAULT_OUTBOX_MESSAGES, NatsOutbox } from './outbox.js';
export { BUS_CHANNEL, createBusRelay } from './primary.js';
export { matches } from './subjects.js';

/** The NATS connections of the project, for other plugins (service `nats`). */
export interface NatsConnections {
  readonly aliases: string[];
  /** The NATS connection of services.buses.<alias> once connected (owned by @mega/bus: never close/drain it). */
  connection(alias?: string): Promise<NatsConnection>;
  url(alias?: string): string; // redacted
  /**
   * A publisher on the alias's connection that loses nothing it accepted across a reconnect: see
   * `NatsOutbox` (bounded buffer while down, in-order re-send after the reconnect, confirmation by
   * the server). Resolves once connected; close it at shutdown.
   */
  outbox(alias: string | undefined, options: Omit<OutboxOptions, 'label'> & { label?: string }): Promise<NatsOutbox>;
}

/** `bus` in apps/<name>/app.config.ts. */
export const BusAppConfig = Type.Object({
  bus: Type.Object(
    {
      /** Default: nats when `service` is set or `services.buses` declares an alias, else cluster inside `--workers`, else memory. */
      driver: Type.Optional(Type.Union([Type.Literal('memory'), Type.Literal('nats'), Type.Literal('cluster')])),
      /** The `services.buses` alias (nats). Default: `default`, or the only one. */
      service: Type.Optional(Type.String({ minLength: 1 })),
      /** Subject prefix of this app. Default `<app name>.`. */
      prefix: Type.Optional(Type.String({ pattern: '^([^\\s.*>]+\\.)*$' })),
      /** Default request timeout (ms). */
      requestTimeoutMs: Type.Integer({ minimum: 1, default: 5000 }),
    },
    { additionalProperties: false, default: {} },
  ),
});
export type BusConfig = Static<typeof BusAppConfig>['bus'];

declare module '@mega/kernel' {
  /** This plugin's keys of app.config.ts (see the README's config table). */
  interface AppConfig {
    bus?: ConfigInput<typeof BusAppConfig>['bus'];
  }
  interface MegaContext {
    /** This app's bus. */
    readonly bus: Bus;
  }
  interface AppExtensions {
    readonly bus: Bus;
  }
  interface MegaServices {
    nats: NatsConnections;
  }
}

export default definePlugin({
  name: '@mega/bus',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  config: { app: BusAppConfig },
  drivers: { buses: ['nats'] },
  primary: createBusRelay,
  // @mega/tracing (optional) first: publish, handle and request are traced when its service is there.
  after: ['@mega/tracing'],
  setup(api) {
    const tracer = api.has('tracing') ? api.use<MegaTracer>('tracing') : undefined;
    const nats = new AdapterSet<NatsTransport>({ kind: 'buses', preferred: 'default', label: 'bus' })
      .addDeclared(api, (alias, declaration) => new NatsTransport(alias, declaration, api.log, { traced: tracer !== undefined }))
      .attach(api);
    api.provide('nats', {
      get aliases() {
        return nats.aliases;
      },
      connection: (alias) => nats.get(alias).connection(),
      url: (alias) => nats.get(alias).url,
      outbox: (alias, options) => nats.get(alias).outbox(options),
    } satisfies NatsConnections);

    let memory: MemoryTransport | undefined;
    let cluster: ClusterTransport | undefined;
    const buses = new Map<string, Bus>();
    for (const app of api.kernel.apps) {
      const config = api.appConfig(app).bus;
      const driver = config.driver ?? (config.service || nats.size > 0 ? 'nats' : inCluster() ? 'cluster' : 'memory');
      let transport: Transport;
      let service: string = driver;
      if (driver === 'nats') {
        service = pickAlias('buses', nats.aliases, config.service, 'default');
        transport = nats.get(service);
      } else if (config.service) {
        throw new ConfigError('config.invalid', `app ${app.name}: bus.service is only for the nats driver (driver is "${driver}")`, {
          details: { app: app.name, driver, service: config.service },
        });
      } else if (driver === 'cluster') {
        cluster ??= new ClusterTransport();
        cluster.attach();
        transport = cluster;
      } else transport = memory ??= new MemoryTransport();
      const prefix = config.prefix ?? `${app.name}.`;
      buses.set(app.name, new Bus(transport, { prefix, service, log: app.log, requestTimeoutMs: config.requestTimeoutMs, tracer }));
    }
    const clusterTransport = cluster;
    if (clusterTransport) api.health('bus:cluster', () => clusterTransport.check());
    api.onShutdown(async () => {
      await Promise.all([memory?.close(), clusterTransport?.close()]);
    });
    api.contributeCtx('bus', (ctx) => buses.get(ctx.app.name) as Bus);
    api.contributeApp('bus', (app) => buses.get(app.name));
  },
});
