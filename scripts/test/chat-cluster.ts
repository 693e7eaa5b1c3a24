/**
 * Two-instance chat clusters for the ws-cluster, hub-bridge and roster suites and bench:cluster:
 * a throwaway single-app project with a chat channel, `ws` clients for it, and the routing
 * scenario every cluster transport must pass.
 */
import { deepStrictEqual, strictEqual } from 'node:assert/strict';
import { writeProject } from '@mega/testing';
import WebSocket from 'ws';
// .ts specifiers: bench:cluster runs this module under plain Node (type stripping), which does not map .js to .ts.
import { Inbox } from './inbox.ts';

const CHANNEL = `
export const auth = (req: any) => {
  const q = new URL(req.url, 'http://x').searchParams;
  return { userId: q.get('user') ?? 'anon', sessionId: q.get('session') ?? String(Math.random()), channels: (q.get('ch') ?? 'room').split(',') };
};
const k = () => (globalThis as any).megaKernel;
export class Chat {
  onConnect(sock: any, ctx: any) {
    ctx.presence.join({ userId: ctx.auth.userId, sessionId: ctx.auth.sessionId, channels: ctx.auth.channels, metadata: { name: ctx.auth.userId } });
    sock.send({ type: 'joined', payload: { pid: process.pid } });
  }
  ['chat.say'](sock: any, msg: any, ctx: any) {
    ctx.presence.broadcast({ channel: msg.payload.channel, message: { type: 'chat.said', payload: msg.payload }, exceptSessionIds: msg.payload.except });
    sock.send({ type: 'chat.ok', payload: { seq: msg.payload.seq } });
  }
  ['chat.burst'](sock: any, msg: any, ctx: any) {
    for (let i = 0; i < msg.payload.n; i++) ctx.presence.broadcast({ channel: msg.payload.channel, message: { type: 'chat.said', payload: { seq: i, t: performance.timeOrigin + performance.now() } } });
    sock.send({ type: 'chat.ok', payload: {} });
  }
  ['chat.dm'](sock: any, msg: any, ctx: any) { ctx.presence.directToUser(msg.payload.to, { type: 'chat.dm', payload: msg.payload }); }
  ['chat.list'](sock: any, msg: any, ctx: any) {
    sock.send({ type: 'chat.list', payload: ctx.presence.list(msg.payload?.channel).map((e: any) => e.sessionId + '|' + (e.metadata?.name ?? '')).sort() });
  }
  ['chat.kick'](sock: any, msg: any, ctx: any) { sock.send({ type: 'chat.kicked', payload: { local: ctx.presence.app.disconnectSession(msg.payload.session, msg.payload.mode, 'by test') } }); }
  ['admin.status'](sock: any) {
    const x = k();
    sock.send({ type: 'admin.status', payload: { bridge: x.has('hub-bridge') ? x.use('hub-bridge').status() : null, cluster: x.has('ws-cluster') ? x.use('ws-cluster').stats() : null } });
  }
}
`;
const ROUTES = `import { Chat, auth } from '../channel.js';
export default (router: any) => { router.ws('/chat', Chat, { before: auth }); };
`;
const PROBE = `import { definePlugin } from '@mega/kernel';
export default definePlugin({ name: 'probe', version: '1.0.0', kernel: '^0.2.0', setup(api) { (globalThis as any).megaKernel = api.kernel; } });
`;

export interface ProjectOptions {
  plugins: string[];
  /** Extra mega.config.ts keys, as TS source (`wsCluster: {...}`). */
  global?: string;
  /** app.config.ts body keys (`bridgeHub: {...}`). */
  app?: string;
  /** mega.config.ts `server` value (default: loopback, port from the CLI). */
  server?: string;
}

export function chatProject(o: ProjectOptions): string {
  return writeProject(
    {
      'mega.config.ts': `export default { plugins: ${JSON.stringify([...o.plugins, './probe.ts'])}, server: ${o.server ?? "{ host: '127.0.0.1' }"}${o.global ? `, ${o.global}` : ''} };\n`,
      'app.config.ts': `export default { ${o.app ?? ''} };\n`,
      'channel.ts': CHANNEL,
      'routes/ws.ts': ROUTES,
      'probe.ts': PROBE,
    },
    { prefix: 'mega-cluster-' },
  );
}

