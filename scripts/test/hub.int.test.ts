/**
 * The real mega-hub binary over real sockets: configuration errors, registration, the frame limit,
 * link compression, drain on SIGTERM and /metrics. Routing, presence, heartbeat loss and abuse are
 * played from the protocol's exchange scripts in hub-protocol.int.test.ts against the same binary;
 * the `mega ws-hub` wrapper is tested with its plugin (plugins/hub-bridge/test/ws-hub.int.test.ts).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { Client, ensureHubBinary, type Hub, ROOT, startHub } from './hub-harness.js';

const hubs: Hub[] = [];
const clients: Client[] = [];
async function hub(env: Record<string, string> = {}): Promise<Hub> {
  const h = await startHub(env);
  hubs.push(h);
  return h;
}
function client(h: Hub): Client {
  const c = new Client(h.url);
  clients.push(c);
  return c;
}
afterEach(async () => {
  for (const c of clients.splice(0)) if (!c.isClosed) c.ws.terminate();
  for (const h of hubs.splice(0)) await h.stop();
});

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => {
        body += d.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    })
      .on('error', reject)
      .end();
  });
}

/** mega-codec's raw deflate message format (sync flush, tail stripped). */
function deflate(text: string): Buffer {
  const z = deflateRawSync(Buffer.from(text), { finishFlush: 2 /* Z_SYNC_FLUSH */ });
  return z.subarray(0, z.length - 4);
}

function runBin(env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(ensureHubBinary(), [], { env: { PATH: process.env.PATH ?? '', ...env } });
    let out = '';
    p.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.on('exit', (code) => resolve({ code, out }));
  });
}

