/**
 * npm run bench:cluster — two `mega start` instances, BENCH_CLIENTS (500) WebSocket clients on each,
 * a broadcast storm from instance A to channel `room` (every client is in it), once over NATS
 * (@mega/ws-cluster) and once over the Rust hub (@mega/hub-bridge), in the same run. Prints
 * deliveries/s, p50/p99 latency (send on A → receive, split local A / remote B), the hub's
 * deliveries per CPU-second (frames out per /proc/<pid>/stat CPU time) and the instances' CPU.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import type { Msg } from './test/chat-cluster.ts';
import { Client, chatProject } from './test/chat-cluster.ts';
import { freePort, killAll, megaStart, watch } from './test/procs.ts';
import { serviceEnv } from './test/service-env.ts';

const REPO = resolve(fileURLToPath(new URL('..', import.meta.url)));

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 20);
const BURST = Number(process.env.BENCH_BURST ?? 10);
const PACED = Number(process.env.BENCH_PACED ?? 40);
const PACE_MS = 50;
const OBSERVERS = 10;
const HUB_LOAD = Number(process.env.BENCH_HUB_LOAD ?? 5000);
const TICK = 100; // /proc clock ticks per second (CLK_TCK on Linux)
const PLUGINS = ['@mega/http', '@mega/ws', '@mega/ws-presence'];

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICK; // utime + stime (fields 14, 15)
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN;

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}

async function hubFramesOut(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^mega_hub_frames_out_total(?:\{[^}]*\})? (\d+)/gm)) n += Number(m[1]);
  return n;
}

interface Result {
  transport: string;
  deliveries: number;
  expected: number;
  seconds: number;
  perSecond: number;
  local: { p50: number; p99: number };
  remote: { p50: number; p99: number };
  instanceCpu: number;
  hub?: { cpu: number; framesOut: number; perCpuSecond: number };
}

async function run(transport: 'nats' | 'hub'): Promise<Result> {
  const { NATS_URL } = serviceEnv();
  let hub: { pid: number; port: number; stop: () => Promise<void> } | undefined;
  let dir: string;
  if (transport === 'hub') {
    const port = await freePort();
    const child = spawn(join(process.env.CARGO_TARGET_DIR ?? join(REPO, 'target'), 'release/mega-hub'), [], {
      env: { PATH: process.env.PATH ?? '', MEGA_WSHUB_TOKENS: 'bench', MEGA_WSHUB_PORT: String(port) },
    });
    const w = watch(child);
    await w.waitFor(/listening on/);
    hub = { pid: child.pid as number, port, stop: () => w.kill('SIGTERM') };
    dir = chatProject({
      plugins: [...PLUGINS, '@mega/hub-bridge'],
      app: `bridgeHub: { url: 'ws://127.0.0.1:${port}', token: 'bench', bridgeId: process.env.BRIDGE_ID }`,
    });
  } else {
    dir = chatProject({
      plugins: [...PLUGINS, '@mega/bus', '@mega/ws-cluster'],
      global: `services: { buses: { default: { driver: 'nats', url: ${JSON.stringify(NATS_URL)} } } }, wsCluster: { subjectPrefix: 'bench${Date.now()}' }`,
    });
  }
  const env = { MEGA_LOG_LEVEL: 'warn' };
  const [a, b] = await Promise.all([megaStart(dir, { ...env, BRIDGE_ID: 'A' }), megaStart(dir, { ...env, BRIDGE_ID: 'B' })]);
  if (transport === 'hub') await new Promise((r) => setTimeout(r, 300));

  const lat = { local: [] as number[], remote: [] as number[] };
  let received = 0;
  let last = 0;
  const clients: Client[] = [];
  for (const [side, proc] of [
    ['local', a],
    ['remote', b],
  ] as const) {
    for (let i = 0; i < CLIENTS; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(50, CLIENTS - i) }, (_, j) =>
          Client.open(proc.port, `user=${side}${i + j}&session=${side}-${i + j}&ch=room`),
        ),
      );
      for (const c of batch) {
        c.onMessage = (m: Msg) => {
          if (m.type !== 'chat.said') return;
          const now = performance.timeOrigin + performance.now();
          if (m.payload.warm) return;
          lat[side].push(now - m.payload.t);
          received++;
          last = now;
        };
        clients.push(c);
      }
    }
  }
  const driver = await Client.open(a.port, 'user=driver&session=driver&ch=ctl');
  // Warm-up: one broadcast must reach every client on both instances before measuring.
  let warm = 0;
  for (const c of clients) {
    const inner = c.onMessage;
    c.onMessage = (m) => (m.payload?.warm ? warm++ : inner?.(m));
  }
  const deadline = Date.now() + 15_000;
  while (warm < clients.length && Date.now() < deadline) {
    warm = 0;
    driver.send('chat.say', { channel: 'room', warm: true });
    await new Promise((r) => setTimeout(r, 500));
  }
  if (warm < clients.length) throw new Error(`${transport}: warm-up reached ${warm}/${clients.length} clients`);

  // Phase 1, storm: ROUNDS bursts of BURST broadcasts as fast as A accepts them -> deliveries/s.
  const expected = ROUNDS * BURST * clients.length;
  const inst0 = cpuSeconds(a.child.pid as number) + cpuSeconds(b.child.pid as number);
  const t0 = performance.timeOrigin + performance.now();
  for (let r = 0; r < ROUNDS; r++) await driver.ask('chat.burst', { n: BURST, channel: 'room' }, 'chat.ok');
  await waitFor(() => received >= expected, 30_000);
  const seconds = (last - t0) / 1000;
  const stormReceived = received;
  const instanceCpu = cpuSeconds(a.child.pid as number) + cpuSeconds(b.child.pid as number) - inst0;

  // Phase 2, paced: one broadcast every PACE_MS, so latency is not the storm's queueing.
  lat.local.length = 0;
  lat.remote.length = 0;
  const pacedExpected = received + PACED * clients.length;
  for (let i = 0; i < PACED; i++) {
    driver.send('chat.burst', { n: 1, channel: 'room' });
    await new Promise((r) => setTimeout(r, PACE_MS));
  }
  await waitFor(() => received >= pacedExpected, 15_000);
  const local = lat.local.sort((x, y) => x - y);
  const remote = lat.remote.sort((x, y) => x - y);
  const result: Result = {
    transport,
    deliveries: stormReceived,
    expected,
    seconds,
    perSecond: stormReceived / seconds,
    local: { p50: pct(local, 50), p99: pct(local, 99) },
    remote: { p50: pct(remote, 50), p99: pct(remote, 99) },
    instanceCpu,
  };

  // Phase 3, hub only: OBSERVERS extra bridges on channel hubload (no client there), HUB_LOAD broadcasts from A.
  if (hub) {
    let got = 0;
    const observers = await Promise.all(
      Array.from({ length: OBSERVERS }, async (_, i) => {
        const ws = new WebSocket(`ws://127.0.0.1:${hub.port}`);
        await new Promise((ok, fail) => {
          ws.once('open', ok);
          ws.once('error', fail);
        });
        const registered = new Promise((ok) => ws.once('message', ok));
        ws.send(JSON.stringify({ type: 'register', payload: { token: 'bench', bridgeId: `obs${i}` } }));
        await registered;
        ws.on('message', (d) => {
          if (d.toString().startsWith('{"type":"broadcast"')) got++;
        });
        ws.send(JSON.stringify({ type: 'join', payload: { sessionId: `obs${i}`, userId: 'obs', channels: ['hubload'] } }));
        return ws;
      }),
    );
    await new Promise((r) => setTimeout(r, 200));
    const cpu0 = cpuSeconds(hub.pid);
    const out0 = await hubFramesOut(hub.port);
    for (let i = 0; i < HUB_LOAD; i += 250) await driver.ask('chat.burst', { n: 250, channel: 'hubload' }, 'chat.ok');
    await waitFor(() => got >= HUB_LOAD * OBSERVERS, 30_000);
    const cpu = cpuSeconds(hub.pid) - cpu0;
    const framesOut = (await hubFramesOut(hub.port)) - out0;
    result.hub = { cpu, framesOut, perCpuSecond: framesOut / Math.max(cpu, 1 / TICK) };
    for (const ws of observers) ws.terminate();
  }
  for (const c of [...clients, driver]) c.ws.terminate();
  await Promise.all([a.kill('SIGTERM'), b.kill('SIGTERM')]);
  await hub?.stop();
  return result;
}

try {
  console.log(
    `bench:cluster — 2 instances x ${CLIENTS} clients (all in channel room); storm: ${ROUNDS} x ${BURST} broadcasts from A; latency: ${PACED} broadcasts every ${PACE_MS} ms\n`,
  );
  const runs: Result[] = [];
  // Alternated twice so neither transport always runs on a colder or busier machine.
  for (const t of ['nats', 'hub', 'nats', 'hub'] as const) runs.push(await run(t));
  const f = (n: number, d = 1) => n.toFixed(d).padStart(8);
  console.log('transport  storm deliveries/s  instances CPU s   paced local p50/p99 ms   paced remote p50/p99 ms   storm delivered');
  for (const r of runs) {
    console.log(
      `${r.transport.padEnd(9)}  ${f(r.perSecond, 0)}            ${r.instanceCpu.toFixed(2).padStart(6)}        ${f(r.local.p50)} /${f(r.local.p99)}     ${f(r.remote.p50)} /${f(r.remote.p99)}      ${r.deliveries}/${r.expected}`,
    );
  }
  const best = (t: string, k: (r: Result) => number, max: boolean) =>
    runs
      .filter((r) => r.transport === t)
      .map(k)
      .reduce((x, y) => (max ? Math.max(x, y) : Math.min(x, y)));
  for (const r of runs.filter((x) => x.hub)) {
    const h = r.hub as NonNullable<Result['hub']>;
    console.log(
      `hub: ${h.framesOut} frames out to ${OBSERVERS} bridges in ${h.cpu.toFixed(2)} CPU s = ${Math.round(h.perCpuSecond)} hub deliveries per CPU-second`,
    );
  }
  console.log(
    `\nratios hub / nats (best of 2 each): storm deliveries/s ${(best('hub', (r) => r.perSecond, true) / best('nats', (r) => r.perSecond, true)).toFixed(2)}, ` +
      `paced remote p50 ${(best('hub', (r) => r.remote.p50, false) / best('nats', (r) => r.remote.p50, false)).toFixed(2)}, ` +
      `paced remote p99 ${(best('hub', (r) => r.remote.p99, false) / best('nats', (r) => r.remote.p99, false)).toFixed(2)}`,
  );
  console.log("(the 1000 clients share the 2 cores with both instances and the broker: storm figures are the whole machine's)");
} finally {
  killAll();
}
