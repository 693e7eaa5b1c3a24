/**
 * `ctx.jobs` / `getApp(name).jobs`: one app's jobs. Enqueue checks the job name and payload before
 * anything is published; events are delivered to listeners after the driver settled the message.
 */
import { randomUUID } from 'node:crypto';
import type { MegaTracer, TraceCarrier } from '@mega/adapters';
import type { App, Kernel, Logger } from '@mega/kernel';
import { MegaError, NotFoundError, ValidationError } from '@mega/kernel';
import type { JobLike, JobSpec } from './job.js';
import { isJob } from './job.js';
import type { DeadLetter, Delivery, JobEventData, JobEventName, RunnerHost } from './runner.js';

export interface EnqueueOptions {
  /** Run no earlier than this many ms from now (kept in the stream: survives worker restarts). */
  delayMs?: number;
  /** Idempotency key: the same id within the dedup window is enqueued once. Default: a random UUID. */
  id?: string;
  /** Per-group concurrency key (e.g. a tenant id), limited by the job's `static groupConcurrency`. */
  group?: string;
}

export interface EnqueueItem extends EnqueueOptions {
  job: JobLike | string;
  payload?: unknown;
}

export interface PublishRequest {
  id: string;
  data: string;
  group: string | undefined;
  delayMs: number;
  /** W3C trace context of the enqueue (@mega/tracing), carried in the message headers. */
  trace?: TraceCarrier;
}

export interface QueueStats {
  driver: 'memory' | 'jetstream';
  jobs: Record<string, { pending: number; running: number; redelivered?: number }>;
  delayed: number;
  dlq: number;
}

export interface DlqRow {
  seq: number;
  letter: DeadLetter;
}

/** What a driver does for one app. */
export interface QueueDriver {
  readonly driver: 'memory' | 'jetstream';
  /** Resolves once stored; `true` when the id was a duplicate within the dedup window. */
  publish(spec: JobSpec, request: PublishRequest): Promise<boolean>;
  /** Starts consumers of these jobs in this process. */
  consume(specs: readonly JobSpec[]): Promise<void>;
  /** Stops fetching, waits for running jobs up to `drainMs`, naks the rest. */
  stop(drainMs: number): Promise<void>;
  stats(): Promise<QueueStats>;
  dlqList(limit: number): Promise<DlqRow[]>;
  dlqReplay(which: number | 'all'): Promise<number>;
  dlqPurge(): Promise<number>;
  /** Stores a dead letter durably (throws when it could not). */
  storeDeadLetter(subject: string, letter: DeadLetter): Promise<void>;
}

type Listener = (data: JobEventData) => void;

export interface JobsOptions {
  app: App;
  kernel: Kernel;
  log: Logger;
  specs: readonly JobSpec[];
  maxDeliver: number;
  ackWaitMs: number;
  subjectPrefix: string;
  /** The `tracing` service when @mega/tracing is loaded. */
  tracer?: MegaTracer | undefined;
}

export class Jobs implements RunnerHost {
  readonly app: App;
  readonly kernel: Kernel;
  readonly log: Logger;
  readonly maxDeliver: number;
  readonly ackWaitMs: number;
  /** `<prefix>.<app>`: job subjects are `<base>.<job>`, grouped `<base>.<job>.g.<group token>`. */
  readonly subjectBase: string;
  readonly specs: ReadonlyMap<string, JobSpec>;
  readonly tracer: MegaTracer | undefined;
  #driver: QueueDriver | undefined;
  #listeners = new Map<JobEventName, Listener[]>();
  /** Jobs stored by enqueue since boot, by job name (an id deduplicated within the window is not counted again). */
  readonly enqueued = new Map<string, number>();
  #bySource = new Map<unknown, JobSpec>();

