#!/usr/bin/env node
/**
 * WebSocket benchmarks (`npm run bench:ws`; a benchmark, not a test). Servers run in child
 * processes, this process is the client, so each side has a core of a 2-core machine. Every ratio
 * compares two servers measured in the same run against the same client:
 *
 *  (a) broadcast of one message to 1,000 connections: deliveries/s, Mega (presence.broadcast, framed
 *      once) vs a raw `ws` send loop (`for (c of wss.clients) c.send(text)`).
 *  (b) echo round trips/s with permessage-deflate on: Mega (codec deflate) vs `ws`'s zlib path.
 *  (c) echo round trips/s on an encrypted namespace (ASP) vs a plain one, both Mega.
 *  (d) memory per idle connection with 10,000 connections (Mega, and `ws` for reference).
 *
 * The client is deliberately cheap (raw sockets, zero masking key, the native codec for deflate and
 * ASP) so the numbers are the servers'. Env: BENCH_SECONDS (echo duration, default 5),
 * BENCH_CONNS (broadcast fan-out, default 1000), BENCH_IDLE (idle connections, default 10000),
 * BENCH_ECHO_CLIENTS (echo concurrency, default 64), BENCH_ONLY (subset, e.g. `ab`).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFrames } from './test/wire.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
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
      const conns = [...kernel.use('ws').connections('/bcast')];
      const one = (i: number) => presence.broadcast({ ns: '/bcast', message: { type: 'bench.tick', payload: { i, text: m.text } } });
      runBroadcasts(m, one, () => conns.every((c) => c.bufferedAmount === 0));
    } else if (m.cmd === 'mem') process.send?.(memory());
    else if (m.cmd === 'cpu') process.send?.(cpu());
    else if (m.cmd === 'key') process.send?.({ key: kernel.use('asp').keysFor(app, 'bench').ws });
  });
  process.send?.({ ready: true, port: kernel.use('http').port, codec: kernel.codec.backend });
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
    else if (m.cmd === 'cpu') process.send?.(cpu());
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

/** CPU time of the whole process (all threads, so ws's zlib threadpool counts too), in microseconds. */
function cpu(): Msg {
  const u = process.cpuUsage();
  return { us: u.user + u.system };
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

async function spawnServer(kind: 'mega' | 'mega-asp' | 'ws'): Promise<Child> {
  const execArgv = [
    '--expose-gc',
    ...(process.env.BENCH_PROF === kind ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF_DIR ?? tmpdir()}`] : []),
  ];
  const proc = fork(fileURLToPath(import.meta.url), ['server', kind], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
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

/**
 * Server side: time from the first broadcast to the last byte handed to the kernel (every socket's
 * buffer drained), so the rate is the server's and not the client's reading speed. The client checks
 * every connection received every frame.
 */
async function broadcast(server: Child): Promise<{ spaced: number; burst: number }> {
  const conns = await openMany(server.port, '/bcast', FANOUT);
  for (const c of conns) c.countOnly = true;
  await new Promise((r) => setTimeout(r, 300));
  const run = async (count: number, burst: boolean) => {
    for (const c of conns) c.frames = 0;
    const r = await server.ask({
      cmd: 'broadcast',
      count,
      burst,
      text: 'a broadcast message of about one hundred bytes, like a chat line',
    });
    while (conns.some((c) => c.frames < count)) await new Promise((x) => setTimeout(x, 5));
    return (count * conns.length) / ((r.sendMs as number) / 1000);
  };
  await run(20, false); // warm-up
  const spaced = median([
    await run(100, false),
    await run(100, false),
    await run(100, false),
    await run(100, false),
    await run(100, false),
  ]);
  const burst = median([await run(100, true), await run(100, true), await run(100, true)]);
  for (const c of conns) c.close();
  await new Promise((r) => setTimeout(r, 300));
  return { spaced, burst };
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
interface EchoResult {
  rate: number;
  /** Server CPU per round trip (µs): robust to other load on a shared machine. */
  cpuUs: number;
}

async function echo(server: Child, opts: EchoOptions, codec: Codec): Promise<EchoResult> {
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
  const cpu0 = (await server.ask({ cmd: 'cpu' })).us as number;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const cpu1 = (await server.ask({ cmd: 'cpu' })).us as number;
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

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

const fmt = (n: number) => Math.round(n).toLocaleString('en');
const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;

async function main(): Promise<void> {
  const { loadCodec } = await import(join(ROOT, 'kernel/dist/index.js'));
  const codec = loadCodec() as Codec;
  const mega = await spawnServer('mega');
  const megaAsp = await spawnServer('mega-asp');
  const ws = await spawnServer('ws');
  console.log(`WebSocket benchmarks (server codec: ${mega.info.codec}; client codec: ${codec.backend}; ${SECONDS}s per echo run)\n`);

  const only = process.env.BENCH_ONLY ?? 'abcd';
  if (only.includes('a')) {
    const bMega = await broadcast(mega);
    const bWs = await broadcast(ws);
    console.log(
      `(a) broadcast to ${FANOUT} connections, one message per tick   Mega ${fmt(bMega.spaced)} deliveries/s   ws loop ${fmt(bWs.spaced)}/s   ratio ${(bMega.spaced / bWs.spaced).toFixed(2)}x`,
    );
    console.log(
      `    100 messages in one tick (Mega corks each socket for the tick)   Mega ${fmt(bMega.burst)}/s   ws loop ${fmt(bWs.burst)}/s   ratio ${(bMega.burst / bWs.burst).toFixed(2)}x`,
    );
  }
  const text = JSON.stringify(Array.from({ length: 40 }, (_, i) => ({ id: i, name: `user-${i}`, status: 'online', room: 'lobby' })));
  if (only.includes('b')) {
    const zMega = await echo(mega, { path: '/echoz', deflate: true, text }, codec);
    const zWs = await echo(ws, { path: '/echoz', deflate: true, text }, codec);
    console.log(
      `(b) echo, permessage-deflate (${Buffer.byteLength(text)} B JSON)   Mega ${fmt(zMega.rate)} rt/s (${zMega.cpuUs.toFixed(0)} µs CPU/rt)   ws ${fmt(zWs.rate)} rt/s (${zWs.cpuUs.toFixed(0)} µs CPU/rt)   ratio ${(zMega.rate / zWs.rate).toFixed(2)}x throughput, ${(zWs.cpuUs / zMega.cpuUs).toFixed(2)}x less CPU`,
    );
  }
  if (only.includes('c')) {
    const key = Buffer.from((await megaAsp.ask({ cmd: 'key' })).key as string, 'base64url');
    const small = 'an ordinary chat message, about the size people type';
    const bare = await echo(mega, { path: '/echo', text: small }, codec);
    const plain = await echo(megaAsp, { path: '/echo', text: small }, codec);
    const sealed = await echo(megaAsp, { path: '/secret', text: small, seal: { codec, key } }, codec);
    const pct = (a: number, b: number) => `${(((a - b) / a) * 100).toFixed(1)}%`;
    console.log(
      `(c) echo, encrypted namespace vs plain   plain ${fmt(plain.rate)} rt/s (${plain.cpuUs.toFixed(0)} µs CPU/rt)   ASP ${fmt(sealed.rate)} rt/s (${sealed.cpuUs.toFixed(0)} µs CPU/rt)   overhead ${pct(plain.rate, sealed.rate)} throughput, ${(((sealed.cpuUs - plain.cpuUs) / plain.cpuUs) * 100).toFixed(1)}% CPU`,
    );
    console.log(
      `    vs a server without @mega/asp   plain ${fmt(bare.rate)} rt/s (${bare.cpuUs.toFixed(0)} µs CPU/rt)   ASP overhead ${pct(bare.rate, sealed.rate)} throughput, ${(((sealed.cpuUs - bare.cpuUs) / bare.cpuUs) * 100).toFixed(1)}% CPU`,
    );
  }
  if (only.includes('d')) {
    const mMega = await idleMemory(mega);
    const mWs = await idleMemory(ws);
    console.log(
      `(d) memory per idle connection (${fmt(IDLE)})   Mega ${kb(mMega.perConnRss)} RSS (${kb(mMega.perConnHeap)} heap+external)   ws ${kb(mWs.perConnRss)} RSS (${kb(mWs.perConnHeap)} heap+external)`,
    );
  }
  await mega.stop();
  await megaAsp.stop();
  await ws.stop();
}

if (process.argv[2] === 'server') {
  process.on('SIGTERM', () => process.exit(0));
  const kind = process.argv[3];
  await (kind === 'ws' ? wsServer() : megaServer(kind === 'mega-asp'));
} else {
  await main();
}
