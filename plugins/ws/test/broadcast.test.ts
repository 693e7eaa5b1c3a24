import { bootProject, stopAll } from '@mega/testing';
import type { WsConnection } from '@mega/ws';
import { afterEach, describe, expect, it } from 'vitest';
import { Client, project } from './support.js';

afterEach(stopAll);

const CHANNEL = `
export class Room {
  onConnect(sock: any) { sock.send({ type: 'joined' }); }
  ['room.say'](sock: any, msg: any) { sock.send({ type: 'room.ack', id: msg.id, payload: msg.payload }); }
}
`;
const ROUTES = `
import { Room } from '../channel.js';
export default (router: any) => {
  router.ws('/room', Room);
  router.ws('/zroom', Room, { compression: { maxContexts: 1 } });
  router.ws('/delayed', Room, { writeDelayMs: 40 });
};
`;

const PLUGIN = `
import { definePlugin, MegaError } from '@mega/kernel';
export default definePlugin({
  name: 'frame-filter',
  version: '1.0.0',
  setup(api) {
    api.tap('wsMessage', async (frame: any) => {
      const text = frame.data.toString();
      if (text.includes('forbidden')) return new MegaError('filter.blocked', 'that word is not allowed');
      if (text.includes('slow')) await new Promise((r) => setTimeout(r, 30));
      if (text.includes('shout')) frame.data = Buffer.from(text.toUpperCase().replace('"ROOM.SAY"', '"room.say"').replace('"TYPE"', '"type"').replace('"PAYLOAD"', '"payload"').replace('"ID"', '"id"'));
      if (text.includes('preparsed')) frame.message = { type: 'room.say', id: 'pp', payload: { via: 'tap', ns: frame.ns } };
      return undefined;
    });
  },
});
`;

async function start(withFilter = false) {
  const files: Record<string, string> = { 'channel.ts': CHANNEL, 'routes/ws.ts': ROUTES };
  let plugins = "['@mega/http', '@mega/ws']";
  if (withFilter) {
    files['filter.ts'] = PLUGIN;
    plugins = "['@mega/http', '@mega/ws', './filter.ts']";
  }
  const b = await bootProject(project(files, plugins));
  return b;
}

/** Records the Buffer objects each connection's socket is asked to write. */
function spyWrites(conns: WsConnection[]): Map<WsConnection, Buffer[]> {
  const out = new Map<WsConnection, Buffer[]>();
  for (const c of conns) {
    const socket = c.socket as any;
    const list: Buffer[] = [];
    out.set(c, list);
    const write = socket.write.bind(socket);
    socket.write = (chunk: Buffer, ...rest: unknown[]) => {
      list.push(chunk);
      return write(chunk, ...rest);
    };
  }
  return out;
}

