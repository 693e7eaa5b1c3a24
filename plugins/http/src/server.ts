/**
 * The Fastify instance behind @mega/http: route loading, the per-route pipeline
 * (request -> before -> handler -> transform -> envelope -> after), vhost routing, envelope and
 * error mapping, body parsers and static files.
 */
import { existsSync, readdirSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import type { App, Kernel, MegaContext, RouteDefinition } from '@mega/kernel';
import { importModule, MegaError } from '@mega/kernel';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest, RouteOptions as FastifyRouteOptions } from 'fastify';
import Fastify, { LogController } from 'fastify';
import type { HttpAppKeys, HttpConfig, MultipartLimits } from './config.js';
import { MultipartSchema } from './config.js';
import { mapError } from './errors.js';
import type { HeaderSet } from './headers.js';
import { attachBlock, HeaderBlocks, headerBlocksWork } from './headers.js';
import { parseJson } from './json.js';
import { envelope, runChain, runSteps } from './pipeline.js';
import type { After, AppMiddleware, Handler, HttpRouteOptions, Middleware, Router, RouterExtension, Send, Transform } from './router.js';
import { createHttpMethods } from './router.js';
import { multipartReader } from './uploads.js';
import type { BuildValidator } from './validators.js';
import { cachedValidators, lazySerializers } from './validators.js';
import { VirtualHosts } from './vhost.js';

// Not an ESM import: that would load undici for node:http's lazy `WebSocket` export (see headers.ts).
const http = createRequire(import.meta.url)('node:http') as typeof import('node:http');

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's ctx once built (same object for every middleware and the handler). */
    megaCtx: MegaContext | null;
    megaReply: FastifyReply | null;
    /** The controller's result, kept for `after` middleware. */
    megaResult: unknown;
  }
}

const ROUTE_FILE = /\.(ts|mts|js|mjs)$/;
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** An absolute-form request target (RFC 9112 §3.2.2): scheme, authority, then the origin-form rest. */
const ABSOLUTE_FORM = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s;
/** An authority Mega routes by: a host (name, IPv4 or [IPv6]) and an optional port; no userinfo. */
const AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::[0-9]{0,5})?$/;

/** A refusal written straight to the response, in the envelope (before Fastify routed the request). */
function refuse(res: ServerResponse, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    connection: 'close',
  });
  res.end(body);
}

/**
 * Where an app-wide middleware runs (see the phase table in README.md), in this order:
 * - `request`: on arrival, before the body is read (rate limits, CORS preflight); also for 404s.
 * - `before`: after body parsing and validation, before the route's own `before` (CSRF, auth).
 * - `transform` / `after`: around the result, before the route's own.
 * - `send`: every response of the app as it goes out (routes, errors, 404s, static files), to set
 *   headers; synchronous, `ctx` is undefined when the request never reached a route.
 * - `headers`: a `HeaderSet` — constant headers by content type for those same responses, rendered
 *   and validated once per content type (see headers.ts): what `send` costs ~1 µs for, ~0.1 µs.
 */
export type MiddlewarePhase = 'request' | 'before' | 'transform' | 'after' | 'send' | 'headers';

export interface UseOptions {
  phase?: MiddlewarePhase;
  /** Only for these apps (default: every app). */
  apps?: readonly string[];
  /** Only for routes of these methods (e.g. CSRF checks on unsafe methods): other routes do not even call it. */
  methods?: readonly string[];
}

interface Entry<T> {
  fn: T;
  methods: ReadonlySet<string> | undefined;
}

interface AppChains {
  request: Entry<Middleware>[];
  before: Entry<Middleware>[];
  transform: Entry<Transform>[];
  after: Entry<After>[];
  send: Send[];
  headers: HeaderSet[];
}

/** The functions of `entries` that apply to `method`, or undefined when none does. */
function pick<T>(entries: readonly Entry<T>[] | undefined, method: string): T[] | undefined {
  if (!entries?.length) return undefined;
  const fns = entries.filter((e) => !e.methods || e.methods.has(method)).map((e) => e.fn);
  return fns.length ? fns : undefined;
}

