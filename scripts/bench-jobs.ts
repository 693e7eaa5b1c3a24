/**
 * `npm run bench:jobs` — @mega/jobs against BullMQ, measured side by side in one run (issue 12 §5).
 *
 * Systems (every client process forked from scripts/bench-jobs-worker.ts; this one only orchestrates):
 *   mega@<v>    Mega, JetStream driver: a consumer process (kernel consuming) + a producer process
 *               (kernel with serve: false, `jobs.enqueue`) + nats-server <v> (file storage); one such
 *               system per binary given with --nats, so NATS releases compare side by side
 *   bullmq      BullMQ (npm latest): a consumer process (Worker) + a producer process (Queue.add) +
 *               redis-server with no persistence (`--save '' --appendonly no`, as scripts/services.sh)
 *   bullmq+aof  the same on a redis-server with AOF (`--appendonly yes --appendfsync everysec`), the
 *               persistence BullMQ's docs recommend for production
 *   mega/mem    Mega, memory driver: in-process by nature, so ONE process enqueues and consumes (no
 *               broker); its whole CPU is counted as the consumer's
 *
 * Like for like is mega vs bullmq+aof. JetStream acknowledges an enqueue once the job is in its file
 * store (write(2), fsync every 2 min by default: `sync_interval`); Redis with AOF everysec answers
 * once the command is in the AOF buffer written before the reply (fsync every second). Neither fsyncs
 * per job, both survive a broker crash or restart; Redis without persistence loses every queued job
 * when it restarts, so `bullmq` is the lower bound of what a queue can cost, not a peer.
 *
 * Brokers: by default this script starts its own (free loopback ports, data under /tmp, killed and
 * removed at the end): the same binaries and flags as scripts/services.sh, but no other client's
 * traffic lands in their CPU. `--shared` uses the NATS and Redis of scripts/services.sh for `mega@`
 * (first binary) and `bullmq` instead (the AOF Redis and other NATS binaries stay private).
 * Workloads: a no-op job and a 1 ms job (await a 1 ms timer), at concurrency 1 and 50; the same
 * payload and job body for all; the producer keeps `--window` enqueues in flight while the consumer
 * runs (end-to-end: first enqueue → last completion).
 *
 * Primary figure: CPU time per job from /proc (utime + stime of every thread, plus reaped children
 * such as Redis's AOF rewrite) of EVERY process the job touches — producer + consumer + broker. The
 * broker is in the total on both sides, so a system cannot look cheap by pushing its work into the
 * server it runs on. jobs/s is printed beside it (on a shared 2-core machine it swings by tens of
 * percent; CPU per job does much less).
 * Rounds are interleaved (every round runs every workload on every system, order rotating), the
 * table shows medians and the spread (± half the min–max range, % of the median), ratios are the
 * median of per-round paired ratios. Enqueue→start latency p50/p99 comes from separate paced runs
 * (one job every 1000/--rate ms), so it is latency, not the backlog of a burst.
 *
 *   node scripts/bench-jobs.ts [--jobs 20000] [--rounds 3] [--paced 400] [--rate 400] [--window 64]
 *     [--nats nats-server[,/path/to/other/nats-server]] [--shared] [--systems mega,bullmq+aof]
 *     [--workloads 'noop c=1,1ms c=50'] [--cpu-prof <dir>] [--baseline <dir>] [--json]
 *   --baseline <dir>: adds `base@<v>`, Mega on the first NATS with another build of @mega/jobs (a
 *   package dir with package.json and dist/, e.g. the last commit's), for an A/B of a change in one run.
 *   (--jobs: jobs per run at concurrency 50; the concurrency-1 runs take 1/4 (no-op) and 1/16 (1 ms)
 *   of it. --systems filters by name prefix. --cpu-prof writes V8 profiles of the Mega producers and
 *   consumers into <dir>/<system>-<role>/ when they exit.)
 */
import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { serviceEnv } from './test/service-env.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const WORKER = join(REPO, 'scripts/bench-jobs-worker.ts');
const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '3' },
    paced: { type: 'string', default: '400' },
    rate: { type: 'string', default: '400' },
    window: { type: 'string', default: '64' },
    nats: { type: 'string', default: 'nats-server' },
    shared: { type: 'boolean' },
    systems: { type: 'string' },
    workloads: { type: 'string' },
    'cpu-prof': { type: 'string' },
    baseline: { type: 'string' },
    json: { type: 'boolean' },
  },
});
const JOBS = Number(values.jobs);
const ROUNDS = Number(values.rounds);
const PACED = Number(values.paced);
const RATE = Number(values.rate);
const WINDOW = Number(values.window);
const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
const GOAL = 1.5;

