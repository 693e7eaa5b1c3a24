/** What a bus driver provides; the per-app `Bus` facade adds prefixes, envelopes, logging and stats. */
import type { TraceCarrier } from '@mega/adapters';

/** Sends the reply of a request (the encoded envelope). */
export type Respond = (reply: string) => void;

/**
 * Called for each message on a subscription; `respond` is set when the sender waits for a reply;
 * `trace` is the W3C trace context the message carried (@mega/tracing), on transports that cross
 * processes (nats, cluster) and only when they were asked to read it.
 */
export type Deliver = (data: string, subject: string, respond: Respond | undefined, trace?: TraceCarrier) => void;

export interface Transport {
  readonly driver: 'memory' | 'nats' | 'cluster';
  /** The driver's own handle (`NatsConnection` for nats), for what the facade does not cover. */
  readonly native: unknown;
  /**
   * Whether messages leave the process (nats, cluster inside `--workers`): then a traced sender
   * hands its trace context along (message headers); in-process delivery keeps the async context itself.
   */
  readonly carriesTrace: boolean;
  connect(): Promise<void>;
  /** nats: a promise settled when the server confirmed it (see `NatsOutbox`); others deliver at once. */
  publish(subject: string, data: string, trace?: TraceCarrier): void | Promise<void>;
  subscribe(subject: string, deliver: Deliver): () => void;
  /** Resolves with the first reply; rejects `bus.request_timeout` / `bus.no_responders`. */
  request(subject: string, data: string, timeoutMs: number, trace?: TraceCarrier): Promise<string>;
  check(): Promise<void>;
  close(): Promise<void>;
}
