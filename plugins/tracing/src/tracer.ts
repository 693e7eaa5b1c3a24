/**
 * One kernel's tracing: its own batch processor, exporter and resource (so several kernels in one
 * process, as in tests, keep their own service name, sampling and receiver), the process-wide
 * AsyncLocalStorage context manager (installed once), W3C trace context in and out, and the
 * `MegaTracer` contract the instrumented plugins call.
 *
 * Sampling. A new trace (no valid inbound `traceparent`) is recorded with probability
 * `samplingRatio`; a continued one follows its parent's sampled flag (parent-based). A sampled-out
 * operation still runs inside a context holding an `Unsampled` span, so its log lines carry ids and
 * the calls it makes carry `traceparent` with the sampled flag off (downstream services and job
 * workers drop the same trace); inside it, client/internal spans are not made at all.
 */
import type { MegaTracer, TraceAttributes, TraceAttributeValue, TraceCarrier, TraceSpan, TraceSpanKind } from '@mega/adapters';
import { redactText, redactUrl } from '@mega/adapters';
import type { Logger } from '@mega/kernel';
import { within } from '@mega/kernel';
import type { Attributes, Context, Link, Span, SpanContext, TextMapGetter, TextMapSetter, Tracer } from '@opentelemetry/api';
import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import type { ExportResult, InstrumentationScope } from '@opentelemetry/core';
import { ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace';
import { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider } from '@opentelemetry/sdk-trace';
import type { TracingConfig } from './config.js';
import type { BatchLedger } from './otlp.js';
import { EXPORT_CONTEXT, OtlpBatchProcessor, otlpHttpSender } from './otlp.js';
import type { SpanSink } from './spans.js';
import { nowMs, Recorded, scopeOf, Unsampled } from './spans.js';

const KINDS: Record<TraceSpanKind, SpanKind> = {
  internal: SpanKind.INTERNAL,
  server: SpanKind.SERVER,
  client: SpanKind.CLIENT,
  producer: SpanKind.PRODUCER,
  consumer: SpanKind.CONSUMER,
};

/**
 * Which kernel's tracing made a recorded span, by the span's resource (one per kernel): process-wide
 * hooks such as fetch's pick by it. Spans sampled out have none: they only carry their context along.
 */
const owners = new WeakMap<object, Tracing>();

/** The W3C headers of `ctx` (empty when it holds no valid span). */
export function carrierOf(ctx: Context): TraceCarrier {
  const carrier: TraceCarrier = {};
  propagator.inject(ctx, carrier, setter);
  return carrier;
}

/** The kernel tracing that made `span`, when it is a recorded span of ours (or of `ctx.tracer.otel`). */
export function ownerOf(span: Span): Tracing | undefined {
  const resource = (span as Partial<ReadableSpan>).resource;
  return resource ? owners.get(resource) : undefined;
}

/** Whether children of `span` are recorded: its trace is sampled (an `Unsampled` span answers without making ids). */
export function sampled(span: Span): boolean {
  return !(span instanceof Unsampled) && (span.spanContext().traceFlags & TraceFlags.SAMPLED) !== 0;
}

const propagator = new W3CTraceContextPropagator();
type Headers = Record<string, string | string[] | undefined>;
const getter: TextMapGetter<Headers> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};
const setter: TextMapSetter<TraceCarrier> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};

let contextManagerSet = false;
/**
 * The AsyncLocalStorage context manager, installed once per process. When an application already
 * registered its own (an OpenTelemetry SDK of its own), that one stays and is used.
 */
function installContextManager(): void {
  if (contextManagerSet) return;
  contextManagerSet = true;
  const manager = new AsyncLocalStorageContextManager().enable();
  if (!context.setGlobalContextManager(manager)) manager.disable();
}

/** What `run`/`start` hand out when nothing is recorded (outside a trace, or in a sampled-out one). */
const NO_SPAN: TraceSpan = { setAttribute: () => undefined, fail: () => undefined, end: () => undefined };

/** Records an error on a span: an exception event (message, type, stack) and status ERROR. */
export function failSpan(span: Span, error: unknown): void {
  const e = error instanceof Error ? error : new Error(String(error));
  span.recordException(e);
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string') span.setAttribute('mega.error.code', code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
}

