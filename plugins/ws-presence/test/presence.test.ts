import { bootProject, stopAll, type WsClient, writeProject } from '@mega/testing';
import type {} from '@mega/ws-presence';
import { afterEach, describe, expect, it } from 'vitest';

afterEach(stopAll);

type Rec = { events: Array<Record<string, any>>; order: string[] };
const rec = () => (globalThis as unknown as { presenceTest: Rec }).presenceTest;

const CHANNEL = `
import { AuthError } from '@mega/kernel';
export const auth = (req: any) => {
  const q = new URL(req.url, 'http://x').searchParams;
  if (!q.get('user')) throw new AuthError('auth.required', 'user required');
  return { userId: q.get('user'), sessionId: q.get('session') ?? q.get('user') + '-s', channels: (q.get('ch') ?? 'lobby').split(',') };
};
export class Chat {
  onConnect(sock: any, ctx: any) {
    if (new URL(sock.req.url, 'http://x').searchParams.get('anon')) return sock.send({ type: 'anon' });
    ctx.presence.join({ userId: ctx.auth.userId, sessionId: ctx.auth.sessionId, channels: ctx.auth.channels, metadata: { name: ctx.auth.userId.toUpperCase() } });
    sock.send({ type: 'joined', payload: { members: ctx.presence.list().map((m: any) => m.sessionId).sort() } });
  }
  ['chat.say'](sock: any, msg: any, ctx: any) {
    const n = ctx.presence.broadcast({ channel: msg.payload.channel, message: { type: 'chat.said', payload: { text: msg.payload.text } }, exceptSessionIds: msg.payload.except });
    sock.send({ type: 'chat.count', payload: { n } });
  }
  ['chat.dm'](sock: any, msg: any, ctx: any) { ctx.presence.directToUser(msg.payload.to, { type: 'chat.dm', payload: { text: msg.payload.text, from: ctx.auth.userId } }); }
  ['chat.meta'](sock: any, msg: any, ctx: any) { ctx.presence.updateMetadata(msg.payload); sock.send({ type: 'chat.list', payload: ctx.presence.list() }); }
  ['chat.list'](sock: any, msg: any, ctx: any) { sock.send({ type: 'chat.list', payload: ctx.presence.list(msg.payload?.channel) }); }
}
`;
const ROUTES = `
import { Chat, auth } from '../channel.js';
export default (router: any) => { router.ws('/chat', Chat, { before: auth }); router.ws('/other', Chat, { before: auth }); };
`;
const RECORDER = `
import { definePlugin } from '@mega/kernel';
export default definePlugin({
  name: 'recorder', version: '1.0.0', dependsOn: ['@mega/ws-presence'],
  setup(api) {
    api.tap('presence', async (ev: any) => {
      const r = (globalThis as any).presenceTest;
      const open = [...api.use('ws').connections()].length;
      r.events.push({ kind: ev.kind, ns: ev.ns, sessionId: ev.sessionId, userId: ev.userId, channel: ev.channel, openConnections: open, frame: ev.frame ? ev.frame.toString() : undefined });
      r.order.push('hook:' + ev.kind);
    });
  },
});
`;

async function start() {
  (globalThis as unknown as { presenceTest: Rec }).presenceTest = { events: [], order: [] };
  const b = await bootProject(
    writeProject({
      'mega.config.ts': "export default { plugins: ['@mega/http', '@mega/ws', '@mega/ws-presence', './recorder.ts'] };\n",
      'app.config.ts': 'export default {};\n',
      'channel.ts': CHANNEL,
      'routes/ws.ts': ROUTES,
      'recorder.ts': RECORDER,
    }),
  );
  const open = async (query: string, path = '/chat') => {
    const c = await b.ws(`${path}?${query}`);
    await c.waitFor((m) => m.type === 'joined' || m.type === 'anon');
    return c;
  };
  return { ...b, open };
}

/** Nothing else arrived before `marker`: proof a client received no stray message. */
async function nothingBefore(c: WsClient, marker: string) {
  const m = await c.next();
  expect(m.payload?.text ?? m.type).toBe(marker);
}

