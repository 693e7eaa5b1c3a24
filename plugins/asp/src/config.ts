/**
 * Config of @mega/asp, declared once: the `asp` key of each app's app.config.ts. Types and defaults
 * derive from this schema.
 */
import { Secret, type Static, Type } from '@mega/kernel';

export const AspConfigSchema = Type.Object(
  {
    /**
     * Master secret (UTF-8, at least 32 bytes); default MEGA_ASP_SECRET, then a key the kernel
     * derives from MEGA_SECRET for ASP alone (HKDF; MEGA_SECRET itself never reaches ASP). Needed only
     * by apps that encrypt something, so the plugin itself fails boot (`asp.config`) when such an app
     * runs in production without one.
     */
    masterSecret: Type.Optional(
      Secret({ env: 'MEGA_ASP_SECRET', purpose: 'ASP session keys', minBytes: 32, code: 'asp.config', optional: true }, { minLength: 32 }),
    ),
    /** Allowed clock drift either way (ms). */
    windowMs: Type.Integer({ minimum: 1000, default: 60_000 }),
    /** Nonces remembered per session and scope; past it the oldest becomes a replay floor. */
    replayCapacity: Type.Integer({ minimum: 1, default: 16_384 }),
    /** How a WS frame that fails to open is answered: an `error` envelope, or close 1008. */
    onFailure: Type.Union([Type.Literal('error'), Type.Literal('close')], { default: 'error' }),
    /** Sessions whose openers (replay caches) are kept at once, per scope. */
    maxSessions: Type.Integer({ minimum: 1, default: 10_000 }),
    websocket: Type.Object(
      {
        /** WS route paths whose frames are all `E:` + base64url(sealed). */
        namespaces: Type.Array(Type.String({ pattern: '^/' }), { default: [] }),
      },
      { additionalProperties: false, default: {} },
    ),
    http: Type.Object(
      {
        /** Route paths (as declared; `prefix/*` matches below a prefix) that take and return sealed bodies. */
        enabledPaths: Type.Array(Type.String({ pattern: '^/' }), { default: [] }),
        /** The request/response header that signals a sealed body (value `1`). */
        header: Type.String({ pattern: '^[a-z0-9-]+$', default: 'x-mega-asp' }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false, default: {} },
);

export const AspAppConfig = Type.Object({ asp: AspConfigSchema });

export type AspConfig = Static<typeof AspConfigSchema>;
