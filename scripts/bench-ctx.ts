/**
 * `npm run bench:ctx`: the two ways to make ctx lazy, measured side by side.
 *  - getters: the kernel's ContextFactory (one small object per request; plugin members are getters
 *    on a shared prototype that memoise into a slot array on first access);
 *  - proxy:   a per-request Proxy whose traps build the real ctx on first property access (the
 *    original framework's approach, ADR-214).
 * Each scenario runs interleaved rounds; the best round per variant is reported in ns/op.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { ContextFactory } = (await import(pathToFileURL(join(REPO, 'kernel/dist/context.js')).href)) as {
  ContextFactory: new () => {
    contribute(name: string, factory: (ctx: Record<string, unknown>) => unknown): void;
    create(app: unknown, init: { id: string; source?: unknown }): Record<string, unknown>;
  };
};

const app = { name: 'bench', log: { child: () => ({}) } };
const members = ['db', 'session', 't', 'cache', 'bus', 'lock'];

const getters = new ContextFactory();
for (const m of members) getters.contribute(m, () => ({ member: m }));

/** The proxy variant: real ctx built with eager members on first trap, cached per request. */
function proxyCtx(id: string, source: unknown): Record<string, unknown> {
  let real: Record<string, unknown> | undefined;
  const build = (): Record<string, unknown> => {
    if (!real) {
      real = { app, id, source };
      for (const m of members) real[m] = { member: m };
    }
    return real;
  };
  return new Proxy(
    {},
    {
      get: (_t, prop) => Reflect.get(build(), prop),
      set: (_t, prop, value) => Reflect.set(build(), prop, value),
      has: (_t, prop) => Reflect.has(build(), prop),
      ownKeys: () => Reflect.ownKeys(build()),
      getOwnPropertyDescriptor: (_t, prop) => Object.getOwnPropertyDescriptor(build(), prop),
    },
  ) as Record<string, unknown>;
}

type Make = (i: number) => Record<string, unknown>;
const makeGetters: Make = (i) => getters.create(app, { id: String(i), source: null });
const makeProxy: Make = (i) => proxyCtx(String(i), null);

const scenarios: Record<string, (make: Make, n: number) => number> = {
  'create, untouched': (make, n) => {
    let sink = 0;
    for (let i = 0; i < n; i++) sink += make(i) ? 1 : 0;
    return sink;
  },
  'create + 1 member': (make, n) => {
    let sink = 0;
    for (let i = 0; i < n; i++) sink += make(i).session ? 1 : 0;
    return sink;
  },
  'create + 5 reads (2 members)': (make, n) => {
    let sink = 0;
    for (let i = 0; i < n; i++) {
      const ctx = make(i);
      sink += (ctx.session ? 1 : 0) + (ctx.session ? 1 : 0) + (ctx.db ? 1 : 0) + (ctx.db ? 1 : 0) + (ctx.id ? 1 : 0);
    }
    return sink;
  },
};

const N = Number(process.env.BENCH_CTX_N ?? 1_000_000);
const ROUNDS = Number(process.env.BENCH_CTX_ROUNDS ?? 5);
console.log(`bench:ctx  ${N} ctx per round, best of ${ROUNDS} interleaved rounds; node ${process.version}\n`);
console.log(`${'scenario'.padEnd(30)}${'getters ns/op'.padStart(15)}${'proxy ns/op'.padStart(14)}${'proxy/getters'.padStart(15)}`);
for (const [name, run] of Object.entries(scenarios)) {
  const best = { getters: Number.POSITIVE_INFINITY, proxy: Number.POSITIVE_INFINITY };
  run(makeGetters, 10_000);
  run(makeProxy, 10_000);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [variant, make] of [
      ['getters', makeGetters],
      ['proxy', makeProxy],
    ] as const) {
      const t0 = process.hrtime.bigint();
      run(make, N);
      const ns = Number(process.hrtime.bigint() - t0) / N;
      if (ns < best[variant]) best[variant] = ns;
    }
  }
  console.log(
    `${name.padEnd(30)}${best.getters.toFixed(1).padStart(15)}${best.proxy.toFixed(1).padStart(14)}${(best.proxy / best.getters).toFixed(2).padStart(15)}x`,
  );
}
