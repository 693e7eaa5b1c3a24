/** Config of @mega/http (key `http` in mega.config.ts). */
export interface HttpConfig {
  /** Log one line per request (off by default: it costs ~15% throughput). */
  requestLogging?: boolean;
  /** Maximum request body in bytes (Fastify bodyLimit). */
  bodyLimit?: number;
  /** Header whose value (if a safe token) becomes the request id. */
  requestIdHeader?: string;
  /** Serve `GET /health` (liveness). @mega/health replaces it when installed. */
  health?: boolean;
}

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    requestLogging: { type: 'boolean', default: false },
    bodyLimit: { type: 'integer', minimum: 1, default: 1048576 },
    requestIdHeader: { type: 'string', minLength: 1, default: 'x-request-id' },
    health: { type: 'boolean', default: true },
  },
} as const;
