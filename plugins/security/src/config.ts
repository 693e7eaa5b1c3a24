/** Per-app config of @mega/security (key `security` in apps/<name>/app.config.ts). */
import type { HelmetOptions } from 'helmet';

export interface CorsConfig {
  /** Origins allowed to read responses cross-origin (`https://app.example.com`), or `'*'` for any. Default: none. */
  origin?: string[] | '*';
  credentials?: boolean;
  methods?: string[];
  /** Allowed request headers; default: whatever the preflight asks for. */
  allowedHeaders?: string[];
  exposedHeaders?: string[];
  /** Preflight cache, seconds. */
  maxAge?: number;
}

export interface RateLimitConfig {
  /** Requests per window per client IP. */
  max?: number;
  windowMs?: number;
  /** Cache alias (`services.caches.<alias>`, driver redis) that makes the counters shared across processes. */
  cache?: string;
}

export interface CsrfConfig {
  cookieName?: string;
  fieldName?: string;
  headerName?: string;
  /** JSON requests without an `Origin` header are refused unless this is true (non-browser API clients). */
  allowMissingOrigin?: boolean;
}

export interface SecurityConfig {
  /** Everything off for this app. */
  enabled?: boolean;
  /** Helmet options, or false. */
  helmet?: false | HelmetOptions;
  /**
   * `'documents'` (default): HTML, text and files get helmet's full set; JSON responses get the
   * headers that still apply to them (HSTS, nosniff, CORP, X-Frame-Options) and
   * `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'`. `'all'`: the full set everywhere.
   */
  helmetScope?: 'documents' | 'all';
  cors?: false | CorsConfig;
  rateLimit?: false | RateLimitConfig;
  csrf?: false | CsrfConfig;
  /** HMAC secret for CSRF tokens; default: env MEGA_SECURITY_SECRET or MEGA_SECRET. Required in production when CSRF is on. */
  secret?: string;
}

export const DEFAULT_RATE_LIMIT = { max: 1000, windowMs: 60_000 } as const;

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    enabled: { type: 'boolean', default: true },
    helmet: { anyOf: [{ const: false }, { type: 'object' }], default: {} },
    helmetScope: { enum: ['documents', 'all'], default: 'documents' },
    cors: {
      anyOf: [
        { const: false },
        {
          type: 'object',
          additionalProperties: false,
          properties: {
            origin: { anyOf: [{ const: '*' }, { type: 'array', items: { type: 'string', minLength: 1 } }], default: [] },
            credentials: { type: 'boolean', default: false },
            methods: { type: 'array', items: { type: 'string' }, default: ['GET', 'HEAD', 'PUT', 'PATCH', 'POST', 'DELETE'] },
            allowedHeaders: { type: 'array', items: { type: 'string' } },
            exposedHeaders: { type: 'array', items: { type: 'string' } },
            maxAge: { type: 'integer', minimum: 0, default: 600 },
          },
        },
      ],
      default: {},
    },
    rateLimit: {
      anyOf: [
        { const: false },
        {
          type: 'object',
          additionalProperties: false,
          properties: {
            max: { type: 'integer', minimum: 1, default: DEFAULT_RATE_LIMIT.max },
            windowMs: { type: 'integer', minimum: 1, default: DEFAULT_RATE_LIMIT.windowMs },
            cache: { type: 'string', minLength: 1, default: 'rate' },
          },
        },
      ],
      default: {},
    },
    csrf: {
      anyOf: [
        { const: false },
        {
          type: 'object',
          additionalProperties: false,
          properties: {
            cookieName: { type: 'string', minLength: 1, default: 'mega_csrf' },
            fieldName: { type: 'string', minLength: 1, default: '_csrf' },
            headerName: { type: 'string', minLength: 1, default: 'x-csrf-token' },
            allowMissingOrigin: { type: 'boolean', default: false },
          },
        },
      ],
      default: {},
    },
    secret: { type: 'string', minLength: 16 },
  },
} as const;
