import { type JobContext, MegaJob } from '@mega/jobs';
import { type Static, Type } from '@mega/kernel';
import { cleanups, listReports, removeReport } from '../lib/reports.js';

const Payload = Type.Object({ maxAgeMs: Type.Integer({ minimum: 0 }) }, { additionalProperties: false });
type Payload = Static<typeof Payload>;

/** Forgets finished reports older than `maxAgeMs`; enqueued by the Housekeeping schedule. */
export class Cleanup extends MegaJob<Payload> {
  static override schema = Payload;
  static override retries = 1;

  async run({ maxAgeMs }: Payload, ctx: JobContext) {
    const before = Date.now() - maxAgeMs;
    let removed = 0;
    for (const report of listReports()) {
      if (report.finishedAt && Date.parse(report.finishedAt) < before && removeReport(report.id)) removed++;
    }
    cleanups.runs++;
    cleanups.removed += removed;
    cleanups.lastAt = new Date().toISOString();
    ctx.log.info({ removed }, 'cleanup done');
  }
}
