/**
 * Delivery between the workers of `mega start --workers N`, through the primary: a worker tells the
 * primary which subjects it listens to, publishes to it, and the primary forwards each message to
 * the workers whose subscriptions match (including the sender). Requests carry an id; the primary
 * routes the first reply back, or answers "no responders" when no worker listens.
 * Outside a cluster (no IPC channel) this is the in-process memory driver.
 */
import type { TraceCarrier } from '@mega/adapters';
import { UnavailableError } from '@mega/kernel';
import type { Deliver } from '../transport.js';
import { MemoryTransport, noResponders, timeoutError } from './memory.js';

/** Messages between a worker and the primary (`createBusRelay` in primary.ts speaks the other side). */
export type BusWire =
  | { type: 'mega:bus'; op: 'sub' | 'unsub'; subject: string }
  | { type: 'mega:bus'; op: 'pub'; subject: string; data: string; rid?: number; trace?: TraceCarrier }
  | { type: 'mega:bus'; op: 'msg'; subject: string; data: string; rid?: number; from?: number; trace?: TraceCarrier }
  | { type: 'mega:bus'; op: 'reply'; rid: number; data: string; to?: number }
  | { type: 'mega:bus'; op: 'noresp'; rid: number };

export const inCluster = (): boolean => typeof process.send === 'function' && process.env.MEGA_WORKER_SLOT !== undefined;

export class ClusterTransport extends MemoryTransport {
  override readonly driver = 'cluster' as const;
  readonly #patterns = new Map<string, number>();
  readonly #requests = new Map<number, { resolve: (data: string) => void; reject: (e: Error) => void; subject: string }>();
  #nextRid = 1;
  #listener: ((msg: unknown) => void) | undefined;

  /** Inside `--workers`, messages cross processes through the primary: trace context goes in them. */
  override get carriesTrace(): boolean {
    return this.#listener !== undefined;
  }

  /** Synchronous: registers the IPC listener and announces subscriptions made before it. */
  override async connect(): Promise<void> {
    this.attach();
  }

  attach(): void {
    if (this.#listener || !inCluster()) return;
    this.#listener = (raw: unknown) => {
      const msg = raw as BusWire;
      if (msg?.type !== 'mega:bus') return;
      if (msg.op === 'msg') {
        const from = msg.from;
        const rid = msg.rid;
        // Local subscribers only: the primary already chose this worker.
        this.dispatch(
          msg.subject,
          msg.data,
          rid === undefined
            ? undefined
            : (reply) => this.#send({ type: 'mega:bus', op: 'reply', rid, data: reply, ...(from === undefined ? {} : { to: from }) }),
          msg.trace,
        );
      } else if (msg.op === 'reply' || msg.op === 'noresp') {
        const pending = this.#requests.get(msg.rid);
        if (!pending) return;
        this.#requests.delete(msg.rid);
        if (msg.op === 'reply') pending.resolve(msg.data);
        else pending.reject(noResponders(pending.subject));
      }
    };
    process.on('message', this.#listener);
    for (const subject of this.#patterns.keys()) this.#send({ type: 'mega:bus', op: 'sub', subject });
  }

  override publish(subject: string, data: string, trace?: TraceCarrier): void {
    if (!this.#listener) super.publish(subject, data);
    else this.#send({ type: 'mega:bus', op: 'pub', subject, data, ...(trace ? { trace } : {}) });
  }

  override subscribe(subject: string, deliver: Deliver): () => void {
    const off = super.subscribe(subject, deliver);
    const n = this.#patterns.get(subject) ?? 0;
    this.#patterns.set(subject, n + 1);
    if (n === 0 && this.#listener) this.#send({ type: 'mega:bus', op: 'sub', subject });
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      off();
      const left = (this.#patterns.get(subject) ?? 1) - 1;
      if (left > 0) this.#patterns.set(subject, left);
      else {
        this.#patterns.delete(subject);
        if (this.#listener && process.connected) this.#send({ type: 'mega:bus', op: 'unsub', subject });
      }
    };
  }

  override request(subject: string, data: string, timeoutMs: number, trace?: TraceCarrier): Promise<string> {
    if (!this.#listener) return super.request(subject, data, timeoutMs);
    const rid = this.#nextRid++;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#requests.delete(rid);
        reject(timeoutError(subject, timeoutMs));
      }, timeoutMs);
      const settle =
        <T>(fn: (v: T) => void) =>
        (v: T) => {
          clearTimeout(timer);
          fn(v);
        };
      this.#requests.set(rid, { resolve: settle(resolve), reject: settle(reject), subject });
      try {
        this.#send({ type: 'mega:bus', op: 'pub', subject, data, rid, ...(trace ? { trace } : {}) });
      } catch (error) {
        this.#requests.delete(rid);
        clearTimeout(timer);
        reject(error);
      }
    });
  }

  override async check(): Promise<void> {
    if (this.#listener && !process.connected) {
      throw new UnavailableError('bus.unavailable', 'cluster bus: the IPC channel to the primary is closed');
    }
  }

  override async close(): Promise<void> {
    if (this.#listener) process.off('message', this.#listener);
    this.#listener = undefined;
    for (const [rid, p] of this.#requests) {
      this.#requests.delete(rid);
      p.reject(new UnavailableError('bus.unavailable', `cluster bus closed before "${p.subject}" got a reply`));
    }
    await super.close();
  }

  #send(msg: BusWire): void {
    if (!process.connected) throw new UnavailableError('bus.unavailable', 'cluster bus: the IPC channel to the primary is closed');
    process.send?.(msg);
  }
}