export type Msg = { type: string; id?: string; payload?: any };

/** A `ws` client of the chat channel collecting parsed messages; `onMessage` replaces collecting (bench). */
export class Client extends Inbox<Msg> {
  readonly closed: Promise<{ code: number; reason: string }>;
  onMessage?: (m: Msg) => void;
  readonly ws: WebSocket;
  constructor(ws: WebSocket) {
    super();
    this.ws = ws;
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString()) as Msg;
      if (this.onMessage) return this.onMessage(m);
      this.deliver(m);
    });
    this.closed = new Promise((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
  }
  /** Connects to `/chat?<query>` (user, session, ch) and waits until the channel has joined it. */
  static async open(port: number, query: string): Promise<Client> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/chat?${query}`);
    const c = new Client(ws);
    await new Promise<void>((ok, fail) => {
      ws.once('open', () => ok());
      ws.once('error', fail);
    });
    await c.next((m) => m.type === 'joined');
    return c;
  }
  send(type: string, payload: unknown = {}): void {
    this.ws.send(JSON.stringify({ type, payload }));
  }
  override next(pred: (m: Msg) => boolean = () => true, timeoutMs = 8000): Promise<Msg> {
    return super.next(pred, timeoutMs);
  }
  /** Sends and waits for the reply of that type. */
  async ask(type: string, payload: unknown = {}, reply = type): Promise<Msg> {
    this.send(type, payload);
    return this.next((m) => m.type === reply);
  }
  count(type: string): number {
    return this.messages.filter((m) => m.type === type).length;
  }
  close(): Promise<{ code: number; reason: string }> {
    this.ws.close();
    return this.closed;
  }
}

/** A round trip on `c`: every message sent to it before now has arrived. */
export async function barrier(c: Client): Promise<void> {
  await c.ask('chat.list', {}, 'chat.list');
}

/** How many `chat.said` messages with this text `c` holds. */
export const said = (c: Client, text: string) => c.messages.filter((m) => m.type === 'chat.said' && m.payload?.text === text).length;

/** The channel's `ctx.presence.list()` as `session|name`, sorted. */
export const roster = async (c: Client, channel?: string) => (await c.ask('chat.list', channel ? { channel } : {})).payload as string[];

/**
 * The routing every cluster transport must get right, with clients a1 (ann) and a2 (bob, channel
 * `other`) on instance A, b1 (bob) and b2 (cy) on instance B: channel broadcast exactly once,
 * namespace-wide broadcast with a remote exception, directToUser on both instances and nobody else.
 * Markers sent after each case prove the earlier frames had their chance to arrive.
 */
export async function expectClusterRouting(a1: Client, a2: Client, b1: Client, b2: Client): Promise<void> {
  a1.send('chat.say', { channel: 'room', text: 'one' });
  a1.send('chat.say', { channel: 'room', text: 'end' });
  for (const c of [b1, b2, a1]) await c.next((m) => m.type === 'chat.said' && m.payload.text === 'end');
  deepStrictEqual([said(a1, 'one'), said(b1, 'one'), said(b2, 'one'), said(a2, 'one')], [1, 1, 1, 0]);

  b2.send('chat.say', { text: 'all', except: ['a1'] });
  b2.send('chat.say', { text: 'end2' });
  // The sender's own copy too: its socket is read independently of the others'.
  for (const c of [a1, a2, b1, b2]) await c.next((m) => m.type === 'chat.said' && m.payload.text === 'end2');
  deepStrictEqual([said(a1, 'all'), said(a2, 'all'), said(b1, 'all'), said(b2, 'all')], [0, 1, 1, 1]);

  b2.send('chat.dm', { to: 'bob', text: 'psst' });
  await a2.next((m) => m.type === 'chat.dm');
  await b1.next((m) => m.type === 'chat.dm');
  b2.send('chat.dm', { to: 'ann', text: 'marker' });
  await a1.next((m) => m.type === 'chat.dm' && m.payload.text === 'marker');
  await barrier(b2);
  strictEqual(a1.count('chat.dm') + a2.count('chat.dm') + b1.count('chat.dm') + b2.count('chat.dm'), 0);
}
