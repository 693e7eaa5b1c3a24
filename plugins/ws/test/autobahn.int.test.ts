/**
 * A7: @mega/ws's own conformance suite, derived from the case definitions of the Autobahn
 * testsuite (crossbario/autobahn-testsuite, autobahntestsuite/case/case*.py), sections 1-7 and 9:
 * framing, pings and pongs, reserved bits, opcodes, fragmentation, UTF-8, closing handshake and
 * limits. Autobahn's runner needs Python 2, so the cases are reimplemented here on raw sockets
 * against a booted @mega/ws echo server (a `wsMessage` tap echoes every message as it came, text as
 * text and binary as binary). Each case asserts Autobahn's strict outcome: the exact frames the
 * server answers, in order, then the close code and a TCP close by the server.
 *
 * Autobahn waits a second where a case says "wait"; here a wait is a barrier instead: the test polls
 * until the server has read every byte sent so far (no fixed sleeps), then checks it is still open.
 */
import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import type { Booted } from '@mega/testing';
import { bootProject, stopAll } from '@mega/testing';
import type { WsConnection, WsServer } from '@mega/ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wsFrame } from '../../../scripts/test/wire.js';
import { project } from './support.js';

const CHANNEL = `
export class Echo {
  ['ab.echoed']() {}
}
`;
const ROUTES = `
import { Echo } from '../channel.js';
export default (router: any) => {
  router.ws('/echo', Echo, { maxPayload: 16 * 1024 * 1024, maxFragments: 65_536, heartbeatMs: 0 });
};
`;
/** Echoes every message with its own opcode, then lets @mega/ws dispatch a no-op type. */
const ECHO = `
import { definePlugin } from '@mega/kernel';
function frame(op: number, data: Buffer): Buffer {
  const n = data.length;
  const head = Buffer.alloc(n < 126 ? 2 : n < 65536 ? 4 : 10);
  head[0] = 0x80 | op;
  if (n < 126) head[1] = n;
  else if (n < 65536) { head[1] = 126; head.writeUInt16BE(n, 2); }
  else { head[1] = 127; head.writeBigUInt64BE(BigInt(n), 2); }
  return Buffer.concat([head, data]);
}
export default definePlugin({
  name: 'autobahn-echo',
  version: '1.0.0',
  dependsOn: ['@mega/ws'],
  setup(api) {
    api.tap('wsMessage', (f: any) => {
      if (f.connection.isOpen) f.connection.socket.write(frame(f.binary ? 2 : 1, Buffer.from(f.data)));
      f.message = { type: 'ab.echoed' };
      return undefined;
    });
  },
});
`;

let booted: Booted;
let server: WsServer;
beforeAll(async () => {
  booted = await bootProject(
    project({ 'channel.ts': CHANNEL, 'routes/ws.ts': ROUTES, 'echo.ts': ECHO }, "['@mega/http', '@mega/ws', './echo.ts']"),
  );
  server = booted.kernel.use('ws');
});
afterAll(stopAll);

type Got = ['text' | 'binary' | 'ping' | 'pong', Buffer] | ['close', number | null, string];

/** A client on a raw socket: writes any frame, in any chops, and parses what the server answers. */
class Peer {
  readonly got: Got[] = [];
  readonly ended: Promise<void>;
  #chunks: Buffer[] = [];
  #have = 0;
  #written = 0;
  #conn!: WsConnection;
  #endedFlag = false;
  #wake: (() => void) | null = null;
  private constructor(readonly socket: Socket) {
    this.ended = new Promise((r) =>
      socket.once('close', () => {
        this.#endedFlag = true;
        this.#wake?.();
        r();
      }),
    );
  }

