/**
 * ws-cluster with real processes: two `mega start` instances on the real NATS (JetStream server),
 * real `ws` clients. Broadcast exactly once across instances, directToUser, cluster-wide list,
 * NATS restart, SIGKILL of an instance (roster TTL), and the transport conflict at boot.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Client, chatProject, expectClusterRouting, roster as list, said } from '../../../scripts/test/chat-cluster.js';
import { killAll, megaStart, runMega, until } from '../../../scripts/test/procs.js';
import { serviceEnv } from '../../../scripts/test/service-env.js';

/** The repository root. */
const REPO = join(import.meta.dirname, '../../..');

const { NATS_URL } = serviceEnv();
const PLUGINS = ['@mega/http', '@mega/ws', '@mega/ws-presence', '@mega/bus', '@mega/ws-cluster'];
/** The NATS connection ws-cluster publishes on is @mega/bus's `services.buses.default`. */
const natsBus = (url: string) => `services: { buses: { default: { driver: 'nats', url: ${JSON.stringify(url)} } } }`;
const TTL = 1500;
const clients: Client[] = [];
afterAll(() => {
  for (const c of clients) c.ws.terminate();
  killAll();
});

const open = async (port: number, query: string) => {
  const c = await Client.open(port, query);
  clients.push(c);
  return c;
};

describe('@mega/ws-cluster across two real instances', () => {
  it('fans out once, directs only to the user, lists cluster-wide, survives a NATS restart and drops a killed instance within the TTL', async () => {
    const dir = chatProject({
      plugins: PLUGINS,
      global: `${natsBus(NATS_URL)}, wsCluster: { subjectPrefix: 'test${Date.now()}', roster: { ttlMs: ${TTL}, heartbeatMs: 300 } }`,
    });
    const [a, b] = await Promise.all([megaStart(dir), megaStart(dir)]);
    const a1 = await open(a.port, 'user=ann&session=a1');
    const a2 = await open(a.port, 'user=bob&session=a2&ch=other');
    const b1 = await open(b.port, 'user=bob&session=b1');
    const b2 = await open(b.port, 'user=cy&session=b2');

    // Cluster-wide roster: both instances see all four sessions (metadata included), per channel too.
    const all = ['a1|ann', 'a2|bob', 'b1|bob', 'b2|cy'];
    await until(async () => ((await list(a1)).join() === all.join() ? true : undefined), 5000, 'roster on A');
    expect(await list(b2)).toEqual(all);
    expect(await list(b2, 'room')).toEqual(['a1|ann', 'b1|bob', 'b2|cy']);

    // Broadcast exactly once, remote exceptions, directToUser across instances.
    await expectClusterRouting(a1, a2, b1, b2);

    // Kick through the cluster: A asks to kick B's session; B closes it with 1008.
    const b3 = await open(b.port, 'user=dee&session=b3');
    await until(async () => ((await list(a1)).includes('b3|dee') ? true : undefined), 5000, 'b3 on A');
    expect((await a1.ask('chat.kick', { session: 'b3', mode: 'kick' }, 'chat.kicked')).payload.local).toBe(false);
    expect((await b3.closed).code).toBe(1008);

    // NATS restart: fan-out resumes once the clients reconnect.
    execFileSync('bash', [join(REPO, 'scripts/services.sh'), 'restart', 'nats'], { stdio: 'ignore' });
    await until(
      async () => {
        a1.send('chat.say', { channel: 'room', text: 'after-restart' });
        await new Promise((r) => setTimeout(r, 200));
        return said(b1, 'after-restart') > 0 ? true : undefined;
      },
      20_000,
      'fan-out after the NATS restart',
    );

    // SIGKILL instance B: its members leave A's roster within the TTL (no leave was ever sent).
    expect(await list(a1)).toEqual(['a1|ann', 'a2|bob', 'b1|bob', 'b2|cy']);
    await b.kill('SIGKILL');
    // Expiry is exact (TTL after the last heartbeat, see the RemoteRoster unit test); here: it happens.
    await until(async () => ((await list(a1)).join() === 'a1|ann,a2|bob' ? true : undefined), TTL * 3, 'B members gone from A');
    expect(a.out()).toMatch(/NATS (dis|re)connected/);
  });

  it('A4: broadcasts during a real NATS restart reach the other instance in both directions: none lost', async () => {
    const dir = chatProject({
      plugins: PLUGINS,
      global: `${natsBus(NATS_URL)}, wsCluster: { subjectPrefix: 'a4t${Date.now()}', roster: { ttlMs: ${TTL}, heartbeatMs: 300 } }`,
    });
    const [a, b] = await Promise.all([megaStart(dir), megaStart(dir)]);
    const a1 = await open(a.port, 'user=ann&session=a1');
    const b1 = await open(b.port, 'user=bob&session=b1');
    await until(async () => ((await list(a1)).join() === 'a1|ann,b1|bob' ? true : undefined), 5000, 'roster');
    // Each side says one numbered line every 5 ms through the outage (the WebSocket to its own
    // instance is unaffected: every line is broadcast locally and handed to ws-cluster).
    let stop = false;
    let sent = 0;
    const pump = (async () => {
      while (!stop) {
        a1.send('chat.say', { channel: 'room', text: `a${sent}` });
        b1.send('chat.say', { channel: 'room', text: `b${sent}` });
        sent++;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await until(() => (sent >= 40 ? true : undefined), 5000, 'lines before the restart');
    execFileSync('bash', [join(REPO, 'scripts/services.sh'), 'restart', 'nats'], { stdio: 'ignore' });
    const after = sent;
    await until(() => (said(b1, `a${after + 40}`) > 0 && said(a1, `b${after + 40}`) > 0 ? true : undefined), 30_000, 'fan-out after');
    stop = true;
    await pump;
    const last = sent - 1;
    await until(() => (said(b1, `a${last}`) > 0 && said(a1, `b${last}`) > 0 ? true : undefined), 10_000, 'the last lines');
    const missing = (c: Client, p: string) => Array.from({ length: sent }, (_, i) => `${p}${i}`).filter((t) => said(c, t) === 0);
    const lostAtB = missing(b1, 'a');
    const lostAtA = missing(a1, 'b');
    console.log(`A4 ws-cluster: ${sent} lines per direction; lost A->B ${lostAtB.length}, B->A ${lostAtA.length}`);
    expect(lostAtB).toEqual([]);
    expect(lostAtA).toEqual([]);
    await a.kill('SIGTERM');
    await b.kill('SIGTERM');
  }, 90_000);

  it('refuses to boot an app configuring both transports (config.cluster_transport_conflict)', async () => {
    const dir = chatProject({
      plugins: [...PLUGINS, '@mega/hub-bridge'],
      global: natsBus(NATS_URL),
      app: "bridgeHub: { url: 'ws://127.0.0.1:9', token: 't' }",
    });
    const w = runMega(['start', '--port', '0'], dir);
    const { code } = await w.exited;
    expect(code).not.toBe(0);
    expect(w.out()).toContain('config.cluster_transport_conflict');
  });
});
