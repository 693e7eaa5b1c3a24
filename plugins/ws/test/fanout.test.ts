/**
 * The broadcast fan-out (native.ts, crates/mega-napi/src/net.rs): broadcast frames of connections
 * Node holds nothing for leave in one addon call per turn; everything else (and whatever a socket
 * does not take) goes through Node's streams. These tests check the bytes are the same either way,
 * the order of one connection's output holds across both paths, a full socket buffer still reaches
 * the slow-consumer policy, and TLS, compressed and closed connections are handled.
 */
import { createServer as createHttpsServer } from 'node:https';
import { connect, type Socket } from 'node:net';
import { bootProject, stopAll, waitUntil } from '@mega/testing';
import type { WsConnection, WsServer } from '@mega/ws';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { readFrames } from '../../../scripts/test/wire.js';
import { Client, project } from './support.js';

const saved = { codec: process.env.MEGA_CODEC, send: process.env.MEGA_WS_NATIVE_SEND };
afterEach(async () => {
  await stopAll();
  for (const [key, value] of [
    ['MEGA_CODEC', saved.codec],
    ['MEGA_WS_NATIVE_SEND', saved.send],
  ] as const) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
});

const FILES = {
  'channel.ts': 'export class Room {}\n',
  'routes/ws.ts': `
import { Room } from '../channel.js';
export default (router: any) => {
  router.ws('/room', Room, { heartbeatMs: 0 });
  router.ws('/slow', Room, { heartbeatMs: 0, maxBufferedBytes: 256 * 1024 });
  router.ws('/z', Room, { heartbeatMs: 0, compression: { threshold: 256 } });
  router.ws('/delayed', Room, { heartbeatMs: 0, writeDelayMs: 5 });
};
`,
};

/** Boots the project with the addon's fan-out on (`native`), or with Node writing everything. */
async function start(mode: 'native' | 'node' | 'ts') {
  process.env.MEGA_CODEC = mode === 'ts' ? 'ts' : 'native';
  if (mode === 'node') process.env.MEGA_WS_NATIVE_SEND = '0';
  else delete process.env.MEGA_WS_NATIVE_SEND;
  const dir = project({
    ...FILES,
    'mega.config.ts': "export default { plugins: ['@mega/http', '@mega/ws'], ws: { closeTimeoutMs: 300 } };\n",
  });
  const b = await bootProject(dir);
  const ws = b.kernel.use('ws');
  expect(ws.fanout.native).toBe(mode === 'native');
  return { b, ws };
}

/** A parsed message (test code reads its fields freely). */
type Msg = Record<string, any>;

