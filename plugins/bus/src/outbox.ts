/**
 * Publishing on a NATS connection without losing what was accepted across a reconnect.
 *
 * The nats.js client's own outbound buffer is reset on every dial (`ProtocolHandler.prepare`), so a
 * message published while the connection is down, or written to a socket the server had already
 * closed, is dropped while `publish` returned normally: 640 of 640 emits were lost in a 324 ms outage.
 * The outbox keeps every message until the server has confirmed it (a PING/PONG after it: the server
 * answers a PING only after processing what came before it on the connection; one round trip covers
 * every message published in the same tick), and while the connection is down it holds new messages
 * in a bounded buffer. After the reconnect (the client has re-sent its subscriptions first) it sends
 * the unconfirmed and the buffered messages again, in order, before anything newer.
 *
 * Guarantees: `publish` resolves once the server confirmed the message; it rejects with
 * `bus.unavailable` when the buffer is full (`maxMessages` / `maxBytes`) or the outbox is closed
 * before a confirmation. A message whose confirmation was lost with the connection is sent again, so
 * in that window a subscriber may see it twice (at-least-once for confirmed messages, in order).
 */
import { type MegaError, UnavailableError } from '@mega/kernel';
import type { MsgHdrs, NatsConnection } from '@nats-io/transport-node';

export interface OutboxOptions {
  /** Messages held while disconnected (unconfirmed ones included). Default 10,000. */
  maxMessages?: number;
  /** Bytes (payload + subject) held while disconnected. Default 8 MiB. */
  maxBytes?: number;
  /**
   * false: after a reconnect, wait for `resume()` before sending what is held (ws-cluster waits for
   * its peers to be back first). Default true.
   */
  autoResume?: boolean;
  /** Called after each reconnect (before an automatic resume). */
  onReconnect?: () => void;
  /** Called when a message is refused because the buffer is full (for a rate-limited warning). */
  onOverflow?: (error: MegaError) => void;
  /** Names the owner in errors (`bus "default"`). */
  label: string;
}

export interface OutboxStats {
  /** Messages not yet confirmed by the server (sent or held). */
  pending: number;
  pendingBytes: number;
  /** Messages sent again after a reconnect. */
  resent: number;
  /** Messages refused (buffer full, closed). */
  refused: number;
  connected: boolean;
}

interface Entry {
  subject: string;
  data: string | Uint8Array;
  /** Message headers (the sender's trace context), sent again with a re-sent message. */
  headers: MsgHdrs | undefined;
  size: number;
  seq: number;
  sent: boolean;
}

interface Batch {
  last: number;
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: Error) => void;
}

export const DEFAULT_OUTBOX_MESSAGES = 10_000;
export const DEFAULT_OUTBOX_BYTES = 8 * 1024 * 1024;

const noop = () => {};

export class NatsOutbox {
  readonly #nc: NatsConnection;
  readonly #maxMessages: number;
  readonly #maxBytes: number;
  readonly #autoResume: boolean;
  readonly #options: OutboxOptions;
  /** Unconfirmed messages, oldest first, from index #head. */
  #queue: Entry[] = [];
  #head = 0;
  #bytes = 0;
  #seq = 0;
  /** Promises of messages not confirmed yet, by the last seq each covers. */
  #batches: Batch[] = [];
  #open: Batch | undefined;
  #flushScheduled = false;
  /** Connected and not held: publish goes to the socket now. */
  #up = true;
  #connected = true;
  #closed = false;
  #resent = 0;
  #refused = 0;

  constructor(nc: NatsConnection, options: OutboxOptions) {
    this.#nc = nc;
    this.#options = options;
    this.#maxMessages = options.maxMessages ?? DEFAULT_OUTBOX_MESSAGES;
    this.#maxBytes = options.maxBytes ?? DEFAULT_OUTBOX_BYTES;
    this.#autoResume = options.autoResume ?? true;
    this.#watch(nc);
  }

