import { redactUrl } from '@mega/adapters';
import type { App, CliIO, ConfigInput } from '@mega/kernel';
import { ConfigError, definePlugin, packageVersion } from '@mega/kernel';
import { BridgeHubConfigSchema } from './config.js';
import type { LinkStatus } from './link.js';
import { HubLink } from './link.js';

export type { BridgeHubConfig, LinkConfig, RetryOptions } from './config.js';
export { BridgeHubConfigSchema } from './config.js';
export type { LinkState, LinkStatus } from './link.js';
export { HubLink } from './link.js';
export type { FromHub, HubSession } from './protocol.js';
export { decodeFromHub, PROTOCOL_VERSION, toHub, truncateReason } from './protocol.js';

export interface HubBridgeService {
  /** Link state per bridged app (empty when no app configures `bridgeHub`). */
  status(): Record<string, LinkStatus>;
  link(app: App | string): HubLink | undefined;
}

declare module '@mega/kernel' {
  /** This plugin's keys of app.config.ts (see the README's config table). */
  interface AppConfig {
    bridgeHub?: ConfigInput<typeof BridgeHubConfigSchema>['bridgeHub'];
  }
  interface MegaServices {
    'hub-bridge': HubBridgeService;
  }
}

export default definePlugin({
  name: '@mega/hub-bridge',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/ws-presence'],
  config: { app: BridgeHubConfigSchema },
  commands: {
    'ws-hub': {
      summary: 'run the hub sidecar (mega-hub), building it when stale',
      // Imported on use: loading the plugin (every `mega` command does) stays cheap.
      run: async (argv: string[], io: CliIO) => (await import('./ws-hub.js')).wsHubCommand(argv, io),
    },
  },
  setup(api) {
    const { kernel } = api;
    const links = new Map<string, HubLink>();
    const presence = api.use('presence');
    // ws-cluster fans out every app over NATS: an app bridged to the hub too would get each event twice.
    const clusterLoaded = kernel.plugins.some((p) => p.config?.global?.properties.wsCluster !== undefined);
    for (const app of kernel.apps) {
      const config = api.appConfig(app).bridgeHub;
      if (!config) continue;
      if (clusterLoaded) {
        throw new ConfigError(
          'config.cluster_transport_conflict',
          `app "${app.name}" configures bridgeHub while wsCluster (NATS) fans out every app: choose one cluster transport (remove bridgeHub from app.config.ts or @mega/ws-cluster from mega.config.ts)`,
          { details: { app: app.name, transports: ['wsCluster', 'bridgeHub'] } },
        );
      }
      // A maxTimeout below minTimeout means "no growth", not an error.
      const retry = { ...config.retry, maxTimeout: Math.max(config.retry.maxTimeout, config.retry.minTimeout) };
      const bridgeId = config.bridgeId ?? `${app.name}-${kernel.instanceId.slice(0, 8)}`;
      const p = presence.of(app);
      const link = new HubLink({ ...config, retry, bridgeId }, p, kernel.codec, api.log.child({ app: app.name }), kernel.instanceId);
      links.set(app.name, link);
      p.setRosterProvider((ns, channel, local) => link.rosterList(ns, channel, local));
    }
    if (links.size === 0) return;

    api.provide('hub-bridge', {
      status: () => Object.fromEntries([...links].map(([name, l]) => [name, l.status()])),
      link: (app) => links.get(typeof app === 'string' ? app : app.name),
    });

    api.tap('presence', (ev) => links.get(ev.app.name)?.onPresence(ev));

    // Listed by /ready but never failing: the app serves its local clients with the hub down. Link
    // state is in the `hub-bridge` service's status().
    api.health(api.name, async () => {});

    api.tap('boot', async () => {
      // One attempt per app at boot; a failure warns and the link keeps retrying in the background.
      await Promise.all(
        [...links].map(async ([name, link]) => {
          if (!(await link.start())) {
            const s = link.status();
            const log = api.log.child({ app: name });
            if (s.state === 'failed') log.error({ lastClose: s.lastClose }, 'hub-bridge: the hub refused this bridge at boot');
            else
              log.warn(
                { url: redactUrl(s.url), error: s.lastError, lastClose: s.lastClose },
                'hub-bridge: hub unreachable at boot; retrying in the background',
              );
          }
        }),
      );
    });

    api.onShutdown(async () => {
      await Promise.all([...links.values()].map((l) => l.stop()));
    });
  },
});
