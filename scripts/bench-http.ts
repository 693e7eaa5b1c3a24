/**
 * `npm run bench:http`: hello-world JSON throughput of
 *   (a) bare Fastify, (b) Mega with only @mega/http, (c) Mega with @mega/security + @mega/session,
 * served by one server process on one port per variant, autocannon in this one (a separate process,
 * as it must be on a 2-core machine). Rounds are interleaved (a b c, a b c, ...) so drift hits every
 * variant alike; the median of the rounds is reported with the ratios b/a and c/a.
 *
 * One server process for all variants: on a shared machine, two processes measured minutes apart
 * differ by tens of percent for reasons unrelated to the code (a bare Fastify measured 45 us of CPU
 * per request in its own process and 64 us in another, same machine, same hour). In one process,
 * heap, JIT and scheduling luck are shared. BENCH_ISOLATED=1 runs one process per variant instead.
 *
 * The server also reports its CPU time (process.cpuUsage) around every run: CPU microseconds per
 * request is printed beside req/s, and the ratios are also given on that basis (a_cpu / b_cpu),
 * from the least disturbed round.
 *
 * Options (env): BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_CONNECTIONS (32), BENCH_WARMUP_SECONDS (2),
 * BENCH_ISOLATED, BENCH_EXTRA (adds d: c with helmet off).
 * Internal: `node scripts/bench-http.ts --serve a,b,c` runs those servers, prints `READY a=<port> ...`.
 */

import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const VARIANTS = {
  a: 'bare Fastify',
  b: 'Mega, @mega/http only',
  c: 'Mega + security + session',
  d: 'c without helmet headers',
  e: 'Fastify + pino logger',
} as const;
type Variant = keyof typeof VARIANTS;
/** d (BENCH_EXTRA=1) shows how much of c's cost is the ~660 bytes of helmet headers per response. */
/** e (BENCH_EXTRA=1): bare Fastify given a pino logger (request logging off), what most real Fastify apps run. */
const RUN: Variant[] = process.env.BENCH_EXTRA ? ['a', 'b', 'c', 'd', 'e'] : ['a', 'b', 'c'];

function megaProject(app: string, withSecurity: boolean, helmet = true): string {
  const dir = mkdtempSync(join(tmpdir(), 'mega-bench-'));
  const plugins = withSecurity ? "['@mega/http', '@mega/security', '@mega/session']" : "['@mega/http']";
  // The rate limiter runs (counting every request) but with a ceiling the benchmark never reaches:
  // the default 1000/min per IP would turn a load test from one IP into a 429 test.
  const appConfig = withSecurity
    ? `export default { security: { secret: 'bench-secret-0123456789', rateLimit: { max: 1000000000, windowMs: 60000 }${helmet ? '' : ', helmet: false'} }, session: { secret: 'bench-secret-0123456789' } };\n`
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

async function serveOne(variant: Variant): Promise<number> {
  if (variant === 'a' || variant === 'e') {
    const { default: Fastify } = (await import(pathToFileURL(join(REPO, 'node_modules/fastify/fastify.js')).href)) as {
      default: (opts?: object) => {
        get(path: string, handler: () => Promise<unknown>): void;
        listen(opts: object): Promise<string>;
        server: { address(): { port: number } };
      };
    };
    let options = {};
    if (variant === 'e') {
      const { pino } = (await import(pathToFileURL(join(REPO, 'node_modules/pino/pino.js')).href)) as { pino: (o: object) => object };
      const { LogController } = (await import(pathToFileURL(join(REPO, 'node_modules/fastify/fastify.js')).href)) as {
        LogController: new (o: object) => object;
      };
      options = { loggerInstance: pino({ level: 'warn' }), logController: new LogController({ disableRequestLogging: true }) };
    }
    const app = Fastify(options);
    app.get('/', async () => ({ hello: 'world' }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    return app.server.address().port;
  }
  {
    const dir = megaProject(`bench${variant}`, variant === 'c' || variant === 'd', variant !== 'd');
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    const kernelModule = (await import(pathToFileURL(join(REPO, 'kernel/dist/index.js')).href)) as {
      loadKernel(opts: object): Promise<{ start(): Promise<void>; use(name: string): { port: number } }>;
    };
    const kernel = await kernelModule.loadKernel({ dir, env: 'production' });
    await kernel.start();
    return kernel.use('http').port;
  }
}

async function serve(variants: Variant[]): Promise<void> {
  const ports: string[] = [];
  for (const v of variants) ports.push(`${v}=${await serveOne(v)}`);
  // A clean exit on SIGINT, so `node --cpu-prof scripts/bench-http.ts --serve c` writes its profile.
  process.on('SIGINT', () => process.exit(0));
  // The parent asks for this process's CPU time around each run: one line in, one line out.
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', () => {
    const { user, system } = process.cpuUsage();
    process.stdout.write(`CPU ${user + system}\n`);
  });
  process.stdout.write(`READY ${ports.join(' ')}\n`);
}

interface Server {
  variant: Variant;
  port: number;
  child: ChildProcess;
  cpu(): Promise<number>;
}

function start(variants: Variant[]): Promise<Server[]> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve', variants.join(',')], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, NODE_ENV: 'production' },
    });
    let out = '';
    let ready = false;
    let waiting: ((us: number) => void) | undefined;
    const cpu = () =>
      new Promise<number>((r) => {
        waiting = r;
        child.stdin?.write('cpu\n');
      });
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      let nl = out.indexOf('\n');
      while (nl !== -1) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        const used = /^CPU (\d+)/.exec(line);
        if (line.startsWith('READY ') && !ready) {
          ready = true;
          const ports = new Map(
            line
              .slice(6)
              .split(' ')
              .map((kv) => kv.split('=') as [string, string]),
          );
          resolvePromise(variants.map((variant) => ({ variant, port: Number(ports.get(variant)), child, cpu })));
        } else if (used && waiting) {
          const w = waiting;
          waiting = undefined;
          w(Number(used[1]));
        }
        nl = out.indexOf('\n');
      }
    });
    child.on('exit', (code) => {
      if (!ready) reject(new Error(`server ${variants.join(',')} exited with ${code} before it was ready`));
    });
  });
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

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

