import type { App, Kernel } from '@mega/kernel';
import { ConfigError, definePlugin, packageVersion } from '@mega/kernel';
import type { PresenceService } from '@mega/ws-presence';
import type { BridgeHubConfig, LinkStatus } from './link.js';
import { HubLink } from './link.js';

export type { BridgeHubConfig, LinkState, LinkStatus, RetryOptions } from './link.js';
export { HubLink } from './link.js';
export type { FromHub, HubSession } from './protocol.js';
export { decodeFromHub, PROTOCOL_VERSION, toHub, truncateReason } from './protocol.js';

export interface HubBridgeService {
  /** Link state per bridged app (empty when no app configures `bridgeHub`). */
  status(): Record<string, LinkStatus>;
  link(app: App | string): HubLink | undefined;
}

declare module '@mega/kernel' {
  interface MegaServices {
    'hub-bridge': HubBridgeService;
  }
}

/** The part of @mega/health's service this plugin uses (no import: health is optional). */
interface HealthRegistry {
  register(name: string, fn: () => { ok: boolean; [detail: string]: unknown }): void;
}

const NAME = '@mega/hub-bridge';

const id = { type: 'string', minLength: 1, maxLength: 256 };
export const configSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    url: { type: 'string', pattern: '^wss?://' },
    token: { type: 'string', minLength: 1, maxLength: 4096 },
    bridgeId: id,
    channels: { type: 'array', items: id, maxItems: 256, default: [] },
    retry: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        retries: { type: 'integer', minimum: -1, default: -1 },
        minTimeout: { type: 'integer', minimum: 1, default: 1000 },
        maxTimeout: { type: 'integer', minimum: 1, default: 10_000 },
        factor: { type: 'number', minimum: 1, default: 2 },
      },
    },
    compression: { type: 'boolean', default: false },
    requeueClientsOnDrain: { type: 'boolean', default: true },
    connectTimeoutMs: { type: 'integer', minimum: 100, default: 5000 },
  },
};

export default definePlugin<BridgeHubConfig>({
  name: NAME,
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/ws-presence'],
  configKey: 'bridgeHub',
  configScope: 'app',
  configSchema,
  setup(kernel: Kernel) {
    const links = new Map<string, HubLink>();
    const presence = kernel.use<PresenceService>('presence');
    for (const app of kernel.apps) {
      if ((app.config as Record<string, unknown>).bridgeHub === undefined) continue;
      if ((kernel.config as Record<string, unknown>).wsCluster !== undefined) {
        throw new ConfigError(
          'config.cluster_transport_conflict',
          `app "${app.name}" configures bridgeHub while mega.config.ts configures wsCluster: choose one cluster transport`,
          { details: { app: app.name, transports: ['wsCluster', 'bridgeHub'] } },
        );
      }
      const config = kernel.appConfig<BridgeHubConfig>(app, 'bridgeHub');
      if (!config.url || !config.token) {
        throw new ConfigError('config.invalid', `apps/${app.name}: bridgeHub needs url (ws://host:port) and token`, {
          details: { app: app.name, missing: [!config.url && 'url', !config.token && 'token'].filter(Boolean) },
        });
      }
      if (config.retry.maxTimeout < config.retry.minTimeout) config.retry.maxTimeout = config.retry.minTimeout;
      const bridgeId = config.bridgeId ?? `${app.name}-${kernel.instanceId.slice(0, 8)}`;
      const p = presence.of(app);
      const link = new HubLink(
        { ...config, bridgeId },
        p,
        kernel.codec,
        kernel.log.child({ plugin: NAME, app: app.name }),
        kernel.instanceId,
      );
      links.set(app.name, link);
      p.setRosterProvider((ns, channel, local) => link.rosterList(ns, channel, local));
    }
    if (links.size === 0) return;

    kernel.provide(
      'hub-bridge',
      {
        status: () => Object.fromEntries([...links].map(([name, l]) => [name, l.status()])),
        link: (app) => links.get(typeof app === 'string' ? app : app.name),
      } satisfies HubBridgeService,
      NAME,
    );

    kernel.hooks.presence.tap(NAME, (ev) => links.get(ev.app.name)?.onPresence(ev));

    kernel.hooks.boot.tapPromise(NAME, async () => {
      // Link state shows in readiness details (@mega/health, when loaded) but never fails readiness:
      // the app serves its local clients with the hub down.
      if (kernel.has('health')) {
        kernel.use<HealthRegistry>('health').register(NAME, () => ({
          ok: true,
          links: Object.fromEntries([...links].map(([name, l]) => [name, l.state])),
        }));
      }
      // One attempt per app at boot; a failure warns and the link keeps retrying in the background.
      await Promise.all(
        [...links].map(async ([name, link]) => {
          if (!(await link.start())) {
            const s = link.status();
            const log = kernel.log.child({ plugin: NAME, app: name });
            if (s.state === 'failed') log.error({ lastClose: s.lastClose }, 'hub-bridge: the hub refused this bridge at boot');
            else
              log.warn(
                { url: s.url, error: s.lastError, lastClose: s.lastClose },
                'hub-bridge: hub unreachable at boot; retrying in the background',
              );
          }
        }),
      );
    });

    kernel.hooks.shutdown.tapPromise(NAME, async () => {
      await Promise.all([...links.values()].map((l) => l.stop()));
    });
  },
});
