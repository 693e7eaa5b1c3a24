/**
 * One app's link to the hub. Local delivery never waits on it: outbound frames are written to the
 * socket when the link is up and dropped (counted) otherwise; presence is restored on every
 * (re)connect by re-joining the configured channels and every open local session (resync), then
 * a `sync` rebuilds the remote roster. Reconnects use jittered exponential backoff; a bad token
 * (1008 hub.unauthorized) and a replaced link (4409) are fatal and not retried; a bridgeId still held
 * by a live link (1008 hub.bridge_id_in_use, e.g. the old link of a half-open connection the hub has
 * not yet timed out) is retried with backoff.
 */
import { redactUrl } from '@mega/adapters';
import type { Codec, Logger, PresenceEvent } from '@mega/kernel';
import { PreparedMessage } from '@mega/ws';
import type { Presence, PresenceEntry } from '@mega/ws-presence';
import WebSocket from 'ws';
import type { LinkConfig } from './config.js';
import type { FromHub, HubSession } from './protocol.js';
import { decodeFromHub, toHub } from './protocol.js';

export type LinkState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'failed' | 'stopped';

export interface LinkStatus {
  state: LinkState;
  bridgeId: string;
  url: string;
  hubId?: string;
  protocolVersion?: number;
  /** The `deflate` capability was negotiated on the current link. */
  deflate?: boolean;
  /** What the token allows (register_ok.role): only `admin` reaches other bridges' sessions with disconnect. */
  role?: 'bridge' | 'admin';
  connectedAt?: number;
  /** Successful registrations so far (1 = the first connect). */
  connects: number;
  /** Failed attempts since the last successful one. */
  attempts: number;
  lastClose?: { code: number; reason: string };
  lastError?: string;
  sent: number;
  received: number;
  /** Outbound frames dropped while the link was down (presence is resynced instead). */
  dropped: number;
  remoteSessions: number;
}

const FATAL_REASONS = new Set(['hub.unauthorized', 'hub.register_required', 'hub.invalid_register']);
const DEFLATE_MIN = 1024;

interface LocalSession {
  ns: string;
  userId: string;
  channels: string[];
  metadata?: Record<string, unknown>;
}

