/**
 * Core NATS (`@nats-io/transport-node` v3), one connection per `services.buses` alias. The client
 * reconnects forever and re-subscribes on its own. Publishing goes through a `NatsOutbox`: the
 * client's own buffer is reset on every dial, so the outbox keeps each message until the server
 * confirmed it, buffers (bounded) while disconnected and re-sends in order after the reconnect.
 */
import type { Adapter, TraceCarrier } from '@mega/adapters';
import { errorSummary, parseServiceUrl, redactText, redactUrl, serviceOptions } from '@mega/adapters';
import type { Logger, ServiceDeclaration, Static } from '@mega/kernel';
import { MegaError, Type, UnavailableError } from '@mega/kernel';
import type { Msg, MsgHdrs, NatsConnection, NodeConnectionOptions } from '@nats-io/transport-node';
import { connect, headers, NoRespondersError, RequestError, TimeoutError } from '@nats-io/transport-node';
import type { OutboxOptions } from '../outbox.js';
import { DEFAULT_OUTBOX_BYTES, DEFAULT_OUTBOX_MESSAGES, NatsOutbox } from '../outbox.js';
import { hasWildcard } from '../subjects.js';
import type { Deliver, Transport } from '../transport.js';
import { noResponders, timeoutError } from './memory.js';

