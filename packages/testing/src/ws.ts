/**
 * A minimal RFC 6455 client that speaks Mega's envelope, over node:http's upgrade: any headers
 * (Origin, Cookie, Authorization), subprotocol offers, fragmented messages, pings answered, close
 * codes reported. Written here rather than taken from the `ws` package so the kit needs no
 * WebSocket dependency; it offers no extensions (no permessage-deflate).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import type { Loose } from './loose.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** An inbound message: the parsed envelope, or `type: ''` when the frame was not one (`raw` has it). */
export interface WsMessage<P = Loose> {
  type: string;
  /** The id echoed from the request; `null` on an `error` answering a frame that had none. */
  id?: string | null;
  ns?: string;
  payload?: P;
  /** The message as received: a string for text frames, a Buffer for binary ones. */
  raw: string | Buffer;
}

export interface WsClose {
  /** The close code the server sent; 1005 when its close frame had none, 1006 when the connection dropped without one. */
  code: number;
  reason: string;
}

export interface WsOptions {
  headers?: Record<string, string>;
  /** `Sec-WebSocket-Protocol` offers, e.g. `'mega.v1'`. */
  protocols?: string | string[];
  /** Shorthand for the Origin header. */
  origin?: string;
  /** Handshake timeout (default 10 s). */
  timeoutMs?: number;
}

/** A refused upgrade: the HTTP status and, for Mega's JSON refusals, the error code. */
export class WsHandshakeError extends Error {
  constructor(
    readonly status: number,
    readonly headers: IncomingHttpHeaders,
    readonly body: string,
    readonly code: string | undefined,
  ) {
    super(`WebSocket upgrade refused: HTTP ${status}${code ? ` ${code}` : ''}`);
    this.name = 'WsHandshakeError';
  }
}

type Matcher = (m: WsMessage) => boolean;

export class WsClient {
  /** Messages received and not yet taken by `next`/`waitFor`, oldest first. */
  readonly messages: WsMessage[] = [];
  /** Resolves once the connection is closed, with the code the server sent. */
  readonly closed: Promise<WsClose>;
  #socket: Socket;
  #buffer: Buffer = Buffer.alloc(0);
  #fragments: Buffer[] = [];
  #fragmentOpcode = 0;
  #waiters = new Set<{ pred: Matcher; done: (m: WsMessage) => void }>();
  #pongs: Array<() => void> = [];
  #closeSent = false;
  #closeInfo: WsClose | undefined;
  #resolveClosed: (info: WsClose) => void = () => undefined;
  #ids = 0;

  private constructor(
    socket: Socket,
    head: Buffer,
    /** The handshake response's headers. */
    readonly headers: IncomingHttpHeaders,
  ) {
    this.#socket = socket;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#read(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => this.#finish(this.#closeInfo ?? { code: 1006, reason: '' }));
    if (head.length) this.#read(head);
  }

