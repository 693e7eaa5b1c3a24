/** @mega/jobs memory driver: the same semantics as JetStream, in process. */
import { definePlugin, getApp, type JobEvent } from '@mega/kernel';
import { bootPlugins, buildPlugins, stopAll, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import jobs, { backoffDelay, type JobEventData, type JobEventName } from '../src/index.js';
import { gate, handlers, jobFiles, poll, work } from './fixtures.js';

afterEach(stopAll);

async function boot(config: Record<string, unknown> = {}, extra: Record<string, string> = {}, plugins: unknown[] = []) {
  const dir = writeProject({ ...jobFiles('mem'), ...extra });
  const booted = await bootPlugins({ plugins: [jobs, ...(plugins as [])], dir, apps: { mem: {} }, config: { jobs: config } });
  const q = getApp('mem').jobs;
  const events: Array<[JobEventName, JobEventData]> = [];
  for (const e of ['start', 'done', 'retry', 'fail', 'dlq'] as const) q.on(e, (d) => void events.push([e, d]));
  return { booted, q, events };
}

describe('@mega/jobs memory driver', () => {
  it('is the default without NATS; retries with backoff, then done; the job hook sees before/fail/after', async () => {
    const hookSeen: string[] = [];
    const tracer = definePlugin({
      name: 'tracer',
      version: '1.0.0',
      setup(api) {
        api.tap(
          'job',
          (e: JobEvent) => void hookSeen.push(`${e.phase}:${e.job.name}:${e.job.attempt}${e.error ? `:${e.error.code}` : ''}`),
        );
      },
    });
    let calls = 0;
    handlers({
      Flaky: async (p: { n: number }, ctx) => {
        calls++;
        expect(ctx.source.attempt).toBe(calls);
        expect(ctx.app.name).toBe('mem');
        if (calls < 3) throw new Error(`boom ${calls}`);
        return p.n;
      },
    });
    const { booted, q, events } = await boot({}, {}, [tracer]);
    expect(booted.kernel.use('jobs').driver).toBe('memory');
    const id = await q.enqueue('Flaky', { n: 1 });
    await poll(() => events.find(([e]) => e === 'done'), 5000, 'done');
    expect(events.map(([e, d]) => `${e}:${d.attempt}`)).toEqual(['start:1', 'retry:1', 'start:2', 'retry:2', 'start:3', 'done:3']);
    expect(events.every(([, d]) => d.id === id)).toBe(true);
    expect(events.find(([e]) => e === 'retry')?.[1].delayMs).toBeLessThanOrEqual(20);
    expect(hookSeen).toEqual([
      'before:Flaky:1',
      'fail:Flaky:1:jobs.failed',
      'before:Flaky:2',
      'fail:Flaky:2:jobs.failed',
      'before:Flaky:3',
      'after:Flaky:3',
    ]);
  });

  it('after the last attempt the job lands in the DLQ with the envelope; list, replay, purge', async () => {
    let fail = true;
    handlers({
      Flaky: async () => {
        if (fail) throw new Error('always');
      },
    });
    const { q, events } = await boot();
    const id = await q.enqueue('Flaky', { x: 1 }, { id: 'dead-1' });
    expect(id).toBe('dead-1');
    await poll(() => events.find(([e]) => e === 'dlq'), 5000, 'dlq');
    expect(events.filter(([e]) => e === 'start')).toHaveLength(4); // retries 3 = 4 attempts
    const fails = events.filter(([e]) => e === 'fail');
    expect(fails.map(([, d]) => d.phase)).toEqual(['run']);
    expect(events.find(([e]) => e === 'dlq')?.[1].dlqSubject).toBe('MEGA_JOBS.mem.Flaky.dlq');
    const rows = await q.dlq.list();
    expect(rows).toHaveLength(1);
    expect(rows[0]?.letter).toMatchObject({
      originalSubject: 'MEGA_JOBS.mem.Flaky',
      deliveryCount: 4,
      payload: { x: 1 },
      phase: 'run',
      job: 'Flaky',
      id: 'dead-1',
      error: { message: 'always' },
    });
    expect(rows[0]?.letter.error.stack?.length).toBeLessThanOrEqual(4000);
    expect(Number.isNaN(Date.parse(rows[0]?.letter.failedAt ?? ''))).toBe(false);
    fail = false;
    expect(await q.dlq.replay(rows[0]?.seq ?? 0)).toBe(1);
    await poll(() => events.find(([e, d]) => e === 'done' && d.id === 'dead-1:replay:1'), 5000, 'replayed done');
    expect(await q.dlq.list()).toEqual([]);
    fail = true;
    await q.enqueue('Flaky', {});
    await poll(() => events.filter(([e]) => e === 'dlq').length === 2, 5000, 'second dlq');
    expect(await q.dlq.purge()).toBe(1);
    expect((await q.stats()).dlq).toBe(0);
  });

  it('a run over its timeout goes to the DLQ (jobs.timeout), its late completion is reported as abandoned-run', async () => {
    const slow = gate();
    handlers({ Slow: () => slow.wait() });
    const { q, events } = await boot();
    await q.enqueue('Slow', {});
    await poll(() => events.find(([e]) => e === 'dlq'), 5000, 'dlq');
    expect(events.find(([e]) => e === 'fail')?.[1]).toMatchObject({ phase: 'run', error: { code: 'jobs.timeout' } });
    slow.release(); // the abandoned run completes late, after its timeout dead-lettered the job
    await poll(() => events.find(([e, d]) => e === 'fail' && d.phase === 'abandoned-run'), 5000, 'abandoned-run');
    expect(events.filter(([e]) => e === 'done')).toEqual([]);
  });

  it('groupConcurrency limits one group without blocking another; concurrency bounds the rest', async () => {
    const active = new Map<string, number>();
    let maxA = 0;
    let bothAtOnce = false;
    handlers({
      Grouped: async (p: { g: string }) => {
        active.set(p.g, (active.get(p.g) ?? 0) + 1);
        maxA = Math.max(maxA, active.get('A') ?? 0);
        if ((active.get('A') ?? 0) > 0 && (active.get('B') ?? 0) > 0) bothAtOnce = true;
        await work(30);
        active.set(p.g, (active.get(p.g) ?? 1) - 1);
      },
    });
    let running = 0;
    let maxFlaky = 0;
    handlers({
      ...globalThis.__jobsTest,
      Flaky: async () => {
        running++;
        maxFlaky = Math.max(maxFlaky, running);
        await work(20);
        running--;
      },
    });
    const { q, events } = await boot();
    await q.enqueueMany([
      ...Array.from({ length: 5 }, () => ({ job: 'Grouped', payload: { g: 'A' }, group: 'A' })),
      ...Array.from({ length: 5 }, () => ({ job: 'Grouped', payload: { g: 'B' }, group: 'B' })),
      ...Array.from({ length: 12 }, () => ({ job: 'Flaky', payload: {} })),
    ]);
    await poll(() => events.filter(([e]) => e === 'done').length === 22, 10_000, '22 done');
    expect(maxA).toBe(1);
    expect(bothAtOnce).toBe(true);
    expect(maxFlaky).toBe(4);
  });

  it('the same id within the dedup window runs once; a delayed job waits for its time', async () => {
    handlers({ Flaky: async () => undefined });
    const { q, events } = await boot();
    const a = await q.enqueue('Flaky', {}, { id: 'same' });
    const b = await q.enqueue('Flaky', {}, { id: 'same' });
    expect(a).toBe(b);
    const at = Date.now();
    await q.enqueue('Flaky', {}, { id: 'later', delayMs: 300 });
    await poll(() => events.find(([e, d]) => e === 'done' && d.id === 'later'), 5000, 'delayed done');
    expect(Date.now() - at).toBeGreaterThanOrEqual(290);
    expect(events.filter(([e, d]) => e === 'done' && d.id === 'same')).toHaveLength(1);
  });

  it('bad input: unknown job, payload failing the schema, bad options are typed errors at enqueue', async () => {
    handlers({ Typed: async () => undefined });
    const { q } = await boot();
    await expect(q.enqueue('Nope', {})).rejects.toMatchObject({
      code: 'jobs.unknown_job',
      status: 404,
      details: { known: expect.arrayContaining(['Flaky', 'Typed']) },
    });
    await expect(q.enqueue('Typed', { to: 5 })).rejects.toMatchObject({ code: 'jobs.invalid_payload', status: 400 });
    await expect(
      q.enqueueMany([
        { job: 'Typed', payload: { to: 'a' } },
        { job: 'Typed', payload: {} },
      ]),
    ).rejects.toMatchObject({ code: 'jobs.invalid_payload' });
    await expect(q.enqueue('Typed', { to: 'a' }, { delayMs: -1 })).rejects.toMatchObject({ code: 'jobs.invalid_options' });
    expect(await q.enqueue('Typed', { to: 'a' })).toMatch(/[0-9a-f-]{36}/);
  });

  it('boot errors: invalid static timeoutMs (jobs.invalid_job), invalid config timeout, jetstream without NATS', async () => {
    const dir = writeProject({
      'apps/bad/jobs/bad.ts': `import { MegaJob } from '@mega/jobs';\nexport class Bad extends MegaJob { static timeoutMs = -5; run() {} }\n`,
    });
    await expect(buildPlugins({ plugins: [jobs], dir, apps: { bad: {} } }).kernel.start()).rejects.toMatchObject({
      code: 'jobs.invalid_job',
    });
    await expect(buildPlugins({ plugins: [jobs], config: { jobs: { timeoutMs: -1 } } }).kernel.start()).rejects.toMatchObject({
      code: 'config.invalid',
    });
    await expect(buildPlugins({ plugins: [jobs], config: { jobs: { driver: 'jetstream' } } }).kernel.start()).rejects.toMatchObject({
      code: 'jobs.no_nats',
    });
  });

  it('shutdown lets a running job finish within drainMs and releases one that does not', async () => {
    const finished: string[] = [];
    handlers({
      Flaky: async (p: { ms: number; name: string }) => {
        await work(p.ms);
        finished.push(p.name);
      },
    });
    const { booted, q, events } = await boot({ drainMs: 300 });
    await q.enqueue('Flaky', { ms: 50, name: 'quick' });
    await q.enqueue('Flaky', { ms: 2000, name: 'long' });
    await poll(() => events.filter(([e]) => e === 'start').length === 2, 5000, 'both started');
    const t0 = Date.now();
    await booted.stop();
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(finished).toEqual(['quick']);
    expect(events.filter(([e]) => e === 'done').map(([, d]) => d.attempt)).toEqual([1]);
  });

  it('backoff is exponential, jittered, capped at 30 s', () => {
    const b = { initialMs: 1000, maxMs: 60_000 };
    expect(backoffDelay(b, 1, () => 0)).toBe(500);
    expect(backoffDelay(b, 1, () => 1)).toBe(1000);
    expect(backoffDelay(b, 3, () => 1)).toBe(4000);
    expect(backoffDelay(b, 10, () => 1)).toBe(30_000);
  });
});
