/**
 * `mega ws-hub`, contributed by @mega/hub-bridge: the real `mega` CLI in a project that lists the
 * plugin runs the real mega-hub binary (found from the plugin's dist/ by walking up to sidecar/).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { Client, ensureHubBinary } from '../../../scripts/test/hub-harness.js';
import { MEGA_BIN } from '../../../scripts/test/procs.js';
import { hubBinaryPath, hubBinaryStale, markHubBuilt } from '../src/ws-hub.js';

const clients: Client[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) if (!c.isClosed) c.ws.terminate();
});

function cargoTargetEnv(): Record<string, string> {
  const dir = process.env.CARGO_TARGET_DIR;
  return dir ? { CARGO_TARGET_DIR: dir } : {};
}

/** A project whose plugins list @mega/hub-bridge (the command's owner), with `files` beside it. */
const hubProject = (files: Record<string, string> = {}) =>
  writeProject(
    {
      'mega.config.ts': "export default { plugins: ['@mega/http', '@mega/ws', '@mega/ws-presence', '@mega/hub-bridge'] };\n",
      'app.config.ts': 'export default {};\n',
      ...files,
    },
    { prefix: 'mega-ws-hub-' },
  );

// CARGO_TARGET_DIR passes through: without it the wrapper looks for the binary under the clone's
// own target/ and, on a clean clone, starts a cold cargo build inside the test.
const megaWsHub = (cwd: string, env: Record<string, string>) =>
  spawn(process.execPath, [MEGA_BIN, 'ws-hub'], { cwd, env: { PATH: process.env.PATH ?? '', ...cargoTargetEnv(), ...env } });

describe('mega ws-hub (from @mega/hub-bridge)', () => {
  it('runs the hub with the project .env, forwards SIGTERM and returns its exit code', async () => {
    ensureHubBinary();
    const dir = hubProject({ '.env': 'MEGA_WSHUB_TOKENS=from-dotenv\nMEGA_WSHUB_PORT=1\n' });
    const p = megaWsHub(dir, { MEGA_WSHUB_PORT: '0' }); // the real environment wins over .env
    let out = '';
    let err = '';
    p.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const port = await new Promise<number>((resolve, reject) => {
      p.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on [^\s]+:(\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      p.on('exit', (code) => reject(new Error(`exited ${code}:\n${out}\n${err}`)));
    });
    const c = new Client(`ws://127.0.0.1:${port}`);
    clients.push(c);
    await c.register('via-cli', {}, 'from-dotenv');
    const exit = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
    p.kill('SIGTERM');
    expect((await c.closed).code).toBe(4503);
    expect(await exit).toBe(0);
    // The binary ensureHubBinary() just built is the one the wrapper found: it did not build again.
    expect(err).not.toContain('building the hub');
  });

  it('calls the binary stale when it is missing or older than a hub source', () => {
    const root = mkdtempSync(join(tmpdir(), 'mega-hub-ws-'));
    mkdirSync(join(root, 'sidecar', 'src'), { recursive: true });
    writeFileSync(join(root, 'Cargo.toml'), '');
    writeFileSync(join(root, 'sidecar', 'src', 'main.rs'), '');
    // A fake binary inside the temporary root: never the shared CARGO_TARGET_DIR's real one.
    const bin = join(root, 'target', 'release', 'mega-hub');
    expect(hubBinaryPath(root)).toBe(process.env.CARGO_TARGET_DIR ? join(process.env.CARGO_TARGET_DIR, 'release', 'mega-hub') : bin);
    expect(hubBinaryStale(root, bin)).toBe(true);
    mkdirSync(dirname(bin), { recursive: true });
    writeFileSync(bin, '');
    const old = new Date(Date.now() - 60_000);
    utimesSync(bin, old, old);
    expect(hubBinaryStale(root, bin)).toBe(true);
    markHubBuilt(bin);
    expect(hubBinaryStale(root, bin)).toBe(false);
  });

  it('reports a missing MEGA_WSHUB_TOKENS before building anything: no cargo runs', async () => {
    // A fake cargo first on PATH that leaves a marker, and an empty target dir: the binary is missing,
    // so without the early check the wrapper would start a (35 s) build.
    const fake = mkdtempSync(join(tmpdir(), 'mega-fake-cargo-'));
    const marker = join(fake, 'cargo-ran');
    writeFileSync(join(fake, 'cargo'), `#!/bin/sh\ntouch '${marker}'\nexit 1\n`, { mode: 0o755 });
    const env = { PATH: `${fake}:${process.env.PATH ?? ''}`, CARGO_TARGET_DIR: join(fake, 'target') };
    const run = (extra: Record<string, string>) => {
      const p = spawn(process.execPath, [MEGA_BIN, 'ws-hub'], { cwd: hubProject(), env: { ...env, ...extra } });
      let err = '';
      p.stderr.on('data', (d: Buffer) => {
        err += d.toString();
      });
      return new Promise<{ code: number | null; err: string }>((r) => p.on('exit', (code) => r({ code, err })));
    };
    const missing = await run({});
    expect(missing.code).toBe(2);
    expect(missing.err).toContain('MEGA_WSHUB_TOKENS is required');
    expect(missing.err).not.toContain('building the hub');
    expect(existsSync(marker)).toBe(false);
    // With a token the same setup reaches the build, so the fake cargo was on the path all along.
    const withToken = await run({ MEGA_WSHUB_TOKENS: 'a-token' });
    expect(withToken.code).toBe(1);
    expect(withToken.err).toContain('the hub build failed');
    expect(existsSync(marker)).toBe(true);
  });

  it('exits 2 without tokens, saying which variable is missing', async () => {
    ensureHubBinary();
    const p = megaWsHub(hubProject(), {});
    let err = '';
    p.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    expect(await new Promise((r) => p.on('exit', r))).toBe(2);
    expect(err).toContain('MEGA_WSHUB_TOKENS is required');
  });

  it('is listed by `mega help` inside the project, with its plugin', async () => {
    const p = spawn(process.execPath, [MEGA_BIN, 'help'], { cwd: hubProject(), env: { PATH: process.env.PATH ?? '' } });
    let out = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    await new Promise((r) => p.on('exit', r));
    expect(out).toMatch(/ws-hub +.*\(@mega\/hub-bridge\)/);
  });
});
