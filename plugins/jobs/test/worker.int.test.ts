/**
 * `mega worker` processes on the real NATS JetStream: a SIGKILLed worker's job is redelivered after
 * ackWait and completes on another worker; groupConcurrency holds across two workers; `mega jobs`
 * shows stats and lists, replays and purges the DLQ.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import bus from '@mega/bus';
import { bootPlugins, stopAll, writeProject } from '@mega/testing';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { killAll, runMega, until } from '../../../scripts/test/procs.js';
import { serviceEnv } from '../../../scripts/test/service-env.js';
import jobs from '../src/index.js';

const env = serviceEnv();
const RUN = `W${process.pid}`;
let n = 0;
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

const JOBS = `import { appendFileSync } from 'node:fs';
import { MegaJob } from '@mega/jobs';
const log = (line: string) => appendFileSync(process.env.JOBS_LOG as string, line + '\\n');
/** Simulated work inside a job (how long a run takes), not a wait before an assertion. */
const work = (ms: number) => new Promise((r) => setTimeout(r, ms));
export class Hold extends MegaJob {
  static retries = 3;
  async run(p: { ms: number }, ctx: any) {
    log(\`start \${ctx.source.id} \${process.pid} \${ctx.source.attempt}\`);
    await work(p.ms);
    log(\`end \${ctx.source.id} \${process.pid} \${ctx.source.attempt}\`);
  }
}
export class Tenant extends MegaJob {
  static concurrency = 8;
  static groupConcurrency = 1;
  async run(p: { g: string }) {
    log(\`tstart \${p.g} \${Date.now()} \${process.pid}\`);
    await work(200);
    log(\`tend \${p.g} \${Date.now()} \${process.pid}\`);
  }
}
export class Doomed extends MegaJob {
  static retries = 0;
  async run() { throw new Error('doomed on purpose'); }
}
`;

function project(extra: Record<string, unknown> = {}) {
  const prefix = `${RUN}_${++n}`;
  const jobsConfig = { streamPrefix: prefix, ackWaitMs: 1500, groupScanMs: 200, ...extra };
  const dir = writeProject({
    'mega.config.ts': `export default ${JSON.stringify({
      plugins: ['@mega/bus', '@mega/jobs'],
      services: { buses: { default: { driver: 'nats', url: env.NATS_URL } } },
      jobs: jobsConfig,
    })};\n`,
    'apps/w/app.config.ts': 'export default {};\n',
    'apps/w/jobs/work.ts': JOBS,
    'jobs.log': '',
  });
  const logFile = join(dir, 'jobs.log');
  const lines = () => readFileSync(logFile, 'utf8').split('\n').filter(Boolean);
  const worker = async (args: string[] = []) => {
    const w = runMega(['worker', ...args], dir, { JOBS_LOG: logFile });
    await w.waitFor(/mega worker pid (\d+) ready/, 30_000);
    return w;
  };
  // The producer: the same project in the test's process, consumers off.
  const producer = async () => {
    const booted = await bootPlugins({
      plugins: [bus, jobs],
      dir,
      apps: { w: {} },
      services: { buses: { default: { driver: 'nats', url: env.NATS_URL } } },
      config: { jobs: { ...jobsConfig, inProcess: false } },
    });
    return booted.kernel.use('jobs').app('w');
  };
  return { dir, lines, worker, producer };
}

describe('@mega/jobs mega worker', () => {
  it('SIGKILL a worker mid-job: the job is redelivered after ackWait and completes on another worker', async () => {
    const p = project();
    const a = await p.worker();
    const q = await p.producer();
    const id = await q.enqueue('Hold', { ms: 1000 }, { id: 'killed-job' });
    const pidA = a.child.pid;
    await until(() => (p.lines().includes(`start ${id} ${pidA} 1`) ? true : undefined), 20_000, 'the job started on worker A');
    const killedAt = Date.now();
    await a.kill('SIGKILL');
    const b = await p.worker(['--app', 'w', '--jobs', 'Hold']);
    const pidB = b.child.pid;
    await until(() => (p.lines().includes(`end ${id} ${pidB} 2`) ? true : undefined), 20_000, 'the job completed on worker B');
    const redeliveredAfter = Date.now() - killedAt;
    console.log(`jobs SIGKILL: redelivered and completed ${redeliveredAfter} ms after the kill (ackWait 1500 ms)`);
    expect(p.lines().filter((l) => l.startsWith('end '))).toEqual([`end ${id} ${pidB} 2`]);
    expect(redeliveredAfter).toBeGreaterThanOrEqual(1000);
  }, 60_000);

  it('a job whose last allowed delivery died with its worker is dead-lettered with phase max-deliver', async () => {
    const p = project({ maxDeliver: 2 });
    const a = await p.worker();
    const q = await p.producer();
    const id = await q.enqueue('Hold', { ms: 5000 }, { id: 'last-try' });
    await until(() => (p.lines().includes(`start ${id} ${a.child.pid} 1`) ? true : undefined), 20_000, 'the job started');
    await a.kill('SIGKILL');
    await p.worker();
    await until(async () => ((await q.dlq.list()).length === 1 ? true : undefined), 20_000, 'the dead letter');
    const [row] = await q.dlq.list();
    expect(row?.letter).toMatchObject({ id, phase: 'max-deliver', deliveryCount: 2, error: { code: 'jobs.max_deliver' } });
    expect(p.lines().filter((l) => l.startsWith('start '))).toHaveLength(1);
  }, 60_000);

  it('groupConcurrency holds across two worker processes without blocking other groups', async () => {
    const p = project();
    await Promise.all([p.worker(), p.worker()]);
    const q = await p.producer();
    const groups = ['acme', 'globex', 'initech'];
    await q.enqueueMany(groups.flatMap((g) => Array.from({ length: 4 }, () => ({ job: 'Tenant', payload: { g }, group: g }))));
    await until(() => (p.lines().filter((l) => l.startsWith('tend ')).length === 12 ? true : undefined), 30_000, '12 tenant jobs');
    const events = p
      .lines()
      .filter((l) => l.startsWith('t'))
      .map((l) => {
        const [kind, g, t, pid] = l.split(' ');
        return { kind, g, t: Number(t), pid };
      })
      .sort((x, y) => x.t - y.t || (x.kind === 'tend' ? -1 : 1));
    const active = new Map<string, number>();
    let maxPerGroup = 0;
    let maxTotal = 0;
    for (const e of events) {
      active.set(e.g as string, (active.get(e.g as string) ?? 0) + (e.kind === 'tstart' ? 1 : -1));
      maxPerGroup = Math.max(maxPerGroup, ...active.values());
      maxTotal = Math.max(
        maxTotal,
        [...active.values()].reduce((a, b) => a + b, 0),
      );
    }
    const pids = new Set(events.map((e) => e.pid));
    console.log(`jobs groups: 3 groups x 4 jobs on ${pids.size} workers; max per group ${maxPerGroup}, max overall ${maxTotal}`);
    expect(maxPerGroup).toBe(1);
    expect(maxTotal).toBeGreaterThanOrEqual(2);
  }, 60_000);

  it('mega jobs stats | dlq list | dlq replay | dlq purge', async () => {
    const p = project();
    await p.worker();
    const q = await p.producer();
    await q.enqueue('Doomed', { why: 'test' }, { id: 'doomed-1' });
    await until(async () => ((await q.stats()).dlq === 1 ? true : undefined), 20_000, 'a dead letter');
    const stats = runMega(['jobs', 'stats', '--json'], p.dir);
    await stats.exited;
    expect(JSON.parse(stats.out())).toMatchObject({ driver: 'jetstream', dlq: 1, jobs: { Doomed: { pending: 0 } } });
    const list = runMega(['jobs', 'dlq', 'list', '--json'], p.dir);
    await list.exited;
    const rows = JSON.parse(list.out());
    expect(rows).toHaveLength(1);
    expect(rows[0].letter).toMatchObject({
      job: 'Doomed',
      id: 'doomed-1',
      payload: { why: 'test' },
      phase: 'run',
      error: { message: 'doomed on purpose' },
    });
    const replay = runMega(['jobs', 'dlq', 'replay', String(rows[0].seq)], p.dir);
    expect((await replay.exited).code).toBe(0);
    expect(replay.out()).toContain('replayed 1 dead letter(s)');
    // Replayed, it fails again and comes back under a new id.
    await until(
      async () => ((await q.dlq.list()).some((r) => r.letter.id === `doomed-1:replay:${rows[0].seq}`) ? true : undefined),
      20_000,
      'the replay back in the DLQ',
    );
    const purge = runMega(['jobs', 'dlq', 'purge'], p.dir);
    await purge.exited;
    expect(purge.out()).toContain('purged 1 dead letter(s)');
    expect((await q.stats()).dlq).toBe(0);
  }, 60_000);
});
