#!/usr/bin/env node
/**
 * WebSocket benchmarks (`npm run bench:ws`; a benchmark, not a test). Servers run in child
 * processes (Mega without @mega/asp, Mega with it, a raw `ws` server), this process is the client.
 * The primary figure is each server's CPU time per operation, read from /proc/<pid>/stat around each
 * run (all threads, so ws's zlib threadpool counts too): on a 2-core machine shared with other work
 * it holds where rates move by tens of percent. Rounds are interleaved (the order alternates),
 * medians and spreads are printed, and every goal of issue 16 gets one verdict from this run:
 *
 *  (a) broadcast of one message to 1,000 connections, one message per event-loop turn: Mega
 *      (presence.broadcast, framed once, one write per connection per turn: the addon's fan-out when
 *      the native codec is built, and a second Mega server writing through Node's streams,
 *      MEGA_WS_NATIVE_SEND=0) vs a raw `ws` send loop (`for (c of wss.clients) c.send(text)`); and
 *      100 messages in one turn.
 *  (b) echo with permessage-deflate on a 2.4 KB JSON message: Mega (codec deflate) vs `ws`'s zlib.
 *  (c) echo of a small message: without @mega/asp, with it on a plain namespace (what an untapped
 *      namespace costs), and on an encrypted one (what ASP costs).
 *  (d) memory per idle connection with 10,000 connections, Mega vs `ws`.
 *  (e) cold `mega start` to the first 200 (scripts/bench-startup.mjs).
 *
 * The client is deliberately cheap (raw sockets, zero masking key, the native codec for deflate and
 * ASP) so the numbers are the servers'. Env: BENCH_ROUNDS (3), BENCH_SECONDS (echo run, 4),
 * BENCH_CONNS (broadcast fan-out, 1000), BENCH_IDLE (idle connections, 10000), BENCH_ECHO_CLIENTS
 * (echo concurrency, 64), BENCH_PIN (servers on that CPU, clients on the others), BENCH_ONLY (subset, e.g. `ab`), BENCH_PROF=mega|mega-asp|mega-node|ws (--cpu-prof).
 */
import { type ChildProcess, fork, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFrames } from './test/wire.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/**
 * BENCH_PIN=<cpu>: every server (all its threads) on that CPU and this process (the clients) on the
 * others, so a server and its load never compete for a core. Off by default here: the figures in
 * the READMEs were measured unpinned (bench:otel pins by default).
 */
const PIN = process.env.BENCH_PIN;
function pin(pid: number, on: readonly string[]): void {
  if (spawnSync('taskset', ['-a', '-p', '-c', on.join(','), String(pid)], { stdio: 'ignore' }).status !== 0)
    throw new Error(`taskset could not pin ${pid} to CPU ${on.join(',')}`);
}
const FANOUT = Number(process.env.BENCH_CONNS ?? 1000);
const IDLE = Number(process.env.BENCH_IDLE ?? 10_000);
const ECHO_CLIENTS = Number(process.env.BENCH_ECHO_CLIENTS ?? 64);
const SECRET = 'bench-asp-master-secret-0123456789abcdefgh';

type Msg = Record<string, unknown>;
interface Codec {
  backend: string;
  createDeflater(o: { level?: number; takeover?: boolean }): { deflate(d: Uint8Array): Buffer };
  createInflater(o: { takeover?: boolean; maxOutput?: number }): { inflate(d: Uint8Array): Buffer };
  createSealer(key: Uint8Array, o: { role: 'client' | 'server' }): { seal(p: Uint8Array, ns: string): Buffer };
  createOpener(key: Uint8Array, o: { role: 'client' | 'server' }): { open(s: Uint8Array, ns: string): Buffer };
}

// ----------------------------------------------------------------------------------- servers

