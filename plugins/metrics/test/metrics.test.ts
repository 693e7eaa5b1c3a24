/**
 * @mega/metrics in process, over real HTTP and WebSocket connections: what each instrument group
 * records, per-kernel providers, the exposure rule, and what a disabled plugin leaves behind.
 */

import type { PluginApi } from '@mega/kernel';
import { definePlugin } from '@mega/kernel';
import { type BootProjectOptions, bootProject, exposedText, stopAll, waitUntil, writeProject } from '@mega/testing';
import { metrics as otelMetrics } from '@opentelemetry/api';
import { afterEach, describe, expect, it } from 'vitest';
import { createExposure } from '../src/exposure.js';
import type { MetricsService } from '../src/index.js';
import { parseExposition } from '../src/index.js';
import { samples, scrape, value } from './helpers.js';

afterEach(stopAll);

const ROUTES = `export default (r: any) => {
  r.http.get('/', async () => ({ ok: true }));
  r.http.get('/users/:id', async (req: any) => ({ id: req.params.id }));
  r.http.post('/users', async () => ({ created: true }));
  r.http.get('/boom', async () => { throw new Error('boom'); });
};
`;

let apps = 0;
/** A project with one app (a fresh name each time: kernels in one process need distinct app names); `files` are inside the app. */
function project(config: string, files: Record<string, string> = {}): string {
  const app = `web${++apps}`;
  const inApp = Object.fromEntries(
    Object.entries({ 'app.config.ts': 'export default {};\n', 'routes/index.ts': ROUTES, ...files }).map(([k, v]) => [
      `apps/${app}/${k}`,
      v,
    ]),
  );
  return writeProject({ 'mega.config.ts': `export default ${config};\n`, ...inApp }, { prefix: 'mega-metrics-' });
}

const boot = (plugins: string[], extra = '', files: Record<string, string> = {}, options: BootProjectOptions = {}) =>
  bootProject(project(`{ plugins: ${JSON.stringify(plugins)}${extra ? `, ${extra}` : ''} }`, files), options);

