/**
 * The production driver on NATS JetStream (connection owned by @mega/bus, `api.use('nats')`).
 *
 * Per app: a work-queue stream `<streamPrefix>_<APP>` holding `<base>.<job>` (ungrouped),
 * `<base>.<job>.g.<group>` (grouped) and `<base>.<job>.delay` (delayed), and a limits stream
 * `<streamPrefix>_<APP>_DLQ` holding `<base>.<job>.dlq` for 7 days. `<base>` is `<streamPrefix>.<app>`.
 *
 * - One durable pull consumer per job (`max_ack_pending` = concurrency, `ack_wait`, `max_deliver`).
 * - Groups: one durable consumer per (job, group) with `max_ack_pending` = groupConcurrency. The
 *   server counts un-acked deliveries across every worker, so the limit holds cluster-wide, a crashed
 *   worker's slot frees itself after ack_wait, and a busy group never holds back another group's
 *   consumer. Workers discover groups from the stream's per-subject counts (every `groupScanMs`) and
 *   from a core-NATS notice sent on enqueue; idle group consumers expire (`inactive_threshold`).
 * - Delays: the job sits in the stream on `<job>.delay` with a `Mega-Run-At` header; a `delay`
 *   consumer (unlimited deliveries) naks it until due, then publishes it to the job subject
 *   (msg-id deduplicated, so a crash between publish and ack cannot run it twice) and acks it.
 */
