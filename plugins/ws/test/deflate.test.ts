import { constants, inflateRawSync } from 'node:zlib';
import { loadCodec } from '@mega/kernel';
import { bootProject, stopAll } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { COMPRESSION_DEFAULTS, negotiateDeflate } from '../src/deflate.js';
import { parseExtensions } from '../src/handshake.js';
import { Client, project, RawClient } from './support.js';

afterEach(async () => {
  await stopAll();
  delete process.env.MEGA_CODEC;
});

const CHANNEL = `
export class Echo {
  ['echo.send'](sock: any, msg: any) { sock.send({ type: 'echo.reply', id: msg.id, payload: msg.payload }); }
  ['echo.big'](sock: any, msg: any) { sock.send({ type: 'echo.big', payload: { text: 'abc '.repeat(msg.payload.n) } }); }
}
`;
const ROUTES = `
import { Echo } from '../channel.js';
export default (router: any) => {
  router.ws('/z', Echo, { compression: true, maxPayload: 256 * 1024 });
  router.ws('/z-nctx', Echo, { compression: { serverNoContextTakeover: true, clientNoContextTakeover: true, level: 1 } });
  router.ws('/z-one', Echo, { compression: { maxContexts: 1 } });
  router.ws('/plain', Echo);
};
`;

async function start(backend: 'ts' | 'native') {
  process.env.MEGA_CODEC = backend;
  const b = await bootProject(project({ 'channel.ts': CHANNEL, 'routes/ws.ts': ROUTES }));
  expect(b.kernel.codec.backend).toBe(backend);
  return b;
}

/** Texts that compress well, repeat across messages (context takeover pays) and vary in size. */
function texts(): string[] {
  const out: string[] = [];
  for (let i = 0; i < 40; i++) out.push(`${'lorem ipsum dolor sit amet '.repeat(10 + ((i * 37) % 200))}#${i} ${'ü€😀'.repeat(i % 5)}`);
  out.push('tiny', '', 'x'.repeat(1023), 'y'.repeat(1024));
  return out;
}

