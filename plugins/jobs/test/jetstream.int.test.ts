/** @mega/jobs on the real NATS JetStream from scripts/services.sh (no mocks). */
import bus from '@mega/bus';
import { getApp } from '@mega/kernel';
import { bootPlugins, stopAll, writeProject } from '@mega/testing';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { restartService } from '../../../scripts/test/restart.js';
import { serviceEnv } from '../../../scripts/test/service-env.js';
import jobs, { type JobEventData, type JobEventName } from '../src/index.js';
import { gate, handlers, jobFiles, poll, work } from './fixtures.js';

const env = serviceEnv();
const RUN = `T${process.pid}`;
let n = 0;
afterEach(stopAll);
afterAll(async () => {
  const nc = await connect({ servers: env.NATS_URL });
  const jsm = await jetstreamManager(nc);
  for await (const s of jsm.streams.list()) if (s.config.name.startsWith(`${RUN}_`)) await jsm.streams.delete(s.config.name);
  await nc.close();
});

async function boot(
  config: Record<string, unknown> = {},
  options: { concurrency?: number; timeoutMs?: number; prefix?: string; dir?: string } = {},
) {
  const prefix = options.prefix ?? `${RUN}_${++n}`;
  const dir = options.dir ?? writeProject(jobFiles('js', options));
  const booted = await bootPlugins({
    plugins: [bus, jobs],
    dir,
    apps: { js: {} },
    services: { buses: { default: { driver: 'nats', url: env.NATS_URL } } },
    config: { jobs: { streamPrefix: prefix, ...config } },
  });
  const q = getApp('js').jobs;
  const events: Array<[JobEventName, JobEventData]> = [];
  for (const e of ['start', 'done', 'retry', 'fail', 'dlq'] as const) q.on(e, (d) => void events.push([e, d]));
  return { booted, q, events, prefix, dir };
}

