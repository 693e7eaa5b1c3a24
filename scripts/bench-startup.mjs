#!/usr/bin/env node
// Cold start of `mega start` on apps/simple: process spawn -> first 200 on `/`, N runs, median.
// A benchmark, not a test: run with `npm run bench:startup` (Node 24 via npm).
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const runs = Number(process.env.RUNS ?? 7);
const port = 3900 + Math.floor(Math.random() * 90);

const get = () =>
  new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', () => resolve(0));
    req.end();
  });

async function once() {
  const t0 = performance.now();
  const child = spawn(process.execPath, [join(root, 'kernel/bin/mega.js'), 'start', '--port', String(port)], {
    cwd: join(root, 'apps/simple'),
    env: { ...process.env, NODE_ENV: 'production', MEGA_LOG_LEVEL: 'warn' },
    stdio: 'ignore',
  });
  while ((await get()) !== 200) await new Promise((r) => setTimeout(r, 2));
  const ms = performance.now() - t0;
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGTERM');
  await exited;
  return ms;
}

await once(); // warm the OS page cache and jiti's transform cache, as a second `mega start` would
const times = [];
for (let i = 0; i < runs; i++) times.push(await once());
times.sort((a, b) => a - b);
const bare = [];
for (let i = 0; i < 3; i++) {
  const t0 = performance.now();
  await new Promise((r) => spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' }).on('exit', r));
  bare.push(performance.now() - t0);
}
const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`mega start (apps/simple) cold start to first 200, ${runs} runs`);
console.log(
  `  median ${median(times).toFixed(0)} ms   min ${times[0].toFixed(0)} ms   max ${times.at(-1).toFixed(0)} ms   (goal < 1000 ms)`,
);
console.log(`  bare "node -e 0" spawn+exit on this machine: ${median(bare).toFixed(0)} ms`);
