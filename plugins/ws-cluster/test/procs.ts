/**
 * Real-process support for the cluster fault tests and bench: throwaway single-app projects with
 * a chat channel, `mega start` processes on loopback, and `ws` clients.
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const MEGA = join(REPO, 'kernel/bin/mega.js');

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
export default definePlugin({ name: 'probe', version: '1.0.0', kernel: '^0.1.0', setup(kernel) { (globalThis as any).megaKernel = kernel; } });
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
  const dir = mkdtempSync(join(tmpdir(), 'mega-cluster-'));
  const files: Record<string, string> = {
    'package.json': '{ "name": "mega-cluster-test", "private": true, "type": "module" }\n',
    'mega.config.ts': `export default { plugins: ${JSON.stringify([...o.plugins, './probe.ts'])}, server: ${o.server ?? "{ host: '127.0.0.1' }"}${o.global ? `, ${o.global}` : ''} };\n`,
    'app.config.ts': `export default { ${o.app ?? ''} };\n`,
    'channel.ts': CHANNEL,
    'routes/ws.ts': ROUTES,
    'probe.ts': PROBE,
  };
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

export interface Proc {
  child: ChildProcess;
  port: number;
  out: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const procs: ChildProcess[] = [];
/** Kills every process this module started (afterAll). */
export function killAll(): void {
  for (const c of procs.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

export function watch(child: ChildProcess): Omit<Proc, 'port'> {
  procs.push(child);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, signal) => r({ code, signal })),
  );
  const waitFor = async (re: RegExp, timeoutMs = 20_000) => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(out);
      if (m) return m;
      if (Date.now() > end) throw new Error(`timed out waiting for ${re} in output:\n${out.slice(-3000)}`);
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`process exited before ${re}:\n${out.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return { child, out: () => out, exited, waitFor, kill };
}

/** `mega start` in `dir` on a free port; resolves once it is ready. */
export async function megaStart(dir: string, env: Record<string, string> = {}, port?: number): Promise<Proc> {
  const p = port ?? (await freePort());
  const child = spawn(process.execPath, [MEGA, 'start', '--port', String(p)], {
    cwd: dir,
    env: { ...process.env, NODE_ENV: 'test', MEGA_LOG_LEVEL: 'info', ...env },
  });
  const w = watch(child);
  await w.waitFor(/ready in \d+ ms/, 30_000);
  return { ...w, port: p };
}

export type Msg = { type: string; id?: string; payload?: any };

/** A `ws` client collecting parsed messages. */
export class Client {
  readonly messages: Msg[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: Array<{ pred: (m: Msg) => boolean; done: (m: Msg) => void }> = [];
  onMessage?: (m: Msg) => void;
  readonly ws: WebSocket;
  constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString()) as Msg;
      if (this.onMessage) return this.onMessage(m);
      this.messages.push(m);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.pred(m)) return true;
        w.done(m);
        return false;
      });
    });
    this.closed = new Promise((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
  }
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
  next(pred: (m: Msg) => boolean = () => true, timeoutMs = 8000): Promise<Msg> {
    const found = this.messages.find(pred);
    if (found) {
      this.messages.splice(this.messages.indexOf(found), 1);
      return Promise.resolve(found);
    }
    return new Promise((done, fail) => {
      const timer = setTimeout(
        () => fail(new Error(`no matching message within ${timeoutMs} ms; got ${JSON.stringify(this.messages).slice(0, 400)}`)),
        timeoutMs,
      );
      this.#waiters.push({
        pred,
        done: (m) => {
          clearTimeout(timer);
          this.messages.splice(this.messages.indexOf(m), 1);
          done(m);
        },
      });
    });
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

/** Polls `fn` until it returns a value other than undefined. */
export async function until<T>(fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (error) {
      last = error;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A round trip on `c`: every message sent to it before now has arrived. */
export async function barrier(c: Client): Promise<void> {
  await c.ask('chat.list', {}, 'chat.list');
}
