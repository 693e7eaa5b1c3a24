/** apps/multi: two apps (web, admin) in one process on one port, routed by Host, each with its own config. */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { HttpServer } from '@mega/http';
import type { Kernel } from '@mega/kernel';
import { createLogger, getApp, loadKernel } from '@mega/kernel';
import { type InjectInit, inject } from '@mega/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** The repository root. */
const REPO = join(import.meta.dirname, '../../..');

const DIR = join(REPO, 'apps/multi');
let kernel: Kernel;
let port: number;
const get = (host: string, path: string, init: InjectInit = {}) => inject(port, path, { ...init, host: `${host}:${port}` });

beforeAll(async () => {
  kernel = await loadKernel({ dir: DIR, port: 0, env: 'test', logger: createLogger({ level: 'silent' }) });
  await kernel.start();
  port = kernel.use<HttpServer>('http').port;
});
afterAll(async () => {
  await kernel?.stop();
  rmSync(join(DIR, '.mega'), { recursive: true, force: true });
});

describe('apps/multi', () => {
  it('routes web.localhost and admin.localhost to their apps, each with its own locale and layout', async () => {
    expect((await get('web.localhost', '/whoami')).json).toEqual({
      data: { app: 'web', hosts: ['web.localhost', 'localhost'], locale: 'en', greeting: 'Hello from web' },
    });
    expect((await get('admin.localhost', '/whoami')).json).toEqual({
      data: { app: 'admin', hosts: ['admin.localhost'], locale: 'ko', greeting: 'admin 관리자 화면입니다' },
    });
    const page = await get('web.localhost', '/', { headers: { 'accept-language': 'ko' } });
    expect(page.text).toContain('<title>웹 (공개 사이트)</title>');
    expect(page.text).toContain('1번째 방문입니다.');
    expect(String(page.headers['set-cookie'])).toMatch(/^web_sid=/);
    expect((await get('admin.localhost', '/')).text).toContain('<link rel="stylesheet" href="/static/css/admin.css">');
    expect((await get('admin.localhost', '/static/css/admin.css')).text).toContain('body.admin');
    expect((await get('web.localhost', '/static/css/admin.css')).code).toBe('not_found');
    expect((await get('web.localhost', '/static/js/web.js')).status).toBe(200);
  });

  it('answers unknown hosts with 404 app.unknown_host and reaches another app with getApp', async () => {
    const unknown = await get('shop.example', '/whoami');
    expect([unknown.status, unknown.code]).toEqual([404, 'app.unknown_host']);
    expect((await get('web.localhost', '/cross')).json).toEqual({ data: { from: 'web', other: 'admin', otherHosts: ['admin.localhost'] } });
    expect(getApp('admin').hosts).toEqual(['admin.localhost']);
    expect((await get('10.1.2.3', '/ready')).json).toEqual({ data: { status: 'ready' } });
  });

  it('admin login: CSRF form token, session regenerated, dashboard behind before middleware', async () => {
    const denied = await get('admin.localhost', '/dashboard');
    expect([denied.status, denied.code]).toEqual([401, 'auth.required']);
    const form = await get('admin.localhost', '/');
    const csrf = /name="_csrf" value="([^"]+)"/.exec(form.text)?.[1] as string;
    const csrfCookie = String((form.headers['set-cookie'] as string[])[0]).split(';')[0] as string;
    const post = (body: string, cookie: string) =>
      get('admin.localhost', '/login', { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded', cookie } });
    expect((await post('user=admin&password=admin', csrfCookie)).code).toBe('csrf.missing_token');
    expect((await post(`user=admin&password=nope&_csrf=${encodeURIComponent(csrf)}`, csrfCookie)).code).toBe('auth.invalid_credentials');
    const ok = await post(`user=admin&password=admin&_csrf=${encodeURIComponent(csrf)}`, csrfCookie);
    expect([ok.status, ok.headers.location]).toEqual([303, '/dashboard']);
    const sid = (ok.headers['set-cookie'] as string[]).map((c) => c.split(';')[0]).at(-1) as string;
    expect(sid).toMatch(/^admin_sid=/);
    expect(String(ok.headers['set-cookie'])).toContain('SameSite=Strict');
    const dash = await get('admin.localhost', '/dashboard', { headers: { cookie: sid } });
    expect(dash.text).toContain('admin님, 환영합니다');
    // The admin cookie means nothing to web (its own cookie name and store).
    expect((await get('web.localhost', '/whoami', { headers: { cookie: sid } })).status).toBe(200);
  });

  it('applies each app its own security: CORS for web, a stricter JSON origin check, helmet on both', async () => {
    const preflight = await get('web.localhost', '/feedback', {
      method: 'OPTIONS',
      headers: { origin: 'https://partner.example', 'access-control-request-method': 'POST' },
    });
    expect([preflight.status, preflight.headers['access-control-allow-origin']]).toEqual([204, 'https://partner.example']);
    const adminPreflight = await get('admin.localhost', '/login', {
      method: 'OPTIONS',
      headers: { origin: 'https://partner.example', 'access-control-request-method': 'POST' },
    });
    expect([adminPreflight.status, adminPreflight.code]).toEqual([403, 'cors.origin_denied']);
    const json = { 'content-type': 'application/json' };
    const fromWeb = await get('web.localhost', '/feedback', {
      method: 'POST',
      body: '{"text":"hi"}',
      headers: { ...json, origin: `http://web.localhost:${port}` },
    });
    expect(fromWeb.json).toEqual({ data: { received: 'hi' } });
    const fromAdmin = await get('web.localhost', '/feedback', {
      method: 'POST',
      body: '{"text":"hi"}',
      headers: { ...json, origin: `http://admin.localhost:${port}` },
    });
    expect([fromAdmin.status, fromAdmin.code]).toEqual([403, 'csrf.origin_mismatch']);
    const invalid = await get('web.localhost', '/feedback', {
      method: 'POST',
      body: '{"text":{"a":1}}',
      headers: { ...json, origin: 'https://partner.example' },
    });
    expect([invalid.status, invalid.code]).toEqual([400, 'validation.failed']);
    expect((await get('admin.localhost', '/whoami')).headers['x-content-type-options']).toBe('nosniff');
  });
});
