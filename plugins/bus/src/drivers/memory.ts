/**
 * In-process delivery: subscriptions in a map (exact subjects) plus a list (wildcards). Delivery is
 * asynchronous (a microtask), like a network hop, so `emit` never runs handlers inside the caller.
 */
import type { TraceCarrier } from '@mega/adapters';
import { MegaError } from '@mega/kernel';
import { hasWildcard, matches } from '../subjects.js';
import type { Deliver, Respond, Transport } from '../transport.js';

interface Sub {
  pattern: string;
  deliver: Deliver;
}

export class MemoryTransport implements Transport {
  readonly driver: 'memory' | 'cluster' = 'memory';
  readonly native = null;
  /** Delivery runs in a microtask queued by the sender: its async (trace) context goes along by itself. */
  get carriesTrace(): boolean {
    return false;
  }
  readonly #exact = new Map<string, Set<Sub>>();
  readonly #wild = new Set<Sub>();

  async connect(): Promise<void> {}

  publish(subject: string, data: string): void {
    this.dispatch(subject, data, undefined);
  }

  subscribe(pattern: string, deliver: Deliver): () => void {
    const sub: Sub = { pattern, deliver };
    if (hasWildcard(pattern)) this.#wild.add(sub);
    else {
      const set = this.#exact.get(pattern) ?? new Set<Sub>();
      this.#exact.set(pattern, set);
      set.add(sub);
    }
    return () => {
      if (hasWildcard(pattern)) this.#wild.delete(sub);
      else {
        const set = this.#exact.get(pattern);
        set?.delete(sub);
        if (set?.size === 0) this.#exact.delete(pattern);
      }
    };
  }

  request(subject: string, data: string, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        reject(timeoutError(subject, timeoutMs));
      }, timeoutMs);
      const respond: Respond = (reply) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(reply);
      };
      if (this.dispatch(subject, data, respond) === 0) {
        done = true;
        clearTimeout(timer);
        reject(noResponders(subject));
      }
    });
  }

  /** Delivers to every matching subscription; returns how many there were. `trace`: what a message from another process carried. */
  protected dispatch(subject: string, data: string, respond: Respond | undefined, trace?: TraceCarrier): number {
    let n = 0;
    const exact = this.#exact.get(subject);
    if (exact) {
      for (const sub of exact) {
        n++;
        queueMicrotask(() => sub.deliver(data, subject, respond, trace));
      }
    }
    for (const sub of this.#wild) {
      if (!matches(sub.pattern, subject)) continue;
      n++;
      queueMicrotask(() => sub.deliver(data, subject, respond, trace));
    }
    return n;
  }

  async check(): Promise<void> {}

  async close(): Promise<void> {
    this.#exact.clear();
    this.#wild.clear();
  }
}

export const timeoutError = (subject: string, timeoutMs: number): MegaError =>
  new MegaError('bus.request_timeout', `request "${subject}" got no reply within ${timeoutMs} ms`, {
    details: { subject, timeoutMs },
  });

export const noResponders = (subject: string): MegaError =>
  new MegaError('bus.no_responders', `request "${subject}": nothing is subscribed to answer it`, { details: { subject } });
