import type { HealthCheck, PluginApi } from '@mega/kernel';
import { definePlugin } from '@mega/kernel';
import { type BootProjectOptions, bootProject, stopAll, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import type { HealthService } from '../src/index.js';

/** Writes a project whose mega.config.ts exports `config` (TS source) and boots it with the test kit. */
const boot = (
  files: Record<string, string>,
  { config = "{ plugins: ['@mega/http'] }", ...options }: BootProjectOptions & { config?: string } = {},
) => bootProject(writeProject({ 'mega.config.ts': `export default ${config};\n`, ...files }, { prefix: 'mega-http-' }), options);

afterEach(stopAll);

const APP = { 'apps/web/app.config.ts': 'export default {};' };
const config = (health = '{}') => `{ plugins: ['@mega/health', '@mega/http'], server: { port: 0, host: '127.0.0.1' }, health: ${health} }`;

describe('@mega/health', () => {
  it('takes over /health from @mega/http whatever the plugin order, and serves /ready', async () => {
    const { inject, kernel } = await boot(APP, { config: config() });
    expect(kernel.plugins.map((p) => p.name)).toEqual(['@mega/http', '@mega/health']);
    expect((await inject('/health')).json).toEqual({ data: { status: 'ok' } });
    expect((await inject('/ready')).json).toEqual({ data: { status: 'ready' } });
  });

  it('runs checks in parallel with a timeout each; a failing or hung check makes readiness 503 without blocking the others', async () => {
    const checks = definePlugin({
      name: 'checks',
      version: '1.0.0',
      dependsOn: ['@mega/health'],
      setup(api) {
        api.health('db', async () => undefined);
        api.health('cache', async () => undefined);
        (globalThis as Record<string, unknown>).__checks = api;
      },
    });
    const { inject } = await boot(APP, { config: config('{ exposeCheckDetails: true, checkTimeoutMs: 300 }'), plugins: [checks] });
    // A check registered after boot is reported too (/ready reads kernel.healthChecks() per probe).
    const api = (globalThis as Record<string, unknown>).__checks as PluginApi;
    const ok = await inject('/ready');
    expect(ok.json).toMatchObject({
      data: { status: 'ready', checks: { db: { ok: true, durationMs: expect.any(Number) }, cache: { ok: true } } },
    });

    const hung: HealthCheck = () => new Promise(() => {});
    api.health('hung', hung);
    api.health('broken', async () => {
      throw new Error('connection refused');
    });
    const started = performance.now();
    const bad = await inject('/ready');
    const took = performance.now() - started;
    expect(took).toBeLessThan(5000); // bounded by the 300 ms timeout, not by the hung check
    expect(took).toBeGreaterThanOrEqual(290);
    expect([bad.status, bad.code]).toEqual([503, 'health.not_ready']);
    const details = (bad.error as { details: { checks: Record<string, { ok: boolean; error?: string }> } }).details.checks;
    expect(details.db?.ok).toBe(true);
    expect(details.hung).toMatchObject({ ok: false, error: 'check timed out after 300 ms' });
    expect(details.broken).toMatchObject({ ok: false, error: 'connection refused' });
    expect((await inject('/health')).status).toBe(200);
  });

  it('picks up the checks plugins register with api.health (kernel.healthChecks())', async () => {
    let down = false;
    const adapter = definePlugin({
      name: '@acme/db',
      version: '1.0.0',
      setup(api) {
        api.health('db:primary', async () => {
          if (down) throw new Error('connection refused');
        });
      },
    });
    const { inject, kernel } = await boot(APP, { config: config('{ exposeCheckDetails: true }'), plugins: [adapter] });
    expect(kernel.use<HealthService>('health').names).toEqual(['db:primary']);
    expect((await inject('/ready')).data).toMatchObject({ status: 'ready', checks: { 'db:primary': { ok: true } } });
    down = true;
    const res = await inject('/ready');
    expect([res.status, res.error?.details.checks['db:primary']]).toEqual([
      503,
      expect.objectContaining({ ok: false, error: 'connection refused' }),
    ]);
  });

  it('reports a name registered twice under the plugin of the second registration', async () => {
    const twice = definePlugin({
      name: '@acme/pair',
      version: '1.0.0',
      setup(api) {
        api.health('db', async () => undefined);
        api.health('db', async () => {
          throw new Error('replica down');
        });
      },
    });
    const { inject, kernel } = await boot(APP, { config: config('{ exposeCheckDetails: true }'), plugins: [twice] });
    expect(kernel.use<HealthService>('health').names).toEqual(['db', '@acme/pair:db']);
    const res = await inject('/ready');
    expect([res.status, res.error?.details.checks.db.ok, res.error?.details.checks['@acme/pair:db'].error]).toEqual([
      503,
      true,
      'replica down',
    ]);
  });

  it('hides check details unless exposeCheckDetails', async () => {
    const failing = definePlugin({
      name: 'failing',
      version: '1.0.0',
      dependsOn: ['@mega/health'],
      setup(api) {
        api.health('db', async () => {
          throw new Error('password authentication failed for user admin');
        });
      },
    });
    const { inject } = await boot(APP, { config: config(), plugins: [failing] });
    const res = await inject('/ready');
    expect([res.status, res.code]).toEqual([503, 'health.not_ready']);
    expect(res.text).not.toContain('password');
    expect((res.error as { details: unknown }).details).toEqual({ state: 'running', failed: 1 });
  });

  it('turns readiness 503 as soon as shutdown begins and keeps serving during the drain delay', async () => {
    const { inject, kernel } = await boot(APP, { config: config('{ drainDelayMs: 1500 }') });
    expect((await inject('/ready')).status).toBe(200);
    const stopping = kernel.stop('test');
    const during = await inject('/ready');
    expect([during.status, during.code]).toEqual([503, 'health.stopping']);
    expect((await inject('/health')).status).toBe(200);
    await stopping;
    await expect(inject('/health')).rejects.toThrow();
  });
});
