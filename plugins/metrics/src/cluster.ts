/**
 * The worker's side of the cluster merge (primary.ts is the other): announces the worker, answers
 * the primary's `collect` with this process's text, and turns a scrape into a `scrape` request whose
 * answer is the merged text of every worker. A scrape that gets no answer in time rejects
 * (`metrics.cluster_timeout`): a failed scrape is a gap in Prometheus, where a local-only answer
 * would look like every counter being reset.
 */
import { UnavailableError } from '@mega/kernel';
import type { MetricsWire } from './primary.js';
import { METRICS_CHANNEL } from './primary.js';

export const inCluster = (): boolean => typeof process.send === 'function' && process.env.MEGA_WORKER_SLOT !== undefined;

export class ClusterLink {
  readonly slot = Number(process.env.MEGA_WORKER_SLOT ?? 0);
  readonly #pending = new Map<number, { resolve: (text: string) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  #rid = 0;
  readonly #listener: (raw: unknown) => void;

  constructor(private readonly local: () => Promise<string>) {
    this.#listener = (raw: unknown) => {
      const msg = raw as MetricsWire;
      if (msg?.type !== METRICS_CHANNEL) return;
      if (msg.op === 'collect') {
        const cid = msg.cid;
        this.local().then(
          (text) => this.#send({ type: METRICS_CHANNEL, op: 'text', slot: this.slot, cid, text }),
          // No answer: the primary counts this worker as missing when its wait ends.
          () => undefined,
        );
      } else if (msg.op === 'merged') {
        const p = this.#pending.get(msg.rid);
        if (!p) return;
        this.#pending.delete(msg.rid);
        clearTimeout(p.timer);
        p.resolve(msg.text);
      }
    };
    process.on('message', this.#listener);
    this.#send({ type: METRICS_CHANNEL, op: 'hello', slot: this.slot });
  }

  /** The merged text of every worker; `timeoutMs` bounds the primary's wait for the others. */
  scrape(timeoutMs: number): Promise<string> {
    const rid = ++this.#rid;
    return new Promise<string>((resolve, reject) => {
      // The primary answers by timeoutMs; the extra second covers IPC and the merge itself.
      const timer = setTimeout(() => {
        this.#pending.delete(rid);
        reject(new UnavailableError('metrics.cluster_timeout', 'the cluster primary did not answer the metrics request in time'));
      }, timeoutMs + 1000);
      timer.unref();
      this.#pending.set(rid, { resolve, reject, timer });
      if (!this.#send({ type: METRICS_CHANNEL, op: 'scrape', slot: this.slot, rid, timeoutMs })) {
        clearTimeout(timer);
        this.#pending.delete(rid);
        reject(new UnavailableError('metrics.cluster_unavailable', 'the IPC channel to the cluster primary is closed'));
      }
    });
  }

  #send(msg: MetricsWire): boolean {
    if (!process.connected || typeof process.send !== 'function') return false;
    try {
      // false can also mean "backlog": the message is still queued then, so only a throw is a failure.
      process.send(msg);
      return true;
    } catch {
      return false;
    }
  }
}
