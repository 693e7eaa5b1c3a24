/** The Fastify instance behind @mega/http, its route loading, envelope and error mapping. */
import { existsSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import type { App, Kernel, RouteDefinition, RouteOptions } from '@mega/kernel';
import { importModule, isMegaError, MegaError } from '@mega/kernel';
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Fastify, { LogController } from 'fastify';
import type { HttpConfig } from './config.js';
import type { Handler, Router, RouterExtension } from './router.js';
import { createHttpMethods } from './router.js';

const ROUTE_FILE = /\.(ts|mts|js|mjs)$/;
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Maps Fastify's own 4xx errors (bad JSON, body too large, ...) to stable Mega codes. */
const FASTIFY_CODES: Record<number, string> = {
  400: 'http.bad_request',
  404: 'not_found',
  405: 'http.method_not_allowed',
  406: 'http.not_acceptable',
  413: 'http.body_too_large',
  415: 'http.unsupported_media_type',
  431: 'http.headers_too_large',
};

export class HttpServer {
  #fastify: FastifyInstance | undefined;
  #extensions = new Map<string, RouterExtension>();
  #routes: RouteDefinition[] = [];
  #seq = 0;

  constructor(
    private readonly kernel: Kernel,
    private readonly config: HttpConfig,
  ) {}

  /** The Fastify instance (after boot started). Escape hatch for plugins that need Fastify itself. */
  get fastify(): FastifyInstance {
    if (!this.#fastify) throw new MegaError('http.not_started', '@mega/http has not created its server yet (use it from a boot tap)');
    return this.#fastify;
  }

  /** Routes as registered (after the `route` hook). */
  get routes(): readonly RouteDefinition[] {
    return this.#routes;
  }

  /** Port actually bound (useful with port 0). */
  get port(): number {
    const address = this.#fastify?.server.address();
    return typeof address === 'object' && address ? address.port : this.kernel.server.port;
  }

  /** Adds `router.<name>` to every route file's router; call during setup. */
  extendRouter(name: string, extension: RouterExtension): void {
    if (name === 'http' || name === 'app' || this.#extensions.has(name)) {
      throw new MegaError('http.router_extension_duplicate', `router.${name} is already defined`);
    }
    this.#extensions.set(name, extension);
  }

  async create(): Promise<void> {
    const header = this.config.requestIdHeader ?? 'x-request-id';
    const fastify = Fastify({
      loggerInstance: this.kernel.log as FastifyBaseLogger,
      logController: new LogController({ disableRequestLogging: !this.config.requestLogging }),
      bodyLimit: this.config.bodyLimit ?? this.kernel.config.server?.bodyLimit ?? 1048576,
      trustProxy: this.kernel.config.server?.trustProxy ?? false,
      requestIdHeader: false,
      genReqId: (req) => {
        const given = req.headers[header];
        return typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : `r${(++this.#seq).toString(36)}`;
      },
    });
    fastify.setErrorHandler((error: FastifyError, req, reply) => this.#sendError(error, req, reply));
    fastify.setNotFoundHandler((req, reply) => {
      reply.code(404).send({ error: { code: 'not_found', message: `no route for ${req.method} ${req.url.split('?')[0]}` } });
    });
    if (this.config.health !== false && !this.kernel.has('health')) {
      fastify.get('/health', async () => ({ data: { status: 'ok' } }));
    }
    this.#fastify = fastify;
  }

  /** Imports `apps/<app>/<routesDir>/*` (sorted) and registers what they declare. */
  async loadRoutes(app: App): Promise<void> {
    const dir = join(app.dir, app.config.routesDir ?? 'routes');
    if (!existsSync(dir)) return;
    const files = readdirSync(dir)
      .filter((f) => ROUTE_FILE.test(f) && !f.endsWith('.d.ts') && !/\.test\./.test(f))
      .sort();
    for (const file of files) {
      const path = join(dir, file);
      const mod = await importModule(path, 'http.route_file_syntax');
      if (typeof mod !== 'function') {
        throw new MegaError(
          'http.route_file_invalid',
          `${relative(this.kernel.dir, path)} must export default a function (router) => { ... }`,
        );
      }
      const pending: RouteDefinition[] = [];
      const router = this.#router(app, pending);
      await (mod as (router: Router) => unknown)(router);
      for (const def of pending) this.register(def);
    }
  }

  /** Runs a definition through the `route` hook and, for HTTP routes, hands it to Fastify. */
  register(input: RouteDefinition): RouteDefinition {
    const def = this.kernel.hooks.route.isUsed() ? this.kernel.hooks.route.call(input) : input;
    this.#routes.push(def);
    if (def.kind !== 'http') return def;
    const handler = def.handler;
    if (typeof handler !== 'function') {
      throw new MegaError(
        'http.handler_invalid',
        `${def.method} ${def.path} (app ${def.app.name}): handler must be a function (req, reply, ctx)`,
      );
    }
    const { app } = def;
    const kernel = this.kernel;
    const constraints = app.hosts.length ? { host: hostPattern(app.hosts) } : undefined;
    try {
      this.fastify.route({
        method: def.method,
        url: def.path,
        ...(constraints ? { constraints } : {}),
        ...(def.options.schema ? { schema: def.options.schema } : {}),
        handler: async (req: FastifyRequest, reply: FastifyReply) => {
          const ctx = kernel.createContext(app, { id: req.id, source: req });
          const result = await (handler as Handler)(req, reply, ctx);
          return envelope(result, reply);
        },
      });
    } catch (error) {
      throw new MegaError(
        'http.route_conflict',
        `cannot register ${def.method} ${def.path} for app ${app.name}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    return def;
  }

  async listen(): Promise<void> {
    const { port, host } = this.kernel.server;
    await this.fastify.listen({ port, host });
  }

  async close(): Promise<void> {
    await this.#fastify?.close();
  }

  #router(app: App, pending: RouteDefinition[]): Router {
    const http = createHttpMethods((method, path, handler, options: RouteOptions) => {
      pending.push({ kind: 'http', app, method, path, handler, options, meta: {} });
    });
    const router: Record<string, unknown> = { app, http };
    for (const [name, extension] of this.#extensions) {
      router[name] = extension(app, (def) => pending.push({ ...def, app, meta: def.meta ?? {} }));
    }
    return router as unknown as Router;
  }

  #sendError(error: unknown, req: FastifyRequest, reply: FastifyReply): void {
    const production = this.kernel.env === 'production';
    let status: number;
    let body: { code: string; message: string; details?: unknown; stack?: string };
    if (isMegaError(error)) {
      status = error.status;
      body = error.toJSON();
    } else {
      const fe = error as FastifyError;
      if (fe.validation) {
        status = 400;
        body = { code: 'validation.failed', message: fe.message, details: fe.validation.slice(0, 20) };
      } else if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
        status = fe.statusCode;
        const json = fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || fe.code === 'FST_ERR_CTP_EMPTY_JSON_BODY';
        body = { code: json ? 'http.invalid_json' : (FASTIFY_CODES[status] ?? 'http.bad_request'), message: fe.message };
      } else {
        status = 500;
        body = { code: 'internal', message: production ? 'internal server error' : (fe?.message ?? String(error)) };
        if (!production && fe?.stack) body.stack = fe.stack;
      }
    }
    // One log line per failed request, with the request id pino already binds to req.log.
    if (status >= 500) req.log.error({ err: error, code: body.code }, 'request failed');
    else req.log.info({ code: body.code, status }, 'request rejected');
    reply.code(status).send({ error: body });
  }
}

function hostPattern(hosts: readonly string[]): RegExp {
  const escaped = hosts.map((h) => h.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^(?:${escaped.join('|')})(?::\\d+)?$`, 'i');
}

/** `{ data }` once: raw bodies (buffers, streams, strings) and already-enveloped objects pass through. */
function envelope(result: unknown, reply: FastifyReply): unknown {
  if (reply.sent || result === reply) return reply;
  if (result === undefined) return reply.code(204).send();
  if (typeof result === 'string' || Buffer.isBuffer(result) || result instanceof Readable || result instanceof Uint8Array) return result;
  if (result !== null && typeof result === 'object' && 'data' in result && Object.keys(result).every((k) => k === 'data' || k === 'meta')) {
    return result;
  }
  return { data: result };
}
