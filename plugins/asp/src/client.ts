/**
 * @mega/asp/client: speak ASP from a browser or Node with WebCrypto only (no imports, no Buffer),
 * so the same file can be served to pages as-is. It produces and checks the exact bytes of the
 * codec's ASP v1 format (crates/mega-codec/FORMAT.md):
 *
 *   sealed = version(1) | flags(1) | nonce(12) | timestamp ms (u64 BE) | ciphertext | tag(16)
 *   AAD    = version | flags | timestamp | namespace (UTF-8)
 *   key    = HKDF-SHA256(master, salt "mega.asp.v1", info scope | 0x00 | sessionId), 32 bytes
 *
 * Nonces are a 4-byte prefix (top bit set = sealed by the server) and a 64-bit counter. The client
 * seals with the top bit clear and only opens frames that have it set, so a frame cannot be
 * reflected back to its sender. Opening checks drift (default 60 s) and replays.
 */

// Type-only: erased from the emitted file, which must stay import-free for browsers.
import type { webcrypto } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;
type SubtleCrypto = webcrypto.SubtleCrypto;
type BufferSource = webcrypto.BufferSource;

export type AspErrorCode =
  | 'asp.decrypt'
  | 'asp.drift'
  | 'asp.replay'
  | 'asp.signal'
  | 'asp.exhausted'
  | 'codec.malformed'
  | 'codec.invalid_argument';

export class AspClientError extends Error {
  constructor(
    readonly code: AspErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'AspClientError';
  }
}

export interface AspClientOptions {
  /** 'client' (default): seal as the client, open what the server sealed. 'server' mirrors it (tests, relays). */
  role?: 'client' | 'server';
  /** Allowed clock drift either way, ms (default 60 000). */
  windowMs?: number;
  /** Nonces remembered (default 16 384); past it the oldest becomes a replay floor. */
  replayCapacity?: number;
  /** Largest plaintext accepted when inflating a deflated frame (default 16 MiB). */
  maxOutput?: number;
  now?: () => number;
  /** Reproducible nonces for tests. */
  seed?: { prefix: number; counter: number };
}

const HEADER = 22;
const TAG = 16;
const OVERHEAD = HEADER + TAG;
const SERVER_BIT = 0x80;
const MAX_COUNTER = 2 ** 53 - 1;
const B64URL = /^[A-Za-z0-9_-]*$/;
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

function subtle(): SubtleCrypto {
  const s = (globalThis.crypto as webcrypto.Crypto | undefined)?.subtle;
  if (!s)
    throw new AspClientError(
      'codec.invalid_argument',
      'WebCrypto (crypto.subtle) is not available here; use a secure context (https or localhost)',
    );
  return s;
}

function bytes(data: Uint8Array | string): Uint8Array {
  return typeof data === 'string' ? encoder.encode(data) : data;
}

function writeU64(out: Uint8Array, off: number, v: number): void {
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(off, Math.floor(v / 2 ** 32));
  view.setUint32(off + 4, v >>> 0);
}

function readU64(b: Uint8Array, off: number): number {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return view.getUint32(off) * 2 ** 32 + view.getUint32(off + 4);
}

function randomU32(): number {
  return globalThis.crypto.getRandomValues(new Uint32Array(1))[0] as number;
}

