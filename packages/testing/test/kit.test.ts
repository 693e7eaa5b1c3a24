import { definePlugin, Type } from '@mega/kernel';
import { afterEach, describe, expect, it } from 'vitest';
import { bootPlugins, bootProject, buildPlugins, inject, LEVELS, stopAll, WsHandshakeError, writeProject } from '../src/index.js';
import { fakeServer } from './fake-server.js';

afterEach(() => stopAll());

describe('bootPlugins', () => {
  it('boots inline plugins with config and apps, captures logs silently and waits for lines', async () => {
    const seen: unknown[] = [];
    const probe = definePlugin({
      name: 'probe',
      version: '1.0.0',
      config: {
        global: Type.Object({ probe: Type.Object({ greeting: Type.String({ default: 'hi' }) }, { default: {} }) }),
        app: Type.Object({ flavour: Type.Optional(Type.String()) }),
      },
      setup(api, config) {
        seen.push(config.probe.greeting, ...api.kernel.apps.map((a) => api.appConfig(a).flavour));
        api.tap('boot', () => {
          setTimeout(() => api.log.warn({ late: true }, 'probe late line'), 20);
        });
      },
    });
    const b = await bootPlugins({ plugins: [fakeServer, probe], apps: { one: { flavour: 'mint' } } });
    expect(b.kernel.state).toBe('running');
    expect(seen).toEqual(['hi', 'mint']);
    expect(b.findLogs('fake server listening')[0]).toMatchObject({ plugin: 'fake-server', level: LEVELS.info });
    const late = await b.waitForLog((l) => l.late === true);
    expect(late).toMatchObject({ plugin: 'probe', msg: 'probe late line', level: LEVELS.warn });
    await expect(b.waitForLog('never logged', 50)).rejects.toThrow(/no log line matching never logged within 50 ms/);
  });

  it('builds without starting, so a boot failure can be asserted; stopAll stops what it booted', async () => {
    const broken = definePlugin({
      name: 'broken',
      version: '1.0.0',
      setup(api) {
        api.tap('boot', () => {
          throw new Error('nope');
        });
      },
    });
    const b = buildPlugins({ plugins: [broken] });
    await expect(b.kernel.start()).rejects.toMatchObject({ code: 'internal', plugin: 'broken' });
    const ok = await bootPlugins({ plugins: [fakeServer] });
    await stopAll();
    expect(ok.kernel.state).toBe('stopped');
    expect(ok.findLogs('fake server closed')).toHaveLength(1);
  });

  it('reports config problems before setup, like mega start', async () => {
    const b = buildPlugins({ plugins: [fakeServer], config: { sever: { port: 1 } } });
    await expect(b.kernel.start()).rejects.toMatchObject({ code: 'config.unknown_key' });
  });
});

describe('inject', () => {
  it('sends real requests and lifts the envelope', async () => {
    const b = await bootPlugins({ plugins: [fakeServer] });
    const ok = await b.inject('/ok');
    expect(ok).toMatchObject({ status: 200, data: { ok: true, method: 'GET' }, code: undefined });
    const missing = await b.inject('/nowhere');
    expect(missing.status).toBe(404);
    expect(missing.code).toBe('route.not_found');
    expect(missing.error).toEqual({ code: 'route.not_found', message: 'no /nowhere' });
    const echo = await b.inject('/echo', { json: { a: [1, 2] } });
    expect(echo.data).toEqual({ a: [1, 2] });
    expect(echo.json.type).toBe('application/json');
    const text = await b.inject('/text', { host: 'shop.example' });
    expect(text).toMatchObject({ text: 'plain', json: undefined, data: undefined });
    expect((await inject(b.port, '/ok', { method: 'DELETE', host: 'a.example' })).headers['x-seen-host']).toBe('a.example');
    expect(b.url('/x')).toBe(`http://127.0.0.1:${b.port}/x`);
  });

  it('says what is missing when nothing listens', async () => {
    const b = await bootPlugins({ plugins: [] });
    await expect(b.inject('/')).rejects.toThrow(/no listening server/);
  });
});

