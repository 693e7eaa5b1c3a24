/** A password or token in a NATS URL never appears in an error message or a log line when NATS cannot be reached. */

import { bootPlugins, buildPlugins, exposedText, stopAll } from '@mega/testing';
import { afterEach, expect, it } from 'vitest';
import bus from '../src/index.js';

afterEach(stopAll);

it('connection failures name the servers with credentials masked, at boot and in the log', async () => {
  const url = 'nats://bus:hunter2@127.0.0.1:1,nats://s3cr3tToken@127.0.0.1:2';
  const masked = 'nats://bus:***@127.0.0.1:1,nats://***@127.0.0.1:2';
  const failing = buildPlugins({ plugins: [bus], services: { buses: { ev: { driver: 'nats', url, connectTimeoutMs: 300 } } } });
  const err = (await failing.kernel.start().catch((e: unknown) => e)) as Error & { code: string; details: unknown };
  expect(err.code).toBe('bus.unavailable');
  expect(err.message).toContain(masked);
  const secrets = /hunter2|s3cr3t/;
  expect(exposedText(err)).not.toMatch(secrets);

  const booted = await bootPlugins({
    plugins: [bus],
    services: { buses: { ev: { driver: 'nats', url, optional: true, connectTimeoutMs: 300 } } },
  });
  const { kernel } = booted;
  const failed = (await kernel.apps[0]?.bus.emit('x').catch((e: unknown) => e)) as Error;
  expect(failed.message).toContain(masked);
  expect(failed.message).not.toMatch(secrets);
  expect(kernel.use('nats').url('ev')).toBe(masked);
  await kernel.stop();
  const logs = [...failing.logs, ...booted.logs];
  expect(logs.some((l) => String(l.msg).includes(masked))).toBe(true);
  expect(JSON.stringify(logs)).not.toMatch(secrets);
});
