/**
 * The per-app bus: `emit/on/request` on event names that get the app's subject prefix, so apps
 * sharing a transport never see each other's events unless they ask (`getApp('admin').bus`).
 * Payloads travel as JSON on every driver (the memory driver too), so code that works in
 * development behaves the same on NATS.
 */
import type { MegaTracer, OpStatsSnapshot, TraceAttributes, TraceCarrier } from '@mega/adapters';
import { OpStats } from '@mega/adapters';
import type { Logger } from '@mega/kernel';
import { isMegaError, MegaError } from '@mega/kernel';
import type { NatsStats, NatsTransport } from './drivers/nats.js';
import { checkSubject, hasWildcard } from './subjects.js';
import type { Transport } from './transport.js';

export interface MessageMeta {
  /** The event name as subscribed under this app's prefix (no prefix). */
  event: string;
  /** The full subject on the wire. */
  subject: string;
}

/** A handler's return value is the reply when the message is a request. */
export type Handler<T = unknown, R = unknown> = (payload: T, meta: MessageMeta) => R | Promise<R>;

export interface RequestOptions {
  /** Milliseconds to wait for the first reply. Default: the app's `bus.requestTimeoutMs` (5000). */
  timeout?: number;
}

export interface BusStats {
  driver: Transport['driver'];
  prefix: string;
  /** Transport alias (nats) or the driver name. */
  service: string;
  emitted: number;
  emitErrors: number;
  received: number;
  requests: number;
  handlerErrors: number;
  subscriptions: number;
  /** Requests: operations, failures and latency until the reply. */
  ops: OpStatsSnapshot;
  /** nats.js counters, plus the outbox: messages not yet confirmed, re-sent after a reconnect, refused. */
  nats?: NatsStats | undefined;
}

type ReplyEnvelope = { ok: true; data: unknown } | { ok: false; error: { code: string; message: string; details?: unknown } };

const DONE = Promise.resolve();

export class Bus {
  readonly prefix: string;
  readonly #transport: Transport;
  readonly #service: string;
  readonly #log: Logger;
  readonly #timeoutMs: number;
  /** The `tracing` service when @mega/tracing is loaded: publish, handle and request spans. */
  readonly #tracer: MegaTracer | undefined;
  /** Requests: count, failures, latency until the reply. */
  readonly #stats = new OpStats();
  /** Validated event name -> full subject (emit is a hot path; names repeat). */
  readonly #subjects = new Map<string, string>();
  /** Event name -> span attributes (made once per name; the tracer copies what it keeps). */
  readonly #spanAttrs = new Map<string, TraceAttributes>();
  #emitted = 0;
  #emitErrors = 0;
  #received = 0;
  #requests = 0;
  #handlerErrors = 0;
  #subscriptions = 0;

  constructor(
    transport: Transport,
    options: { prefix: string; service: string; log: Logger; requestTimeoutMs: number; tracer?: MegaTracer | undefined },
  ) {
    this.#transport = transport;
    this.#tracer = options.tracer;
    this.prefix = options.prefix;
    this.#service = options.service;
    this.#log = options.log;
    this.#timeoutMs = options.requestTimeoutMs;
  }

  get driver(): Transport['driver'] {
    return this.#transport.driver;
  }

  /** The transport's own handle: the `NatsConnection` for nats, null otherwise. */
  get native(): unknown {
    return this.#transport.native;
  }

  /**
   * Publishes `payload` (JSON) to every subscriber of `event` in this app. nats: resolves once the
   * server confirmed it, including across a reconnect (buffered meanwhile, bounded); rejects with
   * `bus.unavailable` when it cannot be kept (buffer full, shutdown). See the README's "Delivery".
   */
  emit(event: string, payload?: unknown): Promise<void> {
    const tracer = this.#tracer;
    if (tracer) {
      return tracer.run(`bus.publish ${event}`, 'producer', this.#spanAttributes(event), () =>
        this.#emit(event, payload, this.#carrier(tracer)),
      );
    }
    return this.#emit(event, payload, undefined);
  }

