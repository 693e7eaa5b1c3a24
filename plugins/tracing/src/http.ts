/**
 * HTTP and WebSocket spans, from outside @mega/http and @mega/ws:
 * - the kernel `route` hook names each route's span once, at registration (`GET /users/:id`), and
 *   wraps each WebSocket channel class so its message handlers and `onConnect` run in spans;
 * - Fastify hooks on the http service's instance start the server span on arrival (child of a
 *   valid inbound `traceparent`, else a new root), run the whole request (middleware, body parsing,
 *   handler) with it active, and end it with the status.
 */
import type { IncomingMessage } from 'node:http';
import { isMegaError, type RouteDefinition } from '@mega/kernel';
import type { Attributes, Context, Span } from '@opentelemetry/api';
import { context, SpanStatusCode } from '@opentelemetry/api';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import type { Tracing } from './tracer.js';
import { failSpan } from './tracer.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's server span (@mega/tracing). */
    megaSpan: Span | null;
  }
}

/** The `meta` key under which the `route` tap stores a route's span naming. */
export const SPAN_META = 'tracing';

interface RouteSpan {
  readonly name: string;
  readonly route: string;
  readonly app: string;
  readonly ws: boolean;
}

/** What Fastify's route config holds for Mega routes (@mega/http puts `{ mega: { app, options, meta } }` there). */
interface MegaRouteConfig {
  mega?: { meta?: Record<string, unknown> };
}

/** A WebSocket upgrade's span: ended when `onConnect` settles, or when the connection closes before. */
interface Connect {
  span: Span;
  ctx: Context;
  open: boolean;
}

const BODYLESS = new Set(['GET', 'HEAD', 'OPTIONS']);
const NO_HEADERS: Record<string, string> = {};
/** The method names @mega/ws dispatches messages to (its DOTTED_TYPE). */
const MESSAGE_TYPE = /^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+$/;

/** Minimal view of @mega/ws (an optional peer): the connection of a handler call and close events. */
interface WsConnectionLike {
  readonly id: string;
  readonly path: string;
  readonly req: IncomingMessage;
}
export interface WsServerLike {
  onClose(listener: (conn: WsConnectionLike, info: { code: number; reason: string }) => void): void;
}

type Handler = (this: unknown, sock: WsConnectionLike, ...rest: unknown[]) => unknown;
type ChannelClass = new () => object;

export class HttpTracing {
  /** Upgrade requests whose connect span is still open. */
  readonly #connects = new WeakMap<IncomingMessage, Connect>();

  constructor(private readonly tracing: Tracing) {}

  /** `route` tap: names the span; WS routes get their channel class wrapped. */
  route(def: RouteDefinition): RouteDefinition {
    const ws = def.kind === 'ws';
    if (def.kind !== 'http' && !ws) return def;
    const span: RouteSpan = { name: ws ? `WS ${def.path}` : `${def.method} ${def.path}`, route: def.path, app: def.app.name, ws };
    def.meta[SPAN_META] = span;
    if (ws && typeof def.handler === 'function') def.handler = this.#channel(def.handler as ChannelClass, def.path);
    return def;
  }

  /**
   * Instruments every route added to the http service's Fastify instance from now on (boot, before
   * routes are frozen): each gets its own onRequest / onError / onResponse hooks with its span name
   * and attributes fixed once, so a request pays no route lookup. Requests that match no route are
   * not traced.
   */
  attach(fastify: FastifyInstance): void {
    fastify.decorateRequest('megaSpan', null);
    fastify.addHook('onRoute', (route) => this.#instrument(route));
  }

  /** @mega/ws close events: a connection refused or dropped before `onConnect` ends its span. */
  watch(ws: WsServerLike): void {
    ws.onClose((conn, info) => {
      const c = this.#connects.get(conn.req);
      if (!c?.open) return;
      c.span.setAttribute('mega.ws.close_code', info.code);
      if (info.reason) c.span.setAttribute('mega.ws.close_reason', info.reason);
      this.#endConnect(conn.req, c);
    });
  }

  #instrument(route: RouteOptions): void {
    const meta = (route.config as MegaRouteConfig | undefined)?.mega?.meta?.[SPAN_META] as RouteSpan | undefined;
    const method = Array.isArray(route.method) ? route.method.join(',') : String(route.method);
    const name = meta?.name ?? `${method} ${route.url}`;
    const routeAttr = meta?.route ?? route.url;
    const app = meta?.app;
    // Called only for spans that may be recorded: sampled-out requests build no attributes.
    const attrs = (req: FastifyRequest): Attributes => {
      const q = req.url.indexOf('?');
      return {
        'http.request.method': req.method,
        'http.route': routeAttr,
        'url.path': q === -1 ? req.url : req.url.slice(0, q),
        'mega.app': app,
        'mega.request_id': req.id,
      };
    };
    const tracing = this.tracing;
    const connects = this.#connects;
    const ws = meta?.ws === true;
    const onRequest = (req: FastifyRequest, reply: FastifyReply, done: () => void): void => {
      const { span, ctx } = tracing.serverSpan(name, req.headers, attrs, req);
      if (span.isRecording()) {
        req.megaSpan = span;
        // Ended from the response's own 'close' (sent, or the client went away) rather than a Fastify
        // onResponse hook, which every request would pay for, sampled or not.
        if (!ws) reply.raw.once('close', () => endHttp(span, reply));
      }
      if (ws) connects.set(req.raw, { span, ctx, open: true });
      // Body chunks arrive on the socket's own async context: bind the request stream so the parser's
      // listeners (and everything after them: validation, middleware, the handler) run in the span.
      else if (!BODYLESS.has(req.method)) context.bind(ctx, req.raw);
      context.with(ctx, done);
    };
    const onError = (req: FastifyRequest, _reply: FastifyReply, error: Error, done: () => void): void => {
      const span = req.megaSpan;
      if (span) {
        // Client errors are the client's: only 5xx (and non-Mega errors, which become 500) fail the span.
        if (isMegaError(error) && error.status < 500) span.setAttribute('mega.error.code', error.code);
        else failSpan(span, error);
      }
      done();
    };
    // First among the route's own hooks: the app's `request` phase (rate limits, CORS) runs in the span.
    route.onRequest = [onRequest, ...hooks(route.onRequest)] as RouteOptions['onRequest'];
    route.onError = [...hooks(route.onError), onError] as RouteOptions['onError'];
    if (!ws) return;
    // A WebSocket upgrade refused over HTTP ends its connect span here (a hijacked one never responds).
    const onResponse = (req: FastifyRequest, reply: FastifyReply, done: () => void): void => {
      const c = connects.get(req.raw);
      if (c) {
        c.span.setAttribute('http.response.status_code', reply.statusCode);
        if (reply.statusCode >= 500) c.span.setStatus({ code: SpanStatusCode.ERROR });
        this.#endConnect(req.raw, c);
      }
      done();
    };
    route.onResponse = [...hooks(route.onResponse), onResponse] as RouteOptions['onResponse'];
  }

