/**
 * `mega doctor` as users run it: one screen of checks, exit 0 on a healthy project and exit 1
 * naming every problem on a broken one.
 */
import { createServer } from 'node:net';
import { writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { killAll, runMega as mega } from '../../scripts/test/procs.js';

afterEach(killAll);

/** A loopback port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

describe('mega doctor', () => {
  it('lists what it checked on a healthy project and exits 0', async () => {
    const dir = writeProject({
      'mega.config.ts': `export default { plugins: ['@mega/http', '@mega/db-postgres'], services: { dbs: { primary: { driver: 'pglite', url: 'memory://' } } } };\n`,
      'app.config.ts': 'export default {};\n',
    });
    const run = mega(['doctor'], dir);
    expect((await run.exited).code).toBe(0);
    const out = run.out();
    expect(out).toMatch(/node\s+ok\s+v\d+\.\d+\.\d+ satisfies >=\d+ \(@mega\/kernel\)/);
    expect(out).toMatch(/packages\s+ok\s+@mega\/kernel@\d+\.\d+\.\d+/);
    expect(out).toContain('@mega/http@0.1.0, @mega/db-postgres@0.1.0');
    expect(out).toMatch(/codec\s+(ok\s+native addon loaded|warn\s+TypeScript fallback)/);
    expect(out).toMatch(/config\s+ok\s+valid; booted 1 app/);
    expect(out).toMatch(/ok\s+db:primary: answers \(health check of @mega\/db-postgres\)/);
    expect(out).toContain('all checks passed');
  });

  it('names an unknown config key and a service that does not answer, and exits 1', async () => {
    const port = await closedPort();
    const dir = writeProject({
      'mega.config.ts': `export default {\n  plugins: ['@mega/http', '@mega/cache-redis'],\n  colour: 'blue',\n  services: { caches: { main: { driver: 'redis', url: 'redis://127.0.0.1:${port}' } } },\n};\n`,
      'app.config.ts': 'export default {};\n',
    });
    const run = mega(['doctor', '--timeout', '2000'], dir);
    expect((await run.exited).code).toBe(1);
    const out = run.out();
    expect(out).toMatch(/config\s+FAIL\s+\[config\.unknown_key\] mega\.config\.ts: unknown key "colour"/);
    expect(out).toMatch(new RegExp(`FAIL\\s+caches\\.main \\(redis\\): 127\\.0\\.0\\.1:${port} does not answer \\(ECONNREFUSED\\)`));
    expect(out).toMatch(/2 problems found/);
  });
});
