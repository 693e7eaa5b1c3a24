/**
 * TS backend on node:crypto + node:zlib: the fallback when the addon is absent and the reference the
 * native backend is tested against. Same bytes (deflate output aside, see FORMAT.md), same checks
 * in the same order, same error codes.
 */
import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, type KeyObject, randomBytes } from 'node:crypto';
import { constants, deflateRawSync, inflateRawSync } from 'node:zlib';
import type * as T from './types.js';
import { codecError, DEFAULTS, safeInt } from './types.js';

export const OVERHEAD = 38;
const B64URL = /^[A-Za-z0-9_-]*$/;
const SERVER_BIT = 0x80;
const TAIL = Buffer.from([0, 0, 0xff, 0xff]);
const EMPTY: Buffer = Buffer.alloc(0);
const TYPE_RE = /^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*$/;
const SYNC = constants.Z_SYNC_FLUSH;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const invalid = (m: string) => codecError('codec.invalid_argument', m);
const malformed = (m: string) => codecError('codec.malformed', m);
export const view = (u: Uint8Array): Buffer => (Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength));
const wellFormed = (s: string): string => (s as string & { toWellFormed(): string }).toWellFormed();
const validType = (t: string): boolean => t.length <= 128 && TYPE_RE.test(t);
export const maxOut = (v?: number) => safeInt(v ?? DEFAULTS.maxOutput, 'maxOutput', 1);

export function checkLevel(level: number): number {
  if (!Number.isInteger(level) || level < 0 || level > 9) throw invalid('deflate level must be 0..9');
  return level;
}
/** zlib silently turns a raw window of 8 into 9; both backends refuse it instead. */
export function checkWindowBits(bits: number): number {
  if (!Number.isInteger(bits) || bits < 9 || bits > 15) throw invalid('windowBits must be 9..15');
  return bits;
}
function asKey(key: Uint8Array): KeyObject {
  if (key.length !== 32) throw invalid('ASP key must be 32 bytes');
  return createSecretKey(key);
}
function writeU64(b: Buffer, off: number, v: number): void {
  b.writeUInt32BE(Math.floor(v / 2 ** 32), off);
  b.writeUInt32BE(v >>> 0, off + 4);
}
/** AAD = version | flags | timestamp | namespace, taken from the sealed header itself. */
function aadOf(sealed: Buffer, ns: string): Buffer {
  const a = Buffer.allocUnsafe(10 + Buffer.byteLength(ns));
  sealed.copy(a, 0, 0, 2);
  sealed.copy(a, 2, 14, 22);
  a.write(ns, 10, 'utf8');
  return a;
}

function sealRaw(key: KeyObject, nonce: Uint8Array, ts: number, flags: number, ns: string, body: Uint8Array): Buffer {
  if (nonce.length !== 12) throw invalid('nonce must be 12 bytes');
  const out = Buffer.allocUnsafe(OVERHEAD + body.length);
  out[0] = 1;
  out[1] = flags;
  out.set(nonce, 2);
  writeU64(out, 14, safeInt(ts, 'timestamp'));
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aadOf(out, ns));
  out.set(c.update(body), 22);
  c.final();
  out.set(c.getAuthTag(), 22 + body.length);
  return out;
}

/** Length, version and flags checks. */
function checkSealed(sealed: Uint8Array): Buffer {
  const b = view(sealed);
  if (b.length < OVERHEAD) throw malformed('sealed frame is truncated');
  if (b[0] !== 1) throw malformed('unknown ASP version');
  if (((b[1] as number) & ~1) !== 0) throw malformed('unknown ASP flags');
  return b;
}
const tsOf = (b: Buffer) => b.readUInt32BE(14) * 2 ** 32 + b.readUInt32BE(18);
function checkDrift(ts: number, now: number, windowMs: number): void {
  if (ts + windowMs < now || ts > now + windowMs) throw codecError('asp.drift', 'frame timestamp outside the allowed window');
}

function decrypt(key: KeyObject, b: Buffer, ns: string): Buffer {
  const n = b.length - OVERHEAD;
  const d = createDecipheriv('aes-256-gcm', key, b.subarray(2, 14));
  d.setAAD(aadOf(b, ns));
  d.setAuthTag(b.subarray(22 + n));
  const plain = d.update(b.subarray(22, 22 + n));
  try {
    d.final();
  } catch (err) {
    throw codecError('asp.decrypt', 'ASP authentication failed', err);
  }
  return plain;
}

