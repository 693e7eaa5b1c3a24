/**
 * The two span types Mega's own instrumentation makes, in place of the SDK's `Tracer.startSpan`:
 *
 * - `Unsampled`: a request (or message, job) sampled out. It records nothing and only carries its
 *   trace context along for log lines and outgoing `traceparent` headers, with the ids made on the
 *   first read: most sampled-out requests never need them. Making one costs an allocation; the
 *   SDK's path (two random ids, a sampler call, a wrapped span context) cost ~0.3 µs.
 * - `Recorded`: what the SDK's span records, without its per-span work that the export does not
 *   need: no attribute copying and validation for our own attributes (user values through
 *   `setAttribute` are still checked), no self-metrics, and times kept as one number each, turned
 *   into `HrTime` only when the exporter reads them. It is also a `ReadableSpan`, so the SDK's
 *   batch processor and OTLP exporters take it as it is. Start + end, into the batch processor:
 *   ~0.45 µs instead of ~1.5 µs (process CPU, this machine; the README's Cost section).
 *
 * Spans made through `ctx.tracer.otel` (the SDK tracer) mix freely with these: parents are read
 * through the API's `spanContext()`, and both end in the same batch processor.
 */
import { randomBytes } from 'node:crypto';
import type {
  Attributes,
  AttributeValue,
  Context,
  Exception,
  HrTime,
  Link,
  Span,
  SpanContext,
  SpanKind,
  SpanStatus,
  TimeInput,
} from '@opentelemetry/api';
import { createContextKey, ROOT_CONTEXT, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';
import type { InstrumentationScope } from '@opentelemetry/core';
import { isAttributeValue, isTimeInputHrTime } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, SpanProcessor, TimedEvent } from '@opentelemetry/sdk-trace';

/** Span limits, as the SDK's defaults. */
const MAX_ATTRIBUTES = 128;
const MAX_EVENTS = 128;
const MAX_LINKS = 128;

/**
 * Trace and span ids: slices of one hex string of 4 KiB of random bytes (crypto), refilled when
 * used up. ~30 ns an id; the SDK's generator (Math.random into a buffer, then hex) took ~110 ns.
 */
let pool = '';
let taken = 0;
function hexId(chars: number): string {
  if (taken + chars > pool.length) {
    pool = randomBytes(4096).toString('hex');
    taken = 0;
  }
  const id = pool.slice(taken, taken + chars);
  taken += chars;
  // All zeros is the invalid id (one chance in 2^64): draw again.
  return id !== ZEROS_32 && id !== ZEROS_16 ? id : hexId(chars);
}
const ZEROS_32 = '0'.repeat(32);
const ZEROS_16 = '0'.repeat(16);
export const ids = { traceId: (): string => hexId(32), spanId: (): string => hexId(16) };

const SPAN_KEY = createContextKey('OpenTelemetry Context Key SPAN');
/**
 * A context holding one span and nothing else: what `trace.setSpan(ROOT_CONTEXT, span)` makes, as
 * one small object instead of the API's Map and three closures per context (every request makes
 * one). Setting or deleting a value returns the API's own context.
 */
class SpanScope implements Context {
  constructor(private readonly span: Span) {}
  getValue(key: symbol): unknown {
    return key === SPAN_KEY ? this.span : undefined;
  }
  setValue(key: symbol, value: unknown): Context {
    return ROOT_CONTEXT.setValue(SPAN_KEY, this.span).setValue(key, value);
  }
  deleteValue(key: symbol): Context {
    return key === SPAN_KEY ? ROOT_CONTEXT : this;
  }
}

/** A context holding only `span` (the API's own when it ever keys spans another way than SpanScope assumes). */
export function scopeOf(span: Span): Context {
  return scopeWorks ? new SpanScope(span) : trace.setSpan(ROOT_CONTEXT, span);
}
let scopeWorks = true;

/** Where recorded spans of one kernel go. */
export interface SpanSink {
  readonly resource: Resource;
  readonly scope: InstrumentationScope;
  readonly processor: SpanProcessor;
}

/**
 * Wall-clock milliseconds (fractional) from the monotonic clock, re-anchored to `Date.now()` once a
 * second, as the SDK anchors each span (the two drift apart over days, and after a clock step).
 */
