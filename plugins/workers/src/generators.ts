/**
 * `mega generate worker <name> [--app <app>]`: a task file in the app's `workers/` folder (the
 * project root of a single-app project, apps/<app>/ otherwise). The file name is the worker's name
 * in `ctx.workers`, so it is kept as one word where it can be: `Hash` -> workers/hash.ts.
 */
import type { Generator } from '@mega/kernel';
import { ValidationError } from '@mega/kernel';

/** `Hash` -> `hash`, `ImageResize` / `image_resize` -> `imageResize` (a plain property of ctx.workers). */
export function workerName(raw: string): string {
  const [head = '', ...rest] = raw.split(/[^A-Za-z0-9]+/).filter(Boolean);
  if (!/^[A-Za-z]/.test(head))
    throw new ValidationError('generate.invalid_name', `"${raw}" is not a usable worker name: start with a letter (e.g. Hash)`);
  return head[0]?.toLowerCase() + head.slice(1) + rest.map((w) => w[0]?.toUpperCase() + w.slice(1)).join('');
}

const workerSource = (name: string) => `import { createHash } from 'node:crypto';
// '@mega/workers/define' imports nothing: '@mega/workers' would load the kernel into every thread.
import { defineWorker } from '@mega/workers/define';

// Runs off the main thread: const out = await ctx.workers.${name}.run({ text: 'abc' }, { timeoutMs: 2000 });
// Type the name for ctx.workers (in any module of the app that is not in workers/):
//   import type ${name} from './workers/${name}.js';
//   declare module '@mega/workers' { interface WorkerRegistry { ${name}: WorkerHandleFor<typeof ${name}> } }
export default defineWorker({
  // mode: 'process', size: 2, queue: 100, timeoutMs: 5000, (default: the app's workers config)
  run(data: { text: string }) {
    // Replace with the CPU-heavy work; data and the result cross by structured clone.
    return { sha256: createHash('sha256').update(data.text).digest('hex') };
  },
});
`;

export const workerGenerator: Generator = {
  summary: 'a CPU task run on worker threads, ctx.workers.<name>.run(data) (workers/<name>.ts)',
  async run(raw, project, options) {
    const name = workerName(raw);
    const path = `${typeof options.app === 'string' ? `apps/${options.app}/` : ''}workers/${name}.ts`;
    if (!(await project.writeFileIfMissing(path, workerSource(name)))) project.log(`${path} exists; left as it is`);
  },
};