  /** Opens `url` (`ws://host:port/path`). Rejects with {@link WsHandshakeError} when the server refuses the upgrade. */
  static open(url: string, options: WsOptions = {}): Promise<WsClient> {
    const target = new URL(url);
    const key = randomBytes(16).toString('base64');
    const protocols = options.protocols === undefined ? [] : [options.protocols].flat();
    const headers: Record<string, string> = {
      connection: 'Upgrade',
      upgrade: 'websocket',
      'sec-websocket-key': key,
      'sec-websocket-version': '13',
      ...(protocols.length ? { 'sec-websocket-protocol': protocols.join(', ') } : {}),
      ...(options.origin ? { origin: options.origin } : {}),
      ...options.headers,
    };
    return new Promise((resolve, reject) => {
      const req = request({
        host: target.hostname,
        port: target.port || 80,
        path: `${target.pathname}${target.search}`,
        headers,
        agent: false,
        timeout: options.timeoutMs ?? 10_000,
      });
      req.on('upgrade', (res, socket, head) => {
        const expected = createHash('sha1')
          .update(key + GUID)
          .digest('base64');
        if (res.headers['sec-websocket-accept'] !== expected) {
          socket.destroy();
          reject(new Error('WebSocket upgrade: wrong Sec-WebSocket-Accept'));
          return;
        }
        req.setTimeout(0);
        resolve(new WsClient(socket, head, res.headers));
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          let code: string | undefined;
          try {
            code = (JSON.parse(body) as { error?: { code?: string } }).error?.code;
          } catch {
            code = undefined;
          }
          reject(new WsHandshakeError(res.statusCode ?? 0, res.headers, body, code));
        });
      });
      req.on('timeout', () => req.destroy(new Error(`WebSocket upgrade to ${url}: no answer within ${options.timeoutMs ?? 10_000} ms`)));
      req.on('error', reject);
      req.end();
    });
  }

  /** The subprotocol the server chose (`Sec-WebSocket-Protocol` of the handshake). */
  get protocol(): string | undefined {
    const value = this.headers['sec-websocket-protocol'];
    return typeof value === 'string' ? value : undefined;
  }

  /** True until a close frame was sent or received, or the socket dropped. */
  get isOpen(): boolean {
    return !this.#closeSent && this.#closeInfo === undefined && !this.#socket.destroyed;
  }

  /** Sends an envelope `{ type, id?, payload? }`. */
  send(type: string, payload?: unknown, extra: { id?: string; ns?: string } = {}): void {
    this.sendRaw(JSON.stringify({ type, ...extra, ...(payload === undefined ? {} : { payload }) }));
  }

  /** Sends `payload` with a fresh `id` and resolves with the answer carrying that id (a reply or an `error`). */
  request(type: string, payload?: unknown, timeoutMs?: number): Promise<WsMessage> {
    const id = `t${++this.#ids}`;
    this.send(type, payload, { id });
    return this.waitFor((m) => m.id === id, timeoutMs);
  }

  /** Sends a text frame (a string) or a binary frame (a Buffer) as is. */
  sendRaw(data: string | Buffer): void {
    this.#write(typeof data === 'string' ? 1 : 2, typeof data === 'string' ? Buffer.from(data) : data);
  }

  /** The next message (of `type`, when given), taken from the queue or awaited. */
  next(type?: string, timeoutMs?: number): Promise<WsMessage> {
    return this.waitFor(type === undefined ? () => true : (m) => m.type === type, timeoutMs);
  }

  /** The first message matching `pred`, taken from the queue or awaited; rejects after `timeoutMs` (default 5 s). */
  waitFor(pred: Matcher, timeoutMs = 5000): Promise<WsMessage> {
    const index = this.messages.findIndex(pred);
    if (index !== -1) return Promise.resolve(this.messages.splice(index, 1)[0] as WsMessage);
    return new Promise((resolve, reject) => {
      const waiter = {
        pred,
        done: (m: WsMessage) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        const seen = this.messages.map((m) => m.type || String(m.raw).slice(0, 80));
        reject(new Error(`no matching WebSocket message within ${timeoutMs} ms; queued: ${JSON.stringify(seen)}`));
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  /** Sends a ping and resolves when its pong arrives. */
  ping(data: Buffer | string = ''): Promise<void> {
    return new Promise((resolve) => {
      this.#pongs.push(resolve);
      this.#write(9, Buffer.from(data));
    });
  }

  /** Starts the closing handshake and resolves with the server's close code once the connection is closed. */
  close(code = 1000, reason = ''): Promise<WsClose> {
    if (this.isOpen) {
      const body = Buffer.alloc(2 + Buffer.byteLength(reason));
      body.writeUInt16BE(code, 0);
      body.write(reason, 2);
      this.#write(8, body);
      this.#closeSent = true;
      // A server that never answers the close frame must not hang the test.
      setTimeout(() => this.#socket.destroy(), 2000).unref();
    }
    return this.closed;
  }

  /** Drops the TCP connection without a closing handshake. */
  terminate(): void {
    this.#socket.destroy();
  }

  #write(opcode: number, payload: Buffer): void {
    if (this.#socket.destroyed || (this.#closeSent && opcode !== 10)) return;
    const length = payload.length;
    const head = Buffer.alloc(length < 126 ? 6 : length < 65536 ? 8 : 14);
    head[0] = 0x80 | opcode;
    if (length < 126) head[1] = 0x80 | length;
    else if (length < 65536) {
      head[1] = 0x80 | 126;
      head.writeUInt16BE(length, 2);
    } else {
      head[1] = 0x80 | 127;
      head.writeBigUInt64BE(BigInt(length), 2);
    }
    const mask = randomBytes(4);
    mask.copy(head, head.length - 4);
    const masked = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; i++) masked[i] = (payload[i] as number) ^ (mask[i & 3] as number);
    this.#socket.write(Buffer.concat([head, masked]));
  }

  #read(chunk: Buffer): void {
    let b = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
    for (;;) {
      if (b.length < 2) break;
      let length = (b[1] as number) & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (b.length < 4) break;
        length = b.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (b.length < 10) break;
        length = Number(b.readBigUInt64BE(2));
        offset = 10;
      }
      if (b.length < offset + length) break;
      const first = b[0] as number;
      const payload = b.subarray(offset, offset + length);
      b = b.subarray(offset + length);
      this.#frame((first & 0x80) !== 0, first & 0x0f, Buffer.from(payload));
    }
    this.#buffer = b;
  }

  #frame(fin: boolean, opcode: number, payload: Buffer): void {
    if (opcode === 8) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      this.#closeInfo ??= { code, reason: payload.subarray(2).toString('utf8') };
      if (!this.#closeSent) {
        this.#write(8, payload.subarray(0, 2));
        this.#closeSent = true;
      }
      this.#socket.end();
      return;
    }
    if (opcode === 9) {
      this.#write(10, payload);
      return;
    }
    if (opcode === 10) {
      this.#pongs.shift()?.();
      return;
    }
    if (opcode !== 0) this.#fragmentOpcode = opcode;
    this.#fragments.push(payload);
    if (!fin) return;
    const data = this.#fragments.length === 1 ? payload : Buffer.concat(this.#fragments);
    this.#fragments = [];
    this.#deliver(this.#fragmentOpcode === 1 ? data.toString('utf8') : data);
  }

  #deliver(raw: string | Buffer): void {
    let message: WsMessage = { type: '', raw };
    if (typeof raw === 'string') {
      try {
        const parsed = JSON.parse(raw) as unknown;
        if (parsed && typeof parsed === 'object' && typeof (parsed as { type?: unknown }).type === 'string') {
          message = { ...(parsed as Omit<WsMessage, 'raw'>), raw };
        }
      } catch {
        // not an envelope: delivered with type ''
      }
    }
    for (const w of this.#waiters) {
      if (!w.pred(message)) continue;
      this.#waiters.delete(w);
      w.done(message);
      return;
    }
    this.messages.push(message);
  }

  #finish(info: WsClose): void {
    this.#closeInfo = info;
    this.#resolveClosed(info);
  }
}
