/**
 * The primary's half of the `cluster` bus driver (`mega start --workers N`): workers register the
 * subjects they listen to (`sub`/`unsub`), publish through the primary (`pub`), and the primary
 * forwards each message to every worker with a matching subscription, the sender included. A `pub`
 * with a request id gets `noresp` when nobody listens; replies (`reply`) go back to the requesting
 * worker only. A worker that exits takes its subscriptions with it. Delivery is at-most-once.
 */
import type { PrimaryHandler, PrimaryWorker } from '@mega/kernel';
import type { BusWire } from './drivers/cluster.js';
import { matches } from './subjects.js';

export const BUS_CHANNEL = 'mega:bus';

/** Any worker message on the channel (the worker side is `ClusterTransport`). */
type BusMessage = {
  type: typeof BUS_CHANNEL;
  op: string;
  subject?: string;
  data?: string;
  rid?: number;
  to?: number;
  /** W3C trace context of the sender (@mega/tracing), passed on as it is. */
  trace?: Record<string, string>;
};

export function createBusRelay(): PrimaryHandler {
  const subs = new Map<PrimaryWorker, Map<string, number>>();
  const byId = new Map<number, PrimaryWorker>();
  const send = (w: PrimaryWorker, msg: BusWire) => {
    if (w.isConnected()) w.send(msg);
  };
  return {
    channel: BUS_CHANNEL,
    handle(worker, raw) {
      const msg = raw as BusMessage;
      byId.set(worker.id, worker);
      const subject = msg.subject ?? '';
      if (msg.op === 'sub' || msg.op === 'unsub') {
        const mine = subs.get(worker) ?? new Map<string, number>();
        subs.set(worker, mine);
        const n = (mine.get(subject) ?? 0) + (msg.op === 'sub' ? 1 : -1);
        if (n > 0) mine.set(subject, n);
        else mine.delete(subject);
      } else if (msg.op === 'pub') {
        let delivered = 0;
        const data = msg.data ?? 'null';
        for (const [w, patterns] of subs) {
          for (const pattern of patterns.keys()) {
            if (!matches(pattern, subject)) continue;
            delivered++;
            send(w, {
              type: BUS_CHANNEL,
              op: 'msg',
              subject,
              data,
              ...(msg.rid === undefined ? {} : { rid: msg.rid, from: worker.id }),
              ...(msg.trace === undefined ? {} : { trace: msg.trace }),
            });
            break;
          }
        }
        if (delivered === 0 && msg.rid !== undefined) send(worker, { type: BUS_CHANNEL, op: 'noresp', rid: msg.rid });
      } else if (msg.op === 'reply' && msg.to !== undefined && msg.rid !== undefined) {
        const target = byId.get(msg.to);
        if (target) send(target, { type: BUS_CHANNEL, op: 'reply', rid: msg.rid, data: msg.data ?? 'null' });
      }
    },
    exited(worker) {
      subs.delete(worker);
      byId.delete(worker.id);
    },
  };
}
