import { bootProject, stopAll } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { Client, project, RawClient, refused } from './support.js';

afterEach(stopAll);

/** Shared with the channels through globalThis (jiti loads them as their own module instance). */
const shared = globalThis as unknown as { wsTest: { log: string[]; gate: Promise<void>; open: () => void } };
function resetShared() {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  shared.wsTest = { log: [], gate, open };
}

const CHANNELS = `
import { AuthError } from '@mega/kernel';
const t = () => (globalThis as any).wsTest;

export class SlowChannel {
  seen: string[] = [];
  async onConnect(sock: any) { await t().gate; sock.send({ type: 'ready' }); }
  ['m.add'](sock: any, msg: any) { this.seen.push(msg.payload.n); sock.send({ type: 'm.seen', payload: { n: msg.payload.n, order: this.seen.length } }); }
  onDisconnect(_s: any, _c: any, info: any) { t().log.push('slow:' + info.code); }
}
export class BrokenChannel {
  onConnect() { throw new Error('db down'); }
  onDisconnect() { t().log.push('broken:disconnect'); }
  ['m.add']() {}
}
export class AuthChannel {
  onConnect(sock: any, ctx: any) { sock.send({ type: 'who', payload: { auth: ctx.auth, same: ctx === sock.ctx } }); }
  onDisconnect(_s: any, _c: any, info: any) { t().log.push('auth:' + info.code); }
}
export class BigChannel {
  ['m.burst'](sock: any, msg: any) {
    const chunk = 'x'.repeat(64 * 1024);
    for (let i = 0; i < msg.payload.count; i++) if (!sock.send({ type: 'm.chunk', payload: { i, chunk } })) break;
  }
  onDisconnect(_s: any, _c: any, info: any) { t().log.push('big:' + info.code); }
}
export class QuietChannel {
  onDisconnect(_s: any, _c: any, info: any) { t().log.push('quiet:' + info.code); }
}
export class AsyncChannel {
  n = 0;
  async ['m.slow'](sock: any, msg: any) {
    await new Promise((r) => setImmediate(r));
    this.n++;
    sock.send({ type: 'm.done', payload: { i: msg.payload.i, n: this.n } });
  }
}
export class ByeChannel {
  onConnect(sock: any) { sock.send({ type: 'hi' }); }
  onDisconnect(_s: any, _c: any, info: any) { t().log.push('bye:' + info.code); }
}

export const byToken = (req: any) => {
  const token = new URL(req.url, 'http://x').searchParams.get('token');
  if (token !== 'good') throw new AuthError('auth.required', 'a valid token is required');
  return { userId: 'u1', sessionId: 's1' };
};
`;

const ROUTES = `
import * as c from '../channels.js';
export default (router: any) => {
  router.ws('/slow', c.SlowChannel, { preConnectQueue: 4 });
  router.ws('/broken', c.BrokenChannel);
  router.ws('/auth', c.AuthChannel, { before: [c.byToken, (_req: any, ctx: any) => ({ ...(ctx.auth as object), extra: true })] });
  router.ws('/auth-close', c.AuthChannel, { before: c.byToken, rejectWith: 'close' });
  router.ws('/big', c.BigChannel, { maxBufferedBytes: 256 * 1024, maxPayload: 1000 });
  router.ws('/quiet', c.QuietChannel, { heartbeatMs: 150 });
  router.ws('/bye', c.ByeChannel);
  router.ws('/async', c.AsyncChannel, { preConnectQueue: 16 });
  router.ws('/any-origin', c.ByeChannel, { origins: '*' });
  router.ws('/listed-origin', c.ByeChannel, { origins: ['https://app.example.com'] });
};
`;

async function start() {
  resetShared();
  const b = await bootProject(project({ 'channels.ts': CHANNELS, 'routes/ws.ts': ROUTES }));
  return b;
}