let anchor = Date.now() - performance.now();
let anchoredAt = performance.now();
export function nowMs(): number {
  const p = performance.now();
  if (p - anchoredAt > 1000) {
    anchor = Date.now() - p;
    anchoredAt = p;
  }
  return anchor + p;
}

function toHrTime(ms: number): HrTime {
  const seconds = Math.floor(ms / 1000);
  const nanos = Math.round((ms - seconds * 1000) * 1e6);
  return nanos >= 1e9 ? [seconds + 1, nanos - 1e9] : [seconds, nanos];
}

/** A `TimeInput` as wall-clock milliseconds (numbers below `performance.now()` are monotonic times, as in the SDK). */
function inputMs(time: TimeInput): number {
  if (typeof time === 'number') return time <= performance.now() ? time + (nowMs() - performance.now()) : time;
  if (time instanceof Date) return time.getTime();
  if (isTimeInputHrTime(time)) return time[0] * 1000 + time[1] / 1e6;
  return nowMs();
}

const UNSET: SpanStatus = { code: SpanStatusCode.UNSET };
/**
 * Shared until a span gets its first event or link (most never do): two arrays fewer per recorded
 * span, which the batch processor keeps until its export (promoted to the old generation at low
 * sampling ratios, where a batch fills slowly).
 */
const NO_EVENTS: TimedEvent[] = Object.freeze([]) as unknown as TimedEvent[];
const NO_LINKS: Link[] = Object.freeze([]) as unknown as Link[];

/** A span sampled out: records nothing, carries its trace context (ids made on first read). */
export class Unsampled implements Span {
  readonly #parent: SpanContext | undefined;
  #context: SpanContext | undefined;

  /** `parent`: the remote or local span context it continues (sampled out too); none: a new trace. */
  constructor(parent?: SpanContext) {
    this.#parent = parent;
  }

  spanContext(): SpanContext {
    if (this.#context === undefined) {
      const p = this.#parent;
      this.#context = p
        ? { traceId: p.traceId, spanId: ids.spanId(), traceFlags: TraceFlags.NONE, traceState: p.traceState }
        : { traceId: ids.traceId(), spanId: ids.spanId(), traceFlags: TraceFlags.NONE };
    }
    return this.#context;
  }
  setAttribute(): this {
    return this;
  }
  setAttributes(): this {
    return this;
  }
  addEvent(): this {
    return this;
  }
  addLink(): this {
    return this;
  }
  addLinks(): this {
    return this;
  }
  setStatus(): this {
    return this;
  }
  updateName(): this {
    return this;
  }
  end(): void {}
  isRecording(): boolean {
    return false;
  }
  recordException(): void {}
  /** `TraceSpan` (@mega/adapters): nothing to record. */
  fail(): void {}
}

/** A recorded span; `attributes` is owned by the span from here on (callers pass a fresh object). */
export class Recorded implements Span, ReadableSpan {
  name: string;
  readonly kind: SpanKind;
  readonly parentSpanContext: SpanContext | undefined;
  readonly attributes: Attributes;
  links: Link[];
  events: TimedEvent[] = NO_EVENTS;
  status: SpanStatus = UNSET;
  readonly resource: Resource;
  readonly instrumentationScope: InstrumentationScope;
  droppedAttributesCount = 0;
  droppedEventsCount = 0;
  droppedLinksCount = 0;
  ended = false;
  readonly #context: SpanContext;
  readonly #processor: SpanProcessor;
  readonly #start: number;
  #end = 0;
  #count: number;

  constructor(
    sink: SpanSink,
    name: string,
    kind: SpanKind,
    parent: SpanContext | undefined,
    attributes: Attributes,
    links?: Link[],
    startMs?: number,
  ) {
    this.#start = startMs ?? nowMs();
    this.name = name;
    this.kind = kind;
    this.parentSpanContext = parent;
    this.#context = parent
      ? { traceId: parent.traceId, spanId: ids.spanId(), traceFlags: TraceFlags.SAMPLED, traceState: parent.traceState }
      : { traceId: ids.traceId(), spanId: ids.spanId(), traceFlags: TraceFlags.SAMPLED };
    this.attributes = attributes;
    this.#count = -1;
    this.links = links ?? NO_LINKS;
    this.resource = sink.resource;
    this.instrumentationScope = sink.scope;
    this.#processor = sink.processor;
  }

  /** Start and end as epoch milliseconds (the OTLP encoder reads these, not the `HrTime` getters). */
  get startMs(): number {
    return this.#start;
  }
  get endMs(): number {
    return this.#end;
  }

