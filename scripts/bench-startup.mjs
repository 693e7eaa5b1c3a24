#!/usr/bin/env node
// Cold start of `mega start` on apps/simple: process spawn -> first 200 on `/`, N runs, medians of
// the wall time and of the process's CPU time at that moment (its threads' run time from /proc:
// what the start costs, less moved by other load on a shared machine than the wall time).
// A benchmark, not a test: run with `npm run bench:startup` (Node 24 via npm); `--json` prints one
// JSON line for bench:ws. Goal (issue 16): <= 150 ms wall.
// MEGA_BASE=<another checkout> (built, with apps/simple) runs its `mega start` in alternation with
// this one's, for a before/after from one run on the same load (several, separated by ':', alternate
// all together); RUNS=<n> per checkout (default 7).
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const runs = Number(process.env.RUNS ?? 7);
const port = 3900 + Math.floor(Math.random() * 90);
const json = process.argv.includes('--json');
const roots = [root, ...(process.env.MEGA_BASE?.split(':').filter(Boolean) ?? [])];

/** Whether the build bundled TypeBox into one file (kernel/scripts/bundle-typebox.mjs): ~30 ms of CPU apart. */
const typebox = (checkout) => {
  const head = existsSync(join(checkout, 'kernel/dist/typebox.js'))
    ? readFileSync(join(checkout, 'kernel/dist/typebox.js'), 'utf8').slice(0, 200)
    : '';
  return head.includes('bundled by') ? 'one-file bundle' : 'the package (~200 modules; node kernel/scripts/bundle-typebox.mjs bundles it)';
};

const get = () =>
  new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', () => resolve(0));
    req.end();
  });

/**
 * CPU time of a process so far, in ms: the sum of its threads' run time from /proc/<pid>/task/<tid>/schedstat
 * (nanoseconds); utime + stime from /proc/<pid>/stat counts in 1/100 s, too coarse for a ~150 ms start.
 */
function cpuMs(pid) {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`))
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    return Math.round(ns / 1e5) / 10;
  } catch {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  }
}

async function once(checkout) {
  const t0 = performance.now();
  const child = spawn(process.execPath, [join(checkout, 'kernel/bin/mega.js'), 'start', '--port', String(port)], {
    cwd: join(checkout, 'apps/simple'),
    env: { ...process.env, NODE_ENV: 'production', MEGA_LOG_LEVEL: 'warn' },
    stdio: 'ignore',
  });
  while ((await get()) !== 200) await new Promise((r) => setTimeout(r, 2));
  const ms = performance.now() - t0;
  const cpu = cpuMs(child.pid);
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGTERM');
  await exited;
  return { ms, cpu };
}

// Warm the OS page cache, the compile cache and jiti's transform cache, as a second `mega start` would.
for (const checkout of roots) await once(checkout);
const results = roots.map(() => ({ times: [], cpus: [] }));
for (let i = 0; i < runs; i++) {
  for (const [k, checkout] of roots.entries()) {
    const { ms, cpu } = await once(checkout);
    results[k].times.push(ms);
    results[k].cpus.push(cpu);
  }
}
const bare = [];
for (let i = 0; i < 3; i++) {
  const t0 = performance.now();
  await new Promise((r) => spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' }).on('exit', r));
  bare.push(performance.now() - t0);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const [{ times, cpus }] = results;
times.sort((a, b) => a - b);
if (json) {
  console.log(JSON.stringify({ wallMs: median(times), cpuMs: median(cpus), bareMs: median(bare), runs }));
} else {
  console.log(`mega start (apps/simple) cold start to first 200, ${runs} runs${roots.length > 1 ? ' per checkout, alternating' : ''}`);
  console.log(
    `  wall: median ${median(times).toFixed(0)} ms   min ${times[0].toFixed(0)} ms   max ${times.at(-1).toFixed(0)} ms   (goal <= 150 ms: ${median(times) <= 150 ? 'met' : 'MISSED'})`,
  );
  console.log(`  CPU of the process at its first 200: median ${median(cpus)} ms (${Math.min(...cpus)}–${Math.max(...cpus)})`);
  for (const [k, base] of results.entries()) {
    if (k === 0) continue;
    console.log(
      `  ${roots[k]}: wall median ${median(base.times).toFixed(0)} ms, CPU median ${median(base.cpus)} ms` +
        `  -> this checkout / base: wall ${(median(times) / median(base.times)).toFixed(2)}, CPU ${(median(cpus) / median(base.cpus)).toFixed(2)}`,
    );
  }
  console.log(`  bare "node -e 0" spawn+exit on this machine: ${median(bare).toFixed(0)} ms`);
  console.log(`  kernel's TypeBox: ${typebox(root)}`);
}