describe('@mega/jobs jetstream driver', () => {
  it('10,000 jobs with random failures: enqueued = done + DLQ, none lost, none done twice without a redelivery', async () => {
    handlers({
      Flaky: async () => {
        if (Math.random() < 0.3) throw new Error('random failure');
      },
    });
    const { booted, q, events } = await boot({}, { concurrency: 64 });
    expect(booted.kernel.use('jobs').driver).toBe('jetstream');
    const total = 10_000;
    const t0 = performance.now();
    const ids: string[] = [];
    for (let i = 0; i < total; i += 500) {
      ids.push(...(await q.enqueueMany(Array.from({ length: 500 }, (_, k) => ({ job: 'Flaky', payload: { i: i + k } })))));
    }
    const enqueueMs = performance.now() - t0;
    const settled = () => {
      const done = new Set<string>();
      const dlq = new Set<string>();
      for (const [e, d] of events) {
        if (e === 'done') done.add(d.id);
        else if (e === 'dlq') dlq.add(d.id);
      }
      return done.size + dlq.size >= total ? { done, dlq } : undefined;
    };
    const { done, dlq } = await poll(settled, 50_000, 'every job done or dead-lettered');
    const totalMs = performance.now() - t0;
    expect(new Set(ids).size).toBe(total);
    for (const id of ids) expect(done.has(id) !== dlq.has(id)).toBe(true);
    const doneEvents = new Map<string, JobEventData[]>();
    for (const [e, d] of events) if (e === 'done') doneEvents.set(d.id, [...(doneEvents.get(d.id) ?? []), d]);
    const twice = [...doneEvents.values()].filter((list) => list.length > 1);
    for (const list of twice) expect(list.some((d) => d.redelivered)).toBe(true);
    const retries = events.filter(([e]) => e === 'retry').length;
    console.log(
      `jobs 10k: enqueued ${total} in ${Math.round(enqueueMs)} ms, settled in ${Math.round(totalMs)} ms (${Math.round(total / (totalMs / 1000))} jobs/s); done ${done.size}, dlq ${dlq.size}, retries ${retries}, done twice ${twice.length}`,
    );
    expect(dlq.size).toBeGreaterThan(0);
    const rows = await q.dlq.list(dlq.size + 10);
    expect(rows.length).toBe(dlq.size);
    expect(rows[0]?.letter).toMatchObject({ phase: 'run', deliveryCount: 4, error: { message: 'random failure' } });
  }, 90_000);

  it('a run over its timeout is dead-lettered; its late completion is reported as abandoned-run', async () => {
    const slow = gate();
    handlers({ Slow: () => slow.wait() });
    const { q, events } = await boot({ ackWaitMs: 500 }, { timeoutMs: 200 });
    const id = await q.enqueue('Slow', { a: 1 });
    await poll(() => events.find(([e]) => e === 'dlq'), 10_000, 'dlq');
    expect(events.find(([e]) => e === 'fail')?.[1]).toMatchObject({ id, phase: 'run', error: { code: 'jobs.timeout' } });
    slow.release(); // the abandoned run completes late, after its timeout dead-lettered the job
    await poll(() => events.find(([e, d]) => e === 'fail' && d.phase === 'abandoned-run'), 5000, 'abandoned-run');
    const [row] = await q.dlq.list();
    expect(row?.letter).toMatchObject({ id, job: 'Slow', payload: { a: 1 }, error: { code: 'jobs.timeout' } });
    // The abandoned run held no lease: nothing was redelivered.
    expect(events.filter(([e]) => e === 'start')).toHaveLength(1);
  });

  it('idempotent enqueue: the same id within the dedup window runs once', async () => {
    let runs = 0;
    handlers({ Flaky: async () => void runs++ });
    const { q, events } = await boot();
    expect(await q.enqueue('Flaky', {}, { id: 'order-42' })).toBe('order-42');
    expect(await q.enqueue('Flaky', {}, { id: 'order-42' })).toBe('order-42');
    await q.enqueueMany([
      { job: 'Flaky', id: 'order-42' },
      { job: 'Flaky', id: 'order-43' },
    ]);
    await poll(() => events.filter(([e]) => e === 'done').length >= 2, 10_000, 'two done');
    await q.enqueue('Flaky', {}, { id: 'marker' });
    await poll(() => events.find(([e, d]) => e === 'done' && d.id === 'marker'), 10_000, 'marker');
    expect(runs).toBe(3);
  });

  it('a delayed job survives a worker restart and runs at its time', async () => {
    handlers({ Flaky: async () => undefined });
    const first = await boot();
    const at = Date.now();
    await first.q.enqueue('Flaky', { late: true }, { id: 'delayed-1', delayMs: 1500 });
    await first.booted.stop();
    const second = await boot({}, { prefix: first.prefix, dir: first.dir });
    await poll(() => second.events.find(([e, d]) => e === 'done' && d.id === 'delayed-1'), 15_000, 'the delayed job');
    expect(Date.now() - at).toBeGreaterThanOrEqual(1450);
    expect(first.events.filter(([e]) => e === 'start')).toEqual([]);
  });

  it('concurrency caps a worker across its main and group consumers; deliveries over the cap wait with their lease kept', async () => {
    let active = 0;
    let peak = 0;
    handlers({
      Capped: async () => {
        peak = Math.max(peak, ++active);
        await work(400);
        active--;
      },
    });
    // Runs of 400 ms overlap across the group consumers as they start; ackWait 300 ms: a delivery
    // waiting for a slot (up to 1.6 s) is redelivered unless its lease is renewed.
    const { q, events } = await boot({ ackWaitMs: 300, groupScanMs: 100 });
    // One job per group first: its group consumer then exists and pulls when the batch comes.
    const groups = ['a', 'b', 'c', 'd'];
    const first = await q.enqueueMany(groups.map((group) => ({ job: 'Capped', payload: {}, group })));
    await poll(() => events.filter(([e]) => e === 'done').length >= first.length || undefined, 20_000, 'a job of every group done');
    peak = 0;
    events.length = 0;
    const items = [
      ...groups.flatMap((group) => Array.from({ length: 2 }, () => ({ job: 'Capped', payload: {}, group }))),
      ...Array.from({ length: 2 }, () => ({ job: 'Capped', payload: {} })),
    ];
    const ids = await q.enqueueMany(items);
    await poll(() => events.filter(([e]) => e === 'done').length >= ids.length || undefined, 20_000, 'every capped job done');
    const starts = events.filter(([e, d]) => e === 'start' && d.job === 'Capped').map(([, d]) => d);
    console.log(`jobs cap: ${ids.length} jobs in 4 groups (groupConcurrency 2) + ungrouped, concurrency 2: peak ${peak} at once`);
    expect(peak).toBe(2);
    expect(starts.map((d) => d.id).sort()).toEqual([...ids].sort());
    expect(starts.every((d) => d.attempt === 1)).toBe(true);
    expect(events.filter(([e]) => e === 'retry' || e === 'fail')).toEqual([]);
  });

  it('bad input: unknown job and invalid payload are refused at enqueue; an undecodable message goes to the DLQ (decode)', async () => {
    handlers({ Flaky: async () => undefined, Typed: async () => undefined });
    const { q, events, prefix } = await boot();
    await expect(q.enqueue('Missing', {})).rejects.toMatchObject({ code: 'jobs.unknown_job' });
    await expect(q.enqueue('Typed', { to: 1 })).rejects.toMatchObject({ code: 'jobs.invalid_payload' });
    const nc = await connect({ servers: env.NATS_URL });
    const js = (await import('@nats-io/jetstream')).jetstream(nc);
    await js.publish(`${prefix}.js.Flaky`, '{not json');
    await nc.close();
    await poll(() => events.find(([e]) => e === 'dlq'), 10_000, 'decode dlq');
    expect(events.find(([e]) => e === 'fail')?.[1]).toMatchObject({ phase: 'decode', error: { code: 'jobs.decode' } });
    const [row] = await q.dlq.list();
    expect(row?.letter).toMatchObject({ phase: 'decode', payload: '{not json', deliveryCount: 1 });
    // The consumer keeps going.
    await q.enqueue('Flaky', {}, { id: 'after-decode' });
    await poll(() => events.find(([e, d]) => e === 'done' && d.id === 'after-decode'), 10_000, 'next job');
    const stats = await q.stats();
    expect(stats).toMatchObject({ driver: 'jetstream', dlq: 1 });
  });

  it('NATS restart while producing and consuming: every enqueue returned an id later done, or raised jobs.unavailable', async () => {
    handlers({ Flaky: async () => work(2) });
    const { q, events } = await boot({ publishTimeoutMs: 2000 }, { concurrency: 16 });
    const resolved = new Set<string>();
    const rejected: string[] = [];
    let stop = false;
    let i = 0;
    const pump = (async () => {
      while (!stop) {
        const k = i++;
        q.enqueue('Flaky', { k }).then(
          (id) => void resolved.add(id),
          (error: { code?: string }) => void rejected.push(error.code ?? String(error)),
        );
        await work(4);
      }
    })();
    await poll(() => resolved.size >= 100, 10_000, 'enqueues before the restart');
    await restartService('nats');
    const after = resolved.size;
    await poll(() => resolved.size >= after + 200, 30_000, 'enqueues after the restart');
    stop = true;
    await pump;
    await poll(() => resolved.size + rejected.length === i || undefined, 15_000, 'every enqueue settled');
    const done = () => {
      const ids = new Set(events.filter(([e]) => e === 'done' || e === 'dlq').map(([, d]) => d.id));
      return [...resolved].every((id) => ids.has(id)) ? ids : undefined;
    };
    const settled = await poll(done, 45_000, 'every resolved enqueue done');
    console.log(
      `jobs NATS restart: ${i} enqueues, ${resolved.size} resolved (all ${settled.size >= resolved.size ? 'done' : 'NOT done'}), ${rejected.length} jobs.unavailable`,
    );
    expect(new Set(rejected)).toEqual(rejected.length ? new Set(['jobs.unavailable']) : new Set());
  }, 120_000);
});
