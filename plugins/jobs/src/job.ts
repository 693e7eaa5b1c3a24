/**
 * Job definitions: `class X extends MegaJob { static concurrency; ...; run(payload, ctx) }` or
 * `defineJob({ name, run, ... })`, checked once at boot into a frozen `JobSpec`. Jobs are found by a
 * brand (`Symbol.for('mega.job')`), not `instanceof`: a job file loaded through jiti may see another
 * copy of this module.
 */
import type { MegaContext, TSchema } from '@mega/kernel';
import { ConfigError } from '@mega/kernel';
import { Ajv, type ValidateFunction } from 'ajv';

export const JOB_BRAND = Symbol.for('mega.job');

export interface Backoff {
  /** First retry delay (ms); doubles per attempt. */
  initialMs: number;
  /** Cap of one delay (ms); never above 30 s (a nak delay longer than that only parks the job). */
  maxMs: number;
}

/** What `ctx.source` is while a job runs (`ctx` is a regular MegaContext: `ctx.db()`, `ctx.bus`, ...). */
export interface JobRun {
  readonly kind: 'job';
  readonly name: string;
  readonly id: string;
  /** 1 on the first delivery; counts redeliveries after a crash too. */
  readonly attempt: number;
  readonly group: string | undefined;
  /** Aborted when the run times out or the worker stops: long jobs should pass it on. */
  readonly signal: AbortSignal;
}

export type JobContext = MegaContext & { readonly source: JobRun };

/** Static knobs a job class may declare. */
export interface JobStatics {
  /** Jobs of this class run at once (JetStream: `max_ack_pending` of the durable consumer). Default 1. */
  concurrency?: number;
  /** Retries after the first attempt (exponential backoff with jitter). Default 3. */
  retries?: number;
  backoff?: Partial<Backoff>;
  /** Run timeout (ms); `0` = unlimited. Default `jobs.timeoutMs` (30 min). */
  timeoutMs?: number;
  /** With `group` on enqueue: at most this many jobs of one group run at once, across all workers. */
  groupConcurrency?: number;
  /** JSON Schema (TypeBox or plain) the payload must satisfy at enqueue. */
  schema?: TSchema | Record<string, unknown>;
  /** Name used on enqueue and in subjects. Default: the class name. */
  jobName?: string;
}

/** Base class of a job: subclass it in `apps/<app>/jobs/*.ts`. */
export abstract class MegaJob<P = unknown> {
  static readonly [JOB_BRAND] = true;
  static concurrency?: number;
  static retries?: number;
  static backoff?: Partial<Backoff>;
  static timeoutMs?: number;
  static groupConcurrency?: number;
  static schema?: TSchema | Record<string, unknown>;
  static jobName?: string;
  abstract run(payload: P, ctx: JobContext): unknown;
}

export type JobClass = (abstract new () => MegaJob) & JobStatics;

export interface JobDefinition<P = unknown> extends JobStatics {
  name: string;
  run(payload: P, ctx: JobContext): unknown;
}

/** A job without a class: `export const sendMail = defineJob({ name: 'SendMail', run })`. */
export function defineJob<P = unknown>(definition: JobDefinition<P>): JobDefinition<P> & { readonly [JOB_BRAND]: true } {
  return Object.freeze({ ...definition, [JOB_BRAND]: true as const });
}

export type JobLike = JobClass | (JobDefinition & { readonly [JOB_BRAND]: true });

export function isJob(value: unknown): value is JobLike {
  return (
    (typeof value === 'function' || (typeof value === 'object' && value !== null)) && (value as Record<symbol, unknown>)[JOB_BRAND] === true
  );
}

/** The checked, frozen form every driver works with. */
export interface JobSpec {
  readonly name: string;
  readonly concurrency: number;
  readonly retries: number;
  readonly backoff: Backoff;
  /** 0 = unlimited. */
  readonly timeoutMs: number;
  readonly groupConcurrency: number | undefined;
  readonly validate: ValidateFunction | undefined;
  readonly run: (payload: unknown, ctx: JobContext) => unknown;
  readonly source: JobLike;
}

export const MAX_NAK_DELAY_MS = 30_000;
const DEFAULT_BACKOFF: Backoff = { initialMs: 1000, maxMs: 30_000 };
const ajv = new Ajv({ allErrors: true, strict: false });
const NAME = /^[A-Za-z0-9_-]+$/;

function invalid(where: string, message: string): ConfigError {
  return new ConfigError('jobs.invalid_job', `${where}: ${message}`, { details: { job: where } });
}

function integer(where: string, key: string, value: unknown, fallback: number, min: number): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw invalid(
      where,
      `static ${key} must be an integer >= ${min}${key === 'timeoutMs' ? ' (0 = unlimited)' : ''}, got ${String(value)}`,
    );
  }
  return value;
}

/** Checks a job's statics (bad values stop boot with `jobs.invalid_job`) and freezes them. */
export function toSpec(job: JobLike, defaults: { timeoutMs: number }, file?: string): JobSpec {
  const isClass = typeof job === 'function';
  const name = (isClass ? ((job as JobClass).jobName ?? job.name) : (job as JobDefinition).name) ?? '';
  const where = `job "${name}"${file ? ` (${file})` : ''}`;
  if (!NAME.test(name)) throw invalid(where, 'a job name is letters, digits, "_" and "-" (it becomes a subject token)');
  const s = job as JobStatics;
  const backoff = { ...DEFAULT_BACKOFF, ...(s.backoff ?? {}) };
  backoff.initialMs = integer(where, 'backoff.initialMs', backoff.initialMs, 1000, 0);
  backoff.maxMs = Math.min(MAX_NAK_DELAY_MS, integer(where, 'backoff.maxMs', backoff.maxMs, 30_000, 0));
  let validate: ValidateFunction | undefined;
  if (s.schema !== undefined) {
    try {
      validate = ajv.compile(s.schema as object);
    } catch (error) {
      throw invalid(where, `static schema does not compile: ${(error as Error).message}`);
    }
  }
  let run: JobSpec['run'];
  if (isClass) {
    const Ctor = job as unknown as new () => MegaJob;
    if (typeof Ctor.prototype?.run !== 'function') throw invalid(where, 'a job class needs an async run(payload, ctx) method');
    const instance = new Ctor();
    run = (payload, ctx) => instance.run(payload, ctx);
  } else {
    const def = job as JobDefinition;
    if (typeof def.run !== 'function') throw invalid(where, 'defineJob needs run(payload, ctx)');
    run = (payload, ctx) => def.run(payload, ctx);
  }
  const groupConcurrency = s.groupConcurrency === undefined ? undefined : integer(where, 'groupConcurrency', s.groupConcurrency, 1, 1);
  return Object.freeze({
    name,
    concurrency: integer(where, 'concurrency', s.concurrency, 1, 1),
    retries: integer(where, 'retries', s.retries, 3, 0),
    backoff: Object.freeze(backoff),
    timeoutMs: integer(where, 'timeoutMs', s.timeoutMs, defaults.timeoutMs, 0),
    groupConcurrency,
    validate,
    run,
    source: job,
  });
}

/** Delay before retry `attempt + 1`: exponential, capped, with "equal jitter" (half fixed, half random). */
export function backoffDelay(backoff: Backoff, attempt: number, random = Math.random): number {
  const base = Math.min(backoff.maxMs, MAX_NAK_DELAY_MS, backoff.initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(base / 2 + random() * (base / 2));
}
