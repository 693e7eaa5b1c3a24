/**
 * The OTLP JSON encoder and batch processor (src/otlp.ts) against the OpenTelemetry JSON serializer
 * they replace: the same spans, parsed, give the same request (up to what protobuf JSON treats as
 * equal: a missing repeated field is empty, times in whole microseconds for Mega's own spans).
 */

import { waitUntil } from '@mega/testing';
import type { Link, SpanContext } from '@opentelemetry/api';
import { SpanKind, SpanStatusCode, TraceFlags } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace';
import { TracerProvider } from '@opentelemetry/sdk-trace';
import { describe, expect, it } from 'vitest';
import type { EncodedBatch } from '../src/otlp.js';
import { encodeSpan, OtlpBatchProcessor } from '../src/otlp.js';
import { Recorded } from '../src/spans.js';
import { startReceiver } from './receiver.js';

type Json = Record<string, unknown>;
const resource = resourceFromAttributes({ 'service.name': 'shop "eu"', 'process.pid': 42 });
const scope = { name: '@mega/tracing', version: '0.1.0' };

function harness(options: { maxBatch?: number; maxQueue?: number; delayMs?: number; hold?: boolean } = {}) {
  const sent: EncodedBatch[] = [];
  const held: Array<() => void> = [];
  const failures: Array<{ count: number; reason: string }> = [];
  let exported = 0;
  const processor = new OtlpBatchProcessor({
    resource,
    delayMs: options.delayMs ?? 60_000,
    maxBatch: options.maxBatch ?? 512,
    maxQueue: options.maxQueue ?? 2048,
    ledger: { exported: (n) => (exported += n), failed: (n, e) => failures.push({ count: n, reason: String(e?.message) }) },
    send: (batch, done) => {
      sent.push(batch);
      const finish = () => done({ code: 0 });
      if (options.hold) held.push(finish);
      else finish();
    },
  });
  const ended: ReadableSpan[] = [];
  const both: SpanProcessor = {
    onStart: () => undefined,
    onEnd: (span) => {
      ended.push(span);
      processor.onEnd(span);
    },
    forceFlush: () => processor.forceFlush(),
    shutdown: () => processor.shutdown(),
  };
  const sink = { resource, scope, processor: both };
  return { processor, sink, sent, held, ended, failures, exported: () => exported, both };
}

/** Spans of an export request, flattened with their scope, in a form both serializers agree on. */
function flatten(body: string): Json[] {
  const request = JSON.parse(body) as { resourceSpans: Array<{ resource: Json; scopeSpans: Array<{ scope: Json; spans: Json[] }> }> };
  const out: Json[] = [];
  for (const rs of request.resourceSpans) {
    for (const ss of rs.scopeSpans) {
      for (const s of ss.spans) {
        // Mega's spans keep whole microseconds (the SDK's HrTime has nanoseconds, rounded from the same
        // clock): times are compared apart, to the microsecond.
        const micros = (t: unknown) => Number(BigInt(t as string) / 1000n);
        out.push({
          ...s,
          events: ((s.events as Json[] | undefined) ?? []).map((e) => ({ ...e, timeUnixNano: micros(e.timeUnixNano) })),
          links: (s.links as Json[] | undefined) ?? [],
          startTimeUnixNano: micros(s.startTimeUnixNano),
          endTimeUnixNano: micros(s.endTimeUnixNano),
          resource: rs.resource,
          scope: ss.scope,
        });
      }
    }
  }
  return out.sort((a, b) => String(a.spanId).localeCompare(String(b.spanId)));
}

