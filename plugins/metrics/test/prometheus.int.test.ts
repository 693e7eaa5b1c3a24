/**
 * @mega/metrics against real receivers: `mega start` processes (one process, and `--workers 2`)
 * scraped by the real Prometheus that scripts/services.sh runs (file_sd targets written here, 1 s
 * scrape interval), queried through its HTTP API; scrapes during shutdown; a disabled plugin; and
 * the database pool gauges against the real PostgreSQL and MongoDB (FerretDB).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootProject, stopAll, writeProject } from '@mega/testing';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { freePort, httpGet, killAll, megaStart, runMega, until } from '../../../scripts/test/procs.js';
import { serviceEnv } from '../../../scripts/test/service-env.js';
import { parseExposition } from '../src/index.js';
import { value } from './helpers.js';

afterEach(async () => {
  killAll();
  await stopAll();
});

/** PROMETHEUS_URL and PROMETHEUS_TARGETS_DIR from the environment, else from `scripts/services.sh env`; missing is a failure. */
function prometheus(): { url: string; targets: string } {
  let url = process.env.PROMETHEUS_URL;
  let targets = process.env.PROMETHEUS_TARGETS_DIR;
  if (!url || !targets) {
    const out = execFileSync('bash', [join(import.meta.dirname, '../../../scripts/services.sh'), 'env'], { encoding: 'utf8' });
    url ??= /^PROMETHEUS_URL=(.*)$/m.exec(out)?.[1];
    targets ??= /^PROMETHEUS_TARGETS_DIR=(.*)$/m.exec(out)?.[1];
  }
  if (!url || !targets) throw new Error('PROMETHEUS_URL / PROMETHEUS_TARGETS_DIR unknown: run scripts/services.sh up prometheus');
  return { url, targets };
}

const prom = prometheus();
const written: string[] = [];
afterAll(() => {
  for (const f of written) rmSync(f, { force: true });
});

/** Makes Prometheus scrape 127.0.0.1:<port> with the label mega_test=<id> (a file_sd target file). */
function scrapeTarget(port: number): string {
  const id = `t${randomBytes(5).toString('hex')}`;
  mkdirSync(prom.targets, { recursive: true });
  const file = join(prom.targets, `${id}.json`);
  writeFileSync(file, JSON.stringify([{ targets: [`127.0.0.1:${port}`], labels: { mega_test: id } }]));
  written.push(file);
  return id;
}

/** An instant query's results as [labels, value]. */
async function query(q: string): Promise<Array<[Record<string, string>, number]>> {
  const res = await fetch(`${prom.url}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = (await res.json()) as {
    status: string;
    data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
  };
  if (body.status !== 'success') throw new Error(`query ${q} failed: ${JSON.stringify(body)}`);
  return (body.data?.result ?? []).map((r) => [r.metric, Number(r.value[1])]);
}

/** Polls Prometheus until the query's single value satisfies `ok`; returns it. */
async function promValue(q: string, ok: (v: number) => boolean, what: string, timeoutMs = 30_000): Promise<number> {
  let last: number | undefined;
  try {
    return await until(
      async () => {
        const r = await query(q);
        last = r.length === 1 ? (r[0] as [unknown, number])[1] : undefined;
        return last !== undefined && ok(last) ? last : undefined;
      },
      timeoutMs,
      what,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message} (last value of ${q}: ${last})`);
  }
}

const ROUTES = `export default (r: any) => {
  r.http.get('/hello', async () => ({ hello: 'world' }));
  r.http.get('/pid', async () => ({ pid: process.pid }));
};
`;

function app(metrics = ''): string {
  return writeProject(
    {
      'mega.config.ts': `export default { plugins: ['@mega/http', '@mega/metrics'], server: { host: '127.0.0.1' }${metrics ? `, metrics: ${metrics}` : ''} };\n`,
      'apps/web/app.config.ts': 'export default {};\n',
      'apps/web/routes/index.ts': ROUTES,
    },
    { prefix: 'mega-metrics-int-' },
  );
}

/** Requests on fresh connections, a few at a time (in a cluster, the balancer spreads them). */
async function hit(port: number, path: string, n: number): Promise<Array<{ status: number; json: any }>> {
  const out: Array<{ status: number; json: any }> = [];
  for (let i = 0; i < n; i += 10) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(10, n - i) }, () => httpGet(port, path)))));
  }
  return out;
}

