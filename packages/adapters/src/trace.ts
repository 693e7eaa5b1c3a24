/**
 * The tracing contract plugins instrument against without depending on @mega/tracing or on
 * OpenTelemetry. A plugin reads `api.has('tracing')` once (declare `after: ['@mega/tracing']` so the
 * service exists by its setup), keeps `api.use<MegaTracer>('tracing')` or undefined, and pays one
 * `if (tracer)` per operation when tracing is not loaded: no closure, no promise, no allocation.
 */

/** A span attribute value (OpenTelemetry's primitive attribute values). */
export type TraceAttributeValue = string | number | boolean;

/** Attributes given when a span starts; undefined values are left out. */
export type TraceAttributes = Readonly<Record<string, TraceAttributeValue | undefined>>;

/** OpenTelemetry span kinds, by name. */
export type TraceSpanKind = 'internal' | 'server' | 'client' | 'producer' | 'consumer';

/** W3C trace context as message headers: `traceparent` and, when there is one, `tracestate`. */
export type TraceCarrier = Record<string, string>;

/** The header names of {@link TraceCarrier}. */
export const TRACE_HEADERS = ['traceparent', 'tracestate'] as const;

/** A started span. */
export interface TraceSpan {
  setAttribute(key: string, value: TraceAttributeValue): void;
  /** Records `error` as an exception event and marks the span failed. */
  fail(error: unknown): void;
  end(): void;
}

/** The `tracing` service (@mega/tracing). */
export interface MegaTracer {
  /**
   * Runs `fn` inside a new span, active while it runs (so spans and log lines inside are its
   * children), child of the active span, or of `parent` when given (headers carried in a message;
   * invalid or missing headers start a new trace). The span ends when `fn` returns or its promise
   * settles; a throw or rejection is recorded and passed on unchanged. A `client` span (a query, an
   * outgoing call) is made only inside a traced operation: outside one, `fn` just runs.
   */
  run<T>(name: string, kind: TraceSpanKind, attributes: TraceAttributes | undefined, fn: (span: TraceSpan) => T, parent?: TraceCarrier): T;
  /**
   * Starts a span, child of the active one, without making it active: for instrumentation that sees
   * an operation as start/end events (a driver's command events). The caller ends it. Like `run`,
   * a `client` span outside a traced operation is a no-op.
   */
  start(name: string, kind: TraceSpanKind, attributes?: TraceAttributes): TraceSpan;
  /**
   * True when the active context belongs to a recorded (sampled) trace, so a client span started
   * here would be recorded. Sampled-out requests answer false: check it before building attributes.
   */
  recording(): boolean;
  /**
   * Records an operation that already finished (a driver's completion event, such as Kysely's log
   * hook) as a span that started `durationMs` ago and ends now, child of the active span; `error`
   * marks it failed. Like a `client` span, nothing is made outside a recorded trace.
   */
  record(name: string, kind: TraceSpanKind, attributes: TraceAttributes | undefined, durationMs: number, error?: unknown): void;
  /** Writes the active trace context into `carrier` (nothing outside a traced context). */
  inject(carrier: TraceCarrier): void;
  /** Sets an attribute on the active span (nothing outside a traced context). */
  annotate(key: string, value: TraceAttributeValue): void;
}
