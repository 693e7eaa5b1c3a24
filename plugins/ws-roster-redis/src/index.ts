import type { App, Kernel } from '@mega/kernel';
import { ConfigError, definePlugin, packageVersion } from '@mega/kernel';
import type { PresenceEntry } from '@mega/ws-presence';
import { Redis } from 'ioredis';
import type { RosterWrite } from './roster.js';
import { RedisRoster } from './roster.js';

export type { RosterOptions, RosterWrite } from './roster.js';
export { RedisRoster } from './roster.js';

export interface WsRosterConfig {
  /** Redis URL; default `services.caches[cache].url`, then `REDIS_URL`. */
  url?: string;
  cache?: string;
  prefix: string;
  ttlMs: number;
  refreshMs?: number;
  /**
   * Serve `ctx.presence.list()` cluster-wide from a local mirror of the Redis roster, pulled every
   * refresh interval (replaces a transport's roster for `list()`; default false).
   */
  mirror?: boolean;
}

export interface AppRoster {
  /** Cluster-wide members of a namespace (optionally one channel), from Redis. */
  list(ns: string, channel?: string): Promise<PresenceEntry[]>;
}

export interface WsRosterService {
  of(app: App | string): AppRoster;
  readonly roster: RedisRoster<PresenceEntry>;
}

declare module '@mega/kernel' {
  interface MegaServices {
    'ws-roster': WsRosterService;
  }
}

const NAME = '@mega/ws-roster-redis';

/** Hash names: `<app>:<ns>` for the namespace, `<app>:<ns>#<channel>` per channel. */
export const channelKey = (app: string, ns: string, channel?: string) =>
  channel === undefined ? `${app}:${ns}` : `${app}:${ns}#${channel}`;

