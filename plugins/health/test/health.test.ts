import { definePlugin } from '@mega/kernel';
import { afterEach, describe, expect, it } from 'vitest';
import { boot, stopAll } from '../../../scripts/test/http-kernel.js';
import type { HealthRegistry } from '../src/index.js';

afterEach(stopAll);

const APP = { 'apps/web/app.config.ts': 'export default {};' };
const config = (health = '{}') => `{ plugins: ['@mega/health', '@mega/http'], server: { port: 0, host: '127.0.0.1' }, health: ${health} }`;

describe('@mega/health', () => {
  it('takes over /health from @mega/http whatever the plugin order, and serves /ready', async () => {
    const { call, kernel } = await boot(APP, { config: config() });
    expect(kernel.plugins.map((p) => p.name)).toEqual(['@mega/http', '@mega/health']);
    expect((await call('/health')).json).toEqual({ data: { status: 'ok' } });
    expect((await call('/ready')).json).toEqual({ data: { status: 'ready' } });
  });

  it('runs checks in parallel with a timeout each; a failing or hung check makes readiness 503 without blocking the others', async () => {
    const checks = definePlugin({
      name: 'checks',
      version: '1.0.0',
      dependsOn: ['@mega/health'],
      setup(kernel) {
        const health = kernel.use<HealthRegistry>('health');
        health.register('db', async () => ({ ok: true, latencyMs: 1 }));
        health.register('cache', () => true);
        (globalThis as Record<string, unknown>).__health = health;
      },
    });
    const { call } = await boot(APP, { config: config('{ exposeCheckDetails: true, checkTimeoutMs: 300 }'), extra: checks });
    const health = (globalThis as Record<string, unknown>).__health as HealthRegistry;
    const ok = await call('/ready');
    expect(ok.json).toMatchObject({ data: { status: 'ready', checks: { db: { ok: true, latencyMs: 1 }, cache: { ok: true } } } });

    health.register('hung', () => new Promise(() => {}));
    health.register('broken', async () => {
      throw new Error('connection refused');
    });
    const started = performance.now();
    const bad = await call('/ready');
    const took = performance.now() - started;
    expect(took).toBeLessThan(5000); // bounded by the 300 ms timeout, not by the hung check
    expect(took).toBeGreaterThanOrEqual(290);
    expect([bad.status, bad.code]).toEqual([503, 'health.not_ready']);
    const details = (bad.error as { details: { checks: Record<string, { ok: boolean; error?: string }> } }).details.checks;
    expect(details.db?.ok).toBe(true);
    expect(details.hung).toMatchObject({ ok: false, error: 'check timed out after 300 ms' });
    expect(details.broken).toMatchObject({ ok: false, error: 'connection refused' });
    expect((await call('/health')).status).toBe(200);
  });

  it('picks up the checks adapters publish as health:<plugin> services', async () => {
    let down = false;
    const adapter = definePlugin({
      name: '@acme/db',
      version: '1.0.0',
      setup(kernel) {
        kernel.provide('health:@acme/db', {
          'db:primary': async () => {
            if (down) throw new Error('connection refused');
          },
        });
      },
    });
    const { call, kernel } = await boot(APP, { config: config('{ exposeCheckDetails: true }'), extra: adapter });
    expect(kernel.use<HealthRegistry>('health').names).toEqual(['db:primary']);
    expect((await call('/ready')).data).toMatchObject({ status: 'ready', checks: { 'db:primary': { ok: true } } });
    down = true;
    const res = await call('/ready');
    expect([res.status, res.error.details.checks['db:primary']]).toEqual([
      503,
      expect.objectContaining({ ok: false, error: 'connection refused' }),
    ]);
  });

  it('hides check details unless exposeCheckDetails', async () => {
    const failing = definePlugin({
      name: 'failing',
      version: '1.0.0',
      dependsOn: ['@mega/health'],
      setup(kernel) {
        kernel.use<HealthRegistry>('health').register('db', () => ({ ok: false, error: 'password authentication failed for user admin' }));
      },
    });
    const { call } = await boot(APP, { config: config(), extra: failing });
    const res = await call('/ready');
    expect([res.status, res.code]).toEqual([503, 'health.not_ready']);
    expect(res.text).not.toContain('password');
    expect((res.error as { details: unknown }).details).toEqual({ state: 'running', failed: 1 });
  });

  it('turns readiness 503 as soon as shutdown begins and keeps serving during the drain delay', async () => {
    const { call, kernel } = await boot(APP, { config: config('{ drainDelayMs: 1500 }') });
    expect((await call('/ready')).status).toBe(200);
    const stopping = kernel.stop('test');
    const during = await call('/ready');
    expect([during.status, during.code]).toEqual([503, 'health.stopping']);
    expect((await call('/health')).status).toBe(200);
    await stopping;
    await expect(call('/health')).rejects.toThrow();
  });
});
