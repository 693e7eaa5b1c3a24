/**
 * A newcomer's project outside this repository, with nothing but the checkout as the source of
 * the @mega packages: `mega new` (packs the checkout, installs from the tarballs) -> `mega plugin
 * add ws-presence` and `db-postgres` with the project's own installed CLI -> `mega start` -> an
 * HTTP request to the generated route and a WebSocket to a channel written here -> SIGTERM.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openWs } from '@mega/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, httpGet, killAll, runMega, until } from '../../scripts/test/procs.js';

const REPO = join(import.meta.dirname, '../..');
// Tarballs are content-hashed, so one cache is safely shared between runs; npm reuses its own cache.
const ENV = {
  MEGA_PACK_CACHE: join(tmpdir(), 'mega-test-packs'),
  npm_config_prefer_offline: 'true',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
};
let parent: string | undefined;

afterAll(async () => {
  await killAll();
  if (parent) rmSync(parent, { recursive: true, force: true });
});

/** Runs the project's own installed CLI (node_modules/@mega/kernel), as `npx mega` would. */
function projectMega(dir: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [join(dir, 'node_modules/@mega/kernel/bin/mega.js'), ...args], {
      cwd: dir,
      env: { ...process.env, ...ENV },
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.on('close', (code) => done({ code, out }));
  });
}

describe('a project outside the repository', () => {
  it('mega new -> plugin add ws-presence, db-postgres -> start -> HTTP and WebSocket', { timeout: 150_000 }, async () => {
    parent = mkdtempSync(join(tmpdir(), 'mega-outside-'));
    const dir = join(parent, 'my-app');

    const created = runMega(['new', 'my-app'], parent, ENV);
    const { code } = await created.exited;
    expect(created.out(), created.out()).toContain('Running npm install');
    expect(code).toBe(0);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    expect(pkg.mega).toEqual({ checkout: REPO });
    expect(pkg.dependencies['@mega/kernel']).toMatch(/^file:.*mega-kernel-0\.2\.0-[0-9a-f]{12}\.tgz$/);
    expect(pkg.overrides['@mega/codec']).toMatch(/^file:.*\.tgz$/);
    // Real copies, not links into the checkout.
    expect(existsSync(join(dir, 'node_modules/@mega/kernel/dist/index.js'))).toBe(true);
    expect(existsSync(join(dir, 'node_modules/@mega/kernel/src'))).toBe(false);

    const presence = await projectMega(dir, ['plugin', 'add', 'ws-presence']);
    expect(presence.out).toContain('+ @mega/ws-presence@0.1.0');
    expect(presence.code).toBe(0);
    const postgres = await projectMega(dir, ['plugin', 'add', 'db-postgres']);
    expect(postgres.out).toContain('+ @mega/db-postgres@0.1.0');
    expect(postgres.code).toBe(0);
    const deps = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).dependencies;
    expect(Object.keys(deps)).toEqual(expect.arrayContaining(['@mega/ws-presence', '@mega/db-postgres']));
    expect(readFileSync(join(dir, 'mega.config.ts'), 'utf8')).toMatch(/'@mega\/ws-presence'.*'@mega\/db-postgres'/s);

    const list = await projectMega(dir, ['plugin', 'list']);
    expect(list.out).toMatch(/^\* @mega\/ws-presence +0\.1\.0$/m);
    expect(list.out).not.toContain('not installed');

    writeFileSync(
      join(dir, 'routes/ws.ts'),
      `import type { Router } from '@mega/http';
export class Room {
  onConnect(sock: any, ctx: any) { sock.send({ type: 'room.hello', payload: { app: ctx.app.name } }); }
}
export default (router: Router) => { (router as any).ws('/ws/room', Room); };
`,
    );
    const port = await freePort();
    const server = spawn(process.execPath, [join(dir, 'node_modules/@mega/kernel/bin/mega.js'), 'start', '--port', String(port)], {
      cwd: dir,
      env: { ...process.env, ...ENV, NODE_ENV: 'development' },
    });
    let log = '';
    server.stdout.on('data', (c: Buffer) => {
      log += c.toString();
    });
    server.stderr.on('data', (c: Buffer) => {
      log += c.toString();
    });
    const exited = new Promise<number | null>((done) => server.on('close', done));
    try {
      const home = await until(async () => {
        const r = await httpGet(port, '/').catch(() => undefined);
        return r?.status === 200 ? r : undefined;
      }, 45_000).catch((error: unknown) => {
        throw new Error(`${String(error)}\n${log}`);
      });
      expect(home.json).toEqual({ data: { message: 'Hello from my-app', app: 'my-app' } });
      const ws = await openWs(`ws://127.0.0.1:${port}/ws/room`);
      expect((await ws.next('room.hello')).payload).toEqual({ app: 'my-app' });
      await ws.close();
    } finally {
      server.kill('SIGTERM');
    }
    expect(await exited, log).toBe(0);
  });
});
