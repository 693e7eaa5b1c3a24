/**
 * A password in the Redis URL of the roster's cache alias never reaches an error or a log line of
 * ws-roster-redis: the URL goes through redactUrl, with Redis up or down.
 */
import type { Kernel } from '@mega/kernel';
import { loadKernel } from '@mega/kernel';
import { captureLogs } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { Client, chatProject } from '../../../scripts/test/chat-cluster.js';
import { freePort } from '../../../scripts/test/procs.js';
import { serviceEnv } from '../../../scripts/test/service-env.js';

const { REDIS_URL } = serviceEnv();
const PASSWORD = 'pw-5ecret-4711';
const PLUGINS = ['@mega/http', '@mega/ws', '@mega/ws-presence', '@mega/cache-redis', '@mega/ws-roster-redis'];
const prefix = `test:roster-redact:${Date.now()}:`;

const kernels: Kernel[] = [];
const clients: Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  for (const k of kernels.splice(0)) await k.stop();
});

async function start(cache: string, wsRoster = `{ prefix: ${JSON.stringify(prefix)} }`) {
  const logs = captureLogs('debug');
  const dir = chatProject({
    plugins: PLUGINS,
    server: "{ host: '127.0.0.1', port: 0 }",
    global: `services: { caches: { default: ${cache} } }, wsRoster: ${wsRoster}`,
  });
  const kernel = await loadKernel({ dir, logger: logs.logger });
  kernels.push(kernel);
  const error = await kernel.start().then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  return { kernel, logs, error };
}

const leaks = (value: unknown) => JSON.stringify(value).includes(PASSWORD);

describe('@mega/ws-roster-redis keeps Redis credentials out of errors and logs', () => {
  it('logs the redacted URL of its cache alias', async () => {
    // No requirepass on the test Redis: ioredis sends AUTH, is told none is set, and goes on.
    const url = REDIS_URL.replace('redis://', `redis://:${PASSWORD}@`);
    const { logs, error } = await start(`{ driver: 'redis', url: ${JSON.stringify(url)} }`);
    expect(error).toBeUndefined();
    const line = await logs.waitFor((l) => l.plugin === '@mega/ws-roster-redis' && /roster in Redis/.test(l.msg ?? ''));
    expect(line.url).toBe(REDIS_URL.replace('redis://', 'redis://:***@'));
    await kernels.pop()?.stop();
    expect(leaks(logs.lines)).toBe(false);
  });

  it('with Redis down: roster writes fail with a warning that names no credentials', async () => {
    const port = await freePort();
    const { kernel, logs, error } = await start(`{ driver: 'redis', url: 'redis://mega:${PASSWORD}@127.0.0.1:${port}', optional: true }`);
    expect(error).toBeUndefined();
    const line = await logs.waitFor((l) => l.plugin === '@mega/ws-roster-redis' && /roster in Redis/.test(l.msg ?? ''));
    expect(line.url).toBe(`redis://mega:***@127.0.0.1:${port}`);
    clients.push(await Client.open(kernel.use<{ port: number }>('http').port, 'user=ann&session=x1'));
    await logs.waitFor((l) => l.plugin === '@mega/ws-roster-redis' && /add failed/.test(l.msg ?? ''), 15_000);
    expect(leaks(logs.lines)).toBe(false);
  });

  it('keeps them out of boot errors (unknown cache alias, unreachable required cache)', async () => {
    const port = await freePort();
    const url = JSON.stringify(`redis://mega:${PASSWORD}@127.0.0.1:${port}`);
    for (const wsRoster of ["{ cache: 'other' }", '{}']) {
      const { logs, error } = await start(`{ driver: 'redis', url: ${url} }`, wsRoster);
      expect(error).toBeInstanceOf(Error);
      expect(leaks({ message: error?.message, details: (error as { details?: unknown }).details })).toBe(false);
      expect(leaks(logs.lines)).toBe(false);
    }
  });
});