/** RFC 7692 message: sync flush, tail stripped. A preset dictionary stands in for context takeover. */
function deflateMsg(data: Uint8Array, level: number, windowBits = 15, dictionary = EMPTY): Buffer {
  if (data.length === 0) return Buffer.from([0]); // the empty stored block, as the Rust side writes it
  const z = deflateRawSync(data, { level, windowBits, finishFlush: SYNC, ...(dictionary.length ? { dictionary } : {}) });
  return z.subarray(0, z.length - 4);
}

/** Inflates one message; `ended` = a final block ended the stream before the appended tail. */
function inflateMsg(data: Uint8Array, max: number, windowBits = 15, dictionary = EMPTY): { out: Buffer; ended: boolean } {
  const input = Buffer.concat([data, TAIL]);
  const opts = { windowBits, finishFlush: SYNC, maxOutputLength: max, info: true, ...(dictionary.length ? { dictionary } : {}) };
  try {
    const { buffer, engine } = inflateRawSync(input, opts) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
    return { out: buffer, ended: engine.bytesWritten < input.length };
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_BUFFER_TOO_LARGE') throw codecError('codec.malformed', 'invalid deflate data', err);
    throw codecError('codec.too_large', 'inflated message exceeds the output limit', err);
  }
}

/** The last `size` bytes of window + data, copied (the caller may reuse `data`). */
function slide(window: Buffer, data: Uint8Array, size: number): Buffer {
  if (data.length >= size) return Buffer.from(data.subarray(data.length - size));
  return Buffer.concat([window.subarray(Math.max(0, window.length + data.length - size)), data]);
}

/** `E:` + base64url(sealed), written into one buffer. */
function textOf(sealed: Buffer): Buffer {
  const text = sealed.toString('base64url');
  const out = Buffer.allocUnsafe(2 + text.length);
  out[0] = 0x45;
  out[1] = 0x3a;
  out.write(text, 2, 'latin1');
  return out;
}

/** The sealed bytes of a text frame; checks in the order of the Rust `decode_text`. */
function sealedOf(text: Uint8Array): Buffer {
  const b = view(text);
  if (b.length < 2 || b[0] !== 0x45 || b[1] !== 0x3a) throw malformed('ASP text must start with E:');
  const s = b.toString('latin1', 2);
  if (s.length % 4 === 1 || !B64URL.test(s)) throw malformed('E: frame is not base64url');
  return Buffer.from(s, 'base64url');
}

function createSealer(rawKey: Uint8Array, o: T.SealerOptions): T.AspSealer {
  const key = asKey(rawKey);
  const now = o.now ?? Date.now;
  const prefix = o.seed ? safeInt(o.seed.prefix, 'seed.prefix') : randomBytes(4).readUInt32BE(0);
  let counter = o.seed ? safeInt(o.seed.counter, 'seed.counter') : randomBytes(6).readUIntBE(0, 6);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(((prefix & 0x7fffffff) | (o.role === 'client' ? 0 : SERVER_BIT << 24)) >>> 0);
  const seal = (plaintext: Uint8Array, ns: string, deflate = false): Buffer => {
    const ts = safeInt(now(), 'timestamp');
    if (counter > Number.MAX_SAFE_INTEGER) throw codecError('asp.exhausted', 'nonce counter exhausted; derive a new key');
    const nonce = Buffer.allocUnsafe(12);
    head.copy(nonce);
    writeU64(nonce, 4, counter++);
    return sealRaw(key, nonce, ts, deflate ? 1 : 0, ns, deflate ? deflateMsg(plaintext, DEFAULTS.level) : plaintext);
  };
  return { seal, sealText: (plaintext, ns, deflate) => textOf(seal(plaintext, ns, deflate)) };
}

/**
 * Replay cache: nonces seen inside the window, in arrival order (a Map's insertion order is the
 * queue). When full, the oldest entry goes and its timestamp becomes a floor at or below which
 * every frame is refused, so eviction never opens a replay hole. Same algorithm as Rust.
 */
