/** Merging workers' Prometheus text (merge.ts) and the primary's collection round (primary.ts), without processes. */
import type { PrimaryWorker } from '@mega/kernel';
import { waitUntil } from '@mega/testing';
import { describe, expect, it } from 'vitest';
import type { MetricsWire } from '../src/index.js';
import { createMetricsAggregator, formatExposition, mergeExpositions, parseExposition, retire } from '../src/index.js';
import { samples, value } from './helpers.js';

/** What one worker's serializer writes (shape of @opentelemetry/exporter-prometheus output). */
const worker = (n: {
  req: number;
  slow: number;
  conns: number;
  rss: number;
  pending: number;
  weird?: string;
}) => `# HELP target_info Target metadata
# TYPE target_info gauge
target_info{service_name="shop",deployment_environment_name="production"} 1
# HELP mega_http_requests_total HTTP requests answered
# TYPE mega_http_requests_total counter
mega_http_requests_total{app="web",method="GET",route="/users/:id",status_class="2xx"} ${n.req}
mega_http_requests_total{method="GET",route="__unmatched__",status_class="4xx"} 1
# HELP mega_http_request_duration_seconds Time
# UNIT mega_http_request_duration_seconds s
# TYPE mega_http_request_duration_seconds histogram
mega_http_request_duration_seconds_count{app="web",method="GET",route="/users/:id",status_class="2xx"} ${n.req}
mega_http_request_duration_seconds_sum{app="web",method="GET",route="/users/:id",status_class="2xx"} ${n.req * 0.01}
mega_http_request_duration_seconds_bucket{app="web",method="GET",route="/users/:id",status_class="2xx",le="0.005"} ${n.req - n.slow}
mega_http_request_duration_seconds_bucket{app="web",method="GET",route="/users/:id",status_class="2xx",le="0.1"} ${n.req}
mega_http_request_duration_seconds_bucket{app="web",method="GET",route="/users/:id",status_class="2xx",le="+Inf"} ${n.req}
# HELP mega_ws_connections Open WebSocket connections
# TYPE mega_ws_connections gauge
mega_ws_connections ${n.conns}
# HELP mega_process_memory_bytes Memory of this process
# UNIT mega_process_memory_bytes By
# TYPE mega_process_memory_bytes gauge
mega_process_memory_bytes{type="rss"} ${n.rss}
# HELP mega_process_cpu_seconds_total CPU
# TYPE mega_process_cpu_seconds_total counter
mega_process_cpu_seconds_total{mode="user"} 1.5
# HELP mega_jobs_queue_pending Jobs waiting
# TYPE mega_jobs_queue_pending gauge
mega_jobs_queue_pending{app="web",job="Mail",driver="jetstream"} ${n.pending}
mega_jobs_queue_pending{app="web",job="Local",driver="memory"} ${n.pending}
${n.weird ?? ''}`;

