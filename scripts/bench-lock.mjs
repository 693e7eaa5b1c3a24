// npm run bench:lock — Redis lock acquire+release ops/s: Mega's redis driver (ctx.lock) against the
// raw clients doing the same work, in the same run: the raw Lua scripts over ioredis (what the driver
// sends) and the `redlock` package (5.0.0-beta.2, single instance). Sequential: one operation of each
// contender in turn, so load from elsewhere on the machine hits all alike (ops/s = 1 / median time).
// 16 loops in parallel: short windows, alternating order, median.
//   node scripts/bench-lock.mjs [--ops 3000] [--seconds 0.5] [--rounds 9] [--json]
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import cacheRedis from '@mega/cache-redis';
import { createLogger, Kernel } from '@mega/kernel';
import lock, { defineLockCommands } from '@mega/lock';
import { Redis } from 'ioredis';
import Redlock from 'redlock';

const { values } = parseArgs({
  options: {
    ops: { type: 'string', default: '3000' },
    seconds: { type: 'string', default: '0.5' },
    rounds: { type: 'string', default: '9' },
    json: { type: 'boolean' },
  },
});
const OPS = Number(values.ops);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const PARALLEL = 16;
const url = process.env.REDIS_URL ?? /REDIS_URL=(.*)/.exec(execFileSync('bash', ['scripts/services.sh', 'env'], { encoding: 'utf8' }))?.[1];
if (!url) throw new Error('REDIS_URL not set and scripts/services.sh env did not print it');

const dir = mkdtempSync(join(tmpdir(), 'mega-bench-lock-'));
const kernel = new Kernel({
  dir,
  config: { services: { caches: { locks: { driver: 'redis', url } } } },
  apps: [{ name: 'bench', dir, config: { lock: { service: 'locks', prefix: 'bench:' } }, file: undefined }],
  plugins: [cacheRedis, lock],
  logger: createLogger({ level: 'warn' }),
});
await kernel.start();
const mega = kernel.apps[0].lock;

const raw = new Redis(url);
defineLockCommands(raw);
const rl = new (Redlock.default ?? Redlock)([new Redis(url)], { retryCount: 0, automaticExtensionThreshold: 0 });

const TTL = 10_000;
// Owner values as the driver makes them (random per process + counter): same bytes on the wire.
const PROCESS_ID = randomBytes(6).toString('base64url');
let seq = 0;
const contenders = {
  'mega (ctx.lock acquire+release)': async (key) => {
    const lease = await mega.acquire(key, { ttl: TTL, waitMs: 1000 });
    await mega.release(lease);
  },
  'raw Lua over ioredis': async (key) => {
    const owner = `${PROCESS_ID}.${(++seq).toString(36)}`;
    const k = `mega:lock:raw:${key}`;
    if ((await raw.megaLockAcquire(k, `${k}:fence`, `${k}:wait`, owner, TTL, 50)) <= 0) throw new Error('raw acquire failed');
    await raw.megaLockRelease(k, `${k}:wait`, owner);
  },
  'redlock 5.0.0-beta.2': async (key) => {
    const l = await rl.acquire([`redlock:${key}`], TTL);
    await l.release();
  },
};

async function measure(fn, parallel) {
  let ops = 0;
  const end = performance.now() + SECONDS * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: parallel }, async (_, i) => {
      const key = `k${i}`;
      while (performance.now() < end) {
        await fn(key);
        ops++;
      }
    }),
  );
  return ops / ((performance.now() - started) / 1000);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const names = Object.keys(contenders);
const results = {};
// Sequential: A, B, C, A, B, C, ... each operation timed on its own.
{
  const times = Object.fromEntries(names.map((k) => [k, []]));
  for (let i = 0; i < 300; i++) await contenders[names[i % names.length]]('seq'); // warm-up
  for (let i = 0; i < OPS * names.length; i++) {
    const name = names[i % names.length];
    const t = performance.now();
    await contenders[name]('seq');
    times[name].push(performance.now() - t);
  }
  results[1] = Object.fromEntries(names.map((k) => [k, 1000 / median(times[k])]));
}
// Parallel loops on distinct keys: short windows, order alternating (ABC CBA ...), median.
{
  const samples = Object.fromEntries(names.map((k) => [k, []]));
  for (const fn of Object.values(contenders)) await measure(fn, PARALLEL); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    for (const name of r % 2 ? [...names].reverse() : names) samples[name].push(await measure(contenders[name], PARALLEL));
  }
  results[PARALLEL] = Object.fromEntries(names.map((k) => [k, median(samples[k])]));
}

await kernel.stop();
raw.disconnect();
await rl.quit().catch(() => undefined);

const rows = [];
for (const [parallel, byName] of Object.entries(results)) {
  const megaOps = byName['mega (ctx.lock acquire+release)'];
  for (const [name, ops] of Object.entries(byName)) {
    rows.push({
      loops: Number(parallel),
      contender: name,
      opsPerSec: Math.round(ops),
      megaRatio: name.startsWith('mega') ? 1 : Number((megaOps / ops).toFixed(3)),
    });
  }
}
if (values.json) console.log(JSON.stringify(rows));
else {
  console.log(
    `Redis lock acquire+release; 1 loop: ${OPS} ops each, interleaved; ${PARALLEL} loops: ${SECONDS} s x ${ROUNDS} rounds, median`,
  );
  console.log('(goal: mega >= 0.9 x raw)');
  console.log('loops  contender                          ops/s    mega/this');
  for (const r of rows)
    console.log(
      `${String(r.loops).padStart(5)}  ${r.contender.padEnd(33)} ${String(r.opsPerSec).padStart(7)}    ${r.megaRatio.toFixed(3)}`,
    );
}
