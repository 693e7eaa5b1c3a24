// Native and TS backends agree: sealed by one, opened by the other (both directions), identical
// bytes for identical nonce/timestamp, deflate streams cross-inflate, and garbage gets the same
// typed error from both.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Codec, createTsCodec, loadCodec } from '../src/index.js';
import { isMegaError } from '../src/types.js';

const CODES = new Set(['codec.malformed', 'codec.too_large', 'codec.closed', 'asp.decrypt', 'asp.drift', 'asp.replay']);

function outcome(f: () => Buffer | object): string {
  try {
    const v = f();
    return Buffer.isBuffer(v) ? `ok:${v.toString('hex')}` : `ok:${JSON.stringify(v)}`;
  } catch (err) {
    if (!isMegaError(err) || !CODES.has(err.code)) throw err;
    return err.code;
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

const ts = createTsCodec();
const native = nativeCodec();
const pairs = (n: Codec): Array<[string, Codec, Codec]> => [
  ['ts->native', ts, n],
  ['native->ts', n, ts],
];
const key32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
const ns = fc.string({ unit: 'binary', maxLength: 24 });
const text = fc.oneof(
  fc.uint8Array({ maxLength: 3000 }),
  fc.json().map((j) => Buffer.from(j)),
);

describe('codec backend equivalence', () => {
  const n = native;

  it('ASP: 10k random frames sealed by one backend open with the other, both directions, same bytes', () => {
    let runs = 0;
    fc.assert(
      fc.property(key32, text, ns, fc.boolean(), fc.nat(0x7fffffff), fc.nat(2 ** 40), (key, plain, space, z, prefix, counter) => {
        runs++;
        const now = () => 1_700_000_000_000;
        const seed = { prefix, counter };
        const a = ts.createSealer(key, { role: 'client', seed, now }).seal(plain, space, z);
        const b = n.createSealer(key, { role: 'client', seed, now }).seal(plain, space, z);
        if (!z) expect(a.equals(b)).toBe(true);
        // a and b share a nonce, so each needs its own opener (one opener would call b a replay).
        for (const [, , opener] of pairs(n)) {
          for (const sealed of [a, b]) {
            expect(opener.createOpener(key, { role: 'server', now }).open(sealed, space).equals(Buffer.from(plain))).toBe(true);
          }
        }
        // Server -> client direction.
        for (const [, sealer, opener] of pairs(n)) {
          const s = sealer.createSealer(key, { role: 'server', now }).seal(plain, space, z);
          expect(opener.createOpener(key, { role: 'client', now }).open(s, space).equals(Buffer.from(plain))).toBe(true);
        }
      }),
      { numRuns: 10_000 },
    );
    expect(runs).toBeGreaterThanOrEqual(10_000);
  }, 90_000);

  it('deflate: stateless and takeover streams cross-inflate to the same plaintext', () => {
    fc.assert(
      fc.property(
        fc.array(text, { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 0, max: 9 }),
        fc.integer({ min: 9, max: 15 }),
        (msgs, level, windowBits) => {
          for (const [, from, to] of pairs(n)) {
            const d = from.createDeflater({ level, windowBits });
            const i = to.createInflater({ windowBits });
            for (const m of msgs) {
              expect(i.inflate(d.deflate(m)).equals(Buffer.from(m))).toBe(true);
              expect(to.inflate(from.deflate(m, { level })).equals(Buffer.from(m))).toBe(true);
            }
          }
        },
      ),
      { numRuns: 1000 },
    );
  }, 60_000);

  it('frames: identical bytes and headers', () => {
    const type = fc.stringMatching(/^[a-z][a-z0-9_]{0,8}(\.[a-z][a-z0-9_]{0,8}){0,3}$/);
    const str = fc.option(fc.string({ unit: 'binary', maxLength: 40 }));
    fc.assert(
      fc.property(type, str, str, fc.json(), (t, space, id, payload) => {
        const p = Buffer.from(payload);
        const a = ts.encodeFrame(t, space, p, id);
        expect(a.equals(n.encodeFrame(t, space, p, id))).toBe(true);
        expect(outcome(() => ts.validateFrame(a))).toBe(outcome(() => n.validateFrame(a)));
        const sf = { kind: 7, type: t, ns: space ?? '', target: id ?? '', payload: p };
        const s = ts.encodeServerFrame(sf);
        expect(s.equals(n.encodeServerFrame(sf))).toBe(true);
        expect(outcome(() => ts.decodeServerFrame(s))).toBe(outcome(() => n.decodeServerFrame(s)));
      }),
      { numRuns: 3000 },
    );
  }, 60_000);

  it('garbage and truncated input: the same typed error (or output) from both backends', () => {
    const key = Buffer.alloc(32, 7);
    const now = () => 1_700_000_000_000;
    const sealed = ts.createSealer(key, { role: 'client', now }).seal(Buffer.from('{"type":"a.b","payload":{"x":[1,2,3]}}'), '/x', true);
    const frame = ts.encodeFrame('chat.msg', '/x', Buffer.from('{"a":[1,"b",{"c":null}]}'), 'id-1');
    const server = ts.encodeServerFrame({ kind: 1, type: 'a.b', ns: '/x', target: 't', origin: 'o', payload: Buffer.from('{}') });
    const z = ts.deflate(Buffer.from('hello hello hello hello'));
    const mutated = (base: Buffer) =>
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
        fc.nat(base.length).map((k) => base.subarray(0, k)),
        fc.tuple(fc.nat(base.length - 1), fc.nat(255)).map(([k, v]) => {
          const c = Buffer.from(base);
          c[k] = v;
          return c;
        }),
      );
    fc.assert(
      fc.property(mutated(sealed), mutated(frame), mutated(server), mutated(z), (s, f, sf, zz) => {
        const open = (c: Codec) => () => c.createOpener(key, { now }).open(s, '/x');
        expect(outcome(open(ts))).toBe(outcome(open(n)));
        expect(outcome(() => ts.open(key, s, '/x', { now: now() }))).toBe(outcome(() => n.open(key, s, '/x', { now: now() })));
        expect(outcome(() => ts.validateFrame(f))).toBe(outcome(() => n.validateFrame(f)));
        expect(outcome(() => ts.decodeServerFrame(sf))).toBe(outcome(() => n.decodeServerFrame(sf)));
        expect(outcome(() => ts.inflate(zz, { maxOutput: 64 }))).toBe(outcome(() => n.inflate(zz, { maxOutput: 64 })));
      }),
      { numRuns: 3000 },
    );
  }, 60_000);

  it('ASP text form: sealText = E: + base64url(seal) byte for byte in both backends; openText crosses backends, then refuses a replay', () => {
    fc.assert(
      fc.property(key32, text, ns, fc.boolean(), fc.nat(0x7fffffff), fc.nat(2 ** 40), (key, plain, space, z, prefix, counter) => {
        const now = () => 1_700_000_000_000;
        const seed = { prefix, counter };
        const sealed = ts.createSealer(key, { role: 'client', seed, now }).seal(plain, space, z);
        const a = ts.createSealer(key, { role: 'client', seed, now }).sealText(plain, space, z);
        const b = n.createSealer(key, { role: 'client', seed, now }).sealText(plain, space, z);
        expect(a.toString('latin1')).toBe(`E:${sealed.toString('base64url')}`);
        if (!z) expect(b.equals(a)).toBe(true);
        // Deflated: the two zlibs may differ, the 22-byte header (its first 29 characters) may not.
        else expect(b.subarray(0, 2 + 29).equals(a.subarray(0, 2 + 29))).toBe(true);
        for (const [, , opener] of pairs(n)) {
          for (const t of [a, b]) {
            const o = opener.createOpener(key, { role: 'server', now });
            expect(o.openText(t, space).equals(Buffer.from(plain))).toBe(true);
            expect(outcome(() => o.openText(t, space))).toBe('asp.replay');
            // The text form and the binary form share one replay cache.
            expect(outcome(() => o.open(Buffer.from(t.toString('latin1', 2), 'base64url'), space))).toBe('asp.replay');
          }
        }
        // Server -> client direction, text sealed by one backend, opened by the other.
        for (const [, sealer, opener] of pairs(n)) {
          const t = sealer.createSealer(key, { role: 'server', now }).sealText(plain, space, z);
          expect(opener.createOpener(key, { role: 'client', now }).openText(t, space).equals(Buffer.from(plain))).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  }, 60_000);

  it('ASP text form: missing prefix, malformed base64url, wrong lengths and mutated texts fail alike in both backends (code and message)', () => {
    const key = Buffer.alloc(32, 9);
    const now = () => 1_700_000_000_000;
    const full = (f: () => Buffer): string => {
      try {
        return `ok:${f().toString('hex')}`;
      } catch (err) {
        if (!isMegaError(err)) throw err;
        return `${err.code}: ${err.message}`;
      }
    };
    const both = (t: Uint8Array): string => {
      const [a, b] = [ts, n].map((c) => full(() => c.createOpener(key, { now }).openText(t, '/x')));
      expect(b, Buffer.from(t).toString('latin1')).toBe(a);
      return a as string;
    };
    const good = ts.createSealer(key, { role: 'client', now }).sealText(Buffer.from('{"type":"a.b","payload":1}'), '/x');
    const zgood = ts.createSealer(key, { role: 'client', now }).sealText(Buffer.from('{"type":"a.b","payload":2}'), '/x', true);
    expect(both(good)).toBe(`ok:${Buffer.from('{"type":"a.b","payload":1}').toString('hex')}`);
    expect(both(zgood)).toBe(`ok:${Buffer.from('{"type":"a.b","payload":2}').toString('hex')}`);
    const cases: Array<[string, string]> = [
      ['', 'codec.malformed: ASP text must start with E:'],
      ['E', 'codec.malformed: ASP text must start with E:'],
      [`e:${good.toString('latin1', 2)}`, 'codec.malformed: ASP text must start with E:'],
      [good.toString('latin1', 2), 'codec.malformed: ASP text must start with E:'],
      ['E:', 'codec.malformed: sealed frame is truncated'],
      ['E:AAAA', 'codec.malformed: sealed frame is truncated'],
      [`${good.toString('latin1')}A`.slice(0, 2 + 4 * Math.floor((good.length - 2) / 4) + 1), 'codec.malformed: E: frame is not base64url'],
      [`${good.toString('latin1')}==`, 'codec.malformed: E: frame is not base64url'],
      [`${good.toString('latin1', 0, 10)} ${good.toString('latin1', 11)}`, 'codec.malformed: E: frame is not base64url'],
      [good.toString('latin1').slice(0, -4), 'asp.decrypt: ASP authentication failed'],
    ];
    for (const [t, want] of cases) expect(both(Buffer.from(t, 'latin1')), t).toBe(want);
    // Standard (padded) base64 of the same bytes: refused for its '+', '/' or '=' characters.
    for (const len of [1, 2, 3, 20, 21, 22]) {
      const raw = Buffer.alloc(38 + len, 0xfb);
      expect(both(Buffer.from(`E:${raw.toString('base64')}`)), `${len}`).toBe('codec.malformed: E: frame is not base64url');
    }
    // A byte >= 0x80 inside the text (not a latin1 letter either backend accepts).
    const high = Buffer.from(good);
    high[12] = 0xc1;
    expect(both(high)).toBe('codec.malformed: E: frame is not base64url');
    const mutated = fc.oneof(
      fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.concat([Buffer.from('E:'), b])),
      fc.nat(good.length).map((k) => good.subarray(0, k)),
      fc.tuple(fc.nat(good.length - 1), fc.nat(255)).map(([k, v]) => {
        const c = Buffer.from(good);
        c[k] = v;
        return c;
      }),
      fc.tuple(fc.nat(zgood.length - 1), fc.constantFrom(...'AZaz09-_+/=. '.split('').map((ch) => ch.charCodeAt(0)))).map(([k, v]) => {
        const c = Buffer.from(zgood);
        c[k] = v;
        return c;
      }),
    );
    fc.assert(
      fc.property(mutated, (t) => void both(t)),
      { numRuns: 3000 },
    );
  }, 60_000);

  it('long namespaces cross the addon boundary intact (multi-byte characters at the buffer edge)', () => {
    const key = Buffer.alloc(32, 3);
    const now = () => 1_700_000_000_000;
    for (let pad = 248; pad <= 258; pad++) {
      const space = `${'a'.repeat(pad)}é🙂${'b'.repeat(300)}`;
      const seed = { prefix: 1, counter: pad };
      const a = ts.createSealer(key, { seed, now }).seal(Buffer.from('x'), space);
      expect(n.createSealer(key, { seed, now }).seal(Buffer.from('x'), space).equals(a)).toBe(true);
      expect(n.createOpener(key, { role: 'client', now }).open(a, space).toString()).toBe('x');
      expect(n.encodeFrame('a', space, Buffer.from('1')).equals(ts.encodeFrame('a', space, Buffer.from('1')))).toBe(true);
    }
  });

  it('A5: close() releases a deflater/inflater: later use throws codec.closed (both backends), close is idempotent', () => {
    for (const c of [ts, n]) {
      const d = c.createDeflater();
      const i = c.createInflater();
      expect(i.inflate(d.deflate(Buffer.from('hello'))).toString()).toBe('hello');
      d.close();
      i.close();
      d.close();
      i.close();
      expect(
        outcome(() => d.deflate(Buffer.from('x'))),
        c.backend,
      ).toBe('codec.closed');
      expect(
        outcome(() => i.inflate(Buffer.from([0]))),
        c.backend,
      ).toBe('codec.closed');
    }
  });

  it('A5: native (de)compression state is reported to V8 on create and given back on close', () => {
    // The addon counts what it reports through napi_adjust_external_memory (Node does not expose
    // that counter): zlib's documented footprint, for window 15 about 262 KB per deflater, 39 KB per inflater.
    const addon = createRequire(import.meta.url)(
      fileURLToPath(new URL(`../native/mega-codec.${process.platform}-${process.arch}-gnu.node`, import.meta.url)),
    ) as { heldBytes(): number };
    const base = addon.heldBytes();
    const streams = Array.from({ length: 40 }, () => [n.createDeflater(), n.createInflater()] as const);
    expect(addon.heldBytes() - base).toBeGreaterThan(40 * (256 + 32) * 1024);
    for (const [d, i] of streams) {
      d.close();
      i.close();
      i.close();
    }
    expect(addon.heldBytes()).toBe(base);
  });

  it('raw text calls of the addon: an unknown slot or a wrong argument throws codec.invalid_argument', () => {
    const addon = createRequire(import.meta.url)(
      fileURLToPath(new URL(`../native/mega-codec.${process.platform}-${process.arch}-gnu.node`, import.meta.url)),
    ) as {
      sealText(...a: unknown[]): number;
      openText(...a: unknown[]): number;
      Opener: new (...a: unknown[]) => { slot: number };
    };
    const out = Buffer.alloc(256);
    const codeOf = (f: () => unknown) => {
      try {
        f();
        return 'no error';
      } catch (err) {
        return (err as { code?: string }).code;
      }
    };
    const opener = new addon.Opener(Buffer.alloc(32, 1), true, 60_000, 16, 1 << 20);
    expect(codeOf(() => addon.openText(2 ** 31, Buffer.from('E:AAAA'), '/x', 1, out))).toBe('codec.invalid_argument');
    expect(codeOf(() => addon.openText(opener.slot, Buffer.from('E:AAAA'), '/x', -1, out))).toBe('codec.invalid_argument');
    expect(codeOf(() => addon.openText(opener.slot, 'E:AAAA', '/x', 1, out))).toBe('codec.invalid_argument');
    expect(codeOf(() => addon.openText(opener.slot, Buffer.from('E:AAAA')))).toBe('codec.invalid_argument');
    expect(codeOf(() => addon.openText(opener.slot, Buffer.from('E:AAAA'), '/x', 1, out))).toBe('codec.malformed');
    expect(codeOf(() => addon.sealText(2 ** 31, Buffer.from('x'), '/x', 1, false, out))).toBe('codec.invalid_argument');
  });

  it('native sealers and openers keep their slots while in use: collected ones never hand a live one another key', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const now = () => 1_700_000_000_000;
    const keys = Array.from({ length: 50 }, (_, i) => Buffer.alloc(32, i + 1));
    // Only the bound methods are kept; the objects holding them become garbage.
    const seals = keys.map((k) => n.createSealer(k, { role: 'client', now }).sealText);
    const opens = keys.map((k) => n.createOpener(k, { role: 'server', now }).openText);
    const addon = createRequire(import.meta.url)(
      fileURLToPath(new URL(`../native/mega-codec.${process.platform}-${process.arch}-gnu.node`, import.meta.url)),
    ) as { Opener: new (...a: unknown[]) => { slot: number } };
    const slotNow = () => new addon.Opener(Buffer.alloc(32, 98), true, 60_000, 16, 1 << 20).slot;
    const before = slotNow();
    for (let round = 0; round < 3; round++) {
      // Garbage that takes slots, to be reused once collected.
      for (let i = 0; i < 200; i++) [n.createOpener(Buffer.alloc(32, 99), { now }), n.createSealer(Buffer.alloc(32, 99), { now })];
      gc();
      await new Promise((r) => setImmediate(r)); // finalizers run after the collection
      keys.forEach((k, i) => {
        const t = (seals[i] as (p: Uint8Array, ns: string) => Buffer)(Buffer.from(`m${i}`), '/s');
        expect(ts.createOpener(k, { role: 'server', now }).openText(t, '/s').toString()).toBe(`m${i}`);
        const back = ts.createSealer(k, { role: 'client', now }).sealText(Buffer.from(`r${i}`), '/s');
        expect((opens[i] as (t: Uint8Array, ns: string) => Buffer)(back, '/s').toString()).toBe(`r${i}`);
      });
    }
    // Collected wrappers gave their slots back (600 garbage openers were made), so the test above
    // did run with recycled slots.
    expect(slotNow()).toBeLessThan(before + 300);
  });

  it('a stateful inflater is closed after a failure, in both backends', () => {
    for (const c of [ts, n]) {
      const i = c.createInflater({ maxOutput: 10 });
      expect(outcome(() => i.inflate(c.deflate(Buffer.alloc(100))))).toBe('codec.too_large');
      expect(outcome(() => i.inflate(c.deflate(Buffer.alloc(1))))).toBe('codec.closed');
    }
  });
});