/**
 * Scrapes /metrics in 4 loops until `stop` resolves and counts the outcomes. A clean one is: 200
 * with a parseable exposition, 503 (ours while the cluster cannot answer, or Fastify's while the
 * server closes), or a refused/reset connection; anything else is reported as `bad: ...`.
 */
async function scrapeUntil(port: number, stop: Promise<unknown>): Promise<Record<string, number>> {
  let done = false;
  void stop.then(() => (done = true));
  const seen: Record<string, number> = {};
  const loop = async () => {
    while (!done) {
      let key: string;
      try {
        const r = await httpGet(port, '/metrics');
        if (r.status === 200)
          key = (value(parseExposition(r.body), 'mega_http_requests_total') ?? 0) > 0 ? '200' : `bad: 200 ${r.body.slice(0, 200)}`;
        else if (r.status === 503) key = `503 ${r.json?.error?.code ?? r.json?.code ?? r.json?.error ?? ''}`;
        else key = `bad: ${r.status} ${r.body.slice(0, 200)}`;
      } catch (error) {
        const code = (error as { code?: string }).code ?? (error as Error).message;
        key = ['ECONNREFUSED', 'ECONNRESET', 'socket hang up'].includes(code) ? code : `bad: ${code}`;
      }
      seen[key] = (seen[key] ?? 0) + 1;
    }
  };
  await Promise.all([loop(), loop(), loop(), loop()]);
  return seen;
}