function createOpener(rawKey: Uint8Array, o: T.OpenerOptions): T.AspOpener {
  const key = asKey(rawKey);
  const expect = o.role === 'client' ? SERVER_BIT : 0;
  const windowMs = safeInt(o.windowMs ?? DEFAULTS.windowMs, 'windowMs');
  const capacity = safeInt(o.replayCapacity ?? DEFAULTS.replayCapacity, 'replayCapacity', 1);
  const max = maxOut(o.maxOutput);
  const now = o.now ?? Date.now;
  const seen = new Map<string, number>();
  let floor = -1;
  const opener: T.AspOpener = {
    openText: (text, ns) => opener.open(sealedOf(text), ns),
    open(sealed, ns) {
      const t = safeInt(now(), 'now');
      const b = checkSealed(sealed);
      if (((b[2] as number) & SERVER_BIT) !== expect) throw codecError('asp.replay', 'frame was sealed for the other direction');
      const ts = tsOf(b);
      checkDrift(ts, t, windowMs);
      const id = b.toString('latin1', 2, 14);
      if (ts <= floor || seen.has(id)) throw codecError('asp.replay', 'nonce already seen');
      const plain = decrypt(key, b, ns);
      for (const [k, v] of seen) {
        if (v + windowMs >= t) break;
        seen.delete(k);
      }
      if (seen.size >= capacity) {
        const [k, v] = seen.entries().next().value as [string, number];
        seen.delete(k);
        floor = Math.max(floor, v);
      }
      seen.set(id, ts);
      return b[1] === 1 ? inflateMsg(plain, max).out : plain;
    },
  };
  return opener;
}

// Envelope scanner (same grammar and limits as frame.rs). State is module-level so a scan allocates
// nothing; scans are synchronous and never nest.
let B: Uint8Array = EMPTY;
let I = 0;
let D = 0;
let HIGH = false; // the last string held a byte >= 0x80
const fail = (m = 'frame is not a valid envelope'): never => {
  throw malformed(m);
};
const at = (): number => (I < B.length ? (B[I] as number) : fail());
const ws = () => {
  for (let c = B[I]; c === 32 || c === 9 || c === 10 || c === 13; c = B[++I]);
};
const eat = (c: number) => (at() === c ? I++ : fail());
const digit = (c = -1) => c >= 48 && c <= 57;
const hex = (c = -1) => digit(c) || ((c | 32) >= 97 && (c | 32) <= 102);
const ESCAPES = [34, 92, 47, 98, 102, 110, 114, 116]; // " \ / b f n r t
const KEYS = new Map([
  ['type', 1],
  ['id', 2],
  ['ns', 4],
  ['payload', 8],
]);

/** A string at B[I]; returns whether it holds escapes. */
function str(): boolean {
  eat(34);
  let esc = false;
  HIGH = false;
  for (let c = at(); c !== 34; c = at()) {
    if (c === 92) {
      esc = true;
      const e = B[++I] ?? -1;
      if (e === 117 && hex(B[I + 1]) && hex(B[I + 2]) && hex(B[I + 3]) && hex(B[I + 4])) I += 5;
      else if (ESCAPES.includes(e)) I++;
      else fail();
    } else if (c < 0x20) fail();
    else {
      HIGH ||= c >= 0x80;
      I++;
    }
  }
  I++;
  return esc;
}
function digits(): void {
  if (!digit(at())) fail();
  while (digit(B[I])) I++;
}
function literal(word: string): void {
  for (let k = 0; k < word.length; k++) if (B[I + k] !== word.charCodeAt(k)) fail();
  I += word.length;
}
const colon = () => {
  ws();
  eat(58);
  ws();
};
/** After a member: skips a comma and reports whether another member follows. */
const more = (): boolean => {
  ws();
  if (at() !== 44) return false;
  I++;
  ws();
  return true;
};
/** Opens a container at B[I] (depth-limited); returns its closing byte. */
function enter(): number {
  const close = (B[I] as number) + 2; // '{' -> '}', '[' -> ']'
  if (++D > 64) fail();
  I++;
  ws();
  return close;
}
function value(): void {
  const c = at();
  if (c === 34) str();
  else if (c === 123 || c === 91) {
    const close = enter();
    if (at() !== close) {
      do {
        if (c === 123) {
          str();
          colon();
        }
        value();
      } while (more());
    }
    eat(close);
    D--;
  } else if (c === 116) literal('true');
  else if (c === 102) literal('false');
  else if (c === 110) literal('null');
  else if (c === 45 || digit(c)) {
    if (c === 45) I++;
    if (at() === 48) I++;
    else digits();
    if (B[I] === 46 && ++I) digits();
    if (B[I] === 101 || B[I] === 69) {
      I++;
      if (B[I] === 43 || B[I] === 45) I++;
      digits();
    }
  } else fail();
}
/** Envelope key spanning B[s, I-1) -> bit, 0 when unknown. */
const keyBit = (s: number) => (I - 1 - s <= 7 && KEYS.get(String.fromCharCode(...B.subarray(s, I - 1)))) || 0;
/** `id` / `ns`: a string or null; returns [start, end, escaped] for a string. */
function optString(): [number, number, boolean] | undefined {
  if (at() === 110) return void literal('null');
  const s = I + 1;
  const esc = str();
  if (I - 1 - s > 256) fail('envelope id/ns too long');
  if (HIGH) {
    try {
      utf8.decode(B.subarray(s, I - 1));
    } catch {
      fail('envelope string is not valid UTF-8');
    }
  }
  return [s, I - 1, esc];
}
/** Decodes a checked JSON string body; lone surrogates become U+FFFD, as on the Rust side. */
export function jsonText(b: Buffer, s: number, e: number, esc: boolean): string {
  const text = b.toString('utf8', s, e);
  return esc ? wellFormed(JSON.parse(`"${text}"`) as string) : text;
}

