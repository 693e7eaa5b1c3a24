/**
 * The primary's half of the `cluster` bus driver (@mega/bus): workers register the subjects they
 * listen to (`sub`/`unsub`), publish through the primary (`pub`), and the primary forwards each
 * message to every worker with a matching subscription, the sender included. A `pub` with a request
 * id gets `noresp` when nobody listens; replies (`reply`) go back to the requesting worker only.
 * A worker that exits takes its subscriptions with it. Delivery is at-most-once.
 */
import type { Worker } from 'node:cluster';

type BusMessage = { type: 'mega:bus'; op: string; subject?: string; data?: unknown; rid?: number; to?: number };

/** NATS-style matching: `*` one token, `>` (last) one or more. */
export function subjectMatches(pattern: string, subject: string): boolean {
  if (!pattern.includes('*') && !pattern.includes('>')) return pattern === subject;
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

export function createBusRelay() {
  const subs = new Map<Worker, Map<string, number>>();
  const byId = new Map<number, Worker>();
  const send = (w: Worker, msg: BusMessage) => {
    if (w.isConnected()) w.send(msg);
  };
  return {
    handle(worker: Worker, msg: BusMessage): void {
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
        for (const [w, patterns] of subs) {
          for (const pattern of patterns.keys()) {
            if (!subjectMatches(pattern, subject)) continue;
            delivered++;
            send(w, {
              type: 'mega:bus',
              op: 'msg',
              subject,
              data: msg.data,
              ...(msg.rid === undefined ? {} : { rid: msg.rid, from: worker.id }),
            });
            break;
          }
        }
        if (delivered === 0 && msg.rid !== undefined) send(worker, { type: 'mega:bus', op: 'noresp', rid: msg.rid });
      } else if (msg.op === 'reply' && msg.to !== undefined) {
        const target = byId.get(msg.to);
        if (target) send(target, { type: 'mega:bus', op: 'reply', rid: msg.rid, data: msg.data });
      }
    },
    exited(worker: Worker): void {
      subs.delete(worker);
      byId.delete(worker.id);
    },
  };
}
