/**
 * `npm run bench:otel`: what observability costs per request. The same hello-world Mega app
 * (`GET /` -> `{hello:'world'}`) served by
 *   a)   @mega/http only                                  (the reference)
 *   a2)  the same again                                   (A/A control: the noise band)
 *   m)   + @mega/metrics (every instrument group on)
 *   t1)  + @mega/metrics + @mega/tracing, sampling 1.0
 *   t01) + @mega/metrics + @mega/tracing, sampling 0.1
 * The tracing variants run only when @mega/tracing is built (plugins/tracing/dist); the script says
 * when it skipped them. Tracing is configured through its environment (MEGA_OTEL_SAMPLING_RATIO,
 * MEGA_OTEL_ENDPOINT) and exports OTLP/HTTP to a sink in this process that answers 200 to every
 * batch, so the app pays for building and sending spans, and the sink's CPU is not counted.
 *
 * Every variant is its own server process (one for the whole run; BENCH_FRESH=1: a new one each
 * round), pinned to one CPU while this process (autocannon, the sink, the scraper) runs on the
 * others, and every variant is offered the same load (60% of what variant a answers flat out):
 * see PIN and the rate in main() for the measurements behind both. The primary figure is the
 * server's CPU time per request from /proc/<pid>/stat (utime + stime; utime alone beside it) around
 * each run; rounds are interleaved (the order rotates), each ratio is paired within its round, then
 * the median is taken. During each run a scraper reads /metrics once a second (as Prometheus would)
 * from the variants that serve it, so the cost of collection is included.
 *
 * Env: BENCH_SECONDS (3), BENCH_ROUNDS (10), BENCH_CONNECTIONS (32), BENCH_WARMUP_SECONDS (3),
 * BENCH_RATE (req/s offered; 0: as fast as each server goes), BENCH_PIN (the servers' CPU; `off`: no pinning),
 * BENCH_NODE_FLAGS (the servers' V8 flags; default --min-semi-space-size=32, see NODE_FLAGS),
 * BENCH_FRESH (0: one server process per variant for the whole run; 1: a new one per variant and round),
 * BENCH_VARIANTS (default: a,a2,m,t1,t01; also t0 and t001, tracing at sampling 0 and 0.01, and t001n,
 * t01n: sampling 0.01, 0.1 with MEGA_OTEL_EXPORTER=none: spans made and batched, never encoded nor sent).
 */

import type { ChildProcess } from 'node:child_process';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TRACING_BUILT = existsSync(join(REPO, 'plugins/tracing/dist/index.js'));
const VARIANTS = {
  a: { label: '@mega/http only', plugins: ['@mega/http'], sampling: undefined },
  a2: { label: '@mega/http only (A/A control)', plugins: ['@mega/http'], sampling: undefined },
  m: { label: '+ metrics', plugins: ['@mega/http', '@mega/metrics'], sampling: undefined },
  t1: { label: '+ metrics + tracing 1.0', plugins: ['@mega/http', '@mega/metrics', '@mega/tracing'], sampling: '1' },
  t01: { label: '+ metrics + tracing 0.1', plugins: ['@mega/http', '@mega/metrics', '@mega/tracing'], sampling: '0.1' },
  // Only when named in BENCH_VARIANTS: where the cost of t01 comes from.
  t0: { label: '+ metrics + tracing 0', plugins: ['@mega/http', '@mega/metrics', '@mega/tracing'], sampling: '0' },
  t001: { label: '+ metrics + tracing 0.01', plugins: ['@mega/http', '@mega/metrics', '@mega/tracing'], sampling: '0.01' },
  t001n: {
    label: '+ metrics + tracing 0.01, not sent',
    plugins: ['@mega/http', '@mega/metrics', '@mega/tracing'],
    sampling: '0.01',
    exporter: 'none',
  },
  t01n: {
    label: '+ metrics + tracing 0.1, not sent',
    plugins: ['@mega/http', '@mega/metrics', '@mega/tracing'],
    sampling: '0.1',
    exporter: 'none',
  },
} as const satisfies Record<string, { label: string; plugins: readonly string[]; sampling: string | undefined; exporter?: string }>;
type Variant = keyof typeof VARIANTS;
/** What runs when BENCH_VARIANTS is not set. */
const DEFAULT_VARIANTS: readonly Variant[] = ['a', 'a2', 'm', 't1', 't01'];
/** Most extra CPU per request allowed, as a ratio to variant a (issue 13 §4). */
const GOALS: Partial<Record<Variant, number>> = { m: 1.05, t01: 1.1 };
const TICK_US = 10_000;

