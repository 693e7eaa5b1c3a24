/**
 * HTTP and WebSocket spans, from outside @mega/http and @mega/ws:
 * - the kernel `route` hook names each route's span once, at registration (`GET /users/:id`), and
 *   wraps each WebSocket channel class so its message handlers and `onConnect` run in spans;
 * - one root Fastify `onRequest` hook starts the server span of every request (app routes, routes
 *   plugins add to Fastify directly, static files, and requests matching no route, named
 *   `GET __unmatched__`): child of a valid inbound `traceparent`, else a new root, sampled or not;
 *   the rest of the request (middleware, handler) runs with it active, and it ends with the status.
 *
 * Cost per request (see the README's Cost section for the measurements): a sampled-out request
 * pays one hook call, a random number, an `Unsampled` span and one AsyncLocalStorage scope. Only a
 * recorded one looks its route up (Fastify's `routeOptions` getter), builds attributes and listens
 * for the response's `close`.
 */
import type { IncomingMessage } from 'node:http';
import { isMegaError, type RouteDefinition } from '@mega/kernel';
import type { Attributes, Context, Span, SpanContext } from '@opentelemetry/api';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import { Recorded, scopeOf, Unsampled } from './spans.js';
import type { Tracing } from './tracer.js';
import { failSpan, sampled } from './tracer.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The context the request runs in, holding its server span (@mega/tracing). */
    megaTrace: Context | null;
  }
}

/** The `meta` key under which the `route` tap stores a route's span naming. */
export const SPAN_META = 'tracing';
/** The route of requests that matched none (404s, scanners): a path never becomes a span name. */
export const UNMATCHED = '__unmatched__';

