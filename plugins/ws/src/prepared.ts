/**
 * A message serialised once for many recipients: the envelope bytes are built by the codec once,
 * the plain text frame once, and the compressed frame once per (window, level) for connections
 * without server context takeover. Connections with their own deflate context or an outbound
 * transform (ASP) derive their bytes from `envelope`.
 */
import type { Codec } from '@mega/kernel';
import { MegaError } from '@mega/kernel';
import type { SharedDeflate } from './deflate.js';
import { buildFrame, OP_TEXT } from './frame.js';
import type { OutboundMessage } from './types.js';

const EMPTY_OBJECT = Buffer.from('{}');

/** JSON bytes of an outbound payload (`{}` when absent). */
export function payloadBytes(payload: unknown): Buffer {
  if (payload === undefined) return EMPTY_OBJECT;
  const json = JSON.stringify(payload);
  if (json === undefined) throw new MegaError('ws.invalid_payload', 'payload must be JSON-serialisable');
  return Buffer.from(json, 'utf8');
}

export function encodeEnvelope(codec: Codec, msg: OutboundMessage): Buffer {
  return codec.encodeFrame(msg.type, msg.ns ?? null, payloadBytes(msg.payload), msg.id ?? null);
}

export class PreparedMessage {
  #frame: Buffer | undefined;
  #deflated: Map<number, Buffer> | undefined;

  constructor(
    /** The envelope JSON bytes. */
    readonly envelope: Buffer,
  ) {}

  static from(codec: Codec, msg: OutboundMessage): PreparedMessage {
    return new PreparedMessage(encodeEnvelope(codec, msg));
  }

  /** The uncompressed text frame, built on first use. */
  frame(): Buffer {
    this.#frame ??= buildFrame(OP_TEXT, this.envelope);
    return this.#frame;
  }

  /** The compressed frame for stateless deflate with this window and level, built once. */
  deflatedFrame(shared: SharedDeflate, windowBits: number, level: number): Buffer {
    const key = windowBits * 16 + level;
    this.#deflated ??= new Map();
    let f = this.#deflated.get(key);
    if (!f) {
      f = buildFrame(OP_TEXT, shared.deflater(windowBits, level).deflate(this.envelope), true);
      this.#deflated.set(key, f);
    }
    return f;
  }
}
