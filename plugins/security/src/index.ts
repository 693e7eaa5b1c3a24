/**
 * @mega/security: on by default for every app once installed.
 * - helmet headers (the header set is computed once per app at boot from helmet's own middleware and
 *   copied onto each reply);
 * - CORS: cross-origin reads denied unless `cors.origin` lists the origin; preflights answered here;
 * - rate limit: 1000 requests/min per client IP (memory, or Redis through @mega/cache-redis when
 *   `services.caches.rate` exists), 429 `rate.limited` with `Retry-After`;
 * - CSRF: unsafe methods with a JSON body need an `Origin` in the app's hosts; any other unsafe
 *   request (forms, multipart, no body) needs a token (`ctx.csrfToken()`), GET/HEAD/OPTIONS exempt.
 * Every rejection is logged with its reason.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { redactUrl } from '@mega/adapters';
// Brings the `redis` service type of @mega/cache-redis into scope (the plugin itself is optional).
import type {} from '@mega/cache-redis';
import type { Middleware } from '@mega/http';
import type { App, ConfigInput } from '@mega/kernel';
import { ConfigError, definePlugin, MegaError, PluginError, packageVersion, within } from '@mega/kernel';
import { parseCookie, stringifySetCookie } from 'cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';
import helmet from 'helmet';
import type { CorsConfig, CsrfConfig, RateLimitConfig } from './config.js';
import { CorsSchema, CsrfSchema, RateLimitSchema, SecurityAppConfig, withDefaults } from './config.js';
import type { RateResult, RateStore } from './rate-limit.js';
import { MemoryRateStore, RedisRateStore } from './rate-limit.js';

export type { CorsConfig, CsrfConfig, RateLimitConfig, SecurityConfig } from './config.js';
export { CorsSchema, CsrfSchema, RateLimitSchema, SecurityAppConfig } from './config.js';
export { MemoryRateStore, RedisRateStore } from './rate-limit.js';

const CACHE_REDIS = '@mega/cache-redis';

declare module '@mega/kernel' {
  /** This plugin's keys of app.config.ts (see the README's config table). */
  interface AppConfig {
    security?: ConfigInput<typeof SecurityAppConfig>['security'];
  }
  interface MegaContext {
    /** A CSRF token for forms (`<input type="hidden" name="_csrf" value="...">`); sets the CSRF cookie when missing. */
    csrfToken(): string;
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\b/i;

/** Helmet's header set for a config, captured once by running its middleware against a recording response. */
export function helmetHeaders(options: Parameters<typeof helmet>[0]): Array<[string, string]> {
  const headers = new Map<string, string>();
  const res = {
    setHeader: (name: string, value: unknown) => headers.set(name.toLowerCase(), String(value)),
    removeHeader: (name: string) => headers.delete(name.toLowerCase()),
    getHeader: (name: string) => headers.get(name.toLowerCase()),
  };
  let failure: unknown;
  helmet(options)({} as never, res as never, (error?: unknown) => {
    failure = error;
  });
  if (failure) throw failure;
  return [...headers];
}

/** Helmet headers that still mean something on a JSON response (no browser renders it as a document). */
const API_HEADERS = new Set(['strict-transport-security', 'x-content-type-options', 'cross-origin-resource-policy', 'x-frame-options']);
/** The CSP of JSON responses: nothing may load, nothing may frame (OWASP REST security headers). */
export const API_CSP = "default-src 'none'; frame-ancestors 'none'";

/** The subset of a helmet header set sent with JSON responses when `helmetScope` is `'documents'`. */
export function apiHeaders(all: ReadonlyArray<[string, string]>): Array<[string, string]> {
  const subset = all.filter(([k]) => API_HEADERS.has(k));
  if (all.some(([k]) => k === 'content-security-policy')) subset.push(['content-security-policy', API_CSP]);
  return subset;
}

function reject(req: FastifyRequest, reply: FastifyReply, app: App, status: number, code: string, message: string): FastifyReply {
  app.log.warn({ reqId: req.id, reason: code, ip: req.ip, method: req.method, url: req.url }, 'security: request rejected');
  return reply.code(status).send({ error: { code, message } });
}

function sign(secret: string, value: string): string {
  return createHmac('sha256', secret).update(value).digest('base64url');
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function originHost(origin: string): string | undefined {
  try {
    return new URL(origin).host.toLowerCase();
  } catch {
    return undefined;
  }
}

interface AppPolicy {
  app: App;
  /** Helmet's full set (documents: HTML, text, files) and the set for JSON responses. */
  headers: Array<[string, string]> | undefined;
  jsonHeaders: Array<[string, string]> | undefined;
  cors: CorsConfig;
  corsOrigins: Set<string> | '*';
  rate: { store: RateStore; max: number; timeoutMs: number } | undefined;
  csrf: CsrfConfig | undefined;
  secret: string;
  /** Hosts an `Origin` may name for JSON writes: the app's hosts plus CORS-allowed origins. */
  originHosts: Set<string>;
}

function requestPhase(p: AppPolicy): Middleware {
  const { app, rate, corsOrigins, cors } = p;
  const limit = rate?.max ?? 0;
  const limitHeader = String(limit);
  const onCount = (req: FastifyRequest, reply: FastifyReply, count: number, resetMs: number): boolean => {
    if (count <= limit) return true;
    const seconds = Math.max(1, Math.ceil(resetMs / 1000));
    reply.header('retry-after', String(seconds));
    reply.header('x-ratelimit-limit', limitHeader);
    reply.header('x-ratelimit-remaining', '0');
    reply.header('x-ratelimit-reset', String(seconds));
    reject(req, reply, app, 429, 'rate.limited', `too many requests: limit ${limit} per window, retry in ${seconds} s`);
    return false;
  };
  const rest = (req: FastifyRequest, reply: FastifyReply): unknown => {
    const origin = req.headers.origin;
    if (origin === undefined) return undefined;
    const allowed = corsOrigins === '*' || corsOrigins.has(origin);
    const preflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
    if (allowed) {
      reply.header('access-control-allow-origin', corsOrigins === '*' && !cors.credentials ? '*' : origin);
      reply.header('vary', 'Origin');
      if (cors.credentials) reply.header('access-control-allow-credentials', 'true');
      if (cors.exposedHeaders?.length) reply.header('access-control-expose-headers', cors.exposedHeaders.join(', '));
      if (preflight) {
        reply.header('access-control-allow-methods', cors.methods.join(', '));
        const asked = req.headers['access-control-request-headers'];
        const allowHeaders = cors.allowedHeaders?.join(', ') ?? asked;
        if (allowHeaders) reply.header('access-control-allow-headers', allowHeaders);
        reply.header('access-control-max-age', String(cors.maxAge));
        return reply.code(204).send();
      }
      return undefined;
    }
    if (preflight && originHost(origin) !== req.headers.host?.toLowerCase()) {
      return reject(req, reply, app, 403, 'cors.origin_denied', `cross-origin requests from ${origin} are not allowed`);
    }
    return undefined;
  };
  if (!rate) return rest;
  const { store, timeoutMs } = rate;
  const slow = () => new MegaError('rate.store_timeout', `the rate limit store did not answer within ${timeoutMs} ms`);
  return (req, reply) => {
    const counted = store.hit(req.ip);
    // A shared Redis client queues commands while reconnecting: bound the wait, then fail open.
    const hit: RateResult | Promise<RateResult> = counted instanceof Promise ? within(counted, timeoutMs, slow) : counted;
    if (hit instanceof Promise) {
      return hit.then(
        (r) => (onCount(req, reply, r.count, r.resetMs) ? rest(req, reply) : undefined),
        (error: unknown) => {
          // Fail open: a rate store outage must not take the site down.
          app.log.warn(
            { reqId: req.id, err: error, reason: 'rate.store_unavailable' },
            'security: rate limit store failed; request allowed',
          );
          return rest(req, reply);
        },
      );
    }
    return onCount(req, reply, hit.count, hit.resetMs) ? rest(req, reply) : undefined;
  };
}

function csrfPhase(p: AppPolicy): Middleware {
  const csrf = p.csrf as CsrfConfig;
  const { app } = p;
  return (req, reply) => {
    if (SAFE_METHODS.has(req.method)) return undefined;
    const config = (req.routeOptions.config as { mega?: { options?: { csrf?: boolean } } } | undefined)?.mega;
    if (config?.options?.csrf === false) return undefined;
    const type = req.headers['content-type'];
    if (type !== undefined && JSON_TYPE.test(type)) {
      const origin = req.headers.origin;
      if (origin === undefined || origin === 'null') {
        if (csrf.allowMissingOrigin && origin === undefined) return undefined;
        return reject(req, reply, app, 403, 'csrf.origin_missing', 'JSON requests that change state must carry an Origin header');
      }
      const host = originHost(origin);
      const sameHost = host !== undefined && host === req.headers.host?.toLowerCase() && app.hosts.length === 0;
      if (host === undefined || !(sameHost || p.originHosts.has(host) || p.originHosts.has(host.replace(/:\d+$/, '')))) {
        return reject(req, reply, app, 403, 'csrf.origin_mismatch', `Origin ${origin} is not one of this app's hosts`);
      }
      return undefined;
    }
    const body = req.body as Record<string, unknown> | undefined;
    let token: unknown = req.headers[csrf.headerName];
    if (token === undefined && body && typeof body === 'object') {
      const field = body[csrf.fieldName];
      token = field && typeof field === 'object' && 'value' in field ? (field as { value: unknown }).value : field;
    }
    if (typeof token !== 'string' || token === '') {
      return reject(
        req,
        reply,
        app,
        403,
        'csrf.missing_token',
        `form posts need a CSRF token (field ${csrf.fieldName} or header ${csrf.headerName})`,
      );
    }
    const cookieHeader = req.headers.cookie;
    const nonce = cookieHeader ? parseCookie(cookieHeader)[csrf.cookieName] : undefined;
    const dot = token.indexOf('.');
    const valid =
      dot > 0 && nonce !== undefined && safeEqual(token.slice(0, dot), nonce) && safeEqual(token.slice(dot + 1), sign(p.secret, nonce));
    if (!valid) return reject(req, reply, app, 403, 'csrf.invalid_token', 'the CSRF token does not match this browser session');
    return undefined;
  };
}

/** Helmet headers on every response of the app (routes, errors, 404s, static files), once its content type is known. */
function sendPhase(p: AppPolicy) {
  const { headers, jsonHeaders } = p;
  return (_req: FastifyRequest, reply: FastifyReply): void => {
    const type = reply.getHeader('content-type');
    const list = typeof type === 'string' && JSON_TYPE.test(type) ? jsonHeaders : headers;
    if (list) for (let i = 0; i < list.length; i++) reply.header((list[i] as [string, string])[0], (list[i] as [string, string])[1]);
  };
}

export default definePlugin({
  name: '@mega/security',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/http'],
  // Set up after the Redis owner when it is loaded, so its `redis` service is there.
  after: [CACHE_REDIS],
  config: { app: SecurityAppConfig },
  setup(api) {
    const { kernel } = api;
    const policies = new Map<string, AppPolicy>();
    /** App -> its rate limit, and the Redis cache alias of its counters (undefined: in memory). */
    const rates = new Map<string, { config: RateLimitConfig; redis: string | undefined }>();
    const stores: RateStore[] = [];
    for (const app of kernel.apps) {
      const config = api.appConfig(app).security;
      if (!config.enabled) continue;
      const cors = withDefaults(CorsSchema, config.cors || { origin: [] });
      const origins = cors.origin === '*' ? '*' : new Set(cors.origin);
      const originHosts = new Set<string>(app.hosts);
      if (origins !== '*') for (const o of origins) originHosts.add(originHost(o) ?? o);
      const full = config.helmet === false ? undefined : helmetHeaders(config.helmet);
      const csrf = config.csrf === false ? undefined : withDefaults(CsrfSchema, config.csrf);
      // The kernel fills the secret from the environment (a random one in development); only
      // production can reach here without one, and only CSRF needs it.
      if (csrf && config.secret === undefined) {
        throw new ConfigError(
          'security.secret_missing',
          `app ${app.name}: CSRF tokens need a secret in production; set security.secret in apps/${app.name}/app.config.ts or MEGA_SECURITY_SECRET (or MEGA_SECRET), or turn CSRF off with csrf: false`,
          { details: { key: 'security.secret', app: app.name } },
        );
      }
      if (config.rateLimit !== false) {
        const rate = withDefaults(RateLimitSchema, config.rateLimit);
        const declared = kernel.config.services?.caches?.[rate.cache];
        const redis = declared?.driver === 'redis';
        rates.set(app.name, { config: rate, redis: redis ? rate.cache : undefined });
        if (redis) {
          if (!api.has('redis')) {
            throw new PluginError(
              'plugin.missing_dependency',
              `app ${app.name}: security.rateLimit.cache "${rate.cache}" is a Redis cache (services.caches.${rate.cache}, ${redactUrl(declared.url) ?? 'no url'}), which needs ${CACHE_REDIS}; run: mega plugin add ${CACHE_REDIS}`,
              { plugin: api.name, details: { plugin: api.name, missing: CACHE_REDIS, app: app.name } },
            );
          }
        }
      }
      policies.set(app.name, {
        app,
        headers: full,
        jsonHeaders: full && config.helmetScope === 'documents' ? apiHeaders(full) : full,
        cors,
        corsOrigins: origins,
        rate: undefined,
        csrf,
        secret: config.secret ?? '',
        originHosts,
      });
    }

    api.contributeCtx('csrfToken', (ctx) => () => {
      const policy = policies.get(ctx.app.name);
      if (!policy?.csrf) throw new MegaError('security.csrf_disabled', `CSRF is off for app ${ctx.app.name}`);
      const req = ctx.source as FastifyRequest;
      const cookieHeader = req.headers.cookie;
      let nonce = cookieHeader ? parseCookie(cookieHeader)[policy.csrf.cookieName] : undefined;
      if (!nonce || !/^[A-Za-z0-9_-]{16,64}$/.test(nonce)) {
        nonce = randomBytes(18).toString('base64url');
        ctx.reply?.header(
          'set-cookie',
          stringifySetCookie({
            name: policy.csrf.cookieName,
            value: nonce,
            path: '/',
            httpOnly: true,
            sameSite: 'lax',
            secure: kernel.env === 'production',
          }),
        );
      }
      return `${nonce}.${sign(policy.secret, nonce)}`;
    });

    // Stage 0: before @mega/http loads routes (500) and freezes the app-wide middleware (900).
    api.tap('boot', () => {
      const http = api.use('http');
      for (const policy of policies.values()) {
        const name = policy.app.name;
        const entry = rates.get(name);
        if (entry) {
          const { config: rate, redis: alias } = entry;
          // The shared client of @mega/cache-redis (connected by its own boot tap, which runs first).
          const store =
            alias === undefined
              ? new MemoryRateStore(rate.windowMs)
              : new RedisRateStore(api.use('redis').client(alias), rate.windowMs, `mega:rate:${name}:`);
          if (alias !== undefined)
            api.log.debug({ app: name, cache: alias, url: redactUrl(api.use('redis').url(alias)) }, 'security: rate counters in Redis');
          stores.push(store);
          policy.rate = { store, max: rate.max, timeoutMs: rate.timeoutMs };
        }
        const apps = [name];
        http.use(requestPhase(policy), { phase: 'request', apps });
        if (policy.csrf) http.use(csrfPhase(policy), { apps, methods: ['POST', 'PUT', 'PATCH', 'DELETE'] });
        if (policy.headers) http.use(sendPhase(policy), { phase: 'send', apps });
      }
    });

    api.onShutdown(async () => {
      for (const store of stores) await store.close();
    });
  },
});
