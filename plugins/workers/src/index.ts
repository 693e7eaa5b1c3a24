/**
 * @mega/workers: CPU pools per app from `apps/<app>/workers/<name>.ts`. Each file's default export
 * (a function, or `defineWorker({ mode, size, queue, timeoutMs, run })`) runs on worker threads
 * (piscina) or child processes (tinypool); `ctx.workers.<name>.run(data, { timeoutMs })` and
 * `getApp().workers.<name>` send it a task. Files are imported once at boot (checked, options read);
 * pools start on their first task unless `eager`, and close at shutdown.
 */
import { existsSync, readdirSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import type { App, ConfigInput, Static } from '@mega/kernel';
import { ConfigError, definePlugin, importModule, MegaError, packageVersion, Type } from '@mega/kernel';
import type { WorkerDefinition, WorkerMode, WorkerOptions } from './define.js';
import { workerGenerator } from './generators.js';
import { defaultSize, type PoolStats, type RunOptions, WorkerPool } from './pool.js';

export type { WorkerDefinition, WorkerMode, WorkerOptions, WorkerTask } from './define.js';
export { defineWorker } from './define.js';
export type { PoolStats, RunOptions } from './pool.js';
export { defaultSize, WorkerPool } from './pool.js';

const Mode = Type.Union([Type.Literal('thread'), Type.Literal('process')]);
/** Per-worker keys shared by the app defaults and `overrides.<name>`. */
const poolKeys = {
  mode: Type.Optional(Mode),
  /** Default: cores − 1, at least 1 (computed, so no schema default). */
  size: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
  queue: Type.Optional(Type.Integer({ minimum: 0 })),
  timeoutMs: Type.Optional(Type.Integer({ minimum: 0 })),
  eager: Type.Optional(Type.Boolean()),
};

/** `workers` in apps/<name>/app.config.ts: the one source of its type and defaults. */
export const WorkersAppConfig = Type.Object({
  workers: Type.Object(
    {
      /** Directory of worker files, relative to the app directory. */
      dir: Type.String({ minLength: 1, default: 'workers' }),
      mode: Type.Union([Type.Literal('thread'), Type.Literal('process')], { default: 'thread' }),
      size: poolKeys.size,
      /** Tasks that may wait for a free thread; one more is refused with `workers.queue_full`. */
      queue: Type.Integer({ minimum: 0, default: 1000 }),
      /** Per-task bound from the call (queue wait included); 0 = unbounded. */
      timeoutMs: Type.Integer({ minimum: 0, default: 30_000 }),
      /** Start every pool at boot instead of on its first task. */
      eager: Type.Boolean({ default: false }),
      /** At shutdown, how long accepted tasks may still finish before threads and processes are ended. */
      drainMs: Type.Integer({ minimum: 0, default: 5000 }),
      /** Per-worker settings by file name; they win over the file's `defineWorker` options. */
      overrides: Type.Record(Type.String(), Type.Object(poolKeys, { additionalProperties: false }), { default: {} }),
    },
    { additionalProperties: false, default: {} },
  ),
});
export type WorkersConfig = Static<typeof WorkersAppConfig>['workers'];

/** One worker of an app: `ctx.workers.<name>`. */
export interface WorkerHandle<I = unknown, O = unknown> {
  readonly name: string;
  readonly mode: WorkerMode;
  readonly size: number;
  readonly queue: number;
  readonly timeoutMs: number;
  run(data: I, options?: RunOptions): Promise<O>;
  stats(): PoolStats;
}

/** The handle type of a worker file's default export: `WorkerHandleFor<typeof import('./workers/resize.ts').default>`. */
export type WorkerHandleFor<D> =
  D extends WorkerDefinition<infer I, infer O>
    ? WorkerHandle<I, Awaited<O>>
    : D extends (data: infer I) => infer O
      ? WorkerHandle<I, Awaited<O>>
      : WorkerHandle;

/**
 * An app's workers by file name. Type your own by merging:
 * `declare module '@mega/workers' { interface WorkerRegistry { resize: WorkerHandleFor<typeof resize> } }`
 * (without it, `noUncheckedIndexedAccess` types `ctx.workers.resize` as possibly undefined).
 */
export interface WorkerRegistry {
  readonly [name: string]: WorkerHandle;
}

/** The `workers` service: other plugins (jobs, schedules) reach an app's pools through it. */
export interface WorkersService {
  of(app: App | string): WorkerRegistry;
}

declare module '@mega/kernel' {
  /** This plugin's keys of app.config.ts (see the README's config table). */
  interface AppConfig {
    workers?: ConfigInput<typeof WorkersAppConfig>['workers'];
  }
  interface MegaContext {
    /** This app's CPU pools, by worker file name. */
    readonly workers: WorkerRegistry;
  }
  interface AppExtensions {
    readonly workers: WorkerRegistry;
  }
  interface MegaServices {
    workers: WorkersService;
  }
}

const EXTENSIONS = new Set(['.ts', '.mts', '.js', '.mjs']);

/** Worker files of `dir`: top level, script extensions, no declaration or test files. */
export function listWorkerFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && EXTENSIONS.has(extname(e.name)) && !/\.d\.[mc]?ts$|\.(test|spec)\.[mc]?[jt]s$/.test(e.name))
    .map((e) => join(dir, e.name))
    .sort();
}