async function main(): Promise<void> {
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const connections = Number(process.env.BENCH_CONNECTIONS ?? 32);
  const warmup = Number(process.env.BENCH_WARMUP_SECONDS ?? 2);
  const servers: Server[] = [];
  try {
    if (process.env.BENCH_ISOLATED) for (const v of RUN) servers.push(...(await start([v])));
    else servers.push(...(await start(RUN)));
    console.log(
      `bench:http  ${rounds} rounds x ${seconds} s, ${connections} connections, warm-up ${warmup} s each; ${process.env.BENCH_ISOLATED ? 'one process per variant' : 'one server process'}; node ${process.version}`,
    );
    for (const s of servers) {
      const check = await fetch(`http://127.0.0.1:${s.port}/`).then((r) => r.text());
      console.log(`  ${s.variant}) ${VARIANTS[s.variant].padEnd(28)} GET / -> ${check}`);
      await load(s.port, warmup, connections);
    }
    const rates: Record<Variant, number[]> = { a: [], b: [], c: [], d: [], e: [] };
    const cpus: Record<Variant, number[]> = { a: [], b: [], c: [], d: [], e: [] };
    for (let round = 1; round <= rounds; round++) {
      const line: string[] = [];
      // The order rotates every round so that no variant always runs first (or right after another).
      const order = servers.map((_, i) => servers[(i + round - 1) % servers.length] as Server);
      for (const s of order) {
        const before = await s.cpu();
        const r = await load(s.port, seconds, connections);
        const used = (await s.cpu()) - before;
        if (r.non2xx || r.errors) throw new Error(`${s.variant}: ${r.non2xx} non-2xx answers and ${r.errors} errors`);
        rates[s.variant].push(r.requests.average);
        const perRequest = used / Math.max(1, r.requests.total);
        cpus[s.variant].push(perRequest);
        line.push(`${s.variant} ${Math.round(r.requests.average)} req/s ${perRequest.toFixed(1)} us cpu/req`);
      }
      console.log(`  round ${round}: ${line.join(' | ')}`);
    }
    const rate = (v: Variant) => median(rates[v]);
    // Contention from other processes only ever adds CPU time: the best round is the least disturbed.
    const cpu = (v: Variant) => Math.min(...cpus[v]);
    const top = (v: Variant) => Math.max(...rates[v]);
    console.log(`\n${''.padEnd(32)}${'req/s (median)'.padStart(15)}${'req/s (best)'.padStart(14)}${'cpu us/req (best)'.padStart(20)}`);
    for (const v of RUN) {
      console.log(
        `  ${v}) ${VARIANTS[v].padEnd(28)}${String(Math.round(rate(v))).padStart(15)}${String(Math.round(top(v))).padStart(14)}${cpu(v).toFixed(2).padStart(20)}`,
      );
    }
    const verdict = (x: number, goal: number) => (x >= goal ? 'met' : 'MISSED');
    const ba = rate('b') / rate('a');
    const ca = rate('c') / rate('a');
    // Each round measures a, b, c back to back: the ratio within a round shares that round's conditions.
    const paired = (v: Variant) => median(rates[v].map((x, i) => x / (rates.a[i] as number)));
    console.log(
      `\nper-round paired ratios (median): b/a = ${paired('b').toFixed(3)}, c/a = ${paired('c').toFixed(3)}${RUN.includes('d') ? `, d/a = ${paired('d').toFixed(3)}, e/a = ${paired('e').toFixed(3)}, b/e = ${median(rates.b.map((x, i) => x / (rates.e[i] as number))).toFixed(3)}` : ''}`,
    );
    console.log(`best-round ratios: b/a = ${(top('b') / top('a')).toFixed(3)}, c/a = ${(top('c') / top('a')).toFixed(3)}`);
    const bac = cpu('a') / cpu('b');
    const cac = cpu('a') / cpu('c');
    console.log(
      `\nb/a = ${ba.toFixed(3)} by req/s, ${bac.toFixed(3)} by cpu/req  (goal >= 0.97: ${verdict(ba, 0.97)} / ${verdict(bac, 0.97)})`,
    );
    console.log(
      `c/a = ${ca.toFixed(3)} by req/s, ${cac.toFixed(3)} by cpu/req  (goal >= 0.90: ${verdict(ca, 0.9)} / ${verdict(cac, 0.9)})`,
    );
    if (RUN.includes('d')) {
      console.log(
        `d/a = ${(rate('d') / rate('a')).toFixed(3)} by req/s, ${(cpu('a') / cpu('d')).toFixed(3)} by cpu/req  (c with helmet: false)`,
      );
    }
  } finally {
    for (const s of servers) s.child.kill('SIGKILL');
  }
}

const at = process.argv.indexOf('--serve');
if (at !== -1) {
  serve((process.argv[at + 1] ?? '').split(',') as Variant[]).catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
} else {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