export class HubLink {
  readonly #config: LinkConfig;
  readonly #presence: Presence;
  readonly #codec: Codec;
  readonly #log: Logger;
  readonly #instanceId: string;
  #ws: WebSocket | undefined;
  #state: LinkState = 'idle';
  #registered = false;
  #deflate = false;
  #heartbeatMs = 25_000;
  #maxFrameBytes = 1024 * 1024;
  #lastHeard = 0;
  #timers: NodeJS.Timeout[] = [];
  #retryTimer: NodeJS.Timeout | undefined;
  #status: Omit<LinkStatus, 'state' | 'remoteSessions' | 'bridgeId' | 'url'> = {
    connects: 0,
    attempts: 0,
    sent: 0,
    received: 0,
    dropped: 0,
  };
  /** Open local sessions (from the presence hook), what a resync re-joins. */
  readonly local = new Map<string, LocalSession>();
  /** Other bridges' sessions, from join/leave/metadata/bulk_leave and sync. */
  readonly remote = new Map<string, HubSession & { bridgeId: string }>();
  #syncing: Map<string, HubSession & { bridgeId: string }> | undefined;
  #syncId = 0;
  #waiters: Array<() => void> = [];

  constructor(config: LinkConfig, presence: Presence, codec: Codec, log: Logger, instanceId: string) {
    this.#config = config;
    this.#presence = presence;
    this.#codec = codec;
    this.#log = log;
    this.#instanceId = instanceId;
  }

  get state(): LinkState {
    return this.#state;
  }

  status(): LinkStatus {
    return {
      state: this.#state,
      bridgeId: this.#config.bridgeId,
      url: redactUrl(this.#config.url),
      ...this.#status,
      remoteSessions: this.remote.size,
    };
  }

  /** The subscriber session of a configured channel (protocol README convention). */
  subscriberSession(channel: string): HubSession {
    return { sessionId: `bridge:${this.#config.bridgeId}#${channel}`, userId: `bridge:${this.#config.bridgeId}`, channels: [channel] };
  }

  /** One attempt; resolves true when registered. Failure schedules background reconnects. */
  async start(): Promise<boolean> {
    const ok = await this.#connect();
    if (!ok && this.#state !== 'failed' && this.#state !== 'stopped') this.#scheduleReconnect();
    return ok;
  }

  /** Resolves once registered (tests, admin tools); rejects after `timeoutMs`. */
  whenConnected(timeoutMs = 10_000): Promise<void> {
    if (this.#state === 'connected') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`hub link not connected within ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  async stop(): Promise<void> {
    this.#state = 'stopped';
    clearTimeout(this.#retryTimer);
    this.#clearTimers();
    const ws = this.#ws;
    this.#ws = undefined;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        ws.terminate();
        resolve();
      }, 1000);
      ws.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      ws.close(1000, 'bridge stopping');
    });
  }

  /** Presence hook: mirror local events to the hub. Never throws, never waits. */
  onPresence(ev: PresenceEvent): void {
    switch (ev.kind) {
      case 'join': {
        const prior = this.local.get(ev.sessionId);
        const s: LocalSession = {
          ns: ev.ns,
          userId: ev.userId ?? ev.sessionId,
          channels: ev.channels,
          ...(ev.metadata ? { metadata: ev.metadata } : {}),
        };
        this.local.set(ev.sessionId, s);
        // Hub joins are additive: channels the session dropped must be left explicitly.
        const now = new Set(this.#hubChannels(s));
        const removed = prior ? this.#hubChannels(prior).filter((c) => !now.has(c)) : [];
        if (removed.length) this.#send(toHub.leave(ev.sessionId, removed));
        this.#send(toHub.join(this.#toHub(ev.sessionId, s)));
        return;
      }
      case 'leave':
        if (this.local.get(ev.sessionId)?.ns !== ev.ns) return;
        this.local.delete(ev.sessionId);
        this.#send(toHub.leave(ev.sessionId));
        return;
      case 'metadata': {
        const s = this.local.get(ev.sessionId);
        if (s) s.metadata = ev.metadata;
        this.#send(toHub.metadata(ev.sessionId, ev.metadata));
        return;
      }
      case 'broadcast':
        this.#send(
          toHub.broadcast({
            channel: ev.channel ?? ev.ns,
            ns: ev.ns,
            message: typeof ev.frame === 'string' ? ev.frame : ev.frame.toString('utf8'),
            ...(ev.exceptSessionIds ? { exceptSessionIds: ev.exceptSessionIds } : {}),
          }),
        );
        return;
      case 'direct':
        this.#send(
          toHub.direct({
            userId: ev.userId,
            ...(ev.ns ? { ns: ev.ns } : {}),
            message: typeof ev.frame === 'string' ? ev.frame : ev.frame.toString('utf8'),
          }),
        );
        return;
      case 'disconnect':
        this.#send(toHub.disconnect(ev.sessionId, ev.mode, ev.reason));
        return;
    }
  }

  /** Cluster roster for `ctx.presence.list()`: remote sessions joined to the namespace (its ns channel). */
  rosterList(ns: string, channel: string | undefined, local: PresenceEntry[]): PresenceEntry[] {
    if (this.remote.size === 0) return local;
    const seen = new Set(local.map((e) => e.sessionId));
    const out = [...local];
    for (const r of this.remote.values()) {
      if (seen.has(r.sessionId) || !r.channels.includes(ns) || r.userId.startsWith('bridge:')) continue;
      if (channel !== undefined && !r.channels.includes(channel)) continue;
      out.push({
        sessionId: r.sessionId,
        userId: r.userId,
        channels: r.channels.filter((c) => c !== ns),
        ...(r.metadata ? { metadata: r.metadata } : {}),
      });
    }
    return out;
  }

  /** Session channels on the hub: the presence channels plus the namespace (for namespace-wide broadcasts). */
  #hubChannels(s: LocalSession): string[] {
    return s.channels.includes(s.ns) ? s.channels.slice(0, 256) : [...s.channels.slice(0, 255), s.ns];
  }

  #toHub(sessionId: string, s: LocalSession): HubSession {
    return { sessionId, userId: s.userId, channels: this.#hubChannels(s), ...(s.metadata ? { metadata: s.metadata } : {}) };
  }

  #send(text: string): void {
    const ws = this.#ws;
    if (!ws || !this.#registered || ws.readyState !== WebSocket.OPEN) {
      this.#status.dropped++;
      return;
    }
    try {
      if (this.#deflate && text.length >= DEFLATE_MIN) ws.send(this.#codec.deflate(Buffer.from(text, 'utf8')), { binary: true });
      else ws.send(text);
      this.#status.sent++;
    } catch (error) {
      this.#status.dropped++;
      this.#log.debug({ err: error }, 'hub-bridge: send failed');
    }
  }

  #connect(): Promise<boolean> {
    this.#state = this.#status.connects === 0 && this.#status.attempts === 0 ? 'connecting' : 'reconnecting';
    const cfg = this.#config;
    return new Promise<boolean>((resolve) => {
      let settled = false;
      const done = (ok: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(ok);
      };
      const ws = new WebSocket(cfg.url, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024, handshakeTimeout: cfg.connectTimeoutMs });
      this.#ws = ws;
      this.#registered = false;
      const timer = setTimeout(() => {
        this.#status.lastError = `no register_ok within ${cfg.connectTimeoutMs} ms`;
        ws.terminate();
        done(false);
      }, cfg.connectTimeoutMs);
      ws.on('open', () => {
        ws.send(
          toHub.register({
            token: cfg.token,
            bridgeId: cfg.bridgeId,
            instanceId: this.#instanceId,
            ...(cfg.compression ? { capabilities: ['deflate'] } : {}),
          }),
        );
      });
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (ws !== this.#ws) return;
        this.#lastHeard = Date.now();
        let msg: FromHub;
        try {
          const text = isBinary
            ? this.#codec.inflate(data, { maxOutput: this.#maxFrameBytes + 4096 }).toString('utf8')
            : data.toString('utf8');
          msg = decodeFromHub(text);
        } catch (error) {
          this.#log.warn({ err: error }, 'hub-bridge: dropped a malformed frame from the hub');
          return;
        }
        this.#status.received++;
        if (msg.type === 'register_ok') {
          this.#onRegistered(msg.payload);
          done(true);
          return;
        }
        this.#onFrame(msg);
      });
      ws.on('error', (error) => {
        this.#status.lastError = error.message;
      });
      ws.on('close', (code: number, reasonBuf: Buffer) => {
        const reason = reasonBuf.toString('utf8');
        if (ws !== this.#ws && this.#ws !== undefined) return;
        const wasUp = this.#registered;
        this.#registered = false;
        this.#clearTimers();
        // A refused TCP connect also ends in 1006; keep the last real close (e.g. 4503) visible.
        if (wasUp || code !== 1006) this.#status.lastClose = { code, reason };
        done(false);
        if (this.#state === 'stopped') return;
        if ((code === 1008 && FATAL_REASONS.has(reason)) || code === 4409) {
          this.#state = 'failed';
          this.#log.error(
            { code, reason, url: redactUrl(cfg.url), bridgeId: cfg.bridgeId },
            'hub-bridge: the hub refused this bridge; not retrying (fix the config)',
          );
          return;
        }
        if (wasUp && code === 4503 && cfg.requeueClientsOnDrain) {
          const sessions = [...this.local.keys()];
          this.#log.warn({ sessions: sessions.length }, 'hub-bridge: hub draining; requeueing local clients (4503)');
          for (const id of sessions) this.#presence.disconnectSession(id, 'requeue', 'hub draining');
        }
        if (wasUp) {
          this.#log.warn({ code, reason, url: redactUrl(cfg.url) }, 'hub-bridge: link lost; reconnecting (local delivery continues)');
          this.#scheduleReconnect();
        }
      });
    });
  }

  #onRegistered(p: Extract<FromHub, { type: 'register_ok' }>['payload']): void {
    this.#registered = true;
    this.#state = 'connected';
    this.#heartbeatMs = p.heartbeatMs;
    this.#maxFrameBytes = p.maxFrameBytes;
    this.#deflate = p.capabilities.includes('deflate');
    this.#status.hubId = p.hubId;
    this.#status.protocolVersion = p.protocolVersion;
    this.#status.deflate = this.#deflate;
    this.#status.role = p.role ?? 'bridge';
    this.#status.connectedAt = Date.now();
    this.#status.connects++;
    this.#status.attempts = 0;
    this.#lastHeard = Date.now();
    this.#log.info(
      { url: redactUrl(this.#config.url), bridgeId: this.#config.bridgeId, hubId: p.hubId, connects: this.#status.connects },
      'hub-bridge: registered',
    );
    // Liveness both ways: our heartbeat every heartbeatMs/2; 2 x heartbeatMs of hub silence = dead link.
    const beat = setInterval(
      () => {
        if (Date.now() - this.#lastHeard > 2 * this.#heartbeatMs) {
          this.#log.warn('hub-bridge: hub silent for 2 heartbeats; reconnecting');
          this.#ws?.terminate();
          return;
        }
        this.#send(toHub.heartbeat(Date.now()));
      },
      Math.max(50, Math.floor(this.#heartbeatMs / 2)),
    );
    beat.unref();
    this.#timers.push(beat);
    this.#resync();
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Re-join the configured channels and every open session, then rebuild the remote roster. */
  #resync(): void {
    for (const c of this.#config.channels) this.#send(toHub.join(this.subscriberSession(c)));
    for (const [id, s] of this.local) this.#send(toHub.join(this.#toHub(id, s)));
    this.#syncing = new Map();
    this.#send(toHub.sync(`resync-${++this.#syncId}`));
  }

  #onFrame(msg: FromHub): void {
    switch (msg.type) {
      case 'broadcast': {
        const p = msg.payload;
        const prepared = new PreparedMessage(Buffer.from(JSON.stringify(p.message), 'utf8'));
        const namespaces = p.ns ? [p.ns] : [...new Set([...this.local.values()].map((s) => s.ns))];
        for (const ns of namespaces) {
          // A broadcast on the namespace channel is namespace-wide (joined or not).
          this.#presence.deliverBroadcast(ns, prepared, p.channel === ns ? undefined : p.channel, p.exceptSessionIds);
        }
        return;
      }
      case 'direct':
        this.#presence.deliverDirect(
          msg.payload.userId,
          new PreparedMessage(Buffer.from(JSON.stringify(msg.payload.message), 'utf8')),
          msg.payload.ns,
        );
        return;
      case 'disconnect':
        if (this.local.has(msg.payload.sessionId))
          this.#presence.disconnectSession(msg.payload.sessionId, msg.payload.mode, msg.payload.reason);
        return;
      case 'join': {
        const p = msg.payload;
        const r = this.remote.get(p.sessionId);
        if (r && r.bridgeId === p.bridgeId) {
          for (const c of p.channels) if (!r.channels.includes(c)) r.channels.push(c);
          if (p.metadata) r.metadata = p.metadata;
        } else {
          this.remote.set(p.sessionId, { ...p, channels: [...p.channels] });
        }
        // A session that moved to another bridge is no longer ours.
        return;
      }
      case 'leave': {
        const r = this.remote.get(msg.payload.sessionId);
        if (!r || r.bridgeId !== msg.payload.bridgeId) return;
        const chans = msg.payload.channels;
        if (chans) r.channels = r.channels.filter((c) => !chans.includes(c));
        else this.remote.delete(msg.payload.sessionId);
        return;
      }
      case 'metadata': {
        const r = this.remote.get(msg.payload.sessionId);
        if (r && r.bridgeId === msg.payload.bridgeId) r.metadata = msg.payload.metadata;
        return;
      }
      case 'bulk_leave':
        for (const id of msg.payload.sessionIds) if (this.remote.get(id)?.bridgeId === msg.payload.bridgeId) this.remote.delete(id);
        return;
      case 'sync': {
        if (!this.#syncing) return;
        for (const s of msg.payload.sessions) if (s.bridgeId !== this.#config.bridgeId) this.#syncing.set(s.sessionId, s);
        if (msg.payload.done) {
          this.remote.clear();
          for (const [id, s] of this.#syncing) this.remote.set(id, s);
          this.#syncing = undefined;
        }
        return;
      }
      case 'error':
        this.#log.warn({ code: msg.payload.code, type: msg.payload.type }, `hub-bridge: hub error: ${msg.payload.message}`);
        return;
      case 'heartbeat':
      case 'register_ok':
        return;
    }
  }

  #scheduleReconnect(): void {
    if (this.#state === 'stopped' || this.#state === 'failed') return;
    const r = this.#config.retry;
    this.#status.attempts++;
    if (r.retries >= 0 && this.#status.attempts > r.retries) {
      this.#state = 'failed';
      this.#log.error({ attempts: this.#status.attempts - 1 }, 'hub-bridge: giving up reconnecting (retry.retries reached)');
      return;
    }
    this.#state = 'reconnecting';
    const base = Math.min(r.maxTimeout, r.minTimeout * r.factor ** (this.#status.attempts - 1));
    // Jitter in [base/2, base): bridges restarted together do not reconnect in lockstep.
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    this.#retryTimer = setTimeout(() => {
      void this.#connect().then((ok) => {
        if (!ok && this.#state !== 'failed' && this.#state !== 'stopped') this.#scheduleReconnect();
      });
    }, delay);
    this.#retryTimer.unref();
  }

  #clearTimers(): void {
    for (const t of this.#timers.splice(0)) clearInterval(t);
  }
}
