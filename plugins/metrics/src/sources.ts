/**
 * Instruments that read what other plugins already count: their services and per-app objects expose
 * stats, and this module turns them into metrics when a scrape asks (pull), so those plugins do no
 * metrics work of their own. Each group is wired only when its owner is loaded; a missing owner
 * costs nothing. Events without a stats counter (WebSocket closes, job outcomes) are counted by
 * listeners these plugins offer (`ws.onClose`, `jobs.on`) and the kernel `job` hook.
 */
import type { AdapterRegistry, LatencySnapshot } from '@mega/adapters';
import { OP_BUCKETS_MS } from '@mega/adapters';
import type { AspService } from '@mega/asp';
// Bring the `app.bus` / `app.lock` members (AppExtensions) of @mega/bus and @mega/lock into scope.
import type {} from '@mega/bus';
import type { JobsService } from '@mega/jobs';
import type { App, Kernel, PluginApi } from '@mega/kernel';
import type {} from '@mega/lock';
import type { WsServer } from '@mega/ws';
import type { PresenceService } from '@mega/ws-presence';
import type { Attributes, Meter } from '@opentelemetry/api';
import type { FastProducer, HistogramPoint, Point } from './fast.js';

const OP_BUCKETS_S = OP_BUCKETS_MS.map((ms) => ms / 1000);
/** Seconds from "could run" to "started": jobs wait from milliseconds to minutes. */
const LAG_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300];
/** Job run times: from milliseconds to the 30-minute default timeout. */
const RUN_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800];

/** An OpStats latency snapshot as a histogram point (ms -> s). */
function latency(attributes: Attributes, l: LatencySnapshot): HistogramPoint {
  return { attributes, boundaries: OP_BUCKETS_S, counts: l.buckets, sum: l.sumMs / 1000, count: l.count };
}

/** Apps whose object carries a member another plugin contributed (`app.bus`, `app.lock`). */
function appsWith<K extends 'bus' | 'lock'>(kernel: Kernel, member: K): Array<[App, App[K]]> {
  return kernel.apps.filter((a) => Object.hasOwn(a, member)).map((a) => [a, a[member]] as [App, App[K]]);
}

export function wsSource(ws: WsServer, producer: FastProducer): void {
  let opened = 0;
  let slow = 0;
  const closes = new Map<number, number>();
  ws.onOpen(() => void opened++);
  ws.onClose((_conn, info) => {
    closes.set(info.code, (closes.get(info.code) ?? 0) + 1);
    // The reason @mega/ws gives its own 1013 for a client that does not read (not a pre-connect overflow).
    if (info.code === 1013 && info.reason === 'slow consumer') slow++;
  });
  producer.add((b) => {
    const t = ws.traffic;
    b.gauge({ name: 'mega_ws_connections', description: 'Open WebSocket connections' }, [{ attributes: {}, value: ws.size }]);
    b.counter({ name: 'mega_ws_connections_opened', description: 'WebSocket connections accepted (handshake done)' }, [
      { attributes: {}, value: opened },
    ]);
    b.counter(
      { name: 'mega_ws_closes', description: 'WebSocket connections closed, by close code (1006: dropped without a close frame)' },
      [...closes].map(([code, value]) => ({ attributes: { code: String(code) }, value })),
    );
    b.counter(
      { name: 'mega_ws_slow_consumer_closes', description: 'Connections closed with 1013 because output backed up (slow consumer)' },
      [{ attributes: {}, value: slow }],
    );
    b.counter({ name: 'mega_ws_frames', description: 'WebSocket data messages by direction and type (a fragmented message counts once)' }, [
      { attributes: { direction: 'in', type: 'text' }, value: t.messagesIn.text },
      { attributes: { direction: 'in', type: 'binary' }, value: t.messagesIn.binary },
      { attributes: { direction: 'out', type: 'text' }, value: t.messagesOut },
    ]);
    b.counter({ name: 'mega_ws_bytes', description: 'WebSocket bytes on the wire after the handshake', unit: 'By' }, [
      { attributes: { direction: 'in' }, value: t.bytesIn },
      { attributes: { direction: 'out' }, value: t.bytesOut },
    ]);
  });
}