/** `services.buses.<alias>` with `driver: 'nats'`: the one source of its type and defaults. */
export const NatsDeclaration = Type.Object(
  {
    driver: Type.Literal('nats'),
    /** `nats://[user:pass@|token@]host:port` (or `tls://`), several separated by commas. */
    url: Type.String({ minLength: 1 }),
    /** Boot continues when NATS is down; the connection keeps trying in the background. */
    optional: Type.Boolean({ default: false }),
    /** Boot connect timeout. */
    connectTimeoutMs: Type.Integer({ minimum: 1, default: 5000 }),
    /** Emits held while NATS is disconnected (not yet confirmed ones included); beyond: `bus.unavailable`. */
    reconnectBufferMessages: Type.Integer({ minimum: 1, default: DEFAULT_OUTBOX_MESSAGES }),
    /** Bytes (payload + subject) held while NATS is disconnected; beyond: `bus.unavailable`. */
    reconnectBufferBytes: Type.Integer({ minimum: 1024, default: DEFAULT_OUTBOX_BYTES }),
    /** Extra `@nats-io/transport-node` connection options, passed through. */
    options: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);
export type NatsDeclaration = Static<typeof NatsDeclaration>;

/** nats.js counters of one connection, plus the outbox: messages not yet confirmed, re-sent after a reconnect, refused. */
export interface NatsStats {
  inMsgs: number;
  outMsgs: number;
  inBytes: number;
  outBytes: number;
  connected: boolean;
  pending: number;
  resent: number;
  refused: number;
}
export class NatsTransport implements Transport, Adapter {
  readonly driver = 'nats' as const;
  /** Messages cross processes: a traced sender's context goes in `traceparent`/`tracestate` headers. */
  readonly carriesTrace = true;
  readonly alias: string;
  /** @mega/tracing is loaded: received messages' trace headers are read (else never decoded). */
  readonly #traced: boolean;
  readonly url: string;
  readonly #decl: NatsDeclaration;
  readonly #log: Logger;
  #nc: NatsConnection | undefined;
  #outbox: NatsOutbox | undefined;
  /** Outboxes other plugins made on this connection (closed before the connection drains). */
  #outboxes: NatsOutbox[] = [];
  #lastOverflowWarn = 0;
  #pending: Promise<NatsConnection> | undefined;
  #early: Array<(nc: NatsConnection) => void> = [];
  /** `connection()` callers waiting for the first connect; rejected if the alias closes first. */
  #waiting: Array<{ resolve: (nc: NatsConnection) => void; reject: (error: Error) => void }> = [];
  #closed = false;

  constructor(alias: string, declaration: ServiceDeclaration, log: Logger, options: { traced?: boolean } = {}) {
    this.alias = alias;
    this.#traced = options.traced === true;
    for (const server of String(declaration.url ?? '').split(',')) parseServiceUrl('buses', alias, server.trim(), ['nats:', 'tls:']);
    this.#decl = serviceOptions('buses', alias, declaration, NatsDeclaration);
    this.url = redactUrl(this.#decl.url);
    this.#log = log;
  }

  /** The connection once it is up (waits for boot, or for an optional alias's first connect). */
  connection(): Promise<NatsConnection> {
    if (this.#nc) return Promise.resolve(this.#nc);
    if (this.#closed) return Promise.reject(this.#notConnected());
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  /** After an optional alias failed at boot: connect in the background, waiting for the first server. */
  retry(): void {
    this.connect(true).catch((error: unknown) =>
      this.#log.warn({ err: errorSummary(error), alias: this.alias }, redactText((error as Error).message)),
    );
  }

  get native(): NatsConnection {
    return this.#conn();
  }

  /** `background`: keep trying until the server answers (optional aliases); operations fail meanwhile. */
  connect(background = false): Promise<void> {
    if (this.#nc) return Promise.resolve();
    this.#pending ??= connect({
      waitOnFirstConnect: background,
      servers: this.#decl.url.split(',').map((s) => s.trim()),
      name: `mega:${this.alias}`,
      timeout: this.#decl.connectTimeoutMs,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      ...(this.#decl.options as Partial<NodeConnectionOptions> | undefined),
    }).then((nc) => {
      // Shut down while a background connect was still trying: do not keep what arrives late.
      if (this.#closed) {
        void nc.close();
        throw this.#notConnected();
      }
      this.#nc = nc;
      this.#outbox = this.#makeOutbox(nc, {
        label: `bus "${this.alias}"`,
        maxMessages: this.#decl.reconnectBufferMessages,
        maxBytes: this.#decl.reconnectBufferBytes,
      });
      this.#watch(nc);
      for (const attach of this.#early.splice(0)) attach(nc);
      for (const waiter of this.#waiting.splice(0)) waiter.resolve(nc);
      return nc;
    });
    return this.#pending.then(
      () => undefined,
      (error: unknown) => {
        this.#pending = undefined;
        throw new UnavailableError(
          'bus.unavailable',
          `bus "${this.alias}" cannot connect to ${this.url}: ${redactText((error as Error).message)}`,
          {
            details: { alias: this.alias, url: this.url, driver: 'nats' },
            cause: error,
          },
        );
      },
    );
  }

  publish(subject: string, data: string, trace?: TraceCarrier): Promise<void> {
    if (!this.#outbox) throw this.#notConnected();
    return this.#outbox.publish(subject, data, trace ? traceHeaders(trace) : undefined);
  }

  /** A publisher of its own on this connection (ws-cluster's fan-out), once connected. */
  async outbox(options: Omit<OutboxOptions, 'label'> & { label?: string }): Promise<NatsOutbox> {
    const nc = await this.connection();
    return this.#makeOutbox(nc, { label: `bus "${this.alias}"`, ...options });
  }

  #makeOutbox(nc: NatsConnection, options: OutboxOptions): NatsOutbox {
    const outbox = new NatsOutbox(nc, {
      onOverflow: (error) => {
        // One line per 5 s per connection while emits are refused.
        const now = Date.now();
        if (now - this.#lastOverflowWarn < 5000) return;
        this.#lastOverflowWarn = now;
        this.#log.warn({ alias: this.alias }, error.message);
      },
      ...options,
    });
    this.#outboxes.push(outbox);
    return outbox;
  }

  /** Before the connection is up (route files load before the bus boots) the subscription waits for it. */
  subscribe(subject: string, deliver: Deliver): () => void {
    if (this.#nc) return this.#subscribe(this.#nc, subject, deliver);
    let off: (() => void) | undefined;
    let cancelled = false;
    this.#early.push((nc) => {
      if (!cancelled) off = this.#subscribe(nc, subject, deliver);
    });
    return () => {
      cancelled = true;
      off?.();
    };
  }

  #subscribe(nc: NatsConnection, subject: string, deliver: Deliver): () => void {
    // Msg.subject and Msg.reply decode bytes on every read: an exact subscription knows its subject,
    // and whether a reply is wanted is read from the parsed header when the client exposes it.
    const exact = !hasWildcard(subject);
    const sub = nc.subscribe(subject, {
      callback: (error, msg) => {
        if (error) {
          this.#log.error({ err: errorSummary(error), subject }, `bus "${this.alias}": subscription "${subject}" failed`);
          return;
        }
        deliver(
          msg.string(),
          exact ? subject : msg.subject,
          wantsReply(msg) ? (reply) => msg.respond(reply) : undefined,
          this.#traced ? traceOf(msg) : undefined,
        );
      },
    });
    return () => sub.unsubscribe();
  }

  async request(subject: string, data: string, timeoutMs: number, trace?: TraceCarrier): Promise<string> {
    // A request sent while disconnected would sit in the client's buffer, be dropped at the next dial
    // and end as a misleading timeout: refuse it now.
    if (this.#outbox && !this.#outbox.connected) {
      throw new UnavailableError('bus.unavailable', `bus "${this.alias}" request "${subject}": NATS is disconnected (${this.url})`, {
        details: { alias: this.alias, subject, reason: 'disconnected' },
      });
    }
    try {
      const reply = await this.#conn().request(
        subject,
        data,
        trace ? { timeout: timeoutMs, headers: traceHeaders(trace) } : { timeout: timeoutMs },
      );
      return reply.string();
    } catch (error) {
      if (error instanceof TimeoutError) throw timeoutError(subject, timeoutMs);
      if (error instanceof NoRespondersError || (error instanceof RequestError && error.isNoResponders())) throw noResponders(subject);
      if (error instanceof MegaError) throw error;
      throw new UnavailableError('bus.unavailable', `bus "${this.alias}" request "${subject}" failed: ${(error as Error).message}`, {
        details: { alias: this.alias, subject },
        cause: error,
      });
    }
  }

  /** Readiness: a server round trip. */
  async check(): Promise<void> {
    try {
      await this.#conn().flush();
    } catch (error) {
      throw new UnavailableError('bus.unavailable', `bus "${this.alias}" (${this.url}) is unavailable: ${(error as Error).message}`, {
        details: { alias: this.alias, url: this.url },
        cause: error,
      });
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#early = [];
    for (const waiter of this.#waiting.splice(0)) waiter.reject(this.#notConnected());
    // Outboxes first: they wait (bounded) for the server to confirm what is pending.
    await Promise.all(this.#outboxes.splice(0).map((o) => o.close()));
    this.#outbox = undefined;
    const nc = this.#nc;
    this.#nc = undefined;
    if (nc && !nc.isClosed()) await nc.drain().catch(() => nc.close());
  }

  /** nats.js statistics (messages and bytes in/out). */
  natsStats(): NatsStats | undefined {
    const nc = this.#nc;
    const o = this.#outbox?.stats();
    return nc
      ? { ...nc.stats(), connected: o?.connected ?? false, pending: o?.pending ?? 0, resent: o?.resent ?? 0, refused: o?.refused ?? 0 }
      : undefined;
  }

  #conn(): NatsConnection {
    if (!this.#nc) throw this.#notConnected();
    return this.#nc;
  }

  #notConnected(): UnavailableError {
    return new UnavailableError('bus.unavailable', `bus "${this.alias}" is not connected to ${this.url}`, {
      details: { alias: this.alias, url: this.url },
    });
  }

  #watch(nc: NatsConnection): void {
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.#log.warn({ alias: this.alias }, `bus "${this.alias}" lost ${this.url}; reconnecting`);
        else if (s.type === 'reconnect') this.#log.info({ alias: this.alias }, `bus "${this.alias}" reconnected to ${this.url}`);
      }
    })().catch(() => undefined);
  }
}

/** A sender's W3C trace context as NATS message headers. */
function traceHeaders(trace: TraceCarrier): MsgHdrs {
  const h = headers();
  for (const key in trace) h.set(key, trace[key] as string);
  return h;
}

/** The W3C trace context a message carried (undefined without headers: nothing is decoded). */
function traceOf(msg: Msg): TraceCarrier | undefined {
  const h = msg.headers;
  const traceparent = h?.get('traceparent');
  if (!traceparent) return undefined;
  const tracestate = h?.get('tracestate');
  return tracestate ? { traceparent, tracestate } : { traceparent };
}

/** `msg.reply !== ''` without decoding the reply subject (nats.js keeps the raw header in `_msg`). */
function wantsReply(msg: Msg): boolean {
  const raw = (msg as unknown as { _msg?: { reply?: Uint8Array } })._msg;
  return raw ? raw.reply !== undefined && raw.reply.length > 0 : msg.reply !== '';
}