  #emit(event: string, payload: unknown, trace: TraceCarrier | undefined): Promise<void> {
    let sent: void | Promise<void>;
    try {
      sent = this.#transport.publish(this.#subjects.get(event) ?? this.#subject(event, false), encode(payload, event), trace);
    } catch (error) {
      this.#emitErrors++;
      return Promise.reject(error);
    }
    this.#emitted++;
    return sent ?? DONE;
  }

  /**
   * Calls `handler` for each `event` (wildcards: `*` one word, `>` the rest). For a request, the
   * first handler returning something other than undefined answers (plain listeners stay silent). A
   * handler that throws is logged with the event name and the subscription stays; for a request its
   * error is the reply. Returns the unsubscribe function.
   */
  on<T = unknown, R = unknown>(event: string, handler: Handler<T, R>): () => void {
    const full = this.#subjects.get(event) ?? this.#subject(event, true);
    const prefixLength = this.prefix.length;
    // An exact subscription hands every message the same (frozen) meta.
    const fixed: MessageMeta | undefined = hasWildcard(event) ? undefined : Object.freeze({ event, subject: full });
    const tracer = this.#tracer;
    const off = this.#transport.subscribe(full, (data, subject, respond, trace) => {
      this.#received++;
      const meta = fixed ?? { event: subject.slice(prefixLength), subject };
      let result: unknown;
      try {
        // A message from another process continues its sender's trace (`trace`, from its headers);
        // in-process delivery already runs in the sender's context.
        result = tracer
          ? tracer.run(
              `bus.handle ${meta.event}`,
              'consumer',
              this.#spanAttributes(meta.event),
              () => handler(JSON.parse(data) as T, meta),
              trace,
            )
          : handler(JSON.parse(data) as T, meta);
      } catch (error) {
        this.#failed(error, meta, respond);
        return;
      }
      if (!respond) {
        if (result instanceof Promise) result.catch((error: unknown) => this.#failed(error, meta, undefined));
      } else if (result instanceof Promise) {
        result.then(
          (value) => value !== undefined && respond(reply(value)),
          (error: unknown) => this.#failed(error, meta, respond),
        );
      } else if (result !== undefined) respond(reply(result));
    });
    this.#subscriptions++;
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.#subscriptions--;
      off();
    };
  }

  /**
   * Sends `payload` to `event` and resolves with the first handler's return value. Rejects with
   * `bus.request_timeout`, `bus.no_responders`, or the responder's own error code.
   */
  request<R = unknown>(event: string, payload?: unknown, options: RequestOptions = {}): Promise<R> {
    const tracer = this.#tracer;
    if (tracer) {
      return tracer.run(`bus.request ${event}`, 'client', this.#spanAttributes(event), () =>
        this.#request<R>(event, payload, options, this.#carrier(tracer)),
      );
    }
    return this.#request<R>(event, payload, options, undefined);
  }

  async #request<R>(event: string, payload: unknown, options: RequestOptions, trace: TraceCarrier | undefined): Promise<R> {
    const subject = this.#subjects.get(event) ?? this.#subject(event, false);
    const timeout = options.timeout ?? this.#timeoutMs;
    this.#requests++;
    const started = performance.now();
    let envelope: ReplyEnvelope;
    try {
      envelope = JSON.parse(await this.#transport.request(subject, encode(payload, event), timeout, trace)) as ReplyEnvelope;
    } catch (error) {
      this.#stats.record(performance.now() - started, true);
      throw error;
    }
    this.#stats.record(performance.now() - started, !envelope.ok);
    if (envelope.ok) return envelope.data as R;
    const { code, message, details } = envelope.error;
    throw new MegaError(code, message, { details: { event, remote: true, ...(details === undefined ? {} : { cause: details }) } });
  }

  stats(): BusStats {
    const nats = this.#transport.driver === 'nats' ? (this.#transport as NatsTransport).natsStats() : undefined;
    return {
      driver: this.#transport.driver,
      prefix: this.prefix,
      service: this.#service,
      emitted: this.#emitted,
      emitErrors: this.#emitErrors,
      received: this.#received,
      requests: this.#requests,
      handlerErrors: this.#handlerErrors,
      subscriptions: this.#subscriptions,
      ops: this.#stats.snapshot(),
      ...(nats ? { nats } : {}),
    };
  }

  #spanAttributes(event: string): TraceAttributes {
    let attrs = this.#spanAttrs.get(event);
    if (attrs === undefined) {
      attrs = { 'messaging.system': this.#transport.driver, 'messaging.destination.name': this.prefix + event, 'mega.bus.event': event };
      // Event names come from code, but wildcard handlers see whatever is published: bounded.
      if (this.#spanAttrs.size >= 10_000) this.#spanAttrs.clear();
      this.#spanAttrs.set(event, attrs);
    }
    return attrs;
  }

  /** The active trace context for a transport that crosses processes (message headers); none in-process. */
  #carrier(tracer: MegaTracer): TraceCarrier | undefined {
    if (!this.#transport.carriesTrace) return undefined;
    const carrier: TraceCarrier = {};
    tracer.inject(carrier);
    return carrier.traceparent ? carrier : undefined;
  }

  #subject(event: string, wildcards: boolean): string {
    checkSubject(event, wildcards);
    const subject = this.prefix + event;
    if (this.#subjects.size >= 10_000) this.#subjects.clear();
    // Only names valid for emit as well as on (no wildcards) are remembered.
    if (!hasWildcard(event)) this.#subjects.set(event, subject);
    return subject;
  }

  #failed(error: unknown, meta: MessageMeta, respond: ((reply: string) => void) | undefined): void {
    this.#handlerErrors++;
    this.#log.error(
      { err: error, event: meta.event, subject: meta.subject },
      `bus handler for "${meta.event}" failed: ${(error as Error)?.message ?? error}`,
    );
    if (!respond) return;
    const e = isMegaError(error)
      ? error
      : new MegaError('bus.handler_failed', `handler for "${meta.event}" failed: ${(error as Error)?.message ?? error}`);
    respond(JSON.stringify({ ok: false, error: e.toJSON() }));
  }
}

function encode(payload: unknown, event: string): string {
  try {
    return JSON.stringify(payload === undefined ? null : payload);
  } catch (error) {
    throw new MegaError('bus.invalid_payload', `payload of "${event}" cannot be sent as JSON: ${(error as Error).message}`, {
      details: { event },
      cause: error,
    });
  }
}

function reply(value: unknown): string {
  try {
    return JSON.stringify({ ok: true, data: value === undefined ? null : value });
  } catch (error) {
    return JSON.stringify({
      ok: false,
      error: { code: 'bus.invalid_payload', message: `reply cannot be sent as JSON: ${(error as Error).message}` },
    });
  }
}
