/**
 * The plugins that trace themselves through the `tracing` service, on embedded backends (memory
 * jobs, bus and lock; PGlite; SQLite): one request's trace holds its enqueue, the job run, the run's
 * query, a lock acquire, bus spans and Kysely statements; a security rejection marks the request
 * span; a sampled-out trace records nothing yet carries its ids into the job it enqueued. The same
 * project without @mega/tracing serves the same answers.
 */

import { type Booted, bootProject, stopAll, waitUntil, writeProject } from '@mega/testing';
import type { Tracing } from '@mega/tracing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReceivedSpan, Receiver } from './receiver.js';
import { startReceiver } from './receiver.js';

const PLUGINS = ['@mega/http', '@mega/security', '@mega/bus', '@mega/lock', '@mega/jobs', '@mega/db-postgres', '@mega/db-sqlite'];

const FILES = {
  'app.config.ts': 'export default {};\n',
  'jobs/report.ts': `
import { MegaJob } from '@mega/jobs';
export class Report extends MegaJob {
  async run(p: { n: number }, ctx: any) {
    const { rows } = await ctx.db().query('select $1::int + 1 as next', [p.n]);
    ctx.log.info({ next: rows[0].next }, 'report built');
    (globalThis as any).__reports?.push(rows[0].next);
  }
}
`,
  'routes/index.ts': `
export default (r: any) => {
  r.http.post('/reports', async (req: any, _reply: any, ctx: any) => {
    const id = await ctx.jobs.enqueue('Report', { n: req.body.n });
    return { id };
  }, { csrf: false });
  r.http.get('/locked', async (_req: any, _reply: any, ctx: any) =>
    ctx.lock.with('k', {}, async () => 'held'));
  r.http.get('/bus', async (_req: any, _reply: any, ctx: any) => {
    await ctx.bus.emit('note.added', { a: 1 });
    return ctx.bus.request('sum.ask', { a: 2, b: 3 });
  });
  r.http.post('/guarded', async () => 'never without Origin');
  r.http.get('/kysely', async (_req: any, _reply: any, ctx: any) => {
    const one = await ctx.db().kysely().selectNoFrom((eb: any) => eb.val(41).as('n')).executeTakeFirst();
    const lite = ctx.db('lite').kysely();
    await lite.schema.createTable('notes').ifNotExists().addColumn('id', 'integer').addColumn('body', 'text').execute();
    await lite.insertInto('notes').values({ id: 1, body: 'secret-value' }).execute();
    const rows = await lite.selectFrom('notes').select(['id', 'body']).where('id', '=', 1).execute();
    return { n: Number(one.n), rows: rows.length };
  });
};
`,
};

function project(withTracing: boolean, endpoint = ''): string {
  const config = {
    plugins: withTracing ? [...PLUGINS, '@mega/tracing'] : PLUGINS,
    services: { dbs: { primary: { driver: 'pglite', url: 'memory://' }, lite: { driver: 'sqlite', url: ':memory:' } } },
    ...(withTracing ? { tracing: { endpoint, batch: { delayMs: 20 } } } : {}),
  };
  // Each kernel its own app name: two run in this process at once.
  const app = withTracing ? 'traced' : 'plain';
  const files = Object.fromEntries(Object.entries(FILES).map(([path, text]) => [`apps/${app}/${path}`, text]));
  return writeProject(
    { 'mega.config.ts': `export default ${JSON.stringify(config)};\n`, ...files },
    { prefix: withTracing ? 'mega-traced-' : 'mega-untraced-' },
  );
}

/** The bus handler answering `sum.ask`, installed once the kernel runs. */
function answerSums(b: Booted): void {
  const bus = (b.kernel.apps[0] as unknown as { bus: { on: (e: string, fn: (p: { a: number; b: number }) => unknown) => void } }).bus;
  bus.on('sum.ask', (p) => p.a + p.b);
}

let receiver: Receiver;
let traced: Booted;
beforeAll(async () => {
  receiver = await startReceiver();
  (globalThis as Record<string, unknown>).__reports = [];
  traced = await bootProject(project(true, receiver.url));
  answerSums(traced);
}, 60_000);
afterAll(async () => {
  await stopAll();
  await receiver.close();
});

async function find(pick: (spans: ReceivedSpan[]) => ReceivedSpan | undefined, what: string): Promise<ReceivedSpan> {
  const tracing = traced.kernel.use<Tracing>('tracing');
  return waitUntil(
    async () => {
      await tracing.flush();
      return pick(receiver.spans);
    },
    { what, timeoutMs: 10_000 },
  );
}