  get startTime(): HrTime {
    return toHrTime(this.#start);
  }
  get endTime(): HrTime {
    return toHrTime(this.#end);
  }
  get duration(): HrTime {
    return toHrTime(Math.max(0, this.#end - this.#start));
  }

  spanContext(): SpanContext {
    return this.#context;
  }

  /** An attribute from our own instrumentation: no checks (primitive values, known keys). */
  set(key: string, value: AttributeValue): void {
    if (!this.ended) this.attributes[key] = value;
  }

  setAttribute(key: string, value?: AttributeValue): this {
    if (this.ended || !key || value === undefined || value === null || !isAttributeValue(value)) return this;
    if (!(key in this.attributes)) {
      if (this.#count === -1) this.#count = Object.keys(this.attributes).length;
      if (this.#count >= MAX_ATTRIBUTES) {
        this.droppedAttributesCount++;
        return this;
      }
      this.#count++;
    }
    this.attributes[key] = value;
    return this;
  }

  setAttributes(attributes: Attributes): this {
    for (const key in attributes) this.setAttribute(key, attributes[key]);
    return this;
  }

  addEvent(name: string, attributesOrTime?: Attributes | TimeInput, time?: TimeInput): this {
    if (this.ended) return this;
    if (this.events.length >= MAX_EVENTS) {
      this.droppedEventsCount++;
      return this;
    }
    const isTime = typeof attributesOrTime === 'number' || attributesOrTime instanceof Date || isTimeInputHrTime(attributesOrTime);
    const at = isTime ? (attributesOrTime as TimeInput) : time;
    const attributes: Attributes = {};
    if (!isTime && attributesOrTime) {
      for (const key in attributesOrTime as Attributes) {
        const value = (attributesOrTime as Attributes)[key];
        if (value !== undefined && value !== null && isAttributeValue(value)) attributes[key] = value;
      }
    }
    const event: TimedEvent = { name, time: toHrTime(at === undefined ? nowMs() : inputMs(at)), attributes, droppedAttributesCount: 0 };
    if (this.events === NO_EVENTS) this.events = [event];
    else this.events.push(event);
    return this;
  }

  addLink(link: Link): this {
    if (this.ended) return this;
    if (this.links.length >= MAX_LINKS) this.droppedLinksCount++;
    else if (this.links === NO_LINKS) this.links = [link];
    else this.links.push(link);
    return this;
  }

  addLinks(links: Link[]): this {
    for (const link of links) this.addLink(link);
    return this;
  }

  setStatus(status: SpanStatus): this {
    // As the SDK: UNSET changes nothing, OK is final.
    if (this.ended || status.code === SpanStatusCode.UNSET || this.status.code === SpanStatusCode.OK) return this;
    this.status =
      status.code === SpanStatusCode.ERROR && typeof status.message === 'string'
        ? { code: status.code, message: status.message }
        : { code: status.code };
    return this;
  }

  updateName(name: string): this {
    if (!this.ended) this.name = name;
    return this;
  }

  recordException(exception: Exception, time?: TimeInput): void {
    const attributes: Attributes = {};
    if (typeof exception === 'string') attributes['exception.message'] = exception;
    else if (exception) {
      const type = exception.code ? String(exception.code) : exception.name;
      if (type) attributes['exception.type'] = type;
      if (exception.message) attributes['exception.message'] = exception.message;
      if (exception.stack) attributes['exception.stacktrace'] = exception.stack;
    }
    this.addEvent('exception', attributes, time);
  }

  /** `TraceSpan` (@mega/adapters): the error as an exception event, status ERROR, its code when it has one. */
  fail(error: unknown): void {
    const e = error instanceof Error ? error : new Error(String(error));
    this.recordException(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') this.setAttribute('mega.error.code', code);
    this.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
  }

  end(endTime?: TimeInput): void {
    if (this.ended) return;
    this.#end = endTime === undefined ? nowMs() : inputMs(endTime);
    this.ended = true;
    this.#processor.onEnd(this);
  }

  isRecording(): boolean {
    return !this.ended;
  }
}

// The API keys the active span with `createContextKey(description)`; if that ever changes, SpanScope
// would hide spans from it: check once with a probe, and fall back to the API's own contexts.
scopeWorks = trace.getSpan(new SpanScope(new Unsampled())) !== undefined;