/** `withAsp`: load @mega/asp (then every frame of the server passes its wsMessage tap). */
async function megaServer(withAsp: boolean): Promise<void> {
  const { loadKernel, createLogger } = await import(join(ROOT, 'kernel/dist/index.js'));
  const dir = mkdtempSync(join(tmpdir(), 'mega-bench-ws-'));
  const files: Record<string, string> = {
    'package.json': '{ "name": "bench", "private": true, "type": "module" }\n',
    'mega.config.ts': `export default { plugins: ['@mega/http', '@mega/ws', ${withAsp ? "'@mega/asp', " : ''}'@mega/ws-presence'], server: { port: 0, host: '127.0.0.1' } };\n`,
    'app.config.ts': withAsp
      ? `export default { asp: { masterSecret: '${SECRET}', websocket: { namespaces: ['/secret'] } } };\n`
      : 'export default {};\n',
    'routes/ws.ts': `
export class Echo { ['echo.send'](sock, msg) { sock.send({ type: 'echo.reply', payload: msg.payload }); } }
export class Quiet {}
export default (router) => {
  router.ws('/bcast', Quiet, { heartbeatMs: 0 });
  router.ws('/bcastd', Quiet, { heartbeatMs: 0, writeDelayMs: 1 });
  router.ws('/echo', Echo, { heartbeatMs: 0 });
  router.ws('/echoz', Echo, { heartbeatMs: 0, compression: true });
  router.ws('/secret', Echo, { heartbeatMs: 0, before: () => ({ sessionId: 'bench' }) });
  router.ws('/idle', Quiet);
};
`,
  };
  for (const [p, c] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, p)), { recursive: true });
    writeFileSync(join(dir, p), c);
  }
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  const kernel = await loadKernel({ dir, logger: createLogger({ level: 'silent' }) });
  await kernel.start();
  const app = kernel.apps[0];
  const presence = kernel.use('presence').of(app);
  process.on('message', (m: Msg) => {
    if (m.cmd === 'broadcast') {
      const ns = (m.ns as string | undefined) ?? '/bcast';
      const conns = [...kernel.use('ws').connections(ns)];
      const one = (i: number) => presence.broadcast({ ns, message: { type: 'bench.tick', payload: { i, text: m.text } } });
      runBroadcasts(m, one, () => conns.every((c) => c.bufferedAmount === 0));
    } else if (m.cmd === 'mem') process.send?.(memory());
    else if (m.cmd === 'key') process.send?.({ key: kernel.use('asp').keysFor(app, 'bench').ws });
  });
  process.send?.({ ready: true, port: kernel.use('http').port, codec: kernel.codec.backend, fanout: kernel.use('ws').fanout.native });
}

