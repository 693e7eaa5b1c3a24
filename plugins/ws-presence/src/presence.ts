/**
 * Presence for one app: who is connected where. Three local indices — namespace -> connections,
 * user -> connections, session -> connection — plus each joined connection's entry (user, session,
 * channels, metadata). Delivery is always local first; the kernel `presence` hook is called after
 * it so cluster transports (NATS, hub) can fan out, and local delivery never waits for them.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { App, Kernel, PresenceEvent } from '@mega/kernel';
import { MegaError, ValidationError } from '@mega/kernel';
import type { PreparedMessage, WsConnection, WsServer } from '@mega/ws';

export interface JoinOptions {
  userId: string;
  /**
   * The presence session id: opaque, visible to every cluster transport and roster reader, so never
   * an HTTP session id (nor anything that contains one). Leave it out and pass `httpSessionId`: presence
   * then makes one (`loginTag(httpSessionId).<random>`) and `joinSession` returns it.
   */
  sessionId?: string;
  /**
   * The HTTP session (e.g. `ctx.session.id`) the connection belongs to. Kept in this process only;
   * when that session is destroyed (`ctx.session.destroy()`, @mega/session) the connection is closed
   * with 1008 on whichever instance holds it (`endHttpSession`). Exclusive with `sessionId`.
   */
  httpSessionId?: string;
  /** Logical channels inside the namespace (broadcasts can target one). */
  channels?: readonly string[];
  metadata?: Record<string, unknown>;
}

/** A roster entry. */
export interface PresenceEntry {
  sessionId: string;
  userId: string;
  channels: string[];
  metadata?: Record<string, unknown>;
}

export interface PresenceMessage {
  type: string;
  payload?: unknown;
}

/**
 * A cluster roster (set by a cluster transport): `list()` returns what it answers, given the local
 * entries, so `ctx.presence.list()` is cluster-wide.
 */
export type RosterProvider = (ns: string, channel: string | undefined, local: PresenceEntry[]) => PresenceEntry[];

export interface BroadcastOptions {
  ns: string;
  /** Only connections that joined this channel; every connection of the namespace when absent. */
  channel?: string;
  message: PresenceMessage;
  exceptSessionIds?: readonly string[];
}

interface Entry {
  userId: string;
  sessionId: string;
  /** loginTag of the HTTP session the connection joined under, if any. */
  login: string | undefined;
  channels: Set<string>;
  metadata: Record<string, unknown> | undefined;
}

function nonEmpty(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new ValidationError('presence.invalid', `${what} must be a non-empty string`);
  return value;
}

/**
 * The opaque tag of an HTTP session in presence ids: SHA-256 over a label and the id, 22 base64url
 * characters (132 bits). One-way: the HTTP session id (32 random bytes) cannot be recovered from it,
 * so a roster reader (a hub bridge, another instance) learns nothing that opens the session.
 */
export function loginTag(httpSessionId: string): string {
  return createHash('sha256').update('mega.presence.login.v1\0').update(httpSessionId).digest('base64url').slice(0, 22);
}

function checkMessage(message: PresenceMessage | undefined): PresenceMessage {
  if (!message || typeof message.type !== 'string') throw new ValidationError('presence.invalid', 'message.type (string) is required');
  return message;
}

export class Presence {
  readonly #kernel: Kernel;
  readonly #ws: WsServer;
  readonly app: App;
  readonly #byNs = new Map<string, Set<WsConnection>>();
  readonly #byUser = new Map<string, Set<WsConnection>>();
  readonly #bySession = new Map<string, WsConnection>();
  readonly #byLogin = new Map<string, Set<WsConnection>>();
  readonly #entries = new Map<WsConnection, Entry>();
  #roster: RosterProvider | undefined;

  constructor(kernel: Kernel, ws: WsServer, app: App) {
    this.#kernel = kernel;
    this.#ws = ws;
    this.app = app;
  }

  /** Local connections of a namespace (joined or not). */
  connections(ns: string): ReadonlySet<WsConnection> {
    return this.#byNs.get(ns) ?? new Set();
  }

