/** Byte-level helpers for tests that must write what well-behaved clients never would. */

export interface FrameOptions {
  /** FIN bit (default true). */
  fin?: boolean;
  /** RSV1..3 as a 3-bit value: 4 is RSV1 (permessage-deflate), 2 is RSV2. */
  rsv?: number;
  /** Masking key (default 11 22 33 44), or false for an unmasked frame. */
  mask?: readonly number[] | false;
}

/** One RFC 6455 frame as a client sends it: masked unless told otherwise, any opcode and RSV bits. */
export function wsFrame(opcode: number, payload: Buffer | string, opts: FrameOptions = {}): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const len = data.length;
  const head = Buffer.alloc(len < 126 ? 2 : len < 65536 ? 4 : 10);
  head[0] = ((opts.fin ?? true) ? 0x80 : 0) | ((opts.rsv ?? 0) << 4) | opcode;
  if (len < 126) head[1] = len;
  else if (len < 65536) {
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  if (opts.mask === false) return Buffer.concat([head, data]);
  head[1] = (head[1] as number) | 0x80;
  const key = Buffer.from(opts.mask ?? [0x11, 0x22, 0x33, 0x44]);
  const masked = Buffer.from(data);
  for (let i = 0; i < masked.length; i++) masked[i] = (masked[i] as number) ^ (key[i & 3] as number);
  return Buffer.concat([head, key, masked]);
}

/** mulberry32: a small seeded generator, so a failing random case is reproducible from its seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface ServerFrame {
  opcode: number;
  rsv1: boolean;
  payload: Buffer;
}

/**
 * Splits unmasked (server-to-client) frames off the front of `buf`, handing each to `onFrame`;
 * returns the incomplete tail to keep for the next chunk.
 */
export function readFrames(buf: Buffer, onFrame: (frame: ServerFrame) => void): Buffer {
  let b = buf;
  for (;;) {
    if (b.length < 2) return b;
    let len = (b[1] as number) & 0x7f;
    let off = 2;
    if (len === 126) {
      if (b.length < 4) return b;
      len = b.readUInt16BE(2);
      off = 4;
    } else if (len === 127) {
      if (b.length < 10) return b;
      len = Number(b.readBigUInt64BE(2));
      off = 10;
    }
    if (b.length < off + len) return b;
    const head = b[0] as number;
    const payload = b.subarray(off, off + len);
    b = b.subarray(off + len);
    onFrame({ opcode: head & 0x0f, rsv1: (head & 0x40) !== 0, payload });
  }
}
