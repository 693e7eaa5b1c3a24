// The reports, in this process's memory (like the memory jobs driver, nothing survives a restart;
// a real app would keep them in its database through ctx.db()).

export type ReportStatus = 'queued' | 'running' | 'done' | 'failed';

export interface Report {
  id: string;
  status: ReportStatus;
  limit: number;
  attempts: number;
  createdAt: string;
  finishedAt?: string;
  result?: { primes: number; ms: number };
  error?: string;
}

const reports = new Map<string, Report>();

/** What the Cleanup job did so far (GET /reports shows it). */
export const cleanups = { runs: 0, removed: 0, lastAt: undefined as string | undefined };

export function addReport(id: string, limit: number): Report {
  const report: Report = { id, status: 'queued', limit, attempts: 0, createdAt: new Date().toISOString() };
  reports.set(id, report);
  return report;
}

export const getReport = (id: string): Report | undefined => reports.get(id);

export const listReports = (): Report[] => [...reports.values()];

export function updateReport(id: string, change: Partial<Omit<Report, 'id'>>): void {
  const report = reports.get(id);
  if (report) Object.assign(report, change);
}

export const removeReport = (id: string): boolean => reports.delete(id);
