import { randomUUID } from 'node:crypto';
import type { Handler } from '@mega/http';
import { NotFoundError } from '@mega/kernel';
import { BuildReport } from '../jobs/build-report.js';
import { addReport, cleanups, getReport, listReports, removeReport } from '../lib/reports.js';

export class ReportsController {
  /** POST /reports { limit }: enqueues BuildReport and answers 202 with the job id at once. */
  static create: Handler = async (req, reply, ctx) => {
    const body = req.body as { limit?: unknown };
    // The report exists before the job can start; the job id is the report id.
    const id = randomUUID();
    addReport(id, Number(body.limit));
    try {
      await ctx.jobs.enqueue(BuildReport, body, { id });
    } catch (error) {
      removeReport(id); // e.g. jobs.invalid_payload (400): the job's schema refused the body
      throw error;
    }
    reply.code(202).header('location', `/reports/${id}`);
    return { id, status: 'queued' };
  };

  /** GET /reports/:id: the report's status, and its result once done. */
  static show: Handler = async (req) => {
    const { id } = req.params as { id: string };
    const report = getReport(id);
    if (!report) throw new NotFoundError('reports.not_found', `no report "${id}"`);
    return report;
  };

  /** GET /reports: every report kept, the jobs' counters and what the scheduled cleanup did. */
  static index: Handler = async (_req, _reply, ctx) => ({ reports: listReports(), cleanups, jobs: await ctx.jobs.stats() });
}
