/** @mega/asp on a real server: encrypted WS namespaces and sealed HTTP bodies, spoken by @mega/asp/client. */
import type {} from '@mega/asp';
import { definePlugin } from '@mega/kernel';
import { bootProject, inject, openWs, stopAll, type WsMessage, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { AspClient } from '../src/client.js';

afterEach(async () => {
  await stopAll();
  delete process.env.MEGA_CODEC;
});

/** A single-app project (app at the root) with these plugins. */
const project = (files: Record<string, string>, plugins: string) =>
  writeProject({ 'mega.config.ts': `export default { plugins: ${plugins} };\n`, 'app.config.ts': 'export default {};\n', ...files });

const SECRET = 'test-master-secret-0123456789-abcdefghij';

const CHANNEL = `
import { AuthError } from '@mega/kernel';
export const bySession = (req: any) => {
  const sid = new URL(req.url, 'http://x').searchParams.get('sid');
  if (!sid) return undefined;
  return { userId: 'u-' + sid, sessionId: sid };
};
export class Secret {
  onConnect(sock: any, ctx: any) { sock.send({ type: 'hello', payload: { sessionId: ctx.auth?.sessionId } }); }
  ['note.add'](sock: any, msg: any) { sock.send({ type: 'note.added', id: msg.id, payload: { text: msg.payload.text, len: msg.payload.text.length } }); }
}
`;
const ROUTES = `
import { Secret, bySession } from '../channel.js';
export default (router: any) => {
  router.ws('/ws/secret', Secret, { before: bySession, schemas: { 'note.add': { type: 'object', required: ['text'] } } });
  router.ws('/ws/plain', Secret, { before: bySession });
  router.http.post('/login', async (req: any, _reply: any, ctx: any) => {
    await ctx.session.set('user', req.body.user);
    return { user: req.body.user, keys: await ctx.asp.keys(), sessionId: ctx.session.id };
  });
  router.http.post('/api/notes', async (req: any, _reply: any, ctx: any) => ({ saved: req.body, user: await ctx.session.get('user') }), {
    schema: { body: { type: 'object', required: ['title'], properties: { title: { type: 'string', maxLength: 20 } } } },
  });
  router.http.get('/api/notes', async () => [{ title: 'a' }, { title: 'b' }]);
  router.http.get('/open', async () => ({ plain: true }));
  router.http.post('/api/echo', async (req: any) => ({ body: req.body ?? null, polluted: ({} as any).admin === true }));
};
`;

async function start(onFailure: 'error' | 'close' = 'error', backend?: 'ts' | 'native', extra = '') {
  if (backend) process.env.MEGA_CODEC = backend;
  const appConfig = `export default {
    session: { secret: 'session-secret-0123456789' },
    asp: { masterSecret: '${SECRET}', onFailure: '${onFailure}',${extra} websocket: { namespaces: ['/ws/secret'] }, http: { enabledPaths: ['/api/*'] } },
  };\n`;
  return bootProject(
    project(
      { 'channel.ts': CHANNEL, 'routes/all.ts': ROUTES, 'app.config.ts': appConfig },
      "['@mega/http', '@mega/session', '@mega/ws', '@mega/asp']",
    ),
  );
}

const http = inject;

/** A ws client on an encrypted namespace: raw E: frames in, opened envelopes out. */
async function secretClient(url: string, key: string, ns = '/ws/secret', opts: { now?: () => number } = {}) {
  const client = await AspClient.create(key, opts);
  const c = await openWs(url);
  const open = async (m: WsMessage) => JSON.parse(await client.openFrame(String(m.raw), ns));
  return { c, client, open, send: async (m: unknown) => c.sendRaw(await client.sealFrame(JSON.stringify(m), ns)) };
}

describe.each(['native', 'ts'] as const)('@mega/asp over WebSocket (%s codec)', (backend) => {
  it('carries only E: frames both ways and answers bad frames with asp.* errors', async () => {
    const b = await start('error', backend);
    const keys = b.kernel.use('asp').keysFor(b.kernel.apps[0] as any, 'S1');
    const s = await secretClient(b.url('/ws/secret?sid=S1', 'ws'), keys.ws);
    const hello = await s.c.next();
    expect(hello.raw).toMatch(/^E:[A-Za-z0-9_-]+$/);
    expect(await s.open(hello)).toEqual({ type: 'hello', payload: { sessionId: 'S1' } });
    await s.send({ type: 'note.add', id: 'n1', payload: { text: 'sealed hello' } });
    expect(await s.open(await s.c.next())).toEqual({ type: 'note.added', id: 'n1', payload: { text: 'sealed hello', len: 12 } });

    const errorOf = async () => (await s.open(await s.c.next())).payload.code;
    s.c.send('note.add', { text: 'plain' }); // plain frame on an encrypted namespace
    expect(await errorOf()).toBe('asp.signal');
    const good = await s.client.sealFrame(JSON.stringify({ type: 'note.add', id: 'r', payload: { text: 'once' } }), '/ws/secret');
    s.c.sendRaw(good);
    expect((await s.open(await s.c.next())).id).toBe('r');
    s.c.sendRaw(good); // replayed
    expect(await errorOf()).toBe('asp.replay');
    const fresh = await s.client.sealFrame(JSON.stringify({ type: 'note.add', payload: { text: 'forged' } }), '/ws/secret');
    const forged = Buffer.from(fresh.slice(2), 'base64url');
    forged[forged.length - 1] = (forged[forged.length - 1] as number) ^ 1;
    s.c.sendRaw(`E:${forged.toString('base64url')}`);
    expect(await errorOf()).toBe('asp.decrypt');
    const stale = await AspClient.create(keys.ws, { now: () => Date.now() - 120_000 });
    s.c.sendRaw(await stale.sealFrame(JSON.stringify({ type: 'note.add', payload: { text: 'old' } }), '/ws/secret'));
    expect(await errorOf()).toBe('asp.drift');
    s.c.sendRaw('E:not*base64');
    expect(await errorOf()).toBe('asp.malformed');
    s.c.sendRaw(Buffer.from('E:abc'));
    expect(await errorOf()).toBe('asp.signal');
    const otherKey = b.kernel.use('asp').keysFor(b.kernel.apps[0] as any, 'S2').ws;
    const wrong = await AspClient.create(otherKey);
    s.c.sendRaw(await wrong.sealFrame(JSON.stringify({ type: 'note.add', payload: { text: 'x' } }), '/ws/secret'));
    expect(await errorOf()).toBe('asp.decrypt');
    // Sealed but not an envelope / unknown type: the ws plugin's own errors, still sealed.
    await s.send({ type: 'nope.no' });
    expect(await errorOf()).toBe('ws.unknown_type');
    await s.send({ type: 'note.add', payload: {} });
    expect(await errorOf()).toBe('ws.schema');
    const stats = b.kernel.use('asp').stats();
    expect(stats).toMatchObject({ 'asp.signal': 2, 'asp.replay': 1, 'asp.decrypt': 2, 'asp.drift': 1, 'asp.malformed': 1 });
    await s.c.close();
  });

  it('malformed base64url, impossible lengths and short frames are asp.malformed saying which check failed; a good frame still opens after them', async () => {
    const b = await start('error', backend);
    const key = b.kernel.use('asp').keysFor(b.kernel.apps[0] as any, 'S1').ws;
    const s = await secretClient(b.url('/ws/secret?sid=S1', 'ws'), key);
    await s.c.next(); // hello
    const good = await s.client.sealFrame(JSON.stringify({ type: 'note.add', id: 'g', payload: { text: 'good' } }), '/ws/secret');
    const body = good.slice(2);
    const bad = [
      [`E:${body}=`, 'E: frame is not base64url'], // padding
      [`E:+${body.slice(1)}`, 'E: frame is not base64url'], // standard base64's alphabet
      [`E:${body.slice(0, 5)} ${body.slice(6)}`, 'E: frame is not base64url'], // whitespace
      [`E:${body.slice(0, 4 * Math.floor(body.length / 4) - 3)}`, 'E: frame is not base64url'], // length % 4 == 1
      ['E:', 'sealed frame is truncated'],
      [`E:${body.slice(0, 48)}`, 'sealed frame is truncated'], // 36 bytes, under the 38 of a frame
    ] as const;
    for (const [frame, message] of bad) {
      s.c.sendRaw(frame);
      expect((await s.open(await s.c.next())).payload, frame).toEqual({ code: 'asp.malformed', message });
    }
    // A character that is not ASCII inside the text (two UTF-8 bytes on the wire).
    s.c.sendRaw(`${good.slice(0, 10)}é${good.slice(12)}`);
    expect((await s.open(await s.c.next())).payload.code).toBe('asp.malformed');
    // None of them touched the replay cache: the genuine frame opens once, then is a replay.
    s.c.sendRaw(good);
    expect((await s.open(await s.c.next())).id).toBe('g');
    s.c.sendRaw(good);
    expect((await s.open(await s.c.next())).payload.code).toBe('asp.replay');
    expect(b.kernel.use('asp').stats()).toMatchObject({ 'asp.malformed': bad.length + 1, 'asp.replay': 1, opened: 1 });
    await s.c.close();
  });

  it('catches a frame replayed on another connection of the same session', async () => {
    const b = await start('error', backend);
    const key = b.kernel.use('asp').keysFor(b.kernel.apps[0] as any, 'S1').ws;
    const one = await secretClient(b.url('/ws/secret?sid=S1', 'ws'), key);
    const two = await secretClient(b.url('/ws/secret?sid=S1', 'ws'), key);
    await one.c.next();
    await two.c.next();
    const frame = await one.client.sealFrame(JSON.stringify({ type: 'note.add', id: 'x', payload: { text: 'x' } }), '/ws/secret');
    one.c.sendRaw(frame);
    expect((await one.open(await one.c.next())).id).toBe('x');
    two.c.sendRaw(frame);
    expect((await two.open(await two.c.next())).payload.code).toBe('asp.replay');
    await Promise.all([one.c.close(), two.c.close()]);
  });
});

describe('@mega/asp and the wsMessage hook', () => {
  it('taps nothing (plain namespaces skip the hook); a tap sees opened bytes on encrypted namespaces, never a failed frame', async () => {
    const b = await start('error');
    expect(b.kernel.hooks.wsMessage.isUsed()).toBe(false);
    const seen: string[] = [];
    const spy = definePlugin({
      name: 'spy',
      version: '1.0.0',
      setup(api) {
        api.tap('wsMessage', (frame) => {
          seen.push(`${frame.ns} ${String(frame.data)}`);
          return undefined;
        });
      },
    });
    await stopAll();
    const appConfig = `export default {
    session: { secret: 'session-secret-0123456789' },
    asp: { masterSecret: '${SECRET}', websocket: { namespaces: ['/ws/secret'] } },
  };\n`;
    const c = await bootProject(
      project(
        { 'channel.ts': CHANNEL, 'routes/all.ts': ROUTES, 'app.config.ts': appConfig },
        "['@mega/http', '@mega/session', '@mega/ws', '@mega/asp']",
      ),
      { plugins: [spy] },
    );
    const key = c.kernel.use('asp').keysFor(c.kernel.apps[0] as any, 'S1').ws;
    const s = await secretClient(c.url('/ws/secret?sid=S1', 'ws'), key);
    await s.c.next();
    await s.send({ type: 'note.add', id: 'n1', payload: { text: 'hi' } });
    await s.c.next();
    s.c.send('note.add', { text: 'plain on secret' }); // asp.signal: answered before the hook
    await s.c.next();
    const plain = await openWs(c.url('/ws/plain?sid=S1', 'ws'));
    await plain.next();
    plain.send('note.add', { text: 'plain' });
    await plain.next();
    expect(seen).toEqual([
      '/ws/secret {"type":"note.add","id":"n1","payload":{"text":"hi"}}',
      '/ws/plain {"type":"note.add","payload":{"text":"plain"}}',
    ]);
    await Promise.all([s.c.close(), plain.close()]);
  });
});

describe('B13: replay protection holds on long-lived sockets', () => {
  it('B13: a frame captured on a long-lived socket is still asp.replay on a new connection after LRU pressure from many sessions', async () => {
    const b = await start('error', undefined, ' maxSessions: 2,');
    const app = b.kernel.apps[0] as any;
    const asp = b.kernel.use('asp');
    const key = asp.keysFor(app, 'LONG').ws;
    const long = await secretClient(b.url('/ws/secret?sid=LONG', 'ws'), key);
    await long.c.next(); // hello
    const frame = await long.client.sealFrame(JSON.stringify({ type: 'note.add', id: 'cap', payload: { text: 'captured' } }), '/ws/secret');
    long.c.sendRaw(frame);
    expect((await long.open(await long.c.next())).id).toBe('cap');
    // Many other sessions come and go while the long-lived socket stays open: 10 x maxSessions.
    for (let i = 0; i < 20; i++) {
      const other = await secretClient(b.url(`/ws/secret?sid=O${i}`, 'ws'), asp.keysFor(app, `O${i}`).ws);
      await other.c.next();
      await other.c.close();
    }
    const replayer = await secretClient(b.url('/ws/secret?sid=LONG', 'ws'), key);
    await replayer.c.next();
    replayer.c.sendRaw(frame);
    expect((await replayer.open(await replayer.c.next())).payload.code).toBe('asp.replay');
    // And on the long-lived socket itself.
    long.c.sendRaw(frame);
    expect((await long.open(await long.c.next())).payload.code).toBe('asp.replay');
    await Promise.all([long.c.close(), replayer.c.close()]);
  });
});

describe('@mega/asp policies', () => {
  it('closes with 1008 on a bad frame when onFailure is close; refuses encrypted namespaces without a session', async () => {
    const b = await start('close');
    const key = b.kernel.use('asp').keysFor(b.kernel.apps[0] as any, 'S1').ws;
    const s = await secretClient(b.url('/ws/secret?sid=S1', 'ws'), key);
    await s.c.next();
    s.c.send('note.add', { text: 'plain' });
    expect(await s.c.closed).toEqual({ code: 1008, reason: 'asp.signal' });
    const anon = await b.ws('/ws/secret');
    expect(await anon.closed).toEqual({ code: 1008, reason: 'asp.no_session' });
    // A namespace not listed stays plain.
    const plain = await b.ws('/ws/plain?sid=S1');
    expect(await plain.next('hello')).toEqual({ type: 'hello', payload: { sessionId: 'S1' }, raw: expect.any(String) });
    await plain.close();
  });

  it('fails boot without a master secret in production (development gets a random one)', async () => {
    const dir = project(
      { 'app.config.ts': "export default { asp: { websocket: { namespaces: ['/x'] } } };\n" },
      "['@mega/http', '@mega/ws', '@mega/asp']",
    );
    const saved = process.env.MEGA_ASP_SECRET;
    delete process.env.MEGA_ASP_SECRET;
    await expect(bootProject(dir, { env: 'production' })).rejects.toMatchObject({ code: 'asp.config' });
    const short = project(
      { 'app.config.ts': "export default { asp: { masterSecret: 'too short', websocket: { namespaces: ['/x'] } } };\n" },
      "['@mega/http', '@mega/ws', '@mega/asp']",
    );
    await expect(bootProject(short)).rejects.toMatchObject({ code: 'asp.config' });
    const dev = await bootProject(dir);
    expect(dev.kernel.use('asp').isEncrypted(dev.kernel.apps[0] as any, '/x')).toBe(true);
    if (saved !== undefined) process.env.MEGA_ASP_SECRET = saved;
  });
});

describe('B17: sealed bodies get the same input checks as plain ones', () => {
  async function loggedIn() {
    const b = await start();
    const origin = `http://127.0.0.1:${b.port}`;
    const login = await http(b.port, '/login', { method: 'POST', json: { user: 'ann' }, headers: { origin } });
    const { keys } = JSON.parse(login.text).data;
    const cookie = String(login.headers['set-cookie']).split(';')[0] as string;
    const client = await AspClient.create(keys.http);
    const post = (body: string | undefined, headers: Record<string, string> = {}) =>
      http(b.port, '/api/echo', {
        method: 'POST',
        ...(body === undefined ? {} : { body }),
        headers: {
          cookie,
          'x-mega-asp': '1',
          origin,
          ...(body === undefined ? {} : { 'content-type': 'application/x-mega-asp' }),
          ...headers,
        },
      });
    return { b, client, post, login };
  }

  it('B17: sealed JSON with __proto__ (or constructor.prototype) is refused with 400 http.invalid_json', async () => {
    const { client, post } = await loggedIn();
    const proto = await post(await client.sealFrame('{"a":1,"__proto__":{"admin":true}}', '/api/echo'));
    expect([proto.status, JSON.parse(proto.text).error.code]).toEqual([400, 'http.invalid_json']);
    const ctor = await post(await client.sealFrame('{"constructor":{"prototype":{"admin":true}}}', '/api/echo'));
    expect([ctor.status, JSON.parse(ctor.text).error.code]).toEqual([400, 'http.invalid_json']);
    const deep = await post(await client.sealFrame(`${'['.repeat(10_000)}${']'.repeat(10_000)}`, '/api/echo'));
    expect([deep.status, JSON.parse(deep.text).error.code]).toEqual([400, 'http.too_deep']);
    const notJson = await post(await client.sealFrame('{nope', '/api/echo'));
    expect([notJson.status, JSON.parse(notJson.text).error.code]).toEqual([400, 'asp.malformed']);
    const ok = await post(await client.sealFrame('{"a":1}', '/api/echo'));
    expect(JSON.parse(await client.openFrame(ok.text, '/api/echo'))).toEqual({ data: { body: { a: 1 }, polluted: false } });
  });

  it('B17: a sealed route refuses a request without a body (400 asp.signal); AspClient seals an empty payload', async () => {
    const { b, client, post } = await loggedIn();
    const missing = await post(undefined);
    expect([missing.status, JSON.parse(missing.text).error.code]).toEqual([400, 'asp.signal']);
    const empty = await post('');
    expect([empty.status, JSON.parse(empty.text).error.code]).toEqual([400, 'asp.signal']);
    const sealedEmpty = await post(await client.sealFrame('', '/api/echo'));
    expect(JSON.parse(await client.openFrame(sealedEmpty.text, '/api/echo'))).toEqual({ data: { body: null, polluted: false } });
    expect(b.kernel.use('asp').stats()['asp.signal']).toBeGreaterThanOrEqual(2);
  });
});

describe('@mega/asp over HTTP', () => {
  it('takes and returns sealed bodies on enabled paths, with signal, drift and replay checks', async () => {
    const b = await start();
    const login = await http(b.port, '/login', {
      method: 'POST',
      body: JSON.stringify({ user: 'ann' }),
      headers: { 'content-type': 'application/json', origin: `http://127.0.0.1:${b.port}` },
    });
    expect(login.status).toBe(200);
    const { keys } = JSON.parse(login.text).data;
    const cookie = String(login.headers['set-cookie']).split(';')[0] as string;
    const client = await AspClient.create(keys.http);
    const sealedPost = async (body: string, extra: Record<string, string> = {}) =>
      http(b.port, '/api/notes', {
        method: 'POST',
        body,
        headers: { cookie, 'content-type': 'application/x-mega-asp', 'x-mega-asp': '1', origin: `http://127.0.0.1:${b.port}`, ...extra },
      });

    const body = await client.sealFrame(JSON.stringify({ title: 'secret note' }), '/api/notes');
    const ok = await sealedPost(body);
    expect(ok.status).toBe(200);
    expect(ok.headers['x-mega-asp']).toBe('1');
    expect(ok.headers['content-type']).toMatch(/application\/x-mega-asp/);
    expect(ok.text).toMatch(/^E:/);
    expect(JSON.parse(await client.openFrame(ok.text, '/api/notes'))).toEqual({ data: { saved: { title: 'secret note' }, user: 'ann' } });

    const codeOf = (r: { text: string }) => JSON.parse(r.text).error.code;
    const replay = await sealedPost(body);
    expect([replay.status, codeOf(replay)]).toEqual([400, 'asp.replay']);
    const noSignal = await http(b.port, '/api/notes', {
      method: 'POST',
      body,
      headers: { cookie, 'content-type': 'application/x-mega-asp' },
    });
    expect([noSignal.status, codeOf(noSignal)]).toEqual([400, 'asp.signal']);
    const plain = await sealedPost(JSON.stringify({ title: 'x' }), { 'content-type': 'application/json' });
    expect([plain.status, codeOf(plain)]).toEqual([400, 'asp.signal']);
    const stale = await AspClient.create(keys.http, { now: () => Date.now() + 120_000 });
    const drift = await sealedPost(await stale.sealFrame(JSON.stringify({ title: 'x' }), '/api/notes'));
    expect([drift.status, codeOf(drift)]).toEqual([400, 'asp.drift']);
    const otherPath = await sealedPost(await client.sealFrame(JSON.stringify({ title: 'x' }), '/api/other'));
    expect([otherPath.status, codeOf(otherPath)]).toEqual([400, 'asp.decrypt']);
    const invalid = await sealedPost(await client.sealFrame(JSON.stringify({ title: 'far too long for the schema' }), '/api/notes'));
    expect([invalid.status, codeOf(invalid)]).toEqual([400, 'validation.failed']);
    const garbage = await sealedPost('E:***');
    expect([garbage.status, codeOf(garbage)]).toEqual([400, 'asp.malformed']);
    const anon = await http(b.port, '/api/notes', { headers: { 'x-mega-asp': '1' } });
    expect([anon.status, codeOf(anon)]).toEqual([401, 'asp.no_session']);

    const list = await http(b.port, '/api/notes', { headers: { cookie, 'x-mega-asp': '1' } });
    expect(login.headers['cache-control']).toBe('no-store'); // B19: ctx.asp.keys() marks its response
    expect(JSON.parse(await client.openFrame(list.text, '/api/notes'))).toEqual({ data: [{ title: 'a' }, { title: 'b' }] });
    const open = await http(b.port, '/open');
    expect(JSON.parse(open.text)).toEqual({ data: { plain: true } });
  });
});