  /** The entry of a joined connection. */
  entryOf(conn: WsConnection): PresenceEntry | undefined {
    const e = this.#entries.get(conn);
    return e && toEntry(e);
  }

  /** Called by the plugin for every opened connection of this app. */
  track(conn: WsConnection): void {
    add(this.#byNs, conn.ns, conn);
  }

  /** Called by the plugin when a connection closes: removes it from every index. */
  untrack(conn: WsConnection): void {
    remove(this.#byNs, conn.ns, conn);
    this.leave(conn);
  }

  /**
   * Maps a connection to a user session. A session id already held by another connection moves to
   * this one: the old connection is detached from the indices (with a warning), not closed.
   */
  joinSession(conn: WsConnection, options: JoinOptions): string {
    if (!conn || typeof conn.sendPrepared !== 'function')
      throw new ValidationError('presence.invalid', 'joinSession needs a WS connection');
    const userId = nonEmpty(options?.userId, 'userId');
    let login: string | undefined;
    let sessionId: string;
    if (options.httpSessionId !== undefined) {
      if (options.sessionId !== undefined) {
        throw new ValidationError(
          'presence.invalid',
          'pass httpSessionId or sessionId, not both: presence makes the id from httpSessionId',
        );
      }
      login = loginTag(nonEmpty(options.httpSessionId, 'httpSessionId'));
      // The same connection joining again under the same login keeps its id.
      const current = this.#entries.get(conn);
      sessionId = current?.login === login ? current.sessionId : `${login}.${randomBytes(9).toString('base64url')}`;
    } else sessionId = nonEmpty(options?.sessionId, 'sessionId');
    const channels = options.channels ?? [];
    if (!Array.isArray(channels) || channels.some((c) => typeof c !== 'string')) {
      throw new ValidationError('presence.invalid', 'channels must be a list of strings');
    }
    if (conn.app !== this.app)
      throw new MegaError('presence.app_mismatch', `connection ${conn.id} belongs to app ${conn.app.name}, not ${this.app.name}`);
    if (!conn.isOpen) return sessionId;
    const prior = this.#bySession.get(sessionId);
    if (prior && prior !== conn) {
      this.#kernel.log.warn(
        { app: this.app.name, sessionId, priorConn: prior.id, conn: conn.id },
        'presence: duplicate session id; the previous connection is detached (not closed)',
      );
      this.#detach(prior);
    }
    const current = this.#entries.get(conn);
    if (current && (current.sessionId !== sessionId || current.userId !== userId)) this.leave(conn);
    const entry: Entry = { userId, sessionId, login, channels: new Set(channels), metadata: options.metadata };
    this.#entries.set(conn, entry);
    this.#bySession.set(sessionId, conn);
    add(this.#byUser, userId, conn);
    if (login !== undefined) add(this.#byLogin, login, conn);
    this.#emit({
      kind: 'join',
      app: this.app,
      ns: conn.ns,
      sessionId,
      userId,
      channels: [...entry.channels],
      ...(entry.metadata ? { metadata: entry.metadata } : {}),
    });
    return sessionId;
  }

  /**
   * Closes every connection joined under an HTTP session (`httpSessionId`), with 1008, on every
   * instance: this process's at once; for the others, each roster entry of the session's tag (the
   * cluster roster of ws-cluster or hub-bridge, across the app's WebSocket namespaces) gets a
   * `disconnect` event, which the transport routes to the instance holding it. @mega/session calls it
   * (through `sessions.onDestroy`) when a session is destroyed. Returns local closes + remote requests.
   */
  endHttpSession(httpSessionId: string, reason = 'session ended'): number {
    const login = loginTag(nonEmpty(httpSessionId, 'httpSessionId'));
    let n = 0;
    for (const conn of [...(this.#byLogin.get(login) ?? [])]) {
      conn.close(1008, reason);
      n++;
    }
    if (!this.#roster) return n;
    const prefix = `${login}.`;
    const seen = new Set<string>();
    for (const route of this.#ws.routes) {
      if (route.app !== this.app || seen.has(route.path)) continue;
      seen.add(route.path);
      for (const entry of this.list(route.path)) {
        if (!entry.sessionId.startsWith(prefix) || this.#bySession.has(entry.sessionId)) continue;
        this.#emit({ kind: 'disconnect', app: this.app, ns: '', sessionId: entry.sessionId, mode: 'kick', reason });
        n++;
      }
    }
    return n;
  }

  /** Removes a connection's session mapping (it stays connected). */
  leave(conn: WsConnection): void {
    const e = this.#entries.get(conn);
    if (!e) return;
    this.#detach(conn);
    this.#emit({ kind: 'leave', app: this.app, ns: conn.ns, sessionId: e.sessionId, userId: e.userId });
  }

  /** Replaces a session's metadata. False when the session is not joined here. */
  updateMetadata(sessionId: string, metadata: Record<string, unknown>): boolean {
    nonEmpty(sessionId, 'sessionId');
    if (!metadata || typeof metadata !== 'object' || Array.isArray(metadata)) {
      throw new ValidationError('presence.invalid', 'metadata must be an object');
    }
    const conn = this.#bySession.get(sessionId);
    const e = conn && this.#entries.get(conn);
    if (!conn || !e) return false;
    e.metadata = metadata;
    this.#emit({ kind: 'metadata', app: this.app, ns: conn.ns, sessionId, metadata });
    return true;
  }

  /** Installs (or removes) the cluster roster behind `list()`; one per app. */
  setRosterProvider(provider: RosterProvider | undefined): void {
    this.#roster = provider;
  }

  /** Joined sessions of a namespace (optionally one channel): cluster-wide with a roster provider. */
  list(ns: string, channel?: string): PresenceEntry[] {
    const local = this.localList(ns, channel);
    return this.#roster ? this.#roster(ns, channel, local) : local;
  }

  /**
   * Closes the local connection holding `sessionId` (kick 1008, requeue 4503) and returns true; for a
   * session not held here, emits a `disconnect` event (cluster transports route it) and returns false.
   */
  disconnectSession(sessionId: string, mode: 'kick' | 'requeue', reason?: string): boolean {
    nonEmpty(sessionId, 'sessionId');
    const conn = this.#bySession.get(sessionId);
    if (conn) {
      conn.close(mode === 'kick' ? 1008 : 4503, reason ?? mode);
      return true;
    }
    this.#emit({ kind: 'disconnect', app: this.app, ns: '', sessionId, mode, ...(reason !== undefined ? { reason } : {}) });
    return false;
  }

  /** Joined sessions of a namespace (optionally one channel), local to this process. */
  localList(ns: string, channel?: string): PresenceEntry[] {
    const out: PresenceEntry[] = [];
    for (const conn of this.#byNs.get(ns) ?? []) {
      const e = this.#entries.get(conn);
      if (!e || !conn.isOpen || (channel !== undefined && !e.channels.has(channel))) continue;
      out.push(toEntry(e));
    }
    return out;
  }

  /** Sessions of one user (any namespace). */
  sessionsOf(userId: string): PresenceEntry[] {
    const out: PresenceEntry[] = [];
    for (const conn of this.#byUser.get(userId) ?? []) {
      const e = this.#entries.get(conn);
      if (e) out.push(toEntry(e));
    }
    return out;
  }

  /** Delivers locally (framed once), then hands the event to the `presence` hook. Returns local deliveries. */
  broadcast(options: BroadcastOptions): number {
    const ns = nonEmpty(options?.ns, 'ns');
    const message = checkMessage(options.message);
    const prepared = this.#ws.prepare({ type: message.type, ns, payload: message.payload });
    const n = this.deliverBroadcast(ns, prepared, options.channel, options.exceptSessionIds);
    const except = options.exceptSessionIds?.length ? [...options.exceptSessionIds] : undefined;
    this.#emit({
      kind: 'broadcast',
      app: this.app,
      ns,
      frame: prepared.envelope,
      ...(options.channel !== undefined ? { channel: options.channel } : {}),
      ...(except ? { exceptSessionIds: except } : {}),
    });
    return n;
  }

  /** Sends only to the connections mapped to `userId` (optionally in one namespace). */
  directToUser(userId: string, message: PresenceMessage, options: { ns?: string } = {}): number {
    nonEmpty(userId, 'userId');
    const m = checkMessage(message);
    const prepared = this.#ws.prepare({ type: m.type, payload: m.payload });
    const n = this.deliverDirect(userId, prepared, options.ns);
    this.#emit({ kind: 'direct', app: this.app, ns: options.ns ?? '', userId, frame: prepared.envelope });
    return n;
  }

  /** Local delivery only (cluster transports call this for events from other instances). */
  deliverBroadcast(ns: string, message: PreparedMessage, channel?: string, exceptSessionIds?: readonly string[]): number {
    const set = this.#byNs.get(ns);
    if (!set) return 0;
    const except = exceptSessionIds?.length ? new Set(exceptSessionIds) : null;
    let n = 0;
    for (const conn of set) {
      if (channel !== undefined || except) {
        const e = this.#entries.get(conn);
        if (channel !== undefined && !e?.channels.has(channel)) continue;
        if (except && e && except.has(e.sessionId)) continue;
      }
      if (conn.sendPrepared(message)) n++;
    }
    return n;
  }

  /** Local delivery only, to one user's connections. */
  deliverDirect(userId: string, message: PreparedMessage, ns?: string): number {
    let n = 0;
    for (const conn of this.#byUser.get(userId) ?? []) {
      if (ns !== undefined && ns !== '' && conn.ns !== ns) continue;
      if (conn.sendPrepared(message)) n++;
    }
    return n;
  }

  /** Shutdown: every joined session leaves (hook events), then the indices are cleared. */
  async close(): Promise<void> {
    const events: PresenceEvent[] = [];
    for (const [conn, e] of this.#entries)
      events.push({ kind: 'leave', app: this.app, ns: conn.ns, sessionId: e.sessionId, userId: e.userId });
    this.#entries.clear();
    this.#bySession.clear();
    this.#byUser.clear();
    this.#byLogin.clear();
    this.#byNs.clear();
    const hook = this.#kernel.hooks.presence;
    if (hook.isUsed()) {
      await Promise.all(
        events.map((ev) =>
          hook
            .promise(ev)
            .catch((error: unknown) =>
              this.#kernel.log.warn(
                { err: error, plugin: (error as { plugin?: string }).plugin, hook: 'presence' },
                'presence hook failed on shutdown',
              ),
            ),
        ),
      );
    }
  }

  #detach(conn: WsConnection): void {
    const e = this.#entries.get(conn);
    if (!e) return;
    this.#entries.delete(conn);
    remove(this.#byUser, e.userId, conn);
    if (e.login !== undefined) remove(this.#byLogin, e.login, conn);
    if (this.#bySession.get(e.sessionId) === conn) this.#bySession.delete(e.sessionId);
  }

  #emit(event: PresenceEvent): void {
    const hook = this.#kernel.hooks.presence;
    if (!hook.isUsed()) return;
    hook
      .promise(event)
      .catch((error: unknown) =>
        this.#kernel.log.warn(
          { err: error, plugin: (error as { plugin?: string }).plugin, hook: 'presence', kind: event.kind },
          'presence hook failed (local delivery done)',
        ),
      );
  }
}

function toEntry(e: Entry): PresenceEntry {
  return { sessionId: e.sessionId, userId: e.userId, channels: [...e.channels], ...(e.metadata ? { metadata: e.metadata } : {}) };
}

function add<K>(map: Map<K, Set<WsConnection>>, key: K, conn: WsConnection): void {
  let set = map.get(key);
  if (!set) {
    set = new Set();
    map.set(key, set);
  }
  set.add(conn);
}

function remove<K>(map: Map<K, Set<WsConnection>>, key: K, conn: WsConnection): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(conn);
  if (set.size === 0) map.delete(key);
}
