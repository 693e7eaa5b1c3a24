import type { App, Kernel, PresenceEvent } from '@mega/kernel';
import { ConfigError, definePlugin, isMegaError, packageVersion } from '@mega/kernel';
import { PreparedMessage } from '@mega/ws';
import type { Presence, PresenceService } from '@mega/ws-presence';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { connect } from '@nats-io/transport-node';
import type { WireMember } from './frames.js';
import { decodeMessage, encodeControl, encodeEvent, encodeHeartbeats } from './frames.js';
import { RemoteRoster } from './roster.js';

export type { ClusterMessage, WireMember } from './frames.js';
export { decodeMessage, encodeControl, encodeEvent, encodeHeartbeats, Kind } from './frames.js';
export { RemoteRoster } from './roster.js';

export interface WsClusterConfig {
  /** NATS server URL(s); default: `services.buses[bus].url`, then `NATS_URL`. */
  url?: string;
  /** A `services.buses` alias whose URL to reuse. */
  bus?: string;
  subjectPrefix: string;
  roster: { driver: 'nats' | 'none'; ttlMs: number; heartbeatMs?: number };
  connectTimeoutMs: number;
}

export interface WsClusterStats {
  connected: boolean;
  published: number;
  received: number;
  /** Messages from other instances that failed to decode. */
  malformed: number;
  publishErrors: number;
  remoteMembers: number;
}

export interface WsClusterService {
  readonly instanceId: string;
  stats(): WsClusterStats;
}

declare module '@mega/kernel' {
  interface MegaServices {
    'ws-cluster': WsClusterService;
  }
}

const NAME = '@mega/ws-cluster';

const configSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    url: { type: 'string', minLength: 1 },
    bus: { type: 'string', minLength: 1 },
    subjectPrefix: { type: 'string', pattern: '^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$', default: 'mega.ws' },
    roster: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        driver: { enum: ['nats', 'none'], default: 'nats' },
        ttlMs: { type: 'integer', minimum: 100, default: 15_000 },
        heartbeatMs: { type: 'integer', minimum: 50 },
      },
    },
    connectTimeoutMs: { type: 'integer', minimum: 100, default: 5000 },
  },
};

/** NATS subject tokens cannot hold dots, spaces or wildcards. */
const subjectToken = (name: string) => name.replace(/[^A-Za-z0-9_-]/g, '_');

interface AppState {
  app: App;
  presence: Presence;
  subject: string;
  /** This instance's joined sessions, from the hook events (what heartbeats announce). */
  local: Map<string, WireMember>;
  remote: RemoteRoster;
}

/** Fails boot when an app also configures the hub bridge: one cluster transport per app. */
export function assertNoHubBridge(kernel: Kernel): void {
  for (const app of kernel.apps) {
    if ((app.config as Record<string, unknown>).bridgeHub !== undefined) {
      throw new ConfigError(
        'config.cluster_transport_conflict',
        `app "${app.name}" configures bridgeHub while wsCluster (NATS) is enabled: choose one cluster transport (remove bridgeHub from app.config.ts or @mega/ws-cluster from mega.config.ts)`,
        { details: { app: app.name, transports: ['wsCluster', 'bridgeHub'] } },
      );
    }
  }
}

function natsUrl(kernel: Kernel, config: WsClusterConfig): string {
  if (config.url) return config.url;
  const buses = kernel.config.services?.buses;
  if (config.bus) {
    const url = buses?.[config.bus]?.url;
    if (!url) throw new ConfigError('config.invalid', `wsCluster.bus "${config.bus}" is not a services.buses entry with a url`);
    return url;
  }
  const env = process.env.NATS_URL;
  if (env) return env;
  throw new ConfigError('ws_cluster.no_url', 'wsCluster needs a NATS url: set wsCluster.url, wsCluster.bus or NATS_URL');
}

