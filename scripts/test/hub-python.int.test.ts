/**
 * Polyglot proof: the Python bridge client (sidecar/clients/python, standard library + websockets)
 * checks itself against the protocol vectors and talks to the real hub. Its virtualenv is created
 * on first use under the client's gitignored .venv/ (pinned requirements.txt).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { ROOT, startHub } from './hub-harness.js';

const DIR = join(ROOT, 'sidecar', 'clients', 'python');
const PY = join(DIR, '.venv', 'bin', 'python');

beforeAll(() => {
  const ready = existsSync(PY) && spawnSync(PY, ['-c', 'import websockets'], { cwd: DIR }).status === 0;
  if (!ready) {
    execFileSync('python3', ['-m', 'venv', '.venv'], { cwd: DIR, stdio: 'inherit' });
    execFileSync(PY, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', 'requirements.txt'], {
      cwd: DIR,
      stdio: 'inherit',
    });
  }
}, 180_000);

it('python client passes the vectors and registers, joins, broadcasts and receives through the hub', async () => {
  const hub = await startHub();
  try {
    const r = spawnSync(PY, ['-m', 'unittest', '-v', 'test_mega_hub_client'], {
      cwd: DIR,
      env: { PATH: process.env.PATH ?? '', MEGA_HUB_URL: hub.url, MEGA_HUB_ADMIN_TOKEN: 'admin-secret' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/Ran 7 tests/);
    expect(r.stderr).toMatch(/\nOK\n/);
  } finally {
    await hub.stop();
  }
});
