/**
 * One WebSocket connection: the `sock` channels receive. It owns the socket after the handshake,
 * parses frames, runs every inbound message through the kernel `wsMessage` hook, validates and
 * dispatches it to the channel instance, and writes outbound frames with backpressure checks.
 *
 * Ordering: frames of one connection are handled in arrival order. Frames that arrive before
 * `onConnect` resolves wait in a bounded queue; while `wsMessage` taps run (async), later frames
 * chain behind earlier ones, with the same bound.
 */
import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import type { App, Codec, Kernel, MegaContext, MegaError, WsFrame } from '@mega/kernel';
import { isMegaError } from '@mega/kernel';
import type { Agreement, ConnectionDeflate, SharedDeflate } from './deflate.js';
import { buildFrame, buildHeader, closePayload, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT } from './frame.js';
import type { NativeSend } from './native.js';
import { encodeEnvelope, type PreparedMessage } from './prepared.js';
import { FrameReader, type FrameSink } from './receiver.js';
import type { CompiledRoute } from './route.js';
import { schemaDetails } from './route.js';
import type { Channel, CloseInfo, OutboundMessage, WsMessage } from './types.js';

/** Close codes (SPEC §5, RFC 6455 §7.4). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  NO_STATUS: 1005,
  ABNORMAL: 1006,
  INVALID_DATA: 1007,
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  TRY_AGAIN: 1013,
  REQUEUE: 4503,
});

export const ReadyState = Object.freeze({ CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });

/** What @mega/ws passes through `wsMessage`: the kernel's WsFrame plus the frame kind. */
export interface WsInboundFrame extends WsFrame {
  connection: WsConnection;
  /** A binary frame (the envelope protocol uses text frames only). */
  binary: boolean;
}

/** Turns an outbound envelope into the bytes put on the wire (ASP seals here). */
export type OutboundTransform = (envelope: Buffer) => Buffer;

/**
 * Turns an inbound frame into the envelope bytes handled as a text message (ASP opens here), before
 * the `wsMessage` hook and the handler; a returned MegaError is answered with an `error` envelope.
 * Synchronous and per connection: namespaces without one pay nothing.
 */
export type InboundTransform = (data: Buffer, binary: boolean) => Buffer | MegaError;

/**
 * Traffic of every connection of a server since start (read by @mega/metrics): data messages by
 * direction and kind (a fragmented message counts once; outbound ones are counted when sent, a
 * slow-consumer refusal included) and bytes on the wire after the handshake. Plain increments: cheaper
 * than a branch that would skip them.
 */
export interface WsTraffic {
  messagesIn: { text: number; binary: number };
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
}

/** Shared by every connection of a server. */
export interface Runtime {
  readonly kernel: Kernel;
  readonly codec: Codec;
  readonly production: boolean;
  readonly closeTimeoutMs: number;
  readonly shared: SharedDeflate;
  readonly traffic: WsTraffic;
  /** The addon's broadcast fan-out, when loaded (native.ts). */
  readonly native: NativeSend | null;
  /** Deliveries the fan-out wrote, and those it handed back to Node whole or in part (a full socket buffer, an error). */
  readonly fanout: { native: number; handedBack: number };
  /** Bookkeeping and close listeners; returns when the connection may call onDisconnect. */
  closed(conn: WsConnection, info: CloseInfo): void;
}

const LARGE = 16 * 1024;
/**
 * Output waiting for a client above which we stop reading from it, until the socket drains (as the
 * `ws` package does): a client that sends pings (or requests) without reading the answers cannot make
 * us buffer more than this plus one socket chunk's worth of replies.
 */
export const OUTPUT_HIGH_WATER = 1024 * 1024;
const PING = buildFrame(OP_PING, Buffer.alloc(0));

type Queued = [data: Buffer, binary: boolean];

/** The connection a socket belongs to, for the listeners every connection shares. */
const CONNECTION = Symbol('mega.ws.connection');
type OwnedSocket = Socket & { [CONNECTION]: WsConnection };
let onData: (this: Socket, chunk: Buffer) => void;
let onClose: (this: Socket) => void;
let onEnd: (this: Socket) => void;

function noop(): void {}

/** Sockets whose `write` is this one are written as Node would write them (not wrapped or replaced). */
const SOCKET_WRITE = Socket.prototype.write;

