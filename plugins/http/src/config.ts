/**
 * Config of @mega/http, declared once: the `http` key of mega.config.ts (global) and `routesDir`
 * of each app.config.ts. Types and defaults derive from these schemas.
 */
import { type Static, Type } from '@mega/kernel';

/**
 * Multipart limits. Optional with defaults: the config validator cannot apply defaults inside the
 * `false | {...}` union (Ajv skips anyOf), so @mega/http applies them from this schema itself.
 */
export const MultipartSchema = Type.Object(
  {
    fileSize: Type.Optional(Type.Integer({ minimum: 1, default: 10_485_760 })),
    files: Type.Optional(Type.Integer({ minimum: 0, default: 10 })),
    fields: Type.Optional(Type.Integer({ minimum: 0, default: 100 })),
    parts: Type.Optional(Type.Integer({ minimum: 1, default: 1000 })),
    /** `disk`: files stream to temporary files; `memory`: buffered within fileSize. */
    storage: Type.Optional(Type.Union([Type.Literal('disk'), Type.Literal('memory')], { default: 'disk' })),
    /** Where disk storage puts temporary files (default `<os tmpdir>/mega-uploads`; relative to the project). */
    tmpDir: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);

/** Multipart limits with the schema's defaults applied. */
export type MultipartLimits = Required<Omit<Static<typeof MultipartSchema>, 'tmpDir'>> & { tmpDir?: string };

export const HttpConfigSchema = Type.Object(
  {
    /** Log one line per request (off by default: it costs ~15% throughput). */
    requestLogging: Type.Boolean({ default: false }),
    /** Maximum JSON / text / urlencoded request body in bytes; default `server.bodyLimit`, else 1 MiB. */
    bodyLimit: Type.Optional(Type.Integer({ minimum: 1 })),
    /** Header whose value (if a safe token) becomes the request id. */
    requestIdHeader: Type.String({ minLength: 1, default: 'x-request-id' }),
    /** Serve `GET /health` (liveness). @mega/health replaces it when installed. */
    health: Type.Boolean({ default: true }),
    /** Serve `apps/<app>/public` under `/static/` (per app, per host). */
    static: Type.Boolean({ default: true }),
    /** `application/x-www-form-urlencoded` bodies (HTML forms). */
    formBody: Type.Boolean({ default: true }),
    /** `multipart/form-data` bodies; `false` turns the parser off. Fields and files land in `req.body`. */
    multipart: Type.Union([Type.Literal(false), MultipartSchema], { default: {} }),
    /**
     * JSON bodies nesting objects/arrays deeper than this are refused at parse (400 `http.too_deep`),
     * before validation, the handler or serialisation walk them. Also applies to @mega/asp's opened bodies.
     */
    maxJsonDepth: Type.Integer({ minimum: 1, maximum: 10_000, default: 64 }),
    /** Validation failures list at most this many details (the rest are counted in the message). */
    maxValidationDetails: Type.Integer({ minimum: 1, maximum: 1000, default: 20 }),
  },
  { additionalProperties: false, default: {} },
);

export const HttpGlobalConfig = Type.Object({ http: HttpConfigSchema });

export const HttpAppConfig = Type.Object({
  /** Folder of the app's route files, relative to the app. */
  routesDir: Type.String({ minLength: 1, default: 'routes' }),
});

export type HttpConfig = Static<typeof HttpConfigSchema>;
export type HttpAppKeys = Static<typeof HttpAppConfig>;
