/**
 * JetStream publishes confirmed by their PubAck, matched here instead of through `nc.request` (what
 * `js.publish` uses): nats.js builds two Error objects (for async stack traces), a timer and a
 * deferred per request, which was two thirds of an enqueue's CPU. Here: one wildcard inbox
 * subscription in callback mode, a counter as the reply token, and one timer for every deadline
 * (all share one timeout, so the oldest pending publish always expires first).
 *
 * What the server answers is the same as for `js.publish`: `{"stream","seq","duplicate"?}`, or
 * `{"error":{...}}`, or a 503 status when no stream listens on the subject.
 */
import type { MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
import { createInbox } from '@nats-io/transport-node';

interface Waiting {
  resolve(duplicate: boolean): void;
  reject(error: Error): void;
  deadline: number;
}

export class PublishError extends Error {
  override readonly name = 'PublishError';
}

export class AckedPublisher {
  readonly #nc: NatsConnection;
  readonly #timeoutMs: number;
  readonly #inbox: string;
  readonly #waiting = new Map<string, Waiting>();
  #sub: Subscription | undefined;
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(nc: NatsConnection, timeoutMs: number) {
    this.#nc = nc;
    this.#timeoutMs = timeoutMs;
    // Honour a connection's inboxPrefix (set for subject permissions).
    const prefix = (nc as unknown as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
    this.#inbox = `${createInbox(prefix)}.`;
  }

  /** Resolves with `duplicate` once JetStream stored the message (or had it within the dedup window). */
  publish(subject: string, data: string | Uint8Array, headers: MsgHdrs): Promise<boolean> {
    this.#sub ??= this.#nc.subscribe(`${this.#inbox}*`, { callback: (error, m) => this.#answer(error, m) });
    const token = (this.#seq++).toString(36);
    return new Promise<boolean>((resolve, reject) => {
      this.#nc.publish(subject, data, { reply: this.#inbox + token, headers });
      this.#waiting.set(token, { resolve, reject, deadline: Date.now() + this.#timeoutMs });
      if (!this.#timer) this.#arm(this.#timeoutMs);
    });
  }

  #answer(error: Error | null, m: { subject: string; data: Uint8Array; headers?: MsgHdrs; string(): string }): void {
    if (error) {
      // The inbox subscription itself failed (permissions): nothing pending can be confirmed.
      this.close(error);
      return;
    }
    const token = m.subject.slice(this.#inbox.length);
    const waiting = this.#waiting.get(token);
    if (!waiting) return; // answered after its timeout
    this.#waiting.delete(token);
    if (m.data.length === 0) {
      const code = m.headers?.code ?? 0;
      waiting.reject(new PublishError(code === 503 ? 'no JetStream stream answered (503 no responders)' : `status ${code}`));
      return;
    }
    let ack: { error?: { code?: number; err_code?: number; description?: string }; duplicate?: boolean; stream?: string };
    try {
      ack = JSON.parse(m.string());
    } catch {
      waiting.reject(new PublishError(`invalid PubAck: ${m.string().slice(0, 200)}`));
      return;
    }
    if (ack.error)
      waiting.reject(new PublishError(`${ack.error.description ?? 'JetStream error'} (${ack.error.err_code ?? ack.error.code})`));
    else if (!ack.stream) waiting.reject(new PublishError('invalid PubAck: no stream'));
    else waiting.resolve(ack.duplicate === true);
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => this.#expire(), Math.max(1, ms));
    this.#timer.unref();
  }

  #expire(): void {
    this.#timer = undefined;
    const now = Date.now();
    for (const [token, waiting] of this.#waiting) {
      if (waiting.deadline > now) {
        this.#arm(waiting.deadline - now);
        return;
      }
      this.#waiting.delete(token);
      waiting.reject(new PublishError(`no PubAck within ${this.#timeoutMs} ms`));
    }
  }

  /** Fails what is pending and drops the inbox subscription. */
  close(error: Error = new PublishError('the publisher was closed')): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const waiting of this.#waiting.values()) waiting.reject(error);
    this.#waiting.clear();
    const sub = this.#sub;
    this.#sub = undefined;
    try {
      sub?.unsubscribe();
    } catch {
      // the connection is already closed
    }
  }
}
