/**
 * Upgrades take the HTTP request lifecycle (real Fastify request/reply, the app's phases), and
 * wsMessage taps that throw are internal failures, unlike a returned MegaError.
 */
import { connect } from 'node:net';
import { bootProject, stopAll, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { Client, project, refused } from './support.js';

afterEach(stopAll);

type Seen = { url: unknown; raw: boolean; routeUrl: unknown; method: string; app: string; sameCtx?: boolean };
const seen = () => (globalThis as unknown as { upgradeSeen: Seen[] }).upgradeSeen;

const CHANNEL = `
export class Room {
  onConnect(sock: any, ctx: any) {
    const seen = (globalThis as any).upgradeSeen;
    sock.send({ type: 'hello', payload: { app: ctx.app.name, auth: ctx.auth ?? null, sameCtx: seen.at(-1)?.ctx === ctx, reqIsFastify: typeof ctx.source?.routeOptions === 'object' } });
  }
  ['room.say'](sock: any, msg: any) { sock.send({ type: 'room.ack', id: msg.id, payload: msg.payload }); }
}
`;
const ROUTES = `
import { Room } from '../channel.js';
export default (router: any) => {
  router.ws('/room', Room, { before: (req: any) => ({ user: req.headers['x-user'] ?? 'anon' }) });
  router.http.get('/plain', async () => 'plain');
};
`;

/** A plugin whose app-wide `before` middleware reads what only real Fastify objects have. */
const GUARD = `
import { definePlugin } from '@mega/kernel';
export default definePlugin({
  name: 'guard',
  version: '1.0.0',
  dependsOn: ['@mega/http'],
  setup(api) {
    api.tap('boot', () => {
      const http = api.use('http');
      http.use((req: any, reply: any, ctx: any) => {
        (globalThis as any).upgradeSeen.push({ url: req.url, routeUrl: req.routeOptions.url, raw: typeof reply.raw.writeHead === 'function', method: req.method, app: ctx.app.name, ctx });
        if (req.headers['x-token'] !== 'ok') return reply.code(401).send({ error: { code: 'auth.required', message: 'no' } });
        return undefined;
      });
    });
  },
});
`;

describe('WebSocket upgrades through the HTTP request lifecycle', () => {
  it('runs app middleware on a real Fastify request/reply (routeOptions, reply.raw), refusing with HTTP before 101', async () => {
    (globalThis as unknown as { upgradeSeen: Seen[] }).upgradeSeen = [];
    const dir = project({ 'channel.ts': CHANNEL, 'routes/ws.ts': ROUTES, 'guard.ts': GUARD }, "['@mega/http', '@mega/ws', './guard.ts']");
    const b = await bootProject(dir);
    const url = b.url('/room?x=1', 'ws');

    const denied = await refused(url);
    expect(denied).toMatchObject({ status: 401, body: { error: { code: 'auth.required' } } });
    expect(seen()[0]).toMatchObject({ url: '/room?x=1', routeUrl: '/room', raw: true, method: 'GET', app: expect.any(String) });

    const c = await Client.open(url, { headers: { 'x-token': 'ok', 'x-user': 'ann' } });
    const hello = await c.ofType('hello');
    expect(hello.payload).toEqual({ app: seen()[1]?.app, auth: { user: 'ann' }, sameCtx: true, reqIsFastify: true });
    c.send({ type: 'room.say', id: 'r1', payload: { text: 'hi' } });
    expect(await c.ofType('room.ack')).toMatchObject({ id: 'r1', payload: { text: 'hi' } });
    await c.close();
    expect(seen()).toHaveLength(2);

    // A plain GET on a WS route is answered by the route itself: 426, after the same middleware.
    const plain = await b.inject('/room', { headers: { 'x-token': 'ok' } });
    expect([plain.status, plain.code]).toEqual([426, 'ws.upgrade_required']);
    expect((await b.inject('/plain')).status).toBe(401);
  });
});

const TAPS = `
import { definePlugin, MegaError } from '@mega/kernel';
export default definePlugin({
  name: 'frame-guard',
  version: '1.0.0',
  dependsOn: ['@mega/ws'],
  setup(api) {
    api.tap('wsMessage', (frame: any) => {
      const text = frame.data.toString();
      if (text.includes('explode')) throw new Error('tap bug: secret detail');
      if (text.includes('mega-throw')) throw new MegaError('guard.thrown', 'thrown, not returned');
      if (text.includes('reject')) return new MegaError('guard.rejected', 'returned on purpose');
      return undefined;
    });
  },
});
`;

describe('wsMessage taps: a throw is internal, a returned MegaError is a rejection', () => {
  async function start(env: string) {
    const dir = project({ 'channel.ts': CHANNEL, 'routes/ws.ts': ROUTES, 'taps.ts': TAPS }, "['@mega/http', '@mega/ws', './taps.ts']");
    (globalThis as unknown as { upgradeSeen: Seen[] }).upgradeSeen = [];
    const b = await bootProject(dir, { env });
    const c = await Client.open(b.url('/room', 'ws'));
    await c.ofType('hello');
    return { b, c };
  }

  it('logs a throwing tap with plugin and hook and answers internal, with the text only outside production', async () => {
    for (const env of ['development', 'production']) {
      const { b, c } = await start(env);
      c.send({ type: 'room.say', id: 'x1', payload: { text: 'explode' } });
      const err = await c.ofType('error');
      expect(err.payload.code).toBe('internal');
      expect(err.payload.code).not.toBe('plugin.failed');
      if (env === 'production') expect(err.payload.message).toBe('internal error');
      else expect(err.payload.message).toBe('tap bug: secret detail');
      const line = await b.waitForLog((l) => l.hook === 'wsMessage');
      expect(line).toMatchObject({ level: 50, plugin: 'frame-guard', hook: 'wsMessage' });
      // A thrown MegaError is still a failure, not a rejection: its code does not reach the client.
      c.send({ type: 'room.say', id: 'x2', payload: { text: 'mega-throw' } });
      expect((await c.ofType('error')).payload.code).toBe('internal');
      // The connection stays usable.
      c.send({ type: 'room.say', id: 'ok', payload: { text: 'fine' } });
      expect((await c.ofType('room.ack')).id).toBe('ok');
      await c.close();
      await b.stop();
    }
  });

  it('sends a returned MegaError as is', async () => {
    const { c } = await start('production');
    c.send({ type: 'room.say', id: 'r1', payload: { text: 'reject' } });
    const err = await c.ofType('error');
    expect(err.payload).toEqual({ code: 'guard.rejected', message: 'returned on purpose' });
    await c.close();
  });
});

/** Sends a raw upgrade request and resolves with the status line's code and the body (if any). */
function rawUpgrade(port: number, head: string): Promise<{ status: number; text: string }> {
  return new Promise((done, fail) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(head));
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      text += chunk;
      // A 101 keeps the socket open: its status line is all this test needs.
      if (/^HTTP\/1\.1 101 /.test(text) && text.includes('\r\n\r\n')) socket.destroy();
    });
    socket.on('close', () => done({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text }));
    socket.on('error', fail);
  });
}

