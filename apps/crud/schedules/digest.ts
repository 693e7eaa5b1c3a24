import type { MegaContext } from '@mega/kernel';
import { MegaSchedule, type ScheduleRun } from '@mega/scheduler';
import { recordDigest } from '../lib/digest.js';

/**
 * Counts users and notes once per tick (every minute; CRUD_DIGEST_CRON overrides, the tests use
 * every second). With Redis configured the tick runs once across every process of the app.
 */
export class Digest extends MegaSchedule {
  static override cron = process.env.CRUD_DIGEST_CRON ?? '0 * * * * *';

  async run(ctx: MegaContext, run: ScheduleRun) {
    const [users, notes] = await Promise.all([ctx.models.User.count(), ctx.models.Note.count()]);
    const digest = recordDigest({ users, notes, at: new Date().toISOString(), tick: run.tick.toISOString() });
    ctx.log.info(digest, 'digest');
  }
}
