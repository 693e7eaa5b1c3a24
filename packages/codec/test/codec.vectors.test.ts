// Both codec backends against the shared vectors in crates/mega-codec/vectors (cargo test checks
// the Rust crate against the same files).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type Codec, createTsCodec, loadCodec } from '../src/index.js';
import { isMegaError } from '../src/types.js';

const load = (name: string): any =>
  JSON.parse(readFileSync(new URL(`../../../crates/mega-codec/vectors/${name}`, import.meta.url), 'utf8'));
const hex = (s: string) => Buffer.from(s, 'hex');
const asp = load('asp.json');
const deflate = load('deflate.json');
const frames = load('frames.json');

function outcome(f: () => unknown): { error: string | null; value?: unknown } {
  try {
    return { error: null, value: f() };
  } catch (err) {
    if (!isMegaError(err)) throw err;
    return { error: err.code };
  }
}

/** The addon is part of the build (npm run build:native); its absence fails these suites. */
function nativeCodec(): Codec {
  try {
    return loadCodec({ mode: 'native', routing: false });
  } catch (err) {
    throw new Error('native codec addon missing: run npm run build:native (scripts/test.sh does)', { cause: err });
  }
}

const backends: Array<[string, Codec]> = [
  ['ts', createTsCodec()],
  ['native', nativeCodec()],
];

for (const [name, codec] of backends) {
  describe(`codec vectors (${name})`, () => {
    const c = codec;

    it('derives keys with HKDF-SHA256', () => {
      for (const k of asp.keys) expect(c.deriveKey(hex(k.master), k.sessionId, k.scope).toString('hex')).toBe(k.key);
    });

    it('seals to the exact bytes and opens them', () => {
      for (const v of asp.seals) {
        const sealed = c.seal(hex(v.key), hex(v.plaintext), v.ns, { nonce: hex(v.nonce), timestamp: v.timestamp });
        expect(sealed.toString('hex'), v.name).toBe(v.sealed);
        expect(c.open(hex(v.key), sealed, v.ns, { now: v.timestamp }).toString('hex')).toBe(v.plaintext);
      }
      for (const v of asp.opens) expect(c.open(hex(v.key), hex(v.sealed), v.ns, { now: v.now }).toString('hex')).toBe(v.plaintext);
    });

    it('rejects with the typed codes', () => {
      for (const v of asp.rejects)
        expect(outcome(() => c.open(hex(v.key), hex(v.sealed), v.ns, { now: v.now })).error, v.name).toBe(v.error);
    });

    it('opener: replay, reflection and the eviction floor', () => {
      let now = 0;
      const o = asp.replay.opener;
      const opener = c.createOpener(hex(asp.replay.key), { ...o, now: () => now });
      asp.replay.steps.forEach((s: { sealed: string; now: number; error: string | null }, i: number) => {
        now = s.now;
        expect(outcome(() => opener.open(hex(s.sealed), '')).error, `step ${i}`).toBe(s.error);
      });
    });

    it('opener, text form (E: + base64url): the same replay, reflection and floor outcomes', () => {
      let now = 0;
      const o = asp.replay.opener;
      const opener = c.createOpener(hex(asp.replay.key), { ...o, now: () => now });
      asp.replay.steps.forEach((s: { sealed: string; now: number; error: string | null }, i: number) => {
        now = s.now;
        const text = Buffer.from(`E:${hex(s.sealed).toString('base64url')}`, 'latin1');
        expect(outcome(() => opener.openText(text, '')).error, `step ${i}`).toBe(s.error);
      });
    });

    it('sealText writes E: + base64url of the vector bytes', () => {
      for (const v of asp.seals) {
        // The sealer draws its nonce from its seed: prefix and counter of the vector's nonce.
        const nonce = hex(v.nonce);
        const seed = { prefix: nonce.readUInt32BE(0) & 0x7fffffff, counter: Number(nonce.readBigUInt64BE(4)) };
        const role = (nonce.readUInt8(0) & 0x80) !== 0 ? 'server' : 'client';
        const t = c.createSealer(hex(v.key), { role, seed, now: () => v.timestamp }).sealText(hex(v.plaintext), v.ns);
        expect(t.toString('latin1'), v.name).toBe(`E:${hex(v.sealed).toString('base64url')}`);
      }
    });

    it('sealer nonces follow the documented layout', () => {
      const key = hex(asp.keys[0].key);
      const s = c.createSealer(key, { role: 'server', seed: { prefix: 0xffffffff, counter: 41 }, now: () => 5 });
      const a = s.seal(Buffer.from('x'), '/n');
      const b = s.seal(Buffer.from('x'), '/n');
      expect(a.subarray(2, 14).toString('hex')).toBe('ffffffff0000000000000029');
      expect(b.subarray(2, 14).toString('hex')).toBe('ffffffff000000000000002a');
      const client = c.createSealer(key, { role: 'client', seed: { prefix: 0xffffffff, counter: 0 } });
      expect(client.seal(Buffer.from('x'), '/n')[2]).toBe(0x7f);
    });

    it('inflates node:zlib output, stateless and with context takeover', () => {
      for (const v of deflate.stateless) expect(c.inflate(hex(v.compressed)).toString('hex')).toBe(v.plaintext);
      const inf = c.createInflater();
      for (const v of deflate.takeover) expect(inf.inflate(hex(v.compressed)).toString('hex')).toBe(v.plaintext);
      for (const v of deflate.limits) expect(outcome(() => c.inflate(hex(v.compressed), { maxOutput: v.maxOutput })).error).toBe(v.error);
    });

    it('encodes envelopes', () => {
      for (const v of frames.encode) {
        const r = outcome(() => c.encodeFrame(v.type, v.ns, Buffer.from(v.payload), v.id).toString());
        if (v.error) expect(r.error, v.type).toBe(v.error);
        else expect(r.value).toBe(v.frame);
      }
    });

    it('validates inbound envelopes', () => {
      for (const v of frames.validate) {
        const bytes = v.frameHex ? hex(v.frameHex) : Buffer.from(v.frame);
        const r = outcome(() => c.validateFrame(bytes));
        if (v.error) expect(r.error, v.frame ?? v.frameHex).toBe(v.error);
        else expect({ ...(r.value as object) }, v.frame ?? v.frameHex).toEqual(v.header);
      }
    });

    it('encodes and decodes server frames', () => {
      for (const v of frames.server) {
        const bytes = c.encodeServerFrame({ ...v, payload: hex(v.payload) });
        expect(bytes.toString('hex')).toBe(v.bytes);
        const d = c.decodeServerFrame(bytes);
        expect({ ...d }).toMatchObject({ kind: v.kind, type: v.type, ns: v.ns, target: v.target, origin: v.origin });
        expect(bytes.subarray(d.payloadOffset, d.payloadOffset + d.payloadLength).toString('hex')).toBe(v.payload);
      }
      for (const h of frames.serverDecodeErrors) expect(outcome(() => c.decodeServerFrame(hex(h))).error, h).toBe('codec.malformed');
      for (const v of frames.serverEncodeErrors) {
        const f = { kind: v.kind, type: v.type, ns: v.nsRepeat ? 'n'.repeat(v.nsRepeat) : '', payload: Buffer.alloc(0) };
        expect(outcome(() => c.encodeServerFrame(f)).error).toBe('codec.invalid_argument');
      }
    });
  });
}