export class HttpServer {
  #fastify: FastifyInstance | undefined;
  #extensions = new Map<string, RouterExtension>();
  #routes: RouteDefinition[] = [];
  #pending: RouteDefinition[] = [];
  #flushed = false;
  #global = new Map<string, AppChains>();
  #fileMiddleware = new Map<string, RouteFileMiddleware[]>();
  #multipart: ((child: FastifyInstance) => Promise<void>) | undefined;
  #readMultipart: ReturnType<typeof multipartReader> | undefined;
  readonly vhosts: VirtualHosts;

  constructor(
    private readonly kernel: Kernel,
    private readonly config: HttpConfig,
    private readonly appConfig: (app: App) => HttpAppKeys,
  ) {
    try {
      this.vhosts = new VirtualHosts(kernel.apps);
    } catch (error) {
      throw new MegaError('http.host_conflict', (error as Error).message, { details: { host: (error as { host?: string }).host } });
    }
  }

  /**
   * The Fastify instance (after boot started). Not an extension point: read-only uses (the port,
   * `fastify.server`) and plugin-level routes without an app; per-route behaviour goes through the
   * kernel `route` hook, app-wide behaviour through `use`.
   */
  get fastify(): FastifyInstance {
    if (!this.#fastify) throw new MegaError('http.not_started', '@mega/http has not created its server yet (use it from a boot tap)');
    return this.#fastify;
  }

  /** Routes as registered (after the `route` hook). */
  get routes(): readonly RouteDefinition[] {
    return this.#routes;
  }

  /** The app-wide middleware `app`'s route files declared with `router.http.use`, in order (for `mega routes`). */
  routeFileMiddleware(app: string): readonly RouteFileMiddleware[] {
    return this.#fileMiddleware.get(app) ?? [];
  }

  /** Port actually bound (useful with port 0). */
  get port(): number {
    const address = this.#fastify?.server.address();
    return typeof address === 'object' && address ? address.port : this.kernel.server.port;
  }

  /**
   * Adds `router.<kind>` to every route file's router (call during setup). Its definitions go
   * through the `route` hook like HTTP ones; `serve(def)`, when given, turns each one into the
   * GET handler Fastify routes it to, behind the app's `request` and `before` phases (WebSocket
   * upgrades are routed this way).
   */
  extendRouter(kind: string, extension: RouterExtension): void {
    if (kind === 'http' || kind === 'app' || this.#extensions.has(kind)) {
      throw new MegaError('http.router_extension_duplicate', `router.${kind} is already defined`);
    }
    this.#extensions.set(kind, extension);
  }

  /**
   * App-wide middleware for every route of every app (or of `options.apps`), in a phase (README:
   * phase table). Call during setup or boot (before routes are frozen at boot stage 900); plugin
   * order decides the order of plugins' middleware within a phase.
   */
  use(middleware: Middleware | Transform | After | Send | HeaderSet, options: UseOptions = {}): void {
    if (this.#flushed) throw new MegaError('http.frozen', 'global middleware must be added during setup or boot, before routes are frozen');
    const phase = options.phase ?? 'before';
    const methods = options.methods ? new Set(options.methods.map((m) => m.toUpperCase())) : undefined;
    for (const app of this.kernel.apps) {
      if (options.apps && !options.apps.includes(app.name)) continue;
      const chains = this.#chains(app);
      if (phase === 'send') chains.send.push(middleware as Send);
      else if (phase === 'headers') chains.headers.push(middleware as HeaderSet);
      else (chains[phase] as Entry<unknown>[]).push({ fn: middleware, methods });
    }
  }

  /** The ctx of a request (built on first call, then the same object). */
  ctx(req: FastifyRequest, reply: FastifyReply, app: App): MegaContext {
    let ctx = req.megaCtx;
    if (ctx === null) {
      ctx = this.kernel.createContext(app, { id: req.id, source: req });
      req.megaCtx = ctx;
      req.megaReply = reply;
    }
    return ctx;
  }

  /**
   * Lets go of the reply of a request whose socket another protocol took over (a WebSocket upgrade
   * after its 101): `ctx.reply` is undefined from then on (unless read before), so the reply and its
   * response can be collected while the request itself (`ctx.source`) lives on with the connection.
   */
  releaseReply(req: FastifyRequest): void {
    req.megaReply = null;
  }

  /**
   * Parses a JSON body with this server's rules (`maxJsonDepth`, `__proto__` guard): for plugins
   * that open bodies themselves (@mega/asp). Throws 400 `http.invalid_json` / `http.too_deep`.
   */
  parseJson(text: string): unknown {
    return parseJson(text, this.config.maxJsonDepth);
  }

  /**
   * Checks a raw request before routing (also for upgrades, which bypass the request handler):
   * two `Host` headers are refused (`http.duplicate_host`); an absolute-form target
   * (`GET http://admin.example/x`) is routed by its authority, as RFC 9112 §3.2.2 requires, so
   * `req.headers.host` becomes the target's authority and `req.url` the origin-form rest. Returns
   * the refusal (400), or undefined when the request may go on.
   */
  checkTarget(req: IncomingMessage): { code: string; message: string } | undefined {
    const raw = req.rawHeaders;
    let hosts = 0;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i] as string;
      // Compared without lower-casing first: no string is made for the common spellings.
      if (name.length === 4 && (name === 'Host' || name === 'host' || name.toLowerCase() === 'host') && ++hosts > 1) {
        return { code: 'http.duplicate_host', message: 'the request has more than one Host header' };
      }
    }
    const url = req.url ?? '/';
    if (url.charCodeAt(0) === 47 /* / */ || url === '*') return undefined;
    const m = ABSOLUTE_FORM.exec(url);
    if (!m) return undefined; // authority-form (CONNECT) and other oddities: Fastify answers them
    const scheme = (m[1] as string).toLowerCase();
    const authority = m[2] as string;
    if ((scheme !== 'http' && scheme !== 'https') || !AUTHORITY.test(authority)) {
      return { code: 'http.bad_url', message: 'an absolute-form target must be http(s)://host[:port]/path' };
    }
    const rest = m[3] as string;
    req.headers.host = authority;
    req.url = rest.startsWith('/') ? rest : `/${rest}`;
    return undefined;
  }

