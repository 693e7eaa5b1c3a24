/**
 * One pool per worker file and app. The pool library only runs tasks on threads / processes; this
 * layer owns the semantics so both modes behave the same: the queue bound, the per-task timeout
 * (abort → the library terminates that thread or process and starts a fresh one), crash and error
 * mapping to typed MegaErrors, and the drain at shutdown.
 *
 * Threads: piscina. Processes: tinypool's `child_process` runtime. Measured on the 2-core dev box
 * (2 threads, Node 24; `npm run bench:workers`): per-task round trip piscina 11–24 µs vs tinypool
 * 24–28 µs; tiny tasks/s 40–67 k vs 25–39 k; CPU-bound throughput equal (the task dominates). And
 * tinypool 2.2 leaves a task pending forever when its worker thread calls process.exit, where
 * piscina rejects it and replaces the thread. Tinypool's process runtime does reject on exit, so it
 * serves `mode: 'process'` (piscina has no process mode).
 */
import { availableParallelism } from 'node:os';
import type { Logger } from '@mega/kernel';
import { isMegaError, MegaError, UnavailableError } from '@mega/kernel';
import { Piscina } from 'piscina';
import { Tinypool } from 'tinypool';
import type { WorkerMode } from './define.js';
import type { TaskOutcome } from './entry.js';

/** Run from `src/` (tests, Node strips the types) or from `dist/` (built). */
const ENTRY = new URL(import.meta.url.endsWith('.ts') ? './entry.ts' : './entry.js', import.meta.url).href;

/** Cores − 1 (the main thread keeps one), at least 1. */
export const defaultSize = (): number => Math.max(1, availableParallelism() - 1);

export interface PoolOptions {
  /** Worker name (file name without extension). */
  name: string;
  app: string;
  file: string;
  mode: WorkerMode;
  size: number;
  queue: number;
  timeoutMs: number;
  log: Logger;
}

export interface RunOptions {
  /** Overrides the pool's `timeoutMs` for this call; `0` = unbounded. */
  timeoutMs?: number;
  /** Cancels the task (queued: dropped; running: its thread/process is recycled) -> `workers.aborted`. */
  signal?: AbortSignal;
}

export interface PoolStats {
  /** Tasks accepted and not settled yet (running + queued). */
  pending: number;
  completed: number;
  failed: number;
  timedOut: number;
  crashed: number;
  started: boolean;
}

interface Backend {
  run(data: unknown, signal: AbortSignal): Promise<TaskOutcome>;
  destroy(): Promise<void>;
}

function threadBackend(o: PoolOptions, onError: (error: unknown) => void): Backend {
  const pool = new Piscina({
    filename: ENTRY,
    minThreads: o.size,
    maxThreads: o.size,
    // The bound is ours (so both modes and the error code match); piscina only runs tasks.
    maxQueue: Number.POSITIVE_INFINITY,
    env: { ...process.env, MEGA_WORKER_FILE: o.file },
    name: 'default',
  });
  pool.on('error', onError); // a thread that dies outside a task: piscina replaces it
  return { run: (data, signal) => pool.run(data, { signal }) as Promise<TaskOutcome>, destroy: () => pool.destroy() };
}

function processBackend(o: PoolOptions, onError: (error: unknown) => void): Backend {
  const pool = new Tinypool({
    filename: ENTRY,
    runtime: 'child_process',
    // Structured clone, as between threads (the default 'json' would turn a Map into {}, a Buffer into an object).
    serialization: 'advanced',
    minThreads: o.size,
    maxThreads: o.size,
    env: { ...(process.env as Record<string, string>), MEGA_WORKER_FILE: o.file },
  });
  pool.on('error', onError);
  return { run: (data, signal) => pool.run(data, { signal }) as Promise<TaskOutcome>, destroy: () => pool.destroy() };
}

export class WorkerPool {
  readonly name: string;
  readonly mode: WorkerMode;
  readonly size: number;
  readonly queue: number;
  readonly timeoutMs: number;
  readonly #o: PoolOptions;
  #backend: Backend | undefined;
  #pending = 0;
  #closing = false;
  #destroyed = false;
  #drained: (() => void) | undefined;
  #stats = { completed: 0, failed: 0, timedOut: 0, crashed: 0 };

  constructor(options: PoolOptions) {
    this.#o = options;
    this.name = options.name;
    this.mode = options.mode;
    this.size = options.size;
    this.queue = options.queue;
    this.timeoutMs = options.timeoutMs;
  }

