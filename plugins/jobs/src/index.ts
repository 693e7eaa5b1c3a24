/**
 * @mega/jobs: background jobs per app (`ctx.jobs`). JetStream driver on the NATS connection @mega/bus
 * owns (`api.use('nats')`), or the in-process memory driver when no NATS bus is declared. Consumers run
 * in `mega start` (unless `jobs.inProcess: false`) and in `mega worker`.
 */

import type { MegaTracer } from '@mega/adapters';
import { pickAlias } from '@mega/adapters';
import type { NatsConnections } from '@mega/bus';
import type { ConfigInput, Static } from '@mega/kernel';
import { ConfigError, definePlugin, packageVersion, Type } from '@mega/kernel';
import { jobsCommand, runMode, workerCommand } from './cli.js';
import { JetStreamQueue } from './drivers/jetstream.js';
import { MemoryQueue } from './drivers/memory.js';
import { jobGenerator } from './generators.js';
import { Jobs } from './jobs.js';
import { loadJobs } from './loader.js';

export type { Backoff, JobClass, JobContext, JobDefinition, JobLike, JobRun, JobSpec, JobStatics } from './job.js';
export { backoffDelay, defineJob, isJob, MegaJob, toSpec } from './job.js';
export type { DlqRow, EnqueueItem, EnqueueOptions, QueueDriver, QueueStats } from './jobs.js';
export { Jobs } from './jobs.js';
export type { DeadLetter, FailPhase, JobEventData, JobEventName } from './runner.js';
export { MAX_STACK_CHARS } from './runner.js';

const DAY_MS = 24 * 60 * 60 * 1000;

/** `jobs` in mega.config.ts (global only). */
export const JobsGlobalConfig = Type.Object({
  jobs: Type.Object(
    {
      /** Default: jetstream when a NATS bus (`services.buses`, driver nats) is declared, else memory. */
      driver: Type.Optional(Type.Union([Type.Literal('memory'), Type.Literal('jetstream')])),
      /** The `services.buses` alias (jetstream). Default: `default`, or the only one. */
      service: Type.Optional(Type.String({ minLength: 1 })),
      /** Run consumers inside `mega start`; false leaves them to `mega worker`. */
      inProcess: Type.Boolean({ default: true }),
      /** Job files directory inside each app. */
      dir: Type.String({ minLength: 1, default: 'jobs' }),
      /** Stream name prefix (`<prefix>_<APP>`, `<prefix>_<APP>_DLQ`) and first subject token. */
      streamPrefix: Type.String({ pattern: '^[A-Za-z0-9_-]+$', default: 'MEGA_JOBS' }),
      /** Lease of a delivery; kept alive with `working()` every ackWaitMs / 3 while the job runs. */
      ackWaitMs: Type.Integer({ minimum: 100, default: 30_000 }),
      /** Deliveries per message (server side); the last one only routes an unsettled job to the DLQ. */
      maxDeliver: Type.Integer({ minimum: 2, default: 5 }),
      /** Default run timeout of a job (ms); `0` = unlimited; a job's `static timeoutMs` wins. */
      timeoutMs: Type.Integer({ minimum: 0, default: 30 * 60 * 1000 }),
      /** Window in which an enqueue `id` is deduplicated. */
      dedupWindowMs: Type.Integer({ minimum: 1000, default: 120_000 }),
      /** How long dead letters are kept (`0` = forever). */
      dlqMaxAgeMs: Type.Integer({ minimum: 0, default: 7 * DAY_MS }),
      /** An enqueue not confirmed by JetStream within this fails with `jobs.unavailable`. */
      publishTimeoutMs: Type.Integer({ minimum: 100, default: 5000 }),
      /** Shutdown: how long running jobs may finish before they are naked (keep under lifecycle.shutdownTimeoutMs). */
      drainMs: Type.Integer({ minimum: 0, default: 8000 }),
      /** How often workers look for groups with pending jobs. */
      groupScanMs: Type.Integer({ minimum: 50, default: 1000 }),
      /** An idle group consumer is removed by the server after this long. */
      groupIdleMs: Type.Integer({ minimum: 1000, default: 10 * 60 * 1000 }),
      /** Stream replicas (clustered JetStream). */
      replicas: Type.Integer({ minimum: 1, maximum: 5, default: 1 }),
    },
    { additionalProperties: false, default: {} },
  ),
});
export type JobsConfig = Static<typeof JobsGlobalConfig>['jobs'];

/** Service `jobs`: every app's `Jobs` (used by `mega jobs`). */
export interface JobsService {
  readonly driver: 'memory' | 'jetstream';
  app(name?: string): Jobs;
  readonly apps: readonly Jobs[];
}

