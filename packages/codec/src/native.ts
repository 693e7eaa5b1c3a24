/**
 * Native backend: a thin adapter over the napi addon (crates/mega-napi), one addon call per message.
 * Outputs go into Buffers allocated here (pooled, ~70 ns) rather than created by the addon (~1-2 us
 * each), and headers come back as offsets in a Uint32Array rather than as napi-built objects.
 * Options are checked with the TS backend's rules so both refuse the same inputs; addon errors carry
 * the dotted codec code and become MegaErrors.
 */
import { checkLevel, checkWindowBits, jsonText, maxOut, OVERHEAD, view } from './ts.js';
import type * as T from './types.js';
import { codecError, DEFAULTS, safeInt } from './types.js';

type Bytes = Uint8Array;
/** Output length, or -length when it did not fit `out` (then `takePending` copies it). */
type Len = number;
/** The addon's exports (napi's generated typings land in target/mega-codec.d.ts). */
export interface Binding {
  version(): string;
  /** zlib state held by live native deflaters/inflaters (bytes), as reported to V8. */
  heldBytes(): number;
  takePending(out: Bytes): number;
  deriveKey(master: Bytes, sessionId: string, scope: string, out: Bytes): Len;
  seal(key: Bytes, nonce: Bytes, ts: number, ns: string, plaintext: Bytes, deflate: boolean, out: Bytes): Len;
  open(key: Bytes, sealed: Bytes, ns: string, now: number, windowMs: number, maxOutput: number, out: Bytes): Len;
  Sealer: new (
    key: Bytes,
    server: boolean,
    prefix?: number,
    counter?: number,
  ) => { readonly slot: number; seal(p: Bytes, ns: string, ts: number, z: boolean, out: Bytes): Len };
  Opener: new (
    key: Bytes,
    server: boolean,
    windowMs: number,
    cap: number,
    max: number,
  ) => { readonly slot: number; open(s: Bytes, ns: string, now: number, out: Bytes): Len };
  /** The per-frame text calls (plain N-API callbacks, see lib.rs): a Sealer/Opener by its slot. */
  sealText(slot: number, p: Bytes, ns: string, ts: number, z: boolean, out: Bytes): Len;
  openText(slot: number, text: Bytes, ns: string, now: number, out: Bytes): Len;
  deflate(data: Bytes, level: number, out: Bytes): Len;
  inflate(data: Bytes, maxOutput: number, out: Bytes): Len;
  Deflater: new (level: number, windowBits: number, takeover: boolean) => { deflate(data: Bytes, out: Bytes): Len; close(): void };
  Inflater: new (windowBits: number, takeover: boolean, maxOutput: number) => { inflate(data: Bytes, out: Bytes): Len; close(): void };
  encodeFrame(type: string, ns: string | null, payload: Bytes, id: string | null, out: Bytes): Len;
  validateFrame(bytes: Bytes, meta: Uint32Array): void;
  encodeServerFrame(kind: number, type: string, ns: string, target: string, origin: string, payload: Bytes, out: Bytes): Len;
  decodeServerFrame(bytes: Bytes, meta: Uint32Array): void;
}

/** An addon error as the MegaError both backends throw. */
function rethrow(err: unknown): never {
  const code = (err as { code?: unknown }).code;
  throw codecError(typeof code === 'string' && code.includes('.') ? code : 'codec.invalid_argument', (err as Error).message, err);
}

function guard<R>(f: () => R): R {
  try {
    return f();
  } catch (err) {
    return rethrow(err);
  }
}

