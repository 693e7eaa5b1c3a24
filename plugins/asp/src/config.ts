/** Config of @mega/asp: key `asp` in each app's app.config.ts. */

export interface AspConfig {
  /** Master secret (UTF-8, at least 32 bytes). Default: the MEGA_ASP_SECRET environment variable. */
  masterSecret?: string;
  /** Allowed clock drift either way (ms). */
  windowMs?: number;
  /** Nonces remembered per session and scope; past it the oldest becomes a replay floor. */
  replayCapacity?: number;
  /** How a WS frame that fails to open is answered: an `error` envelope, or close 1008. */
  onFailure?: 'error' | 'close';
  /** Sessions whose openers (replay caches) are kept at once, per scope. */
  maxSessions?: number;
  websocket?: {
    /** WS route paths whose frames are all `E:` + base64url(sealed). */
    namespaces?: string[];
  };
  http?: {
    /** Route paths (as declared; `prefix/*` matches below a prefix) that take and return sealed bodies. */
    enabledPaths?: string[];
    /** The request/response header that signals a sealed body (value `1`). */
    header?: string;
  };
}

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    masterSecret: { type: 'string', minLength: 32 },
    windowMs: { type: 'integer', minimum: 1000, default: 60_000 },
    replayCapacity: { type: 'integer', minimum: 1, default: 16_384 },
    onFailure: { enum: ['error', 'close'], default: 'error' },
    maxSessions: { type: 'integer', minimum: 1, default: 10_000 },
    websocket: {
      type: 'object',
      additionalProperties: false,
      properties: { namespaces: { type: 'array', items: { type: 'string', pattern: '^/' }, default: [] } },
      default: {},
    },
    http: {
      type: 'object',
      additionalProperties: false,
      properties: {
        enabledPaths: { type: 'array', items: { type: 'string', pattern: '^/' }, default: [] },
        header: { type: 'string', pattern: '^[a-z0-9-]+$', default: 'x-mega-asp' },
      },
      default: {},
    },
  },
  default: {},
} as const;
