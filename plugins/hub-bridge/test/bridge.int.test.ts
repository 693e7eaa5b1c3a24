/**
 * hub-bridge fault tests with real processes on loopback: the real `mega-hub` binary and two
 * `mega start` instances bridged to it, real `ws` clients. Exactly-once fan-out, directToUser,
 * kick/requeue through the hub, SIGKILL of the hub (local delivery goes on, presence is restored
 * on the new hub), SIGTERM drain (4503, recovery), a bad token (fatal, not retried) and a hub that
 * is down at boot.
 */
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Client, chatProject, expectClusterRouting, roster as list } from '../../../scripts/test/chat-cluster.js';
import { startHub } from '../../../scripts/test/hub-harness.js';
import { freePort, killAll, megaStart, type Proc, until } from '../../../scripts/test/procs.js';

const hubs: Array<{ stop: () => Promise<void> }> = [];
const clients: Client[] = [];
afterAll(async () => {
  for (const c of clients) c.ws.terminate();
  killAll();
  for (const h of hubs) await h.stop();
});

const PLUGINS = ['@mega/http', '@mega/ws', '@mega/ws-presence', '@mega/hub-bridge'];
const project = (url: string, token = 'secret-a') =>
  chatProject({
    plugins: PLUGINS,
    app: `bridgeHub: { url: ${JSON.stringify(url)}, token: ${JSON.stringify(token)}, bridgeId: process.env.BRIDGE_ID, channels: ['lobby'], retry: { minTimeout: 100, maxTimeout: 400 } }`,
  });

async function hubAt(port: number) {
  const hub = await startHub({ MEGA_WSHUB_PORT: String(port), MEGA_WSHUB_DRAIN_MS: '1000' });
  hubs.push(hub);
  return hub;
}

const open = async (port: number, query: string) => {
  const c = await Client.open(port, query);
  clients.push(c);
  return c;
};
type Status = { state: string; connects: number; attempts: number; lastClose?: { code: number; reason: string } };
const bridge = async (c: Client): Promise<Status> =>
  Object.values((await c.ask('admin.status')).payload.bridge as Record<string, Status>)[0] as Status;
const connects = (c: Client, n: number) =>
  until(
    async () => ((await bridge(c)).state === 'connected' && (await bridge(c)).connects >= n ? true : undefined),
    15_000,
    `${n} connects`,
  );