export default definePlugin<WsClusterConfig>({
  name: NAME,
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/ws-presence'],
  configKey: 'wsCluster',
  configScope: 'global',
  configSchema,
  setup(kernel: Kernel, config: WsClusterConfig) {
    assertNoHubBridge(kernel);
    const url = natsUrl(kernel, config);
    const origin = kernel.instanceId;
    const ttlMs = config.roster.ttlMs;
    const rosterOn = config.roster.driver === 'nats';
    const heartbeatMs = config.roster.heartbeatMs ?? Math.max(50, Math.floor(ttlMs / 3));
    const log = kernel.log.child({ plugin: NAME });
    const service = kernel.use<PresenceService>('presence');
    const apps = new Map<string, AppState>();
    const bySubject = new Map<string, AppState>();
    const stats = { published: 0, received: 0, malformed: 0, publishErrors: 0 };
    let nc: NatsConnection | undefined;
    const subs: Subscription[] = [];
    let stopped = false;
    let linkUp = false;
    let lastWarn = 0;
    let suppressed = 0;
    const timers: NodeJS.Timeout[] = [];

    for (const app of kernel.apps) {
      const presence = service.of(app);
      const st: AppState = {
        app,
        presence,
        subject: `${config.subjectPrefix}.${subjectToken(app.name)}`,
        local: new Map(),
        remote: new RemoteRoster(ttlMs),
      };
      apps.set(app.name, st);
      bySubject.set(st.subject, st);
      if (rosterOn) {
        presence.setRosterProvider((ns, channel, local) => {
          const remote = st.remote.list(ns, channel, new Set(local.map((e) => e.sessionId)));
          return remote.length === 0 ? local : local.concat(remote);
        });
      }
    }

    const warn = (error: unknown, what: string) => {
      stats.publishErrors++;
      const now = Date.now();
      // One line per 5 s while NATS is failing, with how many were suppressed.
      if (now - lastWarn < 5000) {
        suppressed++;
        return;
      }
      log.warn({ err: error, suppressed }, `ws-cluster: ${what} failed (local delivery unaffected)`);
      lastWarn = now;
      suppressed = 0;
    };

    const publish = (subject: string, data: Uint8Array) => {
      if (!nc || nc.isClosed()) {
        warn(new Error('NATS not connected'), 'publish');
        return;
      }
      try {
        nc.publish(subject, data);
        stats.published++;
      } catch (error) {
        warn(error, 'publish');
      }
    };

    const heartbeat = (st: AppState) => {
      if (!rosterOn) return;
      for (const frame of encodeHeartbeats(kernel.codec, origin, [...st.local.values()])) publish(st.subject, frame);
    };

    const announce = () => {
      for (const st of apps.values()) {
        publish(st.subject, encodeControl(kernel.codec, origin, 'hello'));
        heartbeat(st);
      }
    };

    const onMessage = (st: AppState, data: Uint8Array) => {
      let m: ReturnType<typeof decodeMessage>;
      try {
        m = decodeMessage(kernel.codec, data);
      } catch (error) {
        stats.malformed++;
        log.debug({ err: error, app: st.app.name }, 'ws-cluster: dropped a malformed message');
        return;
      }
      if (m.origin === origin) return;
      stats.received++;
      switch (m.kind) {
        case 'broadcast':
          // Copy: the prepared frame may sit in a socket's send queue after this callback returns.
          st.presence.deliverBroadcast(m.ns, new PreparedMessage(Buffer.from(m.envelope)), m.channel, m.except);
          return;
        case 'direct':
          st.presence.deliverDirect(m.userId, new PreparedMessage(Buffer.from(m.envelope)), m.ns);
          return;
        case 'join':
          if (rosterOn) st.remote.upsert(m.origin, m.member);
          return;
        case 'leave':
          st.remote.remove(m.origin, m.sessionId);
          return;
        case 'metadata':
          st.remote.setMetadata(m.origin, m.sessionId, m.metadata);
          return;
        case 'heartbeat':
          if (rosterOn) st.remote.heartbeat(m.origin, m.members, m.complete);
          return;
        case 'hello':
          heartbeat(st);
          return;
        case 'bye':
          st.remote.dropOrigin(m.origin);
          return;
        case 'disconnect':
          // Only the instance holding the session acts; disconnectSession would re-emit otherwise.
          if (st.local.has(m.sessionId)) st.presence.disconnectSession(m.sessionId, m.mode, m.reason);
          return;
      }
    };

    kernel.hooks.presence.tap(NAME, (ev: PresenceEvent) => {
      const st = apps.get(ev.app.name);
      if (!st) return;
      switch (ev.kind) {
        case 'join':
          st.local.set(ev.sessionId, {
            ns: ev.ns,
            sessionId: ev.sessionId,
            userId: ev.userId ?? '',
            channels: ev.channels,
            ...(ev.metadata ? { metadata: ev.metadata } : {}),
          });
          if (!rosterOn) return;
          break;
        case 'leave':
          st.local.delete(ev.sessionId);
          if (!rosterOn) return;
          break;
        case 'metadata': {
          const m = st.local.get(ev.sessionId);
          if (m) m.metadata = ev.metadata;
          if (!rosterOn) return;
          break;
        }
      }
      try {
        const frame = encodeEvent(kernel.codec, origin, ev);
        if (frame) publish(st.subject, frame);
      } catch (error) {
        warn(error, `encoding a ${ev.kind} event`);
      }
    });

    const attach = (conn: NatsConnection) => {
      nc = conn;
      linkUp = true;
      for (const st of apps.values()) {
        subs.push(conn.subscribe(st.subject, { callback: (err, msg) => (err ? warn(err, 'subscription') : onMessage(st, msg.data)) }));
      }
      void (async () => {
        for await (const s of conn.status()) {
          if (s.type === 'disconnect') linkUp = false;
          if (s.type === 'reconnect') linkUp = true;
          if (s.type === 'disconnect')
            log.warn({ server: s.server }, 'ws-cluster: NATS disconnected; fan-out paused (local delivery continues)');
          else if (s.type === 'reconnect') {
            log.info({ server: s.server }, 'ws-cluster: NATS reconnected; fan-out resumes');
            announce();
          }
        }
      })().catch(() => {});
      announce();
    };

    const tryConnect = () =>
      connect({
        servers: url.split(',').map((s) => s.trim()),
        name: `mega-ws-cluster-${origin}`,
        noEcho: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        timeout: config.connectTimeoutMs,
      });

    kernel.provide(
      'ws-cluster',
      {
        instanceId: origin,
        stats: () => ({
          connected: linkUp && nc !== undefined && !nc.isClosed(),
          ...stats,
          remoteMembers: [...apps.values()].reduce((n, st) => n + st.remote.size, 0),
        }),
      } satisfies WsClusterService,
      NAME,
    );

    kernel.hooks.boot.tapPromise(NAME, async () => {
      try {
        attach(await tryConnect());
        log.info({ url, instanceId: origin, ttlMs: rosterOn ? ttlMs : undefined }, 'ws-cluster: connected to NATS');
      } catch (error) {
        // Boot goes on with local-only presence; connect again in the background.
        log.warn({ err: error, url }, 'ws-cluster: NATS unreachable at boot; retrying in the background (local delivery only until then)');
        void (async () => {
          let delay = 500;
          while (!stopped && !nc) {
            await new Promise((r) => setTimeout(r, delay).unref());
            if (stopped) return;
            try {
              attach(await tryConnect());
              log.info({ url }, 'ws-cluster: connected to NATS');
            } catch {
              delay = Math.min(delay * 2, 10_000);
            }
          }
        })();
      }
      timers.push(
        setInterval(() => {
          for (const st of apps.values()) {
            heartbeat(st);
            st.remote.sweep();
          }
        }, heartbeatMs),
      );
      for (const t of timers) t.unref();
    });

    // Runs before ws-presence's shutdown: tell the others to drop our members, then stop publishing.
    kernel.hooks.shutdown.tapPromise(NAME, async () => {
      stopped = true;
      for (const t of timers) clearInterval(t);
      for (const st of apps.values()) st.presence.setRosterProvider(undefined);
      const conn = nc;
      nc = undefined;
      if (!conn || conn.isClosed()) return;
      for (const st of apps.values()) {
        try {
          conn.publish(st.subject, encodeControl(kernel.codec, origin, 'bye'));
        } catch (error) {
          if (!isMegaError(error)) log.debug({ err: error }, 'ws-cluster: bye not sent');
        }
      }
      for (const s of subs.splice(0)) s.unsubscribe();
      // Drain flushes what is buffered; bounded, since a broken link may never finish it.
      await Promise.race([conn.drain(), new Promise((r) => setTimeout(r, 2000).unref())]).catch(() => {});
      if (!conn.isClosed()) await conn.close().catch(() => {});
    });
  },
});
