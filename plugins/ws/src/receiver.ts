/**
 * Incremental RFC 6455 frame parser for the server side (client frames must be masked). It buffers
 * socket chunks without concatenating them until a frame's bytes are all there, and reports
 * protocol violations as a close code (1002 protocol error, 1007 invalid UTF-8, 1009 too big or too
 * many fragments) instead of throwing. Payloads are unmasked in place: push buffers the reader may
 * own (socket chunks are).
 *
 * A message that is fragmented, or whose frame arrives in several chunks, is copied as it arrives
 * into one growing buffer (bounded by `maxPayload`): a fragment costs its bytes and nothing per
 * fragment, and the chunks it came in are released at once. Uncompressed text is checked for UTF-8
 * as it arrives, so an invalid sequence fails the connection (1007) in the fragment or chunk that
 * carries it, not at the end of the message (Autobahn 6.4.x, strict). Inflated text is checked by
 * the connection after inflation. A frame that is whole in the buffer and is a message of its own
 * takes the zero-copy path.
 */
import { isUtf8 } from 'node:buffer';
import { isValidCloseCode, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, unmask } from './frame.js';

export interface FrameSink {
  /** `data` of an uncompressed text message is valid UTF-8 (checked here); compressed data is not inflated. */
  onMessage(binary: boolean, data: Buffer, compressed: boolean): void;
  onPing(data: Buffer): void;
  onPong(data: Buffer): void;
  /** `code` 1005 means the close frame had no status. */
  onCloseFrame(code: number, reason: Buffer): void;
  /** The peer broke the protocol: fail the connection with this close code. */
  onViolation(code: number, reason: string): void;
}

export interface ReaderLimits {
  /** Largest message (after reassembly; compressed size) accepted: over it, 1009. */
  maxPayload: number;
  /** RSV1 is meaningful only when permessage-deflate was negotiated. */
  rsv1Allowed: boolean;
  /** Frames one message may span: one more is 1009. Default unbounded. */
  maxFragments?: number;
}

enum State {
  Header,
  Length16,
  Length64,
  Mask,
  Payload,
  Dead,
}

const EMPTY = Buffer.alloc(0);
/** First capacity of a message buffer; it doubles from there, capped by maxPayload. */
const MIN_CAPACITY = 1024;

export class FrameReader {
  #chunks: Buffer[] = [];
  #buffered = 0;
  #state = State.Header;
  #fin = false;
  #rsv1 = false;
  #opcode = 0;
  #length = 0;
  #mask: Buffer = EMPTY;
  /** Payload bytes of the current frame already copied into the message buffer. */
  #frameDone = 0;
  /** A data message is in progress (fragmented, or its frame is being streamed). */
  #inMessage = false;
  #msgBinary = false;
  #msgCompressed = false;
  #msgFragments = 0;
  #msg: Buffer = EMPTY;
  #msgLength = 0;
  /** Message bytes checked as UTF-8: always a code point boundary. */
  #utf8Done = 0;
  readonly #maxPayload: number;
  readonly #rsv1Allowed: boolean;
  readonly #maxFragments: number;

  constructor(
    private readonly sink: FrameSink,
    limits: ReaderLimits | number,
    /** Legacy positional form: `(sink, maxPayload, rsv1Allowed)`. */
    rsv1Allowed = false,
  ) {
    const l = typeof limits === 'number' ? { maxPayload: limits, rsv1Allowed } : limits;
    this.#maxPayload = l.maxPayload;
    this.#rsv1Allowed = l.rsv1Allowed;
    this.#maxFragments = l.maxFragments ?? Number.POSITIVE_INFINITY;
  }

  /** Stops parsing for good (after a close frame or a violation). */
  stop(): void {
    this.#state = State.Dead;
    this.#chunks = [];
    this.#buffered = 0;
    this.#inMessage = false;
    this.#msg = EMPTY;
  }