/**
 * Broadcast frames held until the end of the turn, one batch per prepared frame: the first message a
 * connection gets in a turn, when it is a prepared frame and Node holds nothing for the socket, waits
 * here instead of passing through the socket's stream; at the end of the turn one addon call writes
 * each batch to its sockets (`send(2)` per socket). Anything else written to the connection in the
 * same turn puts the held frame into the cork first, so a turn still leaves in one write per
 * connection and in order.
 */
interface Batch {
  rt: Runtime;
  frame: Buffer;
  conns: WsConnection[];
}
let batches: Batch[] = [];
let fds = new Uint32Array(1024);
let failures = new Uint32Array(2048);
let flushBatches: () => void;

export class WsConnection implements FrameSink {
  readonly id: string;
  readonly app: App;
  /** The route path, which is also the namespace of this connection. */
  readonly path: string;
  /** The upgrade request (headers, url, remote address). */
  readonly req: IncomingMessage;
  readonly protocolVersion: number;
  /** What `before` returned (also `ctx.auth`). */
  auth: unknown = undefined;
  /** The ctx shared by `before`, `onConnect`, handlers and `onDisconnect`. */
  ctx!: MegaContext;
  readyState: number = ReadyState.CONNECTING;
  /** Set once the connection closed (1006 when the TCP connection dropped without a close frame). */
  closeCode: number | undefined = undefined;
  closeReason = '';
  /** Messages that arrived compressed / went out compressed (permessage-deflate). */
  compressedIn = 0;
  compressedOut = 0;

  readonly #rt: Runtime;
  readonly #route: CompiledRoute;
  #socket: Socket | null = null;
  #reader: FrameReader | null = null;
  #deflate: ConnectionDeflate | null = null;
  #outbound: OutboundTransform | null = null;
  #inbound: InboundTransform | null = null;
  #channel: Channel | null = null;
  #alive = true;
  /** Frames waiting for onConnect or for the previous frame's handler to settle. */
  #queue: Queued[] = [];
  /** onConnect settled successfully: frames may be handled. */
  #ready = false;
  /** A frame is being handled (a wsMessage tap or an async handler is pending). */
  #busy = false;
  /** Reading is paused because the queue is full. */
  #paused = false;
  /** Reading is paused because output is backed up (resumes on 'drain'). */
  #outPaused = false;
  /** A close frame or protocol violation that waits for the frames received before it to be handled. */
  #afterInbound: (() => void) | null = null;
  /** The socket is corked until the next tick (see #put). */
  #corked = false;
  #closeTimer: NodeJS.Timeout | null = null;
  #connected: Promise<boolean> | null = null;
  /** The socket's descriptor for the fan-out; -1 when this connection always writes through Node. */
  #fd = -1;
  /** A broadcast frame held for the fan-out at the end of this turn (already counted in bytesOut). */
  #held: Buffer | null = null;

  constructor(rt: Runtime, route: CompiledRoute, id: string, req: IncomingMessage, protocolVersion: number) {
    this.#rt = rt;
    this.#route = route;
    this.id = id;
    this.app = route.app;
    this.path = route.path;
    this.req = req;
    this.protocolVersion = protocolVersion;
  }

  /** Headers of the upgrade request (so request-shaped readers such as the session cookie parser work on WS ctx). */
  get headers(): IncomingMessage['headers'] {
    return this.req.headers;
  }

  /** The compiled route this connection came in on. */
  get route(): CompiledRoute {
    return this.#route;
  }

  /** Namespace of this connection (its route path). */
  get ns(): string {
    return this.path;
  }

  get isOpen(): boolean {
    return this.readyState === ReadyState.OPEN;
  }

