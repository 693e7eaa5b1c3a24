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
}

export function startDelivery(host: RunnerHost, spec: JobSpec, delivery: Delivery): Running {
  let settled = false;
  const settle = (fn: () => void): boolean => {
    if (settled) return false;
    settled = true;
    fn();
    return true;
  };
  const controller = new AbortController();
  const running: Running = {
    delivery,
    done: Promise.resolve(),
    release: () => {
      const released = settle(() => delivery.nak(0));
      if (released) controller.abort(new MegaError('jobs.shutdown', 'the worker is shutting down'));
      return released;
    },
  };
  (running as { done: Promise<void> }).done = handle(host, spec, delivery, settle, controller).catch((error: unknown) =>
    host.log.error({ err: error, job: spec.name, id: delivery.id }, 'jobs: delivery handling failed'),
  );
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

async function handle(
  host: RunnerHost,
  spec: JobSpec,
  d: Delivery,
  settle: (fn: () => void) => boolean,
  controller: AbortController,
): Promise<void> {
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
  host.emit('start', attempt === 1 && d.readyAt !== undefined ? { ...base, lagMs: Math.max(0, Date.now() - d.readyAt) } : base);
  const info: JobRun = { kind: 'job', name: spec.name, id: d.id, attempt, group: d.group, signal: controller.signal };
  const ctx = host.kernel.createContext(host.app, { id: d.id, source: info }) as JobContext;
  const hook = host.kernel.hooks.job;
  const hooked = hook.isUsed();
  const hookJob = { name: spec.name, id: d.id, attempt, data: payload };
  const started = performance.now();
  // Keep the lease while the job runs: ackWait / 3 leaves two chances before the server redelivers.
  const keepAlive = setInterval(() => d.working(), Math.max(50, Math.floor(host.ackWaitMs / 3)));
  keepAlive.unref();
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const body = async () => {
    if (hooked) await hook.promise({ phase: 'before', app: host.app, job: hookJob });
    return spec.run(payload, ctx);
  };
  const run = host.tracer ? tracedRun(host.tracer, host, spec, d, body) : body();
  let failure: unknown;
  let ok = false;
  try {
    if (spec.timeoutMs > 0) {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          timedOut = true;
          reject(new MegaError('jobs.timeout', `job "${spec.name}" ${d.id} ran longer than ${spec.timeoutMs} ms`));
        }, spec.timeoutMs);
      });
      await Promise.race([run, timeout]);
    } else await run;
    ok = true;
  } catch (error) {
    failure = error;
  } finally {
    clearInterval(keepAlive);
    if (timer) clearTimeout(timer);
  }
  const durationMs = Math.round((performance.now() - started) * 100) / 100;
  if (timedOut) {
    controller.abort(failure);
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
    if (!settle(() => d.ack())) return reportReleased(host, base, durationMs);
    if (hooked) await callHook(host, { phase: 'after', app: host.app, job: hookJob, durationMs });
    host.emit('done', { ...base, durationMs });
    return;
  }
  const error = toMegaError(failure);
  if (hooked) await callHook(host, { phase: 'fail', app: host.app, job: hookJob, error, durationMs });
  if (!timedOut && attempt < attempts) {
    const delayMs = backoffDelay(spec.backoff, attempt);
    if (!settle(() => d.nak(delayMs))) return reportReleased(host, base, durationMs);
    host.emit('retry', { ...base, durationMs, error, delayMs });
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