  /** Starts the threads / processes now (otherwise on the first `run`). */
  start(): void {
    if (this.#backend || this.#closing) return;
    const onError = (error: unknown) =>
      this.#o.log.warn({ worker: this.name, app: this.#o.app, err: error }, 'workers: a worker died outside a task; replaced');
    this.#backend = this.mode === 'process' ? processBackend(this.#o, onError) : threadBackend(this.#o, onError);
    this.#o.log.debug({ worker: this.name, app: this.#o.app, mode: this.mode, size: this.size }, 'workers: pool started');
  }

  stats(): PoolStats {
    return { pending: this.#pending, ...this.#stats, started: this.#backend !== undefined };
  }

  /** Runs the task with `data` on a free thread / process; see the README for every rejection code. */
  async run(data: unknown, options: RunOptions = {}): Promise<unknown> {
    if (this.#closing) {
      throw new UnavailableError('workers.closed', `worker "${this.name}" is shut down`, { details: { worker: this.name } });
    }
    if (this.#pending >= this.size + this.queue) {
      throw new UnavailableError(
        'workers.queue_full',
        `worker "${this.name}" is busy: ${this.size} running and ${this.queue} queued (raise workers.queue or workers.size)`,
        { details: { worker: this.name, size: this.size, queue: this.queue } },
      );
    }
    this.start();
    const backend = this.#backend as Backend;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const controller = new AbortController();
    let why: 'timeout' | 'aborted' | undefined;
    const timer =
      timeoutMs > 0 && Number.isFinite(timeoutMs)
        ? setTimeout(() => {
            why = 'timeout';
            controller.abort();
          }, timeoutMs)
        : undefined;
    const callerSignal = options.signal;
    const onCallerAbort = () => {
      why ??= 'aborted';
      controller.abort();
    };
    if (callerSignal?.aborted) onCallerAbort();
    else callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
    this.#pending++;
    try {
      let outcome: TaskOutcome;
      try {
        outcome = await backend.run(data, controller.signal);
      } catch (error) {
        throw this.#workerError(error, why, timeoutMs);
      }
      if (outcome.ok) {
        this.#stats.completed++;
        return outcome.value;
      }
      this.#stats.failed++;
      const { error, phase } = outcome;
      const cause = Object.assign(new Error(error.message), error);
      const code = phase === 'load' ? 'workers.load_failed' : phase === 'result' ? 'workers.invalid_data' : 'workers.task_failed';
      throw new MegaError(code, phase === 'result' ? `worker "${this.name}": ${error.message}` : error.message, {
        cause,
        details: { worker: this.name, ...(error.code === undefined ? {} : { code: error.code }) },
      });
    } finally {
      clearTimeout(timer);
      callerSignal?.removeEventListener('abort', onCallerAbort);
      if (--this.#pending === 0) this.#drained?.();
    }
  }

  #workerError(error: unknown, why: 'timeout' | 'aborted' | undefined, timeoutMs: number): MegaError {
    const details = { worker: this.name, mode: this.mode };
    if (isMegaError(error)) return error;
    if (why === 'timeout') {
      this.#stats.timedOut++;
      this.#o.log.warn({ worker: this.name, app: this.#o.app, timeoutMs }, 'workers: task timed out; its worker is recycled');
      return new MegaError(
        'workers.timeout',
        `worker "${this.name}" did not finish within ${timeoutMs} ms; its ${this.mode} was recycled`,
        {
          cause: error,
          details: { ...details, timeoutMs },
        },
      );
    }
    if (why === 'aborted')
      return new MegaError('workers.aborted', `worker "${this.name}": the caller aborted the task`, { cause: error, details });
    if (this.#destroyed)
      return new UnavailableError('workers.closed', `worker "${this.name}" was shut down before the task finished`, {
        cause: error,
        details,
      });
    const message = (error as Error)?.message ?? String(error);
    if ((error as Error)?.name === 'DataCloneError') {
      return new MegaError('workers.invalid_data', `worker "${this.name}": data or result cannot be cloned: ${message}`, {
        cause: error,
        details,
      });
    }
    this.#stats.crashed++;
    this.#o.log.warn({ worker: this.name, app: this.#o.app, err: error }, 'workers: a worker crashed during a task; replaced');
    return new MegaError('workers.crashed', `worker "${this.name}" crashed while running this task: ${message}`, { cause: error, details });
  }

  /**
   * Refuses new tasks (`workers.closed`), waits up to `drainMs` for the accepted ones, then ends
   * every thread / process; tasks still running then reject with `workers.closed`.
   */
  async close(drainMs: number): Promise<void> {
    this.#closing = true;
    if (this.#pending > 0 && drainMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, drainMs);
        this.#drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.#destroyed = true;
    const backend = this.#backend;
    this.#backend = undefined;
    await backend?.destroy();
  }
}