describe('@mega/ws-presence', () => {
  it("directToUser reaches only that user's sessions; nobody else receives it", async () => {
    const b = await start();
    const a1 = await b.open('user=alice&session=a1');
    const a2 = await b.open('user=alice&session=a2');
    const bob = await b.open('user=bob');
    const carol = await b.open('user=carol');
    const anon = await b.open('user=dave&anon=1');
    const elsewhere = await b.open('user=erin', '/other');
    bob.send('chat.dm', { to: 'alice', text: 'psst' });
    for (const c of [a1, a2])
      expect(await c.next('chat.dm')).toEqual({ type: 'chat.dm', payload: { text: 'psst', from: 'bob' }, raw: expect.any(String) });
    // A broadcast to everyone afterwards: for the others it must be the first thing they see.
    carol.send('chat.say', { text: 'marker' });
    for (const c of [bob, carol, anon]) await nothingBefore(c, 'marker');
    elsewhere.send('chat.say', { text: 'marker2' });
    await nothingBefore(elsewhere, 'marker2');
    for (const c of [a1, a2]) await nothingBefore(c, 'marker');
    const direct = rec().events.find((e) => e.kind === 'direct');
    expect(direct).toMatchObject({ userId: 'alice' });
    expect(JSON.parse(direct?.frame)).toEqual({ type: 'chat.dm', payload: { text: 'psst', from: 'bob' } });
    await Promise.all([a1, a2, bob, carol, anon, elsewhere].map((c) => c.close()));
  });

  it('broadcasts to a namespace, a channel, or all but some sessions, and lists the roster', async () => {
    const b = await start();
    const a = await b.open('user=alice&ch=lobby,red');
    const bob = await b.open('user=bob&ch=lobby');
    const carol = await b.open('user=carol&ch=red');
    const anon = await b.open('user=x&anon=1');
    carol.send('chat.list', { channel: 'red' });
    expect((await carol.next('chat.list')).payload.map((e: any) => e.userId).sort()).toEqual(['alice', 'carol']);
    a.send('chat.say', { channel: 'red', text: 'red only' });
    expect((await a.next('chat.count')).payload.n).toBe(2);
    expect((await carol.next('chat.said')).payload.text).toBe('red only');
    a.send('chat.say', { text: 'all', except: ['alice-s'] });
    expect((await a.next('chat.count')).payload.n).toBe(3);
    await nothingBefore(bob, 'all'); // bob (not in red) never got 'red only'
    await nothingBefore(anon, 'all'); // a connection that never joined still hears namespace-wide broadcasts
    expect((await carol.next('chat.said')).payload.text).toBe('all');
    bob.send('chat.say', { text: 'marker' });
    expect((await a.next('chat.said')).payload.text).toBe('red only');
    expect((await a.next('chat.said')).payload.text).toBe('marker'); // 'all' skipped alice's session
    await Promise.all([a, bob, carol, anon].map((c) => c.close()));
  });

  it('delivers locally before calling the presence hook', async () => {
    const b = await start();
    const a = await b.open('user=alice');
    const [conn] = [...b.kernel.use('ws').connections('/chat')];
    const socket = conn?.socket as any;
    const write = socket.write.bind(socket);
    socket.write = (chunk: Buffer, ...rest: unknown[]) => {
      if (chunk.includes('chat.said')) rec().order.push('local-write');
      return write(chunk, ...rest);
    };
    a.send('chat.say', { text: 'x' });
    await a.next('chat.said');
    await new Promise((r) => setTimeout(r, 20));
    const order = rec().order.filter((o) => o === 'local-write' || o === 'hook:broadcast');
    expect(order).toEqual(['local-write', 'hook:broadcast']);
    await a.close();
  });

  it('moves a duplicate session id to the new connection without closing the old one', async () => {
    const b = await start();
    const first = await b.open('user=alice&session=same');
    const second = await b.open('user=alice&session=same');
    const bob = await b.open('user=bob');
    bob.send('chat.list');
    expect((await bob.next('chat.list')).payload.map((e: any) => e.sessionId).sort()).toEqual(['bob-s', 'same']);
    bob.send('chat.dm', { to: 'alice', text: 'hi' });
    expect((await second.next('chat.dm')).payload.text).toBe('hi');
    first.send('chat.list'); // still open, just detached
    expect((await first.next('chat.list')).payload.length).toBe(2);
    expect(first.messages.some((m) => m.type === 'chat.dm')).toBe(false);
    // Closing the detached connection must not remove the session now held by the new one.
    await first.close();
    bob.send('chat.list');
    expect((await bob.next('chat.list')).payload.map((e: any) => e.sessionId).sort()).toEqual(['bob-s', 'same']);
    await Promise.all([second.close(), bob.close()]);
  });

  it('updates metadata, drops roster entries on disconnect, and emits join/metadata/leave events', async () => {
    const b = await start();
    const a = await b.open('user=alice');
    const bob = await b.open('user=bob');
    a.send('chat.meta', { status: 'away' });
    const list = (await a.next('chat.list')).payload;
    expect(list.find((e: any) => e.userId === 'alice')).toEqual({
      sessionId: 'alice-s',
      userId: 'alice',
      channels: ['lobby'],
      metadata: { status: 'away' },
    });
    await a.close();
    await new Promise((r) => setTimeout(r, 20));
    bob.send('chat.list');
    expect((await bob.next('chat.list')).payload.map((e: any) => e.userId)).toEqual(['bob']);
    expect(
      rec()
        .events.filter((e) => e.userId === 'alice' || e.sessionId === 'alice-s')
        .map((e) => e.kind),
    ).toEqual(['join', 'metadata', 'leave']);
    await bob.close();
  });

  it('on shutdown, sessions leave (presence hook) before the sockets close with 1001', async () => {
    const b = await start();
    const a = await b.open('user=alice');
    const bob = await b.open('user=bob');
    await b.kernel.stop();
    expect((await a.closed).code).toBe(1001);
    expect((await bob.closed).code).toBe(1001);
    const leaves = rec().events.filter((e) => e.kind === 'leave');
    expect(leaves.map((e) => e.userId).sort()).toEqual(['alice', 'bob']);
    for (const l of leaves) expect(l.openConnections).toBe(2); // both sockets still open when they left
  });

  it('disconnects a session (kick 1008, requeue 4503) and lets a roster provider extend list()', async () => {
    const b = await start();
    const a = await b.open('user=alice');
    const bob = await b.open('user=bob&session=b1');
    const p = b.kernel.use('presence').of(b.kernel.apps[0] as any);
    p.setRosterProvider((_ns, _channel, local) => [...local, { sessionId: 'remote-1', userId: 'zed', channels: ['lobby'] }]);
    bob.send('chat.list');
    expect((await bob.next('chat.list')).payload.map((e: any) => e.userId).sort()).toEqual(['alice', 'bob', 'zed']);
    expect(
      p
        .localList('/chat')
        .map((e) => e.userId)
        .sort(),
    ).toEqual(['alice', 'bob']);
    p.setRosterProvider(undefined);
    expect(p.disconnectSession('alice-s', 'kick', 'bye')).toBe(true);
    expect(await a.closed).toEqual({ code: 1008, reason: 'bye' });
    expect(p.disconnectSession('b1', 'requeue')).toBe(true);
    expect(await bob.closed).toEqual({ code: 4503, reason: 'requeue' });
    expect(p.disconnectSession('elsewhere', 'kick')).toBe(false); // not here: a disconnect event for cluster transports
    await new Promise((r) => setTimeout(r, 20));
    expect(rec().events.find((e) => e.kind === 'disconnect')).toMatchObject({ sessionId: 'elsewhere' });
  });

  it('refuses bad input with presence.invalid', async () => {
    const b = await start();
    const p = b.kernel.use('presence').of(b.kernel.apps[0] as any);
    expect(() => p.broadcast({ ns: '', message: { type: 'a.b' } })).toThrow(expect.objectContaining({ code: 'presence.invalid' }));
    expect(() => p.broadcast({ ns: '/chat', message: {} as any })).toThrow(expect.objectContaining({ code: 'presence.invalid' }));
    expect(() => p.directToUser('', { type: 'a.b' })).toThrow(expect.objectContaining({ code: 'presence.invalid' }));
    expect(() => p.updateMetadata('s', [] as any)).toThrow(expect.objectContaining({ code: 'presence.invalid' }));
    expect(() => p.joinSession({} as any, { userId: 'u', sessionId: 's' })).toThrow(expect.objectContaining({ code: 'presence.invalid' }));
    expect(p.updateMetadata('nobody', {})).toBe(false);
    expect(p.broadcast({ ns: '/nowhere', message: { type: 'a.b' } })).toBe(0);
  });
});
