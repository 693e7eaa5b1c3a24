/** @mega/asp/client against the codec's shared vectors and both codec backends. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCodec } from '@mega/kernel';
import { describe, expect, it } from 'vitest';
import { AspClient, deriveKey, fromBase64Url, importAesKey, sealWith, toBase64Url } from '../src/client.js';

const REPO = join(import.meta.dirname, '../../..');
const V = JSON.parse(readFileSync(join(REPO, 'crates/mega-codec/vectors/asp.json'), 'utf8'));
const hex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');

async function codeOf(p: Promise<unknown>): Promise<string | null> {
  try {
    await p;
    return null;
  } catch (error) {
    return (error as { code?: string }).code ?? 'no code';
  }
}

describe('@mega/asp/client: shared vectors', () => {
  it('derives the same keys (HKDF-SHA256)', async () => {
    for (const k of V.keys) expect(toHex(await deriveKey(hex(k.master), k.sessionId, k.scope))).toBe(k.key);
  });

  it('seals byte for byte like the codec', async () => {
    for (const s of V.seals) {
      if (s.deflate) continue; // the client never seals deflated bodies
      const key = await importAesKey(hex(s.key));
      expect(toHex(await sealWith(key, hex(s.plaintext), s.ns, hex(s.nonce), s.timestamp)), s.name).toBe(s.sealed);
    }
  });

  it('opens sealed frames, including deflated ones', async () => {
    for (const o of V.opens) {
      const c = await AspClient.create(hex(o.key), { role: 'server', now: () => o.now });
      expect(toHex(await c.open(hex(o.sealed), o.ns)), o.name).toBe(o.plaintext);
    }
  });

  it('rejects with the same codes', async () => {
    for (const r of V.rejects) {
      const role = hex(r.sealed)[2] !== undefined && ((hex(r.sealed)[2] as number) & 0x80) === 0 ? 'server' : 'client';
      const c = await AspClient.create(hex(r.key), { role, now: () => r.now });
      expect(await codeOf(c.open(hex(r.sealed), r.ns)), r.name).toBe(r.error);
    }
  });

  it('keeps the same replay cache (capacity, floor, reflection)', async () => {
    const { opener, key, steps } = V.replay;
    let now = 0;
    const c = await AspClient.create(hex(key), {
      role: opener.role,
      windowMs: opener.windowMs,
      replayCapacity: opener.replayCapacity,
      now: () => now,
    });
    for (const [i, step] of steps.entries()) {
      now = step.now;
      expect(await codeOf(c.open(hex(step.sealed), '')), `step ${i}`).toBe(step.error ?? null);
    }
  });

  it('refuses bad input: base64url, frames, keys', async () => {
    expect(() => fromBase64Url('ab+/')).toThrow(expect.objectContaining({ code: 'codec.malformed' }));
    expect(() => fromBase64Url('abcde')).toThrow(expect.objectContaining({ code: 'codec.malformed' }));
    expect(toBase64Url(fromBase64Url('_-8A'))).toBe('_-8A');
    await expect(AspClient.create(new Uint8Array(16))).rejects.toMatchObject({ code: 'codec.invalid_argument' });
    await expect(AspClient.create('not!base64')).rejects.toMatchObject({ code: 'codec.malformed' });
    await expect(deriveKey('short', 's', 'ws')).rejects.toMatchObject({ code: 'codec.invalid_argument' });
    const c = await AspClient.create(new Uint8Array(32));
    await expect(c.openFrame('plain', '/x')).rejects.toMatchObject({ code: 'asp.signal' });
    await expect(c.openFrame('E:!!!!', '/x')).rejects.toMatchObject({ code: 'codec.malformed' });
    await expect(c.openFrame('E:', '/x')).rejects.toMatchObject({ code: 'codec.malformed' });
  });
});

describe.each(['native', 'ts'] as const)('@mega/asp/client <-> %s codec', (mode) => {
  const codec = loadCodec({ mode });
  const master = Buffer.from('a master secret that is long enough to use!!');

  it('derives identical session keys', async () => {
    for (const sid of ['s', 'session-123', '세션-🙂', 'x'.repeat(200)]) {
      for (const scope of ['ws', 'http'] as const) {
        expect(toHex(await deriveKey(master, sid, scope))).toBe(codec.deriveKey(master, sid, scope).toString('hex'));
      }
    }
  });

  it('opens what the server seals (plain and deflated) and the server opens what it seals', async () => {
    const key = codec.deriveKey(master, 'sess', 'ws');
    const client = await AspClient.create(key.toString('base64url'));
    const sealer = codec.createSealer(key, { role: 'server' });
    const opener = codec.createOpener(key, { role: 'server' });
    for (const text of ['', '{"type":"chat.message","payload":{"text":"héllo 😀"}}', 'long '.repeat(5000)]) {
      const plain = Buffer.from(text);
      expect(Buffer.from(await client.open(sealer.seal(plain, '/ws/chat'), '/ws/chat')).toString()).toBe(text);
      expect(Buffer.from(await client.open(sealer.seal(plain, '/ws/chat', true), '/ws/chat')).toString()).toBe(text);
      expect(opener.open(await client.seal(text, '/ws/chat'), '/ws/chat').toString()).toBe(text);
      expect(await client.openFrame(`E:${sealer.seal(plain, '/ws/chat').toString('base64url')}`, '/ws/chat')).toBe(text);
    }
    // The namespace is authenticated; reflection and replays are caught on both sides.
    const sealed = await client.seal('x', '/a');
    expect(() => opener.open(sealed, '/b')).toThrow(expect.objectContaining({ code: 'asp.decrypt' }));
    expect(() => codec.createOpener(key, { role: 'client' }).open(sealed, '/a')).toThrow(expect.objectContaining({ code: 'asp.replay' }));
    const once = sealer.seal(Buffer.from('y'), '/a');
    await client.open(once, '/a');
    expect(await codeOf(client.open(once, '/a'))).toBe('asp.replay');
  });
});