/** A copy without undefined values (the caller's object may be shared or frozen; spans own theirs). */
function attributes(input: TraceAttributes | undefined): Attributes {
  const out: Attributes = {};
  if (input) {
    for (const key in input) {
      const value = input[key];
      if (value !== undefined) out[key] = value;
    }
  }
  return out;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/** Runs `fn(span)` with `ctx` active and ends `span` when it returns or settles; failures are recorded and passed on. */
function runSpan<T>(span: Recorded, ctx: Context, fn: (span: TraceSpan) => T): T {
  let result: T;
  try {
    result = context.with(ctx, fn, undefined, span);
  } catch (error) {
    span.fail(error);
    span.end();
    throw error;
  }
  if (!isThenable(result)) {
    span.end();
    return result;
  }
  return result.then(
    (value) => {
      span.end();
      return value;
    },
    (error: unknown) => {
      span.fail(error);
      span.end();
      throw error;
    },
  ) as T;
}

export interface ExportStats {
  /** Spans the receiver accepted. */
  exported: number;
  /** Spans lost: their export failed (receiver down, timeout, refusal), or the queue was full. */
  dropped: number;
  /** Export requests that failed. */
  failedExports: number;
}

/**
 * What exports got through and what they lost. A failed export drops its spans (the app never waits
 * on the receiver) and warns at most once per `intervalMs`, with the number of spans lost since the
 * previous warning.
 */
class Ledger implements BatchLedger {
  readonly stats: ExportStats = { exported: 0, dropped: 0, failedExports: 0 };
  #unreported = 0;
  #lastWarn = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly log: Logger,
    private readonly target: string,
    private readonly intervalMs: number,
  ) {}

  exported(count: number): void {
    this.stats.exported += count;
  }

  failed(count: number, error: Error | undefined, request = true): void {
    if (request) this.stats.failedExports++;
    this.stats.dropped += count;
    this.#unreported += count;
    const now = performance.now();
    if (now - this.#lastWarn < this.intervalMs) return;
    this.#lastWarn = now;
    const dropped = this.#unreported;
    this.#unreported = 0;
    const reason = redactText(error?.message || 'export failed');
    // Outside any trace: this may run inside the request whose span found the queue full.
    context.with(EXPORT_CONTEXT, () =>
      this.log.warn(
        { dropped, endpoint: this.target, reason, total: this.stats.dropped },
        `tracing: ${dropped} span(s) dropped: export to ${this.target} failed (${reason}); the app keeps serving, next warning in ${Math.round(this.intervalMs / 1000)} s at most`,
      ),
    );
  }
}

/** The SDK exporter behind the `console` and `none` exporters' batch processor, reporting to the ledger. */
class CountingExporter implements SpanExporter {
  constructor(
    private readonly inner: SpanExporter,
    private readonly ledger: Ledger,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    // The batch processor exports from inside whichever request ended the batch's last span, or armed
    // its timer: the export runs outside any trace instead, so nothing in it is traced or carries ids.
    context.with(EXPORT_CONTEXT, () =>
      this.inner.export(spans, (result) => {
        if (result.code === ExportResultCode.SUCCESS) this.ledger.exported(spans.length);
        else this.ledger.failed(spans.length, result.error);
        done(result);
      }),
    );
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
}

/** `exporter: 'console'`: one JSON line per span on stdout. */
class JsonLineExporter implements SpanExporter {
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    for (const s of spans) {
      const c = s.spanContext();
      process.stdout.write(
        `${JSON.stringify({
          traceId: c.traceId,
          spanId: c.spanId,
          parentSpanId: s.parentSpanContext?.spanId,
          name: s.name,
          kind: SpanKind[s.kind],
          durationMs: s.duration[0] * 1e3 + s.duration[1] / 1e6,
          status: s.status.code === SpanStatusCode.ERROR ? 'error' : 'ok',
          attributes: s.attributes,
          service: s.resource.attributes['service.name'],
        })}\n`,
      );
    }
    done({ code: ExportResultCode.SUCCESS });
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** `exporter: 'none'`: spans are made (ids in logs, propagation) and discarded. */
class NoExporter implements SpanExporter {
  export(_spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    done({ code: ExportResultCode.SUCCESS });
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

export interface TracingOptions {
  config: TracingConfig & { serviceName: string };
  log: Logger;
  /** Resource attributes besides service.name and the config's (version, instance id, pid). */
  resource: Record<string, string | number>;
  version: string;
}

export class Tracing implements MegaTracer, SpanSink {
  /** The OpenTelemetry tracer (`ctx.tracer.otel`, the full API): its spans go to the same exporter. */
  readonly otel: Tracer;
  readonly provider: TracerProvider;
  readonly resource: Resource;
  readonly scope: InstrumentationScope;
  readonly processor: SpanProcessor;
  readonly #ledger: Ledger;
  readonly #shutdownMs: number;
  /** Drops the exports still on their way when shutdown runs out of time (the OTLP sender). */
  readonly #abandon: () => void = () => undefined;
  readonly #ratio: number;
  /** The endpoint as logs may show it (credentials masked). */
  readonly target: string;

  constructor(options: TracingOptions) {
    installContextManager();
    const { config } = options;
    this.target = config.exporter === 'otlp' ? (redactUrl(config.endpoint) ?? config.endpoint) : config.exporter;
    this.#ledger = new Ledger(options.log, this.target, config.warnIntervalMs);
    this.#shutdownMs = config.shutdownTimeoutMs;
    this.#ratio = config.samplingRatio;
    this.resource = resourceFromAttributes({ ...options.resource, ...config.resourceAttributes, 'service.name': config.serviceName });
    // Spans keep this very object: it tells which kernel made a span.
    owners.set(this.resource, this);
    this.scope = { name: '@mega/tracing', version: options.version };
    const batch = config.batch;
    if (config.exporter === 'otlp') {
      // Spans encoded as they end, batches of bytes (otlp.ts): what the recorded share of requests costs.
      const sender = otlpHttpSender({ url: config.endpoint, headers: config.headers, timeoutMillis: batch.exportTimeoutMs });
      this.#abandon = sender.abandon;
      this.processor = new OtlpBatchProcessor({
        resource: this.resource,
        send: sender.send,
        shutdown: sender.shutdown,
        ledger: this.#ledger,
        delayMs: batch.delayMs,
        maxBatch: Math.min(batch.maxBatch, batch.maxQueue),
        maxQueue: batch.maxQueue,
      });
    } else {
      this.processor = new BatchSpanProcessor({
        exporter: new CountingExporter(config.exporter === 'console' ? new JsonLineExporter() : new NoExporter(), this.#ledger),
        scheduledDelayMillis: batch.delayMs,
        maxExportBatchSize: Math.min(batch.maxBatch, batch.maxQueue),
        maxQueueSize: batch.maxQueue,
        exportTimeoutMillis: batch.exportTimeoutMs,
      });
    }
    // The SDK's provider only serves `otel` (application spans); Mega's own spans are made in
    // spans.ts and handed to the same processor.
    this.provider = new TracerProvider({
      resource: this.resource,
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.samplingRatio) }),
      spanProcessors: [this.processor],
    });
    this.otel = this.provider.getTracer('@mega/tracing', options.version);
  }

  /** The root decision for a new trace: recorded with probability `samplingRatio`. */
  sampleRoot(): boolean {
    const r = this.#ratio;
    return r >= 1 || (r > 0 && Math.random() < r);
  }

  /** The span context of a valid inbound `traceparent` (and `tracestate`); undefined when missing or malformed. */
  parentOf(headers: Headers): SpanContext | undefined {
    if (headers.traceparent === undefined) return undefined;
    return trace.getSpanContext(propagator.extract(ROOT_CONTEXT, headers, getter));
  }

  /** Whether a span continuing `parent` (or starting a trace when there is none) is recorded. */
  decide(parent: SpanContext | undefined): boolean {
    return parent ? (parent.traceFlags & TraceFlags.SAMPLED) !== 0 : this.sampleRoot();
  }

  /** A recorded span of this kernel; `attributes` becomes the span's own. */
  recorded(name: string, kind: SpanKind, attributes: Attributes, parent: SpanContext | undefined, links?: Link[]): Recorded {
    return new Recorded(this, name, kind, parent, attributes, links);
  }

  /**
   * The span of an operation started here: child of `parent` (a carrier's context) or of the active
   * span, else a new trace. Undefined when nothing is to be made: a client span outside a trace,
   * or any span inside a sampled-out one (the operation keeps the context it has).
   */
  #begin(name: string, kind: TraceSpanKind, attrs: TraceAttributes | undefined, parent: TraceCarrier | undefined): Span | undefined {
    if (parent) {
      const remote = this.parentOf(parent);
      return this.decide(remote) ? this.recorded(name, KINDS[kind], attributes(attrs), remote) : new Unsampled(remote);
    }
    const active = trace.getSpan(context.active());
    if (active === undefined) {
      if (kind === 'client') return undefined;
      return this.sampleRoot() ? this.recorded(name, KINDS[kind], attributes(attrs), undefined) : new Unsampled();
    }
    return sampled(active) ? this.recorded(name, KINDS[kind], attributes(attrs), active.spanContext()) : undefined;
  }

  run<T>(name: string, kind: TraceSpanKind, attrs: TraceAttributes | undefined, fn: (span: TraceSpan) => T, parent?: TraceCarrier): T {
    const span = this.#begin(name, kind, attrs, parent);
    if (span === undefined) return fn(NO_SPAN);
    const ctx = parent ? scopeOf(span) : trace.setSpan(context.active(), span);
    if (span instanceof Recorded) return runSpan(span, ctx, fn);
    // A new trace sampled out: its context still goes along (log ids, traceparent with sampled off).
    return context.with(ctx, fn, undefined, NO_SPAN);
  }

  /** A span of your own around `fn` (kind internal): `ctx.tracer.span('price.compute', async (span) => ...)`. */
  span<T>(name: string, fn: (span: TraceSpan) => T, attrs?: TraceAttributes): T {
    return this.run(name, 'internal', attrs, fn);
  }

  start(name: string, kind: TraceSpanKind, attrs?: TraceAttributes): TraceSpan {
    const span = this.#begin(name, kind, attrs, undefined);
    return span instanceof Recorded ? span : NO_SPAN;
  }

  recording(): boolean {
    const active = trace.getSpan(context.active());
    return active !== undefined && sampled(active);
  }

  record(name: string, kind: TraceSpanKind, attrs: TraceAttributes | undefined, durationMs: number, error?: unknown): void {
    const active = trace.getSpan(context.active());
    if (active === undefined || !sampled(active)) return;
    const end = nowMs();
    const span = new Recorded(this, name, KINDS[kind], active.spanContext(), attributes(attrs), undefined, end - Math.max(0, durationMs));
    if (error !== undefined) span.fail(error);
    span.end(end);
  }

  inject(carrier: TraceCarrier): void {
    propagator.inject(context.active(), carrier, setter);
  }

  annotate(key: string, value: TraceAttributeValue): void {
    trace.getSpan(context.active())?.setAttribute(key, value);
  }

  /** `base` with `span` active. */
  activate(base: Context, span: Span): Context {
    return trace.setSpan(base, span);
  }

  stats(): ExportStats {
    return { ...this.#ledger.stats };
  }

  /**
   * Exports every ended span now (tests, and before a planned exit). Resolves when the receiver
   * answered or the export failed: a failure is counted in `stats()` and warned about, like any other.
   */
  flush(): Promise<void> {
    return this.provider.forceFlush().catch(() => undefined);
  }

  /** Flushes what is queued, bounded by `shutdownTimeoutMs`; spans still queued after that are lost. */
  async shutdown(): Promise<void> {
    try {
      await within(
        this.provider.shutdown(),
        this.#shutdownMs,
        () => new Error(`tracing: flush did not finish within ${this.#shutdownMs} ms`),
      );
    } catch (error) {
      // What is still on its way is dropped: nothing of it keeps the process alive.
      this.#abandon();
      throw error;
    }
  }
}