  /** The app a Host header routes to (undefined for an unknown host without a default app). */
  appForHost(host: string | undefined): App | undefined {
    return this.vhosts.enabled || this.kernel.apps.length !== 1 ? this.vhosts.appFor(host) : this.kernel.apps[0];
  }

  async create(): Promise<void> {
    const requestLogging = this.config.requestLogging;
    const bodyLimit = this.config.bodyLimit ?? this.kernel.config.server?.bodyLimit;
    const serializers = lazySerializers();
    // Fastify's types describe its own compilers' internals; these keep to its runtime contract.
    const compilers = (buildValidator?: BuildValidator) =>
      ({ buildValidator, buildSerializer: serializers }) as unknown as NonNullable<
        Parameters<FastifyInstance['setSchemaController']>[0]['compilersFactory']
      >;
    // Fastify gets a logger only with request logging on. A Fastify with any logger pays for it on
    // every request (a child logger, timestamps, finish listeners on the response): measured, a bare
    // Fastify given a pino logger with request logging off serves ~14% fewer hello-world requests.
    // Without it, req.log is a no-op; Mega logs each failed request itself (once, with its reqId),
    // and ctx.log is the app's logger bound to the request id.
    const fastify: FastifyInstance = Fastify({
      ...(requestLogging
        ? { loggerInstance: this.kernel.log as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: false }) }
        : {}),
      // Unset in both files: Fastify's own default (1 MiB).
      ...(bodyLimit === undefined ? {} : { bodyLimit }),
      trustProxy: this.kernel.config.server?.trustProxy ?? false,
      requestIdHeader: false,
      genReqId: this.#requestIds(),
      ajv: { customOptions: { allErrors: true } },
      // Loaded only for a route with a response schema (see validators.ts).
      schemaController: { compilersFactory: compilers() },
      // Requests refused before routing (two Host headers, a bad absolute-form target) and
      // absolute-form targets rewritten to origin-form: one check per request on the raw request.
      serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void, opts: Record<string, number>) => {
        const server = http.createServer((req, res) => {
          const problem = this.checkTarget(req);
          if (problem) {
            this.kernel.log.info({ code: problem.code, status: 400 }, 'request rejected');
            refuse(res, 400, problem.code, problem.message);
          } else handler(req, res);
        });
        // What Fastify applies to a server it creates itself (its defaults are in `opts`).
        server.keepAliveTimeout = opts.keepAliveTimeout as number;
        server.requestTimeout = opts.requestTimeout as number;
        server.setTimeout(opts.connectionTimeout as number);
        return server;
      },
      // Errors Fastify raises before a route runs (a URL it cannot decode), in the envelope.
      frameworkErrors: (error: Error & { code?: string }, req: FastifyRequest, reply: FastifyReply) => {
        if (error.code === 'FST_ERR_BAD_URL') {
          this.kernel.log.info({ reqId: req.id, code: 'http.bad_url', status: 400 }, 'request rejected');
          return reply.code(400).send({ error: { code: 'http.bad_url', message: 'the request target is not a valid URL' } });
        }
        const { status, body } = this.#logAndMap(error, req);
        return reply.code(status).send({ error: body });
      },
      // Requests Node's parser refuses (garbage request lines and headers, headers too large).
      clientErrorHandler: (error: Error & { code?: string }, socket: import('node:net').Socket) => this.#clientError(error, socket),
      ...(this.vhosts.enabled ? { routerOptions: { constraints: { megaApp: this.vhosts.strategy() } } } : {}),
    } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;
    // Route validators from the on-disk cache (validators.ts). Set on a schema controller of its
    // own, not in the options above: a validator compiler given there counts as custom, and Fastify
    // then stops lower-casing the header names of `headers` schemas.
    fastify.setSchemaController({ compilersFactory: compilers(cachedValidators(this.kernel.dir)) });
    fastify.decorateRequest('megaCtx', null);
    fastify.decorateRequest('megaReply', null);
    fastify.decorateRequest('megaResult', undefined);
    // Fastify's own JSON parser has no depth limit; this one also guards __proto__ / constructor.
    const maxDepth = this.config.maxJsonDepth;
    fastify.removeContentTypeParser('application/json');
    fastify.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
      let value: unknown;
      try {
        value = parseJson(body as string, maxDepth);
      } catch (error) {
        done(error as Error, undefined);
        return;
      }
      done(null, value);
    });
    fastify.setErrorHandler((error, req, reply) => {
      const { status, body } = this.#logAndMap(error, req);
      reply.code(status).send({ error: body });
    });
    fastify.setNotFoundHandler(async (req, reply) => {
      const host = req.headers.host;
      if (this.vhosts.isUnknown(host)) {
        this.kernel.log.info({ reqId: req.id, host, reason: 'app.unknown_host' }, 'request rejected');
        return reply.code(404).send({ error: { code: 'app.unknown_host', message: `no app serves host "${host ?? ''}"` } });
      }
      const app = this.appForHost(host);
      const chain = app && pick(this.#global.get(app.name)?.request, req.method);
      if (app && chain && !(await runSteps(chain, req, reply, this.ctx(req, reply, app)))) return reply;
      return reply.code(404).send({ error: { code: 'not_found', message: `no route for ${req.method} ${req.url.split('?')[0]}` } });
    });
    if (this.config.formBody) {
      const { default: formBody } = await import('@fastify/formbody');
      await fastify.register(formBody);
    }
    if (this.config.multipart !== false) {
      // Registered in freeze(), in a child context holding only the POST/PUT/PATCH/DELETE routes:
      // @fastify/multipart adds an async onRequest and onResponse hook to every route of the
      // context it is registered in, which GET routes should not pay for. Loaded only then: a server
      // without body routes never imports it.
      const limits = multipartLimits(this.config.multipart);
      this.#readMultipart = multipartReader(
        limits.storage,
        limits.tmpDir ? resolve(this.kernel.dir, limits.tmpDir) : join(tmpdir(), 'mega-uploads'),
      );
      this.#multipart = async (child: FastifyInstance) => {
        const { default: multipart } = await import('@fastify/multipart');
        await child.register(multipart, {
          // Fields and files reach req.body through attachMultipart (preValidation of body routes).
          attachFieldsToBody: false,
          limits: { fileSize: limits.fileSize, files: limits.files, fields: limits.fields, parts: limits.parts },
        });
      };
    }
    if (this.config.static) await this.#registerStatic(fastify);
    if (this.config.health && !this.kernel.has('health')) {
      fastify.get('/health', async () => ({ data: { status: 'ok' } }));
    }
    this.#fastify = fastify;
  }

  /** Imports `apps/<app>/<routesDir>/*` (sorted), then registers what they declare. */
  async loadRoutes(app: App): Promise<void> {
    const dir = join(app.dir, this.appConfig(app).routesDir);
    if (!existsSync(dir)) return;
    const files = readdirSync(dir)
      .filter((f) => ROUTE_FILE.test(f) && !f.endsWith('.d.ts') && !/\.test\./.test(f))
      .sort();
    const pending: RouteDefinition[] = [];
    for (const file of files) {
      const path = join(dir, file);
      const mod = await importModule(path, 'http.route_file_syntax');
      if (typeof mod !== 'function') {
        throw new MegaError(
          'http.route_file_invalid',
          `${relative(this.kernel.dir, path)} must export default a function (router) => { ... }`,
        );
      }
      await (mod as (router: Router) => unknown)(this.#router(app, pending));
    }
    // App middleware from any file applies to every route of the app: register after all files ran.
    for (const def of pending) this.register(def);
  }

  /**
   * Runs a definition through the `route` hook and keeps it; HTTP routes (and definitions of a
   * router extension with `serve`) reach Fastify when routes are frozen (boot stage 900), or at
   * once when registered after that.
   */
  register(input: RouteDefinition): RouteDefinition {
    const def = this.kernel.hooks.route.isUsed() ? this.kernel.hooks.route.call(input) : input;
    this.#routes.push(def);
    if (def.kind !== 'http') {
      if (!this.#extensions.get(def.kind)?.serve) return def;
    } else if (typeof def.handler !== 'function') {
      throw new MegaError(
        'http.handler_invalid',
        `${def.method} ${def.path} (app ${def.app.name}): handler must be a function (req, reply, ctx)`,
      );
    }
    if (this.#flushed) this.#addToFastify(def, this.fastify);
    else this.#pending.push(def);
    return def;
  }

  /**
   * Hands every pending route to Fastify; global middleware is fixed from here on. Routes that
   * carry bodies go to a child context with the multipart parser (routes added after this point
   * have JSON, text and form bodies, not multipart).
   */
  freeze(): void {
    this.#flushed = true;
    const pending = this.#pending.splice(0);
    this.#addSendPhase();
    this.#addBodyTypes(pending);
    const withMultipart = this.#multipart;
    const bodies = withMultipart ? pending.filter((def) => def.kind === 'http' && BODY_METHODS.has(def.method)) : [];
    for (const def of pending) if (!bodies.includes(def)) this.#addToFastify(def, this.fastify);
    if (withMultipart && bodies.length) {
      void this.fastify.register(async (child: FastifyInstance) => {
        await withMultipart(child);
        for (const def of bodies) this.#addToFastify(def, child);
      });
    }
  }

  /**
   * One root onSend hook, only when some app has `send` or `headers` middleware (else responses pay
   * nothing): header sets are handed to the response's head writer, then `send` steps run.
   */
  #addSendPhase(): void {
    const phases = new Map<App, { send: Send[] | undefined; blocks: HeaderBlocks | undefined; sets: HeaderSet[] }>();
    for (const app of this.kernel.apps) {
      const chains = this.#global.get(app.name);
      const sets = chains?.headers ?? [];
      const send = chains?.send.length ? chains.send : undefined;
      if (!send && !sets.length) continue;
      // The probe (a ServerResponse written once) runs only for a server that has header sets.
      phases.set(app, { send, blocks: sets.length && headerBlocksWork() ? new HeaderBlocks(sets) : undefined, sets });
    }
    if (!phases.size) return;
    // A single app without virtual hosts owns every response: no lookup per response.
    const [first] = this.kernel.apps;
    const only = this.kernel.apps.length === 1 && !this.vhosts.enabled && first ? phases.get(first) : undefined;
    this.fastify.addHook('onSend', (req, reply, payload, done) => {
      const ctx = req.megaCtx ?? undefined;
      const phase = only ?? phases.get((ctx?.app ?? this.appForHost(req.headers.host)) as App);
      if (phase) {
        try {
          if (phase.blocks) attachBlock(reply.raw, phase.blocks);
          else if (phase.sets.length) applySets(phase.sets, reply);
          const chain = phase.send;
          if (chain) for (let i = 0; i < chain.length; i++) (chain[i] as Send)(req, reply, ctx);
        } catch (error) {
          const app = ctx?.app ?? this.appForHost(req.headers.host);
          (app?.log ?? this.kernel.log).error({ reqId: req.id, err: error }, 'send middleware failed');
        }
      }
      done(null, payload);
    });
  }

  /**
   * Content types routes declared in `bodyTypes` (e.g. ASP's sealed bodies): parsed as text, and
   * only for those routes; any other route answers 415 as before.
   */
  #addBodyTypes(defs: readonly RouteDefinition[]): void {
    const types = new Set(defs.flatMap((d) => (d.options as HttpRouteOptions).bodyTypes ?? []).map((t) => t.toLowerCase()));
    for (const type of types) {
      this.fastify.addContentTypeParser(type, { parseAs: 'string' }, (req, body, done) => {
        const mega = (req.routeOptions.config as { mega?: { options?: HttpRouteOptions } }).mega;
        if (mega?.options?.bodyTypes?.some((t) => t.toLowerCase() === type)) done(null, body);
        else done(new MegaError('http.unsupported_media_type', `unsupported content type ${type}`, { status: 415 }));
      });
    }
  }

  async listen(): Promise<void> {
    if (!this.#flushed) this.freeze();
    const { port, host } = this.kernel.server;
    await this.fastify.listen({ port, host });
  }

  async close(): Promise<void> {
    await this.#fastify?.close();
  }

  #chains(app: App): AppChains {
    let chains = this.#global.get(app.name);
    if (!chains) {
      chains = { request: [], before: [], transform: [], after: [], send: [], headers: [] };
      this.#global.set(app.name, chains);
    }
    return chains;
  }

  /** The request id: a safe `requestIdHeader` value, else `r<counter in base 36>`. */
  #requestIds(): (req: IncomingMessage) => string {
    const header = this.config.requestIdHeader;
    let seq = 0;
    return (req) => {
      const given = req.headers[header];
      return given !== undefined && typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : `r${(++seq).toString(36)}`;
    };
  }

  /** Node's parser refused a request: answer in the envelope when the socket can still take it. */
  #clientError(error: Error & { code?: string }, socket: import('node:net').Socket): void {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    let status = 400;
    let code = 'http.bad_request';
    let message = 'the request could not be parsed';
    if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') [status, code, message] = [408, 'http.request_timeout', 'the request took too long'];
    else if (error.code === 'HPE_HEADER_OVERFLOW')
      [status, code, message] = [431, 'http.headers_too_large', 'the request headers are too large'];
    this.kernel.log.debug({ code, status, parserCode: error.code }, 'client error');
    if (socket.writable) {
      const body = JSON.stringify({ error: { code, message } });
      socket.write(
        `HTTP/1.1 ${status} ${status === 400 ? 'Bad Request' : status === 408 ? 'Request Timeout' : 'Request Header Fields Too Large'}\r\n` +
          `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroy(error);
  }

  #logAndMap(error: unknown, req: FastifyRequest) {
    const mapped = mapError(error, { production: this.kernel.env === 'production', maxDetails: this.config.maxValidationDetails });
    // One log line per failed request, with its request id.
    const log = req.megaCtx?.app.log ?? this.kernel.log;
    if (mapped.status >= 500) log.error({ reqId: req.id, err: error, code: mapped.body.code }, 'request failed');
    else log.info({ reqId: req.id, code: mapped.body.code, status: mapped.status }, 'request rejected');
    return mapped;
  }

  #addToFastify(def: RouteDefinition, target: FastifyInstance): void {
    const { app } = def;
    const options = def.options as HttpRouteOptions;
    const global = this.#global.get(app.name);
    // A router extension's route (a WebSocket upgrade) gets the app's `request` and `before`
    // phases; its own options belong to its extension, and it answers with its own handler.
    const served = def.kind === 'http' ? undefined : this.#extensions.get(def.kind)?.serve?.(def);
    const request = pick(global?.request, def.method);
    const before = served ? pick(global?.before, def.method) : concat(pick(global?.before, def.method), options.before);
    const transform = served ? undefined : concat(pick(global?.transform, def.method), options.transform);
    const after = served ? undefined : concat(pick(global?.after, def.method), options.after);
    const handler = served ?? (def.handler as Handler);
    let run: (req: FastifyRequest, reply: FastifyReply) => unknown;
    if (!before && !transform && !after) {
      // The common case: no middleware. The controller's promise gets one `then` that sends the
      // envelope, and nothing is returned to Fastify, which then adds no promise of its own.
      run = (req, reply) => {
        const result = handler(req, reply, req.megaCtx ?? this.ctx(req, reply, app));
        if (!isThenable(result)) return envelope(result, reply);
        result.then(
          (value) => {
            const out = envelope(value, reply);
            if (out !== reply) reply.send(out);
          },
          (error: unknown) => reply.send(asError(error)),
        );
        return undefined;
      };
    } else {
      const finish = async (req: FastifyRequest, reply: FastifyReply, ctx: MegaContext, value: unknown): Promise<unknown> => {
        let result = value;
        if (transform && !reply.sent) {
          for (const step of transform) {
            const next = await step(req, reply, ctx, result);
            if (next !== undefined) result = next;
          }
        }
        if (after) req.megaResult = result;
        return envelope(result, reply);
      };
      const call = (req: FastifyRequest, reply: FastifyReply, ctx: MegaContext): unknown => {
        const result = handler(req, reply, ctx);
        if (!transform && !after) return isThenable(result) ? result.then((value) => envelope(value, reply)) : envelope(result, reply);
        return isThenable(result) ? result.then((value) => finish(req, reply, ctx, value)) : finish(req, reply, ctx, result);
      };
      // `before` steps run synchronously until one returns a promise: sync middleware costs no promise.
      const steps = (req: FastifyRequest, reply: FastifyReply, ctx: MegaContext, from: number): unknown => {
        if (before) {
          for (let i = from; i < before.length; i++) {
            const r = (before[i] as Middleware)(req, reply, ctx);
            if (isThenable(r)) return r.then(() => (reply.sent ? reply : steps(req, reply, ctx, i + 1)));
            if (reply.sent) return reply;
          }
        }
        return call(req, reply, ctx);
      };
      run = (req, reply) => {
        try {
          return steps(req, reply, req.megaCtx ?? this.ctx(req, reply, app), 0);
        } catch (error) {
          return Promise.reject(error);
        }
      };
    }
    const route: FastifyRouteOptions = {
      method: def.method as FastifyRouteOptions['method'],
      url: def.path,
      handler: run,
      // Middleware reads the route's Mega options (e.g. `csrf: false`) from req.routeOptions.config.mega.
      config: { mega: { app: app.name, options: def.options, meta: def.meta } } as FastifyRouteOptions['config'],
    };
    if (this.vhosts.enabled) route.constraints = { megaApp: this.vhosts.valueOf(app) };
    if (options.schema && !served) route.schema = normalizeSchema(options.schema);
    if (typeof options.bodyLimit === 'number') route.bodyLimit = options.bodyLimit;
    if (this.#multipart && this.#readMultipart && BODY_METHODS.has(def.method)) route.preValidation = this.#readMultipart;
    const onRequest: FastifyRouteOptions['onRequest'][] = [];
    // First thing on arrival, so error answers of the route (validation, auth) carry it too.
    if (options.noStore) onRequest.push(noStoreHook as never);
    if (request) {
      onRequest.push(((req: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void) =>
        runChain(request, req, reply, req.megaCtx ?? this.ctx(req, reply, app), done)) as never);
    }
    if (onRequest.length) route.onRequest = (onRequest.length === 1 ? onRequest[0] : onRequest) as FastifyRouteOptions['onRequest'];
    if (after) {
      route.onResponse = (req: FastifyRequest, reply: FastifyReply, done: () => void) => {
        const ctx = req.megaCtx ?? this.ctx(req, reply, app);
        void (async () => {
          for (const step of after) {
            try {
              await step(req, reply, ctx, req.megaResult);
            } catch (error) {
              app.log.error({ reqId: req.id, err: error }, 'after middleware failed');
            }
          }
        })();
        done();
      };
    }
    try {
      target.route(route);
    } catch (error) {
      throw new MegaError(
        'http.route_conflict',
        `cannot register ${def.method} ${def.path} for app ${app.name}: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }

  async #registerStatic(fastify: FastifyInstance): Promise<void> {
    const apps = this.kernel.apps.filter((app) => existsSync(join(app.dir, 'public')));
    if (!apps.length) return;
    const { default: fastifyStatic } = await import('@fastify/static');
    let first = true;
    for (const app of apps) {
      await fastify.register(fastifyStatic, {
        root: join(app.dir, 'public'),
        prefix: '/static/',
        decorateReply: first,
        index: false,
        dotfiles: 'deny',
        ...(this.vhosts.enabled ? { constraints: { megaApp: this.vhosts.valueOf(app) } } : {}),
      });
      first = false;
    }
  }

  #router(app: App, pending: RouteDefinition[]): Router {
    const http = createHttpMethods(
      (method, path, handler, options) => {
        pending.push({ kind: 'http', app, method, path, handler, options, meta: {} });
      },
      (middleware) => {
        const chains = this.#chains(app);
        const entry = <T>(fn: T): Entry<T> => ({ fn, methods: undefined });
        const listed = this.#fileMiddleware.get(app.name) ?? [];
        this.#fileMiddleware.set(app.name, listed);
        if (typeof middleware === 'function') {
          chains.before.push(entry(middleware));
          listed.push({ phase: 'before', fn: middleware });
        } else {
          const m = middleware as AppMiddleware;
          for (const phase of ['before', 'transform', 'after'] as const) {
            const fns = list(m[phase] as unknown) as Array<Middleware & Transform & After>;
            chains[phase].push(...fns.map(entry));
            listed.push(...fns.map((fn) => ({ phase, fn })));
          }
        }
      },
    );
    const router: Record<string, unknown> = { app, http };
    for (const [name, extension] of this.#extensions) {
      router[name] = extension.router(app, (def) =>
        pending.push({ ...def, kind: name as RouteDefinition['kind'], app, meta: def.meta ?? {} }),
      );
    }
    return router as unknown as Router;
  }
}

