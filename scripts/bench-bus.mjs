// npm run bench:bus — emit->receive messages/s over NATS: Mega's nats bus driver (ctx.bus) against the
// raw @nats-io/transport-node client doing the same work (JSON payload, publish on one connection,
// callback subscription, on the very same NATS connection), in the same run: many short rounds,
// alternating which goes first (ABBA), median — so load from elsewhere on the machine hits both alike.
//   node scripts/bench-bus.mjs [--messages 10000] [--rounds 21] [--json]
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import bus from '@mega/bus';
import { createLogger, Kernel } from '@mega/kernel';

const { values } = parseArgs({
  options: { messages: { type: 'string', default: '10000' }, rounds: { type: 'string', default: '21' }, json: { type: 'boolean' } },
});
const N = Number(values.messages);
const ROUNDS = Number(values.rounds);
const url = process.env.NATS_URL ?? /NATS_URL=(.*)/.exec(execFileSync('bash', ['scripts/services.sh', 'env'], { encoding: 'utf8' }))?.[1];
if (!url) throw new Error('NATS_URL not set and scripts/services.sh env did not print it');

const dir = mkdtempSync(join(tmpdir(), 'mega-bench-bus-'));
const kernel = new Kernel({
  dir,
  config: { services: { buses: { default: { driver: 'nats', url } } } },
  apps: [{ name: 'bench', dir, config: {}, file: undefined }],
  plugins: [bus],
  logger: createLogger({ level: 'warn' }),
});
await kernel.start();
const mega = kernel.apps[0].bus;
// The raw contender uses Mega's own connection: same socket, same server, only the layer above differs.
const nc = mega.native;

let round = 0;
const contenders = {
  'mega (ctx.bus emit -> on)': async () => {
    const event = `r${++round}`;
    let got = 0;
    let done;
    const all = new Promise((r) => (done = r));
    const off = mega.on(event, (p) => {
      if (++got === N) done(p);
    });
    await mega.native.flush();
    const started = performance.now();
    for (let i = 0; i < N; i++) mega.emit(event, { i, kind: 'tick' });
    await all;
    const rate = N / ((performance.now() - started) / 1000);
    off();
    return rate;
  },
  'raw @nats-io/transport-node': async () => {
    const subject = `raw.r${++round}`;
    let got = 0;
    let done;
    const all = new Promise((r) => (done = r));
    const sub = nc.subscribe(subject, {
      callback: (_err, msg) => {
        const p = msg.json();
        if (++got === N) done(p);
      },
    });
    await nc.flush();
    const started = performance.now();
    for (let i = 0; i < N; i++) nc.publish(subject, JSON.stringify({ i, kind: 'tick' }));
    await all;
    const rate = N / ((performance.now() - started) / 1000);
    sub.unsubscribe();
    return rate;
  },
};

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const samples = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]));
for (const fn of Object.values(contenders)) await fn(); // warm-up
const order = Object.entries(contenders);
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, fn] of r % 2 ? [...order].reverse() : order) samples[name].push(await fn());
}
await kernel.stop();

const megaRate = median(samples['mega (ctx.bus emit -> on)']);
const rows = Object.entries(samples).map(([name, xs]) => ({
  contender: name,
  msgsPerSec: Math.round(median(xs)),
  megaRatio: name.startsWith('mega') ? 1 : Number((megaRate / median(xs)).toFixed(3)),
}));
if (values.json) console.log(JSON.stringify(rows));
else {
  console.log(`NATS emit->receive, ${N} messages x ${ROUNDS} alternating rounds, median (goal: mega >= 0.9 x raw)`);
  console.log('contender                          msgs/s    mega/this');
  for (const r of rows) console.log(`${r.contender.padEnd(33)} ${String(r.msgsPerSec).padStart(8)}    ${r.megaRatio.toFixed(3)}`);
}