  #watch(nc: NatsConnection): void {
    void (async () => {
      for await (const s of nc.status()) {
        if (this.#closed) return;
        if (s.type === 'disconnect') {
          this.#connected = false;
          this.#up = false;
          for (let i = this.#head; i < this.#queue.length; i++) (this.#queue[i] as Entry).sent = false;
        } else if (s.type === 'reconnect') {
          this.#connected = true;
          this.#options.onReconnect?.();
          if (this.#autoResume) this.resume();
        }
      }
    })().catch(noop);
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** Resolves once the server confirmed the message; see the module comment for the guarantee. */
  publish(subject: string, data: string | Uint8Array, headers?: MsgHdrs): Promise<void> {
    if (this.#closed) return this.#refuse(`${this.#options.label}: closed`);
    const size = (typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength) + subject.length;
    const pending = this.#queue.length - this.#head;
    if (!this.#up && (pending >= this.#maxMessages || this.#bytes + size > this.#maxBytes)) {
      const error = this.#unavailable(
        `${this.#options.label}: NATS is disconnected and the reconnect buffer is full (${pending} messages, ${this.#bytes} bytes; limits ${this.#maxMessages} / ${this.#maxBytes})`,
      );
      this.#options.onOverflow?.(error);
      return this.#handled(error);
    }
    const entry: Entry = { subject, data, headers, size, seq: ++this.#seq, sent: false };
    this.#queue.push(entry);
    this.#bytes += size;
    if (this.#up) this.#send(entry);
    const batch = this.#open ?? this.#newBatch();
    batch.last = entry.seq;
    if (this.#up && !this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flush());
    }
    return batch.promise;
  }

  /** Sends what is held, in order (after a reconnect when `autoResume` is false). */
  resume(): void {
    if (this.#closed || !this.#connected || this.#up) return;
    this.#up = true;
    for (let i = this.#head; i < this.#queue.length; i++) {
      const entry = this.#queue[i] as Entry;
      if (entry.seq <= this.#sentBefore) this.#resent++;
      this.#send(entry);
    }
    this.#flush();
  }

  stats(): OutboxStats {
    return {
      pending: this.#queue.length - this.#head,
      pendingBytes: this.#bytes,
      resent: this.#resent,
      refused: this.#refused,
      connected: this.#connected,
    };
  }

  /** Waits up to `timeoutMs` for the server to confirm what is pending, then refuses the rest. */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.#closed) return;
    const last = this.#batches.at(-1)?.promise;
    if (last && this.#up) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([last.catch(noop), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
    }
    this.#closed = true;
    const error = this.#unavailable(`${this.#options.label}: closed before NATS confirmed ${this.#queue.length - this.#head} message(s)`);
    for (const b of this.#batches.splice(0)) b.reject(error);
    this.#open = undefined;
    this.#queue = [];
    this.#head = 0;
    this.#bytes = 0;
  }

  /** Highest seq ever handed to the socket (to count re-sends). */
  #sentBefore = 0;

  #send(entry: Entry): void {
    try {
      this.#nc.publish(entry.subject, entry.data, entry.headers ? { headers: entry.headers } : undefined);
      entry.sent = true;
      if (entry.seq > this.#sentBefore) this.#sentBefore = entry.seq;
    } catch {
      // Closed or draining: it stays held; close() refuses it.
    }
  }

  #newBatch(): Batch {
    let resolve: () => void = noop;
    let reject: (error: Error) => void = noop;
    const promise = new Promise<void>((ok, fail) => {
      resolve = ok;
      reject = fail;
    });
    // Fire-and-forget callers must not turn a refusal at shutdown into an unhandled rejection;
    // callers that await still get it.
    promise.catch(noop);
    const batch: Batch = { last: 0, promise, resolve, reject };
    this.#batches.push(batch);
    this.#open = batch;
    return batch;
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (!this.#up) return;
    this.#open = undefined;
    const last = this.#seq;
    let flushed: Promise<void>;
    try {
      flushed = this.#nc.flush();
    } catch {
      return; // closed: close() settles the batches
    }
    // A rejected flush means the connection dropped: everything unconfirmed is sent again on resume.
    flushed.then(() => this.#confirm(last), noop);
  }

  #confirm(last: number): void {
    const q = this.#queue;
    while (this.#head < q.length && (q[this.#head] as Entry).seq <= last) {
      this.#bytes -= (q[this.#head] as Entry).size;
      q[this.#head] = undefined as unknown as Entry;
      this.#head++;
    }
    if (this.#head > 1024 && this.#head * 2 > q.length) {
      this.#queue = q.slice(this.#head);
      this.#head = 0;
    }
    while (this.#batches.length > 0 && (this.#batches[0] as Batch).last <= last && this.#batches[0] !== this.#open) {
      (this.#batches.shift() as Batch).resolve();
    }
  }

  #unavailable(message: string): UnavailableError {
    return new UnavailableError('bus.unavailable', message, { details: { reason: 'disconnected' } });
  }

  #refuse(message: string): Promise<void> {
    return this.#handled(this.#unavailable(message));
  }

  #handled(error: MegaError): Promise<void> {
    this.#refused++;
    const p = Promise.reject(error);
    p.catch(noop);
    return p;
  }
}