describe('merge', () => {
  it('parses label values with escapes and writes them back unchanged; label order does not split a series', () => {
    const text = `# HELP x_total Things
# TYPE x_total counter
x_total{b="2",a="quote \\" back \\\\ nl \\n, comma {brace}"} 3
x_total{a="quote \\" back \\\\ nl \\n, comma {brace}",b="2"} 4
x_total 1
`;
    const ex = parseExposition(text);
    expect(samples(ex, 'x_total').map((s) => s.value)).toEqual([7, 1]);
    const again = parseExposition(formatExposition(ex));
    expect(samples(again, 'x_total', { a: 'quote \\" back \\\\ nl \\n, comma {brace}' })[0]?.value).toBe(7);
    expect(formatExposition(again)).toBe(formatExposition(ex));
  });

  it('sums counters and histograms bucket by bucket, sums gauges, keeps process series per worker, takes the max of JetStream queue depths', () => {
    const merged = mergeExpositions([
      { slot: 1, exposition: parseExposition(worker({ req: 60, slow: 5, conns: 3, rss: 100, pending: 7 })) },
      { slot: 2, exposition: parseExposition(worker({ req: 40, slow: 1, conns: 2, rss: 200, pending: 6 })) },
    ]);
    const route = { route: '/users/:id', status_class: '2xx' };
    expect(value(merged, 'mega_http_requests_total', route)).toBe(100);
    expect(value(merged, 'mega_http_requests_total', { route: '__unmatched__' })).toBe(2);
    expect(value(merged, 'mega_http_request_duration_seconds_count', route)).toBe(100);
    expect(value(merged, 'mega_http_request_duration_seconds_sum', route)).toBeCloseTo(1);
    expect(value(merged, 'mega_http_request_duration_seconds_bucket', { ...route, le: '0.005' })).toBe(94);
    expect(value(merged, 'mega_http_request_duration_seconds_bucket', { ...route, le: '+Inf' })).toBe(100);
    expect(value(merged, 'mega_ws_connections')).toBe(5);
    expect(samples(merged, 'mega_process_memory_bytes').map((s) => [s.labels.worker, s.value])).toEqual([
      ['1', 100],
      ['2', 200],
    ]);
    expect(samples(merged, 'mega_process_cpu_seconds_total')).toHaveLength(2);
    expect(value(merged, 'mega_jobs_queue_pending', { driver: 'jetstream' })).toBe(7);
    expect(value(merged, 'mega_jobs_queue_pending', { driver: 'memory' })).toBe(13);
    expect(samples(merged, 'target_info')).toHaveLength(1);
    expect(value(merged, 'target_info')).toBe(1);

    // The text keeps HELP / UNIT / TYPE once per family, and Prometheus' own format.
    const text = formatExposition(merged);
    expect(text.match(/# TYPE mega_http_request_duration_seconds histogram/g)).toHaveLength(1);
    expect(text).toContain('# UNIT mega_http_request_duration_seconds s');
    expect(text).toContain('mega_process_memory_bytes{type="rss",worker="2"} 200');
  });

  it("retire: an exited worker's counters and histograms stay in the sum; its gauges and process series go", () => {
    const retired = parseExposition('');
    retire(retired, parseExposition(worker({ req: 60, slow: 5, conns: 3, rss: 100, pending: 7 })));
    // The replacement worker in slot 1 starts from zero.
    const merged = mergeExpositions(
      [{ slot: 1, exposition: parseExposition(worker({ req: 2, slow: 0, conns: 1, rss: 50, pending: 7 })) }],
      retired,
    );
    expect(value(merged, 'mega_http_requests_total', { route: '/users/:id' })).toBe(62);
    expect(value(merged, 'mega_http_request_duration_seconds_bucket', { route: '/users/:id', le: '0.005' })).toBe(57);
    expect(value(merged, 'mega_ws_connections')).toBe(1);
    expect(samples(merged, 'mega_process_memory_bytes')).toHaveLength(1);
    expect(samples(merged, 'mega_process_cpu_seconds_total')).toHaveLength(1);
  });
});

/** A cluster worker as the primary sees it, recording what the primary sends it. */
function fakeWorker(id: number): PrimaryWorker & { inbox: MetricsWire[]; connected: boolean } {
  const w = {
    id,
    inbox: [] as MetricsWire[],
    connected: true,
    isConnected: () => w.connected,
    send: (m: unknown) => {
      w.inbox.push(m as MetricsWire);
      return true;
    },
  };
  return w;
}

const TYPE = 'mega:metrics' as const;

describe('primary aggregator', () => {
  it('a scrape on any worker collects every worker and answers the merged text to that worker', () => {
    const agg = createMetricsAggregator();
    const [w1, w2] = [fakeWorker(11), fakeWorker(12)];
    agg.handle(w1, { type: TYPE, op: 'hello', slot: 1 });
    agg.handle(w2, { type: TYPE, op: 'hello', slot: 2 });
    agg.handle(w2, { type: TYPE, op: 'scrape', slot: 2, rid: 7, timeoutMs: 1000 });
    const ask1 = w1.inbox.find((m) => m.op === 'collect');
    const ask2 = w2.inbox.find((m) => m.op === 'collect');
    expect(ask1 && ask2).toBeTruthy();
    if (ask1?.op !== 'collect' || ask2?.op !== 'collect') throw new Error('no collect');
    agg.handle(w1, { type: TYPE, op: 'text', slot: 1, cid: ask1.cid, text: worker({ req: 60, slow: 0, conns: 1, rss: 1, pending: 0 }) });
    expect(w2.inbox.some((m) => m.op === 'merged')).toBe(false);
    agg.handle(w2, { type: TYPE, op: 'text', slot: 2, cid: ask2.cid, text: worker({ req: 40, slow: 0, conns: 1, rss: 1, pending: 0 }) });
    const answer = w2.inbox.find((m) => m.op === 'merged');
    if (answer?.op !== 'merged') throw new Error('no merged answer');
    expect(answer.rid).toBe(7);
    const ex = parseExposition(answer.text);
    expect(value(ex, 'mega_http_requests_total', { route: '/users/:id' })).toBe(100);
    expect(value(ex, 'mega_metrics_cluster_workers', { state: 'reporting' })).toBe(2);
    expect(value(ex, 'mega_metrics_cluster_workers', { state: 'missing' })).toBe(0);
    expect(w1.inbox.some((m) => m.op === 'merged')).toBe(false);
  });

  it('a worker that exits during a collection is counted missing at once; its counters are kept for later scrapes', () => {
    const agg = createMetricsAggregator();
    const [w1, w2] = [fakeWorker(1), fakeWorker(2)];
    agg.handle(w1, { type: TYPE, op: 'hello', slot: 1 });
    agg.handle(w2, { type: TYPE, op: 'hello', slot: 2 });
    // First scrape: both answer, so the primary knows w2's counters.
    agg.handle(w1, { type: TYPE, op: 'scrape', slot: 1, rid: 1, timeoutMs: 1000 });
    for (const [w, req] of [
      [w1, 10],
      [w2, 5],
    ] as const) {
      const ask = w.inbox.find((m) => m.op === 'collect');
      if (ask?.op !== 'collect') throw new Error('no collect');
      agg.handle(w, { type: TYPE, op: 'text', slot: w.id, cid: ask.cid, text: worker({ req, slow: 0, conns: 1, rss: 1, pending: 0 }) });
    }
    w1.inbox.length = 0;
    w2.inbox.length = 0;
    // Second scrape: w2 dies before answering.
    agg.handle(w1, { type: TYPE, op: 'scrape', slot: 1, rid: 2, timeoutMs: 60_000 });
    const ask = w1.inbox.find((m) => m.op === 'collect');
    if (ask?.op !== 'collect') throw new Error('no collect');
    agg.handle(w1, { type: TYPE, op: 'text', slot: 1, cid: ask.cid, text: worker({ req: 12, slow: 0, conns: 1, rss: 1, pending: 0 }) });
    w2.connected = false;
    agg.exited?.(w2);
    const answer = w1.inbox.find((m) => m.op === 'merged');
    if (answer?.op !== 'merged') throw new Error('no merged answer after the exit');
    const ex = parseExposition(answer.text);
    expect(value(ex, 'mega_http_requests_total', { route: '/users/:id' })).toBe(17);
    expect(value(ex, 'mega_metrics_cluster_workers', { state: 'missing' })).toBe(1);
    expect(value(ex, 'mega_ws_connections')).toBe(1);
  });

  it('a worker that never answers is left out when the scrape timeout ends', async () => {
    const agg = createMetricsAggregator();
    const [w1, w2] = [fakeWorker(1), fakeWorker(2)];
    agg.handle(w1, { type: TYPE, op: 'hello', slot: 1 });
    agg.handle(w2, { type: TYPE, op: 'hello', slot: 2 });
    agg.handle(w1, { type: TYPE, op: 'scrape', slot: 1, rid: 3, timeoutMs: 50 });
    const ask = w1.inbox.find((m) => m.op === 'collect');
    if (ask?.op !== 'collect') throw new Error('no collect');
    agg.handle(w1, { type: TYPE, op: 'text', slot: 1, cid: ask.cid, text: worker({ req: 3, slow: 0, conns: 1, rss: 1, pending: 0 }) });
    const answer = await waitUntil(() => w1.inbox.find((x) => x.op === 'merged'), { what: 'the merged answer', timeoutMs: 5000 });
    if (answer.op !== 'merged') throw new Error('no merged answer');
    const ex = parseExposition(answer.text);
    expect(value(ex, 'mega_http_requests_total', { route: '/users/:id' })).toBe(3);
    expect(value(ex, 'mega_metrics_cluster_workers', { state: 'missing' })).toBe(1);
  });
});