describe('broadcast', () => {
  it('frames a broadcast once and writes the same bytes to every recipient', async () => {
    const b = await start();
    const clients = await Promise.all([0, 1, 2].map(() => Client.open(b.url('/room', 'ws'))));
    await Promise.all(clients.map((c) => c.ofType('joined')));
    const ws = b.kernel.use('ws');
    const conns = [...ws.connections('/room')];
    const writes = spyWrites(conns);
    expect(ws.broadcast(conns, { type: 'room.news', ns: '/room', payload: { text: 'hello all' } })).toBe(3);
    const buffers = conns.map((c) => writes.get(c)?.[0]);
    expect(buffers[0]).toBeInstanceOf(Buffer);
    expect(buffers[1]).toBe(buffers[0]);
    expect(buffers[2]).toBe(buffers[0]);
    for (const c of clients)
      expect(await c.ofType('room.news')).toEqual({ type: 'room.news', ns: '/room', payload: { text: 'hello all' } });
    // A filter skips recipients.
    expect(ws.broadcast(conns, { type: 'room.news', payload: {} }, (c) => c !== conns[0])).toBe(2);
    await Promise.all(clients.map((c) => c.close()));
  });

  it('compresses a broadcast once for stateless connections; a context-holding one gets its own', async () => {
    const b = await start();
    const clients = await Promise.all([0, 1, 2].map(() => Client.open(b.url('/zroom', 'ws'), { perMessageDeflate: true })));
    await Promise.all(clients.map((c) => c.ofType('joined')));
    const ws = b.kernel.use('ws');
    const conns = [...ws.connections('/zroom')];
    const writes = spyWrites(conns);
    const text = 'compress me once '.repeat(200);
    ws.broadcast(conns, { type: 'room.news', payload: { text } });
    const stateful = conns.filter((c) => c.deflateAgreement?.serverTakeover);
    const stateless = conns.filter((c) => c.deflateAgreement && !c.deflateAgreement.serverTakeover);
    expect([stateful.length, stateless.length]).toEqual([1, 2]);
    const shared = stateless.map((c) => writes.get(c)?.[0]);
    expect(shared[1]).toBe(shared[0]);
    expect(((shared[0] as Buffer)[0] as number) & 0x40).toBe(0x40); // RSV1: compressed
    const own = writes.get(stateful[0] as WsConnection)?.[0] ?? Buffer.alloc(0);
    expect(own).not.toBe(shared[0]);
    expect((own[0] as number) & 0x40).toBe(0x40); // compressed with its own context
    for (const c of clients) expect((await c.ofType('room.news')).payload.text).toBe(text);
    await Promise.all(clients.map((c) => c.close()));
  });
});

describe('write coalescing', () => {
  it('writes what a turn sent to a connection at the end of the turn; writeDelayMs holds it across turns', async () => {
    const b = await start();
    const [plain, delayed] = await Promise.all([Client.open(b.url('/room', 'ws')), Client.open(b.url('/delayed', 'ws'))]);
    await Promise.all([plain.ofType('joined'), delayed.ofType('joined')]);
    const ws = b.kernel.use('ws');
    const [p] = [...ws.connections('/room')];
    const [d] = [...ws.connections('/delayed')];
    const turn = () => new Promise((r) => setImmediate(r));
    for (const c of [p, d] as WsConnection[]) {
      c.send({ type: 'one' });
      c.send({ type: 'two' });
      expect(c.socket?.writableCorked).toBe(1); // both wait in the cork until the turn ends
    }
    await turn();
    expect(p?.socket?.writableCorked).toBe(0);
    expect(d?.socket?.writableCorked).toBe(1); // still held: the delay has not passed
    d?.send({ type: 'three' }); // a later turn joins the same write
    expect((await plain.ofType('two')).type).toBe('two');
    expect((await delayed.ofType('three')).type).toBe('three');
    expect(d?.socket?.writableCorked).toBe(0);
    await Promise.all([plain.close(), delayed.close()]);
  });
});

describe('wsMessage hook', () => {
  it('passes every inbound frame through wsMessage: rejections become error envelopes, rewrites reach the handler, order holds', async () => {
    const b = await start(true);
    const c = await Client.open(b.url('/room', 'ws'));
    await c.ofType('joined');
    c.send({ type: 'room.say', id: '1', payload: { text: 'slow first' } });
    c.send({ type: 'room.say', id: '2', payload: { text: 'forbidden' } });
    c.send({ type: 'room.say', id: '3', payload: { text: 'shout' } });
    c.send('preparsed');
    c.send({ type: 'room.say', id: '5', payload: { text: 'last' } });
    expect(await c.next()).toEqual({ type: 'room.ack', id: '1', payload: { text: 'slow first' } });
    expect(await c.next()).toEqual({ type: 'error', payload: { code: 'filter.blocked', message: 'that word is not allowed' } });
    expect(await c.next()).toEqual({ type: 'room.ack', id: '3', payload: { TEXT: 'SHOUT' } });
    expect(await c.next()).toEqual({ type: 'room.ack', id: 'pp', payload: { via: 'tap', ns: '/room' } });
    expect(await c.next()).toEqual({ type: 'room.ack', id: '5', payload: { text: 'last' } });
    await c.close();
  });
});
