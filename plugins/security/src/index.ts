/**
 * @mega/security: on by default for every app once installed.
 * - helmet headers (the header set is computed once per app at boot from helmet's own middleware and
 *   copied onto each reply);
 * - CORS: cross-origin reads denied unless `cors.origin` lists the origin; preflights answered here;
 * - rate limit: 1000 requests/min per client IP (memory, or Redis through @mega/cache-redis when
 *   `services.caches.rate` exists), 429 `rate.limited` with `Retry-After`;
 * - CSRF: unsafe methods with a JSON body need an `Origin` equal to the app's own origin (scheme, host
 *   and port) or a CORS-allowed one; any other unsafe request (forms, multipart, no body) needs a
 *   token (`ctx.csrfToken()`) bound to the session (or to a server-made cookie) with an expiry,
 *   GET/HEAD/OPTIONS exempt. Checked in the `request` phase, before any body is read, except the
 *   `_csrf` field of urlencoded forms (a bounded in-memory parse, then the `before` phase).
 * Every rejection is logged with its reason.
 */
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { MegaTracer } from '@mega/adapters';
import { redactUrl } from '@mega/adapters';
// Brings the `redis` service type of @mega/cache-redis into scope (the plugin itself is optional).
import type {} from '@mega/cache-redis';
import type { HeaderSet, Middleware } from '@mega/http';
import type { App, ConfigInput, MegaContext } from '@mega/kernel';
import { ConfigError, definePlugin, MegaError, PluginError, packageVersion, within } from '@mega/kernel';
// Brings ctx.session and the `sessions` service of @mega/session into scope (an optional peer).
import type {} from '@mega/session';
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
const SESSION = '@mega/session';

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
const FORM_TYPE = /^application\/x-www-form-urlencoded\b/i;

/**
 * Labels of the keys derived from `security.secret` (HKDF-SHA256, salt "mega"): one key per kind of
 * signed value, so a secret shared with other plugins (MEGA_SECRET) never signs two kinds of values
 * with one key (issue 11, B9: a CSRF signature over a client-chosen nonce was a valid session cookie).
 */
export const CSRF_TOKEN_LABEL = 'mega.security.csrf-token.v1';
export const CSRF_COOKIE_LABEL = 'mega.security.csrf-cookie.v1';

/** HKDF-SHA256(secret, salt "mega", info label), 32 bytes. */
export function purposeKey(secret: string, label: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'mega', label, 32));
}

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

/** A URL for logs: CSRF tokens in the query (multipart forms) are not written to the log. */
const logUrl = (url: string): string => (url.includes('?') ? url.replace(/([?&][^=&]*csrf[^=&]*=)[^&]*/gi, '$1***') : url);

/** Apps whose kernel loads @mega/tracing: a rejection marks the request's span (a rare path: one lookup). */
const tracers = new WeakMap<App, MegaTracer>();

function reject(req: FastifyRequest, reply: FastifyReply, app: App, status: number, code: string, message: string): FastifyReply {
  app.log.warn({ reqId: req.id, reason: code, ip: req.ip, method: req.method, url: logUrl(req.url) }, 'security: request rejected');
  tracers.get(app)?.annotate('mega.security.reason', code);
  return reply.code(status).send({ error: { code, message } });
}

