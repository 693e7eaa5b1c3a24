/** Config errors of both cluster transports, in-process (setup fails before anything connects). */
import { createLogger, loadKernel } from '@mega/kernel';
import { describe, expect, it } from 'vitest';
import { chatProject } from '../../../scripts/test/chat-cluster.js';
// Brings the `hub-bridge` service type into scope.
import type {} from '../src/index.js';

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
// ws-cluster publishes on @mega/bus's NATS connection (port 1: setup fails before anything connects).
const NATS = "services: { buses: { default: { driver: 'nats', url: 'nats://127.0.0.1:1' } } }";
const CLUSTER = [...BASE, '@mega/bus', '@mega/ws-cluster'];

describe('cluster transport config', () => {
  it('refuses bridgeHub together with wsCluster, from either plugin', async () => {
    // Both plugins are loaded (each key needs its plugin); whichever sets up first refuses.
    expect(
      await boot({
        plugins: [...BRIDGE, '@mega/bus', '@mega/ws-cluster'],
        global: `${NATS}, wsCluster: {}`,
        app: "bridgeHub: { url: 'ws://127.0.0.1:1', token: 't' }",
      }),
    ).toMatchObject({
      code: 'config.cluster_transport_conflict',
    });
    expect(
      await boot({
        plugins: [...CLUSTER, '@mega/hub-bridge'],
        global: `${NATS}, wsCluster: {}`,
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
      `${NATS}, wsCluster: { subjectPrefix: 'a b' }`,
      `${NATS}, wsCluster: { roster: { ttlMs: 5 } }`,
      `${NATS}, wsCluster: { roster: { driver: 'redis' } }`,
      `${NATS}, wsCluster: { bus: '' }`,
      `${NATS}, wsCluster: { bus: 'missing' }`,
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
      const body = (await res.json()) as { data: { checks: Record<string, { ok: boolean }> } };
      expect(res.status).toBe(200);
      const check = body.data.checks['@mega/hub-bridge'];
      expect(check?.ok).toBe(true);
      // A health check resolves or rejects (the kernel's one contract): the link state is read from the service.
      const links = Object.values(kernel.use('hub-bridge').status()).map((s) => s.state);
      expect(links).toEqual(['reconnecting']);
    } finally {
      await kernel.stop();
    }
  });
});