interface Workload {
  key: string;
  c: number;
  ms: number;
  n: number;
}
// Sized so each run takes 1-4 s on the 2-core dev box.
const ALL_WORKLOADS: Workload[] = [
  { key: 'noop c=1', c: 1, ms: 0, n: Math.round(JOBS / 4) },
  { key: 'noop c=50', c: 50, ms: 0, n: JOBS },
  { key: '1ms c=1', c: 1, ms: 1, n: Math.round(JOBS / 16) },
  { key: '1ms c=50', c: 50, ms: 1, n: JOBS },
];
const WORKLOADS = values.workloads
  ? ALL_WORKLOADS.filter((w) => (values.workloads as string).split(',').some((k) => k.trim() === w.key))
  : ALL_WORKLOADS;
if (WORKLOADS.length === 0) throw new Error(`--workloads: none of ${ALL_WORKLOADS.map((w) => w.key).join(', ')}`);

// ------------------------------------------------------------------ CPU accounting

/** A reading of a whole process's CPU time: every thread, from /proc. */
interface CpuReading {
  /** utime + stime of the process (includes threads that exited), in µs, at clock-tick resolution. */
  stat: number;
  /** stime alone (kernel time: system calls, the loopback network stack, wake-ups), in µs. */
  kernel: number;
  /** cutime + cstime: children the process reaped (Redis's AOF rewrite / RDB fork), in µs. */
  children: number;
  /** Σ of every live thread's on-CPU time (/proc/<pid>/task/<tid>/schedstat, ns resolution), in µs. */
  fine: number;
  tids: Set<string>;
  /** read + write system calls so far (/proc/<pid>/io syscr + syscw): each message a process sends or wakes up for costs some. */
  syscalls: number;
}

function readCpu(pid: number): CpuReading {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const reading: CpuReading = {
    stat: ((Number(f[11]) + Number(f[12])) * 1e6) / TICK,
    kernel: (Number(f[12]) * 1e6) / TICK,
    children: ((Number(f[13]) + Number(f[14])) * 1e6) / TICK,
    fine: 0,
    tids: new Set(),
    syscalls: Number.NaN,
  };
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    reading.syscalls = Number(/syscr: (\d+)/.exec(io)?.[1]) + Number(/syscw: (\d+)/.exec(io)?.[1]);
  } catch {
    // no /proc/<pid>/io (kernel without task I/O accounting): the column stays empty
  }
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        reading.fine += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1000;
        reading.tids.add(tid);
      } catch {
        // the thread ended between readdir and read: the delta falls back to stat (below)
      }
    }
  } catch {
    reading.fine = Number.NaN; // no schedstat on this kernel
  }
  return reading;
}

/**
 * CPU µs between two readings. The per-thread sum is used (a 10 ms tick is 5 µs per job on a
 * 2,000-job run) unless a thread ended in between (its time would be lost): then utime + stime.
 */
function cpuDelta(a: CpuReading, b: CpuReading): number {
  const lost = Number.isNaN(a.fine) || Number.isNaN(b.fine) || [...a.tids].some((t) => !b.tids.has(t));
  return (lost ? b.stat - a.stat : b.fine - a.fine) + (b.children - a.children);
}

// ------------------------------------------------------------------ brokers

interface Broker {
  kind: 'nats' | 'redis';
  label: string;
  version: string;
  url: string;
  pid: number;
  /** Started by this script: killed and its data removed at the end. */
  proc?: ChildProcess;
  dir?: string;
}

function versionOf(bin: string): string {
  try {
    const out = execFileSync(bin, ['--version'], { encoding: 'utf8' });
    return /v?=?(\d+\.\d+\.\d+)/.exec(out)?.[1] ?? out.trim();
  } catch {
    return '?';
  }
}

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => ok(port));
    });
  });
}

/** True once the server on `port` answers its protocol's hello (Redis PONG, NATS INFO). */
function answers(port: number, kind: 'nats' | 'redis'): Promise<boolean> {
  return new Promise((ok) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    const timer = setTimeout(() => sock.destroy(), 1000);
    let buf = '';
    sock.on('connect', () => {
      if (kind === 'redis') sock.write('PING\r\n');
    });
    sock.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) {
        clearTimeout(timer);
        sock.destroy();
        ok(kind === 'redis' ? buf.startsWith('+PONG') : buf.startsWith('INFO'));
      }
    });
    sock.on('error', () => ok(false));
    sock.on('close', () => ok(false));
  });
}

