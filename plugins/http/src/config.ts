/** Config of @mega/http (key `http` in mega.config.ts). */
export interface HttpConfig {
  /** Log one line per request (off by default: it costs ~15% throughput). */
  requestLogging?: boolean;
  /** Maximum JSON / text / urlencoded request body in bytes (Fastify bodyLimit). */
  bodyLimit?: number;
  /** Header whose value (if a safe token) becomes the request id. */
  requestIdHeader?: string;
  /** Serve `GET /health` (liveness). @mega/health replaces it when installed. */
  health?: boolean;
  /** Serve `apps/<app>/public` under `/static/` (per app, per host). */
  static?: boolean;
  /** `application/x-www-form-urlencoded` bodies (HTML forms). */
  formBody?: boolean;
  /** `multipart/form-data` bodies; `false` turns the parser off. Fields and files land in `req.body`. */
  multipart?:
    | false
    | {
        fileSize?: number;
        files?: number;
        fields?: number;
        parts?: number;
        /** `disk` (default): files stream to temporary files; `memory`: buffered within fileSize. */
        storage?: 'disk' | 'memory';
        /** Where disk storage puts temporary files (default `<os tmpdir>/mega-uploads`). */
        tmpDir?: string;
      };
  /** Validation failures list at most this many details (the rest are counted in the message). */
  maxValidationDetails?: number;
}

export const DEFAULT_MAX_VALIDATION_DETAILS = 20;

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    requestLogging: { type: 'boolean', default: false },
    bodyLimit: { type: 'integer', minimum: 1, default: 1048576 },
    requestIdHeader: { type: 'string', minLength: 1, default: 'x-request-id' },
    health: { type: 'boolean', default: true },
    static: { type: 'boolean', default: true },
    formBody: { type: 'boolean', default: true },
    multipart: {
      anyOf: [
        { const: false },
        {
          type: 'object',
          additionalProperties: false,
          properties: {
            fileSize: { type: 'integer', minimum: 1, default: 10485760 },
            files: { type: 'integer', minimum: 0, default: 10 },
            fields: { type: 'integer', minimum: 0, default: 100 },
            parts: { type: 'integer', minimum: 1, default: 1000 },
            storage: { enum: ['disk', 'memory'], default: 'disk' },
            tmpDir: { type: 'string', minLength: 1 },
          },
        },
      ],
      default: {},
    },
    maxValidationDetails: { type: 'integer', minimum: 1, maximum: 1000, default: DEFAULT_MAX_VALIDATION_DETAILS },
  },
} as const;
