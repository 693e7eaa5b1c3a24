/**
 * The app key `security` of apps/<name>/app.config.ts: the one source of its type and defaults.
 * `cors`, `rateLimit` and `csrf` are `false | {...}`; Ajv applies no defaults inside such a union,
 * so the plugin fills each object's defaults from these same schemas (`withDefaults`).
 */
import type { Static, TObject } from '@mega/kernel';
import { Secret, Type } from '@mega/kernel';
import { Value } from '@sinclair/typebox/value';
import type { HelmetOptions } from 'helmet';

export const CorsSchema = Type.Object(
  {
    /** Origins allowed to read responses cross-origin (`https://app.example.com`), or `'*'` for any. */
    origin: Type.Union([Type.Literal('*'), Type.Array(Type.String({ minLength: 1 }))], { default: [] }),
    credentials: Type.Boolean({ default: false }),
    methods: Type.Array(Type.String(), { default: ['GET', 'HEAD', 'PUT', 'PATCH', 'POST', 'DELETE'] }),
    /** Allowed request headers; unset: whatever the preflight asks for. */
    allowedHeaders: Type.Optional(Type.Array(Type.String())),
    exposedHeaders: Type.Optional(Type.Array(Type.String())),
    /** Preflight cache, seconds. */
    maxAge: Type.Integer({ minimum: 0, default: 600 }),
  },
  { additionalProperties: false },
);

export const RateLimitSchema = Type.Object(
  {
    /** Requests per window per client IP. */
    max: Type.Integer({ minimum: 1, default: 1000 }),
    windowMs: Type.Integer({ minimum: 1, default: 60_000 }),
    /** Cache alias (`services.caches.<alias>`, driver redis, @mega/cache-redis) that makes the counters shared across processes. */
    cache: Type.String({ minLength: 1, default: 'rate' }),
    /** Redis counters only: a hit waiting longer than this (Redis down or slow) lets the request through. */
    timeoutMs: Type.Integer({ minimum: 1, default: 250 }),
  },
  { additionalProperties: false },
);

export const CsrfSchema = Type.Object(
  {
    cookieName: Type.String({ minLength: 1, default: 'mega_csrf' }),
    fieldName: Type.String({ minLength: 1, default: '_csrf' }),
    headerName: Type.String({ minLength: 1, default: 'x-csrf-token' }),
    /** JSON requests without an `Origin` header are refused unless this is true (non-browser API clients). */
    allowMissingOrigin: Type.Boolean({ default: false }),
    /** How long a token from `ctx.csrfToken()` is accepted, milliseconds (a form left open longer must be reloaded). */
    ttlMs: Type.Integer({ minimum: 1000, default: 86_400_000 }),
  },
  { additionalProperties: false },
);

export const SecurityAppConfig = Type.Object({
  security: Type.Object(
    {
      /** Everything off for this app. */
      enabled: Type.Boolean({ default: true }),
      /** Helmet options, or false. */
      helmet: Type.Union([Type.Literal(false), Type.Unsafe<HelmetOptions>({ type: 'object' })], { default: {} }),
      /**
       * `'documents'`: HTML, text and files get helmet's full set; JSON responses get the headers that
       * still apply to them (HSTS, nosniff, CORP, X-Frame-Options) and
       * `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'`. `'all'`: the full set everywhere.
       */
      helmetScope: Type.Union([Type.Literal('documents'), Type.Literal('all')], { default: 'documents' }),
      // Partial here (the file may leave any key out); `withDefaults` completes them from the full schemas.
      cors: Type.Union([Type.Literal(false), Type.Partial(CorsSchema)], { default: {} }),
      rateLimit: Type.Union([Type.Literal(false), Type.Partial(RateLimitSchema)], { default: {} }),
      csrf: Type.Union([Type.Literal(false), Type.Partial(CsrfSchema)], { default: {} }),
      /**
       * HMAC key of CSRF tokens; the kernel fills it from MEGA_SECURITY_SECRET or MEGA_SECRET. Optional
       * for the kernel because only CSRF needs it: the plugin fails production boot when CSRF is on without one.
       */
      secret: Type.Optional(
        Secret({ env: 'MEGA_SECURITY_SECRET', code: 'security.secret_missing', purpose: 'CSRF tokens', minBytes: 16, optional: true }),
      ),
    },
    { additionalProperties: false, default: {} },
  ),
});

export type SecurityConfig = Static<typeof SecurityAppConfig>['security'];
export type CorsConfig = Static<typeof CorsSchema>;
export type RateLimitConfig = Static<typeof RateLimitSchema>;
export type CsrfConfig = Static<typeof CsrfSchema>;

/** An object branch of a `false | {...}` key with its schema's defaults applied (on a copy). */
export function withDefaults<T extends TObject>(schema: T, value: object): Static<T> {
  return Value.Default(schema, structuredClone(value)) as Static<T>;
}