/** Starts a private broker: own port, own data dir, its log in that dir. */
async function startBroker(kind: 'nats' | 'redis', bin: string, label: string, extra: string[]): Promise<Broker> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), `mega-bench-jobs-${kind}-`));
  const log = openSync(join(dir, `${kind}.log`), 'a');
  const args =
    kind === 'nats'
      ? ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir, ...extra]
      : ['--bind', '127.0.0.1', '--port', String(port), '--dir', dir, '--daemonize', 'no', ...extra];
  const proc = spawn(bin, args, { stdio: ['ignore', log, log] });
  closeSync(log);
  const broker: Broker = {
    kind,
    label,
    version: versionOf(bin),
    url: `${kind}://127.0.0.1:${port}`,
    pid: proc.pid as number,
    proc,
    dir,
  };
  owned.push(broker);
  for (let i = 0; i < 200; i++) {
    if (proc.exitCode !== null) break;
    if (await answers(port, kind)) {
      if (kind === 'nats') await jetStreamReady(broker.url);
      return broker;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const tail = readFileSync(join(dir, `${kind}.log`), 'utf8').slice(-2000);
  throw new Error(`${label} (${bin} ${args.join(' ')}) did not start:\n${tail}`);
}

async function jetStreamReady(url: string): Promise<void> {
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connect({ servers: url });
  try {
    for (let i = 0; ; i++) {
      try {
        await (await jetstreamManager(nc)).getAccountInfo();
        return;
      } catch (error) {
        if (i > 100) throw error;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    await nc.close();
  }
}

const owned: Broker[] = [];
async function stopBrokers(): Promise<void> {
  for (const b of owned.splice(0)) {
    const p = b.proc as ChildProcess;
    if (p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    if (b.dir) rmSync(b.dir, { recursive: true, force: true });
  }
}

/** A broker of scripts/services.sh, pid from its pid file (checked against its command line). */
function sharedBroker(kind: 'nats' | 'redis', url: string, label: string): Broker {
  const name = `${kind}-server`;
  const path = join(process.env.MEGA_SERVICES_DIR ?? '/tmp/mega-services', 'run', `${kind}.pid`);
  let pid: number;
  try {
    pid = Number(readFileSync(path, 'utf8').trim());
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(name)) throw new Error(`pid ${pid} is not ${name}`);
  } catch (error) {
    throw new Error(
      `cannot read the ${name} pid from ${path} (${(error as Error).message}): run \`bash scripts/services.sh up nats redis\``,
    );
  }
  let version = '?';
  try {
    version = versionOf(execFileSync('readlink', [`/proc/${pid}/exe`], { encoding: 'utf8' }).trim());
  } catch {
    // version stays unknown
  }
  return { kind, label, version, url, pid };
}

// ------------------------------------------------------------------ child processes

interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  request(m: Record<string, unknown>, reply: string): Promise<Record<string, unknown>>;
  next(reply: string): Promise<Record<string, unknown>>;
}

function start(name: string, args: string[], execArgv: string[] = []): Promise<Child> {
  return new Promise((resolveChild, reject) => {
    const proc = fork(WORKER, args, {
      env: { ...process.env, NODE_ENV: 'production' },
      execArgv: [...process.execArgv, ...execArgv],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const waiting = new Map<string, Array<(m: Record<string, unknown>) => void>>();
    const failures: Array<(e: Error) => void> = [];
    const next = (reply: string) =>
      new Promise<Record<string, unknown>>((ok, fail) => {
        waiting.set(reply, [...(waiting.get(reply) ?? []), ok]);
        failures.push(fail);
      });
    const child: Child = {
      name,
      proc,
      pid: proc.pid as number,
      next,
      request: (m, reply) => {
        const p = next(reply);
        proc.send(m);
        return p;
      },
    };
    proc.on('message', (m: Record<string, unknown>) => {
      if (m.cmd === 'ready') return resolveChild(child);
      if (m.cmd === 'error') {
        const e = new Error(String(m.error));
        for (const f of failures.splice(0)) f(e);
        return;
      }
      const list = waiting.get(m.cmd as string);
      const ok = list?.shift();
      if (ok) ok(m);
    });
    proc.on('exit', (code) => {
      const e = new Error(`${name} exited with ${code}`);
      reject(e);
      for (const f of failures.splice(0)) f(e);
    });
  });
}

async function stopChild(c: Child): Promise<void> {
  if (c.proc.exitCode !== null) return;
  const exited = new Promise((r) => c.proc.once('exit', r));
  c.proc.send({ cmd: 'stop' });
  const timer = setTimeout(() => c.proc.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

function megaProject(driver: 'jetstream' | 'memory', natsUrl: string, prefix: string, jobsPackage?: string): string {
  const dir = mkdtempSync(join(tmpdir(), `mega-bench-jobs-${driver}-`));
  const config =
    driver === 'jetstream'
      ? `{ plugins: ['@mega/bus', '@mega/jobs'], services: { buses: { default: { driver: 'nats', url: ${JSON.stringify(natsUrl)} } } }, jobs: { driver: 'jetstream', streamPrefix: '${prefix}' }, logger: { level: 'warn' } }`
      : `{ plugins: ['@mega/jobs'], jobs: { driver: 'memory' }, logger: { level: 'warn' } }`;
  const files: Record<string, string> = {
    'package.json': '{ "name": "mega-bench-jobs", "private": true, "type": "module" }\n',
    'mega.config.ts': `export default ${config};\n`,
    'apps/bench/app.config.ts': 'export default {};\n',
    // The body lives in bench-jobs-worker.ts, shared with the BullMQ processor; defaults otherwise
    // (3 retries, backoff, 30 min run timeout, lease keep-alive): what an app gets.
    'apps/bench/jobs/bench.ts': `import { MegaJob } from '@mega/jobs';
export class Bench1 extends MegaJob { static concurrency = 1; run(p) { return globalThis.__benchJob(p); } }
export class Bench50 extends MegaJob { static concurrency = 50; run(p) { return globalThis.__benchJob(p); } }
`,
  };
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  if (!jobsPackage) symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  else {
    // The repository's node_modules, except @mega/jobs: another build of it (--baseline).
    const nm = join(dir, 'node_modules');
    mkdirSync(join(nm, '@mega'), { recursive: true });
    for (const e of readdirSync(join(REPO, 'node_modules'))) if (e !== '@mega') symlinkSync(join(REPO, 'node_modules', e), join(nm, e));
    for (const e of readdirSync(join(REPO, 'node_modules/@mega'))) {
      symlinkSync(e === 'jobs' ? resolve(jobsPackage) : join(REPO, 'node_modules/@mega', e), join(nm, '@mega', e));
    }
  }
  return dir;
}

// ------------------------------------------------------------------ one run

interface Sample {
  system: string;
  workload: string;
  round: number;
  paced: boolean;
  seconds: number;
  jobsPerSec: number;
  prod: number; // CPU µs per job
  cons: number;
  broker: number;
  total: number;
  p50: number; // ms
  p99: number;
  /** read + write system calls per job: producer, consumer, broker. */
  sys: [number, number, number];
  /** share of kernel time (stime / (utime + stime)) of producer, consumer, broker, in %. */
  kernelPct: [number, number, number];
}

interface Rig {
  name: string;
  kind: 'mega' | 'bullmq' | 'mem';
  consumer: Child; // mega/mem: the one process
  producer?: Child;
  broker?: Broker;
  /** The Mega project directory. */
  dir?: string;
}

let runSeq = 0;

async function runOnce(rig: Rig, w: Workload, paced: boolean, round: number): Promise<Sample> {
  const system = rig.name;
  const work = {
    run: ++runSeq,
    c: w.c,
    ms: w.ms,
    n: paced ? PACED : w.n,
    window: WINDOW,
    intervalMs: paced ? 1000 / RATE : 0,
  };
  const pids = { cons: rig.consumer.pid, prod: rig.producer?.pid, broker: rig.broker?.pid };
  const none: CpuReading = { stat: 0, kernel: 0, children: 0, fine: 0, tids: new Set(), syscalls: 0 };
  const read = () => {
    try {
      return {
        cons: readCpu(pids.cons),
        prod: pids.prod ? readCpu(pids.prod) : none,
        broker: pids.broker ? readCpu(pids.broker) : none,
      };
    } catch (error) {
      throw new Error(
        `${system} ${w.key}: a process of this run is gone (${(error as Error).message}); a shared broker restarted by someone else's tests (services.sh restart) cannot be measured: run the benchmark again`,
      );
    }
  };
  let finished: Record<string, unknown>;
  let before: ReturnType<typeof read>;
  let t0: number;
  if (rig.producer) {
    await rig.consumer.request({ cmd: 'expect', ...work }, 'armed');
    before = read();
    t0 = performance.now();
    const done = rig.consumer.next('finished');
    await rig.producer.request({ cmd: 'produce', ...work }, 'produced');
    finished = await done;
  } else {
    before = read();
    t0 = performance.now();
    finished = await rig.consumer.request({ cmd: 'run', ...work }, 'finished');
  }
  const seconds = (performance.now() - t0) / 1000;
  const after = read();
  if (finished.done !== work.n || finished.starts !== work.n || finished.dup || finished.stray) {
    throw new Error(`${system} ${w.key}: ${JSON.stringify(finished)} for ${work.n} jobs (lost, duplicated or stray jobs)`);
  }
  const checker = rig.producer ?? rig.consumer;
  const left = (await checker.request({ cmd: 'check', c: w.c }, 'checked')).left;
  if (left !== undefined) throw new Error(`${system} ${w.key}: the queue did not drain after the run: ${String(left)}`);
  const per = (k: 'cons' | 'prod' | 'broker') => cpuDelta(before[k], after[k]) / work.n;
  return {
    system,
    workload: w.key,
    round,
    paced,
    seconds,
    jobsPerSec: work.n / seconds,
    prod: per('prod'),
    cons: per('cons'),
    broker: per('broker'),
    total: per('prod') + per('cons') + per('broker'),
    p50: finished.p50 as number,
    p99: finished.p99 as number,
    kernelPct: (['prod', 'cons', 'broker'] as const).map((k) => {
      const all = after[k].stat - before[k].stat;
      return all > 0 ? ((after[k].kernel - before[k].kernel) / all) * 100 : Number.NaN;
    }) as [number, number, number],
    sys: [
      (after.prod.syscalls - before.prod.syscalls) / work.n,
      (after.cons.syscalls - before.cons.syscalls) / work.n,
      (after.broker.syscalls - before.broker.syscalls) / work.n,
    ],
  };
}

// ------------------------------------------------------------------ statistics and report

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};
/** ± half the min–max range, as % of the median. */
const spread = (xs: number[]): number => ((Math.max(...xs) - Math.min(...xs)) / 2 / median(xs)) * 100;
const withSpread = (xs: number[], digits = 0) => `${median(xs).toFixed(digits)} ±${spread(xs).toFixed(0)}%`;

async function main(): Promise<void> {
  const env = serviceEnv();
  const bullVersion = JSON.parse(readFileSync(join(REPO, 'node_modules/bullmq/package.json'), 'utf8')).version as string;
  const tag = `BENCH_JOBS_${process.pid}`;
  const want = (name: string) => !values.systems || values.systems.split(',').some((p) => name.startsWith(p.trim()));
  const dirs: string[] = [];
  const children: Child[] = [];
  const fork1 = async (name: string, args: string[], prof = false) => {
    const dir = values['cpu-prof'] && prof ? join(resolve(values['cpu-prof']), name.replace(/[^\w.@+-]+/g, '-')) : undefined;
    if (dir) mkdirSync(dir, { recursive: true });
    // BENCH_JOBS_NODE_ARGS: extra node flags for the Mega processes (e.g. --perf-basic-prof for `perf record`).
    const extra = prof ? (process.env.BENCH_JOBS_NODE_ARGS ?? '').split(' ').filter(Boolean) : [];
    const c = await start(name, args, [...(dir ? ['--cpu-prof', '--cpu-prof-dir', dir] : []), ...extra]);
    if (extra.length) console.log(`${name}: pid ${c.pid}`);
    children.push(c);
    return c;
  };
  const rigs: Rig[] = [];
  const stopAll = () => {
    for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
    for (const b of owned) b.proc?.kill('SIGKILL');
  };
  process.once('SIGINT', () => {
    stopAll();
    process.exit(130);
  });
  const samples: Sample[] = [];
  try {
    // Brokers.
    const natsBins = (values.nats as string).split(',').map((b) => b.trim());
    const natsBrokers: Broker[] = [];
    for (const [i, bin] of natsBins.entries()) {
      const v = versionOf(bin);
      if (!want(`mega@${v}`)) continue;
      natsBrokers.push(
        values.shared && i === 0 ? sharedBroker('nats', env.NATS_URL, `nats ${v}`) : await startBroker('nats', bin, `nats ${v}`, []),
      );
    }
    const redis = want('bullmq')
      ? values.shared
        ? sharedBroker('redis', env.REDIS_URL, `redis ${versionOf('redis-server')}`)
        : await startBroker('redis', 'redis-server', `redis ${versionOf('redis-server')}`, ['--save', '', '--appendonly', 'no'])
      : undefined;
    const redisAof = want('bullmq+aof')
      ? await startBroker('redis', 'redis-server', `redis ${versionOf('redis-server')} AOF everysec`, [
          '--save',
          '',
          '--appendonly',
          'yes',
          '--appendfsync',
          'everysec',
        ])
      : undefined;

    // Consumers first: the producers' kernel then finds the streams and consumers in place.
    const megaRigs = natsBrokers.map((b) => ({ name: `mega@${b.version}`, broker: b, jobs: undefined as string | undefined }));
    if (values.baseline && natsBrokers[0])
      megaRigs.push({ name: `base@${natsBrokers[0].version}`, broker: natsBrokers[0], jobs: values.baseline });
    for (const { name, broker, jobs } of megaRigs) {
      const dir = megaProject('jetstream', broker.url, jobs ? `${tag}B` : tag, jobs);
      dirs.push(dir);
      const consumer = await fork1(`${name} consumer`, ['mega-consumer', dir], true);
      rigs.push({ name, kind: 'mega', consumer, broker, dir });
    }
    for (const [name, b] of [
      ['bullmq', redis],
      ['bullmq+aof', redisAof],
    ] as const) {
      if (b) rigs.push({ name, kind: 'bullmq', consumer: await fork1(`${name} consumer`, ['bull-consumer', b.url, tag]), broker: b });
    }
    if (want('mega/mem')) {
      const dir = megaProject('memory', '', tag);
      dirs.push(dir);
      rigs.push({ name: 'mega/mem', kind: 'mem', consumer: await fork1('mega/mem', ['mega-memory', dir], true), dir });
    }
    for (const rig of rigs) {
      if (rig.kind === 'mega') rig.producer = await fork1(`${rig.name} producer`, ['mega-producer', rig.dir as string], true);
      if (rig.kind === 'bullmq') rig.producer = await fork1(`${rig.name} producer`, ['bull-producer', (rig.broker as Broker).url, tag]);
    }
    const SYSTEMS = rigs.map((r) => r.name);
    const megas = rigs.filter((r) => r.kind === 'mega' && r.name.startsWith('mega@')).map((r) => r.name);
    const base = rigs.find((r) => r.name.startsWith('base@'))?.name;
    const bulls = rigs.filter((r) => r.kind === 'bullmq').map((r) => r.name);

    const brokers = [...new Set(rigs.flatMap((r) => (r.broker ? [r.broker] : [])))];
    const header = [
      `bench:jobs — node ${process.version}, ${availableParallelism()} cores; BullMQ ${bullVersion}; ${ROUNDS} interleaved rounds, window ${WINDOW}`,
      `brokers: ${brokers.map((b) => `${b.label}${b.proc ? '' : ' (shared, scripts/services.sh)'}`).join('; ')}${owned.length ? ' — private ones started by this run, same flags as scripts/services.sh' : ''}`,
      'like for like: mega (JetStream file store, acks once written, fsync every 2 min) vs bullmq+aof (AOF written before the reply, fsync every second);',
      'bullmq (Redis without persistence, loses queued jobs on a restart) is shown as the floor, not as a peer',
    ].join('\n');
    if (!values.json) console.log(`${header}\n`);

    // Warm-up (JIT, connections, consumers): a quarter of every run, not recorded.
    for (const w of WORKLOADS) for (const r of rigs) await runOnce(r, { ...w, n: Math.max(50, Math.round(w.n / 4)) }, false, 0);

    // Idle broker load (our idle consumers and anyone else's traffic): reported, not subtracted.
    const idle0 = brokers.map((b) => readCpu(b.pid));
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 2000));
    const idleS = (performance.now() - t0) / 1000;
    const idle = brokers.map((b, i) => `${b.label} ${(cpuDelta(idle0[i] as CpuReading, readCpu(b.pid)) / idleS / 1000).toFixed(1)} ms/s`);

    for (let round = 1; round <= ROUNDS; round++) {
      const line: string[] = [];
      for (const [wi, w] of WORKLOADS.entries()) {
        const order = rigs.map((_, i) => rigs[(i + round + wi) % rigs.length] as Rig);
        for (const r of order) {
          const x = await runOnce(r, w, false, round);
          samples.push(x);
          line.push(`${r.name} ${Math.round(x.jobsPerSec)}/s ${Math.round(x.total)}µs`);
        }
      }
      // Paced latency runs (no-op job, both concurrencies).
      for (const w of WORKLOADS.filter((x) => x.ms === 0)) {
        for (const r of round % 2 ? rigs : [...rigs].reverse()) samples.push(await runOnce(r, w, true, round));
      }
      if (!values.json) console.log(`round ${round}: ${line.join(' | ')}`);
    }

    if (values.json) {
      console.log(JSON.stringify({ header, idleBroker: idle, samples }));
      return;
    }
    const pick = (s: string, w: string, paced = false) => samples.filter((x) => x.system === s && x.workload === w && x.paced === paced);
    const col = (xs: Sample[], k: keyof Sample) => xs.map((x) => x[k] as number);
    /** Median of per-round ratios a/b (or b/a with invert: > 1 = a cheaper). */
    const paired = (a: string, b: string, w: string, k: keyof Sample, invert: boolean) => {
      const xa = pick(a, w);
      const xb = pick(b, w);
      return median(xa.map((x, i) => (invert ? (xb[i]?.[k] as number) / (x[k] as number) : (x[k] as number) / (xb[i]?.[k] as number))));
    };
    const wpad = Math.max(10, ...WORKLOADS.map((w) => w.key.length + 2));
    const spad = Math.max(12, ...SYSTEMS.map((s) => s.length + 2));

    console.log('\nCPU µs per job (median of rounds; total = producer + consumer + broker) and end-to-end jobs/s');
    console.log(
      `${'workload'.padEnd(wpad)}${'system'.padEnd(spad)}${'jobs/s'.padStart(13)}${'prod'.padStart(7)}${'cons'.padStart(7)}${'broker'.padStart(8)}${'total µs/job'.padStart(15)}${'p50/p99 ms'.padStart(14)}`,
    );
    for (const w of WORKLOADS) {
      for (const s of SYSTEMS) {
        const xs = pick(s, w.key);
        const inProc = s === 'mega/mem';
        const lat = pick(s, w.key, true);
        console.log(
          `${(s === SYSTEMS[0] ? w.key : '').padEnd(wpad)}${s.padEnd(spad)}${withSpread(col(xs, 'jobsPerSec')).padStart(13)}${(inProc ? '(in)' : median(col(xs, 'prod')).toFixed(1)).padStart(7)}${median(col(xs, 'cons')).toFixed(1).padStart(7)}${(inProc ? '—' : median(col(xs, 'broker')).toFixed(1)).padStart(8)}${withSpread(col(xs, 'total'), 1).padStart(15)}${(lat.length ? `${median(col(lat, 'p50')).toFixed(2)}/${median(col(lat, 'p99')).toFixed(2)}` : '').padStart(14)}`,
        );
      }
    }
    if (WORKLOADS.some((w) => w.ms === 0)) console.log(`(latency: enqueue→start of paced runs, ${RATE} jobs/s, no-op job)`);

    // Why CPU per job moves: on loopback every message that wakes a sleeping peer costs tens of µs of
    // kernel time in both processes, so fewer, fuller reads and writes are most of any saving.
    console.log('\nread + write system calls per job, and kernel share of the CPU (median of rounds): producer / consumer / broker');
    for (const w of WORKLOADS) {
      const cells = SYSTEMS.map((s) => {
        const xs = pick(s, w.key);
        const part = (i: number) => median(xs.map((x) => x.sys[i] as number));
        const pct = (i: number) => median(xs.map((x) => x.kernelPct[i] as number));
        const idx = s === 'mega/mem' ? [1] : [0, 1, 2];
        return `${s} ${idx.map((i) => part(i).toFixed(2)).join('/')} (${idx.map((i) => pct(i).toFixed(0)).join('/')}%)`;
      });
      console.log(`${w.key.padEnd(wpad)}${cells.join(' | ')}`);
    }

    if (megas.length && bulls.length) {
      console.log('\nMega/JetStream vs BullMQ: total CPU per job, per-round paired ratios (median); > 1 = Mega cheaper');
      const pairs = megas.flatMap((m) => bulls.map((b) => [m, b] as const));
      console.log(`${'workload'.padEnd(wpad)}${pairs.map(([m, b]) => `${m} / ${b}`.padStart(28)).join('')}`);
      for (const w of WORKLOADS) {
        console.log(
          `${w.key.padEnd(wpad)}${pairs.map(([m, b]) => `${paired(m, b, w.key, 'total', true).toFixed(2)}x`.padStart(28)).join('')}`,
        );
      }
      for (const [m, b] of pairs) {
        console.log(`\n${m} vs ${b} — by part (> 1 = Mega cheaper; jobs/s > 1 = Mega faster)`);
        console.log(
          `${'workload'.padEnd(wpad)}${['total', 'producer', 'consumer', 'broker', 'jobs/s'].map((h) => h.padStart(10)).join('')}`,
        );
        for (const w of WORKLOADS) {
          const r = (['total', 'prod', 'cons', 'broker'] as const).map((k) => paired(m, b, w.key, k, true));
          r.push(paired(m, b, w.key, 'jobsPerSec', false));
          console.log(`${w.key.padEnd(wpad)}${r.map((x) => `${x.toFixed(2)}x`.padStart(10)).join('')}`);
        }
      }
      console.log(`\nverdict (goal: Mega/JetStream >= ${GOAL}x BullMQ by total CPU per job)`);
      for (const [m, b] of pairs) {
        const ratios = WORKLOADS.map((w) => [w.key, paired(m, b, w.key, 'total', true)] as const);
        const met = ratios.filter(([, r]) => r >= GOAL).length;
        const role = b === 'bullmq+aof' ? 'like for like' : b === 'bullmq' ? 'vs the no-persistence floor' : '';
        console.log(
          `  ${m} vs ${b} (${role}): ${met === ratios.length ? 'met' : 'MISSED'} — ${met}/${ratios.length} (${ratios.map(([k, r]) => `${k} ${r.toFixed(2)}x`).join(', ')})`,
        );
      }
    }
    if (megas.length > 1) {
      const [m0, ...rest] = megas as [string, ...string[]];
      console.log(`\nNATS releases (the same Mega): CPU per job of ${m0} / the other (> 1 = the other cheaper)`);
      for (const m of rest) {
        for (const w of WORKLOADS) {
          console.log(
            `  ${w.key.padEnd(wpad)} ${m}: total ${paired(m, m0, w.key, 'total', true).toFixed(2)}x, broker ${paired(m, m0, w.key, 'broker', true).toFixed(2)}x, jobs/s ${paired(m, m0, w.key, 'jobsPerSec', false).toFixed(2)}x`,
          );
        }
      }
    }
    if (base && megas[0]) {
      const m = megas[0];
      console.log(`\nA/B: ${m} (this checkout) vs ${base} (--baseline ${values.baseline}); > 1 = this checkout cheaper / faster`);
      console.log(`${'workload'.padEnd(wpad)}${['total', 'producer', 'consumer', 'broker', 'jobs/s'].map((h) => h.padStart(10)).join('')}`);
      for (const w of WORKLOADS) {
        const r = (['total', 'prod', 'cons', 'broker'] as const).map((k) => paired(m, base, w.key, k, true));
        r.push(paired(m, base, w.key, 'jobsPerSec', false));
        console.log(`${w.key.padEnd(wpad)}${r.map((x) => `${x.toFixed(2)}x`.padStart(10)).join('')}`);
      }
    }
    if (megas.length && SYSTEMS.includes('mega/mem')) {
      console.log('\nMega memory driver vs JetStream driver (memory: one process enqueues and consumes, no broker)');
      for (const m of megas) {
        for (const w of WORKLOADS) {
          console.log(
            `  ${w.key.padEnd(wpad)} CPU per job: ${m} = ${paired('mega/mem', m, w.key, 'total', true).toFixed(2)}x memory; jobs/s: memory = ${paired('mega/mem', m, w.key, 'jobsPerSec', false).toFixed(2)}x ${m}`,
          );
        }
      }
    }
    console.log(`\nevery run: all jobs started once and done, none stray, queue empty afterwards (checked)`);
    console.log(`idle broker CPU between runs (our idle consumers + any other client): ${idle.join(', ')}`);
  } finally {
    await Promise.all(children.map((c) => stopChild(c).catch(() => undefined)));
    if (values.shared) {
      await dropStreams(env.NATS_URL, tag).catch((error: unknown) => console.error(`could not delete streams ${tag}_*:`, error));
    }
    await stopBrokers();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    if (values['cpu-prof'] && !values.json) console.log(`CPU profiles: ${resolve(values['cpu-prof'])}/<system>-<role>/*.cpuprofile`);
  }
}

async function dropStreams(url: string, tag: string): Promise<void> {
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connect({ servers: url });
  const jsm = await jetstreamManager(nc);
  for await (const s of jsm.streams.list()) if (s.config.name.startsWith(`${tag}_`)) await jsm.streams.delete(s.config.name);
  await nc.close();
}

await main();
