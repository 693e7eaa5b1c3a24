/**
 * The child processes of `npm run bench:jobs` (scripts/bench-jobs.ts forks them; IPC only).
 *
 *   node scripts/bench-jobs-worker.ts mega-consumer <projectDir>   Mega kernel, JetStream driver, consuming
 *   node scripts/bench-jobs-worker.ts mega-producer <projectDir>   Mega kernel (serve: false: never consumes), ctx.jobs.enqueue
 *   node scripts/bench-jobs-worker.ts bull-consumer <redisUrl> <q> BullMQ Workers (concurrency 1 and 50)
 *   node scripts/bench-jobs-worker.ts bull-producer <redisUrl> <q> BullMQ Queue.add
 *   node scripts/bench-jobs-worker.ts mega-memory <projectDir>     Mega kernel, memory driver: enqueues and consumes here
 *
 * Both systems run the very same job body and payload; the consumer records enqueue→start latency
 * from the payload's timestamp and counts completions (Mega `done` event, BullMQ `completed`).
 */

type Msg = Record<string, unknown>;
interface Payload {
  r: number;
  i: number;
  t: number;
  ms: number;
  user: string;
  to: string;
  kind: string;
}
/** What the parent asks for: `c` is the concurrency (1 or 50), `ms` the job's sleep (0 = no-op). */
interface Work {
  run: number;
  c: number;
  n: number;
  ms: number;
  window: number;
  intervalMs: number;
}

const [role, arg, queuePrefix] = process.argv.slice(2);
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const send = (m: Msg) => process.send?.(m);

// ------------------------------------------------------------------ the job (same for both systems)

/** One measured run as the consumer sees it. */
class Tally {
  readonly run: number;
  readonly n: number;
  readonly lat: Float64Array;
  readonly seen: Uint8Array;
  starts = 0;
  done = 0;
  dup = 0;
  finished: () => void = () => {};
  constructor(run: number, n: number) {
    this.run = run;
    this.n = n;
    this.lat = new Float64Array(n);
    this.seen = new Uint8Array(n);
  }
  report(): Msg {
    // A typed array sorts numerically without a comparator: this runs inside the measured window.
    const sorted = this.lat.slice().sort();
    const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN;
    return { cmd: 'finished', run: this.run, starts: this.starts, done: this.done, dup: this.dup, stray, p50: pct(50), p99: pct(99) };
  }
}
let tally: Tally | undefined;
let stray = 0;

function onStart(p: Payload): void {
  const t = tally;
  if (!t || p.r !== t.run) {
    stray++;
    return;
  }
  if (t.seen[p.i]) t.dup++;
  else t.lat[p.i] = now() - p.t;
  t.seen[p.i] = 1;
  t.starts++;
}

function onDone(): void {
  const t = tally;
  if (!t) {
    stray++;
    return;
  }
  if (++t.done === t.n) {
    tally = undefined;
    t.finished();
  }
}

/** The job: note its start, then nothing (no-op) or a timer of `ms`. */
async function body(p: Payload): Promise<void> {
  onStart(p);
  if (p.ms) await sleep(p.ms);
}
(globalThis as { __benchJob?: typeof body }).__benchJob = body;

function arm(m: Work): Promise<void> {
  const t = new Tally(m.run, m.n);
  tally = t;
  return new Promise<void>((resolve) => {
    t.finished = () => {
      send(t.report());
      resolve();
    };
  });
}

// ------------------------------------------------------------------ the producer loop (same for both)

const payload = (m: Work, i: number): Payload => ({
  r: m.run,
  i,
  t: now(),
  ms: m.ms,
  user: `user-${i % 1000}`,
  to: 'someone@example.com',
  kind: 'welcome',
});

/** Burst: `window` enqueues in flight until n are stored. Paced (intervalMs > 0): one every intervalMs. */
async function produce(m: Work, enqueue: (p: Payload) => Promise<unknown>): Promise<void> {
  if (m.intervalMs > 0) {
    const t0 = performance.now();
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < m.n; i++) {
      const wait = t0 + i * m.intervalMs - performance.now();
      if (wait >= 1) await sleep(wait);
      pending.push(enqueue(payload(m, i)));
    }
    await Promise.all(pending);
    return;
  }
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(m.window, m.n) }, async () => {
      while (next < m.n) await enqueue(payload(m, next++));
    }),
  );
}

// ------------------------------------------------------------------ roles

interface MegaJobs {
  enqueue(job: string, payload?: unknown): Promise<string>;
  on(event: 'done', fn: (d: { job: string }) => void): () => void;
  stats(): Promise<{ jobs: Record<string, { pending: number; running: number }>; dlq: number }>;
}
interface MegaKernel {
  start(): Promise<void>;
  stop(): Promise<void>;
  apps: Array<{ jobs: MegaJobs }>;
}

async function megaKernel(dir: string, serve: boolean): Promise<MegaKernel> {
  const { loadKernel, createLogger } = (await import('@mega/kernel')) as unknown as {
    loadKernel(o: object): Promise<MegaKernel>;
    createLogger(o: object): unknown;
  };
  const kernel = await loadKernel({ dir, env: 'production', serve, logger: createLogger({ level: 'warn' }) });
  await kernel.start();
  return kernel;
}

