import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type BootProjectOptions, bootProject, captureLogs, stopAll, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import type { SessionService } from '../src/index.js';
import { FileSessionStore, signId, unsignId } from '../src/index.js';
import { jar, sessionFiles } from './fixtures.js';

/** Writes a project whose mega.config.ts exports `config` (TS source) and boots it with the test kit. */
const boot = (
  files: Record<string, string>,
  { config = "{ plugins: ['@mega/http'] }", ...options }: BootProjectOptions & { config?: string } = {},
) => bootProject(writeProject({ 'mega.config.ts': `export default ${config};\n`, ...files }, { prefix: 'mega-http-' }), options);

afterEach(stopAll);

const CONFIG = `{ plugins: ['@mega/http', '@mega/session'], server: { port: 0, host: '127.0.0.1' } }`;

describe('@mega/session (file store)', () => {
  it('keeps data across requests, regenerates the id on login, destroys on logout', async () => {
    const { inject, dir } = await boot(sessionFiles(), { config: CONFIG });
    const browser = jar();
    const plain = await inject('/plain');
    expect(plain.headers['set-cookie']).toBeUndefined();
    const anon = await inject('/me');
    expect([anon.json, anon.headers['set-cookie']]).toEqual([{ data: { user: null, sid: null } }, undefined]);

    const login = await inject('/login', { method: 'POST', body: '{"user":"ada"}', headers: { 'content-type': 'application/json' } });
    browser.take(login.headers['set-cookie'] as string[]);
    const { before, after } = login.data as { before: string; after: string };
    expect(before).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(after).not.toBe(before);
    expect(String(login.headers['set-cookie'])).toMatch(/mega_sid=.*HttpOnly.*SameSite=Lax/);
    const me = await inject('/me', { headers: browser.header });
    expect(me.json).toEqual({ data: { user: 'ada', sid: after } });
    const files = readdirSync(join(dir, '.mega/sessions/web'));
    expect(files).toEqual([`${after}.json`]);

    // Session fixation: the pre-login id is dead.
    const fixated = await inject('/me', { headers: { cookie: `mega_sid=${signId('a-session-secret-for-tests', before)}` } });
    expect(fixated.json).toEqual({ data: { user: null, sid: null } });

    const logout = await inject('/logout', {
      method: 'POST',
      headers: { ...browser.header, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(String(logout.headers['set-cookie'])).toMatch(/mega_sid=;.*Max-Age=0/);
    expect((await inject('/me', { headers: browser.header })).json).toEqual({ data: { user: null, sid: null } });
    expect(readdirSync(join(dir, '.mega/sessions/web'))).toEqual([]);
  });

  it('ignores forged or malformed cookies (logged) and keeps serving', async () => {
    const { logger, lines } = captureLogs();
    const { inject } = await boot(sessionFiles(), { config: CONFIG, logger });
    const login = await inject('/login', { method: 'POST', body: '{"user":"ada"}', headers: { 'content-type': 'application/json' } });
    const real = String((login.headers['set-cookie'] as string[]).at(-1)).split(';')[0] as string;
    const [name, value] = real.split('=') as [string, string];
    const forged = `${name}=${value.slice(0, 43)}.${'A'.repeat(43)}`;
    for (const cookie of [
      forged,
      'mega_sid=../../etc/passwd',
      'mega_sid=%zz%',
      'mega_sid',
      `mega_sid=${'x'.repeat(5000)}`,
      '=;;=; mega_sid="unterminated',
    ]) {
      const res = await inject('/private', { headers: { cookie } });
      expect([cookie.slice(0, 30), res.status, res.code]).toEqual([cookie.slice(0, 30), 401, 'auth.required']);
    }
    expect((await inject('/private', { headers: { cookie: real } })).json).toEqual({ data: { user: 'ada' } });
    expect(lines.filter((l) => l.reason === 'session.invalid_cookie').length).toBeGreaterThanOrEqual(3);
  });

  it('signs ids with HMAC and rejects any other value', () => {
    const id = 'A'.repeat(43);
    const signed = signId('k1-secret-value-xx', id);
    expect(unsignId('k1-secret-value-xx', signed)).toBe(id);
    expect(unsignId('k2-secret-value-xx', signed)).toBeUndefined();
    expect(unsignId('k1-secret-value-xx', `${id}.`)).toBeUndefined();
    expect(unsignId('k1-secret-value-xx', 'short.sig')).toBeUndefined();
  });

  it('rolls a session read in the second half of its lifetime, and only then; rolling: false never does', async () => {
    for (const rolling of [true, false]) {
      const { inject, dir } = await boot(sessionFiles(`{ secret: 'a-session-secret-for-tests', rolling: ${rolling} }`), { config: CONFIG });
      const browser = jar();
      const login = await inject('/login', { method: 'POST', body: '{"user":"lin"}', headers: { 'content-type': 'application/json' } });
      browser.take(login.headers['set-cookie'] as string[]);
      const file = join(dir, '.mega/sessions/web', `${login.data.after}.json`);
      const expiresAt = () => JSON.parse(readFileSync(file, 'utf8')).expiresAt as number;
      expect((await inject('/me', { headers: browser.header })).headers['set-cookie']).toBeUndefined();
      // Ten seconds left of a one-day session.
      writeFileSync(file, JSON.stringify({ expiresAt: Date.now() + 10_000, data: { user: 'lin' } }));
      const late = await inject('/me', { headers: browser.header });
      expect(late.data.user).toBe('lin');
      if (rolling) {
        expect(String(late.headers['set-cookie'])).toMatch(/mega_sid=.*Max-Age=86400/);
        expect(expiresAt()).toBeGreaterThan(Date.now() + 86_000_000);
        expect((await inject('/me', { headers: browser.header })).headers['set-cookie']).toBeUndefined();
      } else {
        expect(late.headers['set-cookie']).toBeUndefined();
        expect(expiresAt()).toBeLessThan(Date.now() + 10_001);
      }
      await stopAll();
    }
  });

  it('scans for expired files hourly by default; cleanupIntervalMs: 0 opts out', async () => {
    const { kernel, dir } = await boot(sessionFiles(), { config: CONFIG });
    const store = kernel.use<SessionService>('sessions').storeOf('web') as FileSessionStore;
    expect([store.dir, store.cleanupIntervalMs, store.scanning]).toEqual([join(dir, '.mega/sessions/web'), 3_600_000, true]);
    const live = 'L'.repeat(43);
    const dead = 'D'.repeat(43);
    await store.set(live, { a: 1 }, 60_000);
    await store.set(dead, { a: 2 }, 60_000);
    writeFileSync(join(store.dir, `${dead}.json`), JSON.stringify({ expiresAt: Date.now() - 1, data: {} }));
    writeFileSync(join(store.dir, 'garbage.json'), '{not json');
    expect(await store.cleanup()).toBe(2);
    expect(readdirSync(store.dir)).toEqual([`${live}.json`]);
    expect((await store.get(live))?.data).toEqual({ a: 1 });
    await stopAll();
    expect(store.scanning).toBe(false);

    const off = new FileSessionStore(join(dir, 'x'), 0);
    expect(off.scanning).toBe(false);
    await off.close();
    const fast = new FileSessionStore(join(dir, 'y'), 20);
    await fast.set(dead, {}, 1);
    for (let i = 0; i < 100 && existsSync(join(dir, 'y', `${dead}.json`)); i++) await new Promise((r) => setTimeout(r, 20));
    expect(existsSync(join(dir, 'y', `${dead}.json`))).toBe(false);
    await fast.close();
  });

  it('refuses a secret shorter than 16 bytes (32 in production), from the file or from MEGA_SESSION_SECRET, with session.secret_missing', async () => {
    for (const env of ['development', 'production']) {
      await expect(boot(sessionFiles(`{ secret: 'too-short' }`), { config: CONFIG, env })).rejects.toMatchObject({
        code: 'session.secret_missing',
        message: expect.stringContaining(`at least ${env === 'production' ? 32 : 16} bytes`),
      });
      process.env.MEGA_SESSION_SECRET = 'too-short';
      try {
        await expect(boot(sessionFiles('{}'), { config: CONFIG, env })).rejects.toMatchObject({
          code: 'session.secret_missing',
          message: expect.stringMatching(new RegExp(`MEGA_SESSION_SECRET.*at least ${env === 'production' ? 32 : 16} bytes`)),
        });
      } finally {
        delete process.env.MEGA_SESSION_SECRET;
      }
    }
  });

  it('names @mega/cache-redis when a redis store is configured without it', async () => {
    await expect(
      boot(sessionFiles(`{ secret: 'a-session-secret-for-tests', store: { driver: 'redis' } }`), { config: CONFIG }),
    ).rejects.toMatchObject({ code: 'plugin.missing_dependency', message: expect.stringContaining('mega plugin add @mega/cache-redis') });
  });

  it('refuses to boot in production without a secret', async () => {
    await expect(boot(sessionFiles('{}'), { config: CONFIG, env: 'production' })).rejects.toMatchObject({ code: 'session.secret_missing' });
    process.env.MEGA_SESSION_SECRET = 'from-the-environment-0123456789abcdef';
    try {
      const { inject } = await boot(sessionFiles('{}'), { config: CONFIG, env: 'production' });
      const login = await inject('/login', { method: 'POST', body: '{"user":"p"}', headers: { 'content-type': 'application/json' } });
      expect(String(login.headers['set-cookie'])).toContain('Secure');
    } finally {
      delete process.env.MEGA_SESSION_SECRET;
    }
  });
});
