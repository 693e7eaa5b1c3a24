/** A password in a database URL never appears in an error message or a log line when PostgreSQL cannot be reached. */

import { bootPlugins, buildPlugins, exposedText, stopAll } from '@mega/testing';
import { afterEach, expect, it } from 'vitest';
import postgres, { type PostgresDb } from '../src/index.js';

afterEach(stopAll);

it('connection failures name the URL with its password masked, at boot, on queries and in the log', async () => {
  const url = 'postgres://mega:hunter2@127.0.0.1:1/mega?sslmode=disable';
  const masked = 'postgres://mega:***@127.0.0.1:1/mega?sslmode=disable';
  const failing = buildPlugins({
    plugins: [postgres],
    services: { dbs: { reports: { driver: 'postgres', url, connectTimeoutMs: 500 } } },
  });
  const err = (await failing.kernel.start().catch((e: unknown) => e)) as Error & { code: string; details: unknown };
  expect(err.code).toBe('db.unavailable');
  expect(err.message).toContain(masked);
  expect(exposedText(err)).not.toContain('hunter2');

  const booted = await bootPlugins({
    plugins: [postgres],
    services: { dbs: { reports: { driver: 'postgres', url, optional: true, connectTimeoutMs: 500 } } },
  });
  const { kernel } = booted;
  const app = kernel.apps[0];
  if (!app) throw new Error('no app');
  const failed = (await app
    .db<PostgresDb>()
    .query('select 1')
    .catch((e: unknown) => e)) as Error;
  expect(failed.message).toContain(masked);
  expect(failed.message).not.toContain('hunter2');
  await kernel.stop();
  const logs = [...failing.logs, ...booted.logs];
  expect(logs.some((l) => String(l.msg).includes(masked))).toBe(true);
  expect(JSON.stringify(logs)).not.toContain('hunter2');
});