async function wsServer(): Promise<void> {
  const { WebSocketServer } = await import('ws');
  const server = createServer();
  const plain = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const zlib = new WebSocketServer({ noServer: true, perMessageDeflate: { threshold: 1024 } });
  const bcast = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const echo = (wss: typeof plain) =>
    wss.on('connection', (ws) =>
      ws.on('message', (data) => {
        const m = JSON.parse(String(data));
        ws.send(JSON.stringify({ type: 'echo.reply', payload: m.payload }));
      }),
    );
  echo(plain);
  echo(zlib);
  server.on('upgrade', (req, socket, head) => {
    const wss = req.url === '/echoz' ? zlib : req.url === '/bcast' || req.url === '/idle' ? bcast : plain;
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  process.on('message', (m: Msg) => {
    if (m.cmd === 'broadcast') {
      const clients = [...bcast.clients];
      const one = (i: number) => {
        // The raw loop as usually written: serialise once, send to each.
        const text = JSON.stringify({ type: 'bench.tick', ns: '/bcast', payload: { i, text: m.text } });
        for (const c of clients) c.send(text);
      };
      runBroadcasts(m, one, () => clients.every((c) => c.bufferedAmount === 0));
    } else if (m.cmd === 'mem') process.send?.(memory());
  });
  process.send?.({ ready: true, port: (server.address() as { port: number }).port });
}

/**
 * `count` broadcasts, each in its own macrotask (one message per event-loop turn, as messages
 * usually arrive) or, with `burst`, all in one synchronous loop; then waits until every socket handed
 * its bytes to the kernel and replies with the elapsed time.
 */
function runBroadcasts(m: Msg, one: (i: number) => void, drained: () => boolean): void {
  const count = m.count as number;
  const t0 = performance.now();
  const finish = () => whenDrained(drained, () => process.send?.({ sendMs: performance.now() - t0 }));
  if (m.burst) {
    for (let i = 0; i < count; i++) one(i);
    finish();
    return;
  }
  let i = 0;
  const step = () => {
    one(i++);
    if (i < count) setImmediate(step);
    else finish();
  };
  step();
}

function whenDrained(test: () => boolean, then: () => void): void {
  if (test()) then();
  else setImmediate(() => whenDrained(test, then));
}

function memory(): Msg {
  for (let i = 0; i < 3; i++) (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed, external: m.external };
}

// ------------------------------------------------------------------------------------ client

interface Child {
  proc: ChildProcess;
  port: number;
  info: Msg;
  ask(m: Msg): Promise<Msg>;
  stop(): Promise<void>;
}

async function spawnServer(kind: 'mega' | 'mega-asp' | 'mega-node' | 'ws'): Promise<Child> {
  const execArgv = [
    '--expose-gc',
    ...(process.env.BENCH_PROF === kind ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF_DIR ?? tmpdir()}`] : []),
  ];
  // mega-node: the same server with the addon's broadcast fan-out off (Node's streams write).
  const env = kind === 'mega-node' ? { ...process.env, MEGA_WS_NATIVE_SEND: '0' } : process.env;
  const proc = fork(fileURLToPath(import.meta.url), ['server', kind], { execArgv, env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  if (PIN !== undefined) pin(proc.pid as number, [PIN]);
  const info = await new Promise<Msg>((resolve, reject) => {
    proc.once('message', (m: Msg) => resolve(m));
    proc.once('exit', (code) => reject(new Error(`${kind} server exited (${code})`)));
  });
  const ask = (m: Msg) =>
    new Promise<Msg>((resolve) => {
      proc.once('message', (r: Msg) => resolve(r));
      proc.send(m);
    });
  const stop = async () => {
    const exited = new Promise((r) => proc.once('exit', r));
    // SIGTERM lets --cpu-prof write its profile; SIGKILL if it lingers.
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  return { proc, port: info.port as number, info, ask, stop };
}

/** A raw client connection: handshake, masked (zero key) text frames, a tiny frame parser. */
class Conn {
  socket: Socket;
  #buf: Buffer = Buffer.alloc(0);
  onFrame: (payload: Buffer, rsv1: boolean) => void = () => undefined;
  countOnly = false;
  frames = 0;
  #skip = 0;
  constructor(socket: Socket) {
    this.socket = socket;
  }
  static open(port: number, path: string, extensions?: string): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      socket.setNoDelay(true);
      const c = new Conn(socket);
      let head = Buffer.alloc(0);
      socket.once('error', reject);
      socket.once('connect', () =>
        socket.write(
          `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\nSec-WebSocket-Version: 13\r\n${extensions ? `Sec-WebSocket-Extensions: ${extensions}\r\n` : ''}\r\n`,
        ),
      );
      const onData = (d: Buffer) => {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        socket.off('data', onData);
        if (!head.subarray(0, 12).toString().includes('101')) return reject(new Error(head.subarray(0, end).toString()));
        socket.on('data', (x: Buffer) => c.#push(x));
        const rest = head.subarray(end + 4);
        if (rest.length) c.#push(rest);
        resolve(c);
      };
      socket.on('data', onData);
    });
  }
  #push(d: Buffer): void {
    if (this.countOnly) {
      this.#count(d);
      return;
    }
    this.#buf = readFrames(this.#buf.length ? Buffer.concat([this.#buf, d]) : d, (f) => this.onFrame(f.payload, f.rsv1));
  }
  /** Counts frames without keeping payloads (broadcast receivers). */
  #count(d: Buffer): void {
    let i = 0;
    if (this.#skip > 0) {
      const n = Math.min(this.#skip, d.length);
      this.#skip -= n;
      i = n;
    }
    while (i < d.length) {
      if (this.#buf.length || d.length - i < 4) {
        this.#buf = Buffer.concat([this.#buf, d.subarray(i)]);
        i = d.length;
        if (this.#buf.length < 4) return;
        const b = this.#buf;
        this.#buf = Buffer.alloc(0);
        this.#count(b);
        return;
      }
      let len = (d[i + 1] as number) & 0x7f;
      let off = 2;
      if (len === 126) {
        len = d.readUInt16BE(i + 2);
        off = 4;
      } else if (len === 127) throw new Error('unexpected large frame');
      this.frames++;
      const end = i + off + len;
      if (end > d.length) {
        this.#skip = end - d.length;
        return;
      }
      i = end;
    }
  }
  send(payload: Buffer, rsv1 = false): void {
    const len = payload.length;
    const head = Buffer.alloc(len < 126 ? 6 : len < 65536 ? 8 : 14);
    head[0] = 0x81 | (rsv1 ? 0x40 : 0);
    if (len < 126) head[1] = 0x80 | len;
    else if (len < 65536) {
      head[1] = 0x80 | 126;
      head.writeUInt16BE(len, 2);
    } else {
      head[1] = 0x80 | 127;
      head.writeBigUInt64BE(BigInt(len), 2);
    }
    // The masking key stays zero: a valid key that makes masking a no-op, keeping the client cheap.
    this.socket.write(Buffer.concat([head, payload]));
  }
  close(): void {
    this.socket.destroy();
  }
}

async function openMany(port: number, path: string, n: number, batch = 200): Promise<Conn[]> {
  const out: Conn[] = [];
  for (let i = 0; i < n; i += batch) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(batch, n - i) }, () => Conn.open(port, path)))));
  }
  return out;
}

// ---------------------------------------------------------------------------------- benches

/** Linux's USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s. */
const TICK_US = 10_000;

/** utime + stime of every thread of the server process, in microseconds (read from outside it). */
function cpuOf(server: Child): number {
  const stat = readFileSync(`/proc/${server.proc.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_US;
}

interface Rate {
  /** Operations per second (wall clock; moves with the machine's load). */
  rate: number;
  /** Server CPU per operation, µs (the primary figure). */
  cpuUs: number;
}

/**
 * `count` broadcasts to every connection of `conns`, one per event-loop turn (`burst`: all in one
 * synchronous loop). Rate: from the first broadcast to the last byte handed to the kernel (every
 * socket drained), so it is the server's and not the client's reading speed; CPU: the server's over
 * the run. The client checks every connection received every frame.
 */
async function broadcastRun(server: Child, conns: Conn[], count: number, burst: boolean, ns = '/bcast', repeat = 1): Promise<Rate> {
  for (const c of conns) c.frames = 0;
  let cpu = 0;
  let sendMs = 0;
  // `repeat` runs back to back (each waits for the clients): bursts cost so little CPU that one run
  // is a few ticks of /proc's 10 ms clock.
  for (let k = 1; k <= repeat; k++) {
    const cpu0 = cpuOf(server);
    const r = await server.ask({
      cmd: 'broadcast',
      ns,
      count,
      burst,
      text: 'a broadcast message of about one hundred bytes, like a chat line',
    });
    cpu += cpuOf(server) - cpu0;
    sendMs += r.sendMs as number;
    while (conns.some((c) => c.frames < count * k)) await new Promise((x) => setTimeout(x, 5));
  }
  const deliveries = count * conns.length * repeat;
  return { rate: deliveries / (sendMs / 1000), cpuUs: cpu / deliveries };
}

interface EchoOptions {
  path: string;
  deflate?: boolean;
  seal?: { codec: Codec; key: Buffer };
  text: string;
}

/**
 * Closed-loop echo: ECHO_CLIENTS connections, each sending its next message when the reply arrives.
 * The client stays cheap so the server is what is measured: with deflate it offers
 * client_no_context_takeover and resends one precomputed compressed frame; it fully decodes and checks
 * the first replies of each connection (inflating in order, as context takeover needs) and only counts
 * frames after that.
 */
async function echo(server: Child, opts: EchoOptions, codec: Codec): Promise<Rate> {
  const port = server.port;
  const conns: Conn[] = [];
  const starters: Array<() => void> = [];
  const CHECK = 20;
  let done = 0;
  let stop = false;
  const payload = Buffer.from(JSON.stringify({ type: 'echo.send', payload: { text: opts.text } }));
  const compressed = opts.deflate ? codec.createDeflater({ level: 6, takeover: false }).deflate(payload) : undefined;
  for (let k = 0; k < ECHO_CLIENTS; k++) {
    const c = await Conn.open(port, opts.path, opts.deflate ? 'permessage-deflate; client_no_context_takeover' : undefined);
    const inflater = opts.deflate ? codec.createInflater({ takeover: true, maxOutput: 1 << 24 }) : undefined;
    const sealer = opts.seal?.codec.createSealer(opts.seal.key, { role: 'client' });
    const opener = opts.seal?.codec.createOpener(opts.seal.key, { role: 'client' });
    let checked = 0;
    const sendOne = () => {
      if (compressed) c.send(compressed, true);
      else if (sealer) c.send(Buffer.from(`E:${sealer.seal(payload, opts.path).toString('base64url')}`));
      else c.send(payload);
    };
    c.onFrame = (frame, rsv1) => {
      if (checked < CHECK) {
        checked++;
        let text = rsv1 && inflater ? inflater.inflate(frame) : frame;
        if (opener) text = opener.open(Buffer.from(text.toString('latin1', 2), 'base64url'), opts.path);
        const m = JSON.parse(text.toString());
        if (m.type !== 'echo.reply' || m.payload.text !== opts.text) throw new Error(`unexpected reply: ${text.toString().slice(0, 200)}`);
      }
      done++;
      if (!stop) sendOne();
    };
    conns.push(c);
    starters.push(sendOne);
  }
  for (const start of starters) start();
  await new Promise((r) => setTimeout(r, 1000)); // warm-up
  const from = done;
  const cpu0 = cpuOf(server);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const cpu1 = cpuOf(server);
  const n = done - from;
  const rate = n / ((performance.now() - t0) / 1000);
  stop = true;
  await new Promise((r) => setTimeout(r, 200));
  for (const c of conns) c.close();
  await new Promise((r) => setTimeout(r, 300));
  return { rate, cpuUs: (cpu1 - cpu0) / n };
}

async function idleMemory(server: Child): Promise<{ perConnRss: number; perConnHeap: number }> {
  const before = await server.ask({ cmd: 'mem' });
  const conns = await openMany(server.port, '/idle', IDLE, 500);
  await new Promise((r) => setTimeout(r, 1000));
  const after = await server.ask({ cmd: 'mem' });
  for (const c of conns) c.close();
  await new Promise((r) => setTimeout(r, 500));
  return {
    perConnRss: ((after.rss as number) - (before.rss as number)) / IDLE,
    perConnHeap: ((after.heap as number) + (after.external as number) - (before.heap as number) - (before.external as number)) / IDLE,
  };
}

/** `npm run bench:startup`'s measurement, run as a child: median wall ms and median CPU ms to the first 200. */
function startup(): Promise<{ wallMs: number; cpuMs: number; bareMs: number }> {
  return new Promise((resolve, reject) => {
    const child = fork(join(ROOT, 'scripts/bench-startup.mjs'), ['--json'], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (code !== 0 || !line) reject(new Error(`bench-startup exited with ${code}: ${out}`));
      else resolve(JSON.parse(line));
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

const fmt = (n: number) => Math.round(n).toLocaleString('en');
const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;
const spread = (xs: number[], d = 1) => `${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}`;

interface Goal {
  measure: string;
  goal: string;
  mega: string;
  other: string;
  ratio: string;
  met: boolean | undefined;
}

async function main(): Promise<void> {
  if (PIN !== undefined)
    pin(
      process.pid,
      cpus()
        .map((_, i) => String(i))
        .filter((i) => i !== PIN),
    );
  const { loadCodec } = await import(join(ROOT, 'kernel/dist/index.js'));
  const codec = loadCodec() as Codec;
  const mega = await spawnServer('mega');
  const megaAsp = await spawnServer('mega-asp');
  const ws = await spawnServer('ws');
  const only = process.env.BENCH_ONLY ?? 'abcde';
  const megaNode = only.includes('a') ? await spawnServer('mega-node') : undefined;
  console.log(
    `bench:ws  ${ROUNDS} interleaved rounds, medians (spread); server CPU per operation from /proc/<pid>/stat is the primary figure; ${SECONDS} s per echo run`,
  );
  console.log(
    `machine: ${cpus().length} cores, ${cpus()[0]?.model ?? 'unknown CPU'}; load average ${loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}; node ${process.version}; server codec ${mega.info.codec}, client codec ${codec.backend}\n`,
  );
  const goals: Goal[] = [];
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

  if (only.includes('d')) {
    // First, on fresh processes: RSS only grows, so a heap that already held other connections
    // would hand the idle ones memory it kept (one measurement per server for the same reason).
    const m = await idleMemory(mega);
    const w = await idleMemory(ws);
    const ratio = m.perConnRss / w.perConnRss;
    console.log(
      `(d) memory per idle connection (${fmt(IDLE)}), fresh servers: Mega ${kb(m.perConnRss)} RSS (${kb(m.perConnHeap)} heap+external)   ws ${kb(w.perConnRss)} RSS (${kb(w.perConnHeap)} heap+external)   ${ratio.toFixed(2)}x`,
    );
    goals.push({
      measure: `memory per idle connection (${fmt(IDLE)}), RSS`,
      goal: '≤ 1.5× ws',
      mega: kb(m.perConnRss),
      other: kb(w.perConnRss),
      ratio: `${ratio.toFixed(2)}×`,
      met: ratio <= 1.5,
    });
  }
  if (only.includes('a')) {
    const node = megaNode as Child;
    const mConns = await openMany(mega.port, '/bcast', FANOUT);
    const nConns = await openMany(node.port, '/bcast', FANOUT);
    const wConns = await openMany(ws.port, '/bcast', FANOUT);
    for (const c of [...mConns, ...nConns, ...wConns]) c.countOnly = true;
    await broadcastRun(mega, mConns, 50, false); // warm-up
    await broadcastRun(node, nConns, 50, false);
    await broadcastRun(ws, wConns, 50, false);
    const r = {
      mega: [] as Rate[],
      node: [] as Rate[],
      ws: [] as Rate[],
      megaBurst: [] as Rate[],
      nodeBurst: [] as Rate[],
      wsBurst: [] as Rate[],
      megaDelay: [] as Rate[],
    };
    for (let round = 0; round < ROUNDS; round++) {
      const runs: Array<[Child, Conn[], Rate[], Rate[]]> = [
        [mega, mConns, r.mega, r.megaBurst],
        [node, nConns, r.node, r.nodeBurst],
        [ws, wConns, r.ws, r.wsBurst],
      ];
      for (let i = 0; i < runs.length; i++) {
        const [server, conns, spaced, burst] = runs[(i + round) % runs.length] as [Child, Conn[], Rate[], Rate[]];
        spaced.push(await broadcastRun(server, conns, 200, false));
        burst.push(await broadcastRun(server, conns, 100, true, '/bcast', 5));
      }
    }
    for (const c of [...mConns, ...nConns]) c.close();
    await node.stop();
    // The same stream of one-per-turn broadcasts on a route with writeDelayMs: 1 (opt-in).
    const dConns = await openMany(mega.port, '/bcastd', FANOUT);
    for (const c of dConns) c.countOnly = true;
    await broadcastRun(mega, dConns, 50, false, '/bcastd');
    for (let round = 0; round < ROUNDS; round++) r.megaDelay.push(await broadcastRun(mega, dConns, 200, false, '/bcastd'));
    for (const c of [...dConns, ...wConns]) c.close();
    await new Promise((x) => setTimeout(x, 300));
    const cpu = (xs: Rate[]) => xs.map((x) => x.cpuUs);
    const rate = (xs: Rate[]) => xs.map((x) => x.rate);
    const ratio = median(cpu(r.ws)) / median(cpu(r.mega));
    console.log(
      `(a) broadcast to ${FANOUT} connections, one message per event-loop turn: Mega ${median(cpu(r.mega)).toFixed(2)} µs CPU/delivery (${spread(cpu(r.mega), 2)}), ${fmt(median(rate(r.mega)))}/s   ws loop ${median(cpu(r.ws)).toFixed(2)} µs (${spread(cpu(r.ws), 2)}), ${fmt(median(rate(r.ws)))}/s   ${ratio.toFixed(2)}x less CPU, ${(median(rate(r.mega)) / median(rate(r.ws))).toFixed(2)}x deliveries/s`,
    );
    console.log(
      `    fan-out by ${mega.info.fanout ? 'the addon' : 'Node (addon fan-out unavailable: no native codec)'}; the same Mega writing through Node's streams (MEGA_WS_NATIVE_SEND=0): ${median(cpu(r.node)).toFixed(2)} µs/delivery (${spread(cpu(r.node), 2)}), ${fmt(median(rate(r.node)))}/s   ${(median(cpu(r.ws)) / median(cpu(r.node))).toFixed(2)}x less CPU than the ws loop; 100 in one turn ${median(cpu(r.nodeBurst)).toFixed(2)} µs`,
    );
    console.log(
      `    same stream, route with writeDelayMs: 1 (opt-in: up to 1 ms later, several messages per write): Mega ${median(cpu(r.megaDelay)).toFixed(2)} µs/delivery (${spread(cpu(r.megaDelay), 2)}), ${fmt(median(rate(r.megaDelay)))}/s   ${(median(cpu(r.ws)) / median(cpu(r.megaDelay))).toFixed(2)}x less CPU than the ws loop`,
    );
    console.log(
      `    100 messages in one turn (one write per connection): Mega ${median(cpu(r.megaBurst)).toFixed(2)} µs/delivery, ${fmt(median(rate(r.megaBurst)))}/s   ws loop ${median(cpu(r.wsBurst)).toFixed(2)} µs, ${fmt(median(rate(r.wsBurst)))}/s   ${(median(cpu(r.wsBurst)) / median(cpu(r.megaBurst))).toFixed(2)}x less CPU`,
    );
    goals.push({
      measure: `broadcast to ${FANOUT} connections vs a raw ws loop (one message per turn), CPU per delivery`,
      goal: '≥ 1.5×',
      mega: `${median(cpu(r.mega)).toFixed(2)} µs`,
      other: `${median(cpu(r.ws)).toFixed(2)} µs`,
      ratio: `${ratio.toFixed(2)}×`,
      met: ratio >= 1.5,
    });
  }
  const text = JSON.stringify(Array.from({ length: 40 }, (_, i) => ({ id: i, name: `user-${i}`, status: 'online', room: 'lobby' })));
  if (only.includes('b')) {
    const zm: Rate[] = [];
    const zw: Rate[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const runs: Array<[Child, Rate[]]> = [
        [mega, zm],
        [ws, zw],
      ];
      if (round % 2) runs.reverse();
      for (const [server, out] of runs) out.push(await echo(server, { path: '/echoz', deflate: true, text }, codec));
    }
    const cm = median(zm.map((x) => x.cpuUs));
    const cw = median(zw.map((x) => x.cpuUs));
    console.log(
      `(b) echo, permessage-deflate (${Buffer.byteLength(text)} B JSON): Mega ${cm.toFixed(1)} µs CPU/rt (${spread(zm.map((x) => x.cpuUs))}), ${fmt(median(zm.map((x) => x.rate)))} rt/s   ws ${cw.toFixed(1)} µs (${spread(zw.map((x) => x.cpuUs))}), ${fmt(median(zw.map((x) => x.rate)))} rt/s   ${(cw / cm).toFixed(2)}x less CPU`,
    );
    goals.push({
      measure: `permessage-deflate echo (${(Buffer.byteLength(text) / 1024).toFixed(1)} KB JSON) vs ws's own deflate, CPU per round trip`,
      goal: '≥ 3× less',
      mega: `${cm.toFixed(1)} µs`,
      other: `${cw.toFixed(1)} µs`,
      ratio: `${(cw / cm).toFixed(2)}×`,
      met: cw / cm >= 3,
    });
  }
  if (only.includes('c')) {
    const key = Buffer.from((await megaAsp.ask({ cmd: 'key' })).key as string, 'base64url');
    const small = 'an ordinary chat message, about the size people type';
    const bare: Rate[] = [];
    const plain: Rate[] = [];
    const sealed: Rate[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const runs: Array<() => Promise<void>> = [
        async () => void bare.push(await echo(mega, { path: '/echo', text: small }, codec)),
        async () => void plain.push(await echo(megaAsp, { path: '/echo', text: small }, codec)),
        async () => void sealed.push(await echo(megaAsp, { path: '/secret', text: small, seal: { codec, key } }, codec)),
      ];
      for (let i = 0; i < runs.length; i++) await (runs[(i + round) % runs.length] as () => Promise<void>)();
    }
    const cb = median(bare.map((x) => x.cpuUs));
    const cp = median(plain.map((x) => x.cpuUs));
    const cs = median(sealed.map((x) => x.cpuUs));
    console.log(
      `(c) echo of a small message, CPU/rt: without @mega/asp ${cb.toFixed(2)} µs (${spread(
        bare.map((x) => x.cpuUs),
        2,
      )}), ${fmt(median(bare.map((x) => x.rate)))} rt/s   @mega/asp loaded, plain namespace ${cp.toFixed(2)} µs (${spread(
        plain.map((x) => x.cpuUs),
        2,
      )}), ${fmt(median(plain.map((x) => x.rate)))} rt/s   encrypted namespace ${cs.toFixed(2)} µs (${spread(
        sealed.map((x) => x.cpuUs),
        2,
      )}), ${fmt(median(sealed.map((x) => x.rate)))} rt/s`,
    );
    // Per round, side by side: the noise of one comparison on this machine.
    const perRound = bare.map((b, i) => Math.abs((plain[i] as Rate).cpuUs / b.cpuUs - 1));
    console.log(`    per-round |plain with @mega/asp ÷ without − 1|: ${perRound.map(pct).join(', ')}`);
    goals.push({
      measure: 'plain namespace echo with @mega/asp loaded vs without, CPU per round trip',
      goal: '≤ 2% more',
      mega: `${cp.toFixed(2)} µs`,
      other: `${cb.toFixed(2)} µs`,
      ratio: `${cp >= cb ? '+' : ''}${pct(cp / cb - 1)}`,
      met: cp / cb - 1 <= 0.02,
    });
    goals.push({
      measure: 'encrypted (ASP) vs plain namespace echo, same server, CPU per round trip',
      goal: '≤ 15% more',
      mega: `${cs.toFixed(2)} µs`,
      other: `${cp.toFixed(2)} µs`,
      ratio: `+${pct(cs / cp - 1)}`,
      met: cs / cp - 1 <= 0.15,
    });
  }
  await mega.stop();
  await megaAsp.stop();
  await ws.stop();
  if (only.includes('e')) {
    const s = await startup();
    console.log(
      `(e) cold \`mega start\` (apps/simple) to the first 200: median ${s.wallMs.toFixed(0)} ms wall, ${s.cpuMs.toFixed(0)} ms CPU (bare node spawn+exit: ${s.bareMs.toFixed(0)} ms)`,
    );
    goals.push({
      measure: 'cold `mega start` to the first 200 (apps/simple), wall',
      goal: '≤ 150 ms',
      mega: `${s.wallMs.toFixed(0)} ms`,
      other: `node -e 0: ${s.bareMs.toFixed(0)} ms`,
      ratio: `CPU ${s.cpuMs.toFixed(0)} ms`,
      met: s.wallMs <= 150,
    });
  }
  console.log('\n| measure | goal | Mega | reference | ratio | verdict |\n|---|---|---|---|---|---|');
  for (const g of goals) console.log(`| ${g.measure} | ${g.goal} | ${g.mega} | ${g.other} | ${g.ratio} | ${g.met ? 'met' : 'MISSED'} |`);
}

if (process.argv[2] === 'server') {
  process.on('SIGTERM', () => process.exit(0));
  const kind = process.argv[3];
  await (kind === 'ws' ? wsServer() : megaServer(kind === 'mega-asp'));
} else {
  await main();
}