  static async open(): Promise<Peer> {
    const before = new Set(server.connections('/echo'));
    const socket = connect(booted.port, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise<void>((r) => socket.once('connect', () => r()));
    const p = new Peer(socket);
    socket.write(
      `GET /echo HTTP/1.1\r\nHost: 127.0.0.1:${booted.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${Buffer.from('autobahn-derived').toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    let head = Buffer.alloc(0);
    await new Promise<void>((done, fail) => {
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        socket.off('data', onData);
        const status = head.subarray(0, end).toString();
        if (!status.startsWith('HTTP/1.1 101')) return fail(new Error(status));
        socket.on('data', (d: Buffer) => p.#push(d));
        p.#push(head.subarray(end + 4));
        done();
      };
      socket.on('data', onData);
    });
    const conn = [...server.connections('/echo')].find((c) => !before.has(c));
    if (!conn) throw new Error('server connection not found');
    p.#conn = conn;
    return p;
  }

  #push(d: Buffer): void {
    if (d.length) {
      this.#chunks.push(d);
      this.#have += d.length;
    }
    for (;;) {
      if (this.#have < 2) break;
      const head = this.#peek(Math.min(this.#have, 10));
      let len = (head[1] as number) & 0x7f;
      let off = 2;
      if (len === 126) {
        if (head.length < 4) break;
        len = head.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (head.length < 10) break;
        len = Number(head.readBigUInt64BE(2));
        off = 10;
      }
      if (this.#have < off + len) break;
      const all = this.#take(off + len);
      const op = (all[0] as number) & 0x0f;
      const payload = all.subarray(off);
      if (op === 8) this.got.push(['close', payload.length >= 2 ? payload.readUInt16BE(0) : null, payload.subarray(2).toString()]);
      else
        this.got.push([op === 1 ? 'text' : op === 2 ? 'binary' : op === 9 ? 'ping' : op === 10 ? 'pong' : (`op${op}` as 'text'), payload]);
    }
    this.#wake?.();
  }

  #peek(n: number): Buffer {
    if ((this.#chunks[0] as Buffer).length >= n) return (this.#chunks[0] as Buffer).subarray(0, n);
    return Buffer.concat(this.#chunks).subarray(0, n);
  }

  #take(n: number): Buffer {
    const whole = this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks);
    this.#chunks = whole.length > n ? [whole.subarray(n)] : [];
    this.#have -= n;
    return whole.subarray(0, n);
  }

  /** Writes one frame (masked), whole or in chops of `chop` bytes, each its own write. */
  async send(op: number, payload: Buffer | string = '', opts: { fin?: boolean; rsv?: number; chop?: number } = {}): Promise<void> {
    await this.raw(wsFrame(op, payload, { fin: opts.fin, rsv: opts.rsv, mask: [0x37, 0xfa, 0x21, 0x3d] }), opts.chop);
  }

  async raw(bytes: Buffer, chop?: number): Promise<void> {
    if (this.#endedFlag) return;
    if (!chop) {
      this.#written += bytes.length;
      if (!this.socket.write(bytes)) await new Promise((r) => this.socket.once('drain', r));
      return;
    }
    for (let i = 0; i < bytes.length && !this.#endedFlag; i += chop) {
      const part = bytes.subarray(i, i + chop);
      this.#written += part.length;
      this.socket.write(part);
      await new Promise((r) => setImmediate(r));
    }
  }

  /** Waits until the server has read (and parsed) every byte written so far. */
  async barrier(): Promise<void> {
    await this.#until(() => (this.#conn.socket?.bytesRead ?? 0) >= this.#written || this.#endedFlag);
    await new Promise((r) => setImmediate(r));
  }

  /** The server still treats the connection as open (after a barrier: nothing so far failed it). */
  get open(): boolean {
    return this.#conn.isOpen && !this.#endedFlag;
  }

  async #until(cond: () => boolean, ms = 30_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out; got ${JSON.stringify(this.summary())}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 20);
        this.#wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }

  /** Waits for `n` frames (or the end of the connection). */
  async frames(n: number): Promise<Got[]> {
    await this.#until(() => this.got.length >= n || this.#endedFlag);
    return this.got;
  }

  summary(): unknown[] {
    return this.got.map((g) => (g[0] === 'close' ? g : [g[0], g[1].length > 64 ? `<${g[1].length} bytes>` : g[1].toString('latin1')]));
  }

  /**
   * The server failed the connection: its close frame carries `code`, it closes TCP, and `before`
   * lists the frames it sent first.
   */
  async failed(code: number, before: Got[] = []): Promise<void> {
    await this.#until(() => this.got.some((g) => g[0] === 'close') || this.#endedFlag);
    await this.ended;
    expect(norm(this.got)).toEqual(norm([...before, ['close', code, expect.any(String) as unknown as string]]));
  }

  /** Closes with `code` (default 1000) and expects `before`, then the server's close echo and a TCP close. */
  async closes(before: Got[] = [], code: number | null = 1000, echo: number | null = code): Promise<void> {
    await this.send(8, code === null ? '' : Buffer.from([code >> 8, code & 0xff]));
    await this.#until(() => this.got.some((g) => g[0] === 'close') || this.#endedFlag);
    await this.ended;
    expect(norm(this.got)).toEqual(norm([...before, ['close', echo, '']]));
  }
}

/** Readable comparisons: payloads as hex (short) or as length and SHA-1 (long). */
function norm(xs: Got[]): unknown[] {
  return xs.map((g) =>
    g[0] === 'close'
      ? g
      : [g[0], g[1].length > 256 ? `${g[1].length}:${createHash('sha1').update(g[1]).digest('hex')}` : g[1].toString('hex')],
  );
}

const text = (s: string | Buffer): Got => ['text', Buffer.from(s)];
const binary = (b: Buffer): Got => ['binary', b];
const pong = (s: string | Buffer = ''): Got => ['pong', Buffer.from(s)];
const bytes = (n: number, fill = 0xfe) => Buffer.alloc(n, fill);
const open = () => Peer.open();

describe('A7: Autobahn-derived conformance of @mega/ws (sections 1-7, 9)', () => {
  describe('1 framing: text and binary messages of every length class echo back', () => {
    const lengths = [0, 125, 126, 127, 128, 65_535, 65_536];
    for (const [i, len] of lengths.entries()) {
      it(`1.1.${i + 1} text of ${len} bytes`, async () => {
        const p = await open();
        const body = Buffer.alloc(len, '*');
        await p.send(1, body);
        await p.frames(1);
        await p.closes([text(body)]);
      });
      it(`1.2.${i + 1} binary of ${len} bytes`, async () => {
        const p = await open();
        await p.send(2, bytes(len));
        await p.frames(1);
        await p.closes([binary(bytes(len))]);
      });
    }
    it('1.1.8 text of 65,536 bytes sent in chops of 997', async () => {
      const p = await open();
      await p.send(1, Buffer.alloc(65_536, '*'), { chop: 997 });
      await p.frames(1);
      await p.closes([text(Buffer.alloc(65_536, '*'))]);
    });
    it('1.2.8 binary of 65,536 bytes sent in chops of 997', async () => {
      const p = await open();
      await p.send(2, bytes(65_536), { chop: 997 });
      await p.frames(1);
      await p.closes([binary(bytes(65_536))]);
    });
  });

  describe('A7: handshake and length strictness', () => {
    it('A7: an upgrade over HTTP/1.0 is refused (RFC 6455 §4.2.1) with 400 ws.bad_handshake in the envelope', async () => {
      const socket = connect(booted.port, '127.0.0.1');
      socket.on('error', () => undefined);
      let answer = '';
      socket.on('data', (d: Buffer) => (answer += d.toString()));
      const closed = new Promise((r) => socket.once('close', r));
      socket.write(
        `GET /echo HTTP/1.0\r\nHost: 127.0.0.1:${booted.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${Buffer.from('autobahn-derived').toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
      await closed;
      expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
      const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));
      expect(body.error.code).toBe('ws.bad_handshake');
      expect(body.error.message).toContain('HTTP/1.1');
    });
    it('A7: a 64-bit payload length with the most significant bit set is a protocol error (1002)', async () => {
      const p = await open();
      await p.raw(Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]));
      await p.failed(1002);
    });
  });

  describe('2 pings and pongs', () => {
    it('2.1 ping without payload: empty pong', async () => {
      const p = await open();
      await p.send(9);
      await p.frames(1);
      await p.closes([pong()]);
    });
    it('2.2 / 2.3 ping with text and with binary payload: pong echoes it', async () => {
      const p = await open();
      await p.send(9, 'Hello, world!');
      await p.send(9, Buffer.from([0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff]));
      await p.frames(2);
      await p.closes([pong('Hello, world!'), pong(Buffer.from([0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff]))]);
    });
    it('2.4 ping with 125 bytes: pong echoes it', async () => {
      const p = await open();
      await p.send(9, bytes(125));
      await p.frames(1);
      await p.closes([pong(bytes(125))]);
    });
    it('2.5 ping with 126 bytes: protocol error 1002', async () => {
      const p = await open();
      await p.send(9, bytes(126));
      await p.failed(1002);
    });
    it('2.6 ping with 125 bytes in 1-byte chops: pong', async () => {
      const p = await open();
      await p.send(9, bytes(125), { chop: 1 });
      await p.frames(1);
      await p.closes([pong(bytes(125))]);
    });
    it('2.7 / 2.8 unsolicited pongs (empty, with payload) are ignored', async () => {
      for (const payload of ['', 'unsolicited pong payload']) {
        const p = await open();
        await p.send(10, payload);
        await p.barrier();
        await p.closes([]);
      }
    });
    it('2.9 unsolicited pong, then ping: only the ping is answered', async () => {
      const p = await open();
      await p.send(10, 'unsolicited pong payload');
      await p.send(9, 'ping payload');
      await p.frames(1);
      await p.closes([pong('ping payload')]);
    });
    it('2.10 / 2.11 ten pings (whole, and in 1-byte chops): ten pongs in order', async () => {
      for (const chop of [undefined, 1]) {
        const p = await open();
        for (let i = 0; i < 10; i++) await p.send(9, `payload-${i}`, { chop });
        await p.frames(10);
        await p.closes(Array.from({ length: 10 }, (_, i) => pong(`payload-${i}`)));
      }
    });
  });

  describe('3 reserved bits: any RSV bit without an extension fails the connection (1002)', () => {
    it('3.1 text with RSV=1', async () => {
      const p = await open();
      await p.send(1, 'Hello, world!', { rsv: 1 });
      await p.failed(1002);
    });
    for (const [name, rsv, chop] of [
      ['3.2', 2, undefined],
      ['3.3', 3, 'frames'],
      ['3.4', 4, 1],
    ] as const) {
      it(`${name} text, then text with RSV=${rsv}, then ping${chop ? ` (${chop === 1 ? 'octet' : 'frame'}-wise chops)` : ''}: echo, then 1002, no pong`, async () => {
        const p = await open();
        const c = chop === 1 ? 1 : undefined;
        await p.send(1, 'Hello, world!', { chop: c });
        if (chop === 'frames') await p.barrier();
        await p.send(1, 'Hello, world!', { rsv, chop: c });
        if (chop === 'frames') await p.barrier();
        await p.send(9, '', { chop: c });
        await p.failed(1002, [text('Hello, world!')]);
      });
    }
    it('3.5 binary with RSV=5', async () => {
      const p = await open();
      await p.send(2, bytes(8), { rsv: 5 });
      await p.failed(1002);
    });
    it('3.6 ping with RSV=6', async () => {
      const p = await open();
      await p.send(9, 'x', { rsv: 6 });
      await p.failed(1002);
    });
    it('3.7 close with RSV=7', async () => {
      const p = await open();
      await p.send(8, Buffer.from([0x03, 0xe8]), { rsv: 7 });
      await p.failed(1002);
    });
  });

  describe('4 opcodes: reserved opcodes fail the connection (1002)', () => {
    for (const [i, op] of [3, 4, 5, 6, 7].entries()) {
      it(`4.1.${i + 1} reserved non-control opcode ${op}${i >= 2 ? ' after a text message, then ping' : ''}`, async () => {
        const p = await open();
        const chop = i === 4 ? 1 : undefined;
        if (i >= 2) await p.send(1, 'Hello, world!', { chop });
        await p.send(op, i === 0 || i === 2 ? '' : 'reserved opcode payload', { chop });
        if (i >= 2) await p.send(9, '', { chop });
        await p.failed(1002, i >= 2 ? [text('Hello, world!')] : []);
      });
    }
    for (const [i, op] of [11, 12, 13, 14, 15].entries()) {
      it(`4.2.${i + 1} reserved control opcode ${op}${i >= 2 ? ' after a text message, then ping' : ''}`, async () => {
        const p = await open();
        const chop = i === 4 ? 1 : undefined;
        if (i >= 2) await p.send(1, 'Hello, world!', { chop });
        await p.send(op, i === 0 || i === 2 ? '' : 'reserved opcode payload', { chop });
        if (i >= 2) await p.send(9, '', { chop });
        await p.failed(1002, i >= 2 ? [text('Hello, world!')] : []);
      });
    }
  });

  describe('5 fragmentation', () => {
    it('5.1 / 5.2 fragmented ping and fragmented pong: 1002', async () => {
      for (const op of [9, 10]) {
        const p = await open();
        await p.send(op, 'fragment1', { fin: false });
        await p.send(0, 'fragment2');
        await p.failed(1002);
      }
    });
    for (const [name, mode] of [
      ['5.3', 'one write'],
      ['5.4', 'frame-wise'],
      ['5.5', 'octet-wise'],
    ] as const) {
      it(`${name} text in 2 fragments (${mode}): echoed whole`, async () => {
        const p = await open();
        const chop = mode === 'octet-wise' ? 1 : undefined;
        await p.send(1, 'fragment1', { fin: false, chop });
        if (mode === 'frame-wise') await p.barrier();
        await p.send(0, 'fragment2', { chop });
        await p.frames(1);
        await p.closes([text('fragment1fragment2')]);
      });
    }
    for (const [name, mode] of [
      ['5.6', 'one write'],
      ['5.7', 'frame-wise'],
      ['5.8', 'octet-wise'],
    ] as const) {
      it(`${name} text in 2 fragments with a ping between (${mode}): pong, then the message`, async () => {
        const p = await open();
        const chop = mode === 'octet-wise' ? 1 : undefined;
        await p.send(1, 'fragment1', { fin: false, chop });
        if (mode === 'frame-wise') await p.barrier();
        await p.send(9, 'ping payload', { chop });
        if (mode === 'frame-wise') await p.barrier();
        await p.send(0, 'fragment2', { chop });
        await p.frames(2);
        await p.closes([pong('ping payload'), text('fragment1fragment2')]);
      });
    }
    for (const [i, fin] of [true, true, true, false, false, false].entries()) {
      const mode = ['one write', 'frame-wise', 'octet-wise'][i % 3] as string;
      it(`5.${9 + i} continuation (FIN=${fin}) with nothing to continue, then text (${mode}): 1002`, async () => {
        const p = await open();
        const chop = mode === 'octet-wise' ? 1 : undefined;
        await p.send(0, 'non-continuation payload', { fin, chop });
        if (mode === 'frame-wise') await p.barrier();
        await p.send(1, 'Hello, world!', { chop });
        await p.failed(1002);
      });
    }
    it('5.15 a complete 2-fragment message, then a stray continuation: echo, then 1002', async () => {
      const p = await open();
      await p.send(1, 'fragment1', { fin: false });
      await p.send(0, 'fragment2');
      await p.send(0, 'fragment3', { fin: false });
      await p.send(1, 'fragment4');
      await p.failed(1002, [text('fragment1fragment2')]);
    });
    for (const [name, fin] of [
      ['5.16', false],
      ['5.17', true],
    ] as const) {
      it(`${name} twice: continuation (FIN=${fin}) with nothing to continue, then a 2-fragment text: 1002`, async () => {
        const p = await open();
        for (let r = 0; r < 2; r++) {
          await p.send(0, 'fragment1', { fin });
          await p.send(1, 'fragment2', { fin: false });
          await p.send(0, 'fragment3');
        }
        await p.failed(1002);
      });
    }
    it('5.18 two fragments both with the text opcode: 1002', async () => {
      const p = await open();
      await p.send(1, 'fragment1', { fin: false });
      await p.send(1, 'fragment2');
      await p.failed(1002);
    });
    for (const [name, sync] of [
      ['5.19', false],
      ['5.20', true],
    ] as const) {
      it(`${name} 5 fragments with pings between, waiting after the first ping${sync ? ' (frame-wise)' : ''}: both pongs as they come, then the message`, async () => {
        const p = await open();
        const step = async (op: number, payload: string, fin = false) => {
          await p.send(op, payload, { fin });
          if (sync) await p.barrier();
        };
        await step(1, 'fragment1');
        await step(0, 'fragment2');
        await step(9, 'pongme 1!', true);
        // Autobahn waits here; the first pong must arrive before the message is complete.
        expect(norm(await p.frames(1))).toEqual(norm([pong('pongme 1!')]));
        await step(0, 'fragment3');
        await step(0, 'fragment4');
        await step(9, 'pongme 2!', true);
        await step(0, 'fragment5', true);
        await p.frames(3);
        await p.closes([pong('pongme 1!'), pong('pongme 2!'), text('fragment1fragment2fragment3fragment4fragment5')]);
      });
    }
  });

  describe('6 UTF-8 handling', () => {
    it('6.1.1 empty text: echoed', async () => {
      const p = await open();
      await p.send(1, '');
      await p.frames(1);
      await p.closes([text('')]);
    });
    it('6.1.2 three empty fragments: one empty message', async () => {
      const p = await open();
      await p.send(1, '', { fin: false });
      await p.send(0, '', { fin: false });
      await p.send(0, '');
      await p.frames(1);
      await p.closes([text('')]);
    });
    it('6.1.3 empty, non-empty, empty fragments: the middle payload', async () => {
      const p = await open();
      await p.send(1, '', { fin: false });
      await p.send(0, 'middle frame payload', { fin: false });
      await p.send(0, '');
      await p.frames(1);
      await p.closes([text('middle frame payload')]);
    });
    const mixed = Buffer.from('Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!', 'utf8');
    const kosme = Buffer.from('cebae1bdb9cf83cebcceb5', 'hex');
    it('6.2.1 valid UTF-8 in one frame', async () => {
      const p = await open();
      await p.send(1, mixed);
      await p.frames(1);
      await p.closes([text(mixed)]);
    });
    it('6.2.2 valid UTF-8 in two fragments split on a code point boundary', async () => {
      const p = await open();
      const cut = Buffer.from('Hello-\u00b5@\u00df\u00f6\u00e4', 'utf8').length;
      await p.send(1, mixed.subarray(0, cut), { fin: false });
      await p.send(0, mixed.subarray(cut));
      await p.frames(1);
      await p.closes([text(mixed)]);
    });
    for (const [name, msg] of [
      ['6.2.3', mixed],
      ['6.2.4', kosme],
    ] as const) {
      it(`${name} valid UTF-8 in 1-byte fragments (frames end inside code points)`, async () => {
        const p = await open();
        for (let i = 0; i < msg.length; i++) await p.send(i === 0 ? 1 : 0, msg.subarray(i, i + 1), { fin: i === msg.length - 1 });
        await p.frames(1);
        await p.closes([text(msg)]);
      });
    }
    const invalid = Buffer.concat([kosme, Buffer.from('eda080', 'hex'), Buffer.from('edited')]);
    it('6.3.1 invalid UTF-8 in one frame: 1007', async () => {
      const p = await open();
      await p.send(1, invalid);
      await p.failed(1007);
    });
    it('6.3.2 invalid UTF-8 in 1-byte fragments: 1007', async () => {
      const p = await open();
      for (let i = 0; i < invalid.length; i++) await p.send(i === 0 ? 1 : 0, invalid.subarray(i, i + 1), { fin: i === invalid.length - 1 });
      await p.failed(1007);
    });
    // 6.4: fail fast. The second part makes the text invalid; the third is never needed.
    const part1 = kosme;
    for (const [name, part2, how] of [
      ['6.4.1', Buffer.from('f4908080', 'hex'), 'frames'],
      ['6.4.2', Buffer.from('f4', 'hex'), 'frames'],
      ['6.4.3', Buffer.from('f4908080', 'hex'), 'chops'],
      ['6.4.4', Buffer.from('f4', 'hex'), 'chops'],
    ] as const) {
      it(`${name} invalid UTF-8 in 3 ${how}: the part that makes it invalid fails it at once (1007), before the last part`, async () => {
        const p = await open();
        // 6.4.2/6.4.4: f4 is a valid start; the next part (90 80 80) makes it invalid.
        const [a, b] = part2.length === 1 ? [Buffer.concat([part1, part2]), Buffer.from('908080', 'hex')] : [part1, part2];
        const part3 = Buffer.from('edited');
        if (how === 'frames') {
          await p.send(1, a, { fin: false });
          await p.barrier();
          expect(p.open).toBe(true);
          await p.send(0, b, { fin: false });
        } else {
          const whole = wsFrame(1, Buffer.concat([a, b, part3]), { mask: [0x37, 0xfa, 0x21, 0x3d] });
          const headLen = whole.length - a.length - b.length - part3.length;
          await p.raw(whole.subarray(0, headLen + a.length));
          await p.barrier();
          expect(p.open).toBe(true);
          await p.raw(whole.subarray(headLen + a.length, headLen + a.length + b.length));
        }
        // Fail fast: the close comes without the third part ever being sent.
        await p.failed(1007);
      });
    }
    // 6.5-6.23: Markus Kuhn's UTF-8 decoder stress cases (as grouped by Autobahn), each sent whole.
    for (const [group, cases] of utf8Cases()) {
      it(`${group}`, async () => {
        for (const [valid, seq] of cases) {
          const p = await open();
          await p.send(1, seq);
          if (valid) {
            await p.frames(1);
            await p.closes([text(seq)]);
          } else await p.failed(1007);
        }
      });
    }
  });

  describe('7 closing handshake', () => {
    it('7.1.1 a message, then close: echo, then the close echo', async () => {
      const p = await open();
      await p.send(1, 'Hello World!');
      await p.closes([text('Hello World!')]);
    });
    it('7.1.2 / 7.1.3 / 7.1.4 after close, a second close, a ping or a text get no answer', async () => {
      for (const [op, payload] of [
        [8, ''],
        [9, ''],
        [1, 'Hello World!'],
      ] as const) {
        const p = await open();
        await p.raw(
          Buffer.concat([wsFrame(8, Buffer.from([0x03, 0xe8]), { mask: [1, 2, 3, 4] }), wsFrame(op, payload, { mask: [1, 2, 3, 4] })]),
        );
        await p.ended;
        expect(norm(p.got)).toEqual(norm([['close', 1000, '']]));
      }
    });
    it('7.1.5 fragment, close, fragment: the message never completes; clean close', async () => {
      const p = await open();
      await p.raw(
        Buffer.concat([
          wsFrame(1, 'fragment1', { fin: false, mask: [1, 2, 3, 4] }),
          wsFrame(8, Buffer.from([0x03, 0xe8]), { mask: [1, 2, 3, 4] }),
          wsFrame(0, 'fragment2', { mask: [1, 2, 3, 4] }),
        ]),
      );
      await p.ended;
      expect(norm(p.got)).toEqual(norm([['close', 1000, '']]));
    });
    it('7.1.6 a 256 KiB message, a text, close and ping back to back: both echoes, then the close echo, no pong', async () => {
      const p = await open();
      const big = Buffer.alloc(256 * 1024, 'BAsd7&jh23');
      await p.raw(
        Buffer.concat([
          wsFrame(1, big, { mask: [1, 2, 3, 4] }),
          wsFrame(1, 'Hello World!', { mask: [1, 2, 3, 4] }),
          wsFrame(8, Buffer.from([0x03, 0xe8]), { mask: [1, 2, 3, 4] }),
          wsFrame(9, '', { mask: [1, 2, 3, 4] }),
        ]),
      );
      await p.ended;
      expect(norm(p.got)).toEqual(norm([text(big), text('Hello World!'), ['close', 1000, '']]));
    });
    it('7.3.1 close without payload: answered by a close without payload', async () => {
      const p = await open();
      await p.closes([], null);
    });
    it('7.3.2 close with a 1-byte payload: 1002', async () => {
      const p = await open();
      await p.send(8, 'a');
      await p.failed(1002);
    });
    it('7.3.3 / 7.3.4 / 7.3.5 close 1000 with no reason, a reason, a 123-byte reason: 1000 echoed', async () => {
      for (const reason of ['', 'Hello World!', '*'.repeat(123)]) {
        const p = await open();
        await p.send(8, Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from(reason)]));
        await p.ended;
        expect(norm(p.got)).toEqual(norm([['close', 1000, '']]));
      }
    });
    it('7.3.6 close with a 124-byte reason (control payload of 126): 1002', async () => {
      const p = await open();
      await p.send(8, Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.alloc(124, '*')]));
      await p.failed(1002);
    });
    it('7.5.1 close reason that is not UTF-8: 1007', async () => {
      const p = await open();
      await p.send(8, Buffer.concat([Buffer.from([0x03, 0xe8]), kosmeInvalid()]));
      await p.failed(1007);
    });
    it('7.7.x valid close codes are echoed', async () => {
      for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]) {
        const p = await open();
        await p.closes([], code);
      }
    });
    it('7.9.x invalid close codes: 1002', async () => {
      for (const code of [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999]) {
        const p = await open();
        await p.send(8, Buffer.from([code >> 8, code & 0xff]));
        await p.failed(1002);
      }
    });
    it('7.13.1 / 7.13.2 close codes 5000 and 65535: 1002', async () => {
      for (const code of [5000, 65_535]) {
        const p = await open();
        await p.send(8, Buffer.from([code >> 8, code & 0xff]));
        await p.failed(1002);
      }
    });
  });

  describe('9 limits and performance (maxPayload 16 MiB on the echo route)', () => {
    const MiB = 1024 * 1024;
    const sizes = [64 * 1024, 256 * 1024, MiB, 4 * MiB, 8 * MiB, 16 * MiB];
    for (const [kind, op] of [
      ['text', 1],
      ['binary', 2],
    ] as const) {
      it(`9.${op}.1-6 ${kind} messages of 64 KiB to 16 MiB echo back`, async () => {
        for (const size of sizes) {
          const p = await open();
          const body = Buffer.alloc(size, op === 1 ? '*' : 0xfe);
          await p.send(op, body);
          await p.frames(1);
          await p.closes([[kind, body]]);
        }
      }, 120_000);
      it(`9.${op + 2}.1-9 a 4 MiB ${kind} message in fragments of 64 B to 4 MiB echoes back`, async () => {
        for (const frag of [64, 256, 1024, 4096, 16_384, 65_536, 256 * 1024, MiB, 4 * MiB]) {
          const p = await open();
          const body = Buffer.alloc(4 * MiB, op === 1 ? '*' : 0xfe);
          const frames: Buffer[] = [];
          for (let at = 0; at < body.length; at += frag) {
            frames.push(wsFrame(at === 0 ? op : 0, body.subarray(at, at + frag), { fin: at + frag >= body.length, mask: [1, 2, 3, 4] }));
          }
          await p.raw(Buffer.concat(frames));
          await p.frames(1);
          await p.closes([[kind, body]]);
        }
      }, 120_000);
      it(`9.${op + 4}.1-6 a 1 MiB ${kind} message written in chops of 64 B to 2 KiB echoes back`, async () => {
        for (const chop of [64, 128, 256, 512, 1024, 2048]) {
          const p = await open();
          const body = Buffer.alloc(MiB, op === 1 ? '*' : 0xfe);
          const frame = wsFrame(op, body, { mask: [1, 2, 3, 4] });
          // Chops as separate writes, many per event-loop turn (Autobahn's chopsize is about TCP segments).
          for (let at = 0; at < frame.length; at += chop * 256) {
            for (let k = at; k < Math.min(frame.length, at + chop * 256); k += chop) p.socket.write(frame.subarray(k, k + chop));
            await new Promise((r) => setImmediate(r));
          }
          await p.frames(1);
          await p.closes([[kind, body]]);
        }
      }, 120_000);
      it(`9.${op + 6}.1-6 1,000 ${kind} round trips per size, 0 B to 4 KiB`, async () => {
        for (const size of [0, 16, 64, 256, 1024, 4096]) {
          const p = await open();
          const body = Buffer.alloc(size, op === 1 ? '*' : 0xfe);
          for (let n = 1; n <= 1000; n++) {
            await p.send(op, body);
            await p.frames(n);
          }
          await p.closes(Array.from({ length: 1000 }, () => [kind, body] as Got));
        }
      }, 120_000);
    }
  });
});

