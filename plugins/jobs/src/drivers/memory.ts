/**
 * The embedded driver: the same runner (retries with backoff, timeout, DLQ, events, groups, delays,
 * dedup) on in-process queues. Not durable: queued, delayed and dead-lettered jobs live in this
 * process's memory and end with it.
 */
import type { TraceCarrier } from '@mega/adapters';
import type { JobSpec } from '../job.js';
import type { DlqRow, Jobs, PublishRequest, QueueDriver, QueueStats } from '../jobs.js';
import type { DeadLetter } from '../runner.js';
import { RunningList, startDelivery } from '../runner.js';

interface Entry {
  id: string;
  data: string;
  group: string | undefined;
  subject: string;
  deliveryCount: number;
  readyAt: number;
  trace: TraceCarrier | undefined;
}

interface Queue {
  spec: JobSpec;
  ready: Entry[];
  delayed: Entry[];
  running: RunningList;
  groups: Map<string, number>;
  consuming: boolean;
}

export class MemoryQueue implements QueueDriver {
  readonly driver = 'memory' as const;
  readonly #jobs: Jobs;
  readonly #dedupWindowMs: number;
  #queues = new Map<string, Queue>();
  #seen = new Map<string, number>();
  #dlq: DlqRow[] = [];
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #stopped = false;

  constructor(jobs: Jobs, options: { dedupWindowMs: number }) {
    this.#jobs = jobs;
    this.#dedupWindowMs = options.dedupWindowMs;
    for (const spec of jobs.specs.values()) {
      this.#queues.set(spec.name, { spec, ready: [], delayed: [], running: new RunningList(), groups: new Map(), consuming: false });
    }
  }

  #queue(spec: JobSpec): Queue {
    return this.#queues.get(spec.name) as Queue;
  }

  async publish(spec: JobSpec, request: PublishRequest): Promise<boolean> {
    const now = Date.now();
    const key = `${spec.name}\u0000${request.id}`;
    const until = this.#seen.get(key);
    if (until !== undefined && until > now) return true;
    // A key is re-inserted, never updated in place, so expiries grow in insertion order and the
    // expired ones sit at the front: dropping them is amortised O(1) per enqueue.
    for (const [k, t] of this.#seen) {
      if (t > now) break;
      this.#seen.delete(k);
    }
    this.#seen.delete(key);
    this.#seen.set(key, now + this.#dedupWindowMs);
    const entry: Entry = {
      id: request.id,
      data: request.data,
      group: request.group,
      subject: this.#jobs.subject(spec, request.group),
      deliveryCount: 0,
      readyAt: now + request.delayMs,
      trace: request.trace,
    };
    this.#put(this.#queue(spec), entry);
    return false;
  }

  #put(queue: Queue, entry: Entry): void {
    if (entry.readyAt <= Date.now()) {
      queue.ready.push(entry);
      this.#pump(queue);
      return;
    }
    queue.delayed.push(entry);
    this.#arm(entry.readyAt);
  }

  #arm(at: number): void {
    if (at >= this.#timerAt) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#promote(), Math.max(0, at - Date.now()));
    this.#timer.unref();
  }

  #promote(): void {
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    for (const queue of this.#queues.values()) {
      const due = queue.delayed.filter((e) => e.readyAt <= now);
      if (due.length) {
        queue.delayed = queue.delayed.filter((e) => e.readyAt > now);
        due.sort((a, b) => a.readyAt - b.readyAt);
        queue.ready.push(...due);
        this.#pump(queue);
      }
      for (const e of queue.delayed) next = Math.min(next, e.readyAt);
    }
    if (next < Number.POSITIVE_INFINITY) this.#arm(next);
  }

  async consume(specs: readonly JobSpec[]): Promise<void> {
    this.#stopped = false;
    for (const spec of specs) {
      const queue = this.#queue(spec);
      queue.consuming = true;
      this.#pump(queue);
    }
  }

  #pump(queue: Queue): void {
    if (!queue.consuming || this.#stopped) return;
    const { spec } = queue;
    while (queue.running.size < spec.concurrency && queue.ready.length) {
      const at =
        spec.groupConcurrency === undefined
          ? 0
          : queue.ready.findIndex((e) => e.group === undefined || (queue.groups.get(e.group) ?? 0) < (spec.groupConcurrency as number));
      if (at < 0) return;
      const [entry] = queue.ready.splice(at, 1) as [Entry];
      this.#deliver(queue, entry);
    }
  }

  #deliver(queue: Queue, entry: Entry): void {
    entry.deliveryCount++;
    const group = entry.group;
    if (group !== undefined) queue.groups.set(group, (queue.groups.get(group) ?? 0) + 1);
    const finish = () => {
      queue.running.delete(running);
      if (group !== undefined) {
        const n = (queue.groups.get(group) ?? 1) - 1;
        if (n > 0) queue.groups.set(group, n);
        else queue.groups.delete(group);
      }
      // The next job starts after this settlement, in a fresh tick.
      queueMicrotask(() => this.#pump(queue));
    };
    let released = false;
    const running = startDelivery(this.#jobs, queue.spec, {
      subject: entry.subject,
      data: entry.data,
      deliveryCount: entry.deliveryCount,
      id: entry.id,
      group,
      readyAt: entry.readyAt,
      trace: entry.trace,
      ack: () => {
        if (released) return;
        released = true;
        finish();
      },
      nak: (delayMs) => {
        if (released) return;
        released = true;
        finish();
        entry.readyAt = Date.now() + delayMs;
        this.#put(queue, entry);
      },
      working: () => undefined,
    });
    queue.running.add(running);
  }

  async stop(drainMs: number): Promise<void> {
    this.#stopped = true;
    const running = [...this.#queues.values()].flatMap((q) => q.running.values());
    if (running.length) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(running.map((r) => r.done)), new Promise((r) => (timer = setTimeout(r, drainMs)))]);
      if (timer) clearTimeout(timer);
      for (const r of running) r.release();
    }
    if (this.#timer) clearTimeout(this.#timer);
  }

  async storeDeadLetter(_subject: string, letter: DeadLetter): Promise<void> {
    this.#dlq.push({ seq: ++this.#seq, letter });
  }

  async stats(): Promise<QueueStats> {
    const jobs: QueueStats['jobs'] = {};
    let delayed = 0;
    for (const [name, q] of this.#queues) {
      jobs[name] = { pending: q.ready.length + q.delayed.length, running: q.running.size };
      delayed += q.delayed.length;
    }
    return { driver: 'memory', jobs, delayed, dlq: this.#dlq.length };
  }

  async dlqList(limit: number): Promise<DlqRow[]> {
    return this.#dlq.slice(0, limit);
  }

  async dlqReplay(which: number | 'all'): Promise<number> {
    const rows = which === 'all' ? [...this.#dlq] : this.#dlq.filter((r) => r.seq === which);
    for (const row of rows) {
      await this.#jobs.enqueue(row.letter.job, row.letter.payload, {
        id: `${row.letter.id}:replay:${row.seq}`,
        ...(row.letter.group === undefined ? {} : { group: row.letter.group }),
      });
      this.#dlq.splice(this.#dlq.indexOf(row), 1);
    }
    return rows.length;
  }

  async dlqPurge(): Promise<number> {
    return this.#dlq.splice(0).length;
  }
}
