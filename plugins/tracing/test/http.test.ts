/**
 * HTTP, WebSocket and fetch spans exported over OTLP/HTTP to a local receiver; W3C trace context in
 * and out; trace ids in log lines; an unreachable endpoint; several kernels in one process.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { type Booted, bootProject, stopAll, waitUntil, writeProject } from '@mega/testing';
import type { Tracing } from '@mega/tracing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ReceivedSpan, Receiver } from './receiver.js';
import { startReceiver } from './receiver.js';

let receiver: Receiver;
beforeAll(async () => {
  receiver = await startReceiver();
});
afterAll(() => receiver.close());
afterEach(stopAll);

const ROUTES = `
import { MegaError, NotFoundError } from '@mega/kernel';
export default (r: any) => {
  r.http.get('/users/:id', async (req: any, _reply: any, ctx: any) => {
    ctx.log.info({ user: req.params.id }, 'loading user');
    return { id: req.params.id };
  });
  r.http.post('/echo', async (req: any, _reply: any, ctx: any) => {
    await new Promise((r) => setImmediate(r));
    ctx.log.info('echoing');
    return req.body;
  });
  r.http.get('/boom', async () => { throw new Error('kaput'); });
  r.http.get('/gone', async () => { throw new NotFoundError('user.not_found', 'no such user'); });
  r.http.get('/upstream', async (_req: any, _reply: any, ctx: any) => {
    const res = await fetch((globalThis as any).__upstream + '/data?token=secret');
    return { status: res.status };
  });
  r.http.get('/custom', async (_req: any, _reply: any, ctx: any) =>
    ctx.tracer.span('price.compute', async (span: any) => { span.setAttribute('items', 3); return 42; }, { currency: 'EUR' }));
  r.http.get('/sdk', async (_req: any, _reply: any, ctx: any) =>
    ctx.tracer.otel.startActiveSpan('sdk.step', (span: any) => {
      ctx.log.info('inside the sdk span');
      span.setAttribute('step', 1);
      span.end();
      return 7;
    }));
  r.ws('/ws/chat', class {
    async onConnect(_sock: any, ctx: any) { ctx.log.info('ws connected'); }
    async ['chat.send'](sock: any, msg: any, ctx: any) {
      ctx.log.info('ws message');
      sock.send({ type: 'chat.sent', id: msg.id, payload: msg.payload });
    }
    ['chat.fail']() { throw new Error('handler broke'); }
  });
};`;

let apps = 0;
/** A project with http, ws and tracing; each boot names its app anew (two kernels may run at once). */
async function boot(tracing: Record<string, unknown> = {}, env: Record<string, string> = {}): Promise<Booted> {
  const app = apps++ === 0 ? 'web' : `web${apps}`;
  const config = {
    plugins: ['@mega/http', '@mega/ws', '@mega/tracing'],
    tracing: { endpoint: receiver.url, batch: { delayMs: 20 }, ...tracing },
  };
  const dir = writeProject(
    {
      'mega.config.ts': `export default ${JSON.stringify(config)};\n`,
      [`apps/${app}/app.config.ts`]: 'export default {};\n',
      [`apps/${app}/routes/index.ts`]: ROUTES,
      [`apps/${app}/public/hello.txt`]: 'static hello\n',
    },
    { prefix: 'mega-tracing-' },
  );
  // The plugin reads MEGA_OTEL_* once, at setup: set them for this boot only.
  const saved = Object.keys(env).map((k) => [k, process.env[k]] as const);
  Object.assign(process.env, env);
  try {
    return await bootProject(dir);
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** Flushes the kernel's spans until `pick` finds what it needs among them. */
async function spansOf<T>(booted: Booted, pick: (spans: ReceivedSpan[]) => T | undefined, what: string): Promise<T> {
  const tracing = booted.kernel.use<Tracing>('tracing');
  return waitUntil(
    async () => {
      await tracing.flush();
      return pick(receiver.spans);
    },
    { what, timeoutMs: 5000 },
  );
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/;

describe('@mega/tracing HTTP spans', () => {
  it('names the server span by route pattern, records status and route, and logs inside carry its ids', async () => {
    const b = await boot({ serviceName: 'shop' });
    const res = await b.inject('/users/42?x=1');
    expect(res.status).toBe(200);
    const span = await spansOf(
      b,
      (all) => all.find((s) => s.name === 'GET /users/:id' && s.attributes['url.path'] === '/users/42'),
      'span',
    );
    expect(span.kind).toBe(2);
    expect(span.parentSpanId).toBeUndefined();
    expect(span.attributes).toMatchObject({
      'http.request.method': 'GET',
      'http.route': '/users/:id',
      'http.response.status_code': 200,
      'mega.app': 'web',
    });
    expect(span.resource['service.name']).toBe('shop');
    const line = b.findLogs('loading user')[0];
    expect(line).toMatchObject({ trace_id: span.traceId, span_id: span.spanId, user: '42' });
  });

  it('keeps the span active through body parsing: a POST handler logs with its ids', async () => {
    const b = await boot();
    const res = await b.inject('/echo', { json: { a: 1 } });
    expect(res.data).toEqual({ a: 1 });
    const span = await spansOf(b, (all) => all.find((s) => s.name === 'POST /echo'), 'POST span');
    expect(b.findLogs('echoing')[0]).toMatchObject({ trace_id: span.traceId, span_id: span.spanId });
  });

  it('routes @mega/http adds to Fastify itself (the built-in /health, static files) are traced too', async () => {
    const b = await boot();
    expect((await b.inject('/health')).status).toBe(200);
    expect((await b.inject('/static/hello.txt')).text).toBe('static hello\n');
    const health = await spansOf(b, (all) => all.find((s) => s.attributes['url.path'] === '/health'), 'health span');
    expect(health).toMatchObject({ name: 'GET /health', kind: 2 });
    expect(health.attributes['http.route']).toBe('/health');
    const file = await spansOf(b, (all) => all.find((s) => s.attributes['url.path'] === '/static/hello.txt'), 'static span');
    expect(file.name).toBe('GET /static/*');
    expect(file.attributes['http.response.status_code']).toBe(200);
  });

  it('continues a valid inbound traceparent (and tracestate); a malformed one starts a new root', async () => {
    const b = await boot();
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parent = '00f067aa0ba902b7';
    await b.inject('/users/1', { headers: { traceparent: `00-${traceId}-${parent}-01`, tracestate: 'vendor=abc' } });
    const child = await spansOf(b, (all) => all.find((s) => s.attributes['url.path'] === '/users/1'), 'continued span');
    expect(child.traceId).toBe(traceId);
    expect(child.parentSpanId).toBe(parent);
    expect(child.traceState).toBe('vendor=abc');

    for (const bad of ['00-zzzz-00f067aa0ba902b7-01', `00-${'0'.repeat(32)}-${parent}-01`, 'garbage', `ff-${traceId}-${parent}-01`]) {
      const path = `/users/bad${bad.length}${bad.charCodeAt(0)}`;
      const res = await b.inject(path, { headers: { traceparent: bad } });
      expect(res.status).toBe(200);
      const root = await spansOf(b, (all) => all.find((s) => s.attributes['url.path'] === path), `root span for ${bad}`);
      expect(root.parentSpanId, bad).toBeUndefined();
      expect(root.traceId, bad).not.toBe(traceId);
      expect(root.traceId, bad).toMatch(/^[0-9a-f]{32}$/);
    }
  });

  it('records a 5xx as an error with the exception, a 4xx MegaError as its code only; an unmatched request is `GET __unmatched__`', async () => {
    const b = await boot();
    expect((await b.inject('/boom')).status).toBe(500);
    expect((await b.inject('/gone')).status).toBe(404);
    expect((await b.inject('/nowhere')).status).toBe(404);
    const boom = await spansOf(b, (all) => all.find((s) => s.name === 'GET /boom'), 'boom span');
    expect(boom.status).toBe(2);
    expect(boom.attributes['http.response.status_code']).toBe(500);
    expect(boom.events.find((e) => e.name === 'exception')?.attributes['exception.message']).toBe('kaput');
    const gone = await spansOf(b, (all) => all.find((s) => s.name === 'GET /gone'), 'gone span');
    expect(gone.status).not.toBe(2);
    expect(gone.attributes['mega.error.code']).toBe('user.not_found');
    const unmatched = await spansOf(b, (all) => all.find((s) => s.attributes['url.path'] === '/nowhere'), 'unmatched span');
    expect(unmatched.name).toBe('GET __unmatched__');
    expect(unmatched.attributes['http.route']).toBeUndefined();
    expect(unmatched.attributes['http.response.status_code']).toBe(404);
    // A scanner's path is an attribute, never a span name: every unmatched POST shares one name.
    expect((await b.inject('/wp-login.php', { json: { a: 1 } })).status).toBe(404);
    const post = await spansOf(b, (all) => all.find((s) => s.attributes['url.path'] === '/wp-login.php'), 'unmatched POST span');
    expect(post.name).toBe('POST __unmatched__');
  });

  it('traces outgoing fetch as a client span and sends traceparent (no query string in the span)', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const upstream = createServer((req, res) => {
      seen.push(req.headers);
      res.end('ok');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const address = upstream.address();
    (globalThis as Record<string, unknown>).__upstream = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    try {
      const b = await boot();
      const res = await b.inject('/upstream');
      expect(res.data).toEqual({ status: 200 });
      const server = await spansOf(b, (all) => all.find((s) => s.name === 'GET /upstream'), 'server span');
      const client = await spansOf(b, (all) => all.find((s) => s.kind === 3 && s.traceId === server.traceId), 'client span');
      expect(client.parentSpanId).toBe(server.spanId);
      expect(client.attributes['url.full']).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/data$/);
      expect(client.attributes['http.response.status_code']).toBe(200);
      const sent = TRACEPARENT.exec(String(seen[0]?.traceparent));
      expect(sent?.[1]).toBe(server.traceId);
      expect(sent?.[2]).toBe(client.spanId);
      // Outside a traced context (this test's own fetch) nothing is added.
      await fetch(`${(globalThis as Record<string, unknown>).__upstream}/plain`);
      expect(seen[1]?.traceparent).toBeUndefined();
    } finally {
      upstream.close();
    }
  });

  it('spans of the OpenTelemetry API (ctx.tracer.otel) are children of the request span and go to the same receiver', async () => {
    const b = await boot();
    expect((await b.inject('/sdk')).data).toBe(7);
    const server = await spansOf(b, (all) => all.find((s) => s.name === 'GET /sdk'), 'server span');
    const own = await spansOf(b, (all) => all.find((s) => s.name === 'sdk.step'), 'sdk span');
    expect(own).toMatchObject({ traceId: server.traceId, parentSpanId: server.spanId, kind: 1 });
    expect(own.attributes.step).toBe(1);
    expect(b.findLogs('inside the sdk span')[0]).toMatchObject({ trace_id: server.traceId, span_id: own.spanId });
  });

  it('a sampled-out request records nothing, and its outgoing fetch carries its trace id with the sampled flag off', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const upstream = createServer((req, res) => {
      seen.push(req.headers);
      res.end('ok');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const address = upstream.address();
    (globalThis as Record<string, unknown>).__upstream = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    try {
      const b = await boot({ samplingRatio: 0 });
      const before = receiver.spans.length;
      expect((await b.inject('/upstream')).data).toEqual({ status: 200 });
      expect((await b.inject('/users/unsampled')).status).toBe(200);
      await b.kernel.use<Tracing>('tracing').flush();
      expect(receiver.spans.length).toBe(before);
      const sent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-00$/.exec(String(seen[0]?.traceparent));
      expect(sent, String(seen[0]?.traceparent)).not.toBeNull();
      // Each request its own trace id, in its log lines too.
      const line = b.findLogs('loading user')[0];
      expect(line?.trace_id).toMatch(/^[0-9a-f]{32}$/);
      expect(line?.trace_id).not.toBe(sent?.[1]);
      // A caller's sampled-out decision is followed the same way: same trace id, flag still off.
      const traceId = '6bf92f3577b34da6a3ce929d0e0e4736';
      await b.inject('/upstream', { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-00` } });
      expect(seen[1]?.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-00$`));
      expect(seen[1]?.traceparent).not.toContain('00f067aa0ba902b7');
    } finally {
      upstream.close();
    }
  });

  it('ctx.tracer.span makes a child span of the request with attributes', async () => {
    const b = await boot();
    expect((await b.inject('/custom')).data).toBe(42);
    const server = await spansOf(b, (all) => all.find((s) => s.name === 'GET /custom'), 'server span');
    const own = await spansOf(b, (all) => all.find((s) => s.name === 'price.compute'), 'own span');
    expect(own).toMatchObject({ traceId: server.traceId, parentSpanId: server.spanId, kind: 1 });
    expect(own.attributes).toMatchObject({ currency: 'EUR', items: 3 });
  });
});

describe('@mega/tracing WebSocket spans', () => {
  it('a connect span (child of the upgrade traceparent) and one span per handled message, linked to it', async () => {
    const b = await boot();
    const traceId = 'aaf92f3577b34da6a3ce929d0e0e4736';
    const ws = await b.ws('/ws/chat', { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
    const answer = await ws.request('chat.send', { text: 'hi' });
    expect(answer.type).toBe('chat.sent');
    ws.send('chat.fail');
    await ws.next('error');
    const connect = await spansOf(b, (all) => all.find((s) => s.name === 'WS /ws/chat'), 'connect span');
    expect(connect.traceId).toBe(traceId);
    expect(connect.attributes['http.route']).toBe('/ws/chat');
    const message = await spansOf(b, (all) => all.find((s) => s.name === 'WS chat.send'), 'message span');
    expect(message.attributes).toMatchObject({ 'mega.ws.message_type': 'chat.send', 'mega.ws.path': '/ws/chat' });
    expect(message.links).toEqual([{ traceId, spanId: connect.spanId }]);
    expect(message.traceId).not.toBe(traceId);
    expect(b.findLogs('ws message')[0]).toMatchObject({ trace_id: message.traceId, span_id: message.spanId });
    expect(b.findLogs('ws connected')[0]).toMatchObject({ trace_id: traceId, span_id: connect.spanId });
    const failed = await spansOf(b, (all) => all.find((s) => s.name === 'WS chat.fail'), 'failed message span');
    expect(failed.status).toBe(2);
    await ws.close();
  });

  it('a refused upgrade ends its connect span with the status', async () => {
    const b = await boot();
    await expect(b.ws('/ws/chat', { origin: 'https://evil.example' })).rejects.toMatchObject({ status: 403 });
    const connects = receiver.spans.length;
    // Refused before Fastify routing (origin check): no span, and nothing hangs open.
    await b.kernel.use<Tracing>('tracing').flush();
    expect(receiver.spans.length).toBe(connects);
  });
});

describe('@mega/tracing export failures and config', () => {
  it('an unreachable endpoint: requests are served, spans dropped, one rate-limited warning', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const address = closed.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    await new Promise<void>((r) => closed.close(() => r()));
    const b = await boot({ endpoint: `http://user:pw@127.0.0.1:${port}/v1/traces`, batch: { delayMs: 20, exportTimeoutMs: 200 } });
    const tracing = b.kernel.use<Tracing>('tracing');
    for (let i = 0; i < 3; i++) {
      expect((await b.inject(`/users/${i}`)).status).toBe(200);
      await tracing.flush();
    }
    await waitUntil(() => tracing.stats().failedExports >= 2, { what: 'two failed exports' });
    expect((await b.inject('/users/after')).status).toBe(200);
    const warnings = b.findLogs((l) => /span\(s\) dropped: export to/.test(String(l.msg)));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, dropped: expect.any(Number) });
    expect(JSON.stringify(warnings)).not.toContain('pw@');
    expect(tracing.stats().dropped).toBeGreaterThanOrEqual(2);
    expect(tracing.stats().exported).toBe(0);
  });

  it('an export started by the batch timer runs outside the request that queued its spans: its warning carries no trace ids', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const address = closed.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    await new Promise<void>((r) => closed.close(() => r()));
    // No explicit flush: the batch processor's own timer exports (it was armed inside the request).
    const b = await boot({ endpoint: `http://127.0.0.1:${port}/v1/traces`, batch: { delayMs: 20, exportTimeoutMs: 200 } });
    expect((await b.inject('/users/timer')).status).toBe(200);
    const warning = await waitUntil(() => b.findLogs((l) => /span\(s\) dropped: export to/.test(String(l.msg)))[0], {
      what: 'the export warning',
    });
    expect(warning.trace_id).toBeUndefined();
    expect(warning.span_id).toBeUndefined();
  });

  it('shutdown flushes queued spans; a receiver that never answers bounds it at shutdownTimeoutMs', async () => {
    const b = await boot({ batch: { delayMs: 60_000 } });
    await b.inject('/users/last');
    await waitUntil(() => b.findLogs('loading user').length > 0, { what: 'the handler ran' });
    await b.stop();
    expect(receiver.spans.find((s) => s.attributes['url.path'] === '/users/last')?.name).toBe('GET /users/:id');

    // Accepts the export and never answers.
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const address = silent.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    try {
      const hung = await boot({
        endpoint: `http://127.0.0.1:${port}/v1/traces`,
        batch: { delayMs: 60_000, exportTimeoutMs: 30_000 },
        shutdownTimeoutMs: 300,
      });
      await hung.inject('/users/hung');
      const started = performance.now();
      await hung.stop();
      expect(performance.now() - started).toBeLessThan(3000);
      expect(hung.findLogs(/spans still queued at shutdown were dropped/)).toHaveLength(1);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  it('MEGA_OTEL_* override the config file; sampling 0 exports nothing but still propagates ids', async () => {
    const b = await boot({ serviceName: 'from-file' }, { MEGA_OTEL_SERVICE_NAME: 'from-env', MEGA_OTEL_SAMPLING_RATIO: '0' });
    const before = receiver.spans.length;
    expect((await b.inject('/users/s0')).status).toBe(200);
    await b.kernel.use<Tracing>('tracing').flush();
    expect(receiver.spans.length).toBe(before);
    expect(b.findLogs('loading user')[0]?.trace_id).toMatch(/^[0-9a-f]{32}$/);
    const b2 = await boot({ serviceName: 'from-file' }, { MEGA_OTEL_SERVICE_NAME: 'from-env', MEGA_OTEL_ENDPOINT: receiver.url });
    await b2.inject('/users/env');
    const span = await spansOf(b2, (all) => all.find((s) => s.attributes['url.path'] === '/users/env'), 'span');
    expect(span.resource['service.name']).toBe('from-env');
  });

  it('two kernels in one process keep their own provider and service name', async () => {
    const a = await boot({ serviceName: 'kernel-a' });
    const c = await boot({ serviceName: 'kernel-c' });
    await a.inject('/users/a');
    await c.inject('/users/c');
    const sa = await spansOf(a, (all) => all.find((s) => s.attributes['url.path'] === '/users/a'), 'span a');
    const sc = await spansOf(c, (all) => all.find((s) => s.attributes['url.path'] === '/users/c'), 'span c');
    expect(sa.resource['service.name']).toBe('kernel-a');
    expect(sc.resource['service.name']).toBe('kernel-c');
    expect(a.kernel.use<Tracing>('tracing')).not.toBe(c.kernel.use<Tracing>('tracing'));
  });

  it('enabled: false provides no tracing service (instrumented plugins stay on their untraced path)', async () => {
    const b = await boot({ enabled: false });
    expect(b.kernel.has('tracing')).toBe(false);
    expect((await b.inject('/users/off')).status).toBe(200);
    expect(b.findLogs('loading user')[0]?.trace_id).toBeUndefined();
  });

  it('a malformed MEGA_OTEL_SAMPLING_RATIO stops boot with a coded error naming it', async () => {
    await expect(boot({}, { MEGA_OTEL_SAMPLING_RATIO: '2' })).rejects.toMatchObject({
      code: 'tracing.invalid_config',
      message: expect.stringContaining('MEGA_OTEL_SAMPLING_RATIO'),
    });
  });
});

describe('@mega/tracing security rejections', () => {
  it('an ASP rejection over HTTP sets mega.security.reason (and mega.error.code) on the request span', async () => {
    const config = {
      plugins: ['@mega/http', '@mega/session', '@mega/ws', '@mega/asp', '@mega/tracing'],
      tracing: { endpoint: receiver.url, batch: { delayMs: 20 } },
    };
    const app = {
      session: { secret: 'session-secret-0123456789' },
      asp: { masterSecret: 'asp-master-secret-0123456789-abcdefgh', websocket: { namespaces: [] }, http: { enabledPaths: ['/sealed/*'] } },
    };
    const dir = writeProject(
      {
        'mega.config.ts': `export default ${JSON.stringify(config)};\n`,
        'apps/vault/app.config.ts': `export default ${JSON.stringify(app)};\n`,
        'apps/vault/routes/index.ts': "export default (r: any) => { r.http.post('/sealed/note', async () => 'opened'); };\n",
      },
      { prefix: 'mega-tracing-asp-' },
    );
    const b = await bootProject(dir);
    const res = await b.inject('/sealed/note', { json: { a: 1 } });
    expect(res.status).toBe(400);
    expect(res.code).toBe('asp.signal');
    const span = await spansOf(b, (all) => all.find((s) => s.name === 'POST /sealed/note'), 'sealed route span');
    expect(span.attributes).toMatchObject({
      'mega.security.reason': 'asp.signal',
      'mega.error.code': 'asp.signal',
      'http.response.status_code': 400,
    });
    expect(span.status).not.toBe(2);
  });
});
