/**
 * Process instruments (`mega_process_*`; one series per worker in a cluster): CPU time, memory and
 * event-loop delay, read at collection time (nothing per request); and, opt-in (group `gc`),
 * garbage-collection pauses, which a PerformanceObserver delivers in batches: Node then records every
 * collection, which costs ~3% CPU on an allocation-heavy server.
 */
import { constants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import type { Meter } from '@opentelemetry/api';
import type { FastProducer } from './fast.js';
import { HistogramSeries } from './fast.js';

const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};
/** GC pause bounds in seconds: minor collections take ~0.1-2 ms, major ones tens of ms. */
const GC_BUCKETS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

export interface ProcessInstruments {
  stop(): void;
}

export function instrumentProcess(meter: Meter, producer: FastProducer, groups: { process: boolean; gc: boolean }): ProcessInstruments {
  const delay = groups.process ? processGauges(meter) : undefined;
  const observer = groups.gc ? gcPauses(producer) : undefined;
  return {
    stop() {
      observer?.disconnect();
      delay?.disable();
    },
  };
}

function processGauges(meter: Meter): { disable(): void } {
  const cpu = meter.createObservableCounter('mega_process_cpu_seconds', { description: 'CPU time of this process', unit: 's' });
  cpu.addCallback((r) => {
    const u = process.cpuUsage();
    r.observe(u.user / 1e6, { mode: 'user' });
    r.observe(u.system / 1e6, { mode: 'system' });
  });
  const memory = meter.createObservableGauge('mega_process_memory_bytes', { description: 'Memory of this process', unit: 'By' });
  memory.addCallback((r) => {
    const m = process.memoryUsage();
    r.observe(m.rss, { type: 'rss' });
    r.observe(m.heapTotal, { type: 'heap_total' });
    r.observe(m.heapUsed, { type: 'heap_used' });
    r.observe(m.external, { type: 'external' });
  });

  // Event-loop delay sampled every 10 ms by libuv; percentiles over the time since the previous collection.
  // The label is `stat`, not `quantile`: Prometheus reserves that one for summaries (promtool flags it on a gauge).
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const lag = meter.createObservableGauge('mega_process_event_loop_lag_seconds', {
    description: 'Event-loop delay since the previous scrape (stat p50, p99, max)',
    unit: 's',
  });
  // Two scrapes closer than the sampling resolution see no new sample: the previous figures are
  // repeated rather than the series vanishing from one scrape to the next.
  let last: [number, number, number] | undefined;
  lag.addCallback((r) => {
    if (delay.count > 0) last = [delay.percentile(50) / 1e9, delay.percentile(99) / 1e9, delay.max / 1e9];
    if (last) {
      r.observe(last[0], { stat: 'p50' });
      r.observe(last[1], { stat: 'p99' });
      r.observe(last[2], { stat: 'max' });
    }
    delay.reset();
  });
  return delay;
}

function gcPauses(producer: FastProducer): PerformanceObserver {
  const gc = new Map<string, HistogramSeries>();
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = GC_KINDS[(entry as { detail?: { kind?: number } }).detail?.kind ?? -1] ?? 'other';
      let series = gc.get(kind);
      if (!series) {
        series = new HistogramSeries({ kind }, GC_BUCKETS);
        gc.set(kind, series);
      }
      series.record(entry.duration / 1000);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  producer.add((batch) =>
    batch.histogram(
      { name: 'mega_process_gc_duration_seconds', description: 'Garbage-collection pauses by kind', unit: 's' },
      [...gc.values()].map((s) => ({ attributes: s.attributes, boundaries: GC_BUCKETS, counts: s.counts, sum: s.sum, count: s.count })),
    ),
  );
  return observer;
}