const jobName = (c: number) => `Bench${c}`;

/** Waits until the job's queue is empty and nothing runs (acks reached the broker), or says what is left. */
async function megaDrained(jobs: MegaJobs, c: number): Promise<string | undefined> {
  let left = '';
  for (let i = 0; i < 100; i++) {
    const s = await jobs.stats();
    const q = s.jobs[jobName(c)] ?? { pending: -1, running: -1 };
    if (q.pending === 0 && q.running === 0 && s.dlq === 0) return undefined;
    left = `pending ${q.pending}, running ${q.running}, dlq ${s.dlq}`;
    await sleep(50);
  }
  return left;
}

async function main(): Promise<void> {
  let stop: () => Promise<void> = async () => {};
  const handlers: Record<string, (m: Msg) => Promise<Msg | undefined>> = {};

  if (role === 'mega-consumer' || role === 'mega-producer' || role === 'mega-memory') {
    const kernel = await megaKernel(arg as string, role !== 'mega-producer');
    const jobs = (kernel.apps[0] as { jobs: MegaJobs }).jobs;
    stop = () => kernel.stop();
    if (role !== 'mega-producer') jobs.on('done', onDone);
    handlers.expect = async (m) => {
      void arm(m as unknown as Work);
      return { cmd: 'armed' };
    };
    handlers.produce = async (m) => {
      const w = m as unknown as Work;
      const started = now();
      await produce(w, (p) => jobs.enqueue(jobName(w.c), p));
      return { cmd: 'produced', ms: now() - started };
    };
    // memory: the one process does both sides (the queue lives in it).
    handlers.run = async (m) => {
      const w = m as unknown as Work;
      const finished = arm(w);
      await produce(w, (p) => jobs.enqueue(jobName(w.c), p));
      await finished;
      return undefined;
    };
    handlers.check = async (m) => ({ cmd: 'checked', left: await megaDrained(jobs, m.c as number) });
  } else if (role === 'bull-consumer' || role === 'bull-producer') {
    const { Queue, Worker } = await import('bullmq');
    const url = new URL(arg as string);
    const connection = { host: url.hostname, port: Number(url.port), maxRetriesPerRequest: null };
    const names = { 1: `${queuePrefix}-c1`, 50: `${queuePrefix}-c50` } as Record<number, string>;
    if (role === 'bull-consumer') {
      const workers = [1, 50].map(
        (c) =>
          new Worker<Payload>(names[c] as string, (job) => body(job.data), {
            connection,
            concurrency: c,
          }),
      );
      for (const w of workers) w.on('completed', onDone);
      await Promise.all(workers.map((w) => w.waitUntilReady()));
      stop = async () => {
        await Promise.all(workers.map((w) => w.close()));
      };
      handlers.expect = async (m) => {
        void arm(m as unknown as Work);
        return { cmd: 'armed' };
      };
    } else {
      const queues = Object.fromEntries([1, 50].map((c) => [c, new Queue<Payload>(names[c] as string, { connection })]));
      await Promise.all(Object.values(queues).map((q) => q.waitUntilReady()));
      // Mirrors Mega's defaults: 3 retries with exponential backoff from 1 s, and a job that
      // succeeded leaves the store (JetStream work queue: an acked message is deleted).
      const opts = { attempts: 4, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: true };
      stop = async () => {
        for (const q of Object.values(queues)) await q.obliterate({ force: true }).catch(() => undefined);
        await Promise.all(Object.values(queues).map((q) => q.close()));
      };
      handlers.produce = async (m) => {
        const w = m as unknown as Work;
        const q = queues[w.c] as InstanceType<typeof Queue>;
        const started = now();
        await produce(w, (p) => q.add('bench', p, opts));
        return { cmd: 'produced', ms: now() - started };
      };
      handlers.check = async (m) => {
        const q = queues[m.c as number] as InstanceType<typeof Queue>;
        let left: string | undefined = '';
        for (let i = 0; i < 100 && left !== undefined; i++) {
          const c = await q.getJobCounts('wait', 'active', 'delayed', 'failed', 'completed');
          left = Object.values(c).some((v) => v > 0) ? JSON.stringify(c) : undefined;
          if (left !== undefined) await sleep(50);
        }
        return { cmd: 'checked', left };
      };
    }
  } else throw new Error(`unknown role ${role}`);

  process.on('message', (m: Msg) => {
    if (m.cmd === 'stop') {
      stop().then(
        () => process.exit(0),
        (error: unknown) => {
          console.error(error);
          process.exit(1);
        },
      );
      return;
    }
    const h = handlers[m.cmd as string];
    if (!h) {
      send({ cmd: 'error', error: `${role}: no handler for ${String(m.cmd)}` });
      return;
    }
    h(m).then(
      (reply) => reply && send(reply),
      (error: unknown) => send({ cmd: 'error', error: `${role}: ${(error as Error)?.stack ?? String(error)}` }),
    );
  });
  // The parent died without asking (Ctrl-C): do not outlive it.
  process.on('disconnect', () => process.exit(0));
  send({ cmd: 'ready', pid: process.pid });
}

main().catch((error: unknown) => {
  console.error(`${role}:`, error);
  process.exit(1);
});
