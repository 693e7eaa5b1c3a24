import type { App, HealthCheck, Kernel } from '@mega/kernel';
import { ConfigError, definePlugin, packageVersion, parseServiceUrl, pickAlias } from '@mega/kernel';
import { Bus } from './bus.js';
import { ClusterTransport, inCluster } from './drivers/cluster.js';
import { MemoryTransport } from './drivers/memory.js';
import type { NatsDeclaration } from './drivers/nats.js';
import { NatsTransport } from './drivers/nats.js';
import type { Transport } from './transport.js';

export type { HealthCheck, LatencySnapshot, OpStatsSnapshot } from '@mega/kernel';
export type { BusStats, Handler, MessageMeta, RequestOptions } from './bus.js';
export { Bus } from './bus.js';
export type { BusWire } from './drivers/cluster.js';
export type { NatsDeclaration } from './drivers/nats.js';
export { matches } from './subjects.js';

const NAME = '@mega/bus';

/** `bus` in apps/<name>/app.config.ts. */
export interface BusConfig {
  /** Default: nats when `services.buses` declares an alias, else cluster inside `--workers`, else memory. */
  driver?: 'memory' | 'nats' | 'cluster';
  /** The `services.buses` alias (nats). Default: `default`, or the only one. */
  service?: string;
  /** Subject prefix of this app. Default `<app name>.`. */
  prefix?: string;
  /** Default request timeout. Default 5000. */
  requestTimeoutMs?: number;
}

declare module '@mega/kernel' {
  interface MegaContext {
    /** This app's bus. */
    readonly bus: Bus;
  }
  interface AppExtensions {
    readonly bus: Bus;
  }
  interface MegaServices {
    'health:@mega/bus': Record<string, HealthCheck>;
  }
}

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    driver: { enum: ['memory', 'nats', 'cluster'] },
    service: { type: 'string', minLength: 1 },
    prefix: { type: 'string', pattern: '^([^\\s.*>]+\\.)*$' },
    requestTimeoutMs: { type: 'integer', minimum: 1, default: 5000 },
  },
};

export default definePlugin<undefined>({
  name: NAME,
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  configKey: 'bus',
  configScope: 'app',
  configSchema,
  setup(kernel: Kernel) {
    const log = kernel.log.child({ plugin: NAME });
    const checks: Record<string, HealthCheck> = {};
    const declared = kernel.config.services?.buses ?? {};
    const nats = new Map<string, NatsTransport>();
    for (const [alias, decl] of Object.entries(declared)) {
      if (decl.driver !== 'nats') {
        throw new ConfigError('adapter.unknown_driver', `services.buses.${alias}: unknown driver "${decl.driver}" (known: nats)`, {
          details: { kind: 'buses', alias, driver: decl.driver, known: ['nats'] },
        });
      }
      for (const server of String(decl.url ?? '').split(',')) parseServiceUrl('buses', alias, server.trim(), ['nats:', 'tls:']);
      const transport = new NatsTransport(alias, decl as NatsDeclaration, log);
      nats.set(alias, transport);
      checks[`bus:${alias}`] = () => transport.check();
    }
    let memory: MemoryTransport | undefined;
    let cluster: ClusterTransport | undefined;

    const buses = new Map<string, Bus>();
    for (const app of kernel.apps as App[]) {
      const config = kernel.appConfig<BusConfig & { requestTimeoutMs: number }>(app, 'bus');
      const driver = config.driver ?? (config.service || nats.size > 0 ? 'nats' : inCluster() ? 'cluster' : 'memory');
      let transport: Transport;
      let service: string = driver;
      if (driver === 'nats') {
        const alias = pickAlias('buses', [...nats.keys()], config.service, 'default');
        transport = nats.get(alias) as NatsTransport;
        service = alias;
      } else if (config.service) {
        throw new ConfigError('config.invalid', `apps/${app.name}: bus.service is only for the nats driver (driver is "${driver}")`, {
          details: { app: app.name, driver, service: config.service },
        });
      } else if (driver === 'cluster') {
        cluster ??= new ClusterTransport();
        cluster.attach();
        transport = cluster;
      } else transport = memory ??= new MemoryTransport();
      buses.set(
        app.name,
        new Bus(transport, { prefix: config.prefix ?? `${app.name}.`, service, log: app.log, requestTimeoutMs: config.requestTimeoutMs }),
      );
    }
    if (cluster) checks['bus:cluster'] = () => (cluster as ClusterTransport).check();
    kernel.provide('health:@mega/bus', checks, NAME);
    kernel.contributeCtx('bus', (ctx) => buses.get(ctx.app.name) as Bus, NAME);
    kernel.contributeApp('bus', (app) => buses.get(app.name));

    kernel.hooks.boot.tapPromise(NAME, async () => {
      await Promise.all(
        [...nats.values()].map(async (t) => {
          try {
            await t.connect();
          } catch (error) {
            if ((declared[t.alias] as NatsDeclaration).optional !== true) throw error;
            log.warn({ err: error, alias: t.alias }, `${(error as Error).message}; optional, connecting in the background`);
            t.connect(true).catch(() => undefined);
          }
        }),
      );
    });
    kernel.hooks.shutdown.tapPromise(NAME, async () => {
      await Promise.all([...nats.values(), memory, cluster].map((t) => t?.close()));
    });
  },
});
