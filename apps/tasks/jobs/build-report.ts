import { type JobContext, MegaJob } from '@mega/jobs';
import { type Static, Type } from '@mega/kernel';
import type { WorkerHandleFor } from '@mega/workers';
import { updateReport } from '../lib/reports.js';
import type primes from '../workers/primes.js';

// Types ctx.workers.primes (workers are named after their file in workers/).
declare module '@mega/workers' {
  interface WorkerRegistry {
    primes: WorkerHandleFor<typeof primes>;
  }
}

// Checked at enqueue: POST /reports with a bad body is refused with jobs.invalid_payload (400).
const Payload = Type.Object({ limit: Type.Integer({ minimum: 2, maximum: 10_000_000 }) }, { additionalProperties: false });
type Payload = Static<typeof Payload>;

/** Counts the primes up to `limit` on a worker thread and stores the result under the job's id. */
export class BuildReport extends MegaJob<Payload> {
  static override schema = Payload;
  static override concurrency = 2;
  static override retries = 2;
  static override backoff = { initialMs: 200, maxMs: 2000 };
  static override timeoutMs = 60_000;

  async run({ limit }: Payload, ctx: JobContext) {
    const { id, attempt, signal } = ctx.source;
    updateReport(id, { status: 'running', attempts: attempt });
    const started = performance.now();
    try {
      // Off the main thread: HTTP keeps answering while the sieve runs.
      const count = await ctx.workers.primes.run({ limit }, { signal });
      const result = { primes: count, ms: Math.round(performance.now() - started) };
      updateReport(id, { status: 'done', result, finishedAt: new Date().toISOString() });
      ctx.log.info({ report: id, limit, ...result }, 'report built');
    } catch (error) {
      // The last attempt: the job goes to the dead-letter queue, the report says so.
      if (attempt > BuildReport.retries) updateReport(id, { status: 'failed', error: (error as Error).message });
      throw error;
    }
  }
}
