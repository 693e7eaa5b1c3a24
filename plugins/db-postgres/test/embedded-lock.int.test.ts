/**
 * A1: embedded PGlite serves one process. Real `mega start` processes on one project: the second
 * fails with db.embedded_in_use naming the first, the lock goes with its holder (clean stop or
 * SIGKILL), and `--workers N` refuses with the fix.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { writeProject } from '@mega/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, killAll, megaStart, runMega } from '../../../scripts/test/procs.js';

afterAll(killAll);

const project = () =>
  writeProject({
    'mega.config.ts': `export default { plugins: ['@mega/http', '@mega/db-postgres'] };\n`,
    'apps/web/app.config.ts': 'export default {};\n',
    'apps/web/routes/index.ts': `export default (r) => { r.http.get('/n', async (_q, _r, ctx) => (await ctx.db().query('select count(*)::int as n from pg_class')).rows[0]); };\n`,
  });

describe('@mega/db-postgres embedded PGlite: one process per data directory', () => {
  it('A1: a second mega start on the same project fails with db.embedded_in_use; the lock goes with its holder', async () => {
    const dir = project();
    const lockFile = join(dir, '.mega', 'pglite', 'primary.lock');
    const first = await megaStart(dir);
    expect(existsSync(lockFile)).toBe(true);

    const second = runMega(['start', '--port', String(await freePort())], dir);
    const { code } = await second.exited;
    expect(code).not.toBe(0);
    expect(second.out()).toContain('db.embedded_in_use');
    expect(second.out()).toContain(`in use by process ${first.child.pid}`);
    expect(second.out()).toContain('configure services.dbs with a PostgreSQL url');
    // The first one never noticed and still serves.
    const res = await fetch(`http://127.0.0.1:${first.port}/n`);
    expect(res.status).toBe(200);

    // A clean stop releases the lock: the next start boots.
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    expect(existsSync(lockFile)).toBe(false);
    const third = await megaStart(dir);
    // SIGKILL leaves the file behind; its pid is gone, so the next start takes it over.
    await third.kill('SIGKILL');
    expect(existsSync(lockFile)).toBe(true);
    const fourth = await megaStart(dir);
    await fourth.kill('SIGTERM');
  }, 120_000);

  it('A1: mega start --workers 2 with the embedded database refuses, naming the fix', async () => {
    const dir = project();
    const run = runMega(['start', '--workers', '2', '--port', String(await freePort())], dir);
    const { code } = await run.exited;
    expect(code).toBe(1);
    const out = run.out();
    expect(out).toContain('db.embedded_in_use');
    expect(out).toContain('cannot serve mega start --workers');
    expect(out).toContain('Configure services.dbs with a PostgreSQL url');
    expect(out).toMatch(/giving up/);
    expect(out).not.toMatch(/ready in \d+ ms/);
  }, 120_000);
});
