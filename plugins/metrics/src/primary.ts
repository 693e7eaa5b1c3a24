/**
 * The primary's half of @mega/metrics (`mega start --workers N`). A scrape can land on any worker
 * (they share the listen socket), so the worker that got it asks the primary (`scrape`); the primary
 * asks every live worker for its own text (`collect`), waits for the answers (bounded by the
 * scrape's timeout; a worker that does not answer in time is left out and counted as missing), merges
 * them (merge.ts) and sends the one exposition back (`merged`). Workers that exit have their
 * counters kept, so cluster counters never go backwards when a worker is replaced.
 *
 * This module is loaded in the primary process: it imports no OpenTelemetry code.
 */
import type { PrimaryHandler, PrimaryWorker } from '@mega/kernel';
import type { Exposition, WorkerExposition } from './merge.js';
import { formatExposition, mergeExpositions, parseExposition, retire } from './merge.js';

export const METRICS_CHANNEL = 'mega:metrics';

/** Messages between a worker (cluster.ts) and the primary. */
export type MetricsWire =
  | { type: typeof METRICS_CHANNEL; op: 'hello'; slot: number }
  | { type: typeof METRICS_CHANNEL; op: 'scrape'; slot: number; rid: number; timeoutMs: number }
  | { type: typeof METRICS_CHANNEL; op: 'text'; slot: number; cid: number; text: string }
  | { type: typeof METRICS_CHANNEL; op: 'collect'; cid: number }
  | { type: typeof METRICS_CHANNEL; op: 'merged'; rid: number; text: string };

interface Member {
  readonly worker: PrimaryWorker;
  slot: number;
  /** The worker's last answer: what its counters are retired with when it exits. */
  last: Exposition | undefined;
}

interface Collection {
  readonly from: PrimaryWorker;
  readonly rid: number;
  readonly waiting: Set<number>;
  readonly parts: WorkerExposition[];
  missing: number;
  timer: NodeJS.Timeout | undefined;
}

const MAX_TIMEOUT_MS = 60_000;

export function createMetricsAggregator(): PrimaryHandler {
  const members = new Map<number, Member>();
  const collections = new Map<number, Collection>();
  const retired: Exposition = new Map();
  let nextCid = 1;

  const send = (w: PrimaryWorker, msg: MetricsWire) => {
    if (w.isConnected()) w.send(msg);
  };

  const finish = (cid: number) => {
    const c = collections.get(cid);
    if (!c) return;
    collections.delete(cid);
    clearTimeout(c.timer);
    c.missing += c.waiting.size;
    const merged = mergeExpositions(c.parts, retired);
    merged.set('mega_metrics_cluster_workers', {
      name: 'mega_metrics_cluster_workers',
      type: 'gauge',
      help: 'Workers whose series are in this scrape (reporting) or were left out because they did not answer in time (missing)',
      unit: undefined,
      samples: new Map([
        ['r', { name: 'mega_metrics_cluster_workers', labels: [['state', 'reporting']], value: c.parts.length }],
        ['m', { name: 'mega_metrics_cluster_workers', labels: [['state', 'missing']], value: c.missing }],
      ]),
    });
    send(c.from, { type: METRICS_CHANNEL, op: 'merged', rid: c.rid, text: formatExposition(merged) });
  };

  const member = (worker: PrimaryWorker, slot: number): Member => {
    let m = members.get(worker.id);
    if (!m) {
      m = { worker, slot, last: undefined };
      members.set(worker.id, m);
    }
    m.slot = slot;
    return m;
  };

  return {
    channel: METRICS_CHANNEL,
    handle(worker, raw) {
      const msg = raw as MetricsWire;
      if (msg.op === 'hello') member(worker, msg.slot);
      else if (msg.op === 'scrape') {
        member(worker, msg.slot);
        const cid = nextCid++;
        const targets = [...members.values()].filter((m) => m.worker.isConnected());
        const c: Collection = {
          from: worker,
          rid: msg.rid,
          waiting: new Set(targets.map((m) => m.worker.id)),
          parts: [],
          missing: 0,
          timer: undefined,
        };
        collections.set(cid, c);
        const timeout = Math.min(Math.max(Number(msg.timeoutMs) || 0, 1), MAX_TIMEOUT_MS);
        c.timer = setTimeout(() => finish(cid), timeout);
        for (const m of targets) send(m.worker, { type: METRICS_CHANNEL, op: 'collect', cid });
      } else if (msg.op === 'text') {
        const m = member(worker, msg.slot);
        const c = collections.get(msg.cid);
        if (!c?.waiting.delete(worker.id)) return;
        try {
          m.last = parseExposition(String(msg.text));
          c.parts.push({ slot: m.slot, exposition: m.last });
        } catch {
          c.missing++;
        }
        if (c.waiting.size === 0) finish(msg.cid);
      }
    },
    exited(worker) {
      const m = members.get(worker.id);
      members.delete(worker.id);
      if (m?.last) retire(retired, m.last);
      for (const [cid, c] of collections) {
        if (c.waiting.delete(worker.id)) {
          c.missing++;
          if (c.waiting.size === 0) finish(cid);
        }
      }
    },
  };
}
