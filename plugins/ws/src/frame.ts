/**
 * RFC 6455 framing. Server frames are never masked, so a frame is a few header bytes followed by
 * the payload: built once, the same Buffer can be written to any number of sockets.
 */

export const OP_CONT = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

export function headerLength(payloadLength: number): number {
  return payloadLength < 126 ? 2 : payloadLength < 0x10000 ? 4 : 10;
}

/** Writes a final-frame header for `len` bytes into `out` at 0; returns its length. */
export function writeHeader(out: Buffer, opcode: number, len: number, rsv1: boolean): number {
  out[0] = 0x80 | (rsv1 ? 0x40 : 0) | opcode;
  if (len < 126) {
    out[1] = len;
    return 2;
  }
  if (len < 0x10000) {
    out[1] = 126;
    out.writeUInt16BE(len, 2);
    return 4;
  }
  out[1] = 127;
  out.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
  out.writeUInt32BE(len >>> 0, 6);
  return 10;
}

/** One unfragmented frame: header and payload in a single Buffer. */
export function buildFrame(opcode: number, payload: Uint8Array, rsv1 = false): Buffer {
  const h = headerLength(payload.length);
  const out = Buffer.allocUnsafe(h + payload.length);
  writeHeader(out, opcode, payload.length, rsv1);
  out.set(payload, h);
  return out;
}

/** Just the header, for large payloads written separately (no copy). */
export function buildHeader(opcode: number, len: number, rsv1 = false): Buffer {
  const out = Buffer.allocUnsafe(headerLength(len));
  writeHeader(out, opcode, len, rsv1);
  return out;
}

/** Close frame payload: code + UTF-8 reason, the reason cut to fit the 125-byte control limit. */
export function closePayload(code: number | undefined, reason = ''): Buffer {
  if (code === undefined || code === 1005) return Buffer.alloc(0);
  let r = Buffer.from(reason, 'utf8');
  if (r.length > 123) {
    // Cut on a character boundary so the peer's UTF-8 check passes.
    let end = 123;
    while (end > 0 && ((r[end] as number) & 0xc0) === 0x80) end--;
    r = r.subarray(0, end);
  }
  const out = Buffer.allocUnsafe(2 + r.length);
  out.writeUInt16BE(code, 0);
  r.copy(out, 2);
  return out;
}

/** Close codes a peer may send (RFC 6455 §7.4, IANA registry); others are a protocol error. */
export function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/** Unmasks `data` in place; `offset` is where `data` starts in the frame payload (streamed payloads). */
export function unmask(data: Buffer, key: Buffer, offset = 0): void {
  const r = offset & 3;
  const mask =
    r === 0 ? key : Buffer.from([key[r] as number, key[(r + 1) & 3] as number, key[(r + 2) & 3] as number, key[(r + 3) & 3] as number]);
  const n = data.length;
  const m0 = mask[0] as number;
  const m1 = mask[1] as number;
  const m2 = mask[2] as number;
  const m3 = mask[3] as number;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    data[i] = (data[i] as number) ^ m0;
    data[i + 1] = (data[i + 1] as number) ^ m1;
    data[i + 2] = (data[i + 2] as number) ^ m2;
    data[i + 3] = (data[i + 3] as number) ^ m3;
  }
  for (; i < n; i++) data[i] = (data[i] as number) ^ (mask[i & 3] as number);
}
