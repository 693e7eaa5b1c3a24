/**
 * The `mega` CLI as users run it: real processes, real sockets, real signals.
 */

import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { REPO, tempProject } from './helpers.js';

const MEGA = join(REPO, 'kernel/bin/mega.js');
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

interface Run {
  child: ChildProcess;
  out: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitFor: (re: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>;
}

function mega(args: string[], cwd: string, env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [MEGA, ...args], {
    cwd,
    env: { ...process.env, NODE_ENV: 'test', MEGA_LOG_LEVEL: 'info', ...env },
  });
  children.push(child);
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
      if (Date.now() > end) throw new Error(`timed out waiting for ${re} in output:\n${out}`);
      if (child.exitCode !== null) throw new Error(`process exited (${child.exitCode}) before ${re}:\n${out}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  return { child, out: () => out, exited, waitFor };
}

const freePort = () => 20000 + Math.floor(Math.random() * 20000);
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** A fresh connection per request (no keep-alive), so cluster balancing can pick another worker. */
function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function poll<T>(fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch {
      // not up yet
    }
    if (Date.now() > end) throw new Error('poll timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const PID_PROJECT = {
  'mega.config.ts': `export default { plugins: ['@mega/http'] };\n`,
  'apps/web/app.config.ts': 'export default {};\n',
  'apps/web/routes/pid.ts': `export default (r: any) => { r.http.get('/pid', async () => ({ pid: process.pid })); };\n`,
};

describe('mega CLI', () => {
  it('starts apps/simple, serves hello, echo and /health, prints the banner, and exits 0 on SIGTERM', async () => {
    const port = freePort();
    const started = performance.now();
    const run = mega(['start', '--port', String(port)], join(REPO, 'apps/simple'));
    const first = await poll(async () => {
      const r = await get(port, '/');
      return r.status === 200 ? r : undefined;
    });
    const coldStartMs = Math.round(performance.now() - started);
    console.log(`cold start to first 200 on apps/simple: ${coldStartMs} ms`);
    expect(JSON.parse(first.body)).toEqual({ data: { message: 'Hello from Mega', app: 'simple' } });
    expect(JSON.parse((await get(port, '/health')).body)).toEqual({ data: { status: 'ok' } });
    const echo = await fetch(`http://127.0.0.1:${port}/echo`, {
      method: 'POST',
      body: '{"a":[1,2]}',
      headers: { 'content-type': 'application/json' },
    });
    expect(await echo.json()).toEqual({ data: { echo: { a: [1, 2] } } });
    await run.waitFor(/plugins\s+@mega\/http@0\.1\.0/);
    expect(run.out()).toMatch(/apps\s+simple \(default host\)/);
    expect(run.out()).toMatch(/codec\s+(native|ts)/);
    run.child.kill('SIGTERM');
    expect(await run.exited).toEqual({ code: 0, signal: null });
  });

  it('cluster: replaces a SIGKILLed worker, and SIGTERM drains every process with exit 0', async () => {
    const dir = tempProject(PID_PROJECT);
    const port = freePort();
    const run = mega(['start', '--workers', '2', '--port', String(port)], dir);
    await run.waitFor(/worker 1 ready pid=(\d+)/);
    await run.waitFor(/worker 2 ready pid=(\d+)/);
    const pids = [...run.out().matchAll(/worker \d ready pid=(\d+)/g)].map((m) => Number(m[1]));
    expect(pids).toHaveLength(2);
    const victim = pids[0] as number;
    process.kill(victim, 'SIGKILL');
    await run.waitFor(new RegExp(`pid=${victim} exited \\(SIGKILL\\); replacing`));
    const replacement = await poll(async () => {
      const all = [...run.out().matchAll(/worker \d ready pid=(\d+)/g)].map((m) => Number(m[1]));
      return all.length >= 3 ? all[all.length - 1] : undefined;
    });
    expect(pids).not.toContain(replacement);
    // The new worker serves: keep asking until its pid answers (the kernel balances connections round-robin).
    const served = await poll(async () => {
      const r = await get(port, '/pid');
      const pid = (JSON.parse(r.body) as { data: { pid: number } }).data.pid;
      return pid === replacement ? pid : undefined;
    });
    expect(served).toBe(replacement);
    const workers = [pids[1] as number, replacement as number];
    run.child.kill('SIGTERM');
    expect(await run.exited).toEqual({ code: 0, signal: null });
    expect(run.out()).toContain('all workers stopped');
    for (const pid of workers) expect(alive(pid)).toBe(false);
  });

  it('a second signal forces exit while shutdown hangs', async () => {
    const dir = tempProject({
      ...PID_PROJECT,
      'mega.config.ts': `export default { plugins: ['@mega/http', './slow.ts'], lifecycle: { shutdownTimeoutMs: 60000 } };\n`,
      'slow.ts': `import { definePlugin } from '@mega/kernel';\nexport default definePlugin({ name: 'slow', version: '1.0.0', setup(k) { k.hooks.shutdown.tapPromise('slow', () => new Promise(() => {})); } });\n`,
    });
    const port = freePort();
    const run = mega(['start', '--port', String(port)], dir);
    await run.waitFor(/ready in \d+ ms/);
    run.child.kill('SIGINT');
    await run.waitFor(/SIGINT received: shutting down/);
    run.child.kill('SIGINT');
    expect((await run.exited).code).toBe(130);
  });

  it('reports a broken config with file and line and exits 1', async () => {
    const dir = tempProject({
      'mega.config.ts': `export default {\n  plugins: [,,\n};\n`,
      'apps/web/app.config.ts': 'export default {};\n',
    });
    const run = mega(['start'], dir);
    expect((await run.exited).code).toBe(1);
    expect(run.out()).toMatch(/\[config\.syntax\] syntax error in .*mega\.config\.ts:\d+/);
  });

  it('prints help, and exits 2 with help on an unknown command or flag', async () => {
    const help = mega(['--help'], REPO);
    expect((await help.exited).code).toBe(0);
    expect(help.out()).toContain('Usage: mega <command>');
    const startHelp = mega(['start', '--help'], REPO);
    expect((await startHelp.exited).code).toBe(0);
    expect(startHelp.out()).toContain('--workers <n>');
    const unknown = mega(['frobnicate'], REPO);
    expect((await unknown.exited).code).toBe(2);
    expect(unknown.out()).toContain('unknown command "frobnicate"');
    const badFlag = mega(['start', '--wat'], REPO);
    expect((await badFlag.exited).code).toBe(2);
    const badWorkers = mega(['start', '--workers', 'lots'], REPO);
    expect((await badWorkers.exited).code).toBe(2);
  });
});