describe.each(['native', 'ts'] as const)('permessage-deflate with the %s codec', (backend) => {
  it('interoperates with the ws client in both directions, with context takeover', async () => {
    const b = await start(backend);
    const c = await Client.open(b.url('/z', 'ws'), { perMessageDeflate: { threshold: 0 } });
    expect(c.headers['sec-websocket-extensions']).toBe('permessage-deflate');
    const all = texts();
    for (const [i, text] of all.entries()) c.send({ type: 'echo.send', id: `m${i}`, payload: { text } });
    for (let i = 0; i < all.length; i++) {
      const m = await c.ofType('echo.reply');
      expect(m.id).toBe(`m${i}`);
      expect(m.payload.text).toBe(all[i]);
    }
    c.send({ type: 'echo.big', payload: { n: 50_000 } });
    expect((await c.ofType('echo.big')).payload.text.length).toBe(200_000);
    expect(b.kernel.use('ws').compressionContexts).toBe(1);
    await c.close();
    await new Promise((r) => setTimeout(r, 20));
    expect(b.kernel.use('ws').compressionContexts).toBe(0);
  });

  it('honours no_context_takeover from either side and server_max_window_bits', async () => {
    const b = await start(backend);
    const offered = await Client.open(b.url('/z', 'ws'), {
      perMessageDeflate: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, threshold: 0 },
    });
    expect(offered.headers['sec-websocket-extensions']).toBe(
      'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10',
    );
    const forced = await Client.open(b.url('/z-nctx', 'ws'), { perMessageDeflate: { threshold: 0 } });
    expect(forced.headers['sec-websocket-extensions']).toBe('permessage-deflate; server_no_context_takeover; client_no_context_takeover');
    for (const c of [offered, forced]) {
      const all = texts();
      for (const [i, text] of all.entries()) c.send({ type: 'echo.send', id: `m${i}`, payload: { text } });
      for (let i = 0; i < all.length; i++) expect((await c.ofType('echo.reply')).payload.text).toBe(all[i]);
    }
    expect(b.kernel.use('ws').compressionContexts).toBe(0);
    await offered.close();
    await forced.close();
  });

  it('bounds per-connection contexts: past maxContexts a connection is stateless', async () => {
    const b = await start(backend);
    const first = await Client.open(b.url('/z-one', 'ws'), { perMessageDeflate: true });
    const second = await Client.open(b.url('/z-one', 'ws'), { perMessageDeflate: true });
    expect(first.headers['sec-websocket-extensions']).toBe('permessage-deflate');
    expect(second.headers['sec-websocket-extensions']).toBe('permessage-deflate; server_no_context_takeover; client_no_context_takeover');
    second.send({ type: 'echo.send', payload: { text: 'q'.repeat(5000) } });
    expect((await second.ofType('echo.reply')).payload.text).toBe('q'.repeat(5000));
    await first.close();
    await second.close();
  });

  it('sends small messages uncompressed (threshold 1 KiB) and large ones with RSV1', async () => {
    const b = await start(backend);
    const raw = await RawClient.open(b.port, '/z', { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_no_context_takeover' });
    expect(raw.response).toMatch(/Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover/);
    raw.frame(1, JSON.stringify({ type: 'echo.send', payload: { text: 'short' } }));
    const small = await raw.nextFrame((f) => f.opcode === 1);
    expect(small.rsv1).toBe(false);
    expect(JSON.parse(small.payload.toString()).payload.text).toBe('short');
    raw.frame(1, JSON.stringify({ type: 'echo.big', payload: { n: 1000 } }));
    const big = await raw.nextFrame((f) => f.opcode === 1);
    expect(big.rsv1).toBe(true);
    expect(big.payload.length).toBeLessThan(400);
    const inflated = inflateRawSync(Buffer.concat([big.payload, Buffer.from([0, 0, 0xff, 0xff])]), { finishFlush: constants.Z_SYNC_FLUSH });
    expect(JSON.parse(inflated.toString()).payload.text).toBe('abc '.repeat(1000));
    // A compressed inbound frame (client context not kept, so each message stands alone).
    const codec = loadCodec({ mode: backend });
    raw.frame(1, codec.deflate(Buffer.from(JSON.stringify({ type: 'echo.send', id: 'z', payload: { text: 'zipped' } }))), { rsv: 4 });
    expect(JSON.parse((await raw.nextFrame((f) => f.opcode === 1)).payload.toString()).id).toBe('z');
    // Garbage with RSV1: 1007. A zip bomb past maxPayload: 1009.
    raw.frame(1, Buffer.from([0xff, 0xff, 0xff, 0xff]), { rsv: 4 });
    expect(await raw.closeCode()).toBe(1007);
    // The shared stateless inflater that saw the garbage is replaced: other connections still inflate.
    const next = await RawClient.open(b.port, '/z', { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_no_context_takeover' });
    next.frame(1, codec.deflate(Buffer.from(JSON.stringify({ type: 'echo.send', id: 'after', payload: { text: 'ok' } }))), { rsv: 4 });
    expect(JSON.parse((await next.nextFrame((f) => f.opcode === 1)).payload.toString()).id).toBe('after');
    await next.close();
    const bomb = await RawClient.open(b.port, '/z', { 'Sec-WebSocket-Extensions': 'permessage-deflate' });
    bomb.frame(1, codec.deflate(Buffer.alloc(2 * 1024 * 1024, 0x20)), { rsv: 4 });
    expect(await bomb.closeCode()).toBe(1009);
    await Promise.all([raw.ended, bomb.ended]);
  });

  it('ignores the extension on routes without compression, and declines invalid offers', async () => {
    const b = await start(backend);
    const plain = await Client.open(b.url('/plain', 'ws'), { perMessageDeflate: true });
    expect(plain.headers['sec-websocket-extensions']).toBeUndefined();
    plain.send({ type: 'echo.send', payload: { text: 'p'.repeat(3000) } });
    expect((await plain.ofType('echo.reply')).payload.text.length).toBe(3000);
    await plain.close();
    const odd = await RawClient.open(b.port, '/z', { 'Sec-WebSocket-Extensions': 'permessage-deflate; server_max_window_bits=8, x-other' });
    expect(odd.response).not.toMatch(/Sec-WebSocket-Extensions/i);
    await odd.close();
  });
});

describe('permessage-deflate negotiation (bad input)', () => {
  const opts = COMPRESSION_DEFAULTS;
  const pick = (header: string, stateful = true) => negotiateDeflate(parseExtensions(header), opts, stateful)?.header ?? null;
  it('parses offers and picks the first acceptable one', () => {
    expect(pick('permessage-deflate')).toBe('permessage-deflate');
    expect(pick('permessage-deflate; client_max_window_bits')).toBe('permessage-deflate');
    expect(pick('permessage-deflate; client_max_window_bits="12"')).toBe('permessage-deflate');
    expect(pick('x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=12')).toBe(
      'permessage-deflate; server_max_window_bits=12',
    );
    expect(pick('permessage-deflate; server_max_window_bits=8, permessage-deflate')).toBe('permessage-deflate');
    expect(pick('permessage-deflate', false)).toBe('permessage-deflate; server_no_context_takeover; client_no_context_takeover');
  });
  it('declines offers with unknown, duplicate or invalid parameters', () => {
    for (const h of [
      'permessage-deflate; foo',
      'permessage-deflate; server_no_context_takeover; server_no_context_takeover',
      'permessage-deflate; server_max_window_bits',
      'permessage-deflate; server_max_window_bits=16',
      'permessage-deflate; server_max_window_bits=09',
      'permessage-deflate; client_max_window_bits=7',
      'permessage-deflate; server_no_context_takeover=1',
      'deflate-stream',
    ]) {
      expect(pick(h), h).toBeNull();
    }
  });
  it('rejects malformed headers with ws.bad_extensions', () => {
    for (const h of [
      ';',
      'permessage-deflate;',
      'permessage-deflate; a="unterminated',
      'a,,b',
      'permessage-deflate; x="sp ace"',
      'a b',
      `${'a,'.repeat(3000)}a`,
    ]) {
      expect(() => parseExtensions(h), h).toThrow(expect.objectContaining({ code: 'ws.bad_extensions', status: 400 }));
    }
  });
});
