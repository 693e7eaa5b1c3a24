/**
 * B9 (issue 11): keys per purpose, CSRF tokens bound to the session or a server-made cookie, never
 * a signature over a client-chosen value. B15: the JSON Origin check compares the whole origin.
 * B16: token-less multipart posts are refused before any body is read.
 */
import { createHmac } from 'node:crypto';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BootProjectOptions, bootProject, stopAll, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { CSRF_TOKEN_LABEL, purposeKey } from '../src/index.js';

const boot = (files: Record<string, string>, { config, ...options }: BootProjectOptions & { config: string }) =>
  bootProject(writeProject({ 'mega.config.ts': `export default ${config};\n`, ...files }, { prefix: 'mega-sec-' }), options);

afterEach(async () => {
  await stopAll();
  delete process.env.MEGA_SECRET;
});

const MEGA_SECRET = 'one-shared-production-secret-0123456789abcdef';
const ROUTES = `export default (r: any) => {
  r.http.post('/login', async (_q: any, _p: any, ctx: any) => { await ctx.session.set('user', 'victim'); return { ok: true }; }, { csrf: false });
  r.http.get('/me', async (_q: any, _p: any, ctx: any) => ({ user: (await ctx.session.get('user')) ?? null }));
  r.http.get('/form', async (_q: any, _p: any, ctx: any) => ({ token: ctx.csrfToken() }));
  r.http.post('/submit', async (req: any) => ({ got: req.body?.name ?? null }));
  r.http.post('/logout', async (_q: any, _p: any, ctx: any) => { await ctx.session.destroy(); return { token: ctx.csrfToken() }; });
};`;

const cookiesOf = (setCookie: string[] | string | undefined) =>
  Object.fromEntries(
    ([] as string[]).concat(setCookie ?? []).map((c) => {
      const pair = c.split(';')[0] as string;
      return [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)];
    }),
  );

