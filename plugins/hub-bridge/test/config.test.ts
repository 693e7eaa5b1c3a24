/** Config errors of both cluster transports, in-process (setup fails before anything connects). */
import { createLogger, loadKernel } from '@mega/kernel';
import { describe, expect, it } from 'vitest';
import { chatProject } from '../../../scripts/test/chat-cluster.js';

async function boot(o: { plugins: string[]; global?: string; app?: string }): Promise<unknown> {
  const kernel = await loadKernel({ dir: chatProject(o), logger: createLogger({ level: 'silent' }) });
  try {
    await kernel.start();
  } catch (error) {
    return error;
  } finally {
    await kernel.stop().catch(() => {});
  }
  return undefined;
}

const BASE = ['@mega/http', '@mega/ws', '@mega/ws-presence'];
const BRIDGE = [...BASE, '@mega/hub-bridge'];
const CLUSTER = [...BASE, '@mega/ws-cluster'];

describe('cluster transport config', () => {
  it('refuses bridgeHub together with wsCluster, from either plugin', async () => {
    expect(
      await boot({
        plugins: BRIDGE,
        global: "wsCluster: { url: 'nats://127.0.0.1:1' }",
        app: "bridgeHub: { url: 'ws://127.0.0.1:1', token: 't' }",
      }),
    ).toMatchObject({
      code: 'config.cluster_transport_conflict',
    });
    expect(
      await boot({
        plugins: CLUSTER,
        global: "wsCluster: { url: 'nats://127.0.0.1:1' }",
        app: "bridgeHub: { url: 'ws://127.0.0.1:1', token: 't' }",
      }),
    ).toMatchObject({
      code: 'config.cluster_transport_conflict',
    });
  });

  it('rejects garbage bridgeHub config with config.invalid', async () => {
    for (const app of [
      "bridgeHub: { url: 'ws://127.0.0.1:1' }",
      "bridgeHub: { token: 't' }",
      "bridgeHub: { url: 'http://127.0.0.1:1', token: 't' }",
      "bridgeHub: { url: 'ws://h', token: 't', retry: { minTimeout: -5 } }",
      "bridgeHub: { url: 'ws://h', token: 't', channels: 'room' }",
      "bridgeHub: { url: 'ws://h', token: 't', surprise: 1 }",
      "bridgeHub: 'ws://h'",
    ]) {
      expect(await boot({ plugins: BRIDGE, app }), app).toMatchObject({ code: 'config.invalid' });
    }
  });

  it('rejects garbage wsCluster config', async () => {
    for (const global of [
      "wsCluster: { url: 'nats://h', subjectPrefix: 'a b' }",
      "wsCluster: { url: 'nats://h', roster: { ttlMs: 5 } }",
      "wsCluster: { url: 'nats://h', roster: { driver: 'redis' } }",
      "wsCluster: { url: '' }",
      "wsCluster: { bus: 'missing' }",
    ]) {
      expect(await boot({ plugins: CLUSTER, global }), global).toMatchObject({ code: 'config.invalid' });
    }
  });

  it('a bridged app boots with the hub unreachable; readiness shows the link state and stays ready', async () => {
    const dir = chatProject({
      plugins: [...BRIDGE, '@mega/health'],
      global: 'health: { exposeCheckDetails: true }',
      app: "bridgeHub: { url: 'ws://127.0.0.1:9', token: 't', connectTimeoutMs: 500 }",
    });
    const kernel = await loadKernel({ dir, logger: createLogger({ level: 'silent' }) });
    try {
      await kernel.start();
      const port = kernel.use<{ port: number }>('http').port;
      const res = await fetch(`http://127.0.0.1:${port}/ready`);
      const body = (await res.json()) as { data: { checks: Record<string, { ok: boolean; links: Record<string, string> }> } };
      expect(res.status).toBe(200);
      const check = body.data.checks['@mega/hub-bridge'];
      expect(check?.ok).toBe(true);
      expect(Object.values(check?.links ?? {})).toEqual(['reconnecting']);
    } finally {
      await kernel.stop();
    }
  });
});
