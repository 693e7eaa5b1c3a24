/**
 * `npm run bench:http`: hello-world JSON (`GET /` -> `{hello:'world'}`, enveloped by Mega) served by
 *   a) bare Fastify 5, b) Mega with only @mega/http, c) Mega + @mega/security + @mega/session,
 *   a') a second, identical bare Fastify: the A/A control that measures the noise band.
 *
 * Every variant runs in its own server process (same code, same flags), a fresh one in every round:
 * two identical processes can differ by several percent for the life of the process (heap layout,
 * JIT choices), so that luck is drawn anew each round instead of once per run. Each round measures
 * every variant side by side with a bare Fastify: both loaded at the same time (autocannon, from
 * this process, -c 32 each), so both see the same machine. On a 2-core machine shared with other
 * work, CPU per request moves with the load of the moment (less batching per wake-up when the
 * machine is busy); two servers measured over the same seconds move together.
 * The primary figure is the server's CPU time per request, read from /proc/<pid>/stat (utime +
 * stime of all its threads) around each run; req/s is printed beside it.
 *
 * A variant's efficiency is the median over rounds of bare Fastify's CPU per request over its own in
 * the same pair (one disturbed round moves no median). The noise band is what the A/A control shows:
 * how far two identical bare Fastify processes side by side disagree (their median pair, or their
 * typical pair over √rounds; at least 1%). A variant can never be reported as more efficient than
 * the bare Fastify it runs on: a ratio above 1 inside the band prints as "1.00 (within noise)", and
 * one above the band marks the run INVALID (exit code 2), since that is the machine speaking, not the
 * code. One verdict per goal, from the CPU figure.
 *
 * Env: BENCH_SECONDS (5), BENCH_ROUNDS (5), BENCH_CONNECTIONS (32), BENCH_WARMUP_SECONDS (3),
 * BENCH_VARIANTS (default a,b,c,a2; also d = c without helmet, e = Fastify + pino logger).
 * Profile one server: `node --cpu-prof scripts/bench-http.ts --serve b` (prints `READY <port>`,
 * SIGINT writes the profile).
 */

import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const VARIANTS = {
  a: 'bare Fastify 5',
  b: 'Mega, @mega/http only',
  c: 'Mega + security + session',
  a2: 'bare Fastify 5 (A/A control)',
  d: 'c without helmet headers',
  e: 'Fastify + pino logger',
} as const;
type Variant = keyof typeof VARIANTS;
const GOALS: Partial<Record<Variant, number>> = { b: 0.95, c: 0.85 };
/** Linux's USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s on every architecture Node runs on. */
const TICK_US = 10_000;

function megaProject(app: string, withSecurity: boolean, helmet = true): string {
  const dir = mkdtempSync(join(tmpdir(), 'mega-bench-'));
  const plugins = withSecurity ? "['@mega/http', '@mega/security', '@mega/session']" : "['@mega/http']";
  // The rate limiter runs (counting every request) but with a ceiling the benchmark never reaches:
  // the default 1000/min per IP would turn a load test from one IP into a 429 test.
  const appConfig = withSecurity
    ? `export default { security: { secret: 'bench-secret-0123456789-abcdefghijklmnop', rateLimit: { max: 1000000000, windowMs: 60000 }${helmet ? '' : ', helmet: false'} }, session: { secret: 'bench-secret-0123456789-abcdefghijklmnop' } };\n`
    : 'export default {};\n';
  const files: Record<string, string> = {
    'package.json': '{ "name": "mega-bench", "private": true, "type": "module" }\n',
    'mega.config.ts': `export default { plugins: ${plugins}, server: { port: 0, host: '127.0.0.1' }, logger: { level: 'warn' } };\n`,
    [`apps/${app}/app.config.ts`]: appConfig,
    [`apps/${app}/routes/index.ts`]: "export default (router: any) => { router.http.get('/', async () => ({ hello: 'world' })); };\n",
  };
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

/** Starts one variant's server in this process; returns its port. */
async function serve(variant: Variant): Promise<number> {
  if (variant === 'a' || variant === 'a2' || variant === 'e') {
    const fastifyUrl = pathToFileURL(join(REPO, 'node_modules/fastify/fastify.js')).href;
    const { default: Fastify, LogController } = (await import(fastifyUrl)) as {
      default: (opts?: object) => {
        get(path: string, handler: () => Promise<unknown>): void;
        listen(opts: object): Promise<string>;
        server: { address(): { port: number } };
      };
      LogController: new (o: object) => object;
    };
    let options = {};
    if (variant === 'e') {
      const { pino } = (await import(pathToFileURL(join(REPO, 'node_modules/pino/pino.js')).href)) as { pino: (o: object) => object };
      options = { loggerInstance: pino({ level: 'warn' }), logController: new LogController({ disableRequestLogging: true }) };
    }
    const app = Fastify(options);
    app.get('/', async () => ({ hello: 'world' }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    return app.server.address().port;
  }
  const dir = megaProject(`bench${variant}`, variant === 'c' || variant === 'd', variant !== 'd');
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const kernelModule = (await import(pathToFileURL(join(REPO, 'kernel/dist/index.js')).href)) as {
    loadKernel(opts: object): Promise<{ start(): Promise<void>; use(name: string): { port: number } }>;
  };
  const kernel = await kernelModule.loadKernel({ dir, env: 'production' });
  await kernel.start();
  return kernel.use('http').port;
}

interface Server {
  variant: Variant;
  port: number;
  child: ChildProcess;
}

function stop(server: Server): Promise<void> {
  return new Promise((done) => {
    server.child.once('exit', () => done());
    server.child.kill('SIGKILL');
  });
}

function start(variant: Variant): Promise<Server> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve', variant], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, NODE_ENV: 'production' },
    });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /READY (\d+)\n/.exec(out);
      if (m) resolvePromise({ variant, port: Number(m[1]), child });
    });
    child.once('exit', (code) => reject(new Error(`server ${variant} exited with ${code} before it was ready`)));
  });
}