describe('@mega/tracing OTLP JSON encoding', () => {
  it('encodes Mega spans and SDK spans as the OpenTelemetry JSON serializer does', async () => {
    const h = harness();
    const parent: SpanContext = {
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
      traceState: new TraceState('vendor=a,other=b'),
    };
    const server = new Recorded(h.sink, 'GET /users/:id', SpanKind.SERVER, parent, {
      'http.request.method': 'GET',
      'http.response.status_code': 500,
      'url.path': '/users/"é\n\u0001"',
      ratio: 0.25,
      big: 2 ** 40,
      ok: false,
    });
    server.setAttribute('tags', ['a', 'b"c']);
    server.setAttribute('sizes', [1, 2.5]);
    server.fail(new Error('kaput "quoted"'));
    const link: Link = { context: { ...parent, spanId: '00f067aa0ba902b7' }, attributes: { why: 'batch' } };
    const child = new Recorded(h.sink, 'SELECT', SpanKind.CLIENT, server.spanContext(), { 'db.system.name': 'postgresql' }, [link]);
    child.addEvent('row', { n: 3 });
    child.end();
    server.end();
    // A span of the SDK's own tracer (ctx.tracer.otel), with a scope of its own.
    const provider = new TracerProvider({ resource, spanProcessors: [h.both] });
    const sdk = provider.getTracer('app', '2.0').startSpan('sdk.step', { kind: SpanKind.INTERNAL, attributes: { step: 1 } });
    sdk.setStatus({ code: SpanStatusCode.OK });
    sdk.end();
    const third = new Recorded(h.sink, 'job.run Report', SpanKind.CONSUMER, undefined, { 'mega.job.attempt': 2 });
    third.end();
    await h.processor.forceFlush();

    expect(h.sent).toHaveLength(1);
    expect(h.sent[0]?.count).toBe(4);
    const ours = flatten(h.sent[0]?.body.toString('utf8') ?? '');
    const theirs = flatten(Buffer.from(JsonTraceSerializer.serializeRequest(h.ended) as Uint8Array).toString('utf8'));
    const times = (spans: Json[]) =>
      spans.map((s) => [s.startTimeUnixNano, s.endTimeUnixNano, ...(s.events as Json[]).map((e) => e.timeUnixNano)] as number[]);
    const untimed = (spans: Json[]) =>
      spans.map(({ startTimeUnixNano: _s, endTimeUnixNano: _e, ...s }) => ({
        ...s,
        events: (s.events as Json[]).map(({ timeUnixNano: _t, ...e }) => e),
      }));
    expect(untimed(ours)).toEqual(untimed(theirs));
    const theirTimes = times(theirs);
    const gaps = times(ours).flatMap((row, i) => row.map((t, j) => Math.abs(t - (theirTimes[i]?.[j] ?? 0))));
    expect(Math.max(...gaps)).toBeLessThanOrEqual(1);
    expect(ours.map((s) => s.name).sort()).toEqual(['GET /users/:id', 'SELECT', 'job.run Report', 'sdk.step']);
    expect(h.exported()).toBe(4);
  });

  it('writes times as exact decimal nanoseconds: zero-padded digit groups, HrTime to the nanosecond', () => {
    const at = (time: [number, number]) => time;
    const span = {
      name: 'timed',
      kind: SpanKind.INTERNAL,
      spanContext: () => ({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED }),
      parentSpanContext: undefined,
      startTime: at([1764900000, 5]),
      endTime: at([1764900000, 999_999_999]),
      status: { code: SpanStatusCode.UNSET },
      attributes: {},
      links: [],
      events: [
        { name: 'a', time: at([1, 120_000]), attributes: {}, droppedAttributesCount: 0 },
        { name: 'b', time: at([2, 1_000_000]), attributes: {}, droppedAttributesCount: 0 },
      ],
      droppedAttributesCount: 0,
      droppedEventsCount: 0,
      droppedLinksCount: 0,
    } as unknown as ReadableSpan;
    const json = JSON.parse(encodeSpan(span)) as { startTimeUnixNano: string; endTimeUnixNano: string; events: { timeUnixNano: string }[] };
    expect(json.startTimeUnixNano).toBe('1764900000000000005');
    expect(json.endTimeUnixNano).toBe('1764900000999999999');
    expect(json.events.map((e) => e.timeUnixNano)).toEqual(['1000120000', '2001000000']);
    // Mega's spans keep milliseconds (fractional) and are written to the microsecond, zeros padded.
    const h = harness({ maxBatch: 10, maxQueue: 10, delayMs: 1000, hold: true });
    const recorded = new Recorded(h.sink, 'r', SpanKind.INTERNAL, undefined, {});
    recorded.end();
    const text = JSON.parse(encodeSpan(recorded)) as { startTimeUnixNano: string; endTimeUnixNano: string };
    for (const [t, ms] of [
      [text.startTimeUnixNano, recorded.startMs],
      [text.endTimeUnixNano, recorded.endMs],
    ] as const) {
      expect(t).toMatch(/^\d{16}000$/);
      expect(Math.abs(Number(BigInt(t) / 1000n) - Math.round(ms * 1000))).toBe(0);
    }
  });

  it('sends a batch when it is full, the rest on its timer; past maxQueue new spans are dropped and reported', async () => {
    const h = harness({ maxBatch: 2, maxQueue: 3, delayMs: 20, hold: true });
    const end = (name: string) => new Recorded(h.sink, name, SpanKind.INTERNAL, undefined, {}).end();
    end('one');
    end('two');
    // Full: sent at once. The second batch waits for the first (one export in flight).
    expect(h.sent).toHaveLength(1);
    end('three');
    end('four');
    end('five');
    end('six');
    expect(h.failures).toEqual([{ count: 1, reason: expect.stringMatching(/queue full/) }]);
    h.held.shift()?.();
    expect(h.sent).toHaveLength(2);
    h.held.shift()?.();
    // 'five' went on the timer.
    await waitUntil(() => h.sent.length === 3 || undefined, { what: 'the batch sent on its timer' });
    h.held.shift()?.();
    const names = h.sent.map((b) => flatten(b.body.toString('utf8')).map((s) => s.name));
    expect(names.flat().sort()).toEqual(['five', 'four', 'one', 'three', 'two']);
    expect(h.exported()).toBe(5);
  });

  it('sends batch after batch through the export worker, each intact when a batch reuses the memory of one sent before', async () => {
    // The built module: the worker is started from its compiled file next to it.
    const built = (await import(new URL('../dist/otlp.js', import.meta.url).href)) as typeof import('../src/otlp.js');
    const receiver = await startReceiver();
    const sender = built.otlpHttpSender({ url: receiver.url, headers: {}, timeoutMillis: 5000 });
    let exported = 0;
    const failures: string[] = [];
    const processor = new built.OtlpBatchProcessor({
      resource,
      delayMs: 60_000,
      maxBatch: 1,
      maxQueue: 16,
      ledger: { exported: (n) => (exported += n), failed: (_n, e) => failures.push(String(e?.message)) },
      send: sender.send,
      shutdown: () => sender.shutdown(),
    });
    const sink = { resource, scope, processor };
    try {
      // Names getting shorter: a reused buffer still holds the longer batch before past the new end.
      const names = ['a'.repeat(300), 'b'.repeat(200), 'c'.repeat(100), 'd'];
      for (const [i, name] of names.entries()) {
        new Recorded(sink, name, SpanKind.INTERNAL, undefined, { n: i }).end();
        // One at a time: the next batch is filled once the worker handed the last one back.
        await waitUntil(() => exported === i + 1 || undefined, { what: `batch ${i + 1} exported` });
      }
      expect(failures).toEqual([]);
      expect(receiver.spans.map((s) => [s.name, s.attributes.n])).toEqual(names.map((name, i) => [name, i]));
    } finally {
      await processor.shutdown();
      await receiver.close();
    }
  });
});
