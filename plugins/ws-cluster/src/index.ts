import { errorSummary, redactUrl } from '@mega/adapters';
import type { NatsConnections } from '@mega/bus';
import type { App, ConfigInput, Kernel, PresenceEvent, Static } from '@mega/kernel';
import { ConfigError, definePlugin, isMegaError, MegaError, packageVersion, Type, within } from '@mega/kernel';
import { PreparedMessage } from '@mega/ws';
import type { Presence } from '@mega/ws-presence';
import type { WireMember } from './frames.js';
import { decodeMessage, encodeControl, encodeEvent, encodeHeartbeats } from './frames.js';
import { RemoteRoster } from './roster.js';

export type { ClusterMessage, WireMember } from './frames.js';
export { decodeMessage, encodeControl, encodeEvent, encodeHeartbeats, Kind } from './frames.js';
export { RemoteRoster } from './roster.js';

/** The `wsCluster` key of mega.config.ts (global). */
export const WsClusterConfigSchema = Type.Object({
  wsCluster: Type.Object(
    {
      /** The `services.buses` alias (driver `nats`, served by @mega/bus) to publish on; default `default` or the only one. */
      bus: Type.Optional(Type.String({ minLength: 1 })),
      subjectPrefix: Type.String({ pattern: '^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$', default: 'mega.ws' }),
      roster: Type.Object(
        {
          driver: Type.Union([Type.Literal('nats'), Type.Literal('none')], { default: 'nats' }),
          ttlMs: Type.Integer({ minimum: 100, default: 15_000 }),
          /** Default: `ttlMs / 3` (at least 50). */
          heartbeatMs: Type.Optional(Type.Integer({ minimum: 50 })),
        },
        { additionalProperties: false, default: {} },
      ),
      /** How long boot waits for the bus's NATS connection before going on local-only. */
      connectTimeoutMs: Type.Integer({ minimum: 100, default: 5000 }),
      /** Fan-out frames (broadcast, direct, join/leave/metadata, disconnect) held while NATS is down. */
      reconnectBuffer: Type.Object(
        {
          /** Frames held; beyond, new frames are dropped (counted in `dropped`, warned). */
          messages: Type.Integer({ minimum: 1, default: 10_000 }),
          /** Bytes held. */
          bytes: Type.Integer({ minimum: 1024, default: 8 * 1024 * 1024 }),
          /**
           * After a reconnect, the held frames wait until every instance seen within `roster.ttlMs`
           * has been heard from again (it re-subscribed), at most this long.
           */
          peerWaitMs: Type.Integer({ minimum: 0, default: 2000 }),
        },
        { additionalProperties: false, default: {} },
      ),
    },
    { additionalProperties: false, default: {} },
  ),
});

export type WsClusterConfig = Static<typeof WsClusterConfigSchema>['wsCluster'];

export interface WsClusterStats {
  connected: boolean;
  published: number;
  received: number;
  /** Messages from other instances that failed to decode. */
  malformed: number;
  publishErrors: number;
  /** Fan-out frames dropped because the reconnect buffer was full. */
  dropped: number;
  /** Fan-out frames held now (NATS down, or not yet confirmed by the server). */
  pending: number;
  remoteMembers: number;
}

export interface WsClusterService {
  readonly instanceId: string;
  stats(): WsClusterStats;
}

declare module '@mega/kernel' {
  /** This plugin's keys of mega.config.ts (see the README's config table). */
  interface MegaConfig {
    wsCluster?: ConfigInput<typeof WsClusterConfigSchema>['wsCluster'];
  }
  interface MegaServices {
    'ws-cluster': WsClusterService;
  }
}

/** The connection @mega/bus owns (never drained or closed here). */
type NatsConnection = Awaited<ReturnType<NatsConnections['connection']>>;
type Subscription = ReturnType<NatsConnection['subscribe']>;

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
    if ('bridgeHub' in app.config) {
      throw new ConfigError(
        'config.cluster_transport_conflict',
        `app "${app.name}" configures bridgeHub while wsCluster (NATS) is enabled: choose one cluster transport (remove bridgeHub from app.config.ts or @mega/ws-cluster from mega.config.ts)`,
        { details: { app: app.name, transports: ['wsCluster', 'bridgeHub'] } },
      );
    }
  }
}

