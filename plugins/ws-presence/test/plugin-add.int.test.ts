/** `mega plugin add @mega/ws-presence` on a copy of a project: enables @mega/ws with it and leaves a config that boots. */
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { bootProject, stopAll } from '@mega/testing';
import { afterAll, describe, expect, it } from 'vitest';

const REPO = join(import.meta.dirname, '../../..');
const run = promisify(execFile);
let dir: string;

afterAll(async () => {
  await stopAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('mega plugin add @mega/ws-presence', () => {
  it('adds @mega/ws first, keeps the config loadable, and the project boots with ctx.presence (then @mega/asp writes its secret)', async () => {
    dir = mkdtempSync(join(tmpdir(), 'mega-plugin-add-'));
    for (const entry of ['mega.config.ts', 'app.config.ts', 'package.json', 'routes', 'controllers'])
      cpSync(join(REPO, 'apps/simple', entry), join(dir, entry), { recursive: true });
    symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
    const before = readFileSync(join(dir, 'mega.config.ts'), 'utf8');
    expect(before).toContain("plugins: ['@mega/http']");

    const { stdout } = await run(process.execPath, [join(REPO, 'kernel/bin/mega.js'), 'plugin', 'add', 'ws-presence'], { cwd: dir });
    expect(stdout).toContain('+ @mega/ws@0.1.0 (dependency of @mega/ws-presence)');
    expect(stdout).toContain('+ @mega/ws-presence@0.1.0');
    const after = readFileSync(join(dir, 'mega.config.ts'), 'utf8');
    expect(after).toMatch(/plugins: \['@mega\/http', '@mega\/ws', '@mega\/ws-presence'\]/);
    expect(after.replace(/plugins: \[[^\]]*\]/, '')).toBe(before.replace(/plugins: \[[^\]]*\]/, '')); // nothing else touched

    const again = await run(process.execPath, [join(REPO, 'kernel/bin/mega.js'), 'plugin', 'add', '@mega/ws-presence'], { cwd: dir });
    expect(again.stdout).toContain('Nothing to change.');

    // @mega/asp's configure step writes a random master secret to .env.
    const asp = await run(process.execPath, [join(REPO, 'kernel/bin/mega.js'), 'plugin', 'add', 'asp'], { cwd: dir });
    expect(asp.stdout).toContain('+ @mega/asp@0.1.0');
    expect(readFileSync(join(dir, '.env'), 'utf8')).toMatch(/^MEGA_ASP_SECRET=[A-Za-z0-9_-]{43}$/m);
    expect(readFileSync(join(dir, 'mega.config.ts'), 'utf8')).toMatch(
      /plugins: \['@mega\/http', '@mega\/ws', '@mega\/ws-presence', '@mega\/asp'\]/,
    );

    writeFileSync(
      join(dir, 'routes/ws.ts'),
      `export class Room {
  onConnect(sock: any, ctx: any) { ctx.presence.join({ userId: 'u1', sessionId: sock.id }); sock.send({ type: 'room.who', payload: ctx.presence.list() }); }
}
export default (router: any) => { router.ws('/ws/room', Room); };
`,
    );
    // The copied config listens on 3000; the test boots it on a free port instead.
    const config = readFileSync(join(dir, 'mega.config.ts'), 'utf8');
    writeFileSync(join(dir, 'mega.config.ts'), config.replace('port: 3000', "port: 0, host: '127.0.0.1'"));
    const b = await bootProject(dir);
    const c = await b.ws('/ws/room');
    const who = await c.next('room.who');
    expect(who.payload).toEqual([{ sessionId: expect.any(String), userId: 'u1', channels: [] }]);
    await c.close();
  });
});
