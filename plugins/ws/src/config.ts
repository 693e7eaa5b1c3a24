/**
 * Config of @mega/ws, declared once: the `ws` key of mega.config.ts, defaults for every WS route
 * (routes override them). Types and defaults derive from this schema.
 */
import { type Static, Type } from '@mega/kernel';
import { COMPRESSION_DEFAULTS } from './deflate.js';

const D = COMPRESSION_DEFAULTS;

export const WsConfigSchema = Type.Object(
  {
    /** Ping interval (ms); 0 disables. */
    heartbeatMs: Type.Integer({ minimum: 0, default: 30_000 }),
    /** Largest inbound message (bytes). */
    maxPayload: Type.Integer({ minimum: 1, default: 1_048_576 }),
    /** Frames one fragmented message may have; one more closes with 1009. */
    maxFragments: Type.Integer({ minimum: 1, default: 4_096 }),
    /** Buffered output above which a slow client is closed with 1013. */
    maxBufferedBytes: Type.Integer({ minimum: 1, default: 16_777_216 }),
    /**
     * Output to a connection waits this long (ms) so later messages join the same write (Centrifugo's
     * write delay); 0 writes at the end of the event-loop turn.
     */
    writeDelayMs: Type.Integer({ minimum: 0, maximum: 1000, default: 0 }),
    /** Frames queued while onConnect runs. */
    preConnectQueue: Type.Integer({ minimum: 0, default: 256 }),
    /** How long a closing handshake may take before the socket is destroyed. */
    closeTimeoutMs: Type.Integer({ minimum: 1, default: 5_000 }),
    /** Defaults for routes that turn compression on (`compression: true`). */
    compression: Type.Object(
      {
        threshold: Type.Integer({ minimum: 0, default: D.threshold }),
        level: Type.Integer({ minimum: 0, maximum: 9, default: D.level }),
        serverNoContextTakeover: Type.Boolean({ default: D.serverNoContextTakeover }),
        clientNoContextTakeover: Type.Boolean({ default: D.clientNoContextTakeover }),
        serverMaxWindowBits: Type.Integer({ minimum: 9, maximum: 15, default: D.serverMaxWindowBits }),
        maxContexts: Type.Integer({ minimum: 0, default: D.maxContexts }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false, default: {} },
);

export const WsGlobalConfig = Type.Object({ ws: WsConfigSchema });

export type WsConfig = Static<typeof WsConfigSchema>;
