import { type BootProjectOptions, bootProject, stopAll, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';

/** Writes a project whose mega.config.ts exports `config` (TS source) and boots it with the test kit. */
const boot = (
  files: Record<string, string>,
  { config = "{ plugins: ['@mega/http'] }", ...options }: BootProjectOptions & { config?: string } = {},
) => bootProject(writeProject({ 'mega.config.ts': `export default ${config};\n`, ...files }, { prefix: 'mega-http-' }), options);

afterEach(stopAll);

const CONFIG = `{ plugins: ['@mega/http', '@mega/i18n', '@mega/views'], server: { port: 0, host: '127.0.0.1' } }`;

const FILES = {
  'apps/web/app.config.ts': `export default { views: { layout: 'layouts/main' } };`,
  'apps/web/views/layouts/main.eta': `<html><title><%= it.title %></title><body><%~ it.body %></body></html>`,
  'apps/web/views/layouts/bare.eta': `<main><%~ it.body %></main>`,
  'apps/web/views/users/list.eta': `<h1><%= it.t('users.title', { count: it.users.length }) %></h1><ul><% it.users.forEach(function (u) { %><li><%= u %></li><% }) %></ul>`,
  'apps/web/views/partial.eta': `<p>no layout</p>`,
  'apps/web/views/own.eta': `<% layout('layouts/bare') %>inside`,
  'apps/web/locales/server/en.json': JSON.stringify({ users: { title: '{count} users' } }),
  'apps/web/locales/server/ko.json': JSON.stringify({ users: { title: '사용자 {count}명' } }),
  'apps/web/routes/r.ts': `export default (r: any) => {
  r.http.get('/users', async (_q: any, _p: any, ctx: any) => ctx.render('users/list', { title: 'Users', users: ['<ada>', 'bob'] }));
  r.http.get('/partial', async (_q: any, _p: any, ctx: any) => ctx.render('partial', {}, { layout: false, status: 202 }));
  r.http.get('/own', async (_q: any, _p: any, ctx: any) => ctx.render('own', {}, { layout: false }));
  r.http.get('/missing', async (_q: any, _p: any, ctx: any) => ctx.render('nope'));
  r.http.get('/escape', async (_q: any, _p: any, ctx: any) => ctx.render('../../../mega.config'));
};`,
};

describe('@mega/views', () => {
  it('renders Eta templates with the app layout, escaping, and ctx.t in templates', async () => {
    const { inject } = await boot(FILES, { config: CONFIG });
    const en = await inject('/users', { headers: { 'accept-language': 'en-US,en;q=0.9' } });
    expect(en.status).toBe(200);
    expect(en.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(en.text).toBe('<html><title>Users</title><body><h1>2 users</h1><ul><li>&lt;ada&gt;</li><li>bob</li></ul></body></html>');
    const ko = await inject('/users', { headers: { 'accept-language': 'ko-KR' } });
    expect(ko.text).toContain('<h1>사용자 2명</h1>');
    const partial = await inject('/partial');
    expect([partial.status, partial.text]).toEqual([202, '<p>no layout</p>']);
    expect((await inject('/own')).text).toBe('<main>inside</main>');
  });

  it('maps a missing template or one outside views/ to a coded 500', async () => {
    const { inject } = await boot(FILES, { config: CONFIG });
    const missing = await inject('/missing');
    expect([missing.status, missing.code]).toEqual([500, 'views.not_found']);
    const outside = await inject('/escape');
    expect([outside.status, outside.code]).toEqual([500, 'views.not_found']);
    expect((await inject('/partial')).status).toBe(202);
  });
});
