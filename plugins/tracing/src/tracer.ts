/**
 * One kernel's tracing: its own TracerProvider (so several kernels in one process, as in tests,
 * keep their own resource, sampler and exporter), the process-wide AsyncLocalStorage context
 * manager (installed once), W3C trace context in and out, and the `MegaTracer` contract the
 * instrumented plugins call.
 */
import type { MegaTracer, TraceAttributes, TraceAttributeValue, TraceCarrier, TraceSpan, TraceSpanKind } from '@mega/adapters';
import { redactText, redactUrl } from '@mega/adapters';
import type { Logger } from '@mega/kernel';
import { within } from '@mega/kernel';
import type { Attributes, Context, Link, Span, TextMapGetter, TextMapSetter, Tracer } from '@opentelemetry/api';
import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import type { ExportResult } from '@opentelemetry/core';
import { ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { IdGenerator, ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import {
  BatchSpanProcessor,
  ParentBasedSampler,
  RandomIdGenerator,
  SamplingDecision,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import type { TracingConfig } from './config.js';

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

/** The kernel tracing that made `span`, when it is a recorded span of ours. */
export function ownerOf(span: Span): Tracing | undefined {
  const resource = (span as Partial<ReadableSpan>).resource;
  return resource ? owners.get(resource) : undefined;
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

/** A started span as the adapters' `TraceSpan`. */
class Handle implements TraceSpan {
  constructor(readonly span: Span) {}
  setAttribute(key: string, value: TraceAttributeValue): void {
    this.span.setAttribute(key, value);
  }
  fail(error: unknown): void {
    failSpan(this.span, error);
  }
  end(): void {
    this.span.end();
  }
}

/** What client spans get outside any traced operation: they are not made (boot checks, timers). */
const NO_SPAN: TraceSpan = { setAttribute: () => undefined, fail: () => undefined, end: () => undefined };

/** Records an error on a span: an exception event (message, type, stack) and status ERROR. */
export function failSpan(span: Span, error: unknown): void {
  const e = error instanceof Error ? error : new Error(String(error));
  span.recordException(e);
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string') span.setAttribute('mega.error.code', code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
}

function attributes(input: TraceAttributes | undefined): Attributes | undefined {
  if (!input) return undefined;
  const out: Attributes = {};
  for (const key in input) {
    const value = input[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/**
 * Random ids, except that the next trace id can be fixed: a request's root sampling decision is
 * taken before the SDK is asked for a span (see {@link Tracing.serverSpan}), and a sampled-in
 * trace must keep the id the decision was taken on.
 */
class Ids implements IdGenerator {
  readonly #random = new RandomIdGenerator();
  #next: string | undefined;
  reserve(traceId: string): void {
    this.#next = traceId;
  }
  generateTraceId(): string {
    const next = this.#next;
    if (next === undefined) return this.#random.generateTraceId();
    this.#next = undefined;
    return next;
  }
  generateSpanId(): string {
    return this.#random.generateSpanId();
  }
}

export interface ExportStats {
  /** Spans the receiver accepted. */
  exported: number;
  /** Spans lost because an export failed (receiver down, timeout, refusal). */
  dropped: number;
  /** Export requests that failed. */
  failedExports: number;
}

/**
 * The exporter behind the batch processor, counting what got through. A failed export drops its
 * spans (the app never waits on the receiver) and warns at most once per `intervalMs`, with the
 * number of spans lost since the previous warning.
 */
class CountingExporter implements SpanExporter {
  readonly stats: ExportStats = { exported: 0, dropped: 0, failedExports: 0 };
  #unreported = 0;
  #lastWarn = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly inner: SpanExporter,
    private readonly log: Logger,
    private readonly target: string,
    private readonly intervalMs: number,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS) this.stats.exported += spans.length;
      else this.#failed(spans.length, result.error);
      done(result);
    });
  }

  #failed(count: number, error: Error | undefined): void {
    this.stats.failedExports++;
    this.stats.dropped += count;
    this.#unreported += count;
    const now = performance.now();
    if (now - this.#lastWarn < this.intervalMs) return;
    this.#lastWarn = now;
    const dropped = this.#unreported;
    this.#unreported = 0;
    const reason = redactText(error?.message || 'export failed');
    this.log.warn(
      { dropped, endpoint: this.target, reason, total: this.stats.dropped },
      `tracing: ${dropped} span(s) dropped: export to ${this.target} failed (${reason}); the app keeps serving, next warning in ${Math.round(this.intervalMs / 1000)} s at most`,
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

export class Tracing implements MegaTracer {
  /** The OpenTelemetry tracer spans are made with (`ctx.tracer.otel` for the full API). */
  readonly otel: Tracer;
  readonly provider: TracerProvider;
  readonly #exporter: CountingExporter;
  readonly #shutdownMs: number;
  readonly #ids = new Ids();
  /** The root sampler's own decision, for requests without a parent; undefined at ratio 1 (all sampled). */
  readonly #rootSampler: TraceIdRatioBasedSampler | undefined;
  /** The endpoint as logs may show it (credentials masked). */
  readonly target: string;

  constructor(options: TracingOptions) {
    installContextManager();
    const { config } = options;
    this.target = config.exporter === 'otlp' ? (redactUrl(config.endpoint) ?? config.endpoint) : config.exporter;
    const inner =
      config.exporter === 'otlp'
        ? new OTLPTraceExporter({ url: config.endpoint, headers: config.headers, timeoutMillis: config.batch.exportTimeoutMs })
        : config.exporter === 'console'
          ? new JsonLineExporter()
          : new NoExporter();
    this.#exporter = new CountingExporter(inner, options.log, this.target, config.warnIntervalMs);
    this.#shutdownMs = config.shutdownTimeoutMs;
    const root = new TraceIdRatioBasedSampler(config.samplingRatio);
    this.#rootSampler = config.samplingRatio < 1 ? root : undefined;
    const resource = resourceFromAttributes({ ...options.resource, ...config.resourceAttributes, 'service.name': config.serviceName });
    // Spans keep this very object: it tells which kernel made a span.
    owners.set(resource, this);
    this.provider = new TracerProvider({
      idGenerator: this.#ids,
      resource,
      sampler: new ParentBasedSampler({ root }),
      spanProcessors: [
        new BatchSpanProcessor({
          exporter: this.#exporter,
          scheduledDelayMillis: config.batch.delayMs,
          maxExportBatchSize: Math.min(config.batch.maxBatch, config.batch.maxQueue),
          maxQueueSize: config.batch.maxQueue,
          exportTimeoutMillis: config.batch.exportTimeoutMs,
        }),
      ],
    });
    this.otel = this.provider.getTracer('@mega/tracing', options.version);
  }

  run<T>(name: string, kind: TraceSpanKind, attrs: TraceAttributes | undefined, fn: (span: TraceSpan) => T, parent?: TraceCarrier): T {
    const base = parent ? propagator.extract(ROOT_CONTEXT, parent, getter) : context.active();
    if (kind === 'client' && !parent && !trace.getSpan(base)) return fn(NO_SPAN);
    const span = this.otel.startSpan(name, { kind: KINDS[kind], attributes: attributes(attrs) }, base);
    const handle = new Handle(span);
    let result: T;
    try {
      result = context.with(this.activate(base, span), fn, undefined, handle);
    } catch (error) {
      failSpan(span, error);
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
        failSpan(span, error);
        span.end();
        throw error;
      },
    ) as T;
  }

  /** A span of your own around `fn` (kind internal): `ctx.tracer.span('price.compute', async (span) => ...)`. */
  span<T>(name: string, fn: (span: TraceSpan) => T, attrs?: TraceAttributes): T {
    return this.run(name, 'internal', attrs, fn);
  }

  start(name: string, kind: TraceSpanKind, attrs?: TraceAttributes): TraceSpan {
    const active = context.active();
    if (kind === 'client' && !trace.getSpan(active)) return NO_SPAN;
    return new Handle(this.otel.startSpan(name, { kind: KINDS[kind], attributes: attributes(attrs) }, active));
  }

  inject(carrier: TraceCarrier): void {
    propagator.inject(context.active(), carrier, setter);
  }

  annotate(key: string, value: TraceAttributeValue): void {
    trace.getSpan(context.active())?.setAttribute(key, value);
  }

  /**
   * A server span for an inbound request: child of the caller's `traceparent` when it is valid,
   * else (missing or malformed) the root of a new trace. Returns the span and the context to run
   * the request in. `attrs(arg)` is called only when the span may be recorded.
   */
  serverSpan<A>(name: string, headers: Headers, attrs: (arg: A) => Attributes, arg: A, links?: Link[]): { span: Span; ctx: Context } {
    const base = propagator.extract(ROOT_CONTEXT, headers, getter);
    const sampler = this.#rootSampler;
    if (base === ROOT_CONTEXT && sampler) {
      // A new trace: decide on its id first. Sampled out (most requests at a low ratio), the span
      // only carries ids for propagation and logs: no SDK span, attributes or processor calls.
      const traceId = this.#ids.generateTraceId();
      if (sampler.shouldSample(base, traceId).decision === SamplingDecision.NOT_RECORD) {
        const span = trace.wrapSpanContext({ traceId, spanId: this.#ids.generateSpanId(), traceFlags: TraceFlags.NONE });
        return { span, ctx: trace.setSpan(base, span) };
      }
      this.#ids.reserve(traceId);
    }
    // Attributes are built only for spans that may be recorded (the SDK copies them once).
    const span = this.otel.startSpan(name, { kind: SpanKind.SERVER, attributes: attrs(arg), ...(links ? { links } : {}) }, base);
    return { span, ctx: this.activate(base, span) };
  }

  /** `base` with `span` active. */
  activate(base: Context, span: Span): Context {
    return trace.setSpan(base, span);
  }

  stats(): ExportStats {
    return { ...this.#exporter.stats };
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
    await within(
      this.provider.shutdown(),
      this.#shutdownMs,
      () => new Error(`tracing: flush did not finish within ${this.#shutdownMs} ms`),
    );
  }
}