  /** Bytes written but not yet flushed to the kernel. */
  get bufferedAmount(): number {
    return (this.#socket?.writableLength ?? 0) + (this.#held?.length ?? 0);
  }

  /** permessage-deflate is active on this connection. */
  get compressed(): boolean {
    return this.#deflate !== null;
  }

  /** What permessage-deflate negotiation agreed (null when not in use). */
  get deflateAgreement(): Agreement | null {
    return this.#deflate?.agreement ?? null;
  }

  /** The underlying TCP socket (escape hatch). */
  get socket(): Socket | null {
    return this.#socket;
  }

  /** Installs the transform every outbound envelope goes through (one per connection; ASP uses it). */
  setOutboundTransform(fn: OutboundTransform): void {
    if (this.#outbound) throw new Error(`connection ${this.id} already has an outbound transform`);
    this.#outbound = fn;
  }

  /** Installs the transform every inbound frame goes through first (one per connection; ASP uses it). */
  setInboundTransform(fn: InboundTransform): void {
    if (this.#inbound) throw new Error(`connection ${this.id} already has an inbound transform`);
    this.#inbound = fn;
  }

  /** Sends one envelope (`{ type, id?, ns?, payload }`). False when the connection is not open. */
  send(message: OutboundMessage): boolean {
    if (this.readyState !== ReadyState.OPEN) return false;
    return this.sendEnvelope(encodeEnvelope(this.#rt.codec, message));
  }

  /** Sends envelope bytes already built (`codec.encodeFrame`). */
  sendEnvelope(envelope: Buffer): boolean {
    if (this.readyState !== ReadyState.OPEN) return false;
    this.#rt.traffic.messagesOut++;
    const bytes = this.#outbound ? this.#outbound(envelope) : envelope;
    const d = this.#deflate;
    if (d !== null && bytes.length >= d.opts.threshold) {
      this.compressedOut++;
      return this.#writeFrame(d.deflate(bytes), true);
    }
    return this.#writeFrame(bytes, false);
  }

  /** Sends a message prepared once for many recipients (broadcast): the same bytes when possible. */
  sendPrepared(message: PreparedMessage): boolean {
    if (this.readyState !== ReadyState.OPEN) return false;
    if (this.#outbound) return this.sendEnvelope(message.envelope);
    this.#rt.traffic.messagesOut++;
    const d = this.#deflate;
    if (d !== null && message.envelope.length >= d.opts.threshold) {
      this.compressedOut++;
      if (d.sharedOutput) return this.#write(message.deflatedFrame(this.#rt.shared, d.agreement.serverWindowBits, d.opts.level));
      return this.#writeFrame(d.deflate(message.envelope), true);
    }
    const frame = message.frame();
    if (this.#fd >= 0 && this.#held === null && !this.#corked) {
      // Nothing written to this connection yet in this turn: hold the frame for the fan-out if Node
      // has nothing queued for the socket either (so it cannot overtake anything).
      const socket = this.#socket as Socket;
      if (socket.writableLength === 0 && socket.writableCorked === 0 && socket.writable && socket.write === SOCKET_WRITE) {
        this.#rt.traffic.bytesOut += frame.length;
        this.#hold(frame);
        return true;
      }
    }
    return this.#write(frame);
  }

  /** Sends an `error` envelope (SPEC §5); the connection stays open. */
  sendError(code: string, message: string, id?: string, details?: unknown): boolean {
    return this.send({ type: 'error', id: id ?? null, payload: details === undefined ? { code, message } : { code, message, details } });
  }

  /** Starts the closing handshake; the socket is destroyed if the peer does not answer in time. */
  close(code: number = CloseCode.NORMAL, reason = ''): void {
    if (this.readyState === ReadyState.CONNECTING) {
      this.closeCode = code;
      this.closeReason = reason;
      this.readyState = ReadyState.CLOSING;
      return;
    }
    if (this.readyState !== ReadyState.OPEN) return;
    this.readyState = ReadyState.CLOSING;
    this.closeCode = code;
    this.closeReason = reason;
    this.#put(buildFrame(OP_CLOSE, closePayload(code, reason)));
    this.#armCloseTimer();
  }

  /** Drops the TCP connection without a closing handshake. */
  terminate(): void {
    if (this.readyState === ReadyState.CLOSED) return;
    this.closeCode ??= CloseCode.ABNORMAL;
    this.#socket?.destroy();
  }

  // ------------------------------------------------------------------ lifecycle (server-driven)

  /** Takes over the socket after the 101 response; `head` is what arrived with the upgrade request. */
  attach(socket: Socket, head: Buffer, deflate: ConnectionDeflate | null, channel: Channel): void {
    this.#socket = socket;
    this.#deflate = deflate;
    this.#channel = channel;
    this.#reader = new FrameReader(this, {
      maxPayload: this.#route.maxPayload,
      rsv1Allowed: deflate !== null,
      maxFragments: this.#route.maxFragments,
    });
    socket.setNoDelay(true);
    socket.setTimeout(0);
    // The fan-out takes plain TCP sockets written at the end of each turn: TLS bytes must pass
    // through the TLS socket, and a write delay holds output across turns on purpose.
    if (this.#rt.native !== null && this.#route.writeDelayMs === 0 && !(socket as { encrypted?: boolean }).encrypted) {
      const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
      if (typeof fd === 'number' && fd >= 0) this.#fd = fd;
    }
    // Shared listeners that find the connection on the socket: no closures per connection.
    (socket as OwnedSocket)[CONNECTION] = this;
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', noop); // 'close' follows; the error itself is the peer's business
    socket.on('close', onClose);
    const closedEarly = this.readyState === ReadyState.CLOSING;
    this.readyState = ReadyState.OPEN;
    if (closedEarly) {
      // close() was called while the handshake was still running: send the close frame now.
      const code = this.closeCode ?? CloseCode.NORMAL;
      this.close(code, this.closeReason);
      return;
    }
    this.#rt.traffic.bytesIn += head.length;
    if (head.length) this.#reader.push(head);
  }

  // Socket listeners shared by every connection (`this` is the socket); defined in the class body
  // so they reach the connection's private state.
  static {
    onData = function (this: Socket, chunk: Buffer): void {
      const conn = (this as OwnedSocket)[CONNECTION];
      conn.#rt.traffic.bytesIn += chunk.length;
      conn.#reader?.push(chunk);
    };
    onClose = function (this: Socket): void {
      (this as OwnedSocket)[CONNECTION].#finished();
    };
    onEnd = function (this: Socket): void {
      (this as OwnedSocket)[CONNECTION].#release(this);
      this.end();
    };
  }

  /** Runs onConnect; frames queued meanwhile are replayed in order once it resolves. */
  start(): void {
    if (this.readyState !== ReadyState.OPEN) return;
    const channel = this.#channel as Channel;
    this.#connected = Promise.resolve()
      .then(() => channel.onConnect?.(this, this.ctx))
      .then(
        () => {
          this.#ready = true;
          this.#drain();
          return true;
        },
        (error: unknown) => {
          this.#queue = [];
          this.ctx.log.error({ err: error, connId: this.id, path: this.path }, 'ws onConnect threw: closing (1011)');
          this.close(CloseCode.INTERNAL, 'onConnect failed');
          return false;
        },
      );
  }

  /** Heartbeat tick: false when the previous ping went unanswered (the connection is terminated). */
  heartbeat(): boolean {
    if (this.readyState !== ReadyState.OPEN) return true;
    if (!this.#alive) {
      this.ctx.log.debug({ connId: this.id }, 'ws heartbeat missed: terminating');
      this.terminate();
      return false;
    }
    this.#alive = false;
    this.#write(PING);
    return true;
  }

  #armCloseTimer(): void {
    if (this.#closeTimer) return;
    this.#closeTimer = setTimeout(() => this.#socket?.destroy(), this.#rt.closeTimeoutMs);
    this.#closeTimer.unref();
  }

  #finished(): void {
    if (this.readyState === ReadyState.CLOSED) return;
    this.readyState = ReadyState.CLOSED;
    if (this.#closeTimer) clearTimeout(this.#closeTimer);
    this.#closeTimer = null;
    this.#reader?.stop();
    this.#queue = [];
    this.#deflate?.close();
    const info: CloseInfo = { code: this.closeCode ?? CloseCode.ABNORMAL, reason: this.closeReason };
    this.closeCode = info.code;
    this.#rt.closed(this, info);
    const channel = this.#channel;
    if (!channel?.onDisconnect || !this.#connected) return;
    void this.#connected.then((ok) => {
      if (!ok) return;
      try {
        const r = channel.onDisconnect?.(this, this.ctx, info);
        if (r instanceof Promise) r.catch((error: unknown) => this.ctx.log.error({ err: error, connId: this.id }, 'ws onDisconnect threw'));
      } catch (error) {
        this.ctx.log.error({ err: error, connId: this.id }, 'ws onDisconnect threw');
      }
    });
  }

  // ------------------------------------------------------------------------------ FrameSink

  onMessage(binary: boolean, raw: Buffer, compressed: boolean): void {
    if (this.readyState !== ReadyState.OPEN) return;
    this.#rt.traffic.messagesIn[binary ? 'binary' : 'text']++;
    let data = raw;
    if (compressed) {
      this.compressedIn++;
      try {
        data = (this.#deflate as ConnectionDeflate).inflate(raw);
      } catch (error) {
        const tooLarge = isMegaError(error) && error.code === 'codec.too_large';
        this.onViolation(tooLarge ? CloseCode.TOO_BIG : CloseCode.INVALID_DATA, tooLarge ? 'message too large' : 'invalid compressed data');
        return;
      }
    }
    // Uncompressed text was checked by the reader as it arrived (fail fast); inflated text is checked here.
    if (!binary && compressed && !isUtf8(data)) {
      this.onViolation(CloseCode.INVALID_DATA, 'text frame is not valid UTF-8');
      return;
    }
    if (!this.#ready) {
      // Before onConnect resolves the queue is a hard bound: a flood closes the connection.
      if (this.#queue.length >= this.#route.preConnectQueue) {
        this.ctx.log.warn({ connId: this.id, queued: this.#queue.length }, 'ws pre-connect queue overflow: closing (1013)');
        this.#queue = [];
        this.close(CloseCode.TRY_AGAIN, 'pre-connect queue overflow');
        return;
      }
      this.#queue.push([data, binary]);
      return;
    }
    if (this.#busy) {
      // While a frame is in flight, later ones wait; past the bound we stop reading the socket so
      // TCP pushes back on the client (only the rest of the current chunk can still arrive).
      this.#queue.push([data, binary]);
      if (!this.#paused && this.#queue.length >= Math.max(this.#route.preConnectQueue, 16)) {
        this.#paused = true;
        this.#socket?.pause();
      }
      return;
    }
    this.#run(data, binary);
  }

  onPing(data: Buffer): void {
    if (this.readyState === ReadyState.OPEN) this.#write(buildFrame(OP_PONG, data));
  }

  onPong(): void {
    this.#alive = true;
  }

  onCloseFrame(code: number, reason: Buffer): void {
    if (this.#deferred(() => this.onCloseFrame(code, reason))) return;
    if (!isUtf8(reason)) {
      this.onViolation(CloseCode.INVALID_DATA, 'close reason is not valid UTF-8');
      return;
    }
    if (this.readyState === ReadyState.OPEN) {
      this.readyState = ReadyState.CLOSING;
      this.closeCode = code;
      this.closeReason = reason.toString('utf8');
      this.#put(buildFrame(OP_CLOSE, closePayload(code === CloseCode.NO_STATUS ? undefined : code)));
    }
    // The peer's close answered (or started) the handshake: the server closes TCP first (RFC 6455 §7.1.1).
    if (this.#socket) this.#release(this.#socket);
    this.#socket?.end();
    this.#armCloseTimer();
  }

  onViolation(code: number, reason: string): void {
    this.#reader?.stop();
    if (this.#deferred(() => this.onViolation(code, reason))) return;
    if (this.readyState === ReadyState.OPEN) {
      this.readyState = ReadyState.CLOSING;
      this.closeCode = code;
      this.closeReason = reason;
      this.#put(buildFrame(OP_CLOSE, closePayload(code, reason)));
    }
    if (this.#socket) this.#release(this.#socket);
    this.#socket?.end();
    this.#armCloseTimer();
  }

  /**
   * Messages received before a close frame or a protocol violation are still handled, in order,
   * before the connection answers the close or fails (what a peer that sent them expects; Autobahn
   * 3.2, 4.1.3, 7.1.1 strict). The reader is stopped already, so nothing more is taken in; the close
   * timer bounds how long handlers may take.
   */
  #deferred(then: () => void): boolean {
    if (!this.#busy && this.#queue.length === 0) return false;
    this.#afterInbound ??= then;
    this.#armCloseTimer();
    return true;
  }

  // ---------------------------------------------------------------------------- inbound path

  /**
   * Handles one frame. The common case (no wsMessage taps, a synchronous handler) allocates no
   * promise; otherwise the connection is busy until the frame is done, and later frames queue.
   */
  #run(raw: Buffer, binaryFrame: boolean): void {
    let data = raw;
    let binary = binaryFrame;
    if (this.#inbound !== null) {
      const opened = this.#inbound(raw, binaryFrame);
      if (!Buffer.isBuffer(opened)) {
        if (this.readyState === ReadyState.OPEN) this.sendError(opened.code, opened.message);
        return;
      }
      data = opened;
      binary = false;
    }
    let pending: Promise<void> | undefined;
    if (this.#rt.kernel.hooks.wsMessage.isUsed()) pending = this.#viaHook(data, binary);
    else pending = this.#handle(data, binary, undefined);
    if (pending === undefined) return;
    this.#busy = true;
    pending.then(
      () => this.#settled(),
      (error: unknown) => {
        this.ctx.log.error({ err: error, connId: this.id }, 'ws inbound frame failed');
        this.#settled();
      },
    );
  }

  #settled(): void {
    this.#busy = false;
    this.#drain();
  }

  /** Handles queued frames in order until one goes async; resumes reading once the queue is short. */
  #drain(): void {
    const queue = this.#queue;
    while (queue.length > 0 && !this.#busy && this.readyState === ReadyState.OPEN) {
      const [data, binary] = queue.shift() as Queued;
      this.#run(data, binary);
    }
    if (this.#paused && queue.length < Math.max(this.#route.preConnectQueue, 16) / 2) {
      this.#paused = false;
      if (!this.#outPaused) this.#socket?.resume();
    }
    if (this.#afterInbound && !this.#busy && queue.length === 0) {
      const then = this.#afterInbound;
      this.#afterInbound = null;
      then();
    }
  }

  async #viaHook(data: Buffer, binary: boolean): Promise<void> {
    if (this.readyState !== ReadyState.OPEN) return;
    const frame: WsInboundFrame = { app: this.app, connection: this, data, ns: this.path, binary };
    let rejected: MegaError | undefined;
    try {
      rejected = await this.#rt.kernel.hooks.wsMessage.promise(frame);
    } catch (error) {
      // A tap that throws failed; only a returned MegaError is a deliberate rejection. The kernel
      // attributed the failure (plugin, hook); the client gets `internal`, the text only outside production.
      const { plugin, hook } = error as { plugin?: string; hook?: string };
      this.ctx.log.error({ err: error, plugin, hook, connId: this.id }, `ws wsMessage tap of ${plugin ?? 'a plugin'} failed`);
      const cause = (error as { cause?: unknown }).cause ?? error;
      if (this.readyState === ReadyState.OPEN) {
        this.sendError('internal', this.#rt.production ? 'internal error' : String((cause as Error)?.message ?? cause));
      }
      return;
    }
    if (rejected) {
      if (this.readyState === ReadyState.OPEN) this.sendError(rejected.code, rejected.message);
      return;
    }
    if (this.readyState !== ReadyState.OPEN) return;
    await this.#handle(typeof frame.data === 'string' ? Buffer.from(frame.data, 'utf8') : frame.data, frame.binary, frame.message);
  }

  /** Parses, validates and dispatches; returns the handler's promise when it is async. */
  #handle(data: Buffer, binary: boolean, parsed: WsMessage | undefined): Promise<void> | undefined {
    let msg = parsed;
    if (msg === undefined) {
      if (binary) {
        this.sendError('ws.invalid_envelope', 'binary frames are not supported: send JSON envelopes as text frames');
        return;
      }
      // Junk is answered without capturing stack traces: an error's stack costs ~20 us here, and
      // nobody reads the stacks of envelope errors (they become error envelopes).
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      try {
        const h = this.#rt.codec.validateFrame(data);
        msg = { type: h.type };
        if (h.id !== undefined) msg.id = h.id;
        if (h.ns !== undefined) msg.ns = h.ns;
        if (h.payloadLength > 0) msg.payload = JSON.parse(data.toString('utf8', h.payloadOffset, h.payloadOffset + h.payloadLength));
      } catch (error) {
        const why = isMegaError(error) || error instanceof SyntaxError ? error.message : 'frame is not a valid envelope';
        this.sendError('ws.invalid_envelope', `invalid envelope: ${why}; expected {"type":"a.b","id"?,"payload"?}`);
        return;
      } finally {
        Error.stackTraceLimit = limit;
      }
    }
    const route = this.#route;
    if (!route.types.has(msg.type)) {
      this.sendError('ws.unknown_type', `no handler for message type "${String(msg.type).slice(0, 128)}" on ${this.path}`, msg.id);
      return;
    }
    const validate = route.validators.get(msg.type);
    if (validate && !validate(msg.payload)) {
      this.sendError('ws.schema', `payload of "${msg.type}" does not match its schema`, msg.id, schemaDetails(validate.errors));
      return;
    }
    const handler = (this.#channel as unknown as Record<string, (sock: WsConnection, m: WsMessage, ctx: MegaContext) => unknown>)[msg.type];
    const m = msg;
    try {
      const r = handler?.call(this.#channel, this, m, this.ctx);
      if (r instanceof Promise) return r.then(noop, (error: unknown) => this.#handlerFailed(error, m));
    } catch (error) {
      this.#handlerFailed(error, m);
    }
    return undefined;
  }

  #handlerFailed(error: unknown, msg: WsMessage): void {
    if (isMegaError(error)) {
      if (error.status >= 500) this.ctx.log.error({ err: error, connId: this.id, type: msg.type }, 'ws handler failed');
      this.sendError(error.code, error.message, msg.id, error.details);
      return;
    }
    this.ctx.log.error({ err: error, connId: this.id, type: msg.type }, 'ws handler failed');
    const message = this.#rt.production ? 'internal error' : String((error as Error)?.message ?? error);
    this.sendError('internal', message, msg.id);
  }

  // ---------------------------------------------------------------------------- outbound path

  #writeFrame(payload: Buffer, rsv1: boolean): boolean {
    const socket = this.#socket;
    if (!socket) return false;
    if (payload.length < LARGE) return this.#write(buildFrame(OP_TEXT, payload, rsv1));
    if (this.#slowConsumer(socket)) return false;
    // Large payloads: header and payload written separately (no copy); the tick's cork joins them.
    this.#put(buildHeader(OP_TEXT, payload.length, rsv1));
    this.#put(payload);
    this.#backPressure(socket);
    return true;
  }

  /**
   * Writes with the socket corked until the end of this turn of the event loop: everything sent to
   * this connection meanwhile — replies to every frame read in this turn, all broadcasts that I/O
   * delivered in it (several publishes, bus messages) — leaves in one writev syscall, as Centrifugo
   * coalesces what is queued for a connection into one write. One setImmediate uncorks every
   * connection written in the turn (not one callback per connection).
   */
  #put(bytes: Buffer): void {
    const socket = this.#socket;
    if (!socket || socket.destroyed) return;
    this.#rt.traffic.bytesOut += bytes.length;
    if (this.#held !== null) this.#release(socket);
    else if (!this.#corked) this.#cork(socket);
    socket.write(bytes);
  }

  #cork(socket: Socket): void {
    this.#corked = true;
    socket.cork();
    const delay = this.#route.writeDelayMs;
    if (delay === 0) {
      WsConnection.#toFlush.push(this);
      if (WsConnection.#toFlush.length === 1) setImmediate(WsConnection.#flush, WsConnection.#toFlush);
    } else WsConnection.#delayed(delay).push(this);
  }

  /** Holds a broadcast frame for the fan-out at the end of this turn. */
  #hold(frame: Buffer): void {
    this.#held = frame;
    const last = batches[batches.length - 1];
    if (last !== undefined && last.frame === frame && last.rt === this.#rt) {
      last.conns.push(this);
      return;
    }
    if (batches.length === 0) setImmediate(flushBatches);
    batches.push({ rt: this.#rt, frame, conns: [this] });
  }

  /** Something else is written in this turn, or the socket ends: the held frame goes first, into the cork. */
  #release(socket: Socket): void {
    const held = this.#held;
    if (held === null) return;
    this.#held = null;
    if (!this.#corked) this.#cork(socket);
    socket.write(held);
  }

  static {
    /**
     * The end of the turn for held frames: one addon call per batch for the connections that still
     * hold its frame; what a socket did not take (a full buffer, an error) goes to `socket.write`,
     * which queues it or runs Node's error path exactly as if it had written the frame itself.
     */
    flushBatches = (): void => {
      const list = batches;
      batches = [];
      for (let k = 0; k < list.length; k++) {
        const { rt, frame, conns } = list[k] as Batch;
        if (fds.length < conns.length) {
          fds = new Uint32Array(conns.length * 2);
          failures = new Uint32Array(conns.length * 4);
        }
        let n = 0;
        for (let i = 0; i < conns.length; i++) {
          const conn = conns[i] as WsConnection;
          // Released into the cork meanwhile (or held again later with another frame).
          if (conn.#held !== frame) continue;
          conn.#held = null;
          const socket = conn.#socket as Socket;
          if (socket.destroyed) continue;
          if (socket.writableLength === 0 && socket.writableCorked === 0 && socket.writable) {
            conns[n] = conn;
            fds[n++] = conn.#fd;
          } else {
            // The socket was written or ended behind the connection's back: Node's order from here.
            socket.write(frame);
          }
        }
        if (n === 0) continue;
        const failed = (rt.native as NativeSend).sendToMany(frame, fds, n, failures);
        rt.fanout.native += n - failed;
        rt.fanout.handedBack += failed;
        for (let f = 0; f < failed; f++) {
          const conn = conns[failures[2 * f] as number] as WsConnection;
          const written = failures[2 * f + 1] as number;
          const socket = conn.#socket as Socket;
          socket.write(written === 0 ? frame : frame.subarray(written));
          conn.#backPressure(socket);
        }
      }
    };
  }

  /** Connections corked in this turn of the event loop. */
  static #toFlush: WsConnection[] = [];
  /** Connections corked for a write delay, by delay: one timer per delay, not per connection. */
  static #waiting = new Map<number, WsConnection[]>();

  static #delayed(ms: number): WsConnection[] {
    let list = WsConnection.#waiting.get(ms);
    if (!list) {
      list = [];
      WsConnection.#waiting.set(ms, list);
      setTimeout(WsConnection.#flushDelayed, ms, ms);
    }
    return list;
  }

  static #flushDelayed(ms: number): void {
    const list = WsConnection.#waiting.get(ms);
    WsConnection.#waiting.delete(ms);
    if (list) WsConnection.#flush(list);
  }

  /** Uncorks every connection of `list` (written in this turn, or over a write delay). */
  static #flush(list: WsConnection[]): void {
    if (list === WsConnection.#toFlush) WsConnection.#toFlush = [];
    for (let i = 0; i < list.length; i++) {
      const conn = list[i] as WsConnection;
      conn.#corked = false;
      conn.#socket?.uncork();
    }
  }

  #write(bytes: Buffer): boolean {
    const socket = this.#socket;
    if (!socket || socket.destroyed) return false;
    if (this.#slowConsumer(socket)) return false;
    this.#put(bytes);
    this.#backPressure(socket);
    return true;
  }

  /**
   * The slow-consumer check looks at the backlog a new message would join, not at the message: a
   * client that still has more than `maxBufferedBytes` of earlier output waiting is closed (1013),
   * while one message of any size over a shorter backlog is queued (a 20 MiB push to a client that
   * reads is fine).
   */
  #slowConsumer(socket: Socket): boolean {
    const backlog = this.#held === null ? socket.writableLength : socket.writableLength + this.#held.length;
    if (backlog <= this.#route.maxBufferedBytes || this.readyState !== ReadyState.OPEN) return false;
    this.ctx.log.warn({ connId: this.id, buffered: backlog }, 'ws slow consumer: closing (1013)');
    this.close(CloseCode.TRY_AGAIN, 'slow consumer');
    return true;
  }

  /** Stops reading while more than OUTPUT_HIGH_WATER waits to be written; 'drain' resumes. */
  #backPressure(socket: Socket): void {
    if (this.#outPaused || socket.writableLength <= OUTPUT_HIGH_WATER) return;
    this.#outPaused = true;
    socket.pause();
    socket.once('drain', () => {
      this.#outPaused = false;
      if (!this.#paused && this.readyState !== ReadyState.CLOSED) socket.resume();
    });
  }

  /** Reading is paused (queue full or output backed up). */
  get readPaused(): boolean {
    return this.#paused || this.#outPaused;
  }
}