describe('@mega/security CSRF tokens (issue 11)', () => {
  it('B9: with only MEGA_SECRET in production, a session id cannot be turned into a session cookie through csrfToken()', async () => {
    process.env.MEGA_SECRET = MEGA_SECRET;
    const { inject } = await boot(
      { 'apps/web/app.config.ts': `export default { hosts: ['web.test'] };`, 'apps/web/routes/r.ts': ROUTES },
      { config: `{ plugins: ['@mega/http', '@mega/security', '@mega/session'] }`, env: 'production' },
    );
    const login = await inject('/login', { method: 'POST', host: 'web.test', body: '', headers: { 'content-type': 'text/plain' } });
    const victim = cookiesOf(login.headers['set-cookie']).mega_sid as string;
    expect((await inject('/me', { host: 'web.test', headers: { cookie: `mega_sid=${victim}` } })).data).toEqual({ user: 'victim' });
    // The attacker knows the victim's session id (leaked through presence, logs...), not its cookie.
    const sessionId = victim.slice(0, victim.lastIndexOf('.'));
    const page = await inject('/form', { host: 'web.test', headers: { cookie: `mega_csrf=${sessionId}` } });
    const token = (page.data as { token: string }).token;
    for (const forged of [token, `${sessionId}.${token.slice(token.lastIndexOf('.') + 1)}`]) {
      const me = await inject('/me', { host: 'web.test', headers: { cookie: `mega_sid=${forged}` } });
      expect(me.data).toEqual({ user: null });
    }
    // The nonce from the cookie is not signed as is: a fresh server-made cookie replaces it.
    expect(token.startsWith(`${sessionId}.`)).toBe(false);
    expect(String(cookiesOf(page.headers['set-cookie']).mega_csrf ?? '')).not.toContain(sessionId);
  });

  it('B9: a CSRF token is bound to its session (or its server-made cookie), refused for another, and expires', async () => {
    const secret = 'a-security-secret-of-32-bytes-or-more!';
    const { inject } = await boot(
      {
        'apps/web/app.config.ts': `export default { hosts: ['web.test'], security: { secret: '${secret}', csrf: { ttlMs: 60000 } }, session: { secret: 'a-session-secret-of-32-bytes-or-more' } };`,
        'apps/web/routes/r.ts': ROUTES,
      },
      { config: `{ plugins: ['@mega/http', '@mega/security', '@mega/session'] }` },
    );
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const post = (body: string, cookie: string) =>
      inject('/submit', { method: 'POST', host: 'web.test', body, headers: { ...form, cookie } });
    const session = async () => {
      const login = await inject('/login', { method: 'POST', host: 'web.test', body: '', headers: { 'content-type': 'text/plain' } });
      return `mega_sid=${cookiesOf(login.headers['set-cookie']).mega_sid}`;
    };
    const alice = await session();
    const bob = await session();
    const page = await inject('/form', { host: 'web.test', headers: { cookie: alice } });
    const token = (page.data as { token: string }).token;
    // Bound to the session: no CSRF cookie is needed or set.
    expect(page.headers['set-cookie']).toBeUndefined();
    expect((await post(`name=a&_csrf=${encodeURIComponent(token)}`, alice)).data).toEqual({ got: 'a' });
    const other = await post(`name=b&_csrf=${encodeURIComponent(token)}`, bob);
    expect([other.status, other.code]).toEqual([403, 'csrf.invalid_token']);
    const anonymous = await post(`name=c&_csrf=${encodeURIComponent(token)}`, '');
    expect([anonymous.status, anonymous.code]).toEqual([403, 'csrf.invalid_token']);

    // Anonymous visitors: bound to a server-made cookie; a client-chosen cookie is replaced, not signed.
    const anon = await inject('/form', { host: 'web.test', headers: { cookie: 'mega_csrf=chosen-by-the-client-0123' } });
    const csrfCookie = cookiesOf(anon.headers['set-cookie']).mega_csrf as string;
    expect(csrfCookie).toMatch(/^[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]{43}$/);
    const anonToken = (anon.data as { token: string }).token;
    expect((await post(`name=d&_csrf=${encodeURIComponent(anonToken)}`, `mega_csrf=${csrfCookie}`)).data).toEqual({ got: 'd' });
    const chosen = await post(`name=e&_csrf=${encodeURIComponent(anonToken)}`, 'mega_csrf=chosen-by-the-client-0123');
    expect([chosen.status, chosen.code]).toEqual([403, 'csrf.invalid_token']);

    // Expiry: a token whose MAC holds but whose time is past (made with the derived key, as the server would).
    const random = csrfCookie.slice(0, csrfCookie.indexOf('.'));
    const exp = (Date.now() - 1000).toString(36);
    const mac = createHmac('sha256', purposeKey(secret, CSRF_TOKEN_LABEL)).update(`web|c:${random}|${exp}`).digest('base64url');
    const expired = await post(`name=f&_csrf=${encodeURIComponent(`${exp}.${mac}`)}`, `mega_csrf=${csrfCookie}`);
    expect([expired.status, expired.code]).toEqual([403, 'csrf.expired_token']);
    const fresh = (Date.now() + 60_000).toString(36);
    const freshMac = createHmac('sha256', purposeKey(secret, CSRF_TOKEN_LABEL)).update(`web|c:${random}|${fresh}`).digest('base64url');
    expect((await post(`name=g&_csrf=${encodeURIComponent(`${fresh}.${freshMac}`)}`, `mega_csrf=${csrfCookie}`)).data).toEqual({
      got: 'g',
    });

    // Logout in the same request: the token handed out afterwards binds to the cookie the next request carries.
    const out = await inject('/logout', { method: 'POST', host: 'web.test', headers: { cookie: alice, 'x-csrf-token': token } });
    const next = cookiesOf(out.headers['set-cookie']);
    expect(next.mega_sid).toBe('');
    const afterLogout = await post(
      `name=h&_csrf=${encodeURIComponent((out.data as { token: string }).token)}`,
      `mega_csrf=${next.mega_csrf}`,
    );
    expect(afterLogout.data).toEqual({ got: 'h' });
  });

  it('B15: the JSON Origin check compares the whole origin: scheme, host and port', async () => {
    const { inject, port } = await boot(
      {
        'apps/web/app.config.ts': `export default { hosts: ['web.test', 'localhost'], security: { secret: 'a-security-secret-of-32-bytes-or-more!', cors: { origin: ['https://partner.example'] } } };`,
        'apps/web/routes/r.ts': ROUTES,
      },
      { config: `{ plugins: ['@mega/http', '@mega/security'] }` },
    );
    const write = (origin: string, host = `localhost:${port}`) =>
      inject('/submit', { method: 'POST', host, json: { name: 'j' }, headers: { origin } });
    for (const origin of [
      `http://localhost:${port}`,
      `http://web.test:${port}`,
      'https://partner.example',
      'https://partner.example:443',
    ]) {
      expect([origin, (await write(origin)).data]).toEqual([origin, { got: 'j' }]);
    }
    for (const origin of [
      'http://localhost:9999',
      'https://partner.example:4444',
      `https://localhost:${port}`,
      'http://partner.example',
      'http://localhost',
    ]) {
      const res = await write(origin);
      expect([origin, res.status, res.code]).toEqual([origin, 403, 'csrf.origin_mismatch']);
    }
    // An app without hosts: only the request's own origin.
    expect((await write('http://web.test', 'web.test')).data).toEqual({ got: 'j' });
    expect((await write('http://web.test:8080', 'web.test')).code).toBe('csrf.origin_mismatch');
  });

  it('B16: a token-less multipart POST is refused 403 before any temporary file is written', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'mega-b16-'));
    const { inject } = await boot(
      {
        'apps/web/app.config.ts': `export default { hosts: ['web.test'], security: { secret: 'a-security-secret-of-32-bytes-or-more!' } };`,
        'apps/web/routes/r.ts': `export default (r: any) => {
          r.http.get('/form', async (_q: any, _p: any, ctx: any) => ({ token: ctx.csrfToken() }));
          r.http.post('/upload', async (req: any) => ({ size: req.body?.file?.size ?? null }));
        };`,
      },
      { config: `{ plugins: ['@mega/http', '@mega/security'], http: { multipart: { tmpDir: '${tmp}', fileSize: 8388608 } } }` },
    );
    const boundary = 'mega-b16-boundary';
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="_csrf"\r\n\r\nnot-checked-from-multipart\r\n`),
      Buffer.from(
        `--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="big.bin"\r\ncontent-type: application/octet-stream\r\n\r\n`,
      ),
      Buffer.alloc(4 * 1024 * 1024, 1),
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const headers = { 'content-type': `multipart/form-data; boundary=${boundary}` };
    const refused = await inject('/upload', { method: 'POST', host: 'web.test', body, headers });
    expect([refused.status, refused.code]).toEqual([403, 'csrf.missing_token']);
    expect(readdirSync(tmp)).toEqual([]);
    const badHeader = await inject('/upload', {
      method: 'POST',
      host: 'web.test',
      body,
      headers: { ...headers, 'x-csrf-token': 'nope.nope' },
    });
    expect([badHeader.status, badHeader.code]).toEqual([403, 'csrf.invalid_token']);
    expect(readdirSync(tmp)).toEqual([]);
    // With the token in the header (or ?_csrf=), the upload goes through.
    const page = await inject('/form', { host: 'web.test' });
    const cookie = `mega_csrf=${cookiesOf(page.headers['set-cookie']).mega_csrf}`;
    const token = (page.data as { token: string }).token;
    const viaHeader = await inject('/upload', {
      method: 'POST',
      host: 'web.test',
      body,
      headers: { ...headers, cookie, 'x-csrf-token': token },
    });
    expect(viaHeader.data).toEqual({ size: 4 * 1024 * 1024 });
    const viaQuery = await inject(`/upload?_csrf=${encodeURIComponent(token)}`, {
      method: 'POST',
      host: 'web.test',
      body,
      headers: { ...headers, cookie },
    });
    expect(viaQuery.data).toEqual({ size: 4 * 1024 * 1024 });
  });
});
