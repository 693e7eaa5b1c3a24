/**
 * Runs inside each worker thread (piscina) and child process (tinypool): loads the app's task file
 * named by MEGA_WORKER_FILE through jiti (so `workers/<name>.ts` works without a build step, as the
 * kernel loads config and routes), then runs it per task.
 *
 * Every outcome of the task itself comes back as a value (`{ ok: true, value }` or `{ ok: false,
 * error }`), so a rejection seen by the pool is always about the worker (crash, abort, clone
 * failure), never a task's own throw: the main side tells the two apart without parsing messages.
 *
 * Only erasable TypeScript here: run from `src/` (tests), Node strips the types itself.
 */
import { createJiti } from 'jiti';

export interface TaskError {
  name: string;
  message: string;
  stack?: string;
  code?: unknown;
}

export type TaskOutcome = { ok: true; value: unknown } | { ok: false; phase: 'load' | 'run' | 'result'; error: TaskError };

type Task = (data: unknown) => unknown;

const file = process.env.MEGA_WORKER_FILE ?? '';
const jiti = createJiti(import.meta.url, { interopDefault: false });
let loading: Promise<Task> | undefined;

function load(): Promise<Task> {
  loading ??= (async () => {
    if (!file) throw new Error('MEGA_WORKER_FILE is not set: this module runs only inside a @mega/workers pool');
    const mod = (await jiti.import(file)) as { default?: unknown } | undefined;
    const exported = mod?.default as { run?: unknown } | Task | undefined;
    if (typeof exported === 'function') return exported as Task;
    if (exported && typeof exported.run === 'function') return exported.run.bind(exported) as Task;
    throw new Error(`${file} must export default a function or defineWorker({ run })`);
  })();
  return loading;
}

function describe(error: unknown): TaskError {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return { name: error.name, message: error.message, stack: error.stack, ...(code === undefined ? {} : { code }) };
  }
  return { name: 'Error', message: String(error) };
}

/**
 * Where `value` holds something structured clone refuses (a function, symbol, promise, weak
 * collection), or undefined. Checked here because a result that fails to clone is reported by the
 * pool libraries with an empty message; binary data and primitives are skipped, so the walk is
 * proportional to the number of objects and array slots.
 */
function unclonableAt(value: unknown, path: string, seen: Set<object>): string | undefined {
  const type = typeof value;
  if (type === 'function' || type === 'symbol') return path || '(result)';
  if (type !== 'object' || value === null || seen.has(value as object)) return undefined;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer || value instanceof Date || value instanceof RegExp) return undefined;
  if (value instanceof Promise || value instanceof WeakMap || value instanceof WeakSet || value instanceof WeakRef)
    return path || '(result)';
  seen.add(value as object);
  if (value instanceof Map) {
    for (const [k, v] of value) {
      const at = unclonableAt(k, `${path}<key>`, seen) ?? unclonableAt(v, `${path}.get(${String(k)})`, seen);
      if (at) return at;
    }
    return undefined;
  }
  if (value instanceof Set) {
    for (const v of value) {
      const at = unclonableAt(v, `${path}<item>`, seen);
      if (at) return at;
    }
    return undefined;
  }
  for (const key of Object.keys(value as object)) {
    const at = unclonableAt((value as Record<string, unknown>)[key], `${path}.${key}`, seen);
    if (at) return at;
  }
  return undefined;
}

export default async function runTask(data: unknown): Promise<TaskOutcome> {
  let task: Task;
  try {
    task = await load();
  } catch (error) {
    return { ok: false, phase: 'load', error: describe(error) };
  }
  try {
    const value = await task(data);
    const at = unclonableAt(value, '', new Set());
    if (at) {
      return {
        ok: false,
        phase: 'result',
        error: { name: 'DataCloneError', message: `the task returned a value that cannot be cloned at ${at}` },
      };
    }
    return { ok: true, value };
  } catch (error) {
    return { ok: false, phase: 'run', error: describe(error) };
  }
}
