/**
 * The WebSocket side of the HTTP server: answers `upgrade` requests for the WS routes apps declared
 * (`router.ws`), runs `before`, negotiates `mega.v<N>` and permessage-deflate, and keeps the
 * registry of open connections (heartbeat sweeps, broadcast, shutdown). It is the `ws` service
 * other plugins (ASP, presence) extend through `onOpen` / `onClose`.
 */
import { type IncomingMessage, type Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { HttpServer } from '@mega/http';
import type { Kernel, MegaContext, RouteDefinition } from '@mega/kernel';
import { isMegaError, MegaError } from '@mega/kernel';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { WsConfig } from './config.js';
import { CloseCode, type Runtime, WsConnection, type WsTraffic } from './connection.js';
import { ConnectionDeflate, negotiateDeflate, SharedDeflate } from './deflate.js';
import type { ExtensionOffer } from './handshake.js';
import { acceptKey, checkUpgrade, HandshakeError, httpError, negotiateProtocol, parseExtensions } from './handshake.js';
import { loadNativeSend } from './native.js';
import { PreparedMessage } from './prepared.js';
import type { CompiledRoute } from './route.js';
import { compileRoute } from './route.js';
import type { CloseInfo, OutboundMessage } from './types.js';

export type OpenListener = (conn: WsConnection) => void;
export type CloseListener = (conn: WsConnection, info: CloseInfo) => void;

/** Broadcast target filter: return false to skip a connection. */
export type ConnectionFilter = (conn: WsConnection) => boolean;

export class WsServer {
  readonly #kernel: Kernel;
  readonly #config: WsConfig;
  readonly #httpServer: HttpServer;
  #rt: Runtime | undefined;
  #routes: CompiledRoute[] = [];
  #byPath = new Map<string, CompiledRoute[]>();
  #conns = new Map<CompiledRoute, Set<WsConnection>>();
  #openListeners: OpenListener[] = [];
  #closeListeners: CloseListener[] = [];
  #sweeps: NodeJS.Timeout[] = [];
  #http: Server | undefined;
  #stopping = false;
  #seq = 0;
  #prefix: string;
  #count = 0;
  #drained: (() => void) | undefined;
  /** Upgrades checked and handed to Fastify, by raw request, until their route handler takes them. */
  #pending = new WeakMap<IncomingMessage, PendingUpgrade>();

  constructor(kernel: Kernel, config: WsConfig, http: HttpServer) {
    this.#kernel = kernel;
    this.#config = config;
    this.#httpServer = http;
    this.#prefix = `${kernel.instanceId.slice(0, 8)}-`;
  }

  /** Compiled WS routes (after boot). */
  get routes(): readonly CompiledRoute[] {
    return this.#routes;
  }

  /** Open connections right now. */
  get size(): number {
    return this.#count;
  }

  /** Messages and bytes of every connection since start (`WsTraffic`). */
  readonly traffic: WsTraffic = { messagesIn: { text: 0, binary: 0 }, messagesOut: 0, bytesIn: 0, bytesOut: 0 };

  /**
   * The broadcast fan-out: whether the addon writes broadcast frames (`native`), how many deliveries
   * it wrote, and how many it handed back to Node whole or in part (a full socket buffer, an error).
   */
  get fanout(): { native: boolean; deliveries: number; handedBack: number } {
    const rt = this.#runtime();
    return { native: rt.native !== null, deliveries: rt.fanout.native, handedBack: rt.fanout.handedBack };
  }

  /** Connections holding a per-connection deflate context. */
  get compressionContexts(): number {
    return this.#rt?.shared.contexts ?? 0;
  }

  /** Called for every connection after the handshake, before `onConnect`. Throwing closes it (1008 for auth errors, else 1011). */
  onOpen(listener: OpenListener): void {
    this.#openListeners.push(listener);
  }

  /** Called for every connection that closes, before the channel's `onDisconnect`. */
  onClose(listener: CloseListener): void {
    this.#closeListeners.push(listener);
  }

  /** Open connections, optionally of one namespace (route path) and app. */
  *connections(ns?: string, app?: string): Generator<WsConnection> {
    for (const [route, set] of this.#conns) {
      if ((ns !== undefined && route.path !== ns) || (app !== undefined && route.app.name !== app)) continue;
      for (const c of set) if (c.isOpen) yield c;
    }
  }

  /** Serialises a message once for many recipients. */
  prepare(message: OutboundMessage): PreparedMessage {
    return PreparedMessage.from(this.#runtime().codec, message);
  }

  /** Sends one message to many connections, framed once; returns how many it was written to. */
  broadcast(targets: Iterable<WsConnection>, message: OutboundMessage | PreparedMessage, filter?: ConnectionFilter): number {
    const prepared = message instanceof PreparedMessage ? message : this.prepare(message);
    let n = 0;
    for (const c of targets) {
      if (filter && !filter(c)) continue;
      if (c.sendPrepared(prepared)) n++;
    }
    return n;
  }

  // ------------------------------------------------------------------------------ boot / stop

  /** Compiles the WS route definitions (after the `route` hook) and starts heartbeat sweeps. */
  compile(defs: readonly RouteDefinition[]): void {
    const rt = this.#runtime();
    for (const def of defs) {
      const route = compileRoute(def, this.#config);
      const same = this.#byPath.get(route.path) ?? [];
      const clash = same.find((r) => r.app === route.app || sameHosts(r.app.hosts, route.app.hosts));
      if (clash) {
        throw new MegaError('ws.route_conflict', `ws route ${route.path} is declared twice (apps ${clash.app.name} and ${route.app.name})`);
      }
      same.push(route);
      this.#byPath.set(route.path, same);
      this.#routes.push(route);
      this.#conns.set(route, new Set());
    }
    const intervals = new Set(this.#routes.map((r) => r.heartbeatMs).filter((ms) => ms > 0));
    for (const ms of intervals) {
      const routes = this.#routes.filter((r) => r.heartbeatMs === ms);
      const timer = setInterval(() => {
        for (const r of routes) for (const c of this.#conns.get(r) ?? []) c.heartbeat();
      }, ms);
      timer.unref();
      this.#sweeps.push(timer);
    }
    if (this.#routes.length > 0) {
      this.#kernel.log.debug({ routes: this.#routes.map((r) => r.path), codec: rt.codec.backend }, 'ws routes ready');
    }
  }

  /** Listens for upgrades on the HTTP server. */
  attach(server: Server): void {
    this.#http = server;
    server.on('upgrade', this.#onUpgrade);
  }

  /** Closes every connection with 1001 and waits for them (bounded by closeTimeoutMs, then terminates). */
  async close(): Promise<void> {
    this.#stopping = true;
    for (const t of this.#sweeps) clearInterval(t);
    this.#sweeps = [];
    if (this.#count > 0) {
      const drained = new Promise<void>((resolve) => {
        this.#drained = resolve;
      });
      for (const set of this.#conns.values()) for (const c of set) c.close(CloseCode.GOING_AWAY, 'server shutdown');
      const timeout = this.#config.closeTimeoutMs;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([drained, new Promise<void>((r) => (timer = setTimeout(r, timeout + 100)))]);
      clearTimeout(timer);
      for (const set of this.#conns.values()) for (const c of set) c.terminate();
    }
    this.#http?.off('upgrade', this.#onUpgrade);
  }

  // --------------------------------------------------------------------------------- upgrade

  #runtime(): Runtime {
    if (this.#rt) return this.#rt;
    const codec = this.#kernel.codec;
    this.#rt = {
      kernel: this.#kernel,
      codec,
      production: this.#kernel.env === 'production',
      closeTimeoutMs: this.#config.closeTimeoutMs,
      shared: new SharedDeflate(codec),
      traffic: this.traffic,
      native: loadNativeSend(codec),
      fanout: { native: 0, handedBack: 0 },
      closed: (conn, info) => this.#closed(conn, info),
    };
    return this.#rt;
  }

  #closed(conn: WsConnection, info: CloseInfo): void {
    const set = this.#conns.get(conn.route);
    if (set?.delete(conn)) this.#count--;
    if (conn.compressed && connDeflate.get(conn)?.stateful) this.#runtime().shared.release();
    connDeflate.delete(conn);
    for (const l of this.#closeListeners) {
      try {
        l(conn, info);
      } catch (error) {
        this.#kernel.log.error({ err: error, connId: conn.id }, 'ws close listener failed');
      }
    }
    if (this.#count === 0) this.#drained?.();
  }

  readonly #onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    try {
      this.#route(req, socket as Socket, head);
    } catch (error) {
      this.#kernel.log.error({ err: error }, 'ws upgrade failed');
      refuse(socket as Socket, 500, 'internal', 'upgrade failed');
    }
  };

  /**
   * Checks what needs no app code (route, origin, handshake headers), then hands the upgrade to
   * Fastify's router the way @fastify/websocket does: a ServerResponse bound to the socket, so the
   * route's GET handler ({@link upgrade}) runs behind the app's `request`/`before` phases with real
   * request and reply objects, and a refusal by any of them is a real HTTP response on the socket.
   */
  #route(req: IncomingMessage, socket: Socket, head: Buffer): undefined {
    socket.on('error', noop);
    // Upgrades bypass the HTTP request handler: the same Host rules (two Host headers refused, an
    // absolute-form target routed by its authority) apply here before anything else.
    const problem = this.#httpServer.checkTarget(req);
    if (problem) return refuse(socket, 400, problem.code, problem.message);
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const candidates = this.#byPath.get(path);
    if (!candidates) {
      // Another plugin may answer upgrades on other paths; only the sole listener says 404.
      if ((this.#http?.listenerCount('upgrade') ?? 1) > 1) return;
      return refuse(socket, 404, 'ws.not_found', `no WebSocket route at ${path.slice(0, 200)}`);
    }
    if (this.#stopping) return refuse(socket, 503, 'ws.unavailable', 'server is shutting down');
    const app = this.#httpServer.appForHost(req.headers.host);
    const route = app && candidates.find((r) => r.app === app);
    if (!route) return refuse(socket, 404, 'ws.not_found', `no WebSocket route at ${path.slice(0, 200)} for this host`);
    if (!originAllowed(route, req)) {
      return refuse(
        socket,
        403,
        'ws.origin_denied',
        `WebSocket connections from origin ${String(req.headers.origin).slice(0, 200)} are not allowed`,
      );
    }
    let key: string;
    let protocol: { version: number; protocol?: string };
    let offers: ExtensionOffer[] = [];
    try {
      key = checkUpgrade(req);
      protocol = negotiateProtocol(req.headers['sec-websocket-protocol']);
      if (route.compression) offers = parseExtensions(headerValue(req, 'sec-websocket-extensions'));
    } catch (error) {
      if (error instanceof HandshakeError) {
        const headers = (error.details as { headers?: Record<string, string> } | undefined)?.headers;
        return refuse(socket, error.status, error.code, error.message, headers);
      }
      throw error;
    }
    this.#pending.set(req, { socket, head, route, key, protocol, offers });
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket);
    // A refusal was answered over HTTP: the socket is not reused.
    res.once('finish', () => socket.end(() => socket.destroy()));
    this.#httpServer.fastify.routing(req, res);
    return undefined;
  }

  /**
   * The GET handler of a WS route (`serve` of router.ws): runs the route's `before` steps with the
   * request's ctx, then answers 101 and hands the socket to a {@link WsConnection}. A plain GET
   * (no upgrade) is answered 426.
   */
  async upgrade(req: FastifyRequest, reply: FastifyReply, ctx: MegaContext): Promise<FastifyReply> {
    const pending = this.#pending.get(req.raw);
    if (!pending)
      throw new MegaError('ws.upgrade_required', `${req.url.split('?')[0]} is a WebSocket endpoint: send an upgrade`, { status: 426 });
    this.#pending.delete(req.raw);
    const { socket, head, route, key, protocol, offers } = pending;
    const rt = this.#runtime();
    const id = this.#prefix + (++this.#seq).toString(36);
    const conn = new WsConnection(rt, route, id, req.raw, protocol.version);
    conn.ctx = ctx;
    byCtx.set(ctx, conn);
    let rejection: MegaError | undefined;
    for (const fn of route.before) {
      try {
        const result = await fn(req.raw, ctx);
        if (result !== undefined) setAuth(conn, result);
      } catch (error) {
        if (!isMegaError(error)) {
          ctx.log.error({ err: error, path: route.path }, 'ws before threw a non-Mega error');
          return reply
            .code(500)
            .send({ error: { code: 'internal', message: rt.production ? 'internal error' : String((error as Error)?.message ?? error) } });
        }
        rejection = error;
        break;
      }
    }
    if (socket.destroyed) return reply.hijack();
    if (rejection && route.rejectWith === 'http') {
      const status = rejection.status >= 400 && rejection.status < 600 ? rejection.status : 401;
      return reply.code(status).send({ error: { code: rejection.code, message: rejection.message } });
    }
    if (this.#stopping) return reply.code(503).send({ error: { code: 'ws.unavailable', message: 'server is shutting down' } });

    let channel: InstanceType<CompiledRoute['Channel']>;
    try {
      channel = new route.Channel();
    } catch (error) {
      ctx.log.error({ err: error, path: route.path }, 'ws channel constructor threw');
      return reply.code(500).send({ error: { code: 'internal', message: 'channel could not be created' } });
    }

    let deflate: ConnectionDeflate | null = null;
    if (route.compression && offers.length > 0) {
      const agreement = negotiateDeflate(offers, route.compression, rt.shared.canHoldContext(route.compression.maxContexts));
      if (agreement) {
        deflate = new ConnectionDeflate(agreement, route.compression, rt.shared, route.maxPayload);
        if (deflate.stateful) rt.shared.acquire();
      }
    }
    // From here the socket is a WebSocket: Fastify does not answer, the response lets go of the socket.
    reply.hijack();
    reply.raw.detachSocket(socket);
    // The reply served its purpose: the connection keeps the request (ctx.source), not the reply.
    this.#httpServer.releaseReply(req);
    let response = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n`;
    if (protocol.protocol) response += `Sec-WebSocket-Protocol: ${protocol.protocol}\r\n`;
    if (deflate) response += `Sec-WebSocket-Extensions: ${deflate.agreement.header}\r\n`;
    socket.write(`${response}\r\n`);
    socket.off('error', noop);
    if (deflate) connDeflate.set(conn, deflate);
    this.#conns.get(route)?.add(conn);
    this.#count++;
    conn.attach(socket, head, deflate, channel);
    if (rejection) {
      conn.close(CloseCode.POLICY, rejection.code);
      return reply;
    }
    for (const listener of this.#openListeners) {
      try {
        listener(conn);
      } catch (error) {
        const policy = isMegaError(error) && error.status >= 400 && error.status < 500;
        ctx.log.warn({ err: error, connId: id }, `ws open listener refused the connection (${policy ? 1008 : 1011})`);
        conn.close(policy ? CloseCode.POLICY : CloseCode.INTERNAL, isMegaError(error) ? error.code : 'internal');
        return reply;
      }
    }
    conn.start();
    return reply;
  }
}

interface PendingUpgrade {
  socket: Socket;
  head: Buffer;
  route: CompiledRoute;
  key: string;
  protocol: { version: number; protocol?: string };
  offers: ExtensionOffer[];
}

/** The connection of a WS ctx (ctx.source is the upgrade's Fastify request). */
const byCtx = new WeakMap<MegaContext, WsConnection>();

/** The WebSocket connection a ctx belongs to (undefined for HTTP requests and other transports). */
export function connectionOf(ctx: MegaContext): WsConnection | undefined {
  return byCtx.get(ctx);
}

/** Deflate state per connection, for releasing the context bound on close. */
const connDeflate = new WeakMap<WsConnection, ConnectionDeflate>();

function noop(): void {}

/**
 * `ctx.auth` of a WS ctx: an own property of that ctx object (WS ctx objects are one per
 * connection, so the extra shape costs nothing on the message path), redefined after each `before`
 * step so later steps see earlier results. HTTP ctx objects keep whatever another plugin contributes.
 */
function setAuth(conn: WsConnection, value: unknown): void {
  conn.auth = value;
  Object.defineProperty(conn.ctx, 'auth', { value, enumerable: true, configurable: true, writable: false });
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

function originAllowed(route: CompiledRoute, req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined || route.origins === '*') return true;
  if (route.origins !== 'same-host') return route.origins.has(origin.toLowerCase());
  let host: string;
  try {
    host = new URL(origin).host.toLowerCase();
  } catch {
    return false;
  }
  const requested = (req.headers.host ?? '').toLowerCase();
  return host === requested || route.app.hosts.includes(host) || route.app.hosts.includes(host.replace(/:\d+$/, ''));
}

function sameHosts(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((h) => b.includes(h));
}

/** Answers an upgrade that never reached Fastify (undefined, so checks can `return refuse(...)`). */
function refuse(socket: Socket, status: number, code: string, message: string, headers?: Record<string, string>): undefined {
  if (!socket.destroyed) socket.end(httpError(status, code, message, headers), () => socket.destroy());
  return undefined;
}