/** Local presence per app: joined sessions, distinct users, channels with at least one session. */
export function presenceSource(ws: WsServer, presence: PresenceService, kernel: Kernel, producer: FastProducer): void {
  producer.add((b) => {
    const per = new Map<string, { sessions: number; users: Set<string>; channels: Set<string> }>();
    for (const app of kernel.apps) per.set(app.name, { sessions: 0, users: new Set(), channels: new Set() });
    for (const conn of ws.connections()) {
      const entry = presence.of(conn.app).entryOf(conn);
      const p = per.get(conn.app.name);
      if (!entry || !p) continue;
      p.sessions++;
      p.users.add(entry.userId);
      for (const c of entry.channels) p.channels.add(`${conn.ns}\u0000${c}`);
    }
    const points = (f: (p: { sessions: number; users: Set<string>; channels: Set<string> }) => number): Point[] =>
      [...per].map(([app, p]) => ({ attributes: { app }, value: f(p) }));
    b.gauge(
      { name: 'mega_presence_sessions', description: 'Presence sessions joined on this process' },
      points((p) => p.sessions),
    );
    b.gauge(
      { name: 'mega_presence_users', description: 'Distinct users with a joined session on this process' },
      points((p) => p.users.size),
    );
    b.gauge(
      { name: 'mega_presence_channels', description: 'Channels (per namespace) with at least one joined session on this process' },
      points((p) => p.channels.size),
    );
  });
}

export function jobsSource(api: PluginApi, jobs: JobsService, meter: Meter, producer: FastProducer): void {
  const counter = (name: string, description: string) => meter.createCounter(name, { description });
  const started = counter('mega_jobs_started', 'Job runs started (every attempt)');
  const done = counter('mega_jobs_done', 'Job runs that succeeded');
  const retried = counter('mega_jobs_retried', 'Failed job runs that will be retried');
  const failed = counter('mega_jobs_failed', 'Job failures by phase (run, decode, dlq-publish, max-deliver, abandoned-run)');
  const dlq = counter('mega_jobs_dlq', 'Jobs moved to the dead-letter queue');
  const lag = meter.createHistogram('mega_jobs_queue_lag_seconds', {
    description: 'First attempts: time from when the job could run (stored, or due when delayed) until it started',
    unit: 's',
    advice: { explicitBucketBoundaries: LAG_BUCKETS },
  });
  const duration = meter.createHistogram('mega_jobs_run_duration_seconds', {
    description: 'Job run time by outcome (ok, error), from the kernel job hook',
    unit: 's',
    advice: { explicitBucketBoundaries: RUN_BUCKETS },
  });
  for (const j of jobs.apps) {
    j.on('start', (e) => {
      const attributes = { app: e.app, job: e.job };
      started.add(1, attributes);
      if (e.lagMs !== undefined) lag.record(e.lagMs / 1000, attributes);
    });
    j.on('done', (e) => done.add(1, { app: e.app, job: e.job }));
    j.on('retry', (e) => retried.add(1, { app: e.app, job: e.job }));
    j.on('fail', (e) => failed.add(1, { app: e.app, job: e.job, phase: e.phase ?? 'run' }));
    j.on('dlq', (e) => dlq.add(1, { app: e.app, job: e.job }));
  }
  api.tap('job', (e) => {
    if (e.phase === 'before' || e.durationMs === undefined) return;
    duration.record(e.durationMs / 1000, { app: e.app?.name ?? '', job: e.job.name, outcome: e.phase === 'after' ? 'ok' : 'error' });
  });
  producer.add(async (b) => {
    const enqueued: Point[] = [];
    const pending: Point[] = [];
    const running: Point[] = [];
    const delayed: Point[] = [];
    const dead: Point[] = [];
    await Promise.all(
      jobs.apps.map(async (j) => {
        const app = j.app.name;
        for (const [job, value] of j.enqueued) enqueued.push({ attributes: { app, job }, value });
        let s: Awaited<ReturnType<typeof j.stats>>;
        try {
          s = await j.stats();
        } catch {
          return; // not attached yet (before boot) or the queue is unreachable: no depth this time
        }
        const driver = s.driver;
        for (const [job, q] of Object.entries(s.jobs)) {
          pending.push({ attributes: { app, job, driver }, value: q.pending });
          running.push({ attributes: { app, job, driver }, value: q.running });
        }
        delayed.push({ attributes: { app, driver }, value: s.delayed });
        dead.push({ attributes: { app, driver }, value: s.dlq });
      }),
    );
    b.counter(
      { name: 'mega_jobs_enqueued', description: 'Jobs stored by enqueue on this process (deduplicated ids not counted again)' },
      enqueued,
    );
    b.gauge({ name: 'mega_jobs_queue_pending', description: 'Jobs waiting to run (JetStream: the shared queue)' }, pending);
    b.gauge({ name: 'mega_jobs_queue_running', description: 'Jobs delivered and not yet settled' }, running);
    b.gauge({ name: 'mega_jobs_queue_delayed', description: 'Jobs waiting for their delay' }, delayed);
    b.gauge({ name: 'mega_jobs_queue_dlq', description: 'Dead letters kept' }, dead);
  });
}

