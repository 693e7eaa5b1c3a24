import { bootProject, stopAll } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { Client, project, refused } from './support.js';

afterEach(stopAll);

const CHANNEL = `
import { MegaError, ForbiddenError } from '@mega/kernel';
export const events: string[] = [];
export class EchoChannel {
  count = 0;
  async onConnect(sock: any, ctx: any) {
    events.push('connect:' + ctx.id);
    sock.send({ type: 'hello', payload: { id: sock.id, auth: ctx.auth ?? null, version: sock.protocolVersion } });
  }
  onDisconnect(sock: any, _ctx: any, info: any) { events.push('disconnect:' + info.code); }
  ['echo.send'](sock: any, msg: any) { this.count++; sock.send({ type: 'echo.reply', id: msg.id, payload: { ...msg.payload, n: this.count } }); }
  ['echo.fail'](_sock: any, msg: any) { throw new ForbiddenError('echo.denied', 'not allowed: ' + msg.payload?.why); }
  async ['echo.crash']() { throw new Error('boom'); }
  helper() { return 'never dispatched'; }
}
`;

const ROUTES = `
import { EchoChannel } from '../channel.js';
export default (router: any) => {
  router.ws('/ws/echo', EchoChannel, {
    schemas: { 'echo.send': { type: 'object', required: ['text'], properties: { text: { type: 'string', maxLength: 10 } } } },
  });
};
`;

async function start(files: Record<string, string> = {}) {
  const b = await bootProject(project({ 'channel.ts': CHANNEL, 'routes/ws.ts': ROUTES, ...files }));
  return b;
}

describe('@mega/ws channels', () => {
  it('runs onConnect, dispatches by type with one instance per connection, and echoes ids', async () => {
    const b = await start();
    const a = await Client.open(b.url('/ws/echo', 'ws'));
    const c = await Client.open(b.url('/ws/echo', 'ws'));
    const hello = await a.ofType('hello');
    expect(hello.payload).toMatchObject({ auth: null, version: 1 });
    a.send({ type: 'echo.send', id: 'a1', payload: { text: 'hi' } });
    a.send({ type: 'echo.send', id: 'a2', payload: { text: 'again' } });
    c.send({ type: 'echo.send', id: 'c1', payload: { text: 'yo' } });
    expect(await a.ofType('echo.reply')).toEqual({ type: 'echo.reply', id: 'a1', payload: { text: 'hi', n: 1 } });
    expect(await a.ofType('echo.reply')).toEqual({ type: 'echo.reply', id: 'a2', payload: { text: 'again', n: 2 } });
    expect(await c.ofType('echo.reply')).toEqual({ type: 'echo.reply', id: 'c1', payload: { text: 'yo', n: 1 } });
    expect(b.kernel.use('ws').size).toBe(2);
    expect(await a.close()).toMatchObject({ code: 1005 });
    await c.close();
  });

  it('answers bad frames with error envelopes and keeps the connection open', async () => {
    const b = await start();
    const a = await Client.open(b.url('/ws/echo', 'ws'));
    await a.ofType('hello');
    const cases: Array<[unknown, string, string | undefined]> = [
      ['not json at all', 'ws.invalid_envelope', undefined],
      ['{"type":"echo.send","payload":{"text":"x"},"extra":1}', 'ws.invalid_envelope', undefined],
      ['{"type":"Echo Send"}', 'ws.invalid_envelope', undefined],
      ['[1,2,3]', 'ws.invalid_envelope', undefined],
      ['{"payload":{}}', 'ws.invalid_envelope', undefined],
      [{ type: 'nope.nothing', id: 'u1' }, 'ws.unknown_type', 'u1'],
      [{ type: 'helper', id: 'u2' }, 'ws.unknown_type', 'u2'],
      [{ type: 'constructor', id: 'u3' }, 'ws.unknown_type', 'u3'],
      [{ type: 'echo.send', id: 's1', payload: { text: 'far too long for the schema' } }, 'ws.schema', 's1'],
      [{ type: 'echo.send', id: 's2' }, 'ws.schema', 's2'],
      [{ type: 'echo.fail', id: 'f1', payload: { why: 'test' } }, 'echo.denied', 'f1'],
      [{ type: 'echo.crash', id: 'x1' }, 'internal', 'x1'],
    ];
    for (const [frame, code, id] of cases) {
      a.send(frame);
      const err = await a.ofType('error');
      expect(err.payload.code, JSON.stringify(frame)).toBe(code);
      expect(typeof err.payload.message).toBe('string');
      if (id) expect(err.id).toBe(id);
      else expect(err.id ?? null).toBeNull();
    }
    a.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    expect((await a.ofType('error')).payload.code).toBe('ws.invalid_envelope');
    a.send({ type: 'echo.send', id: 'ok', payload: { text: 'still' } });
    expect((await a.ofType('echo.reply')).id).toBe('ok');
    a.send({ type: 'echo.send', id: 's3', payload: { text: 5 } });
    const schemaErr = await a.ofType('error');
    expect(schemaErr.payload.details[0]).toMatchObject({ path: '/text' });
    await a.close();
  });

  it('negotiates mega.v<N>: highest shared version, none means v1, unknown-only is refused', async () => {
    const b = await start();
    const v = await Client.open(b.url('/ws/echo', 'ws'), { protocols: ['mega.v3', 'mega.v1', 'chat'] });
    expect(v.ws.protocol).toBe('mega.v1');
    expect((await v.ofType('hello')).payload.version).toBe(1);
    await v.close();
    const none = await Client.open(b.url('/ws/echo', 'ws'));
    expect(none.ws.protocol).toBe('');
    await none.close();
    const bad = await refused(b.url('/ws/echo', 'ws'), { protocols: ['mega.v9', 'graphql-ws'] });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('ws.protocol_unsupported');
    const missing = await refused(b.url('/ws/nowhere', 'ws'));
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('ws.not_found');
  });
});
