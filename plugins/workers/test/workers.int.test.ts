/**
 * Real worker threads and child processes, no mocks: TS task files loaded through jiti in the
 * worker, timeouts that recycle the thread, crashes that reject only their caller, the queue bound,
 * process mode, shutdown. (Throughput is measured by `npm run bench:workers`, not asserted here.)
 */
import { isMainThread } from 'node:worker_threads';
import { getApp } from '@mega/kernel';
import { bootPlugins, buildPlugins, stopAll, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import workers, { defaultSize, type WorkerHandle } from '../src/index.js';

// Typed names, as an app declares them (see the README).
declare module '../src/index.js' {
  interface WorkerRegistry {
    square: WorkerHandle<{ n: number; fn?: () => number }, { value: number; pid: number; isMainThread: boolean; threadId: number }>;
    spin: WorkerHandle<{ ms: number }, number>;
    crash: WorkerHandle<{ exit?: boolean; ms?: number }, { threadId: number; pid: number }>;
    fail: WorkerHandle<string, never>;
    native: WorkerHandle<{ exit?: boolean; ms?: number }, { pid: number; ppid: number; isMainThread: boolean }>;
    echo: WorkerHandle<unknown, unknown>;
    unclonable: WorkerHandle<object, unknown>;
  }
}

afterEach(stopAll);

const FILES: Record<string, string> = {
  // Real TypeScript (interface, annotations, `satisfies`) and the kernel-free define entry.
  'apps/main/workers/square.ts': `
import { isMainThread, threadId } from 'node:worker_threads';
import { defineWorker } from '@mega/workers/define';
interface In { n: number }
const square = (n: number): number => n * n;
export default defineWorker({
  run(data: In) {
    return { value: square(data.n), pid: process.pid, isMainThread, threadId } satisfies Record<string, unknown>;
  },
});
`,
  'apps/main/workers/spin.ts': `
import { threadId } from 'node:worker_threads';
export default function spin(data: { ms: number }): number {
  const end = Date.now() + data.ms;
  while (Date.now() < end);
  return threadId;
}
`,
  'apps/main/workers/crash.ts': `
import { threadId } from 'node:worker_threads';
export default async (data: { exit?: boolean; ms?: number }) => {
  if (data.ms) await new Promise((r) => setTimeout(r, data.ms));
  if (data.exit) process.exit(7);
  return { threadId, pid: process.pid };
};
`,
  'apps/main/workers/echo.ts': `
export default <T>(data: T): T => data;
`,
  'apps/main/workers/unclonable.ts': `
export default (data: { thread?: boolean }) => ({ fn: () => data });
`,
  'apps/main/workers/fail.ts': `
export default (data: string) => {
  const error = new Error('bad input: ' + data) as Error & { code?: string };
  error.code = 'E_BAD';
  throw error;
};
`,
  // Process mode declared by the file: for native code that is not thread-safe.
  'apps/main/workers/native.ts': `
import { isMainThread } from 'node:worker_threads';
import { defineWorker } from '@mega/workers/define';
export default defineWorker({
  mode: 'process',
  size: 1,
  run: async (data: { exit?: boolean; ms?: number }) => {
    if (data.ms) { const end = Date.now() + data.ms; while (Date.now() < end); }
    if (data.exit) process.exit(9);
    return { pid: process.pid, isMainThread, ppid: process.ppid };
  },
});
`,
};

async function boot(workersConfig: Record<string, unknown> = {}, files: Record<string, string> = FILES) {
  const dir = writeProject(files, { prefix: 'mega-workers-' });
  return bootPlugins({ plugins: [workers], dir, apps: { main: { workers: { size: 1, timeoutMs: 10_000, ...workersConfig } } } });
}

type Settled<T> = { value?: T; error?: Error & { code?: string } };
const settle = <T>(p: Promise<T>): Promise<Settled<T>> =>
  p.then(
    (value) => ({ value }),
    (error: Error & { code?: string }) => ({ error }),
  );

describe('@mega/workers', () => {
  it('runs a TypeScript task file on a worker thread through ctx.workers and getApp().workers', async () => {
    const app = await boot();
    const ctx = app.kernel.createContext(getApp('main'));
    const result = await ctx.workers.square.run({ n: 7 });
    expect(result).toMatchObject({ value: 49, pid: process.pid, isMainThread: false });
    expect(result.threadId).toBeGreaterThan(0);
    expect(isMainThread).toBe(true);
    expect(await getApp('main').workers.square.run({ n: 3 })).toMatchObject({ value: 9 });
    expect(ctx.workers.square).toMatchObject({ mode: 'thread', size: 1, queue: 1000, timeoutMs: 10_000 });
    expect(() => ctx.workers.sqaure).toThrow(expect.objectContaining({ code: 'workers.unknown' }));
    expect(defaultSize()).toBeGreaterThanOrEqual(1);
  });

  it('a timeout rejects with workers.timeout, recycles the thread, and the next task still works', async () => {
    const app = await boot();
    const spin = getApp('main').workers.spin;
    const first = await spin.run({ ms: 1 });
    const timedOut = await settle(spin.run({ ms: 5000 }, { timeoutMs: 200 }));
    expect(timedOut.error).toMatchObject({ code: 'workers.timeout', status: 504 });
    const after = await spin.run({ ms: 1 });
    expect(after).not.toBe(first); // a fresh thread
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    expect((await settle(spin.run({ ms: 5000 }, { signal: controller.signal }))).error).toMatchObject({ code: 'workers.aborted' });
    expect(typeof (await spin.run({ ms: 1 }))).toBe('number');
    expect(spin.stats()).toMatchObject({ timedOut: 1, completed: 3, pending: 0 });
    expect(app.findLogs('workers: task timed out; its worker is recycled')).toHaveLength(1);
  });

  it('a task that throws rejects only its caller with workers.task_failed and the task message', async () => {
    await boot({ size: 2 });
    const w = getApp('main').workers;
    const [bad, good] = await Promise.all([settle(w.fail.run('x')), settle(w.square.run({ n: 2 }))]);
    expect(bad.error).toMatchObject({ code: 'workers.task_failed', message: 'bad input: x', details: { worker: 'fail', code: 'E_BAD' } });
    expect(bad.error?.cause).toMatchObject({ message: 'bad input: x', code: 'E_BAD' });
    expect(String((bad.error?.cause as Error | undefined)?.stack)).toContain('fail.ts');
    expect(good).toMatchObject({ value: { value: 4 } });
  });

  it('data or a result that cannot be cloned rejects with workers.invalid_data; the pool keeps working', async () => {
    await boot();
    const w = getApp('main').workers;
    const badData = await settle(w.square.run({ n: 1, fn: () => 1 }));
    expect(badData.error).toMatchObject({ code: 'workers.invalid_data' });
    const badResult = await settle(w.unclonable.run({}));
    expect(badResult.error).toMatchObject({ code: 'workers.invalid_data' });
    expect(await w.square.run({ n: 2 })).toMatchObject({ value: 4 });
    expect(await w.unclonable.run({}).catch(() => 'again')).toBe('again');
  });

  it('a thread that exits mid-task is replaced; only its caller rejects (workers.crashed)', async () => {
    const app = await boot({ size: 2 });
    const crash = getApp('main').workers.crash;
    const results = await Promise.all([
      settle(crash.run({ exit: true, ms: 50 })),
      settle(crash.run({ ms: 100 })),
      settle(crash.run({ ms: 100 })),
      settle(crash.run({ ms: 100 })),
    ]);
    expect(results[0]?.error).toMatchObject({ code: 'workers.crashed' });
    for (const r of results.slice(1)) expect(r).toMatchObject({ value: { pid: process.pid } });
    expect(await crash.run({})).toMatchObject({ pid: process.pid });
    expect(crash.stats()).toMatchObject({ crashed: 1, completed: 4, pending: 0 });
    expect(app.findLogs('workers: a worker crashed during a task; replaced')).toHaveLength(1);
  });

  it('refuses a task past size + queue with workers.queue_full (503), then accepts again', async () => {
    await boot({ overrides: { spin: { size: 1, queue: 2 } } });
    const spin = getApp('main').workers.spin;
    const accepted = [spin.run({ ms: 300 }), spin.run({ ms: 1 }), spin.run({ ms: 1 })];
    const refused = await settle(spin.run({ ms: 1 }));
    expect(refused.error).toMatchObject({ code: 'workers.queue_full', status: 503, details: { worker: 'spin', size: 1, queue: 2 } });
    await Promise.all(accepted);
    expect(typeof (await spin.run({ ms: 1 }))).toBe('number');
  });

  it('process mode runs in a child process; a crash there is replaced; a timeout kills the process', async () => {
    await boot();
    const native = getApp('main').workers.native;
    expect(native.mode).toBe('process');
    const a = await native.run({});
    expect(a.pid).not.toBe(process.pid);
    expect(a).toMatchObject({ ppid: process.pid, isMainThread: true });
    const [crashed, queued] = await Promise.all([settle(native.run({ exit: true })), settle(native.run({}))]);
    expect(crashed.error).toMatchObject({ code: 'workers.crashed' });
    const b = queued.value;
    expect(b?.pid).not.toBe(a.pid);
    const timedOut = await settle(native.run({ ms: 5000 }, { timeoutMs: 300 }));
    expect(timedOut.error).toMatchObject({ code: 'workers.timeout' });
    const c = await native.run({});
    expect(c.pid).not.toBe(b?.pid);
  });

  it('config overrides win over the file: a thread worker forced into process mode and back', async () => {
    await boot({ mode: 'process', overrides: { native: { mode: 'thread' } } });
    const w = getApp('main').workers;
    expect(w.native.mode).toBe('thread');
    expect(await w.native.run({})).toMatchObject({ isMainThread: false });
    expect(w.square.mode).toBe('process');
    expect(await w.square.run({ n: 5 })).toMatchObject({ value: 25, isMainThread: true });
    // Structured clone in both modes: Map, Uint8Array and Date survive the trip to a child process.
    const data = { map: new Map([['a', 1]]), bytes: new Uint8Array([1, 2, 3]), at: new Date(0) };
    expect(await w.echo.run(data)).toEqual(data);
  });

  it('shutdown waits for accepted tasks, then closes the pools; later calls get workers.closed', async () => {
    const app = await boot({ eager: true });
    const w = getApp('main').workers;
    expect(w.spin.stats().started).toBe(true);
    const running = w.spin.run({ ms: 200 });
    await app.stop();
    expect(typeof (await running)).toBe('number');
    expect(w.spin.stats().started).toBe(false);
    expect(w.native.stats().started).toBe(false);
    await expect(w.spin.run({ ms: 1 })).rejects.toMatchObject({ code: 'workers.closed' });
  });

  it('a task still running after drainMs rejects with workers.closed and its thread is ended', async () => {
    const app = await boot({ drainMs: 100 });
    const w = getApp('main').workers;
    const running = settle(w.spin.run({ ms: 5000 }));
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    await app.stop();
    expect(Date.now() - started).toBeLessThan(3000);
    expect((await running).error).toMatchObject({ code: 'workers.closed' });
  });

  it('fails boot on a bad worker file, an unknown override and a bad option', async () => {
    const dir = writeProject({ 'apps/main/workers/bad.ts': 'export default 42;\n' });
    const bad = buildPlugins({ plugins: [workers], dir, apps: { main: {} } });
    await expect(bad.kernel.start()).rejects.toMatchObject({ code: 'workers.invalid' });

    const dir2 = writeProject({ 'apps/main/workers/ok.ts': 'export default () => 1;\n' });
    const unknown = buildPlugins({ plugins: [workers], dir: dir2, apps: { main: { workers: { overrides: { okk: { size: 1 } } } } } });
    await expect(unknown.kernel.start()).rejects.toMatchObject({ code: 'workers.unknown_worker' });

    const schema = buildPlugins({ plugins: [workers], dir: dir2, apps: { main: { workers: { mode: 'fiber' as 'thread' } } } });
    await expect(schema.kernel.start()).rejects.toMatchObject({ code: 'config.invalid' });

    const dir3 = writeProject({ 'apps/main/workers/syntax.ts': 'export default (;\n' });
    const syntax = buildPlugins({ plugins: [workers], dir: dir3, apps: { main: {} } });
    await expect(syntax.kernel.start()).rejects.toMatchObject({ code: 'workers.syntax' });
  });

  it('an app with no workers directory boots with an empty registry', async () => {
    const app = await bootPlugins({ plugins: [workers], apps: { empty: {} } });
    expect(Object.keys(getApp('empty').workers)).toEqual([]);
    expect(app.kernel.use('workers')).toBeDefined();
  });
});
