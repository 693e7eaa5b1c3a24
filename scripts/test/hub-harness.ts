/**
 * Test support for the hub sidecar: start the real `mega-hub` binary, talk to it with real `ws`
 * clients, and replay the protocol's exchange scripts (sidecar/protocol/vectors/exchanges.json)
 * over sockets. A bridge implementation can reuse `replayScript` to check itself the same way.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inflateRawSync } from 'node:zlib';
import { Ajv2020 } from 'ajv/dist/2020.js';
import WebSocket from 'ws';
import { hubBinaryPath, hubBinaryStale, markHubBuilt } from '../../plugins/hub-bridge/src/ws-hub.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const PROTOCOL = join(ROOT, 'sidecar', 'protocol');

export type Frame = { type: string; payload: Record<string, unknown> };

/** The release binary, built first when missing or stale (the test script builds it up front). */
let checked: string | undefined;
export function ensureHubBinary(): string {
  if (checked) return checked;
  const bin = hubBinaryPath(ROOT);
  if (hubBinaryStale(ROOT, bin)) {
    execFileSync('cargo', ['build', '--release', '-p', 'mega-hub'], { cwd: ROOT, stdio: 'inherit' });
    markHubBuilt(bin);
  }
  checked = bin;
  return bin;
}

export interface Hub {
  url: string;
  port: number;
  proc: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop: () => Promise<void>;
}