function validateFrame(bytes: Uint8Array): T.FrameHeader {
  B = bytes;
  I = 0;
  D = 0;
  try {
    const h: T.FrameHeader = { type: '', payloadOffset: 0, payloadLength: 0 };
    let seen = 0;
    ws();
    if (at() !== 123) fail();
    const close = enter();
    for (let go = at() !== close; go; go = more()) {
      const ks = I + 1;
      const bit = str() ? 0 : keyBit(ks);
      colon();
      if (bit === 0) fail('unknown envelope key');
      if (seen & bit) fail('duplicate envelope key');
      seen |= bit;
      if (bit === 1) {
        const s = I + 1;
        const esc = str();
        const t = esc || HIGH || I - 1 - s > 128 ? '' : String.fromCharCode(...B.subarray(s, I - 1));
        if (!validType(t)) fail('envelope type must be dotted lowercase words');
        h.type = t;
      } else if (bit === 8) {
        h.payloadOffset = I;
        value();
        h.payloadLength = I - h.payloadOffset;
      } else {
        const span = optString();
        if (span) h[bit === 2 ? 'id' : 'ns'] = jsonText(view(B), ...span);
      }
    }
    eat(close);
    ws();
    if (I !== B.length) fail();
    if (!(seen & 1)) fail('envelope has no type');
    return h;
  } finally {
    B = EMPTY;
  }
}

function encodeFrame(type: string, ns: string | null, payload: Uint8Array, id?: string | null): Buffer {
  if (!validType(type)) throw invalid('frame type must be dotted lowercase words (max 128 bytes)');
  if (payload.length === 0) throw invalid('payload JSON must not be empty');
  let head = `{"type":"${type}"`;
  if (id != null) head += `,"id":${JSON.stringify(wellFormed(id))}`;
  if (ns != null) head += `,"ns":${JSON.stringify(wellFormed(ns))}`;
  head += ',"payload":';
  const h = Buffer.byteLength(head);
  const out = Buffer.allocUnsafe(h + payload.length + 1);
  out.write(head, 0, 'utf8');
  out.set(payload, h);
  out[out.length - 1] = 125;
  return out;
}

function encodeServerFrame(f: T.ServerFrameInput): Buffer {
  if (!validType(f.type)) throw invalid('frame type must be dotted lowercase words (max 128 bytes)');
  if (!Number.isInteger(f.kind) || f.kind < 0 || f.kind > 255) throw invalid('kind must be 0..=255');
  const fields = [f.ns ?? '', f.target ?? '', f.origin ?? ''];
  const lens = fields.map((s) => Buffer.byteLength(s));
  if (lens.some((l) => l > 0xffff) || f.payload.length > 0xffffffff) throw invalid('server frame field too long');
  const out = Buffer.allocUnsafe(15 + f.type.length + lens.reduce((a, b) => a + b, 0) + f.payload.length);
  out.set([0x4d, 1, f.kind, 0, f.type.length]);
  let p = 5 + out.write(f.type, 5, 'latin1');
  fields.forEach((s, k) => {
    out.writeUInt16BE(lens[k] as number, p);
    p += 2 + out.write(s, p + 2, 'utf8');
  });
  out.writeUInt32BE(f.payload.length, p);
  out.set(f.payload, p + 4);
  return out;
}

