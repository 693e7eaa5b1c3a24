/** A password in a cache URL never appears in an error message or a log line when Redis cannot be reached. */

import { bootPlugins, buildPlugins, exposedText, stopAll } from '@mega/testing';
import { afterEach, expect, it } from 'vitest';
import cache from '../src/index.js';

afterEach(stopAll);

it('connection failures name the URL with its password masked, at boot and in the log', async () => {
  const url = 'redis://default:hunter2@127.0.0.1:1/0';
  const masked = 'redis://default:***@127.0.0.1:1/0';
  const failing = buildPlugins({ plugins: [cache], services: { caches: { c: { driver: 'redis', url, connectTimeoutMs: 300 } } } });
  const err = (await failing.kernel.start().catch((e: unknown) => e)) as Error & { code: string; details: unknown };
  expect(err.code).toBe('cache.unavailable');
  expect(err.message).toContain(masked);
  expect(exposedText(err)).not.toContain('hunter2');

  const booted = await bootPlugins({
    plugins: [cache],
    services: { caches: { c: { driver: 'redis', url, optional: true, connectTimeoutMs: 300, commandTimeoutMs: 200 } } },
  });
  const { kernel } = booted;
  const c = kernel.apps[0]?.cache();
  const failed = (await c?.get('k').catch((e: unknown) => e)) as Error;
  expect(failed.message).not.toContain('hunter2');
  expect(kernel.use('redis').url('c')).toBe(masked);
  expect(kernel.use('redis').dedicated('c', 'subscriber').options.connectionName).toBe('mega:c:subscriber');
  await kernel.stop();
  const logs = [...failing.logs, ...booted.logs];
  expect(logs.some((l) => String(l.msg).includes(masked))).toBe(true);
  expect(JSON.stringify(logs)).not.toContain('hunter2');
});