interface AdapterStatsLike {
  driver: string;
  alias: string;
  operations: number;
  errors: number;
  latency: LatencySnapshot;
  pool?: { total: number; idle: number; waiting: number };
}

/** Databases (`adapters:dbs`, the registry behind ctx.db) and caches (service `caches` of @mega/cache-redis). */
export function adapterSource(api: PluginApi, producer: FastProducer): void {
  const kinds = [
    { service: 'adapters:dbs', prefix: 'mega_db', what: 'database' },
    { service: 'caches', prefix: 'mega_cache', what: 'cache' },
  ].filter((k) => api.has(k.service));
  if (!kinds.length) return;
  producer.add((b) => {
    for (const { service, prefix, what } of kinds) {
      const registry = api.use<Pick<AdapterRegistry<{ stats?: () => AdapterStatsLike }>, 'aliases' | 'get'>>(service);
      const all = registry.aliases.flatMap((alias) => {
        const s = registry.get(alias).stats?.();
        return s ? [{ attributes: { alias, driver: s.driver }, s }] : [];
      });
      b.counter(
        { name: `${prefix}_operations`, description: `Operations per ${what} alias` },
        all.map((a) => ({ attributes: a.attributes, value: a.s.operations })),
      );
      b.counter(
        { name: `${prefix}_errors`, description: `Failed operations per ${what} alias` },
        all.map((a) => ({ attributes: a.attributes, value: a.s.errors })),
      );
      b.histogram(
        { name: `${prefix}_operation_duration_seconds`, description: `Operation latency per ${what} alias`, unit: 's' },
        all.map((a) => latency(a.attributes, a.s.latency)),
      );
      const pools = all.filter((a) => a.s.pool);
      b.gauge(
        { name: `${prefix}_pool_connections`, description: 'Pool connections by state (in_use, idle)' },
        pools.flatMap(({ attributes, s }) => {
          const p = s.pool as NonNullable<AdapterStatsLike['pool']>;
          return [
            { attributes: { ...attributes, state: 'in_use' }, value: Math.max(0, p.total - p.idle) },
            { attributes: { ...attributes, state: 'idle' }, value: p.idle },
          ];
        }),
      );
      b.gauge(
        { name: `${prefix}_pool_waiting`, description: 'Operations waiting for a pool connection' },
        pools.map(({ attributes, s }) => ({ attributes, value: s.pool?.waiting ?? 0 })),
      );
    }
  });
}

export function busSource(kernel: Kernel, producer: FastProducer): void {
  const buses = appsWith(kernel, 'bus');
  if (!buses.length) return;
  producer.add((b) => {
    const rows = buses.map(([app, bus]) => ({ s: bus.stats(), attributes: { app: app.name, driver: bus.driver } }));
    const c = (name: string, description: string, value: (s: (typeof rows)[number]['s']) => number) =>
      b.counter(
        { name, description },
        rows.map((r) => ({ attributes: r.attributes, value: value(r.s) })),
      );
    c('mega_bus_published', 'Events published (emit)', (s) => s.emitted);
    c('mega_bus_publish_errors', 'Emits refused (bad subject, outbox full, shutdown)', (s) => s.emitErrors);
    c('mega_bus_received', 'Messages handed to subscribers of this app', (s) => s.received);
    c('mega_bus_handler_errors', 'Subscriber handlers that threw', (s) => s.handlerErrors);
    c('mega_bus_requests', 'Requests sent', (s) => s.requests);
    c('mega_bus_request_errors', 'Requests that failed (timeout, no responders, error reply)', (s) => s.ops.errors);
    b.gauge(
      { name: 'mega_bus_subscriptions', description: 'Active subscriptions' },
      rows.map((r) => ({ attributes: r.attributes, value: r.s.subscriptions })),
    );
    b.histogram(
      { name: 'mega_bus_request_duration_seconds', description: 'Request latency until the reply', unit: 's' },
      rows.map((r) => latency(r.attributes, r.s.ops.latency)),
    );
    // One NATS connection may serve several apps: once per alias.
    const nats = new Map(rows.filter((r) => r.s.nats).map((r) => [r.s.service, r.s.nats as NonNullable<typeof r.s.nats>]));
    const per = (f: (n: NonNullable<(typeof rows)[number]['s']['nats']>) => [number, number]) =>
      [...nats].flatMap(([alias, n]) => {
        const [i, o] = f(n);
        return [
          { attributes: { alias, direction: 'in' }, value: i },
          { attributes: { alias, direction: 'out' }, value: o },
        ];
      });
    b.counter(
      { name: 'mega_nats_messages', description: 'NATS messages of the connection' },
      per((n) => [n.inMsgs, n.outMsgs]),
    );
    b.counter(
      { name: 'mega_nats_bytes', description: 'NATS bytes of the connection', unit: 'By' },
      per((n) => [n.inBytes, n.outBytes]),
    );
    b.gauge(
      { name: 'mega_nats_connected', description: '1 while the NATS connection is up' },
      [...nats].map(([alias, n]) => ({ attributes: { alias }, value: n.connected ? 1 : 0 })),
    );
    b.gauge(
      { name: 'mega_nats_outbox_pending', description: 'Published messages not yet confirmed by the server' },
      [...nats].map(([alias, n]) => ({ attributes: { alias }, value: n.pending })),
    );
  });
}

