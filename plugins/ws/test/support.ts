/**
 * Support for @mega/ws's own suites: a project writer with @mega/http and @mega/ws, and the clients
 * the test kit deliberately lacks. `Client` is the `ws` package's client (its own API, readyState
 * and permessage-deflate, for interop); `RawClient` writes frames no well-behaved client sends
 * (unmasked, bad opcodes, no pongs). Boot with `bootProject` from @mega/testing.
 */
import { writeProject } from '@mega/testing';
import WebSocket from 'ws';
import { Inbox } from '../../../scripts/test/inbox.js';
import { readFrames, wsFrame } from '../../../scripts/test/wire.js';

/** A project with its app at the root and these plugins (TS source of the `plugins` array). */
export function project(files: Record<string, string>, plugins = "['@mega/http', '@mega/ws']"): string {
  return writeProject(
    {
      'mega.config.ts': `export default { plugins: ${plugins} };\n`,
      'app.config.ts': 'export default {};\n',
      ...files,
    },
    { prefix: 'mega-ws-' },
  );
}

/** A `ws` client that collects parsed messages (`{ raw }` for non-JSON) and waits for them. */
export class Client extends Inbox<Record<string, any>> {
  /** Response headers of the handshake. */
  headers: Record<string, string | string[] | undefined> = {};
  closed: Promise<{ code: number; reason: string }>;
  constructor(readonly ws: WebSocket) {
    super();
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? `<binary ${(data as Buffer).length}>` : data.toString();
      let m: Record<string, any>;
      try {
        m = JSON.parse(text);
      } catch {
        m = { raw: text };
      }
      this.deliver(m);
    });
    this.closed = new Promise((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
  }
  static async open(url: string, options: WebSocket.ClientOptions & { protocols?: string | string[] } = {}): Promise<Client> {
    const { protocols, ...rest } = options;
    const ws = new WebSocket(url, protocols, rest);
    const c = new Client(ws);
    ws.once('upgrade', (res) => (c.headers = res.headers));
    await new Promise<void>((ok, fail) => {
      ws.once('open', () => ok());
      ws.once('error', fail);
      ws.once('unexpected-response', (_req, res) =>
        fail(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode, res })),
      );
    });
    return c;
  }
  send(m: unknown): void {
    this.ws.send(typeof m === 'string' ? m : JSON.stringify(m));
  }
  ofType(type: string, timeoutMs?: number) {
    return this.next((m) => m.type === type, timeoutMs);
  }
  close(): Promise<{ code: number; reason: string }> {
    this.ws.close();
    return this.closed;
  }
}

/** Resolves with the HTTP status of a refused upgrade, and its JSON body. */
export function refused(
  url: string,
  options: WebSocket.ClientOptions & { protocols?: string | string[] } = {},
): Promise<{ status: number; body: any }> {
  const { protocols, ...rest } = options;
  const ws = new WebSocket(url, protocols, rest);
  return new Promise((done, fail) => {
    ws.once('open', () => fail(new Error('upgrade unexpectedly succeeded')));
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c));
      res.on('end', () => done({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
    });
    ws.once('error', () => undefined);
  });
}

/** A hand-rolled client for what `ws` refuses to send: unmasked frames, bad opcodes, no pongs. */
export class RawClient {
  readonly frames: Array<{ opcode: number; rsv1: boolean; payload: Buffer }> = [];
  #buf: Buffer = Buffer.alloc(0);
  #waiters: Array<() => void> = [];
  ended: Promise<void>;
  response = '';
  private constructor(readonly socket: import('node:net').Socket) {
    this.ended = new Promise((r) => socket.once('close', () => r()));
  }
  static async open(port: number, path: string, extraHeaders: Record<string, string> = {}): Promise<RawClient> {
    const net = await import('node:net');
    const socket = net.connect(port, '127.0.0.1');
    const c = new RawClient(socket);
    socket.on('error', () => undefined);
    await new Promise<void>((r) => socket.once('connect', () => r()));
    const headers = {
      Host: `127.0.0.1:${port}`,
      Upgrade: 'websocket',
      Connection: 'Upgrade',
      'Sec-WebSocket-Key': Buffer.from('0123456789abcdef').toString('base64'),
      'Sec-WebSocket-Version': '13',
      ...extraHeaders,
    };
    socket.write(
      `GET ${path} HTTP/1.1\r\n${Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('')}\r\n`,
    );
    let head = Buffer.alloc(0);
    await new Promise<void>((done, fail) => {
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        socket.off('data', onData);
        c.response = head.subarray(0, end).toString();
        if (!c.response.startsWith('HTTP/1.1 101')) return fail(new Error(c.response));
        socket.on('data', (d: Buffer) => c.#push(d));
        c.#push(head.subarray(end + 4));
        done();
      };
      socket.on('data', onData);
    });
    return c;
  }
  #push(d: Buffer): void {
    this.#buf = readFrames(Buffer.concat([this.#buf, d]), (f) => this.frames.push(f));
    for (const w of this.#waiters.splice(0)) w();
  }
  /** Writes one frame; masked with key 01 02 03 04 unless told otherwise. */
  frame(opcode: number, payload: Buffer | string, opts: { mask?: boolean; fin?: boolean; rsv?: number } = {}): void {
    const { mask, ...rest } = opts;
    this.socket.write(wsFrame(opcode, payload, { ...rest, mask: mask === false ? false : [1, 2, 3, 4] }));
  }
  async nextFrame(pred: (f: { opcode: number; payload: Buffer }) => boolean = () => true, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i !== -1) return this.frames.splice(i, 1)[0] as { opcode: number; rsv1: boolean; payload: Buffer };
      if (Date.now() > deadline) throw new Error(`no matching frame; have ${this.frames.map((f) => f.opcode).join(',')}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
  /** Completes a closing handshake from the client side. */
  async close(): Promise<void> {
    this.frame(8, Buffer.from([0x03, 0xe8]));
    await this.ended;
  }
  /** The close code the server sent (waits for the close frame). */
  async closeCode(timeoutMs = 5000): Promise<number> {
    const f = await this.nextFrame((x) => x.opcode === 8, timeoutMs);
    return f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005;
  }
}