  constructor(options: JobsOptions) {
    this.app = options.app;
    this.kernel = options.kernel;
    this.log = options.log;
    this.maxDeliver = options.maxDeliver;
    this.ackWaitMs = options.ackWaitMs;
    this.subjectBase = `${options.subjectPrefix}.${options.app.name}`;
    this.tracer = options.tracer;
    const specs = new Map<string, JobSpec>();
    for (const spec of options.specs) {
      specs.set(spec.name, spec);
      this.#bySource.set(spec.source, spec);
    }
    this.specs = specs;
  }

  attach(driver: QueueDriver): void {
    this.#driver = driver;
  }

  get driver(): QueueDriver {
    if (!this.#driver) throw new MegaError('jobs.not_ready', `jobs of app "${this.app.name}" are not started yet (enqueue after boot)`);
    return this.#driver;
  }

  subject(spec: JobSpec, group?: string): string {
    return group === undefined ? `${this.subjectBase}.${spec.name}` : `${this.subjectBase}.${spec.name}.g.${groupToken(group)}`;
  }

  dlqSubject = (spec: JobSpec): string => `${this.subjectBase}.${spec.name}.dlq`;

  /** The job's spec, or `jobs.unknown_job` naming the known ones. */
  spec(job: JobLike | string): JobSpec {
    const found =
      typeof job === 'string' ? this.specs.get(job) : (this.#bySource.get(job) ?? (isJob(job) ? this.specs.get(nameOf(job)) : undefined));
    if (found) return found;
    const name = typeof job === 'string' ? job : isJob(job) ? nameOf(job) : String(job);
    throw new NotFoundError(
      'jobs.unknown_job',
      `app "${this.app.name}" has no job "${name}" (known: ${[...this.specs.keys()].join(', ') || 'none'})`,
      {
        details: { app: this.app.name, job: name, known: [...this.specs.keys()] },
      },
    );
  }

  /** Validates and stores one job; resolves with its id once the driver confirmed it. */
  async enqueue(job: JobLike | string, payload?: unknown, options: EnqueueOptions = {}): Promise<string> {
    const { spec, request } = this.#prepare(job, payload, options);
    if (this.tracer) return this.#traced(this.tracer, spec, request);
    if (!(await this.driver.publish(spec, request))) this.#count(spec.name);
    return request.id;
  }

  /** Enqueue in a producer span whose context travels with the message: the run becomes its child. */
  #traced(tracer: MegaTracer, spec: JobSpec, request: PublishRequest): Promise<string> {
    const attributes = {
      'mega.app': this.app.name,
      'mega.job.name': spec.name,
      'mega.job.id': request.id,
      'mega.job.group': request.group,
    };
    return tracer.run(`job.enqueue ${spec.name}`, 'producer', attributes, async () => {
      request.trace = {};
      tracer.inject(request.trace);
      if (!(await this.driver.publish(spec, request))) this.#count(spec.name);
      return request.id;
    });
  }

  /** Validates every item first (nothing is published when one is invalid), then publishes them together. */
  async enqueueMany(items: readonly EnqueueItem[]): Promise<string[]> {
    const prepared = items.map((item) => this.#prepare(item.job, item.payload, item));
    if (this.tracer) return this.#tracedMany(this.tracer, prepared);
    const driver = this.driver;
    await Promise.all(prepared.map(async ({ spec, request }) => (await driver.publish(spec, request)) || this.#count(spec.name)));
    return prepared.map((p) => p.request.id);
  }

  /** One producer span for the batch; every message carries its context. */
  #tracedMany(tracer: MegaTracer, prepared: Array<{ spec: JobSpec; request: PublishRequest }>): Promise<string[]> {
    return tracer.run('job.enqueue_many', 'producer', { 'mega.app': this.app.name, 'mega.job.count': prepared.length }, async () => {
      const driver = this.driver;
      await Promise.all(
        prepared.map(async ({ spec, request }) => {
          request.trace = {};
          tracer.inject(request.trace);
          if (!(await driver.publish(spec, request))) this.#count(spec.name);
        }),
      );
      return prepared.map((p) => p.request.id);
    });
  }

  #count(job: string): void {
    this.enqueued.set(job, (this.enqueued.get(job) ?? 0) + 1);
  }

  #prepare(job: JobLike | string, payload: unknown, options: EnqueueOptions): { spec: JobSpec; request: PublishRequest } {
    const spec = this.spec(job);
    if (spec.validate && !spec.validate(payload)) {
      const errors = (spec.validate.errors ?? [])
        .slice(0, 10)
        .map((e) => ({ path: e.instancePath || '/', message: e.message ?? 'invalid' }));
      throw new ValidationError(
        'jobs.invalid_payload',
        `payload of job "${spec.name}" is invalid: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`,
        {
          details: { job: spec.name, errors },
        },
      );
    }
    const delayMs = options.delayMs ?? 0;
    if (!Number.isFinite(delayMs) || delayMs < 0) {
      throw new ValidationError('jobs.invalid_options', `delayMs must be a number >= 0, got ${String(options.delayMs)}`, {
        details: { job: spec.name },
      });
    }
    if (options.id !== undefined && (typeof options.id !== 'string' || options.id.length === 0 || options.id.length > 200)) {
      throw new ValidationError('jobs.invalid_options', 'id must be a non-empty string of at most 200 characters', {
        details: { job: spec.name },
      });
    }
    if (options.group !== undefined && (typeof options.group !== 'string' || options.group.length === 0)) {
      throw new ValidationError('jobs.invalid_options', 'group must be a non-empty string', { details: { job: spec.name } });
    }
    const data = JSON.stringify(payload ?? null);
    return { spec, request: { id: options.id ?? randomUUID(), data, group: options.group, delayMs: Math.round(delayMs) } };
  }

  /** Listens to `start`, `done`, `retry`, `fail` (with `phase`) or `dlq`; returns the unsubscribe. */
  on(event: JobEventName, listener: Listener): () => void {
    const list = this.#listeners.get(event) ?? [];
    list.push(listener);
    this.#listeners.set(event, list);
    return () => {
      const at = list.indexOf(listener);
      if (at >= 0) list.splice(at, 1);
    };
  }

  /** `fail` and `dlq` are always logged; the others do something only with a listener. */
  listens(event: JobEventName): boolean {
    return event === 'fail' || event === 'dlq' || (this.#listeners.get(event)?.length ?? 0) > 0;
  }

  emit(event: JobEventName, data: JobEventData): void {
    if (event === 'fail' || event === 'dlq') {
      this.log.warn(
        { job: data.job, id: data.id, attempt: data.attempt, phase: data.phase, err: data.error?.message },
        `jobs: ${event} ${data.job}`,
      );
    }
    const list = this.#listeners.get(event);
    if (!list) return;
    for (const listener of [...list]) {
      try {
        listener(data);
      } catch (error) {
        this.log.error({ err: error, event }, 'jobs: an event listener threw');
      }
    }
  }

  publishDlq(subject: string, letter: DeadLetter): Promise<void> {
    return this.driver.storeDeadLetter(subject, letter);
  }

  stats(): Promise<QueueStats> {
    return this.driver.stats();
  }

  readonly dlq = {
    list: (limit = 100): Promise<DlqRow[]> => this.driver.dlqList(limit),
    replay: (which: number | 'all'): Promise<number> => this.driver.dlqReplay(which),
    purge: (): Promise<number> => this.driver.dlqPurge(),
  };
}

export type { Delivery };

function nameOf(job: JobLike): string {
  return typeof job === 'function' ? ((job as { jobName?: string }).jobName ?? job.name) : (job as { name: string }).name;
}

/** A group name as one subject token (any string: base64url, so `.`/`*`/`>` never split it). */
export function groupToken(group: string): string {
  return Buffer.from(group).toString('base64url') || '_';
}

export function groupFromToken(token: string): string {
  return Buffer.from(token, 'base64url').toString();
}