describe('@mega/metrics scraped by a real Prometheus', () => {
  it('one process: 100 requests are 100 in Prometheus, with the histogram beside them', async () => {
    const server = await megaStart(app(), { MEGA_LOG_LEVEL: 'warn' });
    const id = scrapeTarget(server.port);
    expect((await hit(server.port, '/hello', 100)).every((r) => r.status === 200)).toBe(true);
    const sel = `mega_test="${id}",route="/hello",status_class="2xx"`;
    await promValue(`sum(mega_http_requests_total{${sel}})`, (v) => v === 100, '100 requests in Prometheus');
    expect(await promValue(`sum(mega_http_request_duration_seconds_count{${sel}})`, (v) => v === 100, 'histogram count')).toBe(100);
    expect(await promValue(`sum(mega_http_request_duration_seconds_bucket{${sel},le="+Inf"})`, (v) => v === 100, '+Inf bucket')).toBe(100);
    const p99 = await promValue(
      `histogram_quantile(0.99, sum by (le) (mega_http_request_duration_seconds_bucket{${sel}}))`,
      (v) => Number.isFinite(v),
      'a p99',
    );
    expect(p99).toBeGreaterThan(0);
    expect(await promValue(`up{mega_test="${id}"}`, (v) => v === 1, 'target up')).toBe(1);
    expect(await promValue(`count(mega_process_memory_bytes{mega_test="${id}",type="rss"})`, (v) => v >= 1, 'process series')).toBe(1);
  });

  it('--workers 2: a scrape on either worker is the merged view; 100 requests over both workers sum to 100; a replaced worker does not reset the counters', async () => {
    const port = await freePort();
    const run = runMega(['start', '--workers', '2', '--port', String(port)], app(), { MEGA_LOG_LEVEL: 'warn' });
    await run.waitFor(/worker \d ready[\s\S]*worker \d ready/, 60_000);
    const id = scrapeTarget(port);
    const pids = new Set<number>();
    const answers = await hit(port, '/pid', 100);
    for (const r of answers) pids.add(r.json.data.pid);
    expect(pids.size).toBe(2);
    const sel = `mega_test="${id}",route="/pid"`;
    await promValue(`sum(mega_http_requests_total{${sel}})`, (v) => v === 100, '100 requests across both workers');
    await promValue(`mega_metrics_cluster_workers{mega_test="${id}",state="reporting"}`, (v) => v === 2, 'both workers reporting');
    // Process series stay per worker.
    const rss = await until(
      async () => {
        const r = await query(`mega_process_memory_bytes{mega_test="${id}",type="rss"}`);
        return r.length === 2 ? r : undefined;
      },
      30_000,
      'one rss series per worker',
    );
    expect(rss.map(([m]) => m.worker).sort()).toEqual(['1', '2']);
    // Each worker alone answers the same merged count (the scrape does not land on "one random worker").
    for (let i = 0; i < 6; i++) {
      const text = (await httpGet(port, '/metrics')).body;
      expect(value(parseExposition(text), 'mega_http_requests_total', { route: '/pid' })).toBe(100);
    }

    // A worker dies and is replaced: the cluster counter keeps what it had counted.
    const victim = [...pids][0] as number;
    process.kill(victim, 'SIGKILL');
    await run.waitFor(new RegExp(`pid=${victim} exited[\\s\\S]*worker \\d ready`), 60_000);
    await hit(port, '/pid', 10);
    await promValue(`sum(mega_http_requests_total{${sel}})`, (v) => v === 110, '110 after the replacement');
    expect(await promValue(`resets(mega_http_requests_total{${sel}}[5m])`, () => true, 'resets')).toBe(0);

    run.child.kill('SIGTERM');
    expect((await run.exited).code).toBe(0);
  });

  it('a scrape during shutdown gets a clean answer or a refused connection, never a hang; the process exits 0 (single and --workers 2)', async () => {
    for (const workers of [0, 2]) {
      const port = await freePort();
      const args = ['start', '--port', String(port), ...(workers ? ['--workers', String(workers)] : [])];
      const run = runMega(args, app(), { MEGA_LOG_LEVEL: 'warn' });
      await run.waitFor(workers ? /worker \d ready[\s\S]*worker \d ready/ : /ready in \d+ ms/, 60_000);
      await hit(port, '/hello', 20);
      const exited = run.exited;
      const scraping = scrapeUntil(port, exited);
      // Scrapes are flowing before the signal.
      await until(async () => ((await httpGet(port, '/metrics')).status === 200 ? true : undefined), 10_000, 'a first scrape');
      run.child.kill('SIGTERM');
      const outcome = await Promise.race([exited, new Promise((r) => setTimeout(() => r('hung'), 30_000))]);
      expect(outcome, `workers=${workers}: ${run.out().slice(-3000)}`).toMatchObject({ code: 0 });
      const seen = await scraping;
      expect(seen['200']).toBeGreaterThan(0);
      expect(Object.keys(seen).filter((k) => k.startsWith('bad'))).toEqual([]);
      expect(run.out()).not.toMatch(/uncaught|unhandled/i);
    }
  });

  it('disabled: no /metrics on the app port (Prometheus sees the target down), the app serves as before', async () => {
    const server = await megaStart(app('{ enabled: false }'), { MEGA_LOG_LEVEL: 'warn' });
    const id = scrapeTarget(server.port);
    expect((await httpGet(server.port, '/metrics')).status).toBe(404);
    expect((await httpGet(server.port, '/hello')).json).toEqual({ data: { hello: 'world' } });
    expect(await promValue(`up{mega_test="${id}"}`, (v) => v === 0, 'the target scraped and down')).toBe(0);
  });
});

