/** What a bus driver provides; the per-app `Bus` facade adds prefixes, envelopes, logging and stats. */

/** Sends the reply of a request (the encoded envelope). */
export type Respond = (reply: string) => void;

/** Called for each message on a subscription; `respond` is set when the sender waits for a reply. */
export type Deliver = (data: string, subject: string, respond: Respond | undefined) => void;

export interface Transport {
  readonly driver: 'memory' | 'nats' | 'cluster';
  /** The driver's own handle (`NatsConnection` for nats), for what the facade does not cover. */
  readonly native: unknown;
  connect(): Promise<void>;
  /** nats: a promise settled when the server confirmed it (see `NatsOutbox`); others deliver at once. */
  publish(subject: string, data: string): void | Promise<void>;
  subscribe(subject: string, deliver: Deliver): () => void;
  /** Resolves with the first reply; rejects `bus.request_timeout` / `bus.no_responders`. */
  request(subject: string, data: string, timeoutMs: number): Promise<string>;
  check(): Promise<void>;
  close(): Promise<void>;
}
