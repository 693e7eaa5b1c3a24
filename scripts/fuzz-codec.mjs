#!/usr/bin/env node
// Fuzzes both codec backends with mutated, truncated and random sealed frames, deflate streams,
// envelopes and server frames. Every call must return or throw a MegaError with a codec/asp code;
// a crash, a foreign exception, a hang (no progress for 20 s) or a native/TS disagreement fails.
// Not part of the timed CI path. Needs the kernel built (npm run build) and the addon
// (npm run build:native).
//   npx node scripts/fuzz-codec.mjs [--cases 1000000] [--procs 2] [--seed 1]
//   npx node scripts/fuzz-codec.mjs [same flags] --case <n>   replays case n and times its calls
// MEGA_FUZZ_CODEC=<path to codec/index.js> points at another build of the facade.
import { fork } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { mulberry32 } from './test/wire.ts';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const CODES = new Set(['codec.malformed', 'codec.too_large', 'codec.closed', 'asp.decrypt', 'asp.drift', 'asp.replay']);

async function child(seed, from, to, only) {
  // Stack capture dominates the cost of the millions of expected errors; a failure is reproducible
  // from (seed, case) anyway.
  Error.stackTraceLimit = 0;
  const url = process.env.MEGA_FUZZ_CODEC
    ? pathToFileURL(process.env.MEGA_FUZZ_CODEC).href
    : new URL('../packages/codec/dist/index.js', import.meta.url).href;
  const { createTsCodec, loadCodec } = await import(url);
  const { isMegaError } = await import(new URL('../errors.js', url).href);
  const backends = [createTsCodec(), loadCodec({ mode: 'native', routing: false })];
  const [ts] = backends;
  const key = Buffer.alloc(32, 9);
  const now = () => 1_700_000_000_000;
  const text = (n) => Buffer.from(JSON.stringify({ type: 'chat.msg', payload: { text: 'hello '.repeat(n) } }));
  const sealer = ts.createSealer(key, { role: 'client', now, seed: { prefix: 1, counter: 0 } });
  const sealedSeeds = [0, 1, 5, 50, 400].flatMap((n) => [sealer.seal(text(n), '/x'), sealer.seal(text(n), '/x', true)]);
  const zSeeds = [0, 3, 40, 2000].map((n) => ts.deflate(text(n))).concat([ts.deflate(Buffer.alloc(70_000, 120))]);
  const frameSeeds = [
    ts.encodeFrame('chat.msg', '/x', text(3), 'c-1'),
    Buffer.from('{"type":"a","payload":[1,-2.5e3,"\\u00e9",{"k":[true,false,null]}]}'),
  ];
  const serverSeeds = [ts.encodeServerFrame({ kind: 2, type: 'presence.join', ns: '/x', target: 'u1', origin: 'n1', payload: text(2) })];
  const rand = mulberry32(seed ^ from);
  const int = (n) => Math.floor(rand() * n);
  const pick = (list) => list[int(list.length)];
  function mutate(base) {
    const b = Buffer.from(base);
    switch (int(7)) {
      case 0:
        return Buffer.from(Array.from({ length: int(300) }, () => int(256)));
      case 1:
        return b.subarray(0, int(b.length + 1));
      case 2:
        for (let k = 1 + int(4); k > 0; k--) if (b.length) b[int(b.length)] ^= 1 << int(8);
        return b;
      case 3:
        if (b.length) b[int(b.length)] = int(256);
        return b;
      case 4: {
        const at = int(b.length + 1);
        return Buffer.concat([b.subarray(0, at), Buffer.from([int(256)]), b.subarray(at)]);
      }
      case 5: {
        const at = int(b.length + 1);
        return Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + int(8)))]);
      }
      default: {
        const o = pick([...sealedSeeds, ...zSeeds]);
        const at = int(b.length + 1);
        return Buffer.concat([b.subarray(0, at), o.subarray(int(o.length + 1))]);
      }
    }
  }
  const outcome = (f) => {
    try {
      const v = f();
      return Buffer.isBuffer(v) ? `ok:${v.length}:${v.subarray(0, 32).toString('hex')}` : `ok:${JSON.stringify(v)}`;
    } catch (err) {
      if (isMegaError(err) && CODES.has(err.code)) return err.code;
      throw err;
    }
  };
  let slowest = { ms: 0, i: -1 };
  let calls = 0;
  let slowCall = { ms: 0 };
  let openers = backends.map((c) => c.createOpener(key, { now }));
  let inflaters = backends.map((c) => c.createInflater({ maxOutput: 1 << 16 }));
  const mismatches = {};
  const mismatch = (what, i, a, b, input) => {
    mismatches[what] = (mismatches[what] ?? 0) + 1;
    // A stateful inflater fed a message that does not end on a sync point diverges by design:
    // native keeps decoding the one shared stream, TS restarts from its window (FORMAT.md).
    if (what !== 'inflater' && mismatches[what] <= 3)
      process.send({ mismatch: { what, i, ts: a, native: b, input: input.toString('hex').slice(0, 400) } });
  };
  for (let i = from; i < to; i++) {
    const t0 = performance.now();
    const kind = (i >> 2) % 4; // seed family; i % 4 picks how widely the input is fed
    const input = mutate(kind === 0 ? pick(sealedSeeds) : kind === 1 ? pick(zSeeds) : kind === 2 ? pick(frameSeeds) : pick(serverSeeds));
    if (only !== undefined && i !== only) continue; // --case: regenerate inputs up to the one asked for
    if (only !== undefined) {
      // Stateless entry points only: stateful ones depend on the inputs before this one.
      for (const c of backends) {
        for (const [what, f] of [
          ['validateFrame', () => c.validateFrame(input)],
          ['decodeServerFrame', () => c.decodeServerFrame(input)],
          ['open stateless', () => c.open(key, input, '/x', { now: now() })],
          ['inflate', () => c.inflate(input, { maxOutput: 1 << 16 })],
        ]) {
          const t1 = performance.now();
          const r = outcome(f);
          console.log(`case ${i} ${c.backend} ${what}: ${r.slice(0, 60)} in ${(performance.now() - t1).toFixed(2)} ms`);
        }
      }
      console.log(`input ${input.toString('hex')}`);
      process.exit(0);
    }
    try {
      if (i % 5000 === 0) {
        openers = backends.map((c) => c.createOpener(key, { now }));
        inflaters = backends.map((c) => c.createInflater({ maxOutput: 1 << 16 }));
      }
      // Every input hits the cheap decoders; the ASP and inflate entry points get the inputs
      // derived from their own seeds plus every fourth other one (keeps 1M inputs to minutes).
      const all = i % 4 === 3;
      const checks = [
        ['validateFrame', (c) => c.validateFrame(input)],
        ['decodeServerFrame', (c) => c.decodeServerFrame(input)],
        ...(kind === 0 || all
          ? [
              ['open', (_c, k) => openers[k].open(input, '/x')],
              ['open stateless', (c) => c.open(key, input, '/x', { now: now() })],
            ]
          : []),
        ...(kind === 1 || all
          ? [
              ['inflate', (c) => c.inflate(input, { maxOutput: 1 << 16 })],
              ['inflater', (_c, k) => inflaters[k].inflate(input)],
            ]
          : []),
      ];
      calls += checks.length * 2;
      for (const [what, f] of checks) {
        const t1 = performance.now();
        const [a, b] = backends.map((c, k) => outcome(() => f(c, k)));
        const took = performance.now() - t1;
        if (took > slowCall.ms) slowCall = { ms: took, i, what, input: input.length };
        if (a !== b) mismatch(what, i, a, b, input);
        if (what === 'inflater' && a === 'codec.closed') inflaters = backends.map((c) => c.createInflater({ maxOutput: 1 << 16 }));
      }
    } catch (err) {
      process.send({ failure: { i, input: input.toString('hex').slice(0, 800), error: String(err?.stack ?? err) } });
      process.exit(1);
    }
    const ms = performance.now() - t0;
    if (ms > slowest.ms) slowest = { ms, i };
    if (i % 1000 === 0) process.send({ progress: i, calls });
  }
  process.send({ done: to - from, mismatches, slowest, calls, slowCall });
}

