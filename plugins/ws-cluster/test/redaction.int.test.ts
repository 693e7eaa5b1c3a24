/**
 * Credentials in the NATS URL never reach an error or a log line: ws-cluster logs the bus's URL
 * only through redactUrl (password and bare token alike), whether NATS answers or not.
 */
import type { Kernel } from '@mega/kernel';
import { loadKernel } from '@mega/kernel';
import { captureLogs } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { chatProject } from '../../../scripts/test/chat-cluster.js';
import { freePort } from '../../../scripts/test/procs.js';
import { serviceEnv } from '../../../scripts/test/service-env.js';

const { NATS_URL } = serviceEnv();
const PASSWORD = 'pw-5ecret-4711';
const TOKEN = 'tok-5ecret-0815';
const PLUGINS = ['@mega/http', '@mega/ws', '@mega/ws-presence', '@mega/bus', '@mega/ws-cluster'];
/** `nats://host:port` with `user:password@` (or `token@`) inserted. */
const withCreds = (url: string, creds: string) => url.replace('nats://', `nats://${creds}@`);

const kernels: Kernel[] = [];
afterEach(async () => {
  for (const k of kernels.splice(0)) await k.stop();
});

async function start(bus: string, wsCluster = '{ connectTimeoutMs: 200 }') {
  const logs = captureLogs('debug');
  const dir = chatProject({ plugins: PLUGINS, global: `services: { buses: { default: ${bus} } }, wsCluster: ${wsCluster}` });
  const kernel = await loadKernel({ dir, logger: logs.logger });
  kernels.push(kernel);
  const error = await kernel.start().then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  return { logs, error };
}

const leaks = (text: string) => text.includes(PASSWORD) || text.includes(TOKEN);

describe('@mega/ws-cluster keeps NATS credentials out of errors and logs', () => {
  it('logs the redacted URL when NATS answers', async () => {
    const { logs, error } = await start(`{ driver: 'nats', url: ${JSON.stringify(withCreds(NATS_URL, `mega:${PASSWORD}`))} }`);
    expect(error).toBeUndefined();
    const line = await logs.waitFor((l) => l.plugin === '@mega/ws-cluster' && /fan-out on NATS/.test(l.msg ?? ''));
    expect(line.url).toBe(withCreds(NATS_URL, 'mega:***'));
    await kernels.pop()?.stop();
    expect(leaks(JSON.stringify(logs.lines))).toBe(false);
  });

  it('logs the redacted URL when NATS is unreachable at boot (password and token, several servers)', async () => {
    const [a, b] = [await freePort(), await freePort()];
    const url = `nats://mega:${PASSWORD}@127.0.0.1:${a},nats://${TOKEN}@127.0.0.1:${b}`;
    const { logs, error } = await start(`{ driver: 'nats', url: ${JSON.stringify(url)}, optional: true }`);
    expect(error).toBeUndefined();
    const line = await logs.waitFor((l) => l.plugin === '@mega/ws-cluster' && /unreachable at boot/.test(l.msg ?? ''));
    expect(line.url).toBe(`nats://mega:***@127.0.0.1:${a},nats://***@127.0.0.1:${b}`);
    await kernels.pop()?.stop();
    expect(leaks(JSON.stringify(logs.lines))).toBe(false);
  });

  it('keeps them out of boot errors (unreachable required bus, unknown bus alias)', async () => {
    const port = await freePort();
    const url = JSON.stringify(`nats://mega:${PASSWORD}@127.0.0.1:${port}`);
    for (const [bus, wsCluster] of [
      [`{ driver: 'nats', url: ${url} }`, '{}'],
      [`{ driver: 'nats', url: ${url} }`, "{ bus: 'other' }"],
    ] as const) {
      const { logs, error } = await start(bus, wsCluster);
      expect(error).toBeInstanceOf(Error);
      expect(leaks(`${error?.message} ${JSON.stringify((error as { details?: unknown }).details ?? {})}`)).toBe(false);
      expect(leaks(JSON.stringify(logs.lines))).toBe(false);
    }
  });
});