/** A client that keeps every byte the server sent after the handshake. */
class Tap {
  bytes: Buffer = Buffer.alloc(0);
  closed = false;
  private constructor(readonly socket: Socket) {
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => undefined);
  }
  static open(port: number, path: string): Promise<Tap> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      const tap = new Tap(socket);
      let head = Buffer.alloc(0);
      socket.once('connect', () =>
        socket.write(
          `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        ),
      );
      const onData = (d: Buffer) => {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        socket.off('data', onData);
        if (!head.subarray(0, 12).toString().includes('101')) return reject(new Error(head.subarray(0, end).toString()));
        tap.bytes = head.subarray(end + 4);
        socket.on('data', (x: Buffer) => {
          tap.bytes = Buffer.concat([tap.bytes, x]);
        });
        resolve(tap);
      };
      socket.on('data', onData);
      socket.once('error', reject);
    });
  }
  /** Text frames received so far, parsed. */
  messages(): Msg[] {
    const out: Msg[] = [];
    readFrames(this.bytes, (f) => {
      if (f.opcode === 1) out.push(JSON.parse(f.payload.toString()));
    });
    return out;
  }
}

type Pair = [Tap, WsConnection];

/** Opens `n` taps and returns them with their server-side connections, in the same order. */
async function taps(ws: WsServer, port: number, path: string, n: number): Promise<Pair[]> {
  const out: Pair[] = [];
  for (let i = 0; i < n; i++) {
    const before = new Set(ws.connections(path));
    const tap = await Tap.open(port, path);
    const conn = await waitUntil(() => [...ws.connections(path)].find((c) => !before.has(c)), { what: 'server connection' });
    out.push([tap, conn]);
  }
  return out;
}

const turn = () => new Promise<void>((r) => setImmediate(r));

describe('broadcast fan-out', () => {
  it('puts the same bytes on the wire with the addon, with Node writing, and with the TS codec', async () => {
    const wire: Buffer[] = [];
    for (const mode of ['native', 'node', 'ts'] as const) {
      const { b, ws } = await start(mode);
      const pairs = await taps(ws, b.port, '/room', 3);
      const conns = pairs.map(([, c]) => c);
      for (let i = 0; i < 3; i++) {
        expect(ws.broadcast(conns, { type: 'room.news', ns: '/room', payload: { i, text: 'é '.repeat(i * 40) } })).toBe(3);
        await turn();
      }
      // Larger than one 16 KiB chunk, and a frame with a 64-bit length.
      ws.broadcast(conns, { type: 'room.big', payload: { text: 'x'.repeat(70_000) } });
      for (const [tap] of pairs) await waitUntil(() => tap.messages().length === 4, { what: 'four messages' });
      const first = (pairs[0] as Pair)[0].bytes;
      for (const [tap] of pairs) expect(tap.bytes.equals(first)).toBe(true);
      expect(ws.fanout.deliveries).toBe(mode === 'native' ? 12 : 0);
      expect(ws.traffic.bytesOut).toBe(3 * first.length);
      expect(ws.traffic.messagesOut).toBe(12);
      wire.push(first);
      await b.stop();
    }
    expect((wire[1] as Buffer).equals(wire[0] as Buffer)).toBe(true);
    expect((wire[2] as Buffer).equals(wire[0] as Buffer)).toBe(true);
  });

  it("keeps one connection's order across addon writes, corked writes and large frames", async () => {
    const { b, ws } = await start('native');
    const [[tap, conn], [other, otherConn]] = (await taps(ws, b.port, '/room', 2)) as [Pair, Pair];
    const both = [conn, otherConn];
    const seq: string[] = [];
    const news = (name: string) => {
      seq.push(name);
      return ws.prepare({ type: 'seq', payload: { name } });
    };
    const direct = (name: string, size = 0) => {
      seq.push(name);
      conn.send({ type: 'seq', payload: { name, pad: 'p'.repeat(size) } });
    };
    ws.broadcast(both, news('a')); // held, then the addon
    await turn();
    ws.broadcast(both, news('b')); // held, then released into the cork by c
    direct('c');
    await turn();
    direct('d'); // corked first: e follows through the cork
    ws.broadcast(both, news('e'));
    await turn();
    const f = news('f');
    seq.push('f');
    ws.broadcast(both, f); // the same frame twice in one turn: the second releases the first
    ws.broadcast(both, f);
    await turn();
    direct('g', 40_000); // header and payload written separately
    ws.broadcast(both, news('h'));
    await turn();
    ws.broadcast(both, news('i'));
    await waitUntil(() => tap.messages().length === seq.length, { what: 'every message' });
    expect(tap.messages().map((m) => m.payload.name)).toEqual(seq);
    const others = seq.filter((n) => !['c', 'd', 'g'].includes(n));
    await waitUntil(() => other.messages().length === others.length, { what: 'broadcasts on the other connection' });
    expect(other.messages().map((m) => m.payload.name)).toEqual(others);
    // a, f (the second), i on both connections went through the addon at least.
    expect(ws.fanout.deliveries).toBeGreaterThanOrEqual(6);
    expect(ws.fanout.handedBack).toBe(0);
  });

  it('hands what a full socket buffer does not take to Node: the slow-consumer policy still closes the client (1013)', async () => {
    const { b, ws } = await start('native');
    const [[reader], [stalled, stalledConn]] = (await taps(ws, b.port, '/slow', 2)) as [Pair, Pair];
    stalled.socket.pause(); // reads nothing: the kernel buffers fill, then Node's
    const conns = [...ws.connections('/slow')];
    const pad = 'z'.repeat(60_000);
    let sent = 0;
    while (stalledConn.closeCode === undefined && sent < 4000) {
      ws.broadcast(conns, { type: 'fill', payload: { n: sent++, pad } });
      await turn();
    }
    expect(stalledConn.closeCode).toBe(1013);
    expect(ws.fanout.handedBack).toBeGreaterThan(0);
    expect(ws.fanout.deliveries).toBeGreaterThan(0);
    // The reader got every message, whole and in order.
    const n = (m: Msg) => m.payload.n as number;
    await waitUntil(() => reader.messages().length === sent, { what: 'all messages on the reader', timeoutMs: 20_000 });
    expect(reader.messages().map(n)).toEqual(Array.from({ length: sent }, (_, i) => i));
    // Read now: what reached the stalled client is whole frames in order (the rest of a partly
    // written frame followed its first bytes), up to wherever the close cut it off.
    stalled.socket.resume();
    await waitUntil(() => stalledConn.readyState === 3 && stalled.closed, { what: 'the slow consumer closed' });
    const got = stalled.messages().map(n);
    expect(got.length).toBeGreaterThan(10);
    expect(got).toEqual(Array.from({ length: got.length }, (_, i) => i));
  });

  it('writes compressed frames and write-delayed routes through Node; plain frames of a deflate connection may use the addon', async () => {
    const { b, ws } = await start('native');
    const z = await Client.open(b.url('/z', 'ws'), { perMessageDeflate: true });
    const delayed = await Tap.open(b.port, '/delayed');
    const zc = await waitUntil(() => [...ws.connections('/z')][0]);
    const dc = await waitUntil(() => [...ws.connections('/delayed')][0]);
    expect(zc?.compressed).toBe(true);
    const big = 'compressible '.repeat(100);
    ws.broadcast([zc, dc] as WsConnection[], { type: 'z.big', payload: { big } });
    await turn();
    const fanned = ws.fanout.deliveries;
    expect(fanned).toBe(0);
    ws.broadcast([zc, dc] as WsConnection[], { type: 'z.small', payload: { n: 1 } });
    await turn();
    expect(ws.fanout.deliveries).toBe(1); // the deflate connection's uncompressed frame; not the delayed route
    expect((await z.next()).payload.big).toBe(big);
    expect((await z.next()).payload.n).toBe(1);
    await waitUntil(() => delayed.messages().length === 2);
    expect(delayed.messages().map((m) => m.type)).toEqual(['z.big', 'z.small']);
  });

  it('writes TLS connections through the TLS socket', async () => {
    const { b, ws } = await start('native');
    // The WS server answers upgrades forwarded from an HTTPS server (the same app behind TLS).
    const https = createHttpsServer({ key: TEST_KEY, cert: TEST_CERT });
    https.on('upgrade', (req, socket, head) => b.kernel.use('http').fastify.server.emit('upgrade', req, socket, head));
    await new Promise<void>((r) => https.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (https.address() as { port: number }).port;
      const secure = new WebSocket(`wss://127.0.0.1:${port}/room`, { rejectUnauthorized: false, headers: { host: `127.0.0.1:${b.port}` } });
      const got = new Promise<string>((r) => secure.once('message', (d) => r(d.toString())));
      await new Promise<void>((ok, fail) => {
        secure.once('open', () => ok());
        secure.once('error', fail);
      });
      const plain = await Tap.open(b.port, '/room');
      const conns = await waitUntil(() => {
        const all = [...ws.connections('/room')];
        return all.length === 2 && all;
      });
      expect(conns.filter((c) => (c.socket as { encrypted?: boolean } | null)?.encrypted)).toHaveLength(1);
      ws.broadcast(conns, { type: 'tls.news', payload: { ok: true } });
      expect(JSON.parse(await got)).toEqual({ type: 'tls.news', payload: { ok: true } });
      await waitUntil(() => plain.messages().length === 1);
      expect(ws.fanout.deliveries).toBe(1); // the plain one only
      secure.terminate();
    } finally {
      https.closeAllConnections();
      await new Promise((r) => https.close(r));
    }
  });

  it('skips connections terminated in the turn and hands a failed send (peer reset) to Node, which closes it', async () => {
    const { b, ws } = await start('native');
    const [[live], [, gone], [reset, resetConn]] = (await taps(ws, b.port, '/room', 3)) as [Pair, Pair, Pair];
    const conns = [...ws.connections('/room')];
    ws.broadcast(conns, { type: 'one' });
    gone.terminate(); // held for the fan-out, then destroyed before the turn ends
    await turn();
    expect(ws.fanout.deliveries).toBe(2);
    // Reset by the peer inside an I/O callback: the server's poll has not seen it when the turn
    // ends, so the fan-out's send is what meets the reset.
    const liveConn = conns[0] as WsConnection;
    const done = new Promise<void>((resolve) =>
      live.socket.once('data', () => {
        reset.socket.resetAndDestroy();
        ws.broadcast([resetConn, liveConn], { type: 'two' });
        resolve();
      }),
    );
    liveConn.send({ type: 'wake' });
    await done;
    await waitUntil(() => resetConn.readyState === 3, { what: 'the reset connection closed' });
    expect(resetConn.closeCode).toBe(1006);
    expect(ws.fanout.handedBack).toBe(1);
    await waitUntil(() => live.messages().length === 3);
    expect(live.messages().map((m) => m.type)).toEqual(['one', 'wake', 'two']);
  });
});

