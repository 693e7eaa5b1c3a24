/** apps/multi hardening (issue 11): B14 no built-in admin password in production; B15 full-origin CSRF check. */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { type Booted, bootProject, stopAll } from '@mega/testing';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

const DIR = join(import.meta.dirname, '..');
const SECRETS = {
  WEB_SESSION_SECRET: 'web-session-secret-0123456789abcdef',
  ADMIN_SESSION_SECRET: 'admin-session-secret-0123456789abcdef',
  WEB_SECURITY_SECRET: 'web-security-secret-0123456789abcdef',
  ADMIN_SECURITY_SECRET: 'admin-security-secret-0123456789abcdef',
};
const saved = { ...process.env };

function setEnv(values: Record<string, string | undefined>): void {
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
}

afterEach(async () => {
  await stopAll();
  for (const k of [...Object.keys(SECRETS), 'ADMIN_PASSWORD']) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});
afterAll(() => rmSync(join(DIR, '.mega'), { recursive: true, force: true }));

const req = (b: Booted, host: string, path: string, init: Parameters<Booted['inject']>[1] = {}) =>
  b.inject(path, { ...init, host: `${host}:${b.port}` });

describe('apps/multi in production', () => {
  it('B14: refuses to boot with the built-in admin password, naming ADMIN_PASSWORD; a set one replaces admin/admin', async () => {
    for (const password of [undefined, 'admin', 'tiny-pw1']) {
      setEnv({ ...SECRETS, ADMIN_PASSWORD: password });
      const error = await bootProject(DIR, { env: 'production' }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'config.default_password', message: expect.stringContaining('set ADMIN_PASSWORD') });
      if (password === 'tiny-pw1') expect(String((error as Error).message)).not.toContain(password);
    }
    setEnv({ ...SECRETS, ADMIN_PASSWORD: 'a-real-admin-password' });
    const b = await bootProject(DIR, { env: 'production' });
    const form = await req(b, 'admin.localhost', '/');
    const csrf = /name="_csrf" value="([^"]+)"/.exec(form.text)?.[1] as string;
    const cookie = String(([] as string[]).concat(form.headers['set-cookie'] ?? [])[0]).split(';')[0] as string;
    const login = (user: string, password: string) =>
      req(b, 'admin.localhost', '/login', {
        method: 'POST',
        body: new URLSearchParams({ user, password, _csrf: csrf }).toString(),
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
      });
    expect((await login('admin', 'admin')).code).toBe('auth.invalid_credentials');
    expect((await login('admin', 'a-real-admin-password')).status).toBe(303);
  });

  it('B15: JSON writes need the whole origin: http://localhost:9999 and https://partner.example:4444 are refused', async () => {
    setEnv({ ...SECRETS, ADMIN_PASSWORD: 'a-real-admin-password' });
    const b = await bootProject(DIR, { env: 'production' });
    const write = (origin: string) => req(b, 'localhost', '/feedback', { method: 'POST', json: { text: 'hi' }, headers: { origin } });
    for (const origin of [
      'http://localhost:9999',
      'https://partner.example:4444',
      `https://localhost:${b.port}`,
      'http://partner.example',
    ]) {
      const res = await write(origin);
      expect([origin, res.status, res.code]).toEqual([origin, 403, 'csrf.origin_mismatch']);
    }
    for (const origin of [`http://localhost:${b.port}`, `http://web.localhost:${b.port}`, 'https://partner.example']) {
      expect([origin, (await write(origin)).data]).toEqual([origin, { received: 'hi' }]);
    }
  });
});
