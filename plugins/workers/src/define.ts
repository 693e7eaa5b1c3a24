/**
 * `defineWorker`, kept free of any import: a task file is loaded in every worker thread or child
 * process, and `@mega/workers/define` costs nothing there, while the package entry would load the
 * whole kernel into each worker (measured: ~120 ms and ~30 MB RSS per thread).
 */

/** `thread`: worker_threads (piscina). `process`: child processes (tinypool), for native code that is not thread-safe. */
export type WorkerMode = 'thread' | 'process';

/** Per-worker options a task file may declare; `workers.overrides.<name>` in app.config.ts wins over them. */
export interface WorkerOptions {
  mode?: WorkerMode;
  /** Threads or processes in the pool (default: the app's `workers.size`, else cores − 1, at least 1). */
  size?: number;
  /** Tasks allowed to wait for a free thread; one more is refused with `workers.queue_full`. */
  queue?: number;
  /** Per-task bound from the call, queue wait included; `0` = unbounded. */
  timeoutMs?: number;
}

/** The task function: runs in the worker, receives the structured-cloned `data`, returns a clonable value. */
export type WorkerTask<I = unknown, O = unknown> = (data: I) => O | Promise<O>;

export interface WorkerDefinition<I = unknown, O = unknown> extends WorkerOptions {
  run: WorkerTask<I, O>;
}

/**
 * Declares a worker file: `export default defineWorker({ mode: 'process', run(data) { ... } })`.
 * A plain `export default function (data) {}` is the same with the app's defaults.
 */
export function defineWorker<I, O>(definition: WorkerDefinition<I, O>): Readonly<WorkerDefinition<I, O>> {
  return Object.freeze({ ...definition });
}
