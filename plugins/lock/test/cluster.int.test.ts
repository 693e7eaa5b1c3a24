/**
 * The cluster drivers of @mega/bus and @mega/lock in a real `mega start --workers 2`: messages and
 * requests cross workers through the primary, locks are exclusive across workers with growing
 * fencing tokens, and a worker killed while holding a lock releases it.
 */

import { writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, httpGet as get, killAll, runMega, until } from '../../../scripts/test/procs.js';

afterEach(killAll);

const ROUTES = `
const received: unknown[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export default (r: any) => {
  r.app.bus.on('hello', (p: unknown) => void received.push(p));
  r.app.bus.on('who', () => process.pid);
  r.http.get('/pid', async (_q: any, _r: any, ctx: any) => ({ pid: process.pid, bus: ctx.bus.driver, lock: ctx.lock.driver }));
  r.http.get('/received', async () => ({ pid: process.pid, received }));
  r.http.get('/emit', async (q: any, _r: any, ctx: any) => {
    await ctx.bus.emit('hello', { from: process.pid, n: Number(q.query.n) });
    return { ok: true };
  });
  r.http.get('/who', async (_q: any, _r: any, ctx: any) => ({ answer: await ctx.bus.request('who', null, { timeout: 3000 }) }));
  r.http.get('/nobody', async (_q: any, _r: any, ctx: any) => ctx.bus.request('nobody.listens', null, { timeout: 3000 }));
  r.http.get('/lock', async (_q: any, _r: any, ctx: any) =>
    ctx.lock.with('shared', { ttl: 2000, waitMs: 20000 }, async ({ token }: { token: number }) => {
      const start = process.hrtime.bigint().toString();
      await sleep(15);
      return { token, pid: process.pid, start, end: process.hrtime.bigint().toString() };
    }),
  );
  r.http.get('/hold', async (_q: any, _r: any, ctx: any) => {
    const lease = await ctx.lock.acquire('held', { ttl: 60000 });
    return { token: lease.token, pid: process.pid };
  });
  r.http.get('/take', async (_q: any, _r: any, ctx: any) => {
    const lease = await ctx.lock.acquire('held', { ttl: 1000, waitMs: 10000 });
    await ctx.lock.release(lease);
    return { token: lease.token, pid: process.pid };
  });
};
`;

describe('cluster bus and lock drivers (mega start --workers 2)', () => {
  it('bus messages and requests cross workers; locks are exclusive across workers; a dead holder releases', async () => {
    const dir = writeProject({
      'mega.config.ts': `export default { plugins: ['@mega/http', '@mega/bus', '@mega/lock'] };\n`,
      'apps/web/app.config.ts': 'export default {};\n',
      'apps/web/routes/index.ts': ROUTES,
    });
    const port = await freePort();
    const run = runMega(['start', '--workers', '2', '--port', String(port)], dir, { MEGA_LOG_LEVEL: 'warn' });
    await run.waitFor(/worker \d ready[\s\S]*worker \d ready/, 30_000);
    const pids = new Set<number>();
    await until(
      async () => {
        const r = await get(port, '/pid');
        expect(r.json.data).toMatchObject({ bus: 'cluster', lock: 'cluster' });
        pids.add(r.json.data.pid);
        return pids.size === 2 ? true : undefined;
      },
      20_000,
      'both workers answering',
    );

    // Every emit reaches the subscribers of both workers, whichever worker emitted it.
    for (let n = 0; n < 10; n++) await get(port, `/emit?n=${n}`);
    const seenBy = new Map<number, number[]>();
    await until(
      async () => {
        const r = await get(port, '/received');
        seenBy.set(
          r.json.data.pid,
          (r.json.data.received as Array<{ n: number }>).map((m) => m.n).sort((a, b) => a - b),
        );
        return seenBy.size === 2 && [...seenBy.values()].every((ns) => ns.length === 10) ? true : undefined;
      },
      20_000,
      'every emit on both workers',
    );
    for (const ns of seenBy.values()) expect(ns).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const who = await get(port, '/who');
    expect(pids.has(who.json.data.answer)).toBe(true);
    const nobody = await get(port, '/nobody');
    expect(nobody.json.error).toMatchObject({ code: 'bus.no_responders' });

    // 20 concurrent critical sections spread over both workers: no overlap, tokens grow.
    const sections = (await Promise.all(Array.from({ length: 20 }, () => get(port, '/lock')))).map((r) => r.json.data);
    expect(new Set(sections.map((s) => s.pid)).size).toBe(2);
    sections.sort((a, b) => (BigInt(a.start) < BigInt(b.start) ? -1 : 1));
    for (let i = 1; i < sections.length; i++) {
      expect(BigInt(sections[i].start) >= BigInt(sections[i - 1].end)).toBe(true);
      expect(sections[i].token).toBeGreaterThan(sections[i - 1].token);
    }

    // A worker killed while holding a lease: the primary releases it and the next taker gets it.
    const held = (await get(port, '/hold')).json.data;
    process.kill(held.pid, 'SIGKILL');
    const taken = await until(
      async () => {
        const r = await get(port, '/take');
        return r.status === 200 ? r.json.data : undefined;
      },
      30_000,
      "the dead holder's lock taken",
    );
    expect(taken.token).toBeGreaterThan(held.token);
    expect(taken.pid).not.toBe(held.pid);

    run.child.kill('SIGTERM');
    expect((await run.exited).code).toBe(0);
  });
});