describe('mega-hub configuration', () => {
  it('refuses to start without MEGA_WSHUB_TOKENS (exit 2, says what to set)', async () => {
    const r = await runBin({ MEGA_WSHUB_PORT: '0' });
    expect(r.code).toBe(2);
    expect(r.out).toContain('MEGA_WSHUB_TOKENS is required');
  });

  it('B11: refuses hub tokens shorter than 32 bytes in production (exit 2, token never printed), warns in development', async () => {
    const strong = 'k'.repeat(32);
    for (const env of [{ MEGA_ENV: 'production' }, { NODE_ENV: 'production' }] as Array<Record<string, string>>) {
      const r = await runBin({ ...env, MEGA_WSHUB_PORT: '0', MEGA_WSHUB_TOKENS: `${strong},weak-token` });
      expect(r.code).toBe(2);
      expect(r.out).toContain('MEGA_WSHUB_TOKENS: entry 2 (10 bytes) shorter than 32 bytes');
      expect(r.out).not.toContain('weak-token');
      const admin = await runBin({ ...env, MEGA_WSHUB_PORT: '0', MEGA_WSHUB_TOKENS: strong, MEGA_WSHUB_ADMIN_TOKENS: 'a' });
      expect(admin.code).toBe(2);
      expect(admin.out).toContain('MEGA_WSHUB_ADMIN_TOKENS: entry 1 (1 bytes)');
    }
    const h = await hub({ MEGA_WSHUB_TOKENS: 'weak-token', MEGA_WSHUB_ADMIN_TOKENS: '' });
    const deadline = Date.now() + 3000;
    while (!h.output().includes('warning') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(h.output()).toContain('warning: MEGA_WSHUB_TOKENS: entry 1 (10 bytes) shorter than 32 bytes');
    expect(h.output()).not.toContain('weak-token');
    await client(h).register('dev', {}, 'weak-token');
  });

  it('refuses bad numbers with the variable name (exit 2)', async () => {
    const r = await runBin({ MEGA_WSHUB_TOKENS: 't', MEGA_WSHUB_HEARTBEAT_MS: 'soon' });
    expect(r.code).toBe(2);
    expect(r.out).toContain('MEGA_WSHUB_HEARTBEAT_MS must be an integer');
  });
});

describe('mega-hub links', () => {
  it('registers with the configured heartbeat, frame limit and negotiated version; a bad token gets 1008', async () => {
    const h = await hub({ MEGA_WSHUB_HEARTBEAT_MS: '1234', MEGA_WSHUB_MAX_FRAME_BYTES: '65536', MEGA_WSHUB_ID: 'hub-x' });
    const ok = await client(h).register('app-1', { protocolVersion: 9, instanceId: 'i-1' }, 'secret-b');
    expect(ok.payload).toMatchObject({
      hubId: 'hub-x',
      bridgeId: 'app-1',
      protocolVersion: 1,
      heartbeatMs: 1234,
      maxFrameBytes: 65536,
      capabilities: [],
    });
    const bad = client(h);
    await bad.opened;
    bad.send({ type: 'register', payload: { token: 'secret-a ', bridgeId: 'x' } });
    expect((await bad.closed).code).toBe(1008);
  });

  it('closes a link that sends a message above the frame limit with 1009 and bulk-leaves its sessions', async () => {
    const h = await hub({ MEGA_WSHUB_MAX_FRAME_BYTES: '8192' });
    const [a, b] = [client(h), client(h)];
    await a.register('a');
    await b.register('b');
    a.send({ type: 'join', payload: { sessionId: 's1', userId: 'u', channels: ['room'] } });
    expect((await b.next()).type).toBe('join');
    // Exactly at the limit is fine (an error for the unknown type, not a close).
    const pad = (n: number) => JSON.stringify({ type: 'teleport', payload: { x: 'y'.repeat(n) } });
    const base = pad(0).length;
    a.send(pad(8192 - base));
    expect((await a.next()).payload.code).toBe('hub.unknown_type');
    a.send(pad(8193 - base));
    expect((await a.closed).code).toBe(1009);
    expect(await b.next()).toEqual({ type: 'bulk_leave', payload: { bridgeId: 'a', reason: 'evicted', sessionIds: ['s1'] } });
  });

  it('speaks deflate with bridges that ask for it: large frames out as binary, deflated frames in', async () => {
    const h = await hub({ MEGA_WSHUB_MAX_FRAME_BYTES: '65536' });
    const [a, z] = [client(h), client(h)];
    await a.register('plain');
    const ok = await z.register('zipped', { capabilities: ['deflate'] });
    expect(ok.payload.capabilities).toEqual(['deflate']);
    let binary = 0;
    z.ws.on('message', (_d, isBinary) => {
      if (isBinary) binary++;
    });
    z.send(deflate(JSON.stringify({ type: 'join', payload: { sessionId: 'zs', userId: 'zu', channels: ['room'] } })));
    expect((await a.next()).payload).toMatchObject({ sessionId: 'zs', bridgeId: 'zipped' });
    const big = { channel: 'room', message: { text: 'hello '.repeat(2000) } };
    a.send({ type: 'broadcast', payload: big });
    expect(await z.next()).toEqual({ type: 'broadcast', payload: big });
    expect(binary).toBe(1);
    // Small frames stay text; a plain link sending binary gets an error.
    a.send({ type: 'broadcast', payload: { channel: 'room', message: 1 } });
    expect((await z.next()).payload.message).toBe(1);
    expect(binary).toBe(1);
    a.ws.send(deflate('{}'));
    expect((await a.next()).payload.code).toBe('hub.compression');
    // A deflate bomb is measured after inflating: above the limit closes with 1009.
    z.send(deflate(JSON.stringify({ type: 'heartbeat', payload: { pad: ' '.repeat(70_000) } })));
    expect((await z.closed).code).toBe(1009);
  });

  it('drains on SIGTERM: bridges get 4503, new links are refused, exit code 0', async () => {
    const h = await hub({ MEGA_WSHUB_DRAIN_MS: '3000' });
    const [a, b] = [client(h), client(h)];
    await a.register('a');
    await b.register('b');
    // b stops reading, so it cannot answer the close and keeps the hub draining for a while.
    (b.ws as unknown as { _socket: Socket })._socket.pause();
    h.proc.kill('SIGTERM');
    const ca = await a.closed;
    expect(ca).toEqual({ code: 4503, reason: 'hub.draining' });
    expect(h.proc.exitCode).toBe(null);
    const late = new Client(h.url);
    clients.push(late);
    await expect(late.opened).rejects.toThrow(/ECONNREFUSED/);
    (b.ws as unknown as { _socket: Socket })._socket.resume();
    expect((await b.closed).code).toBe(4503);
    expect(await h.exited).toEqual({ code: 0, signal: null });
    expect(h.output()).toContain('draining');
  });

  it('A8: a SIGSTOPped bridge process leaves every roster at once when its queue overflows, and hub memory stays bounded', async () => {
    const h = await hub({ MEGA_WSHUB_QUEUE_BYTES: String(4 << 20), MEGA_WSHUB_WRITE_TIMEOUT_MS: '60000' });
    const watch = client(h);
    const a = client(h);
    await watch.register('watch');
    await a.register('a');
    // The stuck bridge is a real process: register, join channel c, then it is stopped.
    const child = spawn(
      join(ROOT, 'node_modules', '.bin', 'node'),
      [
        '--input-type=module',
        '-e',
        `import WebSocket from 'ws';
         const ws = new WebSocket(${JSON.stringify(h.url)});
         ws.on('open', () => ws.send(JSON.stringify({ type: 'register', payload: { token: 'secret-a', bridgeId: 'stopped' } })));
         ws.on('message', (d) => {
           const f = JSON.parse(d.toString());
           if (f.type === 'register_ok') {
             ws.send(JSON.stringify({ type: 'join', payload: { sessionId: 's-stopped', userId: 'u', channels: ['c'] } }));
             ws.send(JSON.stringify({ type: 'sync', payload: { requestId: 'ready' } }));
           }
           if (f.type === 'sync') console.log('ready');
         });`,
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout?.on('data', (b: Buffer) => b.toString().includes('ready') && resolve());
        child.on('exit', (code) => reject(new Error(`stuck bridge exited early (${code})`)));
      });
      expect((await watch.next()).payload).toMatchObject({ sessionId: 's-stopped', bridgeId: 'stopped' });
      expect((await a.next()).payload).toMatchObject({ sessionId: 's-stopped', bridgeId: 'stopped' });
      child.kill('SIGSTOP');
      const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${h.proc.pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
      const before = rss();
      const pad = 'x'.repeat(60 * 1024);
      const full = async () => /reason="queue_full"} ([1-9]\d*)/.test((await get(h.port, '/metrics')).body);
      let sent = 0;
      while (!(await full())) {
        for (let i = 0; i < 32; i++) a.send({ type: 'broadcast', payload: { channel: 'c', message: { i: sent++, pad } } });
        await a.barrier(`b-${sent}`); // the hub has handled every broadcast so far
        expect(sent, 'no overflow').toBeLessThan(3000);
      }
      const overflowAt = Date.now();
      const left = await watch.next(2000);
      expect(Date.now() - overflowAt).toBeLessThan(2000);
      expect(left).toEqual({ type: 'bulk_leave', payload: { bridgeId: 'stopped', reason: 'evicted', sessionIds: ['s-stopped'] } });
      expect(await a.next()).toEqual(left); // every roster, the sender's too
      a.send({ type: 'sync', payload: { requestId: 'after' } });
      expect((await a.next()).payload).toEqual({ requestId: 'after', sessions: [], done: true });
      const metrics = (await get(h.port, '/metrics')).body;
      expect(metrics).toMatch(/mega_hub_bridges 2\n/);
      expect(metrics).toMatch(/mega_hub_queued_bytes 0\n/);
      // Bounded: the 4 MiB queue plus socket buffers, not one copy per routed frame (was +186 MB).
      expect(rss() - before).toBeLessThan(48 << 20);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('serves Prometheus metrics and a health check on the same port', async () => {
    const h = await hub();
    const [a, b] = [client(h), client(h)];
    await a.register('a');
    await b.register('b');
    b.send({ type: 'join', payload: { sessionId: 's1', userId: 'u', channels: ['room'] } });
    expect((await a.next()).type).toBe('join');
    for (let i = 0; i < 3; i++) a.send({ type: 'broadcast', payload: { channel: 'room', message: i } });
    for (let i = 0; i < 3; i++) expect((await b.next()).payload.message).toBe(i);
    a.send('garbage');
    await a.next();
    const m = await get(h.port, '/metrics');
    expect(m.status).toBe(200);
    const value = (name: string) => Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm').exec(m.body)?.[1]);
    expect(value('mega_hub_bridges')).toBe(2);
    expect(value('mega_hub_sessions')).toBe(1);
    expect(value('mega_hub_frames_in_total{type="broadcast"}')).toBe(3);
    expect(value('mega_hub_frames_in_total{type="join"}')).toBe(1);
    // 2 register_ok + 1 join event + 3 broadcasts + 1 error
    expect(value('mega_hub_frames_out_total')).toBeGreaterThanOrEqual(6);
    expect(value('mega_hub_dropped_frames_total{reason="invalid"}')).toBe(1);
    expect((await get(h.port, '/healthz')).body).toBe('ok\n');
    expect((await get(h.port, '/nope')).status).toBe(404);
  });
});
