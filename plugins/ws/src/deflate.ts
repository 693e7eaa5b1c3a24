/**
 * permessage-deflate (RFC 7692) on top of the codec's raw deflate (native addon when loaded).
 *
 * Negotiation picks the first acceptable offer. Context takeover keeps one deflater and one inflater
 * per connection; those are the memory that matters (tens of KB each), so at most `maxContexts`
 * connections hold them at once ("bounded concurrency"): past the bound a connection is answered
 * with `server_no_context_takeover; client_no_context_takeover` and uses shared stateless
 * (de)compressors instead. Messages under `threshold` bytes go out uncompressed (RSV1 clear),
 * which RFC 7692 allows per message.
 */
import type { Codec, Deflater, Inflater } from '@mega/kernel';
import type { ExtensionOffer } from './handshake.js';

export interface CompressionOptions {
  /** Messages smaller than this (bytes) are sent uncompressed. Default 1024. */
  threshold?: number;
  /** zlib level 0..9. Default 6 (with takeover, 1 is often as good and faster). */
  level?: number;
  /** Never keep the server's compression context between messages. Default false. */
  serverNoContextTakeover?: boolean;
  /** Ask clients not to keep theirs (saves our inflater memory). Default false. */
  clientNoContextTakeover?: boolean;
  /** Largest LZ77 window the server compresses with, 9..15. Default 15. */
  serverMaxWindowBits?: number;
  /** Connections holding per-connection contexts at once (per server). Default 1024. */
  maxContexts?: number;
}

export type ResolvedCompression = Required<CompressionOptions>;

export const COMPRESSION_DEFAULTS: ResolvedCompression = Object.freeze({
  threshold: 1024,
  level: 6,
  serverNoContextTakeover: false,
  clientNoContextTakeover: false,
  serverMaxWindowBits: 15,
  maxContexts: 1024,
});

export function resolveCompression(value: boolean | CompressionOptions | undefined, base: ResolvedCompression): ResolvedCompression | null {
  if (value === undefined || value === false) return null;
  return value === true ? base : { ...base, ...value };
}

/** What was agreed for one connection. */
export interface Agreement {
  /** Our response header value. */
  header: string;
  /** The server keeps its deflate context between messages. */
  serverTakeover: boolean;
  /** The client keeps its context: our inflater must too. */
  clientTakeover: boolean;
  serverWindowBits: number;
}

const BITS_RE = /^(?:8|9|1[0-5])$/;

/**
 * Chooses an offer. `stateful` says whether a per-connection context is still available under the
 * bound. Offers with unknown, duplicate or invalid parameters are declined (RFC 7692 §5).
 */
export function negotiateDeflate(offers: ExtensionOffer[], opts: ResolvedCompression, stateful: boolean): Agreement | null {
  for (const offer of offers) {
    if (offer.name !== 'permessage-deflate') continue;
    const seen = new Set<string>();
    let ok = true;
    let serverNoTakeover = false;
    let clientNoTakeover = false;
    let serverBits: number | undefined;
    for (const [name, value] of offer.params) {
      if (seen.has(name)) {
        ok = false;
        break;
      }
      seen.add(name);
      if (name === 'server_no_context_takeover' && value === true) serverNoTakeover = true;
      else if (name === 'client_no_context_takeover' && value === true) clientNoTakeover = true;
      else if (name === 'server_max_window_bits' && value !== true && BITS_RE.test(value)) serverBits = Number(value);
      else if (name === 'client_max_window_bits' && (value === true || BITS_RE.test(value))) continue;
      else {
        ok = false;
        break;
      }
    }
    if (!ok) continue;
    // The codec's deflater needs a window of at least 2^9 (zlib silently widens 8 to 9).
    const bits = Math.min(serverBits ?? 15, opts.serverMaxWindowBits);
    if (bits < 9) continue;
    const serverTakeover = stateful && !serverNoTakeover && !opts.serverNoContextTakeover;
    const clientTakeover = stateful && !clientNoTakeover && !opts.clientNoContextTakeover;
    let header = 'permessage-deflate';
    if (!serverTakeover) header += '; server_no_context_takeover';
    if (!clientTakeover) header += '; client_no_context_takeover';
    if (serverBits !== undefined || bits < 15) header += `; server_max_window_bits=${bits}`;
    // client_max_window_bits needs no answer: our inflater's 2^15 window decodes any smaller one.
    return { header, serverTakeover, clientTakeover, serverWindowBits: bits };
  }
  return null;
}