  #endConnect(req: IncomingMessage, c: Connect): void {
    c.open = false;
    this.#connects.delete(req);
    c.span.end();
  }

  /**
   * A subclass of the channel whose dotted message handlers run in a `WS <type>` span (a new trace
   * per message, linked to the connection's span: one trace per long-lived connection would grow
   * without end), and whose `onConnect` runs in the connection's span and ends it.
   */
  #channel(Channel: ChannelClass, path: string): ChannelClass {
    const tracing = this.tracing;
    const connects = this.#connects;
    const endConnect = (req: IncomingMessage, c: Connect) => this.#endConnect(req, c);
    const proto = Channel.prototype as Record<string, unknown>;
    const Traced = class extends Channel {};
    Object.defineProperty(Traced, 'name', { value: Channel.name });
    const tracedProto = Traced.prototype as unknown as Record<string, unknown>;
    for (const type of handlerNames(proto)) {
      const handler = proto[type] as Handler;
      const name = `WS ${type}`;
      tracedProto[type] = function (this: unknown, sock: WsConnectionLike, ...rest: unknown[]): unknown {
        // Called by @mega/ws with its connection; a direct call from app code may pass anything.
        const link = sock?.req ? (connects.get(sock.req) ?? lastConnect.get(sock)) : undefined;
        const { span, ctx } = tracing.serverSpan(
          name,
          NO_HEADERS,
          (id: string | undefined): Attributes => ({ 'mega.ws.message_type': type, 'mega.ws.path': path, 'mega.ws.connection': id }),
          sock?.id,
          link ? [{ context: link.span.spanContext() }] : undefined,
        );
        return runIn(span, ctx, () => handler.call(this, sock, ...rest));
      };
    }
    const onConnect = proto.onConnect as Handler | undefined;
    tracedProto.onConnect = function (this: unknown, sock: WsConnectionLike, ...rest: unknown[]): unknown {
      const c = sock?.req ? connects.get(sock.req) : undefined;
      if (!c) return onConnect?.call(this, sock, ...rest);
      lastConnect.set(sock, { span: c.span });
      c.span.setAttribute('mega.ws.connection', sock.id);
      let result: unknown;
      try {
        result = context.with(c.ctx, () => onConnect?.call(this, sock, ...rest));
      } catch (error) {
        failSpan(c.span, error);
        endConnect(sock.req, c);
        throw error;
      }
      if (!(result instanceof Promise)) {
        endConnect(sock.req, c);
        return result;
      }
      return result.then(
        (value) => {
          endConnect(sock.req, c);
          return value;
        },
        (error: unknown) => {
          failSpan(c.span, error);
          endConnect(sock.req, c);
          throw error;
        },
      );
    };
    return Traced;
  }
}

/** The connect span of each connection, kept after it ended: message spans link to it. */
const lastConnect = new WeakMap<object, { span: Span }>();

/** Dotted method names along the prototype chain, as @mega/ws dispatches them. */
function handlerNames(proto: Record<string, unknown>): string[] {
  const names = new Set<string>();
  for (let p: object | null = proto; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const name of Object.getOwnPropertyNames(p)) {
      if (!MESSAGE_TYPE.test(name)) continue;
      if (typeof Object.getOwnPropertyDescriptor(p, name)?.value === 'function') names.add(name);
    }
  }
  return [...names];
}

/** Ends a request's span with its response status (the client may have gone away first). */
function endHttp(span: Span, reply: FastifyReply): void {
  const res = reply.raw;
  if (!res.writableFinished) span.setAttribute('mega.aborted', true);
  span.setAttribute('http.response.status_code', res.statusCode);
  if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
  span.end();
}

/** A route's hook option as a list. */
function hooks(value: unknown): unknown[] {
  return value === undefined || value === null ? [] : Array.isArray(value) ? value : [value];
}

/** Runs `fn` with `span` active; ends it when `fn` returns or settles; failures are recorded and passed on. */
function runIn(span: Span, ctx: Context, fn: () => unknown): unknown {
  let result: unknown;
  try {
    result = context.with(ctx, fn);
  } catch (error) {
    failSpan(span, error);
    span.end();
    throw error;
  }
  if (!(result instanceof Promise)) {
    span.end();
    return result;
  }
  return result.then(
    (value: unknown) => {
      span.end();
      return value;
    },
    (error: unknown) => {
      failSpan(span, error);
      span.end();
      throw error;
    },
  );
}
