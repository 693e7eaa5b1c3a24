/**
 * Incremental RFC 6455 frame parser for the server side (client frames must be masked). It buffers
 * socket chunks without concatenating them until a frame's bytes are all there, reassembles
 * fragmented messages, and reports protocol violations as a close code (1002 protocol error,
 * 1009 too big) instead of throwing. UTF-8 and inflation are the connection's business.
 * Payloads are unmasked in place: push buffers the reader may own (socket chunks are).
 */
import { isValidCloseCode, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, unmask } from './frame.js';

export interface FrameSink {
  onMessage(binary: boolean, data: Buffer, compressed: boolean): void;
  onPing(data: Buffer): void;
  onPong(data: Buffer): void;
  /** `code` 1005 means the close frame had no status. */
  onCloseFrame(code: number, reason: Buffer): void;
  /** The peer broke the protocol: fail the connection with this close code. */
  onViolation(code: number, reason: string): void;
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

export class FrameReader {
  #chunks: Buffer[] = [];
  #buffered = 0;
  #state = State.Header;
  #fin = false;
  #rsv1 = false;
  #opcode = 0;
  #length = 0;
  #mask: Buffer = EMPTY;
  /** Fragments of the message in progress (data frames only). */
  #fragments: Buffer[] | null = null;
  #fragmentsLength = 0;
  #fragmentBinary = false;
  #fragmentCompressed = false;

  constructor(
    private readonly sink: FrameSink,
    /** Largest message (after reassembly; compressed size) accepted. */
    private readonly maxPayload: number,
    /** RSV1 is meaningful only when permessage-deflate was negotiated. */
    private readonly rsv1Allowed: boolean,
  ) {}

  /** Stops parsing for good (after a close frame or a violation). */
  stop(): void {
    this.#state = State.Dead;
    this.#chunks = [];
    this.#buffered = 0;
    this.#fragments = null;
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
          // Anything past 2^53 is far beyond any maxPayload; refuse before doing arithmetic on it.
          if (high > 0x1fffff) {
            this.#violate(1009, 'frame too large');
            return;
          }
          this.#length = high * 2 ** 32 + b.readUInt32BE(4);
          if (!this.#afterLength()) return;
          break;
        }
        case State.Mask:
          if (this.#buffered < 4) return;
          this.#mask = this.#take(4);
          this.#state = State.Payload;
          break;
        case State.Payload: {
          if (this.#buffered < this.#length) return;
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
      if (this.#fragments === null) return this.#violate(1002, 'continuation frame without a message in progress');
      if (this.#rsv1) return this.#violate(1002, 'RSV1 must be clear on continuation frames');
    } else if (op === OP_TEXT || op === OP_BINARY) {
      if (this.#fragments !== null) return this.#violate(1002, 'new message before the previous one finished');
      if (this.#rsv1 && !this.rsv1Allowed) return this.#violate(1002, 'RSV1 set but no extension negotiated');
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
    if (this.#opcode < 0x8 && this.#fragmentsLength + this.#length > this.maxPayload) {
      this.#violate(1009, `message exceeds ${this.maxPayload} bytes`);
      return false;
    }
    this.#state = State.Mask;
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
    if (this.#fin && this.#fragments === null) {
      this.sink.onMessage(op === OP_BINARY, data, this.#rsv1);
      return;
    }
    if (this.#fragments === null) {
      this.#fragments = [];
      this.#fragmentsLength = 0;
      this.#fragmentBinary = op === OP_BINARY;
      this.#fragmentCompressed = this.#rsv1;
    }
    this.#fragments.push(data);
    this.#fragmentsLength += data.length;
    if (!this.#fin) return;
    const whole = Buffer.concat(this.#fragments, this.#fragmentsLength);
    this.#fragments = null;
    this.#fragmentsLength = 0;
    this.sink.onMessage(this.#fragmentBinary, whole, this.#fragmentCompressed);
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
