/**
 * The OTLP/HTTP JSON export path: each span is encoded into its OTLP JSON text when it ends and
 * appended to the current batch's buffer (off the JS heap), so the batch holds bytes, not span
 * object graphs. Measured why (README, Cost): at a low sampling ratio a 512-span batch took long
 * enough to fill that its spans, attribute objects and ids survived two scavenges and were promoted
 * to the old generation, and the library's serializer then built a second object graph per span
 * (the OTLP request tree) before `JSON.stringify`: ~2 µs a span in a busy server. Encoding one span
 * with template strings costs a fraction of that, and everything it allocates dies young.
 *
 * Sending is the OpenTelemetry HTTP export delegate (@opentelemetry/otlp-exporter-base), as the
 * SDK's `OTLPTraceExporter` uses it: same retries (429, 502-504, network errors; Retry-After), timeout,
 * keep-alive agent, `OTEL_EXPORTER_OTLP_*` headers and compression; only its serializer is ours
 * (the body is already encoded). It runs in a worker thread (export-worker.ts says why).
 */

import { Worker } from 'node:worker_threads';
import type { Attributes, AttributeValue, Link, SpanContext } from '@opentelemetry/api';
import { context, ROOT_CONTEXT, TraceFlags } from '@opentelemetry/api';
import type { ExportResult, InstrumentationScope } from '@opentelemetry/core';
import { ExportResultCode, suppressTracing } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, SpanProcessor, TimedEvent } from '@opentelemetry/sdk-trace';
import type { FromWorker, SenderOptions, ToWorker } from './export-worker.js';
import { Recorded } from './spans.js';

/** No active span, tracing suppressed: what exports (and the timer that starts them) run in. */
export const EXPORT_CONTEXT = suppressTracing(ROOT_CONTEXT);

const str = JSON.stringify as (value: string) => string;

/** The seconds part of the last time encoded: it changes once a second, so its text is reused. */
let lastSecond = -1;
let lastSecondText = '';

/**
 * "000" to "999". Times are written from these, never by turning a number into text: V8 keeps the
 * text of every number it converts in its number-string cache, and a new time per span (thousands
 * a second) kept that cache's strings surviving scavenges, which made V8 double the young generation
 * of the whole app (13 -> 26 MB, measured with --trace-gc) and cost every request, sampled or not,
 * ~0.5 µs of cache misses.
 */
const DIGITS3: readonly string[] = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'));

/**
 * Epoch milliseconds (fractional) as OTLP's decimal nanoseconds, to the microsecond: the seconds'
 * text reused, then six digits of microseconds from the table, then "000".
 */
function msNanos(ms: number): string {
  const us = Math.round(ms * 1000);
  const second = Math.floor(us / 1e6);
  if (second !== lastSecond) {
    lastSecond = second;
    lastSecondText = String(second);
  }
  const rest = us - second * 1e6;
  const high = Math.floor(rest / 1000);
  return `${lastSecondText}${DIGITS3[high]}${DIGITS3[rest - high * 1000]}000`;
}

/** An `HrTime` ([seconds, nanoseconds]) as decimal nanoseconds, exact (the nine digits from the table too). */
function hrNanos(time: readonly [number, number]): string {
  const nanos = Math.trunc(time[1]);
  const millis = Math.floor(nanos / 1e6);
  const micros = Math.floor(nanos / 1000) - millis * 1000;
  return `${Math.trunc(time[0])}${DIGITS3[millis]}${DIGITS3[micros]}${DIGITS3[nanos - millis * 1e6 - micros * 1000]}`;
}

/** OTLP `AnyValue` JSON (protobuf JSON mapping), as the OpenTelemetry JSON serializer writes it. */
function anyValue(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return `{"stringValue":${str(value)}}`;
    case 'number':
      // int64 only where exact; NaN and the infinities as the strings protobuf JSON accepts.
      if (Number.isSafeInteger(value)) return `{"intValue":${value}}`;
      return Number.isFinite(value) ? `{"doubleValue":${value}}` : `{"doubleValue":"${value}"}`;
    case 'boolean':
      return value ? '{"boolValue":true}' : '{"boolValue":false}';
    case 'object': {
      if (value === null) return '{}';
      if (value instanceof Uint8Array)
        return `{"bytesValue":"${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')}"}`;
      if (Array.isArray(value)) {
        let out = '';
        for (let i = 0; i < value.length; i++) out += (i ? ',' : '') + anyValue(value[i]);
        return `{"arrayValue":{"values":[${out}]}}`;
      }
      return `{"kvlistValue":{"values":[${keyValues(value as Record<string, unknown>)}]}}`;
    }
    default:
      return '{}';
  }
}

/** `{"key":"<key>","value":` of the keys seen so far (instrumentation uses a few fixed ones); bounded. */
const KEY_PREFIX = new Map<string, string>();

