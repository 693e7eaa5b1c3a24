/**
 * One delivery of one job, the same for every driver: decode, the kernel `job` hook around the run,
 * the run timeout, the lease keep-alive, then exactly one settlement (ack, nak with backoff, or DLQ
 * then ack). The settlement always happens before the event that reports it.
 */
import type { MegaTracer, TraceCarrier } from '@mega/adapters';
import type { App, Kernel, Logger } from '@mega/kernel';
import { isMegaError, MegaError } from '@mega/kernel';
import type { JobContext, JobRun, JobSpec } from './job.js';
import { backoffDelay, MAX_NAK_DELAY_MS } from './job.js';

export type FailPhase = 'run' | 'decode' | 'dlq-publish' | 'max-deliver' | 'abandoned-run';
export type JobEventName = 'start' | 'done' | 'retry' | 'fail' | 'dlq';

export interface JobEventData {
  app: string;
  job: string;
  id: string;
  attempt: number;
  /** attempt > 1: this delivery is a retry or a redelivery after a crash / lost ack. */
  redelivered: boolean;
  subject: string;
  group?: string;
  durationMs?: number;
  error?: Error;
  phase?: FailPhase;
  /** retry: the nak delay (ms). */
  delayMs?: number;
  /** dlq: where the dead letter went. */
  dlqSubject?: string;
  /** start of a first attempt: ms from when the job could run (stored, or due when delayed) until it started. */
  lagMs?: number;
}

/** `<subject>.dlq` messages: what `mega jobs dlq list` shows and `replay` re-enqueues. */
export interface DeadLetter {
  originalSubject: string;
  failedAt: string;
  deliveryCount: number;
  error: { name: string; message: string; code?: string; stack?: string };
  payload: unknown;
  job: string;
  id: string;
  group?: string;
  phase: FailPhase;
}

/** A delivered message as the runner sees it (a JetStream `JsMsg` or a memory entry). */
export interface Delivery {
  readonly subject: string;
  readonly data: string;
  readonly deliveryCount: number;
  readonly id: string;
  readonly group: string | undefined;
  /** Epoch ms since which the job could run (stored, or due when delayed), when the driver knows it. */
  readonly readyAt?: number;
  /** W3C trace context the enqueue carried (@mega/tracing), when there was one. */
  readonly trace?: TraceCarrier | undefined;
  ack(): void;
  nak(delayMs: number): void;
  working(): void;
  /**
   * Awaited before a successful run is acked, when the driver batches acks: JetStream resolves it
   * once per event-loop turn, so the acks of every job that finished in that turn leave in one write.
   */
  ackTurn?(): Promise<void>;
}

export interface RunnerHost {
  readonly app: App;
  readonly kernel: Kernel;
  readonly log: Logger;
  /** Server-side delivery cap; the last delivery only routes an unsettled job to the DLQ. */
  readonly maxDeliver: number;
  readonly ackWaitMs: number;
  /** The `tracing` service when @mega/tracing is loaded: each run is a consumer span, child of its enqueue. */
  readonly tracer?: MegaTracer | undefined;
  readonly dlqSubject: (spec: JobSpec) => string;
  emit(event: JobEventName, data: JobEventData): void;
  /** Whether `emit(event)` does anything (a listener, or a log line); absent = always. */
  listens?(event: JobEventName): boolean;
  /** Stores a dead letter durably; throws when it could not. */
  publishDlq(subject: string, letter: DeadLetter): Promise<void>;
}

export const MAX_STACK_CHARS = 4000;
const DLQ_RETRY_DELAYS = [250, 1000];

/** A run still in flight: shutdown naks it when it does not finish within the bound. */
export interface Running {
  readonly delivery: Delivery;
  readonly done: Promise<void>;
  /** Settles the delivery by nak (shutdown): the run's later outcome is then reported, never acted on. */
  release(): boolean;
  /** Position in a `RunningList` (-1: in none). */
  slot: number;
}

/**
 * A driver's running deliveries: add and delete in O(1) by swap-remove. Not a Set: one churned by an
 * add and a delete per job kept its deleted entries reachable (measured: ~2 µs and most of the GC
 * of a short job).
 */
export class RunningList {
  readonly #items: Running[] = [];

  get size(): number {
    return this.#items.length;
  }

  add(r: Running): void {
    r.slot = this.#items.push(r) - 1;
  }