// A self-signed certificate for 127.0.0.1 and localhost, valid until 2126: test-only.
const TEST_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgeusJKmfdv4XkSoJV
epVxz1Nyv6RK53lUCtvo0nhbedGhRANCAAS4zVbCj1JDzkFYaoDugPJ1Uvjv/0LQ
Z0px6zgxPDErqCZU5VWMRoiHhZJ1A5tN5MkkK0BDrLht9Wb2wgE/lp/4
-----END PRIVATE KEY-----
`;
const TEST_CERT = `-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUIbQLxCteJZockzvsCLQZoX7UfuIwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwNTEwMzk0MloYDzIxMjYxMTEx
MTAzOTQyWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAS4zVbCj1JDzkFYaoDugPJ1Uvjv/0LQZ0px6zgxPDErqCZU5VWMRoiH
hZJ1A5tN5MkkK0BDrLht9Wb2wgE/lp/4o28wbTAdBgNVHQ4EFgQU9njXhYGjqVks
AhNSGHQnS/+84ecwHwYDVR0jBBgwFoAU9njXhYGjqVksAhNSGHQnS/+84ecwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwCgYIKoZI
zj0EAwIDSAAwRQIgaeuRIKO3Rm0dLKmGtedfyL939ZsSgiRWPNmjxMvbn1MCIQCI
jSQDY1UP3jZRpwCYkxqtEhXBk9iU6oNd0OtvYAdDZw==
-----END CERTIFICATE-----
`;
