import type { MegaContext } from '@mega/kernel';
import { MegaSchedule, type ScheduleRun } from '@mega/scheduler';

/**
 * A schedule that simply enqueues a job: the run itself is not retried, the job is (with backoff,
 * then the dead-letter queue). Every minute by default; TASKS_CLEANUP_CRON overrides it (the test
 * uses every second). The job id is keyed by the tick, so a tick enqueues one Cleanup at most.
 */
export class Housekeeping extends MegaSchedule {
  static override cron = process.env.TASKS_CLEANUP_CRON ?? '0 * * * * *';

  async run(ctx: MegaContext, run: ScheduleRun) {
    const maxAgeMs = Number(process.env.TASKS_REPORT_MAX_AGE_MS ?? 10 * 60_000);
    await ctx.jobs.enqueue('Cleanup', { maxAgeMs }, { id: `cleanup:${run.tick.toISOString()}` });
  }
}