describe("@mega/metrics: Prometheus' own linter", () => {
  it('every group passes promtool check metrics (no lint problem, e.g. a quantile label outside a summary)', async () => {
    const dir = writeProject(
      {
        'mega.config.ts': `export default {
  plugins: ['@mega/http', '@mega/ws', '@mega/jobs', '@mega/metrics'],
  metrics: { include: ['http', 'ws', 'jobs', 'codec', 'process', 'gc'] },
};\n`,
        'apps/lint/app.config.ts': 'export default {};\n',
        'apps/lint/routes/index.ts': `export default (r: any) => { r.http.get('/users/:id', async () => 'ok'); };\n`,
      },
      { prefix: 'mega-metrics-lint-' },
    );
    const b = await bootProject(dir);
    expect((await b.inject('/users/1')).status).toBe(200);
    expect((await b.inject('/nope')).status).toBe(404);
    // The event-loop series appears once libuv took a sample (10 ms resolution) since the previous scrape.
    const text = await until(
      async () => {
        const t = (await b.inject('/metrics')).text;
        return t.includes('mega_process_event_loop_lag_seconds{') ? t : undefined;
      },
      10_000,
      'the event-loop lag series',
    );
    // Debian's prometheus package (scripts/services.d/prometheus.sh) ships promtool; exit 3 means lint problems.
    let lint: { status: number; out: string };
    try {
      lint = { status: 0, out: execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', stdio: 'pipe' }) };
    } catch (error) {
      const e = error as { status: number; stdout: string; stderr: string };
      lint = { status: e.status, out: `${e.stdout}${e.stderr}` };
    }
    expect(lint).toEqual({ status: 0, out: '' });
  });
});

describe('@mega/metrics: database pools and caches (real PostgreSQL, MongoDB, Redis)', () => {
  it('pool connections in use and idle, waiters, operations and their latency per alias', async () => {
    const env = serviceEnv();
    const dir = writeProject(
      {
        'mega.config.ts': `export default {
  plugins: ['@mega/http', '@mega/db-postgres', '@mega/db-mongo', '@mega/cache-redis', '@mega/metrics'],
  services: {
    dbs: { primary: { driver: 'postgres', url: ${JSON.stringify(env.DATABASE_URL)}, max: 2 }, docs: { driver: 'mongodb', url: ${JSON.stringify(env.MONGO_URL)} } },
    caches: { default: { driver: 'redis', url: ${JSON.stringify(env.REDIS_URL)} } },
  },
};\n`,
        'apps/dbm/app.config.ts': 'export default {};\n',
        'apps/dbm/routes/index.ts': `export default (r: any) => {
  r.http.get('/sleep', async (_q: any, _r: any, ctx: any) => (await ctx.db('primary').query('select pg_sleep(0.3) as s')).rowCount);
  r.http.get('/doc', async (_q: any, _r: any, ctx: any) => ctx.db('docs').collection('metrics_probe').countDocuments());
  r.http.get('/cache', async (_q: any, _r: any, ctx: any) => { await ctx.cache().set('metrics:probe', 1, { ttlMs: 5000 }); return ctx.cache().get('metrics:probe'); });
};\n`,
      },
      { prefix: 'mega-metrics-db-' },
    );
    const b = await bootProject(dir);
    // Three slow queries on a pool of two: two connections busy, one query waiting.
    const slow = Promise.all([b.inject('/sleep'), b.inject('/sleep'), b.inject('/sleep')]);
    const busy = await until(
      async () => {
        const ex = parseExposition((await b.inject('/metrics')).text);
        const inUse = value(ex, 'mega_db_pool_connections', { alias: 'primary', driver: 'postgres', state: 'in_use' });
        return inUse === 2 && value(ex, 'mega_db_pool_waiting', { alias: 'primary' }) === 1 ? ex : undefined;
      },
      10_000,
      'two connections in use and one waiter',
    );
    expect(value(busy, 'mega_db_pool_connections', { alias: 'primary', state: 'idle' })).toBe(0);
    expect((await slow).every((r) => r.status === 200)).toBe(true);
    expect((await b.inject('/doc')).status).toBe(200);
    expect((await b.inject('/cache')).data).toBe(1);
    const ex = parseExposition((await b.inject('/metrics')).text);
    expect(value(ex, 'mega_db_pool_connections', { alias: 'primary', state: 'in_use' })).toBe(0);
    expect(value(ex, 'mega_db_pool_connections', { alias: 'primary', state: 'idle' })).toBe(2);
    expect(value(ex, 'mega_db_pool_waiting', { alias: 'primary' })).toBe(0);
    expect(value(ex, 'mega_db_operations_total', { alias: 'primary', driver: 'postgres' })).toBeGreaterThanOrEqual(3);
    expect(value(ex, 'mega_db_operation_duration_seconds_bucket', { alias: 'primary', le: '0.25' })).toBe(
      (value(ex, 'mega_db_operation_duration_seconds_count', { alias: 'primary' }) as number) - 3,
    );
    expect(value(ex, 'mega_db_operations_total', { alias: 'docs', driver: 'mongodb' })).toBeGreaterThanOrEqual(1);
    expect(value(ex, 'mega_db_pool_connections', { alias: 'docs', driver: 'mongodb', state: 'idle' })).toBeGreaterThanOrEqual(1);
    expect(value(ex, 'mega_db_pool_waiting', { alias: 'docs' })).toBe(0);
    expect(value(ex, 'mega_cache_operations_total', { alias: 'default', driver: 'redis' })).toBeGreaterThanOrEqual(2);
    expect(value(ex, 'mega_cache_operation_duration_seconds_count', { alias: 'default', driver: 'redis' })).toBeGreaterThanOrEqual(2);
  });
});
