/** Loads `apps/<app>/<jobs.dir>/*.{ts,js,mjs,mts}`: every exported job class or `defineJob` value. */
import { existsSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { App } from '@mega/kernel';
import { ConfigError } from '@mega/kernel';
import { createJiti } from 'jiti';
import type { JobSpec } from './job.js';
import { isJob, toSpec } from './job.js';

const jiti = createJiti(import.meta.url, { interopDefault: false });
const FILE = /^(?!.*\.(d|test|spec)\.[mc]?[jt]s$).*\.(ts|mts|js|mjs)$/;

export async function loadJobs(app: App, dir: string, projectDir: string, defaults: { timeoutMs: number }): Promise<JobSpec[]> {
  const root = join(app.dir, dir);
  if (!existsSync(root)) return [];
  const specs = new Map<string, { spec: JobSpec; file: string }>();
  const files = readdirSync(root, { recursive: true, encoding: 'utf8' })
    .filter((f) => FILE.test(f))
    .sort();
  for (const name of files) {
    const file = join(root, name);
    const shown = relative(projectDir, file);
    let mod: Record<string, unknown>;
    try {
      mod = (await jiti.import(file)) as Record<string, unknown>;
    } catch (error) {
      throw new ConfigError('jobs.load_failed', `failed to load job file ${shown}: ${(error as Error).message.split('\n')[0]}`, {
        details: { app: app.name, file: shown },
        cause: error,
      });
    }
    for (const value of new Set(Object.values(mod ?? {}))) {
      if (!isJob(value)) continue;
      const spec = toSpec(value, defaults, shown);
      const seen = specs.get(spec.name);
      if (seen && seen.spec.source !== value) {
        throw new ConfigError('jobs.duplicate_job', `app "${app.name}" declares job "${spec.name}" twice (${seen.file} and ${shown})`, {
          details: { app: app.name, job: spec.name, files: [seen.file, shown] },
        });
      }
      specs.set(spec.name, { spec, file: shown });
    }
  }
  return [...specs.values()].map((s) => s.spec);
}
