/**
 * The one MEGA_SECRET that `mega new` writes to .env (issue 15, item 2): sessions, CSRF and ASP
 * each derive their own key from it, so a production project runs on it alone, and two processes
 * (a restart, a second worker) agree on cookies, CSRF tokens and ASP keys.
 */
import { hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import asp from '@mega/asp';
import { signId } from '@mega/session';
import { bootProject, stopAll, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { createProjectEditor } from '../src/cli/plugin/project-editor.js';

const MEGA_SECRET = 'the-one-project-secret-of-mega-new-0123456789';
const derived = (env: string) => Buffer.from(hkdfSync('sha256', MEGA_SECRET, 'mega', `mega.secret.v1:${env}`, 32)).toString('base64url');

afterEach(async () => {
  await stopAll();
  delete process.env.MEGA_SECRET;
});

const cookieOf = (setCookie: string | string[] | undefined, name: string) =>
  ([] as string[])
    .concat(setCookie ?? [])
    .find((c) => c.startsWith(`${name}=`))
    ?.split(';')[0]
    ?.slice(name.length + 1) ?? '';

describe('one MEGA_SECRET for the project', () => {
  it('is enough in production for sessions, CSRF and ASP, and two processes agree on every key derived from it', async () => {
    process.env.MEGA_SECRET = MEGA_SECRET;
    const dir = writeProject(
      {
        'mega.config.ts': `export default { plugins: ['@mega/http', '@mega/security', '@mega/session', '@mega/ws', '@mega/asp'] };\n`,
        'apps/web/app.config.ts': `export default { hosts: ['web.test'], asp: { http: { enabledPaths: ['/sealed'] } } };\n`,
        'apps/web/routes/r.ts': `export default (r: any) => {
  r.http.post('/login', async (_q: any, _p: any, ctx: any) => { await ctx.session.set('user', 'ada'); return { ok: true }; }, { csrf: false });
  r.http.get('/me', async (_q: any, _p: any, ctx: any) => ({ user: (await ctx.session.get('user')) ?? null, keys: await ctx.asp.keys(), token: ctx.csrfToken() }));
  r.http.post('/form', async (req: any) => ({ got: req.body?.name ?? null }));
  r.http.post('/sealed', async () => ({ sealed: true }));
};
`,
      },
      { prefix: 'mega-secret-' },
    );
    // One project booted twice (a restart, or another worker): what the first signed, the second accepts.
    const first = await bootProject(dir, { env: 'production' });
    const login = await first.inject('/login', { method: 'POST', host: 'web.test', body: '', headers: { 'content-type': 'text/plain' } });
    const sid = cookieOf(login.headers['set-cookie'], 'mega_sid');
    const cookie = `mega_sid=${sid}`;
    const mine = await first.inject('/me', { host: 'web.test', headers: { cookie } });
    await first.stop();
    const second = await bootProject(dir, { env: 'production' });
    const theirs = await second.inject('/me', { host: 'web.test', headers: { cookie } });
    expect(mine.data.user).toBe('ada');
    expect(theirs.data.user).toBe('ada');
    expect(theirs.data.keys).toEqual(mine.data.keys);
    const form = { 'content-type': 'application/x-www-form-urlencoded', cookie };
    const posted = await second.inject('/form', {
      method: 'POST',
      host: 'web.test',
      body: `name=x&_csrf=${mine.data.token}`,
      headers: form,
    });
    expect(posted.data).toEqual({ got: 'x' });

    // The cookie is signed with the sessions' own key of MEGA_SECRET, never with MEGA_SECRET itself.
    const id = sid.slice(0, sid.lastIndexOf('.'));
    expect(sid).toBe(signId(derived('MEGA_SESSION_SECRET'), id));
    expect(sid).not.toBe(signId(MEGA_SECRET, id));
    expect(derived('MEGA_SESSION_SECRET')).not.toBe(derived('MEGA_SECURITY_SECRET'));
    expect(derived('MEGA_ASP_SECRET')).not.toBe(derived('MEGA_SECURITY_SECRET'));
  });

  it('without it (or a secret of its own), production refuses ASP, as it refuses sessions', async () => {
    const dir = writeProject(
      {
        'mega.config.ts': `export default { plugins: ['@mega/http', '@mega/ws', '@mega/asp'] };\n`,
        'app.config.ts': `export default { asp: { http: { enabledPaths: ['/sealed'] } } };\n`,
        'routes/r.ts': `export default (r: any) => { r.http.post('/sealed', async () => ({ sealed: true })); };\n`,
      },
      { prefix: 'mega-secret-' },
    );
    await expect(bootProject(dir, { env: 'production' })).rejects.toMatchObject({ code: 'asp.config' });
    process.env.MEGA_SECRET = MEGA_SECRET;
    const booted = await bootProject(dir, { env: 'production' });
    expect(booted.kernel.state).toBe('running');
  });

  it('mega plugin add @mega/asp adds no MEGA_ASP_SECRET to a .env that has MEGA_SECRET (as mega new writes it)', async () => {
    const said: string[] = [];
    for (const env of [`MEGA_SECRET=${MEGA_SECRET}\n`, 'PORT=3000\n']) {
      const dir = writeProject({ 'mega.config.ts': 'export default {};\n', '.env': env }, { prefix: 'mega-secret-' });
      await asp.configure?.(createProjectEditor({ dir, configFile: join(dir, 'mega.config.ts'), say: (l) => said.push(l) }));
      const after = readFileSync(join(dir, '.env'), 'utf8');
      if (env.startsWith('MEGA_SECRET')) expect(after).toBe(env);
      else expect(after).toMatch(/^MEGA_ASP_SECRET=[A-Za-z0-9_-]{43}$/m);
    }
    expect(said).toEqual(['  update .env (MEGA_ASP_SECRET)']);
  });
});