  delete(r: Running): void {
    const i = r.slot;
    if (i < 0 || this.#items[i] !== r) return;
    r.slot = -1;
    const last = this.#items.pop() as Running;
    if (last !== r) {
      this.#items[i] = last;
      last.slot = i;
    }
  }

  values(): Running[] {
    return [...this.#items];
  }
}

/**
 * Lease keep-alives and run timeouts of every running delivery in this process, on ONE timer armed
 * for the earliest of their deadlines (a timer pair per run was a tenth of a short job's consumer
 * CPU). Runs join and leave with a Set add / delete; the timer re-arms itself only when it fires.
 */
interface Watched {
  readonly keepAliveMs: number;
  nextKeepAlive: number;
  /** Epoch ms; Infinity without a timeout. */
  readonly timeoutAt: number;
  working(): void;
  timeout(): void;
  /** Position in the watchdog's list (-1 = not in it). */
  at: number;
}

class Watchdog {
  // An array with swap-remove, not a Set: a Set churned by an add and a delete per job kept its
  // deleted entries reachable until the next full GC (measured: 2 µs more per job, most of it GC).
  readonly #live: Watched[] = [];
  #timer: NodeJS.Timeout | undefined;
  #at = Number.POSITIVE_INFINITY;

  add(w: Watched): void {
    w.at = this.#live.push(w) - 1;
    const due = Math.min(w.nextKeepAlive, w.timeoutAt);
    if (due < this.#at) this.#arm(due);
  }

  delete(w: Watched): void {
    // The timer stays armed: when it fires with nothing due it re-arms for what is left, or stops.
    const i = w.at;
    if (i < 0) return;
    w.at = -1;
    const last = this.#live.pop() as Watched;
    if (last !== w) {
      this.#live[i] = last;
      last.at = i;
    }
  }

  #arm(at: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#at = at;
    this.#timer = setTimeout(() => this.#tick(), Math.max(0, at - Date.now()));
    // A running job keeps the process alive through what it awaits, not through its lease timer.
    this.#timer.unref();
  }

  #tick(): void {
    this.#timer = undefined;
    this.#at = Number.POSITIVE_INFINITY;
    const now = Date.now();
    for (const w of [...this.#live]) {
      if (w.timeoutAt <= now) {
        this.delete(w);
        w.timeout();
      } else if (w.nextKeepAlive <= now) {
        w.nextKeepAlive = now + w.keepAliveMs;
        w.working();
      }
    }
    let next = Number.POSITIVE_INFINITY;
    for (const w of this.#live) next = Math.min(next, w.nextKeepAlive, w.timeoutAt);
    if (next < Number.POSITIVE_INFINITY) this.#arm(next);
  }
}

const watchdog = new Watchdog();

/** Keeps a delivery's lease alive (`working()` every ackWaitMs / 3) until the returned function is called. */
export function keepLease(working: () => void, ackWaitMs: number): () => void {
  const keepAliveMs = Math.max(50, Math.floor(ackWaitMs / 3));
  const w: Watched = {
    keepAliveMs,
    nextKeepAlive: Date.now() + keepAliveMs,
    timeoutAt: Number.POSITIVE_INFINITY,
    working,
    timeout: () => undefined,
    at: -1,
  };
  watchdog.add(w);
  return () => watchdog.delete(w);
}

/** `ctx.source.signal`, made on first read: most jobs never look at it, and an AbortController is not free. */
class RunSignal {
  #controller: AbortController | undefined;
  #aborted = false;
  #reason: unknown;

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/** `ctx.source` of a run (a class: an object literal with a getter is built on V8's slow path). */
class RunInfo implements JobRun {
  readonly kind = 'job' as const;
  readonly name: string;
  readonly id: string;
  readonly attempt: number;
  readonly group: string | undefined;
  readonly #signal: RunSignal;

  constructor(name: string, id: string, attempt: number, group: string | undefined, signal: RunSignal) {
    this.name = name;
    this.id = id;
    this.attempt = attempt;
    this.group = group;
    this.#signal = signal;
  }

  get signal(): AbortSignal {
    return this.#signal.signal;
  }
}

/**
 * Runs one delivery. `onEnd` (optional) is called once the delivery is handled (settled and
 * reported), so a driver needs no extra promise per delivery to track it.
 */
export function startDelivery(host: RunnerHost, spec: JobSpec, delivery: Delivery, onEnd?: () => void): Running {
  let settled = false;
  const settle = (fn: () => void): boolean => {
    if (settled) return false;
    settled = true;
    fn();
    return true;
  };
  const signal = new RunSignal();
  const running: Running = {
    delivery,
    done: Promise.resolve(),
    release: () => {
      const released = settle(() => delivery.nak(0));
      if (released) signal.abort(new MegaError('jobs.shutdown', 'the worker is shutting down'));
      return released;
    },
    slot: -1,
  };
  (running as { done: Promise<void> }).done = handle(host, spec, delivery, settle, signal).then(onEnd, (error: unknown) => {
    host.log.error({ err: error, job: spec.name, id: delivery.id }, 'jobs: delivery handling failed');
    onEnd?.();
  });
  return running;
}

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function toMegaError(error: unknown): MegaError {
  if (isMegaError(error)) return error;
  const e = toError(error);
  const wrapped = new MegaError('jobs.failed', e.message, { cause: e });
  if (e.stack) wrapped.stack = e.stack;
  return wrapped;
}

/** Whether an event has a listener (or is logged): without one its data is not even built. */
function wants(host: RunnerHost, event: JobEventName): boolean {
  return host.listens ? host.listens(event) : true;
}

async function handle(host: RunnerHost, spec: JobSpec, d: Delivery, settle: (fn: () => void) => boolean, signal: RunSignal): Promise<void> {
  const attempt = d.deliveryCount;
  const base: JobEventData = {
    app: host.app.name,
    job: spec.name,
    id: d.id,
    attempt,
    redelivered: attempt > 1,
    subject: d.subject,
    ...(d.group === undefined ? {} : { group: d.group }),
  };
  let payload: unknown;
  try {
    payload = JSON.parse(d.data);
  } catch (error) {
    const e = new MegaError('jobs.decode', `job "${spec.name}" ${d.id}: the message is not JSON (${toError(error).message})`);
    await deadLetter(host, spec, d, settle, base, 'decode', e, d.data);
    return;
  }
  const attempts = Math.min(spec.retries + 1, host.maxDeliver - 1);
  if (attempt > attempts) {
    // The previous (last allowed) delivery never settled: its worker died or lost the lease.
    const e = new MegaError('jobs.max_deliver', `job "${spec.name}" ${d.id} was delivered ${attempt} times without settling`);
    await deadLetter(host, spec, d, settle, base, 'max-deliver', e, payload);
    return;
  }
  if (wants(host, 'start')) {
    host.emit('start', attempt === 1 && d.readyAt !== undefined ? { ...base, lagMs: Math.max(0, Date.now() - d.readyAt) } : base);
  }
  const info: JobRun = new RunInfo(spec.name, d.id, attempt, d.group, signal);
  const ctx = host.kernel.createContext(host.app, { id: d.id, source: info }) as JobContext;
  const hook = host.kernel.hooks.job;
  const hooked = hook.isUsed();
  const hookJob = hooked ? { name: spec.name, id: d.id, attempt, data: payload } : undefined;
  const started = performance.now();
  const body = async () => {
    if (hookJob) await hook.promise({ phase: 'before', app: host.app, job: hookJob });
    return spec.run(payload, ctx);
  };
  const run = host.tracer ? tracedRun(host.tracer, host, spec, d, body) : body();
  let failure: unknown;
  let ok = false;
  let timedOut = false;
  // Keep the lease while the job runs (ackWait / 3 leaves two chances before the server
  // redelivers) and race the run against its timeout, both on the shared watchdog.
  const now = Date.now();
  const keepAliveMs = Math.max(50, Math.floor(host.ackWaitMs / 3));
  let watched: Watched | undefined;
  const outcome = new Promise<unknown>((resolve, reject) => {
    run.then(resolve, reject);
    watched = {
      keepAliveMs,
      nextKeepAlive: now + keepAliveMs,
      timeoutAt: spec.timeoutMs > 0 ? now + spec.timeoutMs : Number.POSITIVE_INFINITY,
      working: () => d.working(),
      timeout: () => {
        timedOut = true;
        reject(new MegaError('jobs.timeout', `job "${spec.name}" ${d.id} ran longer than ${spec.timeoutMs} ms`));
      },
      at: -1,
    };
    watchdog.add(watched);
  });
  try {
    await outcome;
    ok = true;
  } catch (error) {
    failure = error;
  } finally {
    watchdog.delete(watched as Watched);
  }
  const durationMs = Math.round((performance.now() - started) * 100) / 100;
  if (timedOut) {
    signal.abort(failure);
    // The run goes on in the background (JavaScript cannot stop it): report how it ends.
    run.then(
      () =>
        host.emit('fail', {
          ...base,
          phase: 'abandoned-run',
          error: new MegaError('jobs.abandoned_run', `job "${spec.name}" ${d.id} completed after its timeout`),
        }),
      (late: unknown) => host.emit('fail', { ...base, phase: 'abandoned-run', error: toError(late) }),
    );
  }
  if (ok) {
    if (d.ackTurn) await d.ackTurn();
    if (!settle(() => d.ack())) return reportReleased(host, base, durationMs);
    if (hookJob) await callHook(host, { phase: 'after', app: host.app, job: hookJob, durationMs });
    if (wants(host, 'done')) host.emit('done', { ...base, durationMs });
    return;
  }
  const error = toMegaError(failure);
  if (hookJob) await callHook(host, { phase: 'fail', app: host.app, job: hookJob, error, durationMs });
  if (!timedOut && attempt < attempts) {
    const delayMs = backoffDelay(spec.backoff, attempt);
    if (!settle(() => d.nak(delayMs))) return reportReleased(host, base, durationMs);
    if (wants(host, 'retry')) host.emit('retry', { ...base, durationMs, error, delayMs });
    return;
  }
  await deadLetter(host, spec, d, settle, { ...base, durationMs }, 'run', error, payload);
}

/** The run in a consumer span; no carried context (enqueued untraced) starts a new trace. */
function tracedRun(tracer: MegaTracer, host: RunnerHost, spec: JobSpec, d: Delivery, body: () => Promise<unknown>): Promise<unknown> {
  const attributes = {
    'mega.app': host.app.name,
    'mega.job.name': spec.name,
    'mega.job.id': d.id,
    'mega.job.attempt': d.deliveryCount,
    'mega.job.group': d.group,
  };
  return tracer.run(`job.run ${spec.name}`, 'consumer', attributes, body, d.trace ?? NO_TRACE);
}
const NO_TRACE: TraceCarrier = {};

function reportReleased(host: RunnerHost, base: JobEventData, durationMs: number): void {
  // Shutdown naked this delivery while it ran: it will be redelivered; its outcome here is moot.
  host.log.debug({ job: base.job, id: base.id, durationMs }, 'jobs: run finished after its delivery was released');
}

async function callHook(host: RunnerHost, event: Parameters<Kernel['hooks']['job']['promise']>[0]): Promise<void> {
  try {
    await host.kernel.hooks.job.promise(event);
  } catch (error) {
    host.log.error({ err: error, job: event.job.name, phase: event.phase }, 'jobs: a job hook tap failed');
  }
}

async function deadLetter(
  host: RunnerHost,
  spec: JobSpec,
  d: Delivery,
  settle: (fn: () => void) => boolean,
  base: JobEventData,
  phase: FailPhase,
  error: Error,
  payload: unknown,
): Promise<void> {
  const dlqSubject = host.dlqSubject(spec);
  const letter: DeadLetter = {
    originalSubject: d.subject,
    failedAt: new Date().toISOString(),
    deliveryCount: d.deliveryCount,
    error: {
      name: error.name,
      message: error.message,
      ...(isMegaError(error) ? { code: error.code } : {}),
      ...(error.stack ? { stack: error.stack.slice(0, MAX_STACK_CHARS) } : {}),
    },
    payload,
    job: spec.name,
    id: d.id,
    ...(d.group === undefined ? {} : { group: d.group }),
    phase,
  };
  let published = false;
  let lastError: unknown;
  for (let i = 0; i <= DLQ_RETRY_DELAYS.length && !published; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, DLQ_RETRY_DELAYS[i - 1]));
    try {
      await host.publishDlq(dlqSubject, letter);
      published = true;
    } catch (e) {
      lastError = e;
    }
  }
  if (!published) {
    // Never ack into nowhere: leave the job for redelivery (bounded by max_deliver, then it stays
    // unacknowledged in the stream for an operator) and say so.
    const delayMs = Math.min(MAX_NAK_DELAY_MS, 1000 * 2 ** Math.max(0, d.deliveryCount - 1));
    if (d.deliveryCount < host.maxDeliver) settle(() => d.nak(delayMs));
    host.emit('fail', { ...base, phase: 'dlq-publish', error: toError(lastError), delayMs });
    return;
  }
  if (!settle(() => d.ack())) return;
  host.emit('fail', { ...base, phase, error });
  host.emit('dlq', { ...base, phase, error, dlqSubject });
}