/** `[{"key":..,"value":..},...]` without the brackets; undefined values are left out. */
function keyValues(attributes: Attributes | Record<string, unknown>): string {
  let out = '';
  for (const key in attributes) {
    const value = (attributes as Record<string, AttributeValue | undefined>)[key];
    if (value === undefined) continue;
    let prefix = KEY_PREFIX.get(key);
    if (prefix === undefined) {
      prefix = `{"key":${str(key)},"value":`;
      if (KEY_PREFIX.size < 1024) KEY_PREFIX.set(key, prefix);
    }
    out += `${out === '' ? '' : ','}${prefix}${anyValue(value)}}`;
  }
  return out;
}

/** OTLP span flags: the W3C flags plus "has is-remote" and "is remote" (of the parent), as the SDK's serializer sets them. */
function flags(traceFlags: number, remote: boolean | undefined): number {
  return (traceFlags & 0xff) | 0x100 | (remote ? 0x200 : 0);
}

function event(e: TimedEvent): string {
  return `{"attributes":[${e.attributes ? keyValues(e.attributes) : ''}],"name":${str(e.name)},"timeUnixNano":"${hrNanos(e.time)}","droppedAttributesCount":${e.droppedAttributesCount || 0}}`;
}

function link(l: Link): string {
  const c = l.context;
  const state = c.traceState?.serialize();
  return `{"attributes":[${l.attributes ? keyValues(l.attributes) : ''}],"spanId":"${c.spanId}","traceId":"${c.traceId}"${state ? `,"traceState":${str(state)}` : ''},"droppedAttributesCount":${l.droppedAttributesCount || 0},"flags":${flags(c.traceFlags, c.isRemote)}}`;
}

/**
 * One span as an OTLP JSON `Span` object, the fields the SDK's JSON serializer writes. Mega's
 * `Recorded` spans give their times as numbers (no `HrTime` arrays made); any other `ReadableSpan`
 * (`ctx.tracer.otel`) goes through the same code. Ids are hex already (ours, the SDK's, or a
 * validated `traceparent`).
 */
export function encodeSpan(span: ReadableSpan): string {
  const c: SpanContext = span.spanContext();
  const parent = span.parentSpanContext;
  let start: string;
  let end: string;
  if (span instanceof Recorded) {
    start = msNanos(span.startMs);
    end = msNanos(span.endMs);
  } else {
    start = hrNanos(span.startTime);
    end = hrNanos(span.endTime);
  }
  const state = c.traceState?.serialize();
  const status = span.status;
  let out = `{"traceId":"${c.traceId}","spanId":"${c.spanId}"`;
  if (parent?.spanId) out += `,"parentSpanId":"${parent.spanId}"`;
  if (state) out += `,"traceState":${str(state)}`;
  out += `,"name":${str(span.name)},"kind":${span.kind + 1},"startTimeUnixNano":"${start}","endTimeUnixNano":"${end}","attributes":[${keyValues(span.attributes)}],"droppedAttributesCount":${span.droppedAttributesCount}`;
  const events = span.events;
  if (events.length) {
    let list = '';
    for (let i = 0; i < events.length; i++) list += (i ? ',' : '') + event(events[i] as TimedEvent);
    out += `,"events":[${list}]`;
  }
  out += `,"droppedEventsCount":${span.droppedEventsCount},"status":{"code":${status.code}${status.message !== undefined ? `,"message":${str(status.message)}` : ''}}`;
  const links = span.links;
  if (links.length) {
    let list = '';
    for (let i = 0; i < links.length; i++) list += (i ? ',' : '') + link(links[i] as Link);
    out += `,"links":[${list}]`;
  }
  return `${out},"droppedLinksCount":${span.droppedLinksCount},"flags":${flags(c.traceFlags, parent?.isRemote)}}`;
}

/** The `Resource` as OTLP JSON (encoded once per batch processor). */
function resourceJson(resource: Resource): string {
  const schema = resource.schemaUrl ? `,"schemaUrl":${str(resource.schemaUrl)}` : '';
  return `{"attributes":[${keyValues(resource.attributes)}],"droppedAttributesCount":0${schema}}`;
}

function scopeHead(scope: InstrumentationScope): string {
  const version = scope.version !== undefined ? `,"version":${str(scope.version)}` : '';
  const schema = scope.schemaUrl ? `,"schemaUrl":${str(scope.schemaUrl)}` : '';
  return `{"scope":{"name":${str(scope.name)}${version}}${schema},"spans":[`;
}

const sameScope = (a: InstrumentationScope, b: InstrumentationScope): boolean =>
  a === b || (a.name === b.name && a.version === b.version && a.schemaUrl === b.schemaUrl);

/** One export request: an `ExportTraceServiceRequest` in JSON, and how many spans it holds. */
export interface EncodedBatch {
  body: Buffer;
  count: number;
  /** The buffer `body` is a view of (its memory is transferred to the export worker). */
  buffer: Buffer;
}