describe('@mega/ws lifecycle', () => {
  it('queues frames that arrive before onConnect resolves and replays them in order', async () => {
    const b = await start();
    const a = await Client.open(b.url('/slow', 'ws'));
    for (const n of ['a', 'b', 'c', 'd']) a.send({ type: 'm.add', payload: { n } });
    a.ws.ping(); // a control frame is answered at once, while data frames wait
    await new Promise<void>((r) => a.ws.once('pong', () => r()));
    expect(a.messages).toEqual([]);
    shared.wsTest.open();
    expect((await a.next()).type).toBe('ready');
    const seen = [await a.next(), await a.next(), await a.next(), await a.next()];
    expect(seen.map((m) => [m.type, m.payload.n, m.payload.order])).toEqual([
      ['m.seen', 'a', 1],
      ['m.seen', 'b', 2],
      ['m.seen', 'c', 3],
      ['m.seen', 'd', 4],
    ]);
    await a.close();
  });

  it('closes with 1013 when the pre-connect queue overflows', async () => {
    const b = await start();
    const a = await Client.open(b.url('/slow', 'ws'));
    for (let i = 0; i < 5; i++) a.send({ type: 'm.add', payload: { n: String(i) } });
    expect(await a.closed).toMatchObject({ code: 1013, reason: 'pre-connect queue overflow' });
    shared.wsTest.open();
  });

  it('closes with 1011 when onConnect throws, and skips onDisconnect', async () => {
    const b = await start();
    const a = await Client.open(b.url('/broken', 'ws'));
    a.send({ type: 'm.add' });
    expect(await a.closed).toMatchObject({ code: 1011, reason: 'onConnect failed' });
    expect(a.messages).toEqual([]);
    await new Promise((r) => setTimeout(r, 50));
    expect(shared.wsTest.log).not.toContain('broken:disconnect');
  });

  it('runs before on the upgrade: its result is ctx.auth; a rejection is 401 or close 1008', async () => {
    const b = await start();
    const ok = await Client.open(b.url('/auth?token=good', 'ws'));
    expect((await ok.ofType('who')).payload).toEqual({ auth: { userId: 'u1', sessionId: 's1', extra: true }, same: true });
    await ok.close();
    const denied = await refused(b.url('/auth?token=bad', 'ws'));
    expect(denied).toEqual({ status: 401, body: { error: { code: 'auth.required', message: 'a valid token is required' } } });
    const closed = await Client.open(b.url('/auth-close?token=bad', 'ws'));
    expect(await closed.closed).toEqual({ code: 1008, reason: 'auth.required' });
    expect(closed.messages).toEqual([]);
  });

  it('terminates a connection that does not answer pings', async () => {
    const b = await start();
    const raw = await RawClient.open(b.port, '/quiet');
    const ping = await raw.nextFrame((f) => f.opcode === 9);
    expect(ping.payload.length).toBe(0);
    await raw.ended; // no pong: terminated on the next sweep
    const live = await Client.open(b.url('/quiet', 'ws')); // the ws client answers pings
    await new Promise<void>((r) => live.ws.once('ping', () => live.ws.once('ping', () => r())));
    expect(live.ws.readyState).toBe(live.ws.OPEN);
    await live.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(shared.wsTest.log).toContain('quiet:1006');
  });

  it('closes a slow consumer with 1013 once its buffered output passes maxBufferedBytes', async () => {
    const b = await start();
    const a = await Client.open(b.url('/big', 'ws'));
    const socket = (a.ws as any)._socket;
    socket.pause(); // stop reading: the server's output piles up
    a.send({ type: 'm.burst', payload: { count: 600 } });
    // Wait until the server stops considering it open (it is closing, the close frame queued behind the data).
    for (let i = 0; i < 200 && [...b.kernel.use('ws').connections('/big')].length > 0; i++) await new Promise((r) => setTimeout(r, 25));
    expect([...b.kernel.use('ws').connections('/big')]).toEqual([]);
    socket.resume();
    expect((await a.closed).code).toBe(1013);
    await new Promise((r) => setTimeout(r, 50));
    expect(shared.wsTest.log).toContain('big:1013');
  });

  it('closes with 1009 on a message over maxPayload, 1007 on invalid UTF-8, 1002 on protocol errors', async () => {
    const b = await start();
    const big = await Client.open(b.url('/big', 'ws'));
    big.send({ type: 'm.burst', payload: { count: 1, pad: 'y'.repeat(2000) } });
    expect((await big.closed).code).toBe(1009);
    const utf = await Client.open(b.url('/bye', 'ws'));
    utf.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    expect((await utf.closed).code).toBe(1007);
    const cases: Array<[string, (c: RawClient) => void]> = [
      ['unmasked', (c) => c.frame(1, '{"type":"a.b"}', { mask: false })],
      ['rsv2', (c) => c.frame(1, '{"type":"a.b"}', { rsv: 2 })],
      ['rsv1 without deflate', (c) => c.frame(1, '{"type":"a.b"}', { rsv: 4 })],
      ['opcode 3', (c) => c.frame(3, 'x')],
      ['lone continuation', (c) => c.frame(0, 'x')],
      ['fragmented ping', (c) => c.frame(9, 'x', { fin: false })],
      ['long ping', (c) => c.frame(9, 'x'.repeat(126))],
      ['bad close code', (c) => c.frame(8, Buffer.from([0x03, 0xe7]))],
      ['1-byte close', (c) => c.frame(8, Buffer.from([0x03]))],
      [
        'text inside fragmented text',
        (c) => {
          c.frame(1, '{"ty', { fin: false });
          c.frame(1, 'x');
        },
      ],
    ];
    for (const [name, send] of cases) {
      const raw = await RawClient.open(b.port, '/bye');
      send(raw);
      expect(await raw.closeCode(), name).toBe(1002);
      await raw.ended;
    }
    const frag = await RawClient.open(b.port, '/bye');
    frag.frame(1, '{"type":"no', { fin: false });
    frag.frame(0, 'pe.x","id":"f"}');
    const err = await frag.nextFrame((f) => f.opcode === 1 && f.payload.includes('error'));
    expect(JSON.parse(err.payload.toString())).toMatchObject({ type: 'error', id: 'f', payload: { code: 'ws.unknown_type' } });
    frag.frame(8, Buffer.from([0x03, 0xe8, 0x68, 0x69]));
    expect(await frag.closeCode()).toBe(1000);
    await frag.ended;
  });

  it('refuses malformed handshakes with typed HTTP errors', async () => {
    const b = await start();
    const net = await import('node:net');
    const send = (lines: string[]) =>
      new Promise<string>((done) => {
        const s = net.connect(b.port, '127.0.0.1', () => s.write(`${lines.join('\r\n')}\r\n\r\n`));
        let out = '';
        s.on('data', (d) => (out += d));
        s.on('close', () => done(out));
        s.on('error', () => done(out));
      });
    const base = ['GET /bye HTTP/1.1', 'Host: x', 'Upgrade: websocket', 'Connection: Upgrade'];
    const noVersion = await send([...base, 'Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==']);
    expect(noVersion).toMatch(/^HTTP\/1.1 426/);
    expect(noVersion).toContain('Sec-WebSocket-Version: 13');
    expect(noVersion).toContain('"ws.bad_version"');
    const badKey = await send([...base, 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: short']);
    expect(badKey).toMatch(/^HTTP\/1.1 400/);
    expect(badKey).toContain('"ws.bad_handshake"');
    const post = await send([
      'POST /bye HTTP/1.1',
      'Host: x',
      'Upgrade: websocket',
      'Connection: Upgrade',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==',
      'Content-Length: 0',
    ]);
    expect(post).toMatch(/^HTTP\/1.1 405/);
  });

  it('handles a burst to an async handler in order, pushing back on the socket instead of closing', async () => {
    const b = await start();
    const a = await Client.open(b.url('/async', 'ws'));
    for (let i = 0; i < 2000; i++) a.send({ type: 'm.slow', payload: { i } });
    for (let i = 0; i < 2000; i++) {
      const m = await a.ofType('m.done');
      if (m.payload.i !== i || m.payload.n !== i + 1) throw new Error(`out of order at ${i}: ${JSON.stringify(m)}`);
    }
    expect(a.ws.readyState).toBe(a.ws.OPEN);
    await a.close();
  });

  it('checks the Origin of browser upgrades (cross-site WebSocket hijacking)', async () => {
    const b = await start();
    const foreign = await refused(b.url('/bye', 'ws'), { origin: 'https://evil.example' });
    expect(foreign).toMatchObject({ status: 403, body: { error: { code: 'ws.origin_denied' } } });
    const same = await Client.open(b.url('/bye', 'ws'), { origin: `http://127.0.0.1:${b.port}` });
    await same.close();
    const none = await Client.open(b.url('/bye', 'ws')); // non-browser clients send no Origin
    await none.close();
    const any = await Client.open(b.url('/any-origin', 'ws'), { origin: 'https://evil.example' });
    await any.close();
    const listed = await Client.open(b.url('/listed-origin', 'ws'), { origin: 'https://app.example.com' });
    await listed.close();
    expect((await refused(b.url('/listed-origin', 'ws'), { origin: `http://127.0.0.1:${b.port}` })).status).toBe(403);
  });

  it('closes every connection with 1001 on shutdown and runs onDisconnect', async () => {
    const b = await start();
    const a = await Client.open(b.url('/bye', 'ws'));
    await a.ofType('hi');
    await b.kernel.stop();
    expect(await a.closed).toEqual({ code: 1001, reason: 'server shutdown' });
    expect(shared.wsTest.log).toContain('bye:1001');
  });
});
