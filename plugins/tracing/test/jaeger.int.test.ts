/**
 * @mega/tracing against a real Jaeger (scripts/services.sh, OTLP/HTTP in, query API out), real NATS
 * JetStream and real PostgreSQL: an HTTP request enqueues a job, a `mega worker` process runs it and
 * queries Postgres, and Jaeger holds one trace HTTP -> job.enqueue -> job.run (the worker's process)
 * -> SELECT, with log lines on both sides carrying its trace id. Bus messages carry the trace to
 * the process that handles them (NATS headers; the primary's relay under `--workers`); Kysely
 * statements on a Postgres pool and on MariaDB are client spans. Also: a malformed traceparent
 * starts a new root; an unreachable endpoint leaves a `mega start` process serving, with one warning.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { bootProject, stopAll, waitUntil, writeProject } from '@mega/testing';
import type { Tracing } from '@mega/tracing';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { freePort, httpGet, killAll, megaStart, runMega } from '../../../scripts/test/procs.js';
import { serviceEnv } from '../../../scripts/test/service-env.js';

const env = serviceEnv();

/** JAEGER_* from the environment (`npm test` exports them) or from `scripts/services.sh env`. */
function jaegerEnv(): { otlp: string; query: string } {
  let otlp = process.env.JAEGER_OTLP_URL;
  let query = process.env.JAEGER_QUERY_URL;
  if (!otlp || !query) {
    const out = execFileSync('bash', [join(import.meta.dirname, '../../../scripts/services.sh'), 'env'], { encoding: 'utf8' });
    otlp ??= /^JAEGER_OTLP_URL=(.*)$/m.exec(out)?.[1];
    query ??= /^JAEGER_QUERY_URL=(.*)$/m.exec(out)?.[1];
  }
  if (!otlp || !query) throw new Error('JAEGER_OTLP_URL / JAEGER_QUERY_URL are not set and scripts/services.sh env did not print them');
  return { otlp, query };
}
const jaeger = jaegerEnv();

const RUN = `T${process.pid}`;
const SERVICE = `mega-tracing-it-${process.pid}`;
afterEach(async () => {
  killAll();
  await stopAll();
});
afterAll(async () => {
  const nc = await connect({ servers: env.NATS_URL });
  const jsm = await jetstreamManager(nc);
  for await (const s of jsm.streams.list()) if (s.config.name.startsWith(`${RUN}_`)) await jsm.streams.delete(s.config.name);
  await nc.close();
});

/** One span of a Jaeger trace (its v1 query API's JSON), with the process that sent it. */
interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: Array<{ refType: string; traceID: string; spanID: string }>;
  tags: Array<{ key: string; value: unknown }>;
  processID: string;
}
interface JaegerTrace {
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string; tags: Array<{ key: string; value: unknown }> }>;
}

async function jaegerTrace(traceId: string): Promise<JaegerTrace | undefined> {
  const res = await fetch(`${jaeger.query}/api/traces/${traceId}`);
  if (res.status === 404) return undefined;
  const body = (await res.json()) as { data?: JaegerTrace[] };
  return body.data?.[0];
}

const tag = (tags: Array<{ key: string; value: unknown }>, key: string) => tags.find((t) => t.key === key)?.value;
const parentOf = (s: JaegerSpan) => s.references.find((r) => r.refType === 'CHILD_OF')?.spanID;

const JOB = `
import { MegaJob } from '@mega/jobs';
export class Report extends MegaJob {
  async run(p: { n: number }, ctx: any) {
    const { rows } = await ctx.db().query('select $1::int + 1 as next', [p.n]);
    ctx.log.info({ next: rows[0].next }, 'report built');
  }
}
`;
const ROUTES = `
export default (r: any) => {
  r.http.post('/reports', async (req: any, _reply: any, ctx: any) => {
    ctx.log.info('enqueueing a report');
    return { id: await ctx.jobs.enqueue('Report', { n: req.body.n }) };
  });
  r.http.get('/hello', async () => ({ hello: 'world' }));
  r.http.get('/docs/:sku', async (req: any, _reply: any, ctx: any) => {
    const items = ctx.db('docs').collection('tracing_items');
    await items.updateOne({ sku: req.params.sku }, { $set: { sku: req.params.sku } }, { upsert: true });
    return { found: (await items.findOne({ sku: req.params.sku }))?.sku };
  });
  r.http.get('/tracing/stats', async (_req: any, _reply: any, ctx: any) => ctx.tracer.stats());
};
`;