describe('instrumented plugins under @mega/tracing', () => {
  it('HTTP -> job.enqueue -> job.run -> SELECT in one trace, and the job log line carries the run span', async () => {
    const res = await traced.inject('/reports', { json: { n: 41 } });
    expect(res.status).toBe(200);
    const http = await find((all) => all.find((s) => s.name === 'POST /reports'), 'http span');
    const enqueue = await find((all) => all.find((s) => s.name === 'job.enqueue Report' && s.traceId === http.traceId), 'enqueue span');
    const run = await find((all) => all.find((s) => s.name === 'job.run Report' && s.traceId === http.traceId), 'run span');
    const query = await find((all) => all.find((s) => s.name === 'SELECT' && s.parentSpanId === run.spanId), 'query span');
    expect(enqueue).toMatchObject({ parentSpanId: http.spanId, kind: 4 });
    expect(enqueue.attributes).toMatchObject({ 'mega.job.name': 'Report', 'mega.job.id': res.data.id });
    expect(run).toMatchObject({ parentSpanId: enqueue.spanId, kind: 5 });
    expect(run.attributes).toMatchObject({ 'mega.job.id': res.data.id, 'mega.job.attempt': 1 });
    expect(query).toMatchObject({ traceId: http.traceId, kind: 3 });
    expect(query.attributes).toMatchObject({ 'db.system.name': 'postgresql', 'db.query.text': 'select $1::int + 1 as next' });
    const line = await waitUntil(() => traced.findLogs('report built')[0], { what: 'job log line' });
    expect(line).toMatchObject({ next: 42, trace_id: http.traceId, span_id: run.spanId });
  });

  it('lock.acquire and bus publish / request / handle spans are children of the request', async () => {
    expect((await traced.inject('/locked')).text).toBe('held');
    const locked = await find((all) => all.find((s) => s.name === 'GET /locked'), 'locked span');
    const acquire = await find((all) => all.find((s) => s.name === 'lock.acquire' && s.traceId === locked.traceId), 'acquire span');
    expect(acquire.parentSpanId).toBe(locked.spanId);
    expect(acquire.attributes).toMatchObject({ 'mega.lock.key': 'k', 'mega.lock.driver': 'memory' });

    expect((await traced.inject('/bus')).data).toBe(5);
    const bus = await find((all) => all.find((s) => s.name === 'GET /bus'), 'bus route span');
    const publish = await find((all) => all.find((s) => s.name === 'bus.publish note.added' && s.traceId === bus.traceId), 'publish');
    const request = await find((all) => all.find((s) => s.name === 'bus.request sum.ask' && s.traceId === bus.traceId), 'request');
    expect(publish).toMatchObject({ parentSpanId: bus.spanId, kind: 4 });
    expect(request).toMatchObject({ parentSpanId: bus.spanId, kind: 3 });
    expect(request.attributes['messaging.system']).toBe('memory');
    const handle = await find((all) => all.find((s) => s.name === 'bus.handle sum.ask'), 'handle');
    expect(handle.kind).toBe(5);
  });

  it('Kysely statements (PGlite, SQLite) are client spans of the request, with the compiled SQL and never the values', async () => {
    const res = await traced.inject('/kysely');
    expect(res.data).toEqual({ n: 41, rows: 1 });
    const http = await find((all) => all.find((s) => s.name === 'GET /kysely'), 'kysely route span');
    const tracing = traced.kernel.use<Tracing>('tracing');
    const inTrace = await waitUntil(
      async () => {
        await tracing.flush();
        const mine = receiver.spans.filter((s) => s.traceId === http.traceId && s.kind === 3);
        return mine.length >= 4 ? mine : undefined;
      },
      { what: 'the four statement spans', timeoutMs: 10_000 },
    );
    const pg = inTrace.find((s) => s.attributes['db.system.name'] === 'postgresql');
    expect(pg).toMatchObject({ name: 'SELECT', parentSpanId: http.spanId });
    expect(pg?.attributes).toMatchObject({
      'db.operation.name': 'SELECT',
      'db.query.text': 'select $1 as "n"',
      'mega.db.alias': 'primary',
    });
    const lite = inTrace.filter((s) => s.attributes['db.system.name'] === 'sqlite');
    expect(lite.map((s) => s.name)).toEqual(['CREATE', 'INSERT', 'SELECT']);
    for (const s of lite) expect(s.parentSpanId).toBe(http.spanId);
    expect(lite[1]?.attributes).toMatchObject({
      'db.query.text': 'insert into "notes" ("id", "body") values (?, ?)',
      'mega.db.alias': 'lite',
    });
    expect(JSON.stringify(inTrace)).not.toContain('secret-value');
  });

  it('a sampled-out trace (inbound flag 00) records nothing, yet its job run logs the same trace id', async () => {
    const traceId = '5bf92f3577b34da6a3ce929d0e0e4736';
    const res = await traced.inject('/reports', { json: { n: 6 }, headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-00` } });
    expect(res.status).toBe(200);
    const line = await waitUntil(() => traced.findLogs((l) => l.msg === 'report built' && l.next === 7)[0], { what: 'the job ran' });
    expect(line.trace_id).toBe(traceId);
    await traced.kernel.use<Tracing>('tracing').flush();
    expect(receiver.spans.filter((s) => s.traceId === traceId)).toEqual([]);
  });

  it('a security rejection sets mega.security.reason on the request span', async () => {
    const res = await traced.inject('/guarded', { json: { a: 1 } });
    expect(res.status).toBe(403);
    const span = await find((all) => all.find((s) => s.name === 'POST /guarded'), 'guarded span');
    expect(span.attributes['mega.security.reason']).toBe(res.code);
    expect(span.attributes['http.response.status_code']).toBe(403);
  });

  it('without @mega/tracing the same project answers the same, with no trace ids in its logs', async () => {
    const plain = await bootProject(project(false));
    answerSums(plain);
    expect(plain.kernel.has('tracing')).toBe(false);
    expect((await plain.inject('/bus')).data).toBe(5);
    expect((await plain.inject('/locked')).text).toBe('held');
    const reports = (globalThis as Record<string, unknown>).__reports as number[];
    const count = reports.length;
    expect((await plain.inject('/reports', { json: { n: 9 } })).status).toBe(200);
    await waitUntil(() => reports.length > count, { what: 'the untraced job ran' });
    expect(reports.at(-1)).toBe(10);
    expect(plain.findLogs('report built').at(-1)?.trace_id).toBeUndefined();
  });
});