/** utime + stime of every thread of `pid`, in microseconds. */
function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at field 3: utime is 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_US;
}

interface Result {
  requests: { average: number; total: number };
  non2xx: number;
  errors: number;
  latency: { p99: number };
}

async function load(port: number, seconds: number, connections: number): Promise<Result> {
  const { default: autocannon } = (await import('autocannon')) as unknown as {
    default: (opts: object) => Promise<Result>;
  };
  return autocannon({ url: `http://127.0.0.1:${port}/`, connections, duration: seconds, pipelining: 1 });
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};
const spread = (xs: readonly number[], digits: number): string => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;

async function main(): Promise<void> {
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
  const connections = Number(process.env.BENCH_CONNECTIONS ?? 32);
  const warmup = Number(process.env.BENCH_WARMUP_SECONDS ?? 3);
  const run = (process.env.BENCH_VARIANTS ?? 'a,b,c,a2').split(',') as Variant[];
  for (const v of run) if (!(v in VARIANTS)) throw new Error(`unknown variant ${v} (known: ${Object.keys(VARIANTS).join(', ')})`);
  if (!run.includes('a')) throw new Error('variant a (bare Fastify) is the reference and must run');
  const live = new Set<Server>();
  try {
    const cpu = cpus()[0]?.model ?? 'unknown CPU';
    console.log(
      `bench:http  ${rounds} rounds x ${seconds} s, autocannon -c ${connections} per server (no pipelining); each variant runs at the same time as a bare Fastify, both fresh processes, warm-up ${warmup} s`,
    );
    console.log(
      `machine: ${cpus().length} cores, ${cpu}; load average ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}; node ${process.version}`,
    );
    const others = run.filter((v) => v !== 'a');
    const rates = new Map<Variant, number[]>(run.map((v) => [v, []]));
    const perReq = new Map<Variant, number[]>(run.map((v) => [v, []]));
    /** Per round: bare Fastify's CPU per request / the variant's, measured over the same seconds. */
    const paired = new Map<Variant, number[]>(others.map((v) => [v, []]));
    const checked = new Set<Variant>();
    const measure = async (s: Server, load: Promise<Result>, before: number) => {
      const r = await load;
      const used = cpuMicros(s.child.pid as number) - before;
      if (r.non2xx || r.errors) throw new Error(`${s.variant}: ${r.non2xx} non-2xx answers and ${r.errors} errors`);
      const us = used / Math.max(1, r.requests.total);
      rates.get(s.variant)?.push(r.requests.average);
      perReq.get(s.variant)?.push(us);
      return us;
    };
    for (let round = 1; round <= rounds; round++) {
      const line: string[] = [];
      const order = others.map((_, i) => others[(i + round - 1) % others.length] as Variant);
      for (const v of order) {
        const pair = [await start('a'), await start(v)] as const;
        for (const s of pair) live.add(s);
        for (const s of pair) {
          if (checked.has(s.variant)) continue;
          checked.add(s.variant);
          const check = await fetch(`http://127.0.0.1:${s.port}/`).then((r) => r.text());
          console.log(`  ${s.variant.padEnd(2)}) ${VARIANTS[s.variant].padEnd(30)} GET / -> ${check}`);
        }
        await Promise.all(pair.map((s) => load(s.port, warmup, connections)));
        const before = pair.map((s) => cpuMicros(s.child.pid as number));
        const loads = pair.map((s) => load(s.port, seconds, connections));
        const [ua, uv] = await Promise.all(pair.map((s, i) => measure(s, loads[i] as Promise<Result>, before[i] as number)));
        for (const s of pair) {
          await stop(s);
          live.delete(s);
        }
        paired.get(v)?.push((ua as number) / (uv as number));
        line.push(`a ${(ua as number).toFixed(2)} / ${v} ${(uv as number).toFixed(2)} us`);
      }
      console.log(`  round ${round}: ${line.join(' | ')}`);
    }
    const us = (v: Variant) => perReq.get(v) as number[];
    const rs = (v: Variant) => rates.get(v) as number[];
    /** Median over rounds of bare Fastify's CPU per request / the variant's, side by side. */
    const efficiency = (v: Variant) => (v === 'a' ? 1 : median(paired.get(v) as number[]));
    // How far two identical servers run side by side disagree: the median of their pairs, or their
    // typical gap in one pair over the square root of the rounds (what a median of that many rounds
    // still moves by), whichever is larger; at least 1%.
    const band = run.includes('a2')
      ? Math.max(
          0.01,
          Math.abs(1 - efficiency('a2')),
          median((paired.get('a2') as number[]).map((r) => Math.abs(1 - r))) / Math.sqrt(rounds),
        )
      : 0.01;
    console.log(
      `\n${'variant'.padEnd(36)}${'CPU us/req median'.padStart(18)}${'(spread)'.padStart(14)}${'req/s median'.padStart(14)}${'(spread)'.padStart(16)}${'÷ bare Fastify (CPU)'.padStart(22)}`,
    );
    let invalid = false;
    const shown = new Map<Variant, number>();
    for (const v of run) {
      const ratio = efficiency(v);
      let text = v === 'a' ? '1.00' : ratio.toFixed(3);
      if (v !== 'a' && v !== 'a2' && ratio > 1) {
        if (ratio - 1 <= band) text = '1.00 (within noise)';
        else {
          text = `${ratio.toFixed(3)} INVALID`;
          invalid = true;
        }
      }
      shown.set(v, Math.min(1, ratio));
      console.log(
        `  ${v.padEnd(2)}) ${VARIANTS[v].padEnd(30)}${median(us(v)).toFixed(2).padStart(18)}${`(${spread(us(v), 2)})`.padStart(14)}${String(Math.round(median(rs(v)))).padStart(14)}${`(${spread(
          rs(v).map((x) => x / 1000),
          1,
        )}k)`.padStart(16)}${text.padStart(22)}`,
      );
    }
    console.log(
      `\nnoise band: ±${(band * 100).toFixed(1)}% (${run.includes('a2') ? 'how far two identical bare Fastify processes run side by side disagree in this run: their median pair, or their typical pair / √rounds' : 'no A/A control in this run: the 1% floor'})`,
    );
    if (invalid) {
      console.log('INVALID RUN: a Mega variant used less CPU per request than the Fastify it runs on, beyond the noise band.');
    }
    for (const [v, goal] of Object.entries(GOALS) as [Variant, number][]) {
      if (!run.includes(v)) continue;
      const ratio = shown.get(v) as number;
      const verdict = ratio >= goal ? 'met' : ratio + band >= goal ? 'MISSED (within noise of the goal)' : 'MISSED';
      console.log(`goal ${VARIANTS[v]}: CPU efficiency >= ${goal.toFixed(2)} of bare Fastify: ${ratio.toFixed(3)} -> ${verdict}`);
    }
    if (invalid) process.exitCode = 2;
  } finally {
    for (const s of live) s.child.kill('SIGKILL');
  }
}

const at = process.argv.indexOf('--serve');
if (at !== -1) {
  serve((process.argv[at + 1] ?? 'a') as Variant).then(
    (port) => {
      // A clean exit on SIGINT, so `node --cpu-prof scripts/bench-http.ts --serve b` writes its profile.
      process.on('SIGINT', () => process.exit(0));
      process.stdout.write(`READY ${port}\n`);
    },
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
} else {
  main().then(
    () => process.exit(process.exitCode ?? 0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