let n = 0;
function project(tracing: Record<string, unknown>): string {
  const config = {
    plugins: ['@mega/http', '@mega/bus', '@mega/jobs', '@mega/db-postgres', '@mega/db-mongo', '@mega/tracing'],
    services: {
      buses: { default: { driver: 'nats', url: env.NATS_URL } },
      dbs: { primary: { driver: 'postgres', url: env.DATABASE_URL }, docs: { driver: 'mongodb', url: env.MONGO_URL } },
    },
    jobs: { streamPrefix: `${RUN}_${++n}`, inProcess: false },
    tracing: { serviceName: SERVICE, batch: { delayMs: 100 }, ...tracing },
  };
  return writeProject(
    {
      'mega.config.ts': `export default ${JSON.stringify(config)};\n`,
      'apps/shop/app.config.ts': 'export default {};\n',
      'apps/shop/routes/index.ts': ROUTES,
      'apps/shop/jobs/report.ts': JOB,
    },
    { prefix: 'mega-tracing-it-' },
  );
}

const BUS_ROUTES = `
export default (r: any) => {
  // Only the responder process subscribes: a NATS request must cross to it.
  if (process.env.BUS_RESPONDER) {
    r.app.bus.on('price.quote', async (p: any) => {
      r.app.log.info({ qty: p.qty }, 'quoting');
      return p.qty * 3;
    });
    r.app.bus.on('order.placed', (p: any) => r.app.log.info({ order: p.id }, 'order seen'));
  }
  r.http.get('/quote', async (_req: any, _reply: any, ctx: any) => {
    await ctx.bus.emit('order.placed', { id: 7 });
    return { price: await ctx.bus.request('price.quote', { qty: 2 }) };
  });
  r.http.get('/sql', async (_req: any, _reply: any, ctx: any) => {
    const pg = ctx.db().kysely();
    const a = await pg.selectNoFrom((eb: any) => eb.val(5).as('n')).executeTakeFirst();
    await pg.transaction().execute((trx: any) => trx.selectNoFrom((eb: any) => eb.val(6).as('n')).execute());
    const b = await ctx.db('maria').kysely().selectNoFrom((eb: any) => eb.val(8).as('n')).executeTakeFirst();
    return { a: Number(a.n), b: Number(b.n) };
  });
  // Under --workers (cluster bus): every worker subscribes; the primary relays to all of them.
  r.app.bus.on('note.added', () => r.app.log.info({ pid: process.pid }, 'note seen'));
  r.http.get('/note', async (_req: any, _reply: any, ctx: any) => {
    await ctx.bus.emit('note.added', { n: 1 });
    return { pid: process.pid };
  });
};
`;

/** A project whose bus runs on NATS (or, with `cluster`, on the primary's relay under --workers). */
function busProject(cluster = false): string {
  const config = {
    plugins: ['@mega/http', '@mega/bus', '@mega/db-postgres', '@mega/db-mariadb', '@mega/tracing'],
    services: {
      ...(cluster ? {} : { buses: { default: { driver: 'nats', url: env.NATS_URL } } }),
      dbs: { primary: { driver: 'postgres', url: env.DATABASE_URL }, maria: { driver: 'mariadb', url: env.MARIADB_URL } },
    },
    tracing: { serviceName: SERVICE, endpoint: `${jaeger.otlp}/v1/traces`, batch: { delayMs: 100 } },
  };
  return writeProject(
    {
      'mega.config.ts': `export default ${JSON.stringify(config)};\n`,
      // Subjects of this run only (the NATS server is shared).
      'apps/shop/app.config.ts': `export default { bus: { prefix: '${RUN}_${++n}.' } };\n`,
      'apps/shop/routes/index.ts': BUS_ROUTES,
    },
    { prefix: 'mega-tracing-bus-' },
  );
}

const pidOf = (t: JaegerTrace, s: JaegerSpan) => Number(tag(t.processes[s.processID]?.tags ?? [], 'process.pid'));