export function lockSource(kernel: Kernel, producer: FastProducer): void {
  const locks = appsWith(kernel, 'lock');
  if (!locks.length) return;
  producer.add((b) => {
    const rows = locks.map(([app, lock]) => ({ s: lock.stats(), attributes: { app: app.name, driver: lock.driver } }));
    const c = (name: string, description: string, value: (s: (typeof rows)[number]['s']) => number) =>
      b.counter(
        { name, description },
        rows.map((r) => ({ attributes: r.attributes, value: value(r.s) })),
      );
    c('mega_lock_acquired', 'Leases granted', (s) => s.acquired);
    c('mega_lock_released', 'Leases released', (s) => s.released);
    c('mega_lock_extended', 'Lease extensions', (s) => s.extended);
    c('mega_lock_timeouts', 'Acquisitions that gave up after waitMs', (s) => s.timeouts);
    c('mega_lock_lost', 'Leases lost (expired before extension, taken, or found lost at release)', (s) => s.lost);
    c('mega_lock_errors', 'Backend errors', (s) => s.errors);
    b.gauge(
      { name: 'mega_lock_held', description: 'Leases held now' },
      rows.map((r) => ({ attributes: r.attributes, value: r.s.held })),
    );
    b.gauge(
      { name: 'mega_lock_waiting', description: 'Local waiters queued now' },
      rows.map((r) => ({ attributes: r.attributes, value: r.s.waiting })),
    );
    b.histogram(
      { name: 'mega_lock_wait_seconds', description: 'Acquisition time including the wait (timeouts included)', unit: 's' },
      rows.map((r) => latency(r.attributes, r.s.acquire.latency)),
    );
    b.histogram(
      { name: 'mega_lock_held_seconds', description: 'How long released leases were held', unit: 's' },
      rows.map((r) => latency(r.attributes, r.s.hold.latency)),
    );
  });
}

/** The codec backend (read on first scrape) and ASP's seal/open counts when @mega/asp is loaded. */
export function codecSource(kernel: Kernel, asp: AspService | undefined, producer: FastProducer): void {
  producer.add((b) => {
    b.gauge({ name: 'mega_codec_info', description: 'The codec backend in use (native addon or TypeScript), value 1' }, [
      { attributes: { backend: kernel.codec.backend }, value: 1 },
    ]);
    if (!asp) return;
    const s = asp.stats();
    b.counter({ name: 'mega_codec_seals', description: 'ASP frames and bodies sealed (AES-256-GCM)' }, [
      { attributes: {}, value: s.sealed },
    ]);
    b.counter({ name: 'mega_codec_opens', description: 'ASP frames and bodies opened' }, [{ attributes: {}, value: s.opened }]);
    b.counter(
      { name: 'mega_codec_open_rejections', description: 'ASP input refused, by reason (signal, malformed, decrypt, drift, replay)' },
      (['asp.signal', 'asp.malformed', 'asp.decrypt', 'asp.drift', 'asp.replay'] as const).map((k) => ({
        attributes: { reason: k.slice(4) },
        value: s[k],
      })),
    );
  });
}