/**
 * V8 flags of every server. By default the young generation starts at the size V8 grows it to (32 MB
 * semi-space on 64-bit Node 24, seen with --trace-gc-nvp): V8 doubles it once the bytes that survived
 * scavenges since the last growth exceed its size, so every long-running server ends up there (the
 * plain app here after ~3 minutes, ~2 KB surviving each scavenge), but a variant whose requests leave
 * more behind (each keep-alive connection keeps its last request's async context alive until the
 * next request: 10-50 KB a scavenge with tracing) got there within the run and then paid ~0.5 µs a
 * request more for the larger young generation than a variant that had not yet: a comparison of
 * V8's growth timing, not of the plugins. BENCH_NODE_FLAGS replaces them (empty: none).
 */
const NODE_FLAGS: string[] = (process.env.BENCH_NODE_FLAGS ?? '--min-semi-space-size=32').split(' ').filter(Boolean);

/**
 * The CPU every server (all its threads) runs on: the last one, unless BENCH_PIN names another or is
 * `off`. This process (the load generator, the OTLP sink, the scraper) is moved to the other CPUs in
 * main(), so the two never compete for a core: shared, a server's CPU per request moved by ±15%
 * between rounds of one variant (scheduler placement, the client's wake-ups charged to it).
 */
const PIN: string | undefined =
  process.env.BENCH_PIN === 'off' ? undefined : (process.env.BENCH_PIN ?? (cpus().length >= 2 ? String(cpus().length - 1) : undefined));

function project(variant: Variant): string {
  const dir = mkdtempSync(join(tmpdir(), 'mega-bench-otel-'));
  const files: Record<string, string> = {
    'package.json': '{ "name": "mega-bench-otel", "private": true, "type": "module" }\n',
    'mega.config.ts': `export default { plugins: ${JSON.stringify(VARIANTS[variant].plugins)}, server: { port: 0, host: '127.0.0.1' }, logger: { level: 'warn' } };\n`,
    'apps/bench/app.config.ts': 'export default {};\n',
    'apps/bench/routes/index.ts': "export default (router: any) => { router.http.get('/', async () => ({ hello: 'world' })); };\n",
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
  const dir = project(variant);
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

function start(variant: Variant, sink: number): Promise<Server> {
  return new Promise((resolvePromise, reject) => {
    const sampling = VARIANTS[variant].sampling;
    const pin = PIN;
    const argv = [...NODE_FLAGS, fileURLToPath(import.meta.url), '--serve', variant];
    const child = spawn(pin ? 'taskset' : process.execPath, pin ? ['-c', pin, process.execPath, ...argv] : argv, {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: {
        ...process.env,
        NODE_ENV: 'production',
        ...('exporter' in VARIANTS[variant] ? { MEGA_OTEL_EXPORTER: VARIANTS[variant].exporter } : {}),
        ...(sampling ? { MEGA_OTEL_SAMPLING_RATIO: sampling, MEGA_OTEL_ENDPOINT: `http://127.0.0.1:${sink}/v1/traces` } : {}),
      },
    });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /READY (\d+)\n/.exec(out);
      if (m) resolvePromise({ variant, port: Number(m[1]), child });
    });
    child.on('exit', (code) => reject(new Error(`server ${variant} exited with ${code} before it was ready`)));
  });
}