interface RouteSpan {
  readonly method: string;
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
/** The method names @mega/ws dispatches messages to (its DOTTED_TYPE). */
const MESSAGE_TYPE = /^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+$/;
/** Error codes of security rejections that do not annotate the span themselves (@mega/asp's HTTP checks). */
const SECURITY_CODE = /^asp\./;

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
    const method = ws ? 'GET' : def.method;
    const span: RouteSpan = { method, name: ws ? `WS ${def.path}` : `${def.method} ${def.path}`, route: def.path, app: def.app.name, ws };
    def.meta[SPAN_META] = span;
    if (ws && typeof def.handler === 'function') def.handler = this.#channel(def.handler as ChannelClass, def.path);
    return def;
  }

  /**
   * Instruments the http service's Fastify instance (boot, before routes are frozen): the root
   * `onRequest` and `onError` hooks every route and the not-found handler run, and, through
   * `onRoute`, a `preValidation` hook on routes that take a body (to re-enter the span's context
   * after the body was read) and the WebSocket routes' connect-span hooks.
   */
  attach(fastify: FastifyInstance): void {
    const tracing = this.tracing;
    fastify.decorateRequest('megaTrace', null);
    fastify.addHook('onRequest', (req: FastifyRequest, reply: FastifyReply, done: () => void): void => {
      const parent = tracing.parentOf(req.headers);
      // The recorded branch is a function of its own: this hook, which every request runs, stays small
      // enough to be inlined into Fastify's hook runner whatever the sampling ratio.
      const ctx = scopeOf(tracing.decide(parent) ? startHttp(tracing, req, reply, parent) : new Unsampled(parent));
      req.megaTrace = ctx;
      context.with(ctx, done);
    });
    fastify.addHook('onError', (req: FastifyRequest, _reply: FastifyReply, error: Error, done: () => void): void => {
      const span = req.megaTrace ? trace.getSpan(req.megaTrace) : undefined;
      if (span instanceof Recorded) {
        // Client errors are the client's: only 5xx (and non-Mega errors, which become 500) fail the span.
        if (isMegaError(error) && error.status < 500) {
          span.set('mega.error.code', error.code);
          if (SECURITY_CODE.test(error.code)) span.set('mega.security.reason', error.code);
        } else failSpan(span, error);
      }
      done();
    });
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
    if (meta?.ws) {
      this.#instrumentWs(route);
      return;
    }
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (methods.every((m) => BODYLESS.has(String(m)))) return;
    // Body chunks arrive on the socket's own async context, so body parsing ends outside the span:
    // validation, middleware and the handler re-enter it here (one hook, body routes only).
    const reenter = (req: FastifyRequest, _reply: FastifyReply, done: () => void): void => {
      const ctx = req.megaTrace;
      if (ctx) context.with(ctx, done);
      else done();
    };
    route.preValidation = [reenter, ...hooks(route.preValidation)] as RouteOptions['preValidation'];
  }

  /** A WebSocket route: its connect span stays open until `onConnect` settles, or ends with a refusal over HTTP. */
  #instrumentWs(route: RouteOptions): void {
    const connects = this.#connects;
    const onRequest = (req: FastifyRequest, _reply: FastifyReply, done: () => void): void => {
      const ctx = req.megaTrace;
      const span = ctx ? trace.getSpan(ctx) : undefined;
      if (ctx && span) connects.set(req.raw, { span, ctx, open: true });
      done();
    };
    const onResponse = (req: FastifyRequest, reply: FastifyReply, done: () => void): void => {
      const c = connects.get(req.raw);
      if (c) {
        c.span.setAttribute('http.response.status_code', reply.statusCode);
        if (reply.statusCode >= 500) c.span.setStatus({ code: SpanStatusCode.ERROR });
        this.#endConnect(req.raw, c);
      }
      done();
    };
    route.onRequest = [...hooks(route.onRequest), onRequest] as RouteOptions['onRequest'];
    route.onResponse = [...hooks(route.onResponse), onResponse] as RouteOptions['onResponse'];
  }

  #endConnect(req: IncomingMessage, c: Connect): void {
    c.open = false;
    this.#connects.delete(req);
    c.span.end();
  }

  /**
   * A subclass of the channel whose dotted message handlers run in a `WS <type>` span (a new trace
   * per message, sampled like a request, linked to the connection's span: one trace per long-lived
   * connection would grow without end), and whose `onConnect` runs in the connection's span and ends it.
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
        if (!tracing.sampleRoot()) return context.with(scopeOf(new Unsampled()), handler, this, sock, ...rest);
        // Called by @mega/ws with its connection; a direct call from app code may pass anything.
        const link = sock?.req ? (connects.get(sock.req)?.span ?? lastConnect.get(sock)) : undefined;
        const attributes: Attributes = { 'mega.ws.message_type': type, 'mega.ws.path': path };
        if (typeof sock?.id === 'string') attributes['mega.ws.connection'] = sock.id;
        const span = tracing.recorded(
          name,
          SpanKind.SERVER,
          attributes,
          undefined,
          link && sampled(link) ? [{ context: link.spanContext() }] : undefined,
        );
        return runIn(span, scopeOf(span), () => handler.call(this, sock, ...rest));
      };
    }
    const onConnect = proto.onConnect as Handler | undefined;
    tracedProto.onConnect = function (this: unknown, sock: WsConnectionLike, ...rest: unknown[]): unknown {
      const c = sock?.req ? connects.get(sock.req) : undefined;
      if (!c) return onConnect?.call(this, sock, ...rest);
      lastConnect.set(sock, c.span);
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
const lastConnect = new WeakMap<object, Span>();

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

/** The server span of a recorded request: named by its route, ended by its response's `close`. */
function startHttp(tracing: Tracing, req: FastifyRequest, reply: FastifyReply, parent: SpanContext | undefined): Recorded {
  const opts = req.routeOptions;
  const meta = (opts.config as MegaRouteConfig | undefined)?.mega?.meta?.[SPAN_META] as RouteSpan | undefined;
  const route = meta?.route ?? opts.url;
  const name = route === undefined ? `${req.method} ${UNMATCHED}` : meta?.method === req.method ? meta.name : `${req.method} ${route}`;
  const url = req.url;
  const q = url.indexOf('?');
  const attributes: Attributes = { 'http.request.method': req.method };
  if (route !== undefined) attributes['http.route'] = route;
  attributes['url.path'] = q === -1 ? url : url.slice(0, q);
  if (meta) attributes['mega.app'] = meta.app;
  attributes['mega.request_id'] = req.id;
  const span = tracing.recorded(name, SpanKind.SERVER, attributes, parent);
  // Ended from the response's own 'close' (sent, or the client went away) rather than a Fastify
  // onResponse hook, which every request would pay for. A WebSocket upgrade's span ends with its
  // onConnect instead (its response is hijacked).
  if (!meta?.ws) reply.raw.on('close', () => endHttp(span, reply));
  return span;
}

/** Ends a request's span with its response status (the client may have gone away first). */
function endHttp(span: Recorded, reply: FastifyReply): void {
  const res = reply.raw;
  if (!res.writableFinished) span.set('mega.aborted', true);
  span.set('http.response.status_code', res.statusCode);
  if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
  span.end();
}

/** A route's hook option as a list. */
function hooks(value: unknown): unknown[] {
  return value === undefined || value === null ? [] : Array.isArray(value) ? value : [value];
}

/** Runs `fn` with `span` active; ends it when `fn` returns or settles; failures are recorded and passed on. */
function runIn(span: Recorded, ctx: Context, fn: () => unknown): unknown {
  let result: unknown;
  try {
    result = context.with(ctx, fn);
  } catch (error) {
    span.fail(error);
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
      span.fail(error);
      span.end();
      throw error;
    },
  );
}