describe('ws', () => {
  it('speaks the envelope: send, next, request, waitFor, ping, close codes', async () => {
    const b = await bootPlugins({ plugins: [fakeServer] });
    const c = await b.ws('/ws', { origin: 'https://app.example', headers: { authorization: 'Bearer t' }, protocols: ['mega.v1', 'other'] });
    expect(c.protocol).toBe('mega.v1');
    expect((await c.next('hello')).payload).toEqual({ origin: 'https://app.example', auth: 'Bearer t' });
    c.send('chat.send', { text: 'hi' });
    expect(await c.next('chat.send.reply')).toMatchObject({ type: 'chat.send.reply', payload: { text: 'hi' } });
    const answer = await c.request('sum', { a: 1 });
    expect(answer).toMatchObject({ type: 'sum.reply', id: 't1', payload: { a: 1 } });
    c.send('big');
    expect((await c.next('big')).payload).toHaveLength(70_000);
    c.send('split');
    expect((await c.next('split')).raw).toBe('{"type":"split"}');
    c.send('raw');
    expect(await c.waitFor((m) => m.type === '')).toMatchObject({ raw: 'not json' });
    c.sendRaw(Buffer.from([1, 2, 3]));
    expect((await c.next('')).raw).toEqual(Buffer.from([1, 2, 3]));
    await c.ping('p');
    await expect(c.next('never', 30)).rejects.toThrow(/no matching WebSocket message within 30 ms/);
    c.send('bye');
    expect(await c.closed).toEqual({ code: 4001, reason: 'bye now' });
    expect(c.isOpen).toBe(false);
  });

  it('closes from the client side and reports refused upgrades with their code', async () => {
    const b = await bootPlugins({ plugins: [fakeServer] });
    const c = await b.ws('/ws');
    await c.next('hello');
    expect(await c.close(1000, 'done')).toEqual({ code: 1000, reason: 'done' });
    const refused = await b.ws('/ws/denied').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(WsHandshakeError);
    expect(refused).toMatchObject({ status: 403, code: 'ws.origin_denied' });
  });

  it('stopAll drops open clients before stopping kernels', async () => {
    const b = await bootPlugins({ plugins: [fakeServer] });
    const c = await b.ws('/ws');
    await stopAll();
    expect((await c.closed).code).toBe(1006);
    expect(b.kernel.state).toBe('stopped');
  });
});

describe('bootProject and writeProject', () => {
  it('boots a project from its files, with its local plugins and extra inline ones', async () => {
    const dir = writeProject({
      'mega.config.ts': `export default { plugins: ['./plugins/greeter.ts'], greeter: { name: 'Ada' } };\n`,
      'apps/web/app.config.ts': 'export default { hosts: ["web.example"] };\n',
      'apps/admin/app.config.ts': 'export default {};\n',
      'plugins/greeter.ts': `import { definePlugin, Type } from '@mega/kernel';
export default definePlugin({
  name: 'greeter',
  version: '1.0.0',
  config: { global: Type.Object({ greeter: Type.Object({ name: Type.String(), punctuation: Type.String({ default: '!' }) }) }) },
  setup(api, config) {
    api.tap('boot', () => api.log.info({ apps: api.kernel.apps.map((a) => a.name) }, 'hello ' + config.greeter.name + config.greeter.punctuation));
  },
});
`,
    });
    const b = await bootProject(dir, { plugins: [fakeServer], apps: ['web'] });
    expect(await b.waitForLog('hello Ada!')).toMatchObject({ plugin: 'greeter', apps: ['web'] });
    expect(b.kernel.apps.map((a) => a.hosts)).toEqual([['web.example']]);
    expect((await b.inject('/ok')).status).toBe(200);
    expect(b.kernel.server.host).toBe('127.0.0.1');
  });
});
