/** Public types of @mega/ws: channels, route options, messages. */
import type { IncomingMessage } from 'node:http';
import type { MegaContext } from '@mega/kernel';
import type { WsConnection } from './connection.js';
import type { CompressionOptions } from './deflate.js';

/** An inbound envelope after parsing (SPEC §5). */
export interface WsMessage<P = unknown> {
  type: string;
  id?: string;
  ns?: string;
  payload?: P;
}

/** An outbound envelope; `payload` defaults to `{}`. */
export interface OutboundMessage {
  type: string;
  id?: string | null;
  ns?: string | null;
  payload?: unknown;
}

/** How a connection ended, as given to `onDisconnect`. */
export interface CloseInfo {
  code: number;
  reason: string;
}

/**
 * A channel: one instance per connection. Message handlers are methods named by a dotted type
 * (`['chat.send'](sock, msg, ctx)`); plain method names are never dispatched, so helpers stay private.
 */
export interface Channel {
  onConnect?(sock: WsConnection, ctx: MegaContext): unknown;
  onDisconnect?(sock: WsConnection, ctx: MegaContext, info: CloseInfo): unknown;
}

export type ChannelClass = new () => Channel;

/**
 * Runs on the upgrade request, before the handshake completes. The last non-undefined result
 * becomes `ctx.auth`; a throw refuses the connection (401, or the error's status; or close 1008
 * after the upgrade with `rejectWith: 'close'`).
 */
export type BeforeUpgrade = (req: IncomingMessage, ctx: MegaContext) => unknown;

export interface WsRouteOptions {
  before?: BeforeUpgrade | readonly BeforeUpgrade[];
  /** JSON Schema per message type, compiled at boot; a type listed here needs a handler. */
  schemas?: Record<string, Record<string, unknown>>;
  /** Ping interval; no pong by the next ping terminates the connection. 0 disables. Default 30 000. */
  heartbeatMs?: number;
  /**
   * Output waits this long (ms) so later messages join the same write: fewer syscalls for streams of
   * broadcasts, at that much latency. 0 (default): written at the end of the event-loop turn.
   */
  writeDelayMs?: number;
  /** permessage-deflate for this route (off by default). */
  compression?: boolean | CompressionOptions;
  /** Largest inbound message in bytes (compressed and inflated). Over it: close 1009. */
  maxPayload?: number;
  /** Frames one fragmented message may have (a message's fragments cost their bytes, not more); one more closes with 1009. Default 4096. */
  maxFragments?: number;
  /**
   * Output already waiting for a client when a new message is sent: above this the client is a slow
   * consumer and is closed with 1013. One message of any size is queued over a shorter backlog. Default 16 MiB.
   */
  maxBufferedBytes?: number;
  /** Frames queued while `onConnect` runs; one more closes with 1013. Default 256. */
  preConnectQueue?: number;
  /**
   * Browser origins allowed to connect (cross-site WebSocket hijacking guard). Default `'same-host'`:
   * an `Origin` header, when present, must name the request's Host or one of the app's hosts.
   * `'*'` allows any; a list allows exactly those origins (`https://app.example.com`).
   */
  origins?: 'same-host' | '*' | readonly string[];
  /** How a failed `before` is answered: HTTP status before the upgrade (default), or close 1008 after it. */
  rejectWith?: 'http' | 'close';
}

/** `router.ws(path, ChannelClass, options)` in route files. */
export type WsRouteMethod = (path: string, channel: ChannelClass, options?: WsRouteOptions) => void;