/** A close reason that is not UTF-8 (a surrogate inside an otherwise valid string). */
function kosmeInvalid(): Buffer {
  return Buffer.concat([Buffer.from('cebae1bdb9cf83cebcceb5', 'hex'), Buffer.from('eda080', 'hex'), Buffer.from('edited')]);
}

/**
 * UTF-8 decoder cases, grouped as Autobahn groups Markus Kuhn's UTF-8-test.txt (6.5 onwards):
 * [valid, bytes]. Written out here from the categories of that file.
 */
function utf8Cases(): Array<[string, Array<[boolean, Buffer]>]> {
  const h = (hex: string) => Buffer.from(hex.replace(/ /g, ''), 'hex');
  const kosme = h('ce ba e1 bd b9 cf 83 ce bc ce b5');
  // Every prefix of kosme: valid exactly when it ends on a code point boundary.
  const ends = new Set([2, 5, 7, 9, 11]);
  const prefixes: Array<[boolean, Buffer]> = Array.from({ length: kosme.length }, (_, i) => [ends.has(i + 1), kosme.subarray(0, i + 1)]);
  const continuation = Buffer.from(Array.from({ length: 0xbf - 0x80 }, (_, i) => 0x80 + i));
  const lonely = (from: number, to: number) => Buffer.from(Array.from({ length: to - from }, (_, i) => [from + i, 0x20]).flat());
  const incomplete = ['c0', 'e080', 'f08080', 'f8808080', 'fc80808080', 'df', 'efbf', 'f7bfbf', 'fbbfbfbf', 'fdbfbfbfbf'];
  const nonCharacters: Array<[boolean, Buffer]> = [
    [true, h('efbfbe')],
    [true, h('efbfbf')],
  ];
  for (const lead of [0xf0, 0xf1, 0xf2, 0xf3, 0xf4]) {
    for (const second of [0x8f, 0x9f, 0xaf, 0xbf]) {
      if (lead === 0xf4 && second !== 0x8f) continue; // past U+10FFFF
      if (lead === 0xf0 && second === 0x8f) continue; // overlong
      for (const last of [0xbe, 0xbf]) nonCharacters.push([true, Buffer.from([lead, second, 0xbf, last])]);
    }
  }
  return [
    [
      '6.5 some valid UTF-8 sequences',
      [
        [true, h('68656c6c6f 24 776f726c64')],
        [true, h('68656c6c6f c2a2 776f726c64')],
        [true, h('68656c6c6f e282ac 776f726c64')],
        [true, h('68656c6c6f f0a4ada2 776f726c64')],
        [true, kosme],
      ],
    ],
    ['6.6 every prefix of a multi-byte string (valid only on code point boundaries)', prefixes],
    ['6.7 first sequence of each length', ['00', 'c280', 'e0a080', 'f0908080'].map((x) => [true, h(x)])],
    ['6.8 first sequences of length 5 and 6 (beyond Unicode)', ['f888808080', 'fc8480808080'].map((x) => [false, h(x)])],
    ['6.9 last sequence of each length', ['7f', 'dfbf', 'efbfbf', 'f48fbfbf'].map((x) => [true, h(x)])],
    ['6.10 last sequences of length 4-6 beyond U+10FFFF', ['f7bfbfbf', 'fbbfbfbfbf', 'fdbfbfbfbfbf'].map((x) => [false, h(x)])],
    [
      '6.11 other boundary conditions',
      [
        [true, h('ed9fbf')],
        [true, h('ee8080')],
        [true, h('efbfbd')],
        [true, h('f48fbfbf')],
        [false, h('f4908080')],
      ],
    ],
    [
      '6.12 unexpected continuation bytes',
      [
        ...['80', 'bf', '80bf', '80bf80', '80bf80bf', '80bf80bf80', '80bf80bf80bf'].map((x) => [false, h(x)] as [boolean, Buffer]),
        [false, continuation],
      ],
    ],
    [
      '6.13 lonely start bytes, each followed by a space',
      [
        [0xc0, 0xdf],
        [0xe0, 0xef],
        [0xf0, 0xf7],
        [0xf8, 0xfb],
        [0xfc, 0xfd],
      ].map(([a, b]) => [false, lonely(a as number, b as number)]),
    ],
    ['6.14 sequences with the last continuation byte missing', incomplete.map((x) => [false, h(x)])],
    ['6.15 concatenated incomplete sequences', [[false, h(incomplete.join(''))]]],
    ['6.16 impossible bytes', ['fe', 'ff', 'fefeffff'].map((x) => [false, h(x)])],
    ['6.17 overlong ASCII', ['c0af', 'e080af', 'f08080af', 'f8808080af', 'fc80808080af'].map((x) => [false, h(x)])],
    ['6.18 maximum overlong sequences', ['c1bf', 'e09fbf', 'f08fbfbf', 'f887bfbfbf', 'fc83bfbfbfbf'].map((x) => [false, h(x)])],
    ['6.19 overlong NUL', ['c080', 'e08080', 'f0808080', 'f880808080', 'fc8080808080'].map((x) => [false, h(x)])],
    ['6.20 single UTF-16 surrogates', ['eda080', 'edadbf', 'edae80', 'edafbf', 'edb080', 'edbe80', 'edbfbf'].map((x) => [false, h(x)])],
    [
      '6.21 paired UTF-16 surrogates',
      ['eda080edb080', 'eda080edbfbf', 'edadbfedb080', 'edadbfedbfbf', 'edae80edb080', 'edae80edbfbf', 'edafbfedb080', 'edafbfedbfbf'].map(
        (x) => [false, h(x)],
      ),
    ],
    ['6.22 non-characters (valid UTF-8)', nonCharacters],
    ['6.23 Unicode specials', ['efbfb9', 'efbfba', 'efbfbb', 'efbfbc', 'efbfbd', 'efbfbe', 'efbfbf'].map((x) => [true, h(x)])],
  ];
}