/** An OTLP/HTTP receiver that accepts and drops every batch (its CPU is this process's, not the server's). */
function startSink(): Promise<{ port: number; spans: () => number; close(): void }> {
  let bytes = 0;
  const server = createServer((req, res) => {
    req.on('data', (d: Buffer) => (bytes += d.length));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  return new Promise((ok) =>
    server.listen(0, '127.0.0.1', () =>
      ok({ port: (server.address() as { port: number }).port, spans: () => bytes, close: () => server.close() }),
    ),
  );
}

/** The process's CPU time so far, user and user + system, in µs. */
function cpuMicros(pid: number): { user: number; total: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const user = Number(fields[11]) * TICK_US;
  return { user, total: user + Number(fields[12]) * TICK_US };
}

interface Result {
  requests: { average: number; total: number };
  non2xx: number;
  errors: number;
}

async function load(port: number, seconds: number, connections: number, rate?: number): Promise<Result> {
  const { default: autocannon } = (await import('autocannon')) as unknown as { default: (opts: object) => Promise<Result> };
  return autocannon({
    url: `http://127.0.0.1:${port}/`,
    connections,
    duration: seconds,
    pipelining: 1,
    ...(rate ? { overallRate: rate } : {}),
  });
}

/** Reads /metrics every second while `until` is pending, as a Prometheus would; returns how many scrapes answered 200. */
async function scrapeDuring(port: number, until: Promise<unknown>): Promise<number> {
  let done = false;
  void until.finally(() => (done = true));
  let ok = 0;
  while (!done) {
    const r = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
    if (r?.status === 200) ok++;
    await r?.text();
    await Promise.race([until, new Promise((r) => setTimeout(r, 1000))]);
  }
  return ok;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};
const spread = (xs: readonly number[], digits: number): string => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;

async function main(): Promise<void> {
  const seconds = Number(process.env.BENCH_SECONDS ?? 3);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 10);
  const connections = Number(process.env.BENCH_CONNECTIONS ?? 32);
  const warmup = Number(process.env.BENCH_WARMUP_SECONDS ?? 3);
  const all = Object.keys(VARIANTS) as Variant[];
  const wanted = (process.env.BENCH_VARIANTS?.split(',') as Variant[] | undefined) ?? [...DEFAULT_VARIANTS];
  for (const v of wanted) if (!(v in VARIANTS)) throw new Error(`unknown variant ${v} (known: ${all.join(', ')})`);
  if (!wanted.includes('a')) throw new Error('variant a (@mega/http only) is the reference and must run');
  const run = wanted.filter((v) => TRACING_BUILT || VARIANTS[v].sampling === undefined);
  const fresh = process.env.BENCH_FRESH === '1';
  // The offered load: BENCH_RATE req/s; unset, 60% of what variant a answers flat out in its warm-up
  // (measured below); 0, as fast as it goes. A fixed rate gives every variant the same arrival
  // pattern. Flat out, a server's CPU per request depends on its own speed (a faster server sleeps
  // between requests and pays more wake-ups, a slower one reads several requests per wake-up), so a
  // cost shows up smaller or larger than it is; measured: the same server ranged 10.2-14.5 µs/request.
  let rate = process.env.BENCH_RATE === undefined ? undefined : Number(process.env.BENCH_RATE) || undefined;
  const adaptiveRate = process.env.BENCH_RATE === undefined;
  if (PIN !== undefined) {
    const others = cpus()
      .map((_, i) => i)
      .filter((i) => String(i) !== PIN);
    const moved = spawnSync('taskset', ['-a', '-p', '-c', others.join(','), String(process.pid)], { stdio: 'ignore' });
    if (moved.status !== 0) throw new Error('taskset failed: BENCH_PIN=off runs without pinning');
  }
  const sink = await startSink();
  const servers: Server[] = [];
  /** Starts a variant's server, checks it answers (printed once), warms it up. */
  const launch = async (v: Variant, print: boolean): Promise<Server> => {
    const s = await start(v, sink.port);
    servers.push(s);
    if (print) {
      const check = await fetch(`http://127.0.0.1:${s.port}/`).then((r) => r.text());
      const metrics = await fetch(`http://127.0.0.1:${s.port}/metrics`).then((r) => r.status);
      console.log(`  ${v.padEnd(3)}) ${VARIANTS[v].label.padEnd(28)} pid ${s.child.pid}  GET / -> ${check}  /metrics -> ${metrics}`);
    }
    const warm = await load(s.port, warmup, connections);
    if (v === 'a' && adaptiveRate && rate === undefined) rate = Math.round((warm.requests.average * 0.6) / 1000) * 1000;
    return s;
  };
  /** Stops a server (SIGINT: it removes its project directory) and waits for it, so it costs the next one nothing. */
  const stop = async (s: Server) => {
    servers.splice(servers.indexOf(s), 1);
    const gone = new Promise((ok) => s.child.once('exit', ok));
    s.child.kill('SIGINT');
    await gone;
  };
  try {
    console.log(
      `bench:otel  ${rounds} interleaved rounds x ${seconds} s, autocannon -c ${connections} (no pipelining), warm-up ${warmup} s; ${fresh ? 'a new server process per variant and round' : 'one server process per variant'}, NODE_ENV=production`,
    );
    console.log(
      `machine: ${cpus().length} cores, ${cpus()[0]?.model ?? 'unknown CPU'}; node ${process.version}; server flags: ${NODE_FLAGS.join(' ') || 'none'}`,
    );
    if (!TRACING_BUILT)
      console.log('@mega/tracing is not built (plugins/tracing/dist missing): the tracing variants t1 and t01 are skipped');
    // BENCH_FRESH=1 starts each variant anew every round: a process keeps the luck of its JIT and heap
    // layout for its whole life (+-5% between two processes of one variant, measured), which rounds of
    // one process never average out. Not the default: a young process also still pays for V8's
    // background compilation, more so with more plugins, so its figures overstate the plugins' cost
    // unless BENCH_WARMUP_SECONDS is long.
    const kept = new Map<Variant, Server>();
    if (!fresh) for (const v of run) kept.set(v, await launch(v, true));
    else if (adaptiveRate) await stop(await launch('a', false));
    console.log(
      `offered load: ${rate ? `${rate} req/s${adaptiveRate ? " (60% of variant a's flat-out rate in its warm-up)" : ''}` : 'as fast as each server goes'}; servers on CPU ${PIN ?? 'any (BENCH_PIN=off)'}`,
    );
    const rates = new Map<Variant, number[]>(run.map((v) => [v, []]));
    const perReq = new Map<Variant, number[]>(run.map((v) => [v, []]));
    const userPerReq = new Map<Variant, number[]>(run.map((v) => [v, []]));
    for (let round = 1; round <= rounds; round++) {
      const line: string[] = [];
      const order = run.map((_, i) => run[(i + round - 1) % run.length] as Variant);
      for (const v of order) {
        const s = kept.get(v) ?? (await launch(v, round === 1));
        const pid = s.child.pid as number;
        const before = cpuMicros(pid);
        const loading = load(s.port, seconds, connections, rate);
        const scrapes = v.startsWith('a') ? Promise.resolve(0) : scrapeDuring(s.port, loading);
        const [r] = await Promise.all([loading, scrapes]);
        const after = cpuMicros(pid);
        const used = after.total - before.total;
        if (fresh) await stop(s);
        if (r.non2xx || r.errors) throw new Error(`${v}: ${r.non2xx} non-2xx answers and ${r.errors} errors`);
        rates.get(v)?.push(r.requests.average);
        const us = used / Math.max(1, r.requests.total);
        const userUs = (after.user - before.user) / Math.max(1, r.requests.total);
        perReq.get(v)?.push(us);
        userPerReq.get(v)?.push(userUs);
        line.push(`${v} ${us.toFixed(2)} us (user ${userUs.toFixed(2)}) ${Math.round(r.requests.average / 1000)}k/s`);
      }
      console.log(`  round ${round}: ${line.join(' | ')}`);
    }
    const us = (v: Variant) => perReq.get(v) as number[];
    const userUs = (v: Variant) => userPerReq.get(v) as number[];
    const userCost = (v: Variant) => userUs(v).map((x, i) => x / (userUs('a')[i] as number));
    /** Per round: this variant's CPU per request / the reference's. */
    const cost = (v: Variant) => us(v).map((x, i) => x / (us('a')[i] as number));
    const band = Math.max(0.01, ...(run.includes('a2') ? cost('a2') : []).map((r) => Math.abs(1 - r)));
    console.log(
      `\n${'variant'.padEnd(35)}${'CPU us/req median'.padStart(18)}${'(spread)'.padStart(14)}${'req/s median'.padStart(14)}${'CPU ÷ a'.padStart(10)}${'extra'.padStart(9)}${'user us/req'.padStart(13)}${'user extra'.padStart(12)}`,
    );
    for (const v of run) {
      const ratio = median(cost(v));
      console.log(
        `  ${v.padEnd(4)}) ${VARIANTS[v].label.padEnd(28)}${median(us(v)).toFixed(2).padStart(18)}${`(${spread(us(v), 2)})`.padStart(14)}${String(Math.round(median(rates.get(v) as number[]))).padStart(14)}${ratio.toFixed(3).padStart(10)}${`${((ratio - 1) * 100).toFixed(1)}%`.padStart(9)}${median(userUs(v)).toFixed(2).padStart(13)}${`${((median(userCost(v)) - 1) * 100).toFixed(1)}%`.padStart(12)}`,
      );
    }
    console.log(
      `\nnoise band: ±${(band * 100).toFixed(1)}% (${run.includes('a2') ? 'largest |1 - a2/a| over the rounds' : 'no A/A control: the 1% floor'})`,
    );
    console.log(`OTLP sink received ${(sink.spans() / 1024).toFixed(0)} KiB of span batches`);
    for (const [v, goal] of Object.entries(GOALS) as [Variant, number][]) {
      if (!run.includes(v)) continue;
      const ratio = median(cost(v));
      const verdict = ratio <= goal ? 'met' : ratio - band <= goal ? 'MISSED (within noise of the goal)' : 'MISSED';
      console.log(
        `goal ${VARIANTS[v].label}: at most ${((goal - 1) * 100).toFixed(0)}% extra CPU per request: ${((ratio - 1) * 100).toFixed(1)}% -> ${verdict}`,
      );
    }
  } finally {
    for (const s of servers) s.child.kill('SIGKILL');
    sink.close();
  }
}

const at = process.argv.indexOf('--serve');
if (at !== -1) {
  serve((process.argv[at + 1] ?? 'a') as Variant).then(
    (port) => {
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