function decodeServerFrame(bytes: Uint8Array): T.ServerFrameHeader {
  const b = view(bytes);
  const bad = (): never => fail('not a valid server frame');
  if (b.length < 5 || b[0] !== 0x4d || b[1] !== 1 || b[3] !== 0 || b.length < 5 + (b[4] as number)) bad();
  const type = b.toString('latin1', 5, 5 + (b[4] as number));
  if (!validType(type)) bad();
  let p = 5 + type.length;
  const field = (): string => {
    const l = p + 2 <= b.length ? b.readUInt16BE(p) : bad();
    p += 2 + l;
    if (p > b.length) bad();
    try {
      return utf8.decode(b.subarray(p - l, p));
    } catch {
      return bad();
    }
  };
  const [ns, target, origin] = [field(), field(), field()];
  if (b.length < p + 4 || b.length - p - 4 !== b.readUInt32BE(p)) bad();
  return { kind: b[2] as number, type, ns, target, origin, payloadOffset: p + 4, payloadLength: b.length - p - 4 };
}

export function createTsCodec(reason?: string): T.Codec {
  return {
    backend: 'ts',
    ...(reason === undefined ? {} : { reason }),
    deriveKey(master, sessionId, scope) {
      if (master.length < 32) throw invalid('ASP master secret must be at least 32 bytes');
      if (sessionId === '') throw invalid('ASP session id must not be empty');
      if (scope !== 'ws' && scope !== 'http') throw invalid("ASP scope must be 'ws' or 'http'");
      return Buffer.from(hkdfSync('sha256', master, 'mega.asp.v1', Buffer.from(`${scope}\0${sessionId}`), 32));
    },
    seal: (key, plaintext, ns, { nonce, timestamp, deflate = false }) =>
      sealRaw(asKey(key), nonce, timestamp, deflate ? 1 : 0, ns, deflate ? deflateMsg(plaintext, DEFAULTS.level) : plaintext),
    open(key, sealed, ns, o = {}) {
      const k = asKey(key);
      const now = safeInt(o.now ?? Date.now(), 'now');
      const windowMs = safeInt(o.windowMs ?? DEFAULTS.windowMs, 'windowMs');
      const max = maxOut(o.maxOutput);
      const b = checkSealed(sealed);
      checkDrift(tsOf(b), now, windowMs);
      const plain = decrypt(k, b, ns);
      return b[1] === 1 ? inflateMsg(plain, max).out : plain;
    },
    createSealer: (key, o = {}) => createSealer(key, o),
    createOpener: (key, o = {}) => createOpener(key, o),
    deflate: (data, o = {}) => deflateMsg(data, checkLevel(o.level ?? DEFAULTS.level)),
    inflate: (data, o = {}) => inflateMsg(data, maxOut(o.maxOutput)).out,
    createDeflater(o = {}) {
      const [level, bits, takeover] = [checkLevel(o.level ?? DEFAULTS.level), checkWindowBits(o.windowBits ?? 15), o.takeover ?? true];
      let window: Buffer | null = EMPTY; // null once closed
      return {
        deflate(data) {
          if (window === null) throw codecError('codec.closed', 'deflater is closed');
          const out = deflateMsg(data, level, bits, takeover ? window : EMPTY);
          if (takeover) window = slide(window, data, 1 << bits);
          return out;
        },
        close() {
          window = null;
        },
      };
    },
    createInflater(o = {}) {
      const [bits, takeover, max] = [checkWindowBits(o.windowBits ?? 15), o.takeover ?? true, maxOut(o.maxOutput)];
      let window: Buffer | null = EMPTY; // null once a failure left the shared window unknown
      let closed = false;
      return {
        inflate(data) {
          if (closed) throw codecError('codec.closed', 'inflater is closed');
          if (window === null) throw codecError('codec.closed', 'inflater unusable after an earlier failure');
          const last = window;
          window = null;
          const { out, ended } = inflateMsg(data, max, bits, takeover ? last : EMPTY);
          window = !takeover || ended ? EMPTY : slide(last, out, 1 << bits);
          return out;
        },
        close() {
          closed = true;
          window = null;
        },
      };
    },
    encodeFrame,
    validateFrame,
    encodeServerFrame,
    decodeServerFrame,
  };
}