/** Where a batch goes, and what happened to it (the caller counts and warns). */
export type SendBatch = (batch: EncodedBatch, done: (result: ExportResult) => void) => void;

/** What the batch processor reports: spans sent, and spans lost (with why). */
export interface BatchLedger {
  exported(count: number): void;
  /** `count` spans lost; `request`: by a failed export request (else never sent: queue full, not encodable). */
  failed(count: number, error: Error | undefined, request?: boolean): void;
}

/** The export worker, shared by this process's kernels; started on the first export, restarted if it dies. */
let worker: Worker | undefined;
const senders = new Map<number, SenderOptions>();
const pending = new Map<number, { id: number; done: (result: ExportResult) => void }>();
let nextId = 1;
let nextSeq = 1;
/** Batch buffers the worker handed back after sending them, for the next batches (at most two kept). */
const spares: ArrayBuffer[] = [];

function settle(seq: number, result: ExportResult): void {
  const p = pending.get(seq);
  if (p === undefined) return;
  pending.delete(seq);
  // Unref'd while idle: it never keeps a process alive, only while an export is on its way.
  if (pending.size === 0) worker?.unref();
  p.done(result);
}

function exportWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(new URL('./export-worker.js', import.meta.url), { name: 'mega-tracing-export' });
  w.unref();
  w.on('message', (m: FromWorker) => {
    if (m.buffer !== undefined && spares.length < 2) spares.push(m.buffer);
    settle(
      m.seq,
      m.ok ? { code: ExportResultCode.SUCCESS } : { code: ExportResultCode.FAILED, error: new Error(m.error ?? 'export failed') },
    );
  });
  const lost = (error: Error) => {
    if (worker !== w) return;
    worker = undefined;
    for (const seq of [...pending.keys()]) settle(seq, { code: ExportResultCode.FAILED, error });
  };
  w.on('error', lost);
  w.on('exit', (code) => lost(new Error(`export worker exited (${code})`)));
  for (const [id, options] of senders) w.postMessage({ type: 'open', id, options } satisfies ToWorker);
  worker = w;
  return w;
}

/** An OTLP/HTTP sender of its own settings, in the export worker. */
export function otlpHttpSender(options: SenderOptions): { send: SendBatch; shutdown(): Promise<void>; abandon(): void } {
  const id = nextId++;
  senders.set(id, options);
  worker?.postMessage({ type: 'open', id, options } satisfies ToWorker);
  return {
    send(batch, done) {
      const w = exportWorker();
      const seq = nextSeq++;
      if (pending.size === 0) w.ref();
      pending.set(seq, { id, done });
      // The batch's memory moves to the worker (no copy); this side never touches it again.
      w.postMessage({ type: 'send', id, seq, body: batch.body, count: batch.count } satisfies ToWorker, [
        batch.buffer.buffer as ArrayBuffer,
      ]);
    },
    async shutdown() {
      senders.delete(id);
      worker?.postMessage({ type: 'close', id } satisfies ToWorker);
    },
    /** Gives up on this sender's exports still on their way (shutdown ran out of time): they count as failed. */
    abandon() {
      for (const [seq, p] of [...pending])
        if (p.id === id) settle(seq, { code: ExportResultCode.FAILED, error: new Error('shutdown timed out') });
    },
  };
}

/** One error for every span dropped on a full queue: a new one (and its stack) per span cost ~2 µs while the receiver is down. */
const QUEUE_FULL = new Error('export queue full (the receiver is slower than the app)');

/** A batch past this many bytes is sent at once, whatever its span count. */
const MAX_BATCH_BYTES = 1 << 20;
const FIRST_BUFFER = 64 << 10;
const SUFFIX = ']}]}]}';

export interface OtlpBatchOptions {
  resource: Resource;
  send: SendBatch;
  ledger: BatchLedger;
  /** Spans wait at most this long before an export. */
  delayMs: number;
  /** Spans per export request. */
  maxBatch: number;
  /** Spans waiting (not yet handed to an export); past it new spans are dropped. */
  maxQueue: number;
  shutdown?: () => Promise<void>;
}

/**
 * The batch processor of the OTLP exporter, in place of the SDK's `BatchSpanProcessor` (same
 * settings, same behaviour: one export in flight, a batch sent when full or `delayMs` after its
 * first span, new spans dropped past `maxQueue`), holding encoded spans instead of span objects.
 */
export class OtlpBatchProcessor implements SpanProcessor {
  readonly #o: OtlpBatchOptions;
  #prefix: string | undefined;
  /** The batch being filled. */
  #buf: Buffer | undefined;
  #len = 0;
  #count = 0;
  #scope: InstrumentationScope | undefined;
  /** Full batches waiting for the one in flight. */
  readonly #ready: EncodedBatch[] = [];
  /** Spans in the current and the waiting batches. */
  #queued = 0;
  #inflight: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The size the last batch needed: the next one starts there (no regrowing each time). */
  #hint = FIRST_BUFFER;
  #stopped = false;