declare module '@mega/kernel' {
  interface MegaConfig {
    jobs?: ConfigInput<typeof JobsGlobalConfig>['jobs'];
  }
  interface MegaContext {
    /** This app's jobs: `enqueue`, `enqueueMany`, `on`, `stats`, `dlq`. */
    readonly jobs: Jobs;
  }
  interface AppExtensions {
    readonly jobs: Jobs;
  }
  interface MegaServices {
    jobs: JobsService;
  }
}

export default definePlugin({
  name: '@mega/jobs',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  // @mega/tracing (optional) first, so its `tracing` service is there when jobs are set up.
  after: ['@mega/bus', '@mega/tracing'],
  config: { global: JobsGlobalConfig },
  commands: { worker: workerCommand, jobs: jobsCommand },
  generators: { job: jobGenerator },
  bootTimeoutMs: 30_000,
  async setup(api, config) {
    const c = config.jobs;
    const nats = api.has('nats') ? api.use<NatsConnections>('nats') : undefined;
    const driver = c.driver ?? (c.service || (nats && nats.aliases.length > 0) ? 'jetstream' : 'memory');
    let alias: string | undefined;
    if (driver === 'jetstream') {
      if (!nats || nats.aliases.length === 0) {
        throw new ConfigError(
          'jobs.no_nats',
          'jobs.driver "jetstream" needs a NATS connection: add @mega/bus to plugins and services.buses.default = { driver: "nats", url }',
          { details: { driver } },
        );
      }
      alias = pickAlias('buses', nats.aliases, c.service, 'default');
    }
    const mode = runMode();
    const tracer = api.has('tracing') ? api.use<MegaTracer>('tracing') : undefined;
    const apps: Jobs[] = [];
    for (const app of api.kernel.apps) {
      const specs = await loadJobs(app, c.dir, api.kernel.dir, { timeoutMs: c.timeoutMs });
      apps.push(
        new Jobs({
          app,
          kernel: api.kernel,
          log: app.log.child({ plugin: api.name }),
          specs,
          maxDeliver: c.maxDeliver,
          ackWaitMs: c.ackWaitMs,
          subjectPrefix: c.streamPrefix,
          tracer,
        }),
      );
    }
    const byName = new Map(apps.map((j) => [j.app.name, j]));
    // `mega start` consumes unless inProcess is off; processes that serve nothing (`mega scheduler`,
    // `mega jobs`) never do, `mega worker` always does.
    const consume = mode.kind === 'worker' || (mode.kind === 'start' && c.inProcess && api.kernel.serving);
    const drivers: Array<JetStreamQueue | MemoryQueue> = [];

    api.tap('boot', async () => {
      for (const jobs of apps) {
        let queue: JetStreamQueue | MemoryQueue;
        if (driver === 'jetstream') {
          const nc = await (nats as NatsConnections).connection(alias);
          queue = new JetStreamQueue(jobs, nc, {
            streamPrefix: c.streamPrefix,
            ackWaitMs: c.ackWaitMs,
            maxDeliver: c.maxDeliver,
            dedupWindowMs: c.dedupWindowMs,
            dlqMaxAgeMs: c.dlqMaxAgeMs,
            publishTimeoutMs: c.publishTimeoutMs,
            groupScanMs: c.groupScanMs,
            groupIdleMs: c.groupIdleMs,
            replicas: c.replicas,
          });
          await queue.init();
        } else queue = new MemoryQueue(jobs, { dedupWindowMs: c.dedupWindowMs });
        jobs.attach(queue);
        drivers.push(queue);
        if (!consume) continue;
        const only = mode.kind === 'worker' ? mode.jobs : undefined;
        if (only) {
          const unknown = only.filter((n) => !jobs.specs.has(n));
          if (unknown.length === only.length) {
            api.log.warn({ app: jobs.app.name, jobs: only }, `jobs: app "${jobs.app.name}" has none of --jobs ${only.join(',')}`);
          }
        }
        const specs = [...jobs.specs.values()].filter((s) => !only || only.includes(s.name));
        if (specs.length) await queue.consume(specs);
        api.log.info(
          { app: jobs.app.name, driver, jobs: specs.map((s) => s.name) },
          `jobs: consuming ${specs.length} job(s) of "${jobs.app.name}"`,
        );
      }
    });
    api.onShutdown(async () => {
      await Promise.all(drivers.map((d) => d.stop(c.drainMs)));
    });
    api.contributeCtx('jobs', (ctx) => byName.get(ctx.app.name) as Jobs);
    api.contributeApp('jobs', (app) => byName.get(app.name));
    api.provide('jobs', {
      driver,
      apps,
      app: (name) => {
        if (name === undefined && apps.length === 1) return apps[0] as Jobs;
        const found = name === undefined ? undefined : byName.get(name);
        if (!found) {
          throw new ConfigError('jobs.unknown_app', `no app "${name ?? ''}" (apps: ${[...byName.keys()].join(', ')}); pass --app`, {
            details: { app: name, apps: [...byName.keys()] },
          });
        }
        return found;
      },
    } satisfies JobsService);
  },
});