function sign(key: Buffer, value: string): string {
  return createHmac('sha256', key).update(value).digest('base64url');
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

function parseUrl(value: string): URL | undefined {
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

/**
 * May a browser page at `origin` send this JSON write? Its whole origin (scheme, host, port) must be
 * a CORS-allowed origin, or the app's own: the request's scheme and port with the request's host
 * (an app without `hosts`) or one of the app's hosts (issue 11, B15: the port and scheme count).
 */
function originAllowed(p: AppPolicy, req: FastifyRequest, origin: string): boolean {
  const o = parseUrl(origin);
  if (!o || o.origin === 'null') return false;
  if (p.allowedOrigins.has(o.origin)) return true;
  const self = req.headers.host ? parseUrl(`${req.protocol}://${req.headers.host}`) : undefined;
  if (!self || o.protocol !== self.protocol || o.port !== self.port) return false;
  return p.app.hosts.length === 0 ? o.hostname === self.hostname : p.appHosts.has(o.hostname);
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
  /** Keys derived from the secret: token MACs and the CSRF cookie's own MAC. */
  tokenKey: Buffer;
  cookieKey: Buffer;
  /** CORS-allowed origins, normalised (`URL.origin`): JSON writes from them pass the CSRF check. */
  allowedOrigins: Set<string>;
  /** The app's hosts, lower case. */
  appHosts: Set<string>;
  /** True when @mega/session serves the app: tokens bind to the session. */
  sessions: boolean;
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

/** The CSRF cookie's random value when the cookie is one this server made (its MAC holds), else undefined. */
function csrfCookie(p: AppPolicy, cookieHeader: string | undefined): string | undefined {
  const csrf = p.csrf as CsrfConfig;
  const value = cookieHeader ? parseCookie(cookieHeader)[csrf.cookieName] : undefined;
  if (!value) return undefined;
  const dot = value.indexOf('.');
  if (dot <= 0) return undefined;
  const random = value.slice(0, dot);
  return safeEqual(value.slice(dot + 1), sign(p.cookieKey, `${p.app.name}:${random}`)) ? random : undefined;
}

/**
 * What a token binds to for this request: the visitor's session (the id its cookie presents, when
 * @mega/session serves the app and the cookie's signature holds), else the server-made CSRF cookie.
 */
function binding(p: AppPolicy, ctx: MegaContext, cookieHeader: string | undefined): string | undefined {
  if (p.sessions) {
    const id = ctx.session.presentedId();
    if (id !== undefined) return `s:${id}`;
  }
  const random = csrfCookie(p, cookieHeader);
  return random === undefined ? undefined : `c:${random}`;
}

/** `<expiry, base36 ms>.<HMAC(tokenKey, app | binding | expiry)>`. */
function makeToken(p: AppPolicy, bound: string, expires: number): string {
  const exp = expires.toString(36);
  return `${exp}.${sign(p.tokenKey, `${p.app.name}|${bound}|${exp}`)}`;
}

type Verdict = undefined | 'csrf.invalid_token' | 'csrf.expired_token';

function verify(p: AppPolicy, ctx: MegaContext, req: FastifyRequest, token: string): Verdict {
  const bound = binding(p, ctx, req.headers.cookie);
  const dot = token.indexOf('.');
  if (bound === undefined || dot <= 0 || dot > 12) return 'csrf.invalid_token';
  const exp = token.slice(0, dot);
  if (!safeEqual(token.slice(dot + 1), sign(p.tokenKey, `${p.app.name}|${bound}|${exp}`))) return 'csrf.invalid_token';
  return Number.parseInt(exp, 36) > Date.now() ? undefined : 'csrf.expired_token';
}

const VERDICT_MESSAGE = {
  'csrf.invalid_token': 'the CSRF token does not match this browser session',
  'csrf.expired_token': 'the CSRF token has expired: reload the form',
} as const;

const routeOptedOut = (req: FastifyRequest): boolean =>
  (req.routeOptions.config as { mega?: { options?: { csrf?: boolean } } } | undefined)?.mega?.options?.csrf === false;

/** The token of a header or (multipart and other non-form bodies) the query, if any. */
function headerOrQueryToken(csrf: CsrfConfig, req: FastifyRequest): unknown {
  const header = req.headers[csrf.headerName];
  if (header !== undefined) return header;
  return (req.query as Record<string, unknown> | undefined)?.[csrf.fieldName];
}

/**
 * The `request` phase of CSRF (before any body is read): JSON writes by Origin; tokens in the header
 * or the query. Only urlencoded forms without one wait for their (bounded, in-memory) body: a
 * multipart or other body without a token is refused here, before a byte of it is spooled (B16).
 */
function csrfRequestPhase(p: AppPolicy): Middleware {
  const csrf = p.csrf as CsrfConfig;
  const { app } = p;
  return (req, reply, ctx) => {
    if (SAFE_METHODS.has(req.method) || routeOptedOut(req)) return undefined;
    const type = req.headers['content-type'];
    if (type !== undefined && JSON_TYPE.test(type)) {
      const origin = req.headers.origin;
      if (origin === undefined || origin === 'null') {
        if (csrf.allowMissingOrigin && origin === undefined) return undefined;
        return reject(req, reply, app, 403, 'csrf.origin_missing', 'JSON requests that change state must carry an Origin header');
      }
      if (!originAllowed(p, req, origin)) {
        return reject(req, reply, app, 403, 'csrf.origin_mismatch', `Origin ${origin} is not this app's origin nor a CORS-allowed one`);
      }
      return undefined;
    }
    const token = headerOrQueryToken(csrf, req);
    if (token === undefined && type !== undefined && FORM_TYPE.test(type)) return undefined; // the body's field: `before` phase
    const missing = `this request needs a CSRF token: header ${csrf.headerName}, or field ${csrf.fieldName} of a urlencoded form, or ?${csrf.fieldName}= for multipart`;
    return checkToken(p, req, reply, ctx, token, missing);
  };
}

/** Refuses a missing token with `missing`, then an invalid one with its verdict (both 403); undefined when it verifies. */
function checkToken(p: AppPolicy, req: FastifyRequest, reply: FastifyReply, ctx: MegaContext, token: unknown, missing: string) {
  if (typeof token !== 'string' || token === '') return reject(req, reply, p.app, 403, 'csrf.missing_token', missing);
  const verdict = verify(p, ctx, req, token);
  return verdict ? reject(req, reply, p.app, 403, verdict, VERDICT_MESSAGE[verdict]) : undefined;
}

/** The `before` phase of CSRF: the `_csrf` field of urlencoded forms that carried no header or query token. */
function csrfBodyPhase(p: AppPolicy): Middleware {
  const csrf = p.csrf as CsrfConfig;
  return (req, reply, ctx) => {
    if (SAFE_METHODS.has(req.method) || routeOptedOut(req)) return undefined;
    const type = req.headers['content-type'];
    if (type === undefined || !FORM_TYPE.test(type) || headerOrQueryToken(csrf, req) !== undefined) return undefined;
    const body = req.body as Record<string, unknown> | undefined;
    const token = body && typeof body === 'object' ? body[csrf.fieldName] : undefined;
    return checkToken(p, req, reply, ctx, token, `form posts need a CSRF token (field ${csrf.fieldName} or header ${csrf.headerName})`);
  };
}

/**
 * Helmet headers on every response of the app (routes, errors, 404s, static files), by content type:
 * a `headers` phase set, which @mega/http renders and validates once per content type.
 */
function headerSet(p: AppPolicy): HeaderSet {
  const { headers, jsonHeaders } = p;
  return (type) => (type !== undefined && JSON_TYPE.test(type) ? jsonHeaders : headers);
}

export default definePlugin({
  name: '@mega/security',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/http'],
  // Set up after the Redis owner, the session plugin and @mega/tracing when they are loaded, so their services are there.
  after: [CACHE_REDIS, SESSION, '@mega/tracing'],
  config: { app: SecurityAppConfig },
  setup(api) {
    const { kernel } = api;
    const policies = new Map<string, AppPolicy>();
    /** App -> its rate limit, and the Redis cache alias of its counters (undefined: in memory). */
    const rates = new Map<string, { config: RateLimitConfig; redis: string | undefined }>();
    const stores: RateStore[] = [];
    if (api.has('tracing')) for (const app of kernel.apps) tracers.set(app, api.use<MegaTracer>('tracing'));
    for (const app of kernel.apps) {
      const config = api.appConfig(app).security;
      if (!config.enabled) continue;
      const cors = withDefaults(CorsSchema, config.cors || { origin: [] });
      const origins = cors.origin === '*' ? '*' : new Set(cors.origin);
      const allowedOrigins = new Set<string>();
      if (origins !== '*') for (const o of origins) allowedOrigins.add(parseUrl(o)?.origin ?? o);
      const full = config.helmet === false ? undefined : helmetHeaders(config.helmet);
      const csrf = config.csrf === false ? undefined : withDefaults(CsrfSchema, config.csrf);
      // The kernel fills the secret from the environment (a random one in development); only
      // production can reach here without one, and only CSRF needs it.
      if (csrf && config.secret === undefined) {
        throw new ConfigError(
          'security.secret_missing',
          `app ${app.name}: CSRF tokens need a secret in production; set security.secret in its app.config.ts or MEGA_SECURITY_SECRET (or MEGA_SECRET), or turn CSRF off with csrf: false`,
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
        tokenKey: purposeKey(config.secret ?? '', CSRF_TOKEN_LABEL),
        cookieKey: purposeKey(config.secret ?? '', CSRF_COOKIE_LABEL),
        allowedOrigins,
        appHosts: new Set(app.hosts.map((h) => h.toLowerCase())),
        sessions: api.has('sessions') && api.use('sessions').enabled(app.name),
      });
    }

    api.contributeCtx('csrfToken', (ctx) => () => {
      const policy = policies.get(ctx.app.name);
      if (!policy?.csrf) throw new MegaError('security.csrf_disabled', `CSRF is off for app ${ctx.app.name}`);
      const req = ctx.source as FastifyRequest;
      let bound = binding(policy, ctx, req.headers.cookie);
      if (bound === undefined) {
        // No session and no cookie of ours: a fresh random value, MAC'd so that no client-chosen value is ever bound.
        const random = randomBytes(18).toString('base64url');
        bound = `c:${random}`;
        ctx.reply?.header(
          'set-cookie',
          stringifySetCookie({
            name: policy.csrf.cookieName,
            value: `${random}.${sign(policy.cookieKey, `${policy.app.name}:${random}`)}`,
            path: '/',
            httpOnly: true,
            sameSite: 'lax',
            secure: kernel.env === 'production',
          }),
        );
      }
      return makeToken(policy, bound, Date.now() + policy.csrf.ttlMs);
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
        if (policy.csrf) {
          const methods = ['POST', 'PUT', 'PATCH', 'DELETE'];
          http.use(csrfRequestPhase(policy), { phase: 'request', apps, methods });
          http.use(csrfBodyPhase(policy), { apps, methods });
        }
        if (policy.headers) http.use(headerSet(policy), { phase: 'headers', apps });
      }
    });

    api.onShutdown(async () => {
      for (const store of stores) await store.close();
    });
  },
});