  push(chunk: Buffer): void {
    if (this.#state === State.Dead || chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    for (;;) {
      switch (this.#state) {
        case State.Header:
          if (this.#buffered < 2) return;
          if (!this.#header()) return;
          break;
        case State.Length16:
          if (this.#buffered < 2) return;
          this.#length = this.#take(2).readUInt16BE(0);
          if (!this.#afterLength()) return;
          break;
        case State.Length64: {
          if (this.#buffered < 8) return;
          const b = this.#take(8);
          const high = b.readUInt32BE(0);
          // RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0.
          if (high >= 0x80000000) return void this.#violate(1002, '64-bit payload length with the most significant bit set');
          // Anything past 2^53 is far beyond any maxPayload; refuse before doing arithmetic on it.
          if (high > 0x1fffff) return void this.#violate(1009, 'frame too large');
          this.#length = high * 2 ** 32 + b.readUInt32BE(4);
          if (!this.#afterLength()) return;
          break;
        }
        case State.Mask:
          if (this.#buffered < 4) return;
          this.#mask = this.#take(4);
          this.#state = State.Payload;
          this.#frameDone = 0;
          break;
        case State.Payload: {
          const op = this.#opcode;
          const rest = this.#length - this.#frameDone;
          if (op < 0x8 && (this.#inMessage || this.#buffered < rest)) {
            // Streamed: a fragment of a message, or a frame whose payload is still arriving.
            if (!this.#stream()) return;
            if (this.#frameDone < this.#length) return;
            this.#state = State.Header;
            if (this.#fin && !this.#endMessage()) return;
            break;
          }
          if (this.#buffered < rest) return;
          const data = this.#length === 0 ? EMPTY : this.#take(this.#length);
          if (data.length) unmask(data, this.#mask);
          this.#state = State.Header;
          this.#frame(data);
          if ((this.#state as State) === State.Dead) return;
          break;
        }
        default:
          return;
      }
    }
  }

  /** Fails the connection; returns false so parse steps can `return this.#violate(...)`. */
  #violate(code: number, reason: string): false {
    this.stop();
    this.sink.onViolation(code, reason);
    return false;
  }

  /** Parses the two fixed header bytes; false when parsing must stop. */
  #header(): boolean {
    const b = this.#take(2);
    const b0 = b[0] as number;
    const b1 = b[1] as number;
    this.#fin = (b0 & 0x80) !== 0;
    this.#rsv1 = (b0 & 0x40) !== 0;
    this.#opcode = b0 & 0x0f;
    if ((b0 & 0x30) !== 0) return this.#violate(1002, 'RSV2 and RSV3 must be clear');
    if ((b1 & 0x80) === 0) return this.#violate(1002, 'client frames must be masked');
    const op = this.#opcode;
    const control = op >= 0x8;
    if (control) {
      if (op !== OP_CLOSE && op !== OP_PING && op !== OP_PONG) return this.#violate(1002, `unknown opcode ${op}`);
      if (!this.#fin) return this.#violate(1002, 'control frames must not be fragmented');
      if (this.#rsv1) return this.#violate(1002, 'RSV1 must be clear on control frames');
    } else if (op === OP_CONT) {
      if (!this.#inMessage) return this.#violate(1002, 'continuation frame without a message in progress');
      if (this.#rsv1) return this.#violate(1002, 'RSV1 must be clear on continuation frames');
      if (++this.#msgFragments > this.#maxFragments) return this.#violate(1009, `message exceeds ${this.#maxFragments} fragments`);
    } else if (op === OP_TEXT || op === OP_BINARY) {
      if (this.#inMessage) return this.#violate(1002, 'new message before the previous one finished');
      if (this.#rsv1 && !this.#rsv1Allowed) return this.#violate(1002, 'RSV1 set but no extension negotiated');
      this.#msgFragments = 1;
    } else return this.#violate(1002, `unknown opcode ${op}`);
    const len7 = b1 & 0x7f;
    if (control && len7 > 125) return this.#violate(1002, 'control frame payload over 125 bytes');
    if (len7 === 126) this.#state = State.Length16;
    else if (len7 === 127) this.#state = State.Length64;
    else {
      this.#length = len7;
      return this.#afterLength();
    }
    return true;
  }

  #afterLength(): boolean {
    const op = this.#opcode;
    if (op < 0x8) {
      if ((this.#inMessage ? this.#msgLength : 0) + this.#length > this.#maxPayload) {
        return this.#violate(1009, `message exceeds ${this.#maxPayload} bytes`);
      }
      // The first frame of a fragmented message opens it.
      if (op !== OP_CONT && !this.#fin) this.#open();
    }
    this.#state = State.Mask;
    return true;
  }

  /** Starts a message assembled in the growing buffer (its kind comes from the current frame). */
  #open(): void {
    this.#inMessage = true;
    this.#msgBinary = this.#opcode === OP_BINARY;
    this.#msgCompressed = this.#rsv1;
    this.#msg = EMPTY;
    this.#msgLength = 0;
    this.#utf8Done = 0;
  }

  /** Copies what is buffered of the current data frame into the message; false when it failed the connection. */
  #stream(): boolean {
    if (!this.#inMessage) this.#open();
    const n = Math.min(this.#buffered, this.#length - this.#frameDone);
    if (n === 0) return true;
    const part = this.#take(n);
    unmask(part, this.#mask, this.#frameDone);
    this.#frameDone += n;
    const need = this.#msgLength + n;
    if (need > this.#msg.length) {
      // Doubling keeps copies linear; the cap keeps a message within maxPayload bytes.
      const cap = Math.min(Math.max(need, this.#msg.length * 2, MIN_CAPACITY), this.#maxPayload);
      const grown = Buffer.allocUnsafe(Math.max(cap, need));
      this.#msg.copy(grown, 0, 0, this.#msgLength);
      this.#msg = grown;
    }
    part.copy(this.#msg, this.#msgLength);
    this.#msgLength = need;
    if (!this.#msgBinary && !this.#msgCompressed) return this.#checkUtf8(false);
    return true;
  }

  /** Delivers the message assembled in the buffer (its last frame is complete). */
  #endMessage(): boolean {
    if (!this.#msgBinary && !this.#msgCompressed && !this.#checkUtf8(true)) return false;
    const data = this.#msg.subarray(0, this.#msgLength);
    this.#inMessage = false;
    this.#msg = EMPTY;
    this.#msgLength = 0;
    this.sink.onMessage(this.#msgBinary, data, this.#msgCompressed);
    return this.#state !== State.Dead;
  }

  /**
   * Checks the message bytes not checked yet. A sequence cut by the end of what arrived is held
   * back, but only if it can still become valid: `f4 90` fails now, `f4 8f` waits for more.
   */
  #checkUtf8(final: boolean): boolean {
    const b = this.#msg;
    const end = this.#msgLength;
    let cut = end;
    // The last lead byte within the final 3 bytes: a sequence it starts may be incomplete.
    for (let i = end - 1; i >= Math.max(this.#utf8Done, end - 3); i--) {
      const c = b[i] as number;
      if ((c & 0xc0) === 0x80) continue;
      if (c >= 0xc0 && i + seqLength(c) > end) cut = i;
      break;
    }
    if (cut > this.#utf8Done && !isUtf8(b.subarray(this.#utf8Done, cut))) {
      return this.#violate(1007, 'text message is not valid UTF-8');
    }
    this.#utf8Done = cut;
    if (cut === end) return true;
    if (final || !validPrefix(b, cut, end)) return this.#violate(1007, 'text message is not valid UTF-8');
    return true;
  }

  #frame(data: Buffer): void {
    const op = this.#opcode;
    if (op === OP_PING) {
      this.sink.onPing(data);
      return;
    }
    if (op === OP_PONG) {
      this.sink.onPong(data);
      return;
    }
    if (op === OP_CLOSE) {
      this.stop();
      if (data.length === 0) this.sink.onCloseFrame(1005, EMPTY);
      else if (data.length === 1) this.sink.onViolation(1002, 'close frame with a 1-byte payload');
      else {
        const code = data.readUInt16BE(0);
        if (isValidCloseCode(code)) this.sink.onCloseFrame(code, data.subarray(2));
        else this.sink.onViolation(1002, `invalid close code ${code}`);
      }
      return;
    }
    // A whole single-frame message, already in the buffer: no copy.
    if (op === OP_TEXT && !this.#rsv1 && !isUtf8(data)) {
      this.#violate(1007, 'text message is not valid UTF-8');
      return;
    }
    this.sink.onMessage(op === OP_BINARY, data, this.#rsv1);
  }

  /** Removes `n` buffered bytes, copying only when they span chunks. */
  #take(n: number): Buffer {
    this.#buffered -= n;
    const first = this.#chunks[0] as Buffer;
    if (first.length === n) {
      this.#chunks.shift();
      return first;
    }
    if (first.length > n) {
      this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.#chunks[0] as Buffer;
      const want = n - off;
      if (c.length <= want) {
        c.copy(out, off);
        off += c.length;
        this.#chunks.shift();
      } else {
        c.copy(out, off, 0, want);
        this.#chunks[0] = c.subarray(want);
        off += want;
      }
    }
    return out;
  }
}

/** Bytes in the sequence a lead byte starts (invalid leads count 1: isUtf8 rejects them). */
function seqLength(lead: number): number {
  return lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
}

/** Whether b[from, end) (1-3 bytes, a lead and continuations) can begin a valid UTF-8 sequence. */
function validPrefix(b: Buffer, from: number, end: number): boolean {
  const lead = b[from] as number;
  if (lead < 0xc2 || lead > 0xf4) return false;
  if (end - from < 2) return true;
  const c1 = b[from + 1] as number;
  // Second-byte ranges that rule out overlongs, surrogates and code points past U+10FFFF (RFC 3629).
  const lo = lead === 0xe0 ? 0xa0 : lead === 0xf0 ? 0x90 : 0x80;
  const hi = lead === 0xed ? 0x9f : lead === 0xf4 ? 0x8f : 0xbf;
  if (c1 < lo || c1 > hi) return false;
  if (end - from < 3) return true;
  return ((b[from + 2] as number) & 0xc0) === 0x80;
}