/** The hub's presence table, as seen by an observer bridge (`sync`), minus the observer. */
async function hubPresence(url: string): Promise<string[]> {
  const ws = new WebSocket(url);
  const frames: Array<{ type: string; payload: any }> = [];
  const waiters: Array<() => void> = [];
  ws.on('message', (d) => {
    frames.push(JSON.parse(d.toString()));
    for (const w of waiters.splice(0)) w();
  });
  const next = async (type: string) => {
    for (;;) {
      const i = frames.findIndex((f) => f.type === type);
      if (i >= 0) return frames.splice(i, 1)[0] as { type: string; payload: any };
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  await new Promise((ok, fail) => {
    ws.once('open', ok);
    ws.once('error', fail);
  });
  ws.send(JSON.stringify({ type: 'register', payload: { token: 'secret-b', bridgeId: `observer-${Date.now()}` } }));
  await next('register_ok');
  ws.send(JSON.stringify({ type: 'sync', payload: { requestId: 'obs' } }));
  const out: string[] = [];
  for (;;) {
    const f = await next('sync');
    for (const s of f.payload.sessions)
      out.push(`${s.sessionId}@${s.bridgeId}:${[...s.channels].sort().join('+')}:${JSON.stringify(s.metadata ?? null)}`);
    if (f.payload.done) break;
  }
  ws.close();
  return out.sort();
}

describe('@mega/hub-bridge with the real hub and two instances', () => {
  let a: Proc;
  let b: Proc;

  it('fans out exactly once, directs, kicks/requeues, survives SIGKILL and SIGTERM of the hub', async () => {
    const port = await freePort();
    let hub = await hubAt(port);
    // Kicking a session held by the other instance needs an admin token (B10: sessions belong to
    // the bridge that joined them); the harness hub accepts 'admin-secret' as one.
    const dir = project(hub.url, 'admin-secret');
    [a, b] = await Promise.all([megaStart(dir, { BRIDGE_ID: 'A' }), megaStart(dir, { BRIDGE_ID: 'B' })]);
    await Promise.all([a.waitFor(/hub-bridge: registered/), b.waitFor(/hub-bridge: registered/)]);
    const a1 = await open(a.port, 'user=ann&session=a1');
    const a2 = await open(a.port, 'user=bob&session=a2&ch=other');
    const b1 = await open(b.port, 'user=bob&session=b1');
    const b2 = await open(b.port, 'user=cy&session=b2');
    const everyone = ['a1|ann', 'a2|bob', 'b1|bob', 'b2|cy'];
    await until(async () => ((await list(a1)).join() === everyone.join() ? true : undefined), 5000, 'cluster roster on A');
    expect(await list(b1)).toEqual(everyone);

    // Broadcast exactly once, remote exceptions, directToUser across instances.
    await expectClusterRouting(a1, a2, b1, b2);

    // Kick and requeue through the hub: A asks, B closes its client with 1008 / 4503.
    const b3 = await open(b.port, 'user=dee&session=b3');
    const b4 = await open(b.port, 'user=eve&session=b4');
    await until(async () => ((await list(a1)).includes('b4|eve') ? true : undefined), 5000, 'b3, b4 on A');
    expect((await a1.ask('chat.kick', { session: 'b3', mode: 'kick' }, 'chat.kicked')).payload.local).toBe(false);
    expect((await b3.closed).code).toBe(1008);
    a1.send('chat.kick', { session: 'b4', mode: 'requeue' });
    expect((await b4.closed).code).toBe(4503);

    // SIGKILL the hub: local delivery continues on each instance.
    await until(async () => ((await hubPresence(hub.url)).length === 6 ? true : undefined), 5000, 'hub presence settled');
    const before = await hubPresence(hub.url);
    expect(before.filter((s) => s.startsWith('bridge:'))).toHaveLength(2); // the two lobby subscriber sessions
    await hub.stop();
    await until(async () => ((await bridge(a1)).state !== 'connected' ? true : undefined), 5000, 'A sees the hub gone');
    a1.send('chat.say', { text: 'while-down' });
    await a2.next((m) => m.type === 'chat.said' && m.payload.text === 'while-down');

    // The hub returns: both bridges reconnect and resync; presence equals the pre-crash presence.
    hub = await hubAt(port);
    await connects(a1, 2);
    await connects(b1, 2);
    await until(async () => ((await hubPresence(hub.url)).join() === before.join() ? true : undefined), 5000, 'presence restored');
    a1.send('chat.say', { channel: 'room', text: 'back' });
    await b1.next((m) => m.type === 'chat.said' && m.payload.text === 'back');

    // SIGTERM: the hub drains with 4503 and exits 0; bridges see 4503 and requeue their clients (4503,
    // keep the session); the clients come back with the same sessions and presence is whole again.
    hub.proc.kill('SIGTERM');
    expect((await hub.exited).code).toBe(0);
    for (const c of [a1, a2, b1, b2]) expect((await c.closed).code).toBe(4503);
    hub = await hubAt(port);
    const r1 = await open(a.port, 'user=ann&session=a1');
    expect((await bridge(r1)).lastClose).toEqual({ code: 4503, reason: 'hub.draining' });
    await open(a.port, 'user=bob&session=a2&ch=other');
    const r3 = await open(b.port, 'user=bob&session=b1');
    const r4 = await open(b.port, 'user=cy&session=b2');
    expect((await bridge(r3)).lastClose).toEqual({ code: 4503, reason: 'hub.draining' });
    await connects(r1, 3);
    await connects(r3, 3);
    await until(async () => ((await hubPresence(hub.url)).join() === before.join() ? true : undefined), 5000, 'presence after requeue');
    r4.send('chat.say', { channel: 'room', text: 'recovered' });
    await r1.next((m) => m.type === 'chat.said' && m.payload.text === 'recovered');
  });

  it('a bad token is fatal and not retried; a hub down at boot does not stop boot and is joined later', async () => {
    const port = await freePort();
    const down = project(`ws://127.0.0.1:${port}`);
    const late = await megaStart(down, { BRIDGE_ID: 'late' });
    expect(late.out()).toMatch(/hub unreachable at boot; retrying in the background/);
    const c = await open(late.port, 'user=zed&session=z1');
    const hub = await hubAt(port);
    await connects(c, 1);
    expect(await hubPresence(hub.url)).toContain('z1@late:/chat+room:{"name":"zed"}');

    const wrong = await megaStart(project(hub.url, 'wrong-token'), { BRIDGE_ID: 'bad' });
    const w = await open(wrong.port, 'user=x&session=x1');
    const s = await until(async () => {
      const st = await bridge(w);
      return st.state === 'failed' ? st : undefined;
    });
    expect(s.lastClose).toEqual({ code: 1008, reason: 'hub.unauthorized' });
    expect(wrong.out()).toMatch(/refused this bridge/);
    // Still failed, never retried, and local presence works.
    await new Promise((r) => setTimeout(r, 600));
    const again = await bridge(w);
    expect([again.state, again.attempts, again.connects]).toEqual(['failed', 0, 0]);
    expect(await list(w)).toEqual(['x1|x']);
  });

  it('compression: large frames travel deflated both ways and arrive intact', async () => {
    const hub = await hubAt(await freePort());
    const dir = chatProject({
      plugins: PLUGINS,
      app: `bridgeHub: { url: ${JSON.stringify(hub.url)}, token: 'secret-a', bridgeId: 'Z', compression: true }`,
    });
    const z = await megaStart(dir);
    await z.waitFor(/hub-bridge: registered/);
    const c = await open(z.port, 'user=zo&session=zo1');
    // An observer bridge without deflate, in the same channel.
    const ws = new WebSocket(hub.url);
    const got: Array<{ type: string; payload: any }> = [];
    ws.on('message', (d, binary) => {
      if (!binary) got.push(JSON.parse(d.toString()));
    });
    await new Promise((ok) => ws.once('open', ok));
    ws.send(JSON.stringify({ type: 'register', payload: { token: 'secret-b', bridgeId: 'obs' } }));
    ws.send(JSON.stringify({ type: 'join', payload: { sessionId: 'o1', userId: 'o', channels: ['room'] } }));
    await until(() => (got.some((f) => f.type === 'register_ok') ? true : undefined));
    const big = 'x'.repeat(5000);
    c.send('chat.say', { channel: 'room', text: big });
    const f = await until(() => got.find((g) => g.type === 'broadcast'));
    expect(f.payload.message).toEqual({ type: 'chat.said', ns: '/chat', payload: { channel: 'room', text: big } });
    ws.send(
      JSON.stringify({ type: 'broadcast', payload: { channel: 'room', ns: '/chat', message: { type: 'from.obs', payload: { big } } } }),
    );
    expect((await c.next((m) => m.type === 'from.obs')).payload.big).toBe(big);
    const st = (await bridge(c)) as Status & { deflate?: boolean };
    expect([st.state, st.deflate]).toEqual(['connected', true]);
    expect(z.out()).not.toMatch(/malformed/);
    ws.close();
  });
});