describe('@mega/tracing with Jaeger', () => {
  it('one trace: HTTP -> job.enqueue -> job.run on a worker process -> SELECT; logs on both sides carry the trace id', async () => {
    const dir = project({ endpoint: `${jaeger.otlp}/v1/traces` });
    const worker = runMega(['worker'], dir);
    const pid = Number((await worker.waitFor(/mega worker pid (\d+)/, 30_000))[1]);
    const web = await bootProject(dir);
    const traceId = randomBytes(16).toString('hex');
    const callerSpan = randomBytes(8).toString('hex');
    const res = await web.inject('/reports', { json: { n: 41 }, headers: { traceparent: `00-${traceId}-${callerSpan}-01` } });
    expect(res.status).toBe(200);
    await worker.waitFor(/"msg":"report built"/, 20_000);
    await web.kernel.use<Tracing>('tracing').flush();

    const trace = await waitUntil(
      async () => {
        const t = await jaegerTrace(traceId);
        return t?.spans.some((s) => s.operationName === 'SELECT') && t.spans.some((s) => s.operationName === 'POST /reports')
          ? t
          : undefined;
      },
      { what: `trace ${traceId} with all its spans in Jaeger`, timeoutMs: 20_000 },
    );
    const by = (name: string) => {
      const found = trace.spans.filter((s) => s.operationName === name);
      expect(found, name).toHaveLength(1);
      return found[0] as JaegerSpan;
    };
    const http = by('POST /reports');
    const enqueue = by('job.enqueue Report');
    const run = by('job.run Report');
    const query = trace.spans.find((s) => s.operationName === 'SELECT' && parentOf(s) === run.spanID) as JaegerSpan;
    expect(query, 'SELECT under job.run').toBeDefined();
    expect(parentOf(http)).toBe(callerSpan);
    expect(parentOf(enqueue)).toBe(http.spanID);
    expect(parentOf(run)).toBe(enqueue.spanID);
    expect(tag(http.tags, 'http.response.status_code')).toBe(200);
    expect(tag(run.tags, 'mega.job.id')).toBe(res.data.id);
    expect(tag(query.tags, 'db.query.text')).toBe('select $1::int + 1 as next');
    // Two processes of one service: the run and its query came from the worker.
    const proc = (s: JaegerSpan) => trace.processes[s.processID];
    expect(proc(http)?.serviceName).toBe(SERVICE);
    expect(proc(run)?.serviceName).toBe(SERVICE);
    expect(Number(tag(proc(http)?.tags ?? [], 'process.pid'))).toBe(process.pid);
    expect(Number(tag(proc(run)?.tags ?? [], 'process.pid'))).toBe(pid);
    expect(Number(tag(proc(query)?.tags ?? [], 'process.pid'))).toBe(pid);
    // Log correlation: the handler's line here, the job's line in the worker's output.
    expect(web.findLogs('enqueueing a report')[0]).toMatchObject({ trace_id: traceId, span_id: http.spanID });
    const jobLine = worker
      .out()
      .split('\n')
      .filter((l) => l.includes('"report built"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)[0];
    expect(jobLine).toMatchObject({ trace_id: traceId, span_id: run.spanID, next: 42 });
    console.log(
      `jaeger trace ${traceId}:\n${trace.spans
        .map(
          (s) =>
            `  ${s.operationName} [pid ${tag(trace.processes[s.processID]?.tags ?? [], 'process.pid')}] span ${s.spanID} <- ${parentOf(s) ?? 'root'}`,
        )
        .join('\n')}`,
    );
  });

  it('MongoDB commands are client spans of the request that issued them (no command document in them)', async () => {
    const web = await bootProject(project({ endpoint: `${jaeger.otlp}/v1/traces` }));
    const traceId = randomBytes(16).toString('hex');
    const res = await web.inject('/docs/sku-1', { headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` } });
    expect(res.data).toEqual({ found: 'sku-1' });
    await web.kernel.use<Tracing>('tracing').flush();
    const trace = await waitUntil(
      async () => {
        const t = await jaegerTrace(traceId);
        return t?.spans.some((s) => s.operationName === 'find tracing_items') ? t : undefined;
      },
      { what: 'the mongo spans in Jaeger', timeoutMs: 20_000 },
    );
    const http = trace.spans.find((s) => s.operationName === 'GET /docs/:sku') as JaegerSpan;
    for (const name of ['update tracing_items', 'find tracing_items']) {
      const span = trace.spans.find((s) => s.operationName === name) as JaegerSpan;
      expect(span, name).toBeDefined();
      expect(parentOf(span), name).toBe(http.spanID);
      expect(tag(span.tags, 'db.system.name')).toBe('mongodb');
      expect(tag(span.tags, 'mega.db.alias')).toBe('docs');
      expect(JSON.stringify(span.tags)).not.toContain('sku-1');
    }
  });

  it('bus messages over NATS carry the trace: publish and request in this process, handle in the responder process', async () => {
    const dir = busProject();
    const responder = await megaStart(dir, { BUS_RESPONDER: '1' });
    const web = await bootProject(dir);
    const traceId = randomBytes(16).toString('hex');
    const res = await web.inject('/quote', { headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` } });
    expect(res.data).toEqual({ price: 6 });
    await responder.waitFor(/"msg":"order seen"/, 10_000);
    await web.kernel.use<Tracing>('tracing').flush();
    const trace = await waitUntil(
      async () => {
        const t = await jaegerTrace(traceId);
        return t && t.spans.filter((s) => s.operationName.startsWith('bus.handle')).length === 2 ? t : undefined;
      },
      { what: 'both bus.handle spans of the responder in the trace', timeoutMs: 20_000 },
    );
    const one = (name: string) => trace.spans.find((s) => s.operationName === name) as JaegerSpan;
    const http = one('GET /quote');
    const publish = one('bus.publish order.placed');
    const request = one('bus.request price.quote');
    const handleOrder = one('bus.handle order.placed');
    const handleQuote = one('bus.handle price.quote');
    expect(parentOf(publish)).toBe(http.spanID);
    expect(parentOf(request)).toBe(http.spanID);
    expect(parentOf(handleOrder)).toBe(publish.spanID);
    expect(parentOf(handleQuote)).toBe(request.spanID);
    expect(tag(handleQuote.tags, 'messaging.system')).toBe('nats');
    expect(pidOf(trace, http)).toBe(process.pid);
    expect(pidOf(trace, handleQuote)).toBe(responder.child.pid);
    expect(pidOf(trace, handleOrder)).toBe(responder.child.pid);
    // The responder's log line inside the handler carries the caller's trace.
    const quoting = responder
      .out()
      .split('\n')
      .filter((l) => l.includes('"msg":"quoting"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)[0];
    expect(quoting).toMatchObject({ trace_id: traceId, span_id: handleQuote.spanID });
  });

  it('the cluster bus (--workers 2) carries the trace through the primary to every worker that handles the message', async () => {
    const dir = busProject(true);
    const port = await freePort();
    const cluster = runMega(['start', '--workers', '2', '--port', String(port)], dir);
    await cluster.waitFor(/worker 1 ready pid=(\d+)/, 30_000);
    await cluster.waitFor(/worker 2 ready pid=(\d+)/, 30_000);
    // Each worker subscribes once its routes loaded: wait until one emit reaches both.
    const pids = await waitUntil(
      async () => {
        await httpGet(port, '/note');
        const seen = new Set([...cluster.out().matchAll(/"pid":(\d+),[^\n]*"msg":"note seen"/g)].map((m) => Number(m[1])));
        return seen.size >= 2 ? [...seen] : undefined;
      },
      { what: 'both workers handling the bus message', timeoutMs: 20_000 },
    );
    const traceId = randomBytes(16).toString('hex');
    const answer = await fetch(`http://127.0.0.1:${port}/note`, {
      headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
    });
    expect(answer.status).toBe(200);
    const trace = await waitUntil(
      async () => {
        const t = await jaegerTrace(traceId);
        return t && t.spans.filter((s) => s.operationName === 'bus.handle note.added').length === 2 ? t : undefined;
      },
      { what: 'the two bus.handle spans in Jaeger', timeoutMs: 20_000 },
    );
    const publish = trace.spans.find((s) => s.operationName === 'bus.publish note.added') as JaegerSpan;
    const handles = trace.spans.filter((s) => s.operationName === 'bus.handle note.added');
    for (const h of handles) expect(parentOf(h)).toBe(publish.spanID);
    expect(tag(publish.tags, 'messaging.system')).toBe('cluster');
    expect(new Set(handles.map((h) => pidOf(trace, h)))).toEqual(new Set(pids));
  });

  it('Kysely statements on a Postgres pool and on MariaDB are client spans of the request (transactions included)', async () => {
    const web = await bootProject(busProject());
    const traceId = randomBytes(16).toString('hex');
    const res = await web.inject('/sql', { headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` } });
    expect(res.data).toEqual({ a: 5, b: 8 });
    await web.kernel.use<Tracing>('tracing').flush();
    const trace = await waitUntil(
      async () => {
        const t = await jaegerTrace(traceId);
        return t && t.spans.length >= 6 ? t : undefined;
      },
      { what: 'the statement spans in Jaeger', timeoutMs: 20_000 },
    );
    const http = trace.spans.find((s) => s.operationName === 'GET /sql') as JaegerSpan;
    const statements = trace.spans.filter((s) => s !== http);
    for (const s of statements) expect(parentOf(s), s.operationName).toBe(http.spanID);
    const pg = statements.filter((s) => tag(s.tags, 'db.system.name') === 'postgresql').map((s) => s.operationName);
    expect(pg).toEqual(expect.arrayContaining(['SELECT', 'BEGIN', 'SELECT', 'COMMIT']));
    expect(pg).toHaveLength(4);
    const maria = statements.find((s) => tag(s.tags, 'db.system.name') === 'mariadb') as JaegerSpan;
    expect(maria.operationName).toBe('SELECT');
    expect(tag(maria.tags, 'db.query.text')).toBe('select ? as `n`');
    expect(tag(maria.tags, 'mega.db.alias')).toBe('maria');
  });

  it('a malformed traceparent starts a new root trace', async () => {
    const web = await bootProject(project({ endpoint: `${jaeger.otlp}/v1/traces` }));
    const bad = `00-${'z'.repeat(32)}-${'1'.repeat(16)}-01`;
    const res = await web.inject('/hello', { headers: { traceparent: bad } });
    expect(res.status).toBe(200);
    await web.kernel.use<Tracing>('tracing').flush();
    const url = `${jaeger.query}/api/traces?service=${SERVICE}&operation=${encodeURIComponent('GET /hello')}&limit=20&lookback=1h`;
    const roots = await waitUntil(
      async () => {
        const body = (await (await fetch(url)).json()) as { data?: JaegerTrace[] };
        const spans = (body.data ?? []).flatMap((t) => t.spans).filter((s) => s.operationName === 'GET /hello');
        return spans.length > 0 ? spans : undefined;
      },
      { what: 'the GET /hello trace in Jaeger', timeoutMs: 20_000 },
    );
    for (const s of roots) {
      expect(s.references).toEqual([]);
      expect(s.traceID).toMatch(/^[0-9a-f]{32}$/);
      expect(s.traceID).not.toContain('z');
    }
  });

  it('an unreachable endpoint: mega start keeps serving, spans are dropped with one rate-limited warning', async () => {
    const closed = await freePort();
    const dir = project({ endpoint: `http://127.0.0.1:${closed}/v1/traces`, batch: { delayMs: 20, exportTimeoutMs: 300 } });
    const app = await megaStart(dir);
    for (let i = 0; i < 20; i++) expect((await httpGet(app.port, '/hello')).status).toBe(200);
    await app.waitFor(/span\(s\) dropped: export to http:\/\/127\.0\.0\.1:\d+\/v1\/traces failed/, 20_000);
    // Keep serving until at least three exports have failed, then count the warnings.
    const stats = await waitUntil(
      async () => {
        const s = (await httpGet(app.port, '/tracing/stats')).json?.data as { failedExports: number; dropped: number } | undefined;
        return s && s.failedExports >= 3 ? s : undefined;
      },
      { what: 'three failed exports', timeoutMs: 20_000 },
    );
    expect(stats.dropped).toBeGreaterThanOrEqual(3);
    expect((await httpGet(app.port, '/hello')).json).toEqual({ data: { hello: 'world' } });
    expect(app.out().match(/span\(s\) dropped/g)).toHaveLength(1);
  });
});
