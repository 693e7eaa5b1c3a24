/** Config of @mega/ws (key `ws` in mega.config.ts): defaults for every WS route. */
import type { CompressionOptions } from './deflate.js';

export interface WsConfig {
  /** Ping interval (ms); 0 disables. Routes override it. */
  heartbeatMs?: number;
  /** Largest inbound message (bytes). */
  maxPayload?: number;
  /** Buffered output above which a slow client is closed with 1013. */
  maxBufferedBytes?: number;
  /** Frames queued while onConnect runs. */
  preConnectQueue?: number;
  /** How long a closing handshake may take before the socket is destroyed. */
  closeTimeoutMs?: number;
  /** Defaults for routes that turn compression on (`compression: true`). */
  compression?: CompressionOptions;
}

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    heartbeatMs: { type: 'integer', minimum: 0, default: 30_000 },
    maxPayload: { type: 'integer', minimum: 1, default: 1_048_576 },
    maxBufferedBytes: { type: 'integer', minimum: 1, default: 16_777_216 },
    preConnectQueue: { type: 'integer', minimum: 0, default: 256 },
    closeTimeoutMs: { type: 'integer', minimum: 1, default: 5_000 },
    compression: {
      type: 'object',
      additionalProperties: false,
      properties: {
        threshold: { type: 'integer', minimum: 0 },
        level: { type: 'integer', minimum: 0, maximum: 9 },
        serverNoContextTakeover: { type: 'boolean' },
        clientNoContextTakeover: { type: 'boolean' },
        serverMaxWindowBits: { type: 'integer', minimum: 9, maximum: 15 },
        maxContexts: { type: 'integer', minimum: 0 },
      },
    },
  },
} as const;