import { createHash } from 'node:crypto';
import type { TraceCarrier } from '@mega/adapters';
import { TRACE_HEADERS } from '@mega/adapters';
import type { Logger } from '@mega/kernel';
import { UnavailableError } from '@mega/kernel';
import type { ConsumerConfig, ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg, StreamConfig } from '@nats-io/jetstream';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import type { MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
import { headers, nanos } from '@nats-io/transport-node';
import type { JobSpec } from '../job.js';
import type { DlqRow, Jobs, PublishRequest, QueueDriver, QueueStats } from '../jobs.js';
import { groupFromToken, groupToken } from '../jobs.js';
import type { DeadLetter, Running } from '../runner.js';
import { keepLease, RunningList, startDelivery } from '../runner.js';
import { AckedPublisher } from './publisher.js';

export interface JetStreamOptions {
  streamPrefix: string;
  ackWaitMs: number;
  maxDeliver: number;
  dedupWindowMs: number;
  dlqMaxAgeMs: number;
  publishTimeoutMs: number;
  groupScanMs: number;
  /** Idle group consumers are deleted by the server after this long. */
  groupIdleMs: number;
  replicas: number;
}

const H_MSG_ID = 'Nats-Msg-Id';
const H_ID = 'Mega-Job-Id';
const H_GROUP = 'Mega-Group';
const H_RUN_AT = 'Mega-Run-At';
const TRACEPARENT = TRACE_HEADERS[0];

/** The W3C trace context headers of a message (@mega/tracing). */
function traceOf(h: MsgHdrs): TraceCarrier {
  const trace: TraceCarrier = {};
  for (const k of TRACE_HEADERS) if (h.has(k)) trace[k] = h.get(k);
  return trace;
}

interface Loop {
  messages: ConsumerMessages;
  /** max_ack_pending of its consumer. */
  concurrency: number;
  lastActivity: number;
  running: number;
}

let turn: Promise<void> | undefined;
/**
 * Resolves in the check phase of this event-loop turn. Jobs finishing in one turn (e.g. the 1 ms
 * timers of many running jobs, fired one after another) would each flush their ack in a write of
 * its own (nats.js flushes on a microtask); awaiting this first sends them in one.
 */
function ackTurn(): Promise<void> {
  turn ??= new Promise<void>((resolve) =>
    setImmediate(() => {
      turn = undefined;
      resolve();
    }),
  );
  return turn;
}

/**
 * This worker's runs of one grouped job kind, across its main consumer and all its group consumers,
 * capped at the job's `concurrency`; deliveries over the cap wait here (lease kept alive) for a slot.
 */
interface Gate {
  running: number;
  waiting: Array<{ loop: Loop; m: JsMsg; release: () => void }>;
}

/** Lease of the delay consumer's messages (see its consumer config). */
const DELAY_ACK_WAIT_MS = 5000;
export class JetStreamQueue implements QueueDriver {
  readonly driver = 'jetstream' as const;
  readonly #jobs: Jobs;
  readonly #nc: NatsConnection;
  readonly #o: JetStreamOptions;
  readonly #log: Logger;
  readonly stream: string;
  readonly dlqStream: string;
  #js: JetStreamClient;
  #jsm: JetStreamManager | undefined;
  readonly #publisher: AckedPublisher;
  #connected = true;
  #stopping = false;
  #loops = new Map<string, Loop>();
  #running = new RunningList();
  #scan: NodeJS.Timeout | undefined;
  #notify: Subscription | undefined;
  #consuming: JobSpec[] = [];
  #ensured = new Map<string, Promise<void>>();
  #gates = new Map<string, Gate>();

  constructor(jobs: Jobs, nc: NatsConnection, options: JetStreamOptions) {
    this.#jobs = jobs;
    this.#nc = nc;
    this.#o = options;
    this.#log = jobs.log;
    const name = `${options.streamPrefix}_${jobs.app.name.replace(/[^A-Za-z0-9_-]/g, '_').toUpperCase()}`;
    this.stream = name;
    this.dlqStream = `${name}_DLQ`;
    this.#js = jetstream(nc, { timeout: options.publishTimeoutMs });
    this.#publisher = new AckedPublisher(nc, options.publishTimeoutMs);
    nc.closed().then(
      () => this.#publisher.close(),
      () => this.#publisher.close(),
    );
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.#connected = false;
        else if (s.type === 'reconnect') this.#connected = true;
      }
    })().catch(() => undefined);
  }

  get #base(): string {
    return this.#jobs.subjectBase;
  }

  /** Creates (or updates) the app's two streams. */
  async init(): Promise<void> {
    this.#jsm = await jetstreamManager(this.#nc, { timeout: this.#o.publishTimeoutMs });
    await this.#ensureStream({
      name: this.stream,
      subjects: [`${this.#base}.*`, `${this.#base}.*.g.*`, `${this.#base}.*.delay`],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      duplicate_window: nanos(this.#o.dedupWindowMs),
      num_replicas: this.#o.replicas,
    });
    await this.#ensureStream({
      name: this.dlqStream,
      subjects: [`${this.#base}.*.dlq`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: nanos(this.#o.dlqMaxAgeMs),
      duplicate_window: nanos(Math.min(this.#o.dedupWindowMs, this.#o.dlqMaxAgeMs || this.#o.dedupWindowMs)),
      num_replicas: this.#o.replicas,
    });
  }

  async #ensureStream(config: Partial<StreamConfig> & { name: string }): Promise<void> {
    const jsm = this.#jsm as JetStreamManager;
    try {
      await jsm.streams.info(config.name);
      await jsm.streams.update(config.name, config);
    } catch (error) {
      if (!isNotFound(error)) throw error;
      await jsm.streams.add(config);
    }
  }

  async #ensureConsumer(config: Partial<ConsumerConfig> & { durable_name: string }): Promise<void> {
    const jsm = this.#jsm as JetStreamManager;
    const key = config.durable_name;
    const pending =
      this.#ensured.get(key) ??
      (async () => {
        try {
          await jsm.consumers.info(this.stream, config.durable_name);
          const { filter_subject: _f, durable_name: _d, ack_policy: _a, deliver_policy: _p, ...updatable } = config;
          await jsm.consumers.update(this.stream, config.durable_name, updatable);
        } catch (error) {
          if (!isNotFound(error)) throw error;
          await jsm.consumers.add(this.stream, { ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, ...config });
        }
      })().finally(() => this.#ensured.delete(key));
    this.#ensured.set(key, pending);
    return pending;
  }

  #unavailable(what: string, error?: unknown): UnavailableError {
    return new UnavailableError('jobs.unavailable', `jobs of app "${this.#jobs.app.name}": ${what}`, {
      details: { app: this.#jobs.app.name, stream: this.stream },
      ...(error === undefined ? {} : { cause: error }),
    });
  }

  async publish(spec: JobSpec, request: PublishRequest): Promise<boolean> {
    if (!this.#connected || this.#nc.isClosed()) throw this.#unavailable('NATS is disconnected; the job was not enqueued');
    const h = headers();
    // JetStream drops a second message with this id within duplicate_window: idempotent enqueue.
    h.set(H_MSG_ID, `${spec.name}:${request.id}`);
    h.set(H_ID, request.id);
    if (request.group !== undefined) h.set(H_GROUP, request.group);
    if (request.trace) for (const k in request.trace) h.set(k, request.trace[k] as string);
    const delayed = request.delayMs > 0;
    if (delayed) h.set(H_RUN_AT, String(Date.now() + request.delayMs));
    const subject = delayed ? `${this.#base}.${spec.name}.delay` : this.#jobs.subject(spec, request.group);
    try {
      const duplicate = await this.#publisher.publish(subject, request.data, h);
      if (!delayed && request.group !== undefined) this.#announce(spec, request.group);
      return duplicate;
    } catch (error) {
      throw this.#unavailable(
        `enqueue of "${spec.name}" was not confirmed by JetStream (${(error as Error).message}); retry with the same id`,
        error,
      );
    }
  }

  #announce(spec: JobSpec, group: string): void {
    const token = groupToken(group);
    if (this.#consuming.includes(spec)) this.#startGroup(spec, token);
    try {
      this.#nc.publish(`_MEGA_JOBS_NOTIFY.${this.#base}`, `${spec.name} ${token}`);
    } catch {
      // The periodic scan finds the group anyway.
    }
  }

  async storeDeadLetter(subject: string, letter: DeadLetter): Promise<void> {
    const h = headers();
    h.set(H_MSG_ID, `${letter.job}:${letter.id}:dlq:${letter.deliveryCount}`);
    await this.#publisher.publish(subject, JSON.stringify(letter), h);
  }

  async consume(specs: readonly JobSpec[]): Promise<void> {
    this.#stopping = false;
    const maxDeliver = this.#o.maxDeliver;
    for (const spec of specs) {
      this.#consuming.push(spec);
      const durable = spec.name;
      await this.#ensureConsumer({
        durable_name: durable,
        filter_subject: `${this.#base}.${spec.name}`,
        ack_wait: nanos(this.#o.ackWaitMs),
        max_deliver: maxDeliver,
        max_ack_pending: spec.concurrency,
      });
      await this.#startLoop(durable, spec, spec.concurrency);
    }
    await this.#ensureConsumer({
      durable_name: '_delay',
      filter_subject: `${this.#base}.*.delay`,
      // Promoting a due job is one publish and an ack, so its lease is short: a message handed to a
      // worker that stopped in that moment comes back in seconds, not after a job's ackWait.
      ack_wait: nanos(Math.min(this.#o.ackWaitMs, DELAY_ACK_WAIT_MS)),
      max_deliver: -1,
      max_ack_pending: 10_000,
    });
    await this.#startLoop('_delay', undefined, 1000);
    if (specs.some((s) => s.groupConcurrency !== undefined)) {
      this.#notify = this.#nc.subscribe(`_MEGA_JOBS_NOTIFY.${this.#base}`, {
        callback: (_e, m) => {
          const [name, token] = m.string().split(' ');
          const spec = this.#consuming.find((s) => s.name === name);
          if (spec && token) this.#startGroup(spec, token);
        },
      });
      const scan = () => {
        this.#scanGroups().catch((error: unknown) => this.#log.debug({ err: error }, 'jobs: group scan failed'));
      };
      scan();
      this.#scan = setInterval(scan, this.#o.groupScanMs);
      this.#scan.unref();
    }
  }

  async #scanGroups(): Promise<void> {
    const jsm = this.#jsm as JetStreamManager;
    for (const spec of this.#consuming) {
      if (spec.groupConcurrency === undefined) continue;
      const info = await jsm.streams.info(this.stream, { subjects_filter: `${this.#base}.${spec.name}.g.*` });
      for (const subject of Object.keys(info.state.subjects ?? {})) {
        this.#startGroup(spec, subject.slice(subject.lastIndexOf('.') + 1));
      }
    }
    // Stop idle group loops (nothing delivered for a while, nothing running): the scan restarts them.
    const now = Date.now();
    for (const [durable, loop] of this.#loops) {
      if (durable.includes('_g_') && loop.running === 0 && now - loop.lastActivity > Math.max(5000, this.#o.groupScanMs * 5)) {
        this.#loops.delete(durable);
        loop.messages.stop();
      }
    }
  }

  #startGroup(spec: JobSpec, token: string): void {
    if (this.#stopping) return;
    const durable = `${spec.name}_g_${createHash('sha1').update(token).digest('hex').slice(0, 20)}`;
    if (this.#loops.has(durable)) {
      (this.#loops.get(durable) as Loop).lastActivity = Date.now();
      return;
    }
    const concurrency = spec.groupConcurrency ?? 1;
    // Reserve the slot before the async work so concurrent notices start one loop.
    this.#loops.set(durable, {
      messages: { stop() {} } as unknown as ConsumerMessages,
      concurrency,
      lastActivity: Date.now(),
      running: 0,
    });
    this.#ensureConsumer({
      durable_name: durable,
      filter_subject: `${this.#base}.${spec.name}.g.${token}`,
      ack_wait: nanos(this.#o.ackWaitMs),
      max_deliver: this.#o.maxDeliver,
      max_ack_pending: concurrency,
      inactive_threshold: nanos(this.#o.groupIdleMs),
    })
      .then(() => {
        this.#loops.delete(durable);
        return this.#startLoop(durable, spec, concurrency);
      })
      .catch((error: unknown) => {
        this.#loops.delete(durable);
        this.#log.warn(
          { err: error, job: spec.name, group: groupFromToken(token) },
          'jobs: could not start a group consumer (retried by the scan)',
        );
      });
  }

  async #startLoop(durable: string, spec: JobSpec | undefined, concurrency: number): Promise<void> {
    if (this.#stopping || this.#loops.has(durable)) return;
    const consumer = await this.#js.consumers.get(this.stream, durable);
    const loop: Loop = { messages: undefined as unknown as ConsumerMessages, concurrency, lastActivity: Date.now(), running: 0 };
    // The server enforces concurrency through max_ack_pending; a pull batch larger than that keeps one
    // pull request open across many jobs instead of issuing a new one after every delivery (at
    // concurrency 1 that was a pull round trip per job). Callback mode: the messages of one socket
    // read start their runs in one go, without an async iterator step (promises) per message.
    const messages = await consumer.consume({
      max_messages: Math.min(Math.max(concurrency, 256), 1000),
      callback: (m) => {
        try {
          this.#deliver(loop, spec, m);
        } catch (error) {
          // A throwing callback would stop the consumer: leave the message to its redelivery.
          this.#log.error({ err: error, durable, seq: m.seq }, 'jobs: could not start a delivery');
        }
      },
    });
    loop.messages = messages;
    this.#loops.set(durable, loop);
    void messages.closed().then((error) => {
      if (error && !this.#stopping) this.#log.error({ err: error, durable }, 'jobs: consumer loop ended');
    });
  }

  #deliver(loop: Loop, spec: JobSpec | undefined, m: JsMsg): void {
    loop.lastActivity = Date.now();
    if (this.#stopping) {
      m.nak();
      return;
    }
    if (!spec) {
      void this.#promoteDelayed(m);
      return;
    }
    loop.running++;
    // Ungrouped only: the consumer's max_ack_pending (= concurrency) already caps this worker.
    if (spec.groupConcurrency === undefined) {
      this.#run(loop, spec, m, undefined);
      return;
    }
    let gate = this.#gates.get(spec.name);
    if (!gate) {
      gate = { running: 0, waiting: [] };
      this.#gates.set(spec.name, gate);
    }
    if (gate.running < spec.concurrency) {
      gate.running++;
      this.#run(loop, spec, m, gate);
      return;
    }
    // Over the cap: hold the delivery, its lease kept alive, until one of this kind's runs ends. It
    // stays un-acked on the server, so no other worker takes it and nothing is redelivered.
    gate.waiting.push({ loop, m, release: keepLease(() => m.working(), this.#o.ackWaitMs) });
  }

  #run(loop: Loop, spec: JobSpec, m: JsMsg, gate: Gate | undefined): void {
    const info = m.info;
    const h = m.headers;
    const running: Running = startDelivery(
      this.#jobs,
      spec,
      {
        subject: m.subject,
        data: m.string(),
        deliveryCount: info.deliveryCount,
        // Stored time (a due delayed job is re-stored when it becomes due).
        readyAt: info.timestampNanos / 1e6,
        id: h?.get(H_ID) || `seq-${m.seq}`,
        group: h?.has(H_GROUP) ? h.get(H_GROUP) : undefined,
        trace: h?.has(TRACEPARENT) ? traceOf(h) : undefined,
        ack: () => m.ack(),
        nak: (delayMs) => m.nak(delayMs),
        working: () => m.working(),
        // One job at a time: there is nothing to batch, so no extra turn.
        ...(loop.concurrency > 1 || gate ? { ackTurn } : {}),
      },
      () => {
        this.#running.delete(running);
        loop.running--;
        loop.lastActivity = Date.now();
        if (!gate) return;
        const next = gate.waiting.shift();
        if (!next) {
          gate.running--;
          return;
        }
        // The slot passes to the oldest waiting delivery.
        next.release();
        this.#run(next.loop, spec, next.m, gate);
      },
    );
    this.#running.add(running);
  }

  async #promoteDelayed(m: JsMsg): Promise<void> {
    const runAt = Number(m.headers?.get(H_RUN_AT));
    const now = Date.now();
    if (Number.isFinite(runAt) && runAt > now + 5) {
      m.nak(runAt - now);
      return;
    }
    const job = m.subject.slice(this.#base.length + 1, -'.delay'.length);
    const spec = this.#jobs.specs.get(job);
    const group = m.headers?.has(H_GROUP) ? m.headers.get(H_GROUP) : undefined;
    const id = m.headers?.get(H_ID) || `seq-${m.seq}`;
    const h = headers();
    // A crash between this publish and the ack below cannot enqueue the job twice.
    h.set(H_MSG_ID, `${job}:${id}:run`);
    h.set(H_ID, id);
    if (group !== undefined) h.set(H_GROUP, group);
    for (const k of TRACE_HEADERS) if (m.headers?.has(k)) h.set(k, m.headers.get(k));
    const subject = group === undefined ? `${this.#base}.${job}` : `${this.#base}.${job}.g.${groupToken(group)}`;
    try {
      await this.#publisher.publish(subject, m.data, h);
      m.ack();
      if (spec && group !== undefined) this.#announce(spec, group);
    } catch (error) {
      this.#log.warn({ err: error, job, id }, 'jobs: could not move a due delayed job; retrying');
      m.nak(1000);
    }
  }

  async stop(drainMs: number): Promise<void> {
    this.#stopping = true;
    if (this.#scan) clearInterval(this.#scan);
    this.#notify?.unsubscribe();
    for (const loop of this.#loops.values()) loop.messages.stop();
    this.#loops.clear();
    // Deliveries waiting for a slot never started: back to the server for another worker.
    for (const gate of this.#gates.values()) {
      for (const w of gate.waiting.splice(0)) {
        w.release();
        w.loop.running--;
        w.m.nak();
      }
    }
    const running = this.#running.values();
    if (running.length) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(running.map((r) => r.done)), new Promise((r) => (timer = setTimeout(r, drainMs)))]);
      if (timer) clearTimeout(timer);
      let released = 0;
      for (const r of running) if (r.release()) released++;
      if (released)
        this.#log.warn({ released }, `jobs: ${released} running job(s) did not finish within ${drainMs} ms; naked for redelivery`);
    }
    // Let acks and naks reach the server before the connection drains.
    await this.#nc.flush().catch(() => undefined);
  }

  async stats(): Promise<QueueStats> {
    const jsm = this.#jsm as JetStreamManager;
    const jobs: QueueStats['jobs'] = {};
    for (const spec of this.#jobs.specs.values()) jobs[spec.name] = { pending: 0, running: 0, redelivered: 0 };
    let delayed = 0;
    for await (const c of jsm.consumers.list(this.stream)) {
      const name = c.name === '_delay' ? undefined : c.name.split('_g_')[0];
      if (name === undefined) {
        delayed += c.num_pending + c.num_ack_pending;
        continue;
      }
      const row = jobs[name] ?? { pending: 0, running: 0, redelivered: 0 };
      jobs[name] = row;
      row.pending += c.num_pending;
      row.running += c.num_ack_pending;
      row.redelivered = (row.redelivered ?? 0) + c.num_redelivered;
    }
    const dlq = await jsm.streams.info(this.dlqStream);
    return { driver: 'jetstream', jobs, delayed, dlq: dlq.state.messages };
  }

  async dlqList(limit: number): Promise<DlqRow[]> {
    const jsm = this.#jsm as JetStreamManager;
    const { state } = await jsm.streams.info(this.dlqStream);
    const rows: DlqRow[] = [];
    for (let seq = state.first_seq; seq <= state.last_seq && rows.length < limit && state.messages > 0; seq++) {
      const stored = await jsm.streams.getMessage(this.dlqStream, { seq }).catch(() => null);
      if (stored) rows.push({ seq, letter: stored.json<DeadLetter>() });
    }
    return rows;
  }

  async dlqReplay(which: number | 'all'): Promise<number> {
    const jsm = this.#jsm as JetStreamManager;
    const rows =
      which === 'all'
        ? await this.dlqList(Number.MAX_SAFE_INTEGER)
        : await jsm.streams
            .getMessage(this.dlqStream, { seq: which })
            .then((s) => (s ? [{ seq: which, letter: s.json<DeadLetter>() }] : []))
            .catch(() => []);
    for (const row of rows) {
      await this.#jobs.enqueue(row.letter.job, row.letter.payload, {
        id: `${row.letter.id}:replay:${row.seq}`,
        ...(row.letter.group === undefined ? {} : { group: row.letter.group }),
      });
      await jsm.streams.deleteMessage(this.dlqStream, row.seq, false);
    }
    return rows.length;
  }

  async dlqPurge(): Promise<number> {
    const jsm = this.#jsm as JetStreamManager;
    const r = await jsm.streams.purge(this.dlqStream);
    return r.purged;
  }
}

function isNotFound(error: unknown): boolean {
  const e = error as { code?: unknown; api_error?: { err_code?: number }; message?: string };
  return e?.api_error?.err_code === 10059 || e?.api_error?.err_code === 10014 || /not found/i.test(String(e?.message));
}