/** Reads a worker file's default export: its options, or a boot error naming the file. */
async function readDefinition(file: string): Promise<WorkerOptions> {
  const exported = (await importModule(file, 'workers.syntax')) as Partial<WorkerDefinition> | ((data: unknown) => unknown) | undefined;
  if (typeof exported === 'function') return {};
  if (exported && typeof exported === 'object' && typeof exported.run === 'function') {
    const { mode, size, queue, timeoutMs } = exported;
    if (mode !== undefined && mode !== 'thread' && mode !== 'process') {
      throw new ConfigError('workers.invalid', `${file}: mode must be 'thread' or 'process', got ${JSON.stringify(mode)}`, {
        details: { file },
      });
    }
    for (const [key, value, min] of [
      ['size', size, 1],
      ['queue', queue, 0],
      ['timeoutMs', timeoutMs, 0],
    ] as const) {
      if (value !== undefined && !(Number.isInteger(value) && value >= min)) {
        throw new ConfigError('workers.invalid', `${file}: ${key} must be an integer >= ${min}, got ${JSON.stringify(value)}`, {
          details: { file },
        });
      }
    }
    return { mode, size, queue, timeoutMs };
  }
  throw new ConfigError(
    'workers.invalid',
    `${file} must export default a function or defineWorker({ run }) (from '@mega/workers/define')`,
    {
      details: { file },
    },
  );
}

/** A registry whose unknown names fail loudly (a typo otherwise surfaces as "cannot read run of undefined"). */
function registryOf(app: string, dir: string, pools: Map<string, WorkerPool>): WorkerRegistry {
  const target = Object.freeze(Object.assign(Object.create(null) as Record<string, WorkerHandle>, Object.fromEntries(pools)));
  const passThrough = new Set(['then', 'toJSON', 'asymmetricMatch', '$$typeof', 'nodeType', 'constructor', 'inspect']);
  // The names are only known at run time; typed names come from the app's WorkerRegistry merge.
  return new Proxy(target, {
    get(t, key) {
      if (typeof key === 'symbol' || key in t || passThrough.has(key)) return t[key as string];
      throw new MegaError(
        'workers.unknown',
        `app "${app}" has no worker "${key}" (known: ${[...pools.keys()].join(', ') || 'none'}; files in ${dir})`,
        {
          details: { app, worker: key, known: [...pools.keys()] },
        },
      );
    },
  }) as unknown as WorkerRegistry;
}

export default definePlugin({
  name: '@mega/workers',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  config: { app: WorkersAppConfig },
  generators: { worker: workerGenerator },
  setup(api) {
    const registries = new Map<string, WorkerRegistry>();
    const all: { pool: WorkerPool; drainMs: number; eager: boolean }[] = [];
    const of = (app: App | string): WorkerRegistry => {
      const name = typeof app === 'string' ? app : app.name;
      const registry = registries.get(name);
      if (!registry)
        throw new MegaError('workers.not_ready', `the workers of app "${name}" are not loaded (unknown app, or boot has not run)`);
      return registry;
    };

    api.tap('boot', async () => {
      for (const app of api.kernel.apps) {
        const config = api.appConfig(app).workers;
        const dir = resolve(app.dir, config.dir);
        const pools = new Map<string, WorkerPool>();
        for (const file of listWorkerFiles(dir)) {
          const name = basename(file, extname(file));
          if (pools.has(name))
            throw new ConfigError('workers.duplicate', `two worker files are named "${name}" in ${dir}`, { details: { dir, name } });
          const own = await readDefinition(file);
          const override = config.overrides[name] ?? {};
          const pool = new WorkerPool({
            name,
            app: app.name,
            file,
            mode: override.mode ?? own.mode ?? config.mode,
            size: override.size ?? own.size ?? config.size ?? defaultSize(),
            queue: override.queue ?? own.queue ?? config.queue,
            timeoutMs: override.timeoutMs ?? own.timeoutMs ?? config.timeoutMs,
            log: api.log,
          });
          pools.set(name, pool);
          all.push({ pool, drainMs: config.drainMs, eager: override.eager ?? config.eager });
        }
        const unknown = Object.keys(config.overrides).filter((name) => !pools.has(name));
        if (unknown.length > 0) {
          throw new ConfigError(
            'workers.unknown_worker',
            `app "${app.name}": workers.overrides names no worker file: ${unknown.join(', ')} (files in ${dir})`,
            {
              details: { app: app.name, unknown, known: [...pools.keys()] },
            },
          );
        }
        registries.set(app.name, registryOf(app.name, dir, pools));
        if (pools.size > 0) {
          api.log.debug({ app: app.name, workers: [...pools.values()].map((p) => `${p.name}:${p.mode}x${p.size}`) }, 'workers: loaded');
        }
      }
      // Only once every app's files passed: a boot that fails leaves no thread or process behind.
      for (const { pool, eager } of all) if (eager) pool.start();
    });
    api.onShutdown(async () => {
      await Promise.all(all.map(({ pool, drainMs }) => pool.close(drainMs)));
    });

    api.provide('workers', { of } satisfies WorkersService);
    api.contributeCtx('workers', (ctx) => of(ctx.app));
    api.contributeApp('workers', (app) => of(app));
  },
});