/**
 * Per-connection compression state. Stateless sides borrow shared objects from `Shared`, keyed by
 * window size, so a broadcast to no-takeover connections compresses once per window size.
 */
export class ConnectionDeflate {
  readonly #deflater: Deflater | null;
  readonly #inflater: Inflater | null;
  constructor(
    readonly agreement: Agreement,
    readonly opts: ResolvedCompression,
    private readonly shared: SharedDeflate,
    maxPayload: number,
  ) {
    const codec = shared.codec;
    this.#deflater = agreement.serverTakeover
      ? codec.createDeflater({ level: opts.level, windowBits: agreement.serverWindowBits, takeover: true })
      : null;
    this.#inflater = agreement.clientTakeover ? codec.createInflater({ windowBits: 15, takeover: true, maxOutput: maxPayload }) : null;
    this.maxPayload = maxPayload;
  }
  readonly maxPayload: number;

  get stateful(): boolean {
    return this.#deflater !== null || this.#inflater !== null;
  }

  /** True when this connection compresses the same bytes the same way as any other stateless one. */
  get sharedOutput(): boolean {
    return this.#deflater === null;
  }

  deflate(data: Uint8Array): Buffer {
    return this.#deflater
      ? this.#deflater.deflate(data)
      : this.shared.deflater(this.agreement.serverWindowBits, this.opts.level).deflate(data);
  }

  inflate(data: Uint8Array): Buffer {
    return this.#inflater ? this.#inflater.inflate(data) : this.shared.inflate(data, this.maxPayload);
  }

  /**
   * Frees this connection's deflater and inflater now (called when the connection closes): their
   * zlib state (~300 KB with a 2^15 window) must not wait for the garbage collector, which does not
   * see it soon enough when many short connections come and go. Idempotent.
   */
  close(): void {
    this.#deflater?.close();
    this.#inflater?.close();
  }
}

/** Stateless deflaters shared by every no-takeover connection of a server, plus the context bound. */
export class SharedDeflate {
  #deflaters = new Map<number, Deflater>();
  #inflaters = new Map<number, Inflater>();
  #contexts = 0;
  constructor(readonly codec: Codec) {}

  deflater(windowBits: number, level: number): Deflater {
    const key = windowBits * 16 + level;
    let d = this.#deflaters.get(key);
    if (!d) {
      d = this.codec.createDeflater({ level, windowBits, takeover: false });
      this.#deflaters.set(key, d);
    }
    return d;
  }

  /**
   * Stateless inflation with a reused no-takeover inflater (about half the cost of the one-shot
   * `codec.inflate` here). An inflater that failed is dropped: it may refuse further input.
   */
  inflate(data: Uint8Array, maxOutput: number): Buffer {
    let inflater = this.#inflaters.get(maxOutput);
    if (!inflater) {
      inflater = this.codec.createInflater({ windowBits: 15, takeover: false, maxOutput });
      this.#inflaters.set(maxOutput, inflater);
    }
    try {
      return inflater.inflate(data);
    } catch (error) {
      this.#inflaters.delete(maxOutput);
      inflater.close();
      throw error;
    }
  }

  /** Contexts in use right now. */
  get contexts(): number {
    return this.#contexts;
  }
  canHoldContext(max: number): boolean {
    return this.#contexts < max;
  }
  acquire(): void {
    this.#contexts++;
  }
  release(): void {
    this.#contexts--;
  }
}
