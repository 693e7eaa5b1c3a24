/**
 * Real processes for the integration suites: `mega` CLI runs with their output watched, free
 * loopback ports, polling, and plain HTTP GETs that open a fresh connection each time.
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';

/** The repository root. */
const REPO = join(import.meta.dirname, '../..');
export const MEGA_BIN = join(REPO, 'kernel/bin/mega.js');

export interface Watched {
  child: ChildProcess;
  out: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface Proc extends Watched {
  port: number;
}

const procs: ChildProcess[] = [];

/** SIGKILLs every process started through this module that is still running (afterAll). */
export function killAll(): void {
  for (const c of procs.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

/** Collects a child's stdout and stderr and lets a test wait for a line in them. */
export function watch(child: ChildProcess): Watched {
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
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`process exited (${child.exitCode ?? child.signalCode}) before ${re}:\n${out.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return { child, out: () => out, exited, waitFor, kill };
}

/** Runs the built `mega` CLI in `cwd` (NODE_ENV=test, info logs unless `env` says otherwise). */
export function runMega(args: string[], cwd: string, env: Record<string, string> = {}): Watched {
  const child = spawn(process.execPath, [MEGA_BIN, ...args], {
    cwd,
    env: { ...process.env, NODE_ENV: 'test', MEGA_LOG_LEVEL: 'info', ...env },
  });
  return watch(child);
}

/** `mega start` in `dir` on a free port; resolves once it reports ready. */
export async function megaStart(dir: string, env: Record<string, string> = {}, port?: number): Promise<Proc> {
  const p = port ?? (await freePort());
  const w = runMega(['start', '--port', String(p)], dir, env);
  await w.waitFor(/ready in \d+ ms/, 30_000);
  return { ...w, port: p };
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

/** Polls `fn` until it returns a value other than undefined; a throw counts as "not yet". */
export async function until<T>(fn: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000, what = 'condition'): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (error) {
      last = error;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message ?? String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * GET over a fresh connection (no keep-alive), so a cluster's balancer may pick another worker.
 * `json` is the parsed body when it parses.
 */
export function httpGet(port: number, path: string): Promise<{ status: number; body: string; json: any }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(body);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body, json });
      });
    });
    req.on('error', reject);
    req.end();
  });
}