export default definePlugin<WsRosterConfig>({
  name: NAME,
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/ws-presence'],
  configKey: 'wsRoster',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      url: { type: 'string', minLength: 1 },
      cache: { type: 'string', minLength: 1 },
      prefix: { type: 'string', default: 'mega:roster:' },
      ttlMs: { type: 'integer', minimum: 100, default: 30_000 },
      refreshMs: { type: 'integer', minimum: 50 },
      mirror: { type: 'boolean', default: false },
    },
  },
  setup(kernel: Kernel, config: WsRosterConfig) {
    const url = config.url ?? (config.cache ? kernel.config.services?.caches?.[config.cache]?.url : undefined) ?? process.env.REDIS_URL;
    if (!url) throw new ConfigError('ws_roster.no_url', 'wsRoster needs a Redis url: set wsRoster.url, wsRoster.cache or REDIS_URL');
    const log = kernel.log.child({ plugin: NAME });
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: true });
    redis.on('error', (error: Error) => log.debug({ err: error }, 'ws-roster-redis: redis error'));
    const roster = new RedisRoster<PresenceEntry>(redis, { prefix: config.prefix, ttlMs: config.ttlMs });
    /** Local members per app (what refresh re-writes). */
    const local = new Map<string, Map<string, { ns: string; entry: PresenceEntry }>>();
    const writes = (app: string, ns: string, e: PresenceEntry): RosterWrite<PresenceEntry>[] => [
      { channel: channelKey(app, ns), sessionId: e.sessionId, member: e },
      ...e.channels.map((c) => ({ channel: channelKey(app, ns, c), sessionId: e.sessionId, member: e })),
    ];
    const fail = (what: string) => (error: unknown) =>
      log.warn({ err: error }, `ws-roster-redis: ${what} failed (local presence unaffected)`);

    kernel.hooks.presence.tap(NAME, (ev) => {
      const app = ev.app.name;
      let m = local.get(app);
      if (!m) {
        m = new Map();
        local.set(app, m);
      }
      if (ev.kind === 'join') {
        const entry: PresenceEntry = {
          sessionId: ev.sessionId,
          userId: ev.userId ?? '',
          channels: ev.channels,
          ...(ev.metadata ? { metadata: ev.metadata } : {}),
        };
        const prior = m.get(ev.sessionId);
        m.set(ev.sessionId, { ns: ev.ns, entry });
        const gone = prior ? prior.entry.channels.filter((c) => !ev.channels.includes(c)) : [];
        if (gone.length)
          roster
            .remove(gone.map((c) => ({ channel: channelKey(app, prior?.ns ?? ev.ns, c), sessionId: ev.sessionId })))
            .catch(fail('remove'));
        roster.add(writes(app, ev.ns, entry)).catch(fail('add'));
      } else if (ev.kind === 'leave') {
        const prior = m.get(ev.sessionId);
        if (!prior || prior.ns !== ev.ns) return;
        m.delete(ev.sessionId);
        roster.remove(writes(app, prior.ns, prior.entry)).catch(fail('remove'));
      } else if (ev.kind === 'metadata') {
        const prior = m.get(ev.sessionId);
        if (!prior) return;
        prior.entry = { ...prior.entry, metadata: ev.metadata };
        roster.add(writes(app, prior.ns, prior.entry)).catch(fail('metadata'));
      }
    });

    // The mirror: namespace hash -> live members, pulled each tick for the namespaces asked about or
    // joined here. list() stays synchronous (ws-presence's contract) and lags by one refresh at most.
    const mirrors = new Map<string, PresenceEntry[]>();
    const wanted = new Set<string>();
    const pull = async () => {
      for (const [app, m] of local) for (const { ns } of m.values()) wanted.add(channelKey(app, ns));
      await Promise.all(
        [...wanted].map(async (key) => {
          mirrors.set(
            key,
            (await roster.list(key)).map((x) => x.member),
          );
        }),
      );
    };

    let timer: NodeJS.Timeout | undefined;
    kernel.provide(
      'ws-roster',
      {
        roster,
        of: (app) => {
          const name = typeof app === 'string' ? app : app.name;
          return {
            list: async (ns, channel) => (await roster.list(channelKey(name, ns, channel))).map((x) => x.member),
          };
        },
      } satisfies WsRosterService,
      NAME,
    );

    kernel.hooks.boot.tapPromise(NAME, async () => {
      await redis
        .connect()
        .catch((error: unknown) => log.warn({ err: error, url }, 'ws-roster-redis: redis unreachable at boot; retrying'));
      if (config.mirror) {
        // In boot, after every plugin's setup: this provider replaces a transport's (ws-cluster, hub-bridge).
        const presence = kernel.use('presence');
        for (const app of kernel.apps) {
          presence.of(app).setRosterProvider((ns, channel, mine) => {
            const key = channelKey(app.name, ns);
            const snapshot = mirrors.get(key);
            if (!snapshot) {
              wanted.add(key);
              return mine;
            }
            const ids = new Set(mine.map((e) => e.sessionId));
            const remote = snapshot.filter((e) => !ids.has(e.sessionId) && (channel === undefined || e.channels.includes(channel)));
            return remote.length === 0 ? mine : mine.concat(remote);
          });
        }
      }
      timer = setInterval(
        () => {
          const all: RosterWrite<PresenceEntry>[] = [];
          for (const [app, m] of local) for (const { ns, entry } of m.values()) all.push(...writes(app, ns, entry));
          roster.refresh(all).catch(fail('refresh'));
          if (config.mirror) pull().catch(fail('mirror pull'));
        },
        config.refreshMs ?? Math.max(50, Math.floor(config.ttlMs / 3)),
      );
      timer.unref();
    });

    // Runs before ws-presence's shutdown: remove our members now instead of waiting for their expiry.
    kernel.hooks.shutdown.tapPromise(NAME, async () => {
      clearInterval(timer);
      const all: Array<{ channel: string; sessionId: string }> = [];
      for (const [app, m] of local) for (const { ns, entry } of m.values()) all.push(...writes(app, ns, entry));
      local.clear();
      await roster.remove(all).catch(fail('remove on shutdown'));
      await redis.quit().catch(() => redis.disconnect());
    });
  },
});