async function main() {
  const cases = opt('cases', 1_000_000);
  const procs = opt('procs', 2);
  const seed = opt('seed', 1);
  const script = fileURLToPath(import.meta.url);
  const start = Date.now();
  const per = Math.ceil(cases / procs);
  let failed = false;
  const mismatches = {};
  let slowest = { ms: 0, i: -1 };
  let done = 0;
  let calls = 0;
  await Promise.all(
    Array.from(
      { length: procs },
      (_, p) =>
        new Promise((resolve) => {
          const from = p * per;
          const to = Math.min(cases, from + per);
          const c = fork(script, ['--child', String(seed), String(from), String(to)], { stdio: 'inherit' });
          let last = Date.now();
          let lastIndex = from;
          let lastCalls = 0;
          const watchdog = setInterval(() => {
            if (Date.now() - last > 20_000) {
              console.error(`HANG: no progress for 20 s after case ${lastIndex} (seed ${seed}); killing`);
              failed = true;
              c.kill('SIGKILL');
            }
          }, 1000);
          c.on('message', (m) => {
            last = Date.now();
            if (m.progress !== undefined) lastIndex = m.progress;
            if (m.calls !== undefined && m.done === undefined) lastCalls = m.calls;
            if (m.mismatch) console.error('MISMATCH', JSON.stringify(m.mismatch));
            if (m.failure) {
              failed = true;
              console.error('FAILURE', JSON.stringify(m.failure, null, 2));
            }
            if (m.done !== undefined) {
              done += m.done;
              calls += m.calls;
              if (m.slowest.ms > slowest.ms) slowest = m.slowest;
              console.error('slowest call', JSON.stringify(m.slowCall));
              for (const [k, v] of Object.entries(m.mismatches)) mismatches[k] = (mismatches[k] ?? 0) + v;
            }
          });
          c.on('exit', (code, signal) => {
            clearInterval(watchdog);
            if (code !== 0) {
              failed = true;
              done += lastIndex - from; // what it fuzzed before dying still counts
              calls += lastCalls;
              console.error(`child ${p} exited with ${signal ?? code} near case ${lastIndex} (seed ${seed})`);
            }
            resolve();
          });
        }),
    ),
  );
  const secs = ((Date.now() - start) / 1000).toFixed(1);
  const { inflater = 0, ...real } = mismatches;
  const bad = Object.values(real).reduce((a, b) => a + b, 0);
  console.log(`fuzz-codec: ${done} inputs, ${calls} decoder calls over both backends, in ${secs} s (seed ${seed})`);
  console.log(
    `  native/TS disagreements: ${bad} ${JSON.stringify(real)}; stateful inflater on non-RFC-7692 streams (by design): ${inflater}`,
  );
  console.log(`  slowest input: case ${slowest.i}, ${slowest.ms.toFixed(1)} ms for all its calls`);
  console.log(`  ${failed ? 'FAILED' : 'no crash, hang or untyped error'}`);
  process.exit(failed || bad ? 1 : 0);
}

if (args[0] === '--child') child(Number(args[1]), Number(args[2]), Number(args[3]));
else if (args.includes('--case')) {
  // Replays one case of a run with the same --cases/--procs/--seed: times its stateless calls.
  const [cases, procs, i] = [opt('cases', 1_000_000), opt('procs', 2), opt('case', 0)];
  const from = Math.floor(i / Math.ceil(cases / procs)) * Math.ceil(cases / procs);
  process.send = () => true;
  child(opt('seed', 1), from, i + 1, i);
} else main();