describe('B18 on upgrades: the same Host rules as plain requests', () => {
  const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
  const upgrade = (target: string, hosts: string[]) =>
    `GET ${target} HTTP/1.1\r\n${hosts.map((h) => `Host: ${h}\r\n`).join('')}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`;

  it("B18: an absolute-form upgrade is routed by the target's authority; two Host headers are refused with 400", async () => {
    const dir = writeProject(
      {
        'mega.config.ts': "export default { plugins: ['@mega/http', '@mega/ws'] };\n",
        'apps/web/app.config.ts': "export default { hosts: ['web.localhost'] };\n",
        'apps/admin/app.config.ts': "export default { hosts: ['admin.localhost'] };\n",
        'apps/admin/channel.ts': 'export class Room { onConnect() {} }\n',
        'apps/admin/routes/ws.ts':
          "import { Room } from '../channel.js';\nexport default (router: any) => { router.ws('/room', Room); };\n",
      },
      { prefix: 'mega-ws-b18-' },
    );
    const { port } = await bootProject(dir);
    expect((await rawUpgrade(port, upgrade('/room', ['web.localhost']))).status).toBe(404);
    expect((await rawUpgrade(port, upgrade('/room', ['admin.localhost']))).status).toBe(101);
    expect((await rawUpgrade(port, upgrade('http://admin.localhost/room', ['web.localhost']))).status).toBe(101);
    const twice = await rawUpgrade(port, upgrade('/room', ['admin.localhost', 'admin.localhost']));
    expect([twice.status, JSON.parse(twice.text.slice(twice.text.indexOf('\r\n\r\n') + 4)).error.code]).toEqual([
      400,
      'http.duplicate_host',
    ]);
  });
});