export function toBase64Url(data: Uint8Array): string {
  let s = '';
  for (let i = 0; i < data.length; i += 0x8000) s += String.fromCharCode.apply(null, data.subarray(i, i + 0x8000) as unknown as number[]);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Strict base64url (no padding, no other characters); throws codec.malformed. */
export function fromBase64Url(text: string): Uint8Array {
  if (!B64URL.test(text) || text.length % 4 === 1) throw new AspClientError('codec.malformed', 'not base64url');
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((text.length + 3) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** The ASP key HKDF derives for a session (what the server's codec.deriveKey returns). */
export async function deriveKey(master: Uint8Array | string, sessionId: string, scope: 'ws' | 'http'): Promise<Uint8Array> {
  const m = bytes(master);
  if (m.length < 32) throw new AspClientError('codec.invalid_argument', 'ASP master secret must be at least 32 bytes');
  if (sessionId === '') throw new AspClientError('codec.invalid_argument', 'ASP session id must not be empty');
  if (scope !== 'ws' && scope !== 'http') throw new AspClientError('codec.invalid_argument', "ASP scope must be 'ws' or 'http'");
  const base = await subtle().importKey('raw', m as BufferSource, 'HKDF', false, ['deriveBits']);
  const sid = encoder.encode(sessionId);
  const info = new Uint8Array(scope.length + 1 + sid.length);
  info.set(encoder.encode(scope));
  info.set(sid, scope.length + 1);
  const bits = await subtle().deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: encoder.encode('mega.asp.v1'), info }, base, 256);
  return new Uint8Array(bits);
}

function aad(sealed: Uint8Array, ns: string): Uint8Array {
  const n = encoder.encode(ns);
  const a = new Uint8Array(10 + n.length);
  a[0] = sealed[0] as number;
  a[1] = sealed[1] as number;
  a.set(sealed.subarray(14, 22), 2);
  a.set(n, 10);
  return a;
}

async function inflateRaw(data: Uint8Array, maxOutput: number): Promise<Uint8Array> {
  // RFC 7692 message: restore the sync-flush tail, then close the stream with an empty final stored block.
  const input = new Uint8Array(data.length + 9);
  input.set(data);
  input.set([0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff], data.length);
  const stream = new Blob([input]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
  const reader = stream.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > maxOutput) throw new AspClientError('codec.malformed', 'inflated frame exceeds the output limit');
      parts.push(value);
    }
  } catch (error) {
    if (error instanceof AspClientError) throw error;
    throw new AspClientError('codec.malformed', 'invalid deflate data');
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Imports a raw 32-byte key for AES-256-GCM. */
export async function importAesKey(raw: Uint8Array): Promise<CryptoKey> {
  if (raw.length !== 32) throw new AspClientError('codec.invalid_argument', 'ASP key must be 32 bytes');
  return subtle().importKey('raw', raw as BufferSource, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
}

/** Seals with an explicit nonce and timestamp (vectors, tests). Prefer `AspClient.seal`. */
export async function sealWith(
  key: CryptoKey,
  plaintext: Uint8Array,
  ns: string,
  nonce: Uint8Array,
  timestamp: number,
): Promise<Uint8Array> {
  if (nonce.length !== 12) throw new AspClientError('codec.invalid_argument', 'nonce must be 12 bytes');
  if (!Number.isSafeInteger(timestamp) || timestamp < 0)
    throw new AspClientError('codec.invalid_argument', 'timestamp must be an integer >= 0');
  const head = new Uint8Array(HEADER);
  head[0] = 1;
  head[1] = 0;
  head.set(nonce, 2);
  writeU64(head, 14, timestamp);
  const ct = new Uint8Array(
    await subtle().encrypt(
      { name: 'AES-GCM', iv: nonce as BufferSource, additionalData: aad(head, ns) as BufferSource, tagLength: 128 },
      key,
      plaintext as BufferSource,
    ),
  );
  const out = new Uint8Array(HEADER + ct.length);
  out.set(head);
  out.set(ct, HEADER);
  return out;
}

export class AspClient {
  readonly #key: CryptoKey;
  readonly #role: 'client' | 'server';
  readonly #window: number;
  readonly #capacity: number;
  readonly #max: number;
  readonly #now: () => number;
  readonly #prefix: number;
  #counter: number;
  readonly #seen = new Map<string, number>();
  #floor = -1;

  private constructor(key: CryptoKey, opts: AspClientOptions) {
    this.#key = key;
    this.#role = opts.role ?? 'client';
    this.#window = opts.windowMs ?? 60_000;
    this.#capacity = Math.max(1, opts.replayCapacity ?? 16_384);
    this.#max = opts.maxOutput ?? 16 * 1024 * 1024;
    this.#now = opts.now ?? Date.now;
    const prefix = opts.seed ? opts.seed.prefix : randomU32();
    this.#prefix = ((prefix & 0x7fffffff) | (this.#role === 'server' ? 0x80000000 : 0)) >>> 0;
    this.#counter = opts.seed ? opts.seed.counter : (randomU32() & 0xffff) * 2 ** 32 + randomU32();
  }

  /** `key`: the 32-byte session key (bytes or base64url, as the server hands it out). */
  static async create(key: Uint8Array | string, opts: AspClientOptions = {}): Promise<AspClient> {
    return new AspClient(await importAesKey(typeof key === 'string' ? fromBase64Url(key) : key), opts);
  }

  async seal(plaintext: Uint8Array | string, ns: string): Promise<Uint8Array> {
    if (this.#counter > MAX_COUNTER) throw new AspClientError('asp.exhausted', 'nonce counter exhausted; get a new key');
    const nonce = new Uint8Array(12);
    new DataView(nonce.buffer).setUint32(0, this.#prefix);
    writeU64(nonce, 4, this.#counter++);
    return sealWith(this.#key, bytes(plaintext), ns, nonce, this.#now());
  }

  async open(sealed: Uint8Array, ns: string): Promise<Uint8Array> {
    const now = this.#now();
    if (sealed.length < OVERHEAD) throw new AspClientError('codec.malformed', 'sealed frame is truncated');
    if (sealed[0] !== 1) throw new AspClientError('codec.malformed', 'unknown ASP version');
    if (((sealed[1] as number) & ~1) !== 0) throw new AspClientError('codec.malformed', 'unknown ASP flags');
    const ts = readU64(sealed, 14);
    const expect = this.#role === 'client' ? SERVER_BIT : 0;
    if (((sealed[2] as number) & SERVER_BIT) !== expect) throw new AspClientError('asp.replay', 'frame was sealed for the other direction');
    if (ts + this.#window < now || ts > now + this.#window)
      throw new AspClientError('asp.drift', 'frame timestamp outside the allowed window');
    let id = '';
    for (let i = 2; i < 14; i++) id += String.fromCharCode(sealed[i] as number);
    if (ts <= this.#floor || this.#seen.has(id)) throw new AspClientError('asp.replay', 'nonce already seen');
    let plain: Uint8Array;
    try {
      plain = new Uint8Array(
        await subtle().decrypt(
          { name: 'AES-GCM', iv: sealed.subarray(2, 14) as BufferSource, additionalData: aad(sealed, ns) as BufferSource, tagLength: 128 },
          this.#key,
          sealed.subarray(HEADER) as BufferSource,
        ),
      );
    } catch {
      throw new AspClientError('asp.decrypt', 'ASP authentication failed');
    }
    for (const [k, t] of this.#seen) {
      if (t + this.#window >= now) break;
      this.#seen.delete(k);
    }
    if (this.#seen.size >= this.#capacity) {
      const first = this.#seen.entries().next().value as [string, number];
      this.#seen.delete(first[0]);
      this.#floor = Math.max(this.#floor, first[1]);
    }
    this.#seen.set(id, ts);
    return sealed[1] === 1 ? inflateRaw(plain, this.#max) : plain;
  }

  /** `E:` + base64url(sealed): a WS text frame on an encrypted namespace, or a sealed HTTP body. */
  async sealFrame(text: string, ns: string): Promise<string> {
    return `E:${toBase64Url(await this.seal(text, ns))}`;
  }

  async openFrame(frame: string, ns: string): Promise<string> {
    if (typeof frame !== 'string' || !frame.startsWith('E:')) throw new AspClientError('asp.signal', 'expected an E: frame');
    const plain = await this.open(fromBase64Url(frame.slice(2)), ns);
    try {
      return decoder.decode(plain);
    } catch {
      throw new AspClientError('codec.malformed', 'opened frame is not UTF-8');
    }
  }

  /**
   * fetch() against an `asp.http.enabledPaths` route: seals a JSON body, sends the signal header,
   * opens the sealed response and returns its parsed JSON (`{ data }`). Unsealed (error) responses
   * are parsed as they are.
   */
  async fetch(
    url: string,
    init: { method?: string; body?: unknown; headers?: Record<string, string>; credentials?: 'include' | 'same-origin' | 'omit' } = {},
  ): Promise<{ status: number; body: unknown }> {
    const path = new URL(url, (globalThis as { location?: { href: string } }).location?.href ?? 'http://localhost').pathname;
    const headers: Record<string, string> = { 'x-mega-asp': '1', accept: 'application/x-mega-asp, application/json', ...init.headers };
    const method = (init.method ?? (init.body !== undefined ? 'POST' : 'GET')).toUpperCase();
    let body: string | undefined;
    // Unsafe methods always carry a sealed body (an empty payload when there is nothing to send):
    // the server refuses them without one, since the seal is their integrity and replay check.
    if (init.body !== undefined || (method !== 'GET' && method !== 'HEAD')) {
      body = await this.sealFrame(init.body === undefined ? '' : JSON.stringify(init.body), path);
      headers['content-type'] = 'application/x-mega-asp';
    }
    const res = await globalThis.fetch(url, {
      method,
      headers,
      body,
      credentials: init.credentials ?? 'same-origin',
    });
    const text = await res.text();
    if (res.headers.get('x-mega-asp') === '1') return { status: res.status, body: JSON.parse(await this.openFrame(text, path)) };
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  }
}

/** The minimal WebSocket surface the wrapper needs (browser WebSocket or the `ws` package). */
export interface SocketLike {
  send(data: string): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
}

/**
 * Envelopes over an encrypted namespace, in order both ways (WebCrypto is async, so sends and
 * receives are chained). `onMessage` gets parsed envelopes; `onError` gets frames that failed to open.
 */
export function aspSocket(
  socket: SocketLike,
  client: AspClient,
  ns: string,
  handlers: { onMessage(message: Record<string, unknown>): void; onError?(error: unknown): void },
): { send(message: { type: string; id?: string; payload?: unknown }): Promise<void> } {
  let outbound: Promise<void> = Promise.resolve();
  let inbound: Promise<void> = Promise.resolve();
  socket.addEventListener('message', (event) => {
    const data = event.data;
    inbound = inbound.then(async () => {
      try {
        handlers.onMessage(JSON.parse(await client.openFrame(String(data), ns)) as Record<string, unknown>);
      } catch (error) {
        handlers.onError?.(error);
      }
    });
  });
  return {
    send(message) {
      const next = outbound.then(async () => socket.send(await client.sealFrame(JSON.stringify(message), ns)));
      outbound = next.catch(() => undefined);
      return next;
    },
  };
}
