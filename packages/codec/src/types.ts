/**
 * The codec contract both backends implement byte for byte (formats: crates/mega-codec/FORMAT.md).
 * Failures are MegaErrors: codec.malformed, codec.too_large, codec.invalid_argument, codec.closed,
 * asp.decrypt, asp.drift, asp.replay, asp.exhausted.
 */
/**
 * The codec sits below the kernel (the kernel depends on it), so it cannot import MegaError; its
 * errors carry the same global brand and fields, so `isMegaError` and the envelope treat them alike.
 */
const BRAND = Symbol.for('mega.error');

export class CodecError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: unknown = undefined;
  constructor(code: string, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MegaError';
    this.code = code;
    this.status = code.startsWith('asp.') ? 401 : code.endsWith('.too_large') ? 413 : 500;
    Object.defineProperty(this, BRAND, { value: true });
  }
  toJSON(): { code: string; message: string } {
    return { code: this.code, message: this.message };
  }
}

export function isMegaError(value: unknown): value is CodecError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}

export type CodecBackend = 'native' | 'ts';
export type AspScope = 'ws' | 'http';
/** The side holding a sealer/opener: picks the nonce direction bit it writes and the one it accepts. */
export type AspRole = 'server' | 'client';

/** `nonce` (12 bytes) is the caller's to keep unique: use a sealer unless writing vectors. */
export type SealOptions = { nonce: Uint8Array; timestamp: number; deflate?: boolean };
export type OpenOptions = { now?: number; windowMs?: number; maxOutput?: number };
export interface SealerOptions {
  role?: AspRole;
  /** Reproducible nonces for tests; otherwise a random 31-bit prefix and counter start. */
  seed?: { prefix: number; counter: number };
  now?: () => number;
}
export interface OpenerOptions {
  role?: AspRole;
  windowMs?: number;
  /** Nonces remembered (default 16384); past it the oldest becomes a replay floor. */
  replayCapacity?: number;
  maxOutput?: number;
  now?: () => number;
}
export type AspSealer = {
  seal(plaintext: Uint8Array, ns: string, deflate?: boolean): Buffer;
  /** The text form in one call: `E:` + base64url(unpadded) of what `seal` returns, as ASCII bytes. */
  sealText(plaintext: Uint8Array, ns: string, deflate?: boolean): Buffer;
};
export type AspOpener = {
  open(sealed: Uint8Array, ns: string): Buffer;
  /**
   * Opens the text form (`E:` + unpadded base64url, e.g. a whole WebSocket frame) in one call: no
   * `E:` prefix, a character outside [A-Za-z0-9_-] or a length no base64url text has →
   * `codec.malformed`; then `open`'s checks, replay cache included.
   */
  openText(text: Uint8Array, ns: string): Buffer;
};
/** `takeover` = RFC 7692 context takeover (default true). */
export type DeflaterOptions = { level?: number; windowBits?: number; takeover?: boolean };
export type InflaterOptions = { windowBits?: number; takeover?: boolean; maxOutput?: number };
/**
 * A per-connection (de)compression stream. `close()` frees its state at once (zlib streams in the
 * native backend, the kept window in the TS one); later calls throw `codec.closed`. Idempotent.
 * Unclosed streams are freed when collected: the native backend reports their memory to V8.
 */
export type Deflater = { deflate(data: Uint8Array): Buffer; close(): void };
export type Inflater = { inflate(data: Uint8Array): Buffer; close(): void };
/** Inbound envelope; the payload value is bytes[payloadOffset, +payloadLength) (length 0 = absent). */
export type FrameHeader = { type: string; id?: string; ns?: string; payloadOffset: number; payloadLength: number };
/** `kind` 0..255 belongs to the transport (broadcast, direct, presence...). */
export type ServerFrameInput = { kind: number; type: string; ns?: string; target?: string; origin?: string; payload: Uint8Array };
export type ServerFrameHeader = Required<Omit<ServerFrameInput, 'payload'>> & { payloadOffset: number; payloadLength: number };

export interface Codec {
  readonly backend: CodecBackend;
  /** Why the TS backend is in use (fallback or forced); undefined for native. */
  readonly reason?: string;
  deriveKey(master: Uint8Array, sessionId: string, scope: AspScope): Buffer;
  seal(key: Uint8Array, plaintext: Uint8Array, ns: string, opts: SealOptions): Buffer;
  /** Tag and drift checks only, no replay cache: use an opener for that. */
  open(key: Uint8Array, sealed: Uint8Array, ns: string, opts?: OpenOptions): Buffer;
  createSealer(key: Uint8Array, opts?: SealerOptions): AspSealer;
  createOpener(key: Uint8Array, opts?: OpenerOptions): AspOpener;
  /** Raw deflate in the RFC 7692 message format (sync flush, 00 00 ff ff stripped), window 15. */
  deflate(data: Uint8Array, opts?: { level?: number }): Buffer;
  inflate(data: Uint8Array, opts?: { maxOutput?: number }): Buffer;
  createDeflater(opts?: DeflaterOptions): Deflater;
  createInflater(opts?: InflaterOptions): Inflater;
  /** Outbound envelope from already-serialised payload JSON (built once per broadcast). */
  encodeFrame(type: string, ns: string | null, payload: Uint8Array, id?: string | null): Buffer;
  validateFrame(bytes: Uint8Array): FrameHeader;
  encodeServerFrame(frame: ServerFrameInput): Buffer;
  decodeServerFrame(bytes: Uint8Array): ServerFrameHeader;
}

export const DEFAULTS = Object.freeze({ windowMs: 60_000, replayCapacity: 16_384, maxOutput: 16 * 1024 * 1024, level: 6, windowBits: 15 });

export function codecError(code: string, message: string, cause?: unknown): CodecError {
  return new CodecError(code, message, cause === undefined ? {} : { cause });
}

/** Integers both backends hold exactly (Rust u64 from a double), refused alike when out of range. */
export function safeInt(v: number, what: string, min = 0): number {
  if (!Number.isSafeInteger(v) || v < min) throw codecError('codec.invalid_argument', `${what} must be an integer >= ${min}`);
  return v;
}