/** One `router.http.use` middleware of an app's route files, by phase. */
export interface RouteFileMiddleware {
  phase: 'before' | 'transform' | 'after';
  fn: Middleware | Transform | After;
}

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Multipart limits with the schema's defaults (what TypeBox's `Value.Default` gives, without
 * loading TypeBox's value module: ~40 ms of CPU at every start).
 */
function multipartLimits(given: Partial<MultipartLimits>): MultipartLimits {
  const defaults: Record<string, unknown> = {};
  for (const [key, schema] of Object.entries(MultipartSchema.properties)) {
    if ('default' in schema) defaults[key] = schema.default;
  }
  const limits: Record<string, unknown> = { ...defaults };
  for (const [key, value] of Object.entries(given)) if (value !== undefined) limits[key] = value;
  return limits as MultipartLimits;
}

/**
 * Marks a response as not storable by any cache (`Cache-Control: no-store`): for responses that
 * carry keys, tokens or other secrets. Routes say it with the `noStore: true` option instead.
 */
export function noStore(reply: FastifyReply): FastifyReply {
  return reply.header('cache-control', 'no-store');
}

function noStoreHook(_req: FastifyRequest, reply: FastifyReply, done: () => void): void {
  noStore(reply);
  done();
}

/** Header sets through `reply.header`: where this Node's head writer cannot take a block (see headers.ts). */
function applySets(sets: readonly HeaderSet[], reply: FastifyReply): void {
  const type = reply.getHeader('content-type');
  for (const set of sets) for (const [name, value] of set(typeof type === 'string' ? type : undefined) ?? []) reply.header(name, value);
}

/** reply.send() treats anything but an Error as a payload: a thrown string must still be an error. */
function asError(error: unknown): Error {
  return error instanceof Error ? error : Object.assign(new Error(String(error)), { cause: error });
}

const isThenable = (value: unknown): value is Promise<unknown> =>
  value !== null && typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function';

function list<T>(value: T | readonly T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? [...value] : [value as T];
}

function concat<T>(a: readonly T[] | undefined, b: readonly T[] | undefined): T[] | undefined {
  const all = [...(a ?? []), ...(b ?? [])];
  return all.length ? all : undefined;
}

/** `query` is accepted as an alias of Fastify's `querystring`. */
function normalizeSchema(schema: Record<string, unknown>): Record<string, unknown> {
  if (!('query' in schema) || 'querystring' in schema) return schema;
  const { query, ...rest } = schema;
  return { ...rest, querystring: query };
}