export async function startHub(env: Record<string, string> = {}): Promise<Hub> {
  const bin = ensureHubBinary();
  const proc = spawn(bin, [], {
    env: {
      PATH: process.env.PATH ?? '',
      MEGA_WSHUB_TOKENS: 'secret-a,secret-b',
      MEGA_WSHUB_ADMIN_TOKENS: 'admin-secret',
      MEGA_WSHUB_PORT: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    proc.on('exit', (code, signal) => done({ code, signal })),
  );
  const port = await new Promise<number>((resolve, reject) => {
    const onData = (b: Buffer) => {
      out += b.toString();
      const m = /listening on [^\s]+:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    };
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    exited.then(({ code }) => reject(new Error(`mega-hub exited with ${code} before listening:\n${out}`)));
  });
  return {
    url: `ws://127.0.0.1:${port}`,
    port,
    proc,
    output: () => out,
    exited,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

/** A bridge-side test client: frames arrive in a queue; hub heartbeats are kept apart. */
export class Client {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  readonly heartbeats: Frame[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: Array<() => void> = [];
  isClosed = false;

  constructor(url: string, opts: WebSocket.ClientOptions = {}) {
    this.ws = new WebSocket(url, { maxPayload: 64 << 20, ...opts });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) =>
      this.ws.once('close', (code, reason) => {
        this.isClosed = true;
        this.wake();
        resolve({ code, reason: reason.toString() });
      }),
    );
    this.ws.on('error', () => {});
    this.ws.on('message', (data: Buffer, isBinary) => {
      const f = JSON.parse(isBinary ? inflate(data) : data.toString('utf8')) as Frame;
      (f.type === 'heartbeat' ? this.heartbeats : this.frames).push(f);
      this.wake();
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Strings and Buffers (binary) go as they are; anything else as JSON text. */
  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' || Buffer.isBuffer(frame) ? frame : JSON.stringify(frame));
  }

  /** Next non-heartbeat frame; rejects after `ms` or when the link closes first. */
  async next(ms = 3000): Promise<Frame> {
    return this.#take(() => (this.frames.length > 0 ? 0 : -1), ms);
  }

  /** Removes and returns the first queued frame `pick` chooses (its index, or -1), waiting up to `ms`. */
  async #take(pick: () => number, ms: number): Promise<Frame> {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = pick();
      if (i >= 0) return this.frames.splice(i, 1)[0] as Frame;
      if (this.isClosed) throw new Error('link closed while waiting for a frame');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame within ${ms} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  async register(bridgeId: string, extra: Record<string, unknown> = {}, token = 'secret-a'): Promise<Frame> {
    await this.opened;
    this.send({ type: 'register', payload: { token, bridgeId, ...extra } });
    const ok = await this.next();
    if (ok.type !== 'register_ok') throw new Error(`register failed: ${JSON.stringify(ok)}`);
    return ok;
  }

  /** Round trip through the hub: every frame routed to this link before now has arrived after it. */
  async barrier(id: string, ms = 3000): Promise<void> {
    this.send({ type: 'sync', payload: { requestId: id, channels: ['\u0000barrier'] } });
    // Other frames stay queued in order (waiting, not spinning, while they are there).
    await this.#take(() => this.frames.findIndex((f) => f.type === 'sync' && f.payload.requestId === id), ms);
  }

  close(): void {
    this.ws.close(1000);
  }
}

/** mega-codec's raw deflate message format: the 00 00 ff ff sync-flush tail is stripped. */
export function inflate(data: Buffer): string {
  return inflateRawSync(Buffer.concat([data, Buffer.from([0, 0, 0xff, 0xff])]), { finishFlush: 2 /* Z_SYNC_FLUSH */ }).toString('utf8');
}

export function loadJson<T>(rel: string): T {
  return JSON.parse(readFileSync(join(PROTOCOL, rel), 'utf8')) as T;
}

/** Ajv (draft 2020-12) with every protocol schema; `toHub` / `fromHub` validate whole frames. */
export function protocolValidators() {
  const ajv = new Ajv2020({ strict: true, allErrors: false });
  const files = ['common.json', 'to-hub.json', 'from-hub.json'];
  for (const dir of ['to-hub', 'from-hub']) {
    for (const t of loadJson<{ oneOf: Array<{ $ref: string }> }>(`schemas/${dir}.json`).oneOf) files.push(t.$ref);
  }
  for (const f of files) ajv.addSchema(loadJson<object>(`schemas/${f}`));
  const get = (id: string) => {
    const v = ajv.getSchema(`https://schemas.mega.invalid/hub/v1/${id}`);
    if (!v) throw new Error(`schema ${id} missing`);
    return v;
  };
  return { toHub: get('to-hub.json'), fromHub: get('from-hub.json'), ajv };
}

/** `"$any"` matches any present value. */
export function matches(exp: unknown, got: unknown): boolean {
  if (exp === '$any') return got !== undefined;
  if (Array.isArray(exp)) return Array.isArray(got) && exp.length === got.length && exp.every((e, i) => matches(e, got[i]));
  if (exp && typeof exp === 'object') {
    if (!got || typeof got !== 'object' || Array.isArray(got)) return false;
    const a = Object.keys(exp);
    const g = got as Record<string, unknown>;
    return a.length === Object.keys(g).length && a.every((k) => matches((exp as Record<string, unknown>)[k], g[k]));
  }
  return exp === got;
}

export type Step = Record<string, unknown>;
export interface Script {
  name: string;
  description: string;
  steps: Step[];
}

/**
 * Replays one exchange script against a hub at `url` (its heartbeat must be `heartbeatMs`).
 * Live bridges send a heartbeat every heartbeatMs/4 so that only `silence`d ones time out;
 * `expectNothing` first runs a sync round trip on every open link (senders first), so anything
 * the hub routed would have arrived. `check` sees every frame the hub sent.
 */
export async function replayScript(
  script: Script,
  url: string,
  tokens: string[],
  heartbeatMs: number,
  check: (f: Frame) => void = () => {},
  adminTokens: string[] = ['admin-secret'],
): Promise<void> {
  const clients = new Map<string, Client>();
  const silent = new Set<string>();
  let barrierN = 0;
  const timer = setInterval(() => {
    for (const [name, c] of clients) {
      if (!silent.has(name) && !c.isClosed && c.ws.readyState === WebSocket.OPEN) c.send({ type: 'heartbeat', payload: {} });
    }
  }, heartbeatMs / 4);
  const get = (name: unknown) => {
    const c = clients.get(String(name));
    if (!c) throw new Error(`${script.name}: no bridge ${String(name)}`);
    return c;
  };
  const take = async (c: Client) => {
    const f = await c.next();
    check(f);
    return f;
  };
  try {
    for (const [i, step] of script.steps.entries()) {
      const at = `${script.name} step ${i}: ${JSON.stringify(step)}`;
      if ('connect' in step || 'register' in step || 'registerAdmin' in step) {
        const name = String(step.connect ?? step.register ?? step.registerAdmin);
        const c = new Client(url);
        clients.set(name, c);
        await c.opened;
        if (!('connect' in step)) {
          const token = 'registerAdmin' in step ? adminTokens[0] : tokens[0];
          c.send({ type: 'register', payload: { token, bridgeId: name } });
          const ok = await take(c);
          if (ok.type !== 'register_ok' || ok.payload.bridgeId !== name) throw new Error(`${at}: got ${JSON.stringify(ok)}`);
        }
      } else if ('send' in step) {
        get(step.send).send(step.frame);
      } else if ('sendRaw' in step) {
        get(step.sendRaw).send(String(step.text));
      } else if ('expect' in step) {
        const got = await take(get(step.expect)).catch((e: Error) => {
          throw new Error(`${at}: ${e.message}`);
        });
        if (!matches(step.frame, got)) throw new Error(`${at}\n  got ${JSON.stringify(got)}`);
      } else if ('expectNothing' in step) {
        const open = [...clients.entries()].filter(([, c]) => !c.isClosed);
        for (const [, c] of open) await c.barrier(`barrier-${barrierN++}`);
        for (const name of step.expectNothing as string[]) {
          const c = get(name);
          await c.barrier(`barrier-${barrierN++}`);
          if (c.frames.length > 0) throw new Error(`${at}: unexpected ${JSON.stringify(c.frames[0])}`);
        }
      } else if ('expectClose' in step) {
        const c = get(step.expectClose);
        const res = await Promise.race([
          c.closed,
          new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${at}: not closed`)), 5000)),
        ]);
        if (res.code !== step.code) throw new Error(`${at}: closed with ${res.code} ${res.reason}`);
      } else if ('close' in step) {
        const c = get(step.close);
        c.close();
        await c.closed;
      } else if ('silence' in step) {
        silent.add(String(step.silence));
      } else if ('waitHeartbeatTimeout' in step) {
        // The hub checks every heartbeat/4 and drops after 2 x heartbeat of silence.
        await new Promise((r) => setTimeout(r, 2 * heartbeatMs + heartbeatMs / 2 + 100));
      } else {
        throw new Error(`${at}: unknown step`);
      }
    }
  } finally {
    clearInterval(timer);
    for (const c of clients.values()) if (!c.isClosed) c.ws.terminate();
  }
}
