import { redactUrl } from '@mega/adapters';
import type { RedisConnections } from '@mega/cache-redis';
import type { App, ConfigInput, Static } from '@mega/kernel';
import { ConfigError, definePlugin, MegaError, packageVersion, Type } from '@mega/kernel';
import type { PresenceEntry } from '@mega/ws-presence';
import type { RosterWrite } from './roster.js';
import { RedisRoster } from './roster.js';

export type { RosterOptions, RosterWrite } from './roster.js';
export { RedisRoster } from './roster.js';

/** The `wsRoster` key of mega.config.ts (global). */
export const WsRosterConfigSchema = Type.Object({
  wsRoster: Type.Object(
    {
      /** The `services.caches` alias (served by @mega/cache-redis) holding the roster; default `default` or the only one. */
      cache: Type.Optional(Type.String({ minLength: 1 })),
      prefix: Type.String({ default: 'mega:roster:' }),
      ttlMs: Type.Integer({ minimum: 100, default: 30_000 }),
      /** Default: `ttlMs / 3` (at least 50). */
      refreshMs: Type.Optional(Type.Integer({ minimum: 50 })),
      /**
       * Serve `ctx.presence.list()` cluster-wide from a local mirror of the Redis roster, pulled every
       * refresh interval (replaces a transport's roster for `list()`).
       */
      mirror: Type.Boolean({ default: false }),
    },
    { additionalProperties: false, default: {} },
  ),
});

export type WsRosterConfig = Static<typeof WsRosterConfigSchema>['wsRoster'];

export interface AppRoster {
  /** Cluster-wide members of a namespace (optionally one channel), from Redis. */
  list(ns: string, channel?: string): Promise<PresenceEntry[]>;
}

export interface WsRosterService {
  of(app: App | string): AppRoster;
  readonly roster: RedisRoster<PresenceEntry>;
}

declare module '@mega/kernel' {
  /** This plugin's keys of mega.config.ts (see the README's config table). */
  interface MegaConfig {
    wsRoster?: ConfigInput<typeof WsRosterConfigSchema>['wsRoster'];
  }
  interface MegaServices {
    'ws-roster': WsRosterService;
  }
}

/** Hash names: `<app>:<ns>` for the namespace, `<app>:<ns>#<channel>` per channel. */
export const channelKey = (app: string, ns: string, channel?: string) =>
  channel === undefined ? `${app}:${ns}` : `${app}:${ns}#${channel}`;

/** The owner's connections and the checked alias; fails setup naming the fix when either is missing. */
function redisOwner(has: boolean, use: () => RedisConnections, alias: string | undefined): RedisConnections {
  const fix =
    "declare services.caches.<alias> = { driver: 'redis', url } in mega.config.ts (served by @mega/cache-redis; run: mega plugin add @mega/cache-redis)";
  if (!has) throw new MegaError('ws_roster.no_redis', `wsRoster keeps the roster in Redis, but no plugin provides it: ${fix}`);
  const redis = use();
  if (redis.aliases.length === 0) throw new ConfigError('ws_roster.no_cache', `wsRoster needs a Redis cache: ${fix}`);
  if (alias !== undefined && !redis.aliases.includes(alias)) {
    throw new ConfigError(
      'config.invalid',
      `wsRoster.cache "${alias}" is not a Redis cache (services.caches with driver redis: ${redis.aliases.join(', ')})`,
      { details: { key: 'wsRoster.cache', alias, known: redis.aliases } },
    );
  }
  return redis;
}

export default definePlugin({
  name: '@mega/ws-roster-redis',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  // @mega/cache-redis owns the Redis client: set up before and shut down after this plugin.
  dependsOn: ['@mega/ws-presence', '@mega/cache-redis'],
  config: { global: WsRosterConfigSchema },
  setup(api, { wsRoster: config }) {
    const { kernel, log } = api;
    const owner = redisOwner(api.has('redis'), () => api.use('redis'), config.cache);
    const url = redactUrl(owner.url(config.cache));
    // The shared client of the alias: cache-redis connects, reconnects and closes it.
    const redis = owner.client(config.cache);
    const roster = new RedisRoster<PresenceEntry>(redis, { prefix: config.prefix, ttlMs: config.ttlMs });
    /** Local members per app (what refresh re-writes). */
    const local = new Map<string, Map<string, { ns: string; entry: PresenceEntry }>>();
    const writes = (app: string, ns: string, e: PresenceEntry): RosterWrite<PresenceEntry>[] => [
      { channel: channelKey(app, ns), sessionId: e.sessionId, member: e },
      ...e.channels.map((c) => ({ channel: channelKey(app, ns, c), sessionId: e.sessionId, member: e })),
    ];
    const fail = (what: string) => (error: unknown) =>
      log.warn({ err: error }, `ws-roster-redis: ${what} failed (local presence unaffected)`);

    api.tap('presence', (ev) => {
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
    api.provide('ws-roster', {
      roster,
      of: (app) => {
        const name = typeof app === 'string' ? app : app.name;
        return {
          list: async (ns, channel) => (await roster.list(channelKey(name, ns, channel))).map((x) => x.member),
        };
      },
    });

    api.tap('boot', () => {
      log.info({ cache: config.cache, url, prefix: config.prefix, mirror: config.mirror }, 'ws-roster-redis: roster in Redis');
      if (config.mirror) {
        // In boot, after every plugin's setup: this provider replaces a transport's (ws-cluster, hub-bridge).
        const presence = api.use('presence');
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

    // Runs before ws-presence's and cache-redis's shutdown: remove our members now instead of waiting
    // for their expiry (the client stays open: cache-redis closes it).
    api.onShutdown(async () => {
      clearInterval(timer);
      const all: Array<{ channel: string; sessionId: string }> = [];
      for (const [app, m] of local) for (const { ns, entry } of m.values()) all.push(...writes(app, ns, entry));
      local.clear();
      await roster.remove(all).catch(fail('remove on shutdown'));
    });
  },
});