  constructor(options: OtlpBatchOptions) {
    this.#o = options;
  }

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    if (this.#stopped || (span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.#queued >= this.#o.maxQueue) {
      this.#o.ledger.failed(1, QUEUE_FULL, false);
      return;
    }
    let json: string;
    try {
      json = encodeSpan(span);
    } catch (error) {
      this.#o.ledger.failed(1, error as Error, false);
      return;
    }
    const scope = span.instrumentationScope;
    if (this.#count === 0) {
      this.#prefix ??= `{"resourceSpans":[{"resource":${resourceJson(this.#o.resource)},"scopeSpans":[`;
      this.#write(this.#prefix + scopeHead(scope));
    } else if (sameScope(scope, this.#scope as InstrumentationScope)) this.#byte(0x2c);
    else this.#write(`]},${scopeHead(scope)}`);
    this.#scope = scope;
    this.#write(json);
    this.#count++;
    this.#queued++;
    if (this.#count >= this.#o.maxBatch || this.#len >= MAX_BATCH_BYTES) {
      this.#seal();
      this.#kick();
    } else if (this.#timer === undefined && this.#inflight === undefined) this.#arm();
  }

  /** Sends every queued span; resolves when the exports are done (failures are the ledger's). */
  async forceFlush(): Promise<void> {
    this.#seal();
    while (this.#inflight !== undefined || this.#ready.length > 0) {
      this.#kick();
      await this.#inflight;
    }
  }

  async shutdown(): Promise<void> {
    if (this.#stopped) return;
    await this.forceFlush();
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#o.shutdown?.();
  }

  #write(text: string): void {
    let buf = this.#buf;
    if (buf === undefined || this.#len + text.length * 3 > buf.length) {
      const need = this.#len + Buffer.byteLength(text) + SUFFIX.length;
      if (buf === undefined || need > buf.length) buf = this.#grow(need);
    }
    this.#len += buf.write(text, this.#len);
  }

  #byte(b: number): void {
    if (this.#buf === undefined || this.#len + 1 + SUFFIX.length > this.#buf.length) this.#grow(this.#len + 1 + SUFFIX.length);
    (this.#buf as Buffer)[this.#len++] = b;
  }

  #grow(need: number): Buffer {
    const old = this.#buf;
    let size = old ? old.length * 2 : this.#hint;
    while (size < need) size *= 2;
    // Its own memory (not Node's shared pool): it is handed over to the export worker whole. A new
    // batch reuses one the worker handed back when it is large enough.
    const spare = old === undefined ? spares.pop() : undefined;
    const buf = spare !== undefined && spare.byteLength >= size ? Buffer.from(spare) : Buffer.allocUnsafeSlow(size);
    if (old) old.copy(buf, 0, 0, this.#len);
    this.#buf = buf;
    return buf;
  }

  /** Closes the batch being filled and queues it for sending. */
  #seal(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#count === 0) return;
    this.#write(SUFFIX);
    const buffer = this.#buf as Buffer;
    this.#hint = buffer.length;
    this.#ready.push({ body: buffer.subarray(0, this.#len), count: this.#count, buffer });
    this.#buf = undefined;
    this.#len = 0;
    this.#count = 0;
    this.#scope = undefined;
  }

  /** The timer of a batch's first span, armed outside any request (its export must not carry one's ids). */
  #arm(): void {
    this.#timer = context.with(EXPORT_CONTEXT, () =>
      setTimeout(() => {
        this.#timer = undefined;
        this.#seal();
        this.#kick();
      }, this.#o.delayMs).unref(),
    );
  }

  /** Starts the next export unless one is in flight. */
  #kick(): void {
    if (this.#inflight !== undefined) return;
    const batch = this.#ready.shift();
    if (batch === undefined) return;
    this.#queued -= batch.count;
    let settled = false;
    let flight: Promise<void> | undefined;
    flight = new Promise<void>((resolve) => {
      context.with(EXPORT_CONTEXT, () =>
        this.#o.send(batch, (result) => {
          settled = true;
          if (result.code === ExportResultCode.SUCCESS) this.#o.ledger.exported(batch.count);
          else this.#o.ledger.failed(batch.count, result.error);
          if (flight !== undefined && this.#inflight === flight) this.#inflight = undefined;
          resolve();
          // The next full batch now; a partial one on its timer.
          if (this.#ready.length > 0) this.#kick();
          else if (this.#count > 0 && this.#timer === undefined && !this.#stopped) this.#arm();
        }),
      );
    });
    if (!settled) this.#inflight = flight;
  }
}