describe('@mega/metrics: HTTP', () => {
  it('counts requests by app, method, route pattern and status class; unmatched paths are one __unmatched__ series; the histogram holds every request', async () => {
    const b = await boot(['@mega/http', '@mega/metrics']);
    const app = b.kernel.apps[0]?.name as string;
    await b.inject('/');
    for (const id of ['1', '2', '3']) expect((await b.inject(`/users/${id}`)).status).toBe(200);
    await b.inject('/users', { json: {} });
    expect((await b.inject('/boom')).status).toBe(500);
    for (const path of ['/wp-admin', '/.env', '/a/b/c?x=1']) expect((await b.inject(path)).status).toBe(404);

    const ex = await scrape(b.inject);
    expect(value(ex, 'mega_http_requests_total', { app, method: 'GET', route: '/users/:id', status_class: '2xx' })).toBe(3);
    expect(value(ex, 'mega_http_requests_total', { app, method: 'POST', route: '/users', status_class: '2xx' })).toBe(1);
    expect(value(ex, 'mega_http_requests_total', { app, method: 'GET', route: '/boom', status_class: '5xx' })).toBe(1);
    expect(value(ex, 'mega_http_requests_total', { method: 'GET', route: '__unmatched__', status_class: '4xx' })).toBe(3);
    // No path ever becomes a label.
    const routes = new Set(samples(ex, 'mega_http_requests_total').map((s) => s.labels.route));
    expect([...routes].sort()).toEqual(['/', '/boom', '/users', '/users/:id', '__unmatched__']);

    const labels = { app, method: 'GET', route: '/users/:id', status_class: '2xx' };
    expect(value(ex, 'mega_http_request_duration_seconds_count', labels)).toBe(3);
    expect(value(ex, 'mega_http_request_duration_seconds_bucket', { ...labels, le: '+Inf' })).toBe(3);
    const sum = value(ex, 'mega_http_request_duration_seconds_sum', labels) as number;
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThan(10);
    // Buckets are cumulative and never decrease.
    const buckets = samples(ex, 'mega_http_request_duration_seconds_bucket', labels).map((s) => s.value);
    expect(buckets).toEqual([...buckets].sort((x, y) => x - y));
    expect(ex.get('mega_http_request_duration_seconds')?.type).toBe('histogram');
    expect(ex.get('mega_http_requests_total')?.type).toBe('counter');

    const raw = await b.inject('/metrics');
    expect(raw.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(raw.headers['cache-control']).toBe('no-store');
    // The scrape itself is counted once it has answered.
    expect(value(await scrape(b.inject), 'mega_http_requests_total', { route: '/metrics' })).toBeGreaterThanOrEqual(2);
  });

  it('a streamed body is recorded once, when it has finished: its duration covers the stream', async () => {
    const files = {
      'routes/stream.ts': `import { Readable } from 'node:stream';
export default (r: any) => {
  r.http.get('/slow-stream', async (_q: any, reply: any) => {
    reply.type('text/plain');
    return new Readable({
      read() {
        if ((this as any).sent) return;
        (this as any).sent = true;
        this.push('a');
        setTimeout(() => { this.push('b'); this.push(null); }, 150);
      },
    });
  });
};
`,
    };
    const b = await boot(['@mega/http', '@mega/metrics'], '', files);
    const app = b.kernel.apps[0]?.name as string;
    const r = await b.inject('/slow-stream');
    expect([r.status, r.text]).toEqual([200, 'ab']);
    const labels = { app, method: 'GET', route: '/slow-stream', status_class: '2xx' };
    const ex = await waitUntil(async () => {
      const e = await scrape(b.inject);
      return value(e, 'mega_http_requests_total', labels) === 1 ? e : undefined;
    });
    expect(value(ex, 'mega_http_request_duration_seconds_count', labels)).toBe(1);
    expect(value(ex, 'mega_http_request_duration_seconds_sum', labels)).toBeGreaterThanOrEqual(0.14);
  });

  it('takes its path and bucket bounds from config', async () => {
    const b = await boot(['@mega/http', '@mega/metrics'], "metrics: { path: '/internal/prom', httpBuckets: [0.5, 2] }");
    await b.inject('/');
    expect((await b.inject('/metrics')).status).toBe(404);
    const ex = await scrape(b.inject, '/internal/prom');
    const les = samples(ex, 'mega_http_request_duration_seconds_bucket', { route: '/' }).map((s) => s.labels.le);
    expect(les).toEqual(['0.5', '2', '+Inf']);
  });

  it('one MeterProvider per kernel: two kernels in one process count apart, and the OpenTelemetry global provider is not used', async () => {
    const one = await boot(['@mega/http', '@mega/metrics']);
    const two = await boot(['@mega/http', '@mega/metrics']);
    for (let i = 0; i < 4; i++) await one.inject('/');
    await two.inject('/');
    expect(value(await scrape(one.inject), 'mega_http_requests_total', { route: '/' })).toBe(4);
    expect(value(await scrape(two.inject), 'mega_http_requests_total', { route: '/' })).toBe(1);
    const p1 = one.kernel.use<MetricsService>('metrics').provider;
    expect(p1).not.toBe(two.kernel.use<MetricsService>('metrics').provider);
    expect(otelMetrics.getMeterProvider()).not.toBe(p1);
  });
});

describe('@mega/metrics: off', () => {
  /** Route table with hooks: Fastify prints each route's hooks, so a per-request hook cannot hide. */
  const hooks = (b: { kernel: { use(n: string): unknown } }) =>
    (b.kernel.use('http') as { fastify: { printRoutes(o: object): string } }).fastify.printRoutes({ includeHooks: true });

  it('metrics.enabled false, or not installed: no /metrics, no metrics service, no hook on any route', async () => {
    const off = await boot(['@mega/http', '@mega/metrics'], 'metrics: { enabled: false }');
    const absent = await boot(['@mega/http']);
    const on = await boot(['@mega/http', '@mega/metrics']);
    for (const b of [off, absent]) {
      expect((await b.inject('/metrics')).status).toBe(404);
      expect(b.kernel.has('metrics')).toBe(false);
    }
    // Disabled, every route has exactly the hooks it has without the plugin (GET routes: none at all).
    expect(hooks(off)).toBe(hooks(absent));
    expect(hooks(absent)).toMatch(/└── \/ \(GET\)\n {4}\/ \(HEAD\)/);
    // The control: enabled, GET / runs one onRequest and one onSend hook (and no onResponse, which
    // would make Fastify add listeners to every response).
    expect(hooks(on)).toMatch(/└── \/ \(GET\)\n {4}• \(onRequest\).*\n {4}• \(onSend\)/);
    expect(hooks(on).split('/ (HEAD)')[0]).not.toContain('onResponse');
  });
});

describe('@mega/metrics: exposure', () => {
  const TOKEN = 'scrape-token-0123456789abcdef';

  it('metrics.token: a scrape without it or with a wrong one gets 401; the token never appears in logs or answers', async () => {
    const b = await boot(['@mega/http', '@mega/metrics'], `metrics: { token: '${TOKEN}' }`, {}, { logLevel: 'debug' });
    const none = await b.inject('/metrics');
    expect([none.status, none.code]).toEqual([401, 'metrics.unauthorized']);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="metrics"');
    const wrong = await b.inject('/metrics', { headers: { authorization: `Bearer ${TOKEN}x` } });
    expect(wrong.status).toBe(401);
    const ok = await b.inject('/metrics', { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(ok.text).toContain('mega_http_requests_total');
    for (const r of [none, wrong]) expect(r.text).not.toContain(TOKEN);
    expect(exposedText({ logs: b.logs })).not.toContain(TOKEN);
  });

  it('MEGA_METRICS_TOKEN sets the token when the config has none', async () => {
    process.env.MEGA_METRICS_TOKEN = TOKEN;
    try {
      const b = await boot(['@mega/http', '@mega/metrics']);
      expect((await b.inject('/metrics')).status).toBe(401);
      expect((await b.inject('/metrics', { headers: { authorization: `bearer ${TOKEN}` } })).status).toBe(200);
    } finally {
      delete process.env.MEGA_METRICS_TOKEN;
    }
  });

  it('metrics.allow: only peers in the list (addresses or CIDRs, by TCP peer, never X-Forwarded-For)', async () => {
    const b = await boot(['@mega/http', '@mega/metrics'], "metrics: { allow: ['127.0.0.2', '10.0.0.0/8'] }");
    const refused = await b.inject('/metrics', { headers: { 'x-forwarded-for': '127.0.0.2' } });
    expect([refused.status, refused.code]).toEqual([403, 'metrics.forbidden']);
    expect((await b.inject('/metrics', { localAddress: '127.0.0.2' })).status).toBe(200);
  });

  it('allow and token together: both must pass', async () => {
    const b = await boot(['@mega/http', '@mega/metrics'], `metrics: { allow: ['127.0.0.2'], token: '${TOKEN}' }`);
    const auth = { authorization: `Bearer ${TOKEN}` };
    expect((await b.inject('/metrics', { headers: auth })).status).toBe(403);
    expect((await b.inject('/metrics', { localAddress: '127.0.0.2' })).status).toBe(401);
    expect((await b.inject('/metrics', { localAddress: '127.0.0.2', headers: auth })).status).toBe(200);
  });

  it('production without allow or token: loopback peers only, and boot says how to open it', async () => {
    const b = await boot(['@mega/http', '@mega/metrics'], '', {}, { env: 'production' });
    expect((await b.inject('/metrics')).status).toBe(200);
    expect(b.findLogs(/answers loopback peers only in production; set metrics.allow/).length).toBe(1);
    // The same rule for peers a loopback test cannot be: any other address is refused.
    const rule = createExposure({ production: true });
    expect(rule.check('10.1.2.3', undefined)).toMatchObject({ status: 403, code: 'metrics.forbidden' });
    expect(rule.check('2001:db8::1', undefined)).toMatchObject({ status: 403 });
    expect(rule.check(undefined, undefined)).toMatchObject({ status: 403 });
    for (const peer of ['127.0.0.1', '127.9.9.9', '::1', '::ffff:127.0.0.1']) expect(rule.check(peer, undefined)).toBeUndefined();
    // Outside production the same config lets anyone scrape.
    expect(createExposure({ production: false }).check('10.1.2.3', undefined)).toBeUndefined();
  });

  it('a malformed allow entry fails boot naming it', async () => {
    const b = await boot(['@mega/http', '@mega/metrics'], "metrics: { allow: ['10.0.0.0/33'] }", {}, { start: false });
    await expect(b.kernel.start()).rejects.toMatchObject({
      code: 'metrics.invalid_allow',
      message: expect.stringContaining('10.0.0.0/33'),
    });
  });
});

const CHANNEL = `
export const auth = (req: any) => {
  const q = new URL(req.url, 'http://x').searchParams;
  return { userId: q.get('user'), sessionId: q.get('s') };
};
export class Chat {
  onConnect(sock: any, ctx: any) {
    ctx.presence.join({ userId: ctx.auth.userId, sessionId: ctx.auth.sessionId, channels: ['room', 'lobby'] });
    sock.send({ type: 'joined' });
  }
  ['chat.say'](sock: any, msg: any) { sock.send({ type: 'chat.said', payload: msg.payload }); }
}
export class Flood {
  ['flood.go'](sock: any) { for (let i = 0; i < 4; i++) sock.send({ type: 'flood.chunk', payload: 'x'.repeat(2048) }); }
}
`;
const WS_ROUTES = `import { Chat, Flood, auth } from '../channel.js';
export default (r: any) => { r.ws('/chat', Chat, { before: auth }); r.ws('/flood', Flood, { maxBufferedBytes: 1024 }); };
`;

describe('@mega/metrics: WebSocket and presence', () => {
  it('open connections, frames and bytes each way, close codes, slow-consumer closes; sessions, users and channels', async () => {
    const b = await boot(['@mega/http', '@mega/ws', '@mega/ws-presence', '@mega/metrics'], '', {
      'channel.ts': CHANNEL,
      'routes/ws.ts': WS_ROUTES,
    });
    const app = b.kernel.apps[0]?.name as string;
    const a = await b.ws('/chat?user=u1&s=s1');
    const c = await b.ws('/chat?user=u1&s=s2');
    const d = await b.ws('/chat?user=u2&s=s3');
    for (const client of [a, c, d]) await client.next('joined');
    for (let i = 0; i < 5; i++) {
      a.send('chat.say', { i });
      await a.next('chat.said');
    }
    let ex = await scrape(b.inject);
    expect(value(ex, 'mega_ws_frames_total', { direction: 'in', type: 'text' })).toBe(5);
    expect(value(ex, 'mega_ws_connections')).toBe(3);
    expect(value(ex, 'mega_ws_connections_opened_total')).toBe(3);
    // joined x3 + chat.said x5
    expect(value(ex, 'mega_ws_frames_total', { direction: 'out', type: 'text' })).toBe(8);
    expect(value(ex, 'mega_ws_bytes_total', { direction: 'in' })).toBeGreaterThan(5 * 20);
    expect(value(ex, 'mega_ws_bytes_total', { direction: 'out' })).toBeGreaterThan(8 * 10);
    expect(value(ex, 'mega_presence_sessions', { app })).toBe(3);
    expect(value(ex, 'mega_presence_users', { app })).toBe(2);
    expect(value(ex, 'mega_presence_channels', { app })).toBe(2);

    await a.close(1000);
    c.terminate();
    const flood = await b.ws('/flood');
    flood.send('flood.go');
    expect((await flood.closed).code).toBe(1013);
    ex = await waitUntil(
      async () => {
        const now = await scrape(b.inject);
        return value(now, 'mega_ws_connections') === 1 ? now : undefined;
      },
      { what: 'three connections closed' },
    );
    expect(value(ex, 'mega_ws_closes_total', { code: '1000' })).toBe(1);
    expect(value(ex, 'mega_ws_closes_total', { code: '1006' })).toBe(1);
    expect(value(ex, 'mega_ws_closes_total', { code: '1013' })).toBe(1);
    expect(value(ex, 'mega_ws_slow_consumer_closes_total')).toBe(1);
    expect(value(ex, 'mega_presence_sessions', { app })).toBe(1);
    expect(value(ex, 'mega_presence_users', { app })).toBe(1);
  });
});

const JOBS = `import { MegaJob, defineJob } from '@mega/jobs';
export class Ok extends MegaJob { static retries = 0; async run() { return 1; } }
export class Flaky extends MegaJob {
  static retries = 1;
  static backoff = { initialMs: 5, maxMs: 5 };
  async run() { throw new Error('always'); }
}
`;
const JOB_ROUTES = `export default (r: any) => {
  r.http.post('/enqueue/:job', async (req: any, _reply: any, ctx: any) => ({ id: await ctx.jobs.enqueue(req.params.job, {}, req.body ?? {}) }));
};
`;

describe('@mega/metrics: jobs', () => {
  it('enqueued, started, done, retried, failed, dlq, run duration (kernel job hook) and queue lag', async () => {
    const b = await boot(['@mega/http', '@mega/jobs', '@mega/metrics'], '', { 'jobs/work.ts': JOBS, 'routes/jobs.ts': JOB_ROUTES });
    const app = b.kernel.apps[0]?.name as string;
    for (let i = 0; i < 3; i++) expect((await b.inject('/enqueue/Ok', { json: {} })).status).toBe(200);
    // The same id twice within the dedup window is stored once.
    await b.inject('/enqueue/Ok', { json: { id: 'same' } });
    await b.inject('/enqueue/Ok', { json: { id: 'same' } });
    await b.inject('/enqueue/Flaky', { json: {} });
    const ex = await waitUntil(
      async () => {
        const now = await scrape(b.inject);
        return value(now, 'mega_jobs_dlq_total', { app, job: 'Flaky' }) === 1 && value(now, 'mega_jobs_done_total', { job: 'Ok' }) === 4
          ? now
          : undefined;
      },
      { what: 'Ok done 4 times and Flaky dead-lettered' },
    );
    expect(value(ex, 'mega_jobs_enqueued_total', { app, job: 'Ok' })).toBe(4);
    expect(value(ex, 'mega_jobs_enqueued_total', { app, job: 'Flaky' })).toBe(1);
    expect(value(ex, 'mega_jobs_started_total', { app, job: 'Ok' })).toBe(4);
    expect(value(ex, 'mega_jobs_started_total', { app, job: 'Flaky' })).toBe(2);
    expect(value(ex, 'mega_jobs_retried_total', { app, job: 'Flaky' })).toBe(1);
    expect(value(ex, 'mega_jobs_failed_total', { app, job: 'Flaky', phase: 'run' })).toBe(1);
    expect(value(ex, 'mega_jobs_run_duration_seconds_count', { app, job: 'Ok', outcome: 'ok' })).toBe(4);
    expect(value(ex, 'mega_jobs_run_duration_seconds_count', { app, job: 'Flaky', outcome: 'error' })).toBe(2);
    // Lag: first attempts only (the retry waited for its backoff, not for a worker).
    expect(value(ex, 'mega_jobs_queue_lag_seconds_count', { app, job: 'Ok' })).toBe(4);
    expect(value(ex, 'mega_jobs_queue_lag_seconds_count', { app, job: 'Flaky' })).toBe(1);
    expect(value(ex, 'mega_jobs_queue_dlq', { app, driver: 'memory' })).toBe(1);
    expect(value(ex, 'mega_jobs_queue_pending', { app, job: 'Ok', driver: 'memory' })).toBe(0);
  });
});

const SYNC_ROUTES = `export default (r: any) => {
  r.app.bus.on('ping', () => 'pong');
  r.app.bus.on('note', () => undefined);
  r.http.get('/bus', async (_q: any, _r: any, ctx: any) => { await ctx.bus.emit('note', {}); return { answer: await ctx.bus.request('ping', {}) }; });
  r.http.get('/lock', async (_q: any, _r: any, ctx: any) => ctx.lock.with('k', {}, async () => ({ ok: true })));
};
`;

describe('@mega/metrics: bus and lock', () => {
  it('published, received, requests and their latency; leases, wait and hold times', async () => {
    const b = await boot(['@mega/http', '@mega/bus', '@mega/lock', '@mega/metrics'], '', { 'routes/sync.ts': SYNC_ROUTES });
    const app = b.kernel.apps[0]?.name as string;
    for (let i = 0; i < 3; i++) {
      expect((await b.inject('/bus')).data).toEqual({ answer: 'pong' });
      expect((await b.inject('/lock')).status).toBe(200);
    }
    const ex = await scrape(b.inject);
    const bus = { app, driver: 'memory' };
    expect(value(ex, 'mega_bus_published_total', bus)).toBe(3);
    expect(value(ex, 'mega_bus_requests_total', bus)).toBe(3);
    expect(value(ex, 'mega_bus_received_total', bus)).toBe(6);
    expect(value(ex, 'mega_bus_subscriptions', bus)).toBe(2);
    expect(value(ex, 'mega_bus_request_duration_seconds_count', bus)).toBe(3);
    expect(value(ex, 'mega_bus_request_duration_seconds_bucket', { ...bus, le: '+Inf' })).toBe(3);
    const lock = { app, driver: 'memory' };
    expect(value(ex, 'mega_lock_acquired_total', lock)).toBe(3);
    expect(value(ex, 'mega_lock_released_total', lock)).toBe(3);
    expect(value(ex, 'mega_lock_lost_total', lock)).toBe(0);
    expect(value(ex, 'mega_lock_held', lock)).toBe(0);
    expect(value(ex, 'mega_lock_wait_seconds_count', lock)).toBe(3);
    expect(value(ex, 'mega_lock_held_seconds_count', lock)).toBe(3);
  });
});

describe('@mega/metrics: codec, process and other plugins', () => {
  it('the codec backend, CPU, memory, event-loop lag and (opt-in group gc) GC pauses', async () => {
    const plain = await boot(['@mega/http', '@mega/metrics']);
    const b = await boot(['@mega/http', '@mega/metrics'], "metrics: { include: ['process', 'codec', 'gc'] }");
    const backend = b.kernel.codec.backend;
    // Allocation enough for the young generation to be collected at least once.
    const ex = await waitUntil(
      async () => {
        let keep: unknown[] = [];
        for (let i = 0; i < 2000; i++) keep.push(new Array(1000).fill(i));
        keep = [];
        const now = await scrape(b.inject);
        // The lag gauge needs one sample of its 10 ms timer, which a busy machine may not have fired yet.
        const lagged = samples(now, 'mega_process_event_loop_lag_seconds').length > 0;
        return (value(now, 'mega_process_gc_duration_seconds_count') ?? 0) > 0 && lagged && keep.length === 0 ? now : undefined;
      },
      { what: 'a GC pause and an event-loop lag sample recorded' },
    );
    expect(value(ex, 'mega_codec_info', { backend })).toBe(1);
    expect(value(ex, 'mega_process_cpu_seconds_total', { mode: 'user' })).toBeGreaterThan(0);
    expect(value(ex, 'mega_process_memory_bytes', { type: 'heap_used' })).toBeGreaterThan(1_000_000);
    expect(samples(ex, 'mega_process_event_loop_lag_seconds').map((s) => s.labels.stat)).toEqual(['p50', 'p99', 'max']);
    // GC pauses are off by default (the observer costs ~3% CPU); the rest of the process group is on.
    const defaults = await scrape(plain.inject);
    expect(value(defaults, 'mega_process_gc_duration_seconds_count')).toBeUndefined();
    expect(value(defaults, 'mega_process_memory_bytes', { type: 'rss' })).toBeGreaterThan(0);
    // The resource: the project's package.json name (as @mega/tracing names the service) and the environment.
    expect(samples(ex, 'target_info')).toEqual([
      { labels: { service_name: 'mega-test-project', deployment_environment_name: 'test' }, value: 1 },
    ]);
  });

  it('ASP seal and open counts, and rejections by reason, come from the asp service', async () => {
    const { codecSource } = await import('../src/sources.js');
    const { FastProducer } = await import('../src/fast.js');
    const { resourceFromAttributes } = await import('@opentelemetry/resources');
    const producer = new FastProducer(resourceFromAttributes({}), { name: 'test', version: '0' }, 1000);
    const stats = { opened: 7, sealed: 9, 'asp.signal': 1, 'asp.malformed': 0, 'asp.decrypt': 2, 'asp.drift': 0, 'asp.replay': 3 };
    const asp = { stats: () => stats, keysFor: () => ({ ws: '', http: '' }), isEncrypted: () => false };
    codecSource({ codec: { backend: 'ts' } } as never, asp, producer);
    const { resourceMetrics } = await producer.collect();
    const byName = new Map(resourceMetrics.scopeMetrics[0]?.metrics.map((m) => [m.descriptor.name, m.dataPoints]));
    expect(byName.get('mega_codec_info')?.[0]).toMatchObject({ attributes: { backend: 'ts' }, value: 1 });
    expect(byName.get('mega_codec_seals')?.[0]?.value).toBe(9);
    expect(byName.get('mega_codec_opens')?.[0]?.value).toBe(7);
    expect(byName.get('mega_codec_open_rejections')?.map((p) => [p.attributes.reason, p.value])).toEqual([
      ['signal', 1],
      ['malformed', 0],
      ['decrypt', 2],
      ['drift', 0],
      ['replay', 3],
    ]);
  });

  it('another plugin gets a meter at boot only when the service exists; a throwing instrument is logged and the scrape still answers', async () => {
    let seen: boolean | undefined;
    const custom = definePlugin({
      name: 'custom',
      version: '1.0.0',
      setup(api: PluginApi) {
        api.tap('boot', () => {
          seen = api.has('metrics');
          if (!seen) return;
          const meter = api.use<MetricsService>('metrics').meter('custom');
          meter.createCounter('custom_things').add(2, { kind: 'a' });
          meter.createObservableGauge('custom_broken').addCallback(() => {
            throw new Error('sensor offline');
          });
        });
      },
    });
    const b = await boot(['@mega/http', '@mega/metrics'], '', {}, { plugins: [custom] });
    expect(seen).toBe(true);
    const first = await b.inject('/metrics');
    expect(first.status).toBe(200);
    expect(value(parseExposition(first.text), 'custom_things_total', { kind: 'a' })).toBe(2);
    expect((await b.inject('/metrics')).status).toBe(200);
    // Logged once, not on every scrape.
    expect(b.findLogs(/some instruments could not be read/).length).toBe(1);

    const without = await boot(['@mega/http'], '', {}, { plugins: [custom] });
    expect(seen).toBe(false);
    expect((await without.inject('/')).status).toBe(200);
  });
});