export default definePlugin({
  name: '@mega/ws-cluster',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  // The bus owns the NATS connection; set up (and shut down) around this plugin.
  dependsOn: ['@mega/ws-presence', '@mega/bus'],
  config: { global: WsClusterConfigSchema },
  setup(api, { wsCluster: config }) {
    const { kernel, log } = api;
    assertNoHubBridge(kernel);
    const fix =
      "declare services.buses.<alias> = { driver: 'nats', url } in mega.config.ts (served by @mega/bus; run: mega plugin add @mega/bus)";
    if (!api.has('nats')) throw new MegaError('ws_cluster.no_nats', `wsCluster fans out over NATS, but no plugin provides it: ${fix}`);
    // Typed by the package entry, not by whichever MegaServices augmentation a program saw first.
    const nats = api.use<NatsConnections>('nats');
    if (nats.aliases.length === 0) throw new ConfigError('ws_cluster.no_bus', `wsCluster needs a NATS bus: ${fix}`);
    if (config.bus !== undefined && !nats.aliases.includes(config.bus)) {
      throw new ConfigError(
        'config.invalid',
        `wsCluster.bus "${config.bus}" is not a NATS bus (services.buses with driver nats: ${nats.aliases.join(', ')})`,
        { details: { key: 'wsCluster.bus', alias: config.bus, known: nats.aliases } },
      );
    }
    const alias = config.bus;
    const url = redactUrl(nats.url(alias));
    const origin = kernel.instanceId;
    const ttlMs = config.roster.ttlMs;
    const rosterOn = config.roster.driver === 'nats';
    const heartbeatMs = config.roster.heartbeatMs ?? Math.max(50, Math.floor(ttlMs / 3));
    const service = api.use('presence');
    const apps = new Map<string, AppState>();
    const stats = { published: 0, received: 0, malformed: 0, publishErrors: 0, dropped: 0 };
    let nc: NatsConnection | undefined;
    /** Fan-out frames go through it: nothing accepted is lost across a reconnect (bounded). */
    let outbox: Awaited<ReturnType<NatsConnections['outbox']>> | undefined;
    /** Other instances by the time we last heard from them (the peers to wait for after a reconnect). */
    const lastSeen = new Map<string, number>();
    let peerWait: { expected: string[]; heard: Set<string>; timer: NodeJS.Timeout } | undefined;
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

    // Fan-out frames: buffered while NATS is down and sent in order after the reconnect, once the
    // peers are back (an instance that re-subscribes later than us would miss them otherwise).
    const fanout = (subject: string, data: Uint8Array) => {
      if (!outbox) return publish(subject, data);
      stats.published++;
      outbox.publish(subject, data).catch((error: unknown) => {
        stats.dropped++;
        warn(error, 'fan-out (reconnect buffer full: frame dropped)');
      });
    };

    const resumeFanout = () => {
      if (peerWait) clearTimeout(peerWait.timer);
      peerWait = undefined;
      outbox?.resume();
    };

    /** After a reconnect: hold the fan-out until every recently seen peer spoke again (bounded). */
    const awaitPeers = () => {
      const since = Date.now() - ttlMs;
      const expected = [...lastSeen].filter(([, t]) => t >= since).map(([o]) => o);
      if (peerWait) clearTimeout(peerWait.timer);
      peerWait = undefined;
      if (expected.length === 0 || config.reconnectBuffer.peerWaitMs === 0) return resumeFanout();
      const timer = setTimeout(resumeFanout, config.reconnectBuffer.peerWaitMs);
      timer.unref();
      peerWait = { expected, heard: new Set(), timer };
    };

    /** Heartbeats answer a `hello` even without the roster: they tell the new instance we are back. */
    const heartbeat = (st: AppState, answer = false) => {
      if (!rosterOn && !answer) return;
      for (const frame of encodeHeartbeats(kernel.codec, origin, rosterOn ? [...st.local.values()] : [])) publish(st.subject, frame);
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
      if (m.kind === 'bye') lastSeen.delete(m.origin);
      else lastSeen.set(m.origin, Date.now());
      if (peerWait) {
        peerWait.heard.add(m.origin);
        if (peerWait.expected.every((o) => peerWait?.heard.has(o))) resumeFanout();
      }
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
          heartbeat(st, true);
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

    api.tap('presence', (ev: PresenceEvent) => {
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
        if (frame) fanout(st.subject, frame);
      } catch (error) {
        warn(error, `encoding a ${ev.kind} event`);
      }
    });

    const attach = async (conn: NatsConnection) => {
      if (stopped) return;
      outbox = await nats.outbox(alias, {
        label: 'ws-cluster',
        maxMessages: config.reconnectBuffer.messages,
        maxBytes: config.reconnectBuffer.bytes,
        autoResume: false,
        onReconnect: () => {
          if (stopped) return;
          announce();
          awaitPeers();
        },
      });
      if (stopped) {
        await outbox.close(0);
        return;
      }
      nc = conn;
      linkUp = !conn.isClosed();
      for (const st of apps.values()) {
        subs.push(conn.subscribe(st.subject, { callback: (err, msg) => (err ? warn(err, 'subscription') : onMessage(st, msg.data)) }));
      }
      void (async () => {
        // Ends when the bus closes the connection at shutdown.
        for await (const s of conn.status()) {
          if (stopped) return;
          if (s.type === 'disconnect') {
            linkUp = false;
            log.warn({ server: redactUrl(s.server) }, 'ws-cluster: NATS disconnected; fan-out paused (local delivery continues)');
          } else if (s.type === 'reconnect') {
            linkUp = true;
            log.info(
              { server: redactUrl(s.server) },
              'ws-cluster: NATS reconnected; fan-out resumes (held frames follow once peers are back)',
            );
          }
        }
      })().catch(() => {});
      announce();
    };

    api.provide('ws-cluster', {
      instanceId: origin,
      stats: () => ({
        connected: linkUp && nc !== undefined && !nc.isClosed(),
        ...stats,
        pending: outbox?.stats().pending ?? 0,
        remoteMembers: [...apps.values()].reduce((n, st) => n + st.remote.size, 0),
      }),
    });

    api.tap('boot', async () => {
      const connection = nats.connection(alias);
      try {
        await attach(
          await within(
            connection,
            config.connectTimeoutMs,
            () => new MegaError('ws_cluster.unavailable', `NATS at ${url} not connected yet`),
          ),
        );
        log.info({ url, bus: alias, instanceId: origin, ttlMs: rosterOn ? ttlMs : undefined }, 'ws-cluster: fan-out on NATS');
      } catch (error) {
        // Boot goes on with local-only presence; the bus keeps connecting and fan-out starts when it is up.
        log.warn(
          { err: error, url, bus: alias },
          'ws-cluster: NATS unreachable at boot; fan-out starts once the bus connects (local delivery only until then)',
        );
        void (async () => {
          let pending = connection;
          let delay = 500;
          while (!stopped && !nc) {
            try {
              await attach(await pending);
              if (!stopped) log.info({ url, bus: alias }, 'ws-cluster: fan-out on NATS');
            } catch {
              // The owner gave up on this attempt: ask again after a backoff (500 ms doubling to 10 s).
              await new Promise((r) => setTimeout(r, delay).unref());
              delay = Math.min(delay * 2, 10_000);
              pending = nats.connection(alias);
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

    // Runs before ws-presence's and the bus's shutdown: tell the others to drop our members, then
    // stop publishing. The connection belongs to the bus, which drains and closes it after this.
    api.onShutdown(async () => {
      stopped = true;
      for (const t of timers) clearInterval(t);
      if (peerWait) clearTimeout(peerWait.timer);
      peerWait = undefined;
      const box = outbox;
      outbox = undefined;
      for (const st of apps.values()) st.presence.setRosterProvider(undefined);
      const conn = nc;
      nc = undefined;
      linkUp = false;
      if (!conn || conn.isClosed()) {
        await box?.close(0);
        return;
      }
      // Frames still held first (sent if the link is up; bounded wait for the server's confirmation),
      // then `bye`, so no frame of ours follows it.
      box?.resume();
      await box?.close(2000);
      for (const st of apps.values()) {
        try {
          conn.publish(st.subject, encodeControl(kernel.codec, origin, 'bye'));
        } catch (error) {
          if (!isMegaError(error)) log.debug({ err: errorSummary(error) }, 'ws-cluster: bye not sent');
        }
      }
      for (const s of subs.splice(0)) s.unsubscribe();
      // Flush so the byes leave before the bus drains; bounded, since a broken link may never answer.
      await within(conn.flush(), 2000, () => new Error('flush timed out')).catch(() => {});
    });
  },
});