export function createNativeCodec(n: Binding): T.Codec {
  // Shared by every call of this codec: calls are synchronous, so uses never overlap.
  const scratch = Buffer.allocUnsafeSlow(64 * 1024);
  const meta = new Uint32Array(11);
  /** Variable-size output: produced into the scratch, returned as a copy. */
  const produce = (f: (out: Buffer) => Len): Buffer =>
    guard(() => {
      const len = f(scratch);
      if (len >= 0) return Buffer.from(scratch.subarray(0, len));
      const out = Buffer.allocUnsafe(-len);
      n.takePending(out);
      return out;
    });
  /** Known-size output: written straight into the returned Buffer. */
  const exact = (size: number, f: (out: Buffer) => Len): Buffer => {
    const out = Buffer.allocUnsafe(size);
    guard(() => f(out));
    return out;
  };
  const text = (b: Buffer, k: number) =>
    meta[k] === 0xffffffff ? undefined : jsonText(b, meta[k] as number, meta[k + 1] as number, meta[k + 2] === 1);
  return {
    backend: 'native',
    deriveKey: (master, sessionId, scope) => exact(32, (o) => n.deriveKey(master, sessionId, scope, o)),
    seal: (key, plaintext, ns, { nonce, timestamp, deflate = false }) =>
      produce((o) => n.seal(key, nonce, timestamp, ns, plaintext, deflate, o)),
    open(key, sealed, ns, o = {}) {
      const [now, windowMs, max] = [o.now ?? Date.now(), o.windowMs ?? DEFAULTS.windowMs, maxOut(o.maxOutput)];
      return produce((out) => n.open(key, sealed, ns, now, windowMs, max, out));
    },
    createSealer(key, o = {}) {
      const seed = o.seed && [safeInt(o.seed.prefix, 'seed.prefix'), safeInt(o.seed.counter, 'seed.counter')];
      const s = guard(() => new n.Sealer(key, o.role !== 'client', seed?.[0], seed?.[1]));
      // The slot stays valid while `s` lives: `seal` below keeps it reachable for as long as
      // this object is (closures of one scope share its variables).
      const slot = s.slot;
      const now = o.now ?? Date.now;
      return {
        // Without deflate the sealed size is known: no scratch copy.
        seal: (p, ns, z = false) =>
          z ? produce((out) => s.seal(p, ns, now(), true, out)) : exact(p.length + OVERHEAD, (out) => s.seal(p, ns, now(), false, out)),
        // Once per WebSocket frame: written out without the closures of `exact`.
        sealText(p, ns, z = false) {
          if (z) return produce((out) => n.sealText(slot, p, ns, now(), true, out));
          const out = Buffer.allocUnsafe(2 + Math.floor(((p.length + OVERHEAD) * 4 + 2) / 3));
          try {
            n.sealText(slot, p, ns, now(), false, out);
          } catch (err) {
            rethrow(err);
          }
          return out;
        },
      };
    },
    createOpener(key, o = {}) {
      const windowMs = safeInt(o.windowMs ?? DEFAULTS.windowMs, 'windowMs');
      const cap = safeInt(o.replayCapacity ?? DEFAULTS.replayCapacity, 'replayCapacity', 1);
      const op = guard(() => new n.Opener(key, o.role !== 'client', windowMs, cap, maxOut(o.maxOutput)));
      const slot = op.slot; // valid while `op` lives, which `open` below guarantees (see createSealer)
      const now = o.now ?? Date.now;
      return {
        // Flags byte 0 (no deflate): the plaintext is exactly 38 bytes shorter than the frame.
        open: (sealed, ns) =>
          sealed.length >= OVERHEAD && sealed[1] === 0
            ? exact(sealed.length - OVERHEAD, (out) => op.open(sealed, ns, now(), out))
            : produce((out) => op.open(sealed, ns, now(), out)),
        // Sized for the common case (no deflate flag): the decoded length minus 38. A deflated
        // frame's output may differ; then it is a prefix of `out` or waits in takePending.
        openText(text, ns) {
          const size = Math.floor(((text.length - 2) * 3) / 4) - OVERHEAD;
          if (size < 0) return produce((out) => n.openText(slot, text, ns, now(), out));
          const out = Buffer.allocUnsafe(size);
          let len = 0;
          try {
            len = n.openText(slot, text, ns, now(), out);
          } catch (err) {
            rethrow(err);
          }
          if (len === size) return out;
          if (len >= 0) return out.subarray(0, len);
          const big = Buffer.allocUnsafe(-len);
          n.takePending(big);
          return big;
        },
      };
    },
    deflate(data, o = {}) {
      const level = checkLevel(o.level ?? DEFAULTS.level);
      return produce((out) => n.deflate(data, level, out));
    },
    inflate(data, o = {}) {
      const max = maxOut(o.maxOutput);
      return produce((out) => n.inflate(data, max, out));
    },
    createDeflater(o = {}) {
      const [level, bits] = [checkLevel(o.level ?? DEFAULTS.level), checkWindowBits(o.windowBits ?? DEFAULTS.windowBits)];
      const d = guard(() => new n.Deflater(level, bits, o.takeover ?? true));
      return { deflate: (data) => produce((out) => d.deflate(data, out)), close: () => d.close() };
    },
    createInflater(o = {}) {
      const bits = checkWindowBits(o.windowBits ?? DEFAULTS.windowBits);
      const i = guard(() => new n.Inflater(bits, o.takeover ?? true, maxOut(o.maxOutput)));
      return { inflate: (data) => produce((out) => i.inflate(data, out)), close: () => i.close() };
    },
    encodeFrame: (type, ns, payload, id = null) => produce((out) => n.encodeFrame(type, ns, payload, id, out)),
    validateFrame(bytes) {
      guard(() => n.validateFrame(bytes, meta));
      const b = view(bytes);
      const h: T.FrameHeader = {
        type: b.toString('latin1', meta[0], meta[1]),
        payloadOffset: meta[8] as number,
        payloadLength: meta[9] as number,
      };
      const [id, ns] = [text(b, 2), text(b, 5)];
      if (id !== undefined) h.id = id;
      if (ns !== undefined) h.ns = ns;
      return h;
    },
    encodeServerFrame: (f) =>
      produce((out) => n.encodeServerFrame(safeInt(f.kind, 'kind'), f.type, f.ns ?? '', f.target ?? '', f.origin ?? '', f.payload, out)),
    decodeServerFrame(bytes) {
      guard(() => n.decodeServerFrame(bytes, meta));
      const b = view(bytes);
      const s = (k: number) => b.toString('utf8', meta[k], meta[k + 1]);
      return {
        kind: meta[0] as number,
        type: s(1),
        ns: s(3),
        target: s(5),
        origin: s(7),
        payloadOffset: meta[9] as number,
        payloadLength: meta[10] as number,
      };
    },
  };
}
