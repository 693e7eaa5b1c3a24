/**
 * `mega generate job <Name> [--app <app>]`: a `MegaJob` class with a payload schema in the app's
 * `jobs/` folder (the project root of a single-app project, apps/<app>/ otherwise).
 */
import type { Generator } from '@mega/kernel';
import { ValidationError } from '@mega/kernel';

/** `send_mail`, `SendMail`, `SendMailJob` -> ['send', 'mail']; a name not starting with a letter is refused. */
export function jobWords(raw: string): string[] {
  const words = raw.replace(/Job$/, '').split(/[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])/);
  const lower = words.filter(Boolean).map((w) => w.toLowerCase());
  if (/^[a-z]/.test(lower[0] ?? '')) return lower;
  throw new ValidationError('generate.invalid_name', `"${raw}" is not a usable job name: start with a letter (e.g. SendMail)`);
}

const jobSource = (cls: string) => `import { type JobContext, MegaJob } from '@mega/jobs';
import { type Static, Type } from '@mega/kernel';

// The payload, checked at enqueue (a bad one is refused with jobs.invalid_payload, 400).
const Payload = Type.Object({ id: Type.String({ minLength: 1 }) });
type Payload = Static<typeof Payload>;

// Enqueue from a controller, a schedule or another job:
//   const jobId = await ctx.jobs.enqueue(${cls}, { id: '42' }, { id: 'optional idempotency key' });
export class ${cls} extends MegaJob<Payload> {
  static override schema = Payload;
  static override retries = 3; // after the first attempt, with exponential backoff
  static override concurrency = 1; // runs of this job at once
  // static timeoutMs = 60_000; static groupConcurrency = 1; (see @mega/jobs's README)

  async run(payload: Payload, ctx: JobContext) {
    // Jobs run at least once: make this idempotent. ctx.source = { name, id, attempt, group, signal }.
    ctx.log.info({ job: ctx.source.name, jobId: ctx.source.id, attempt: ctx.source.attempt, payload }, '${cls} ran');
  }
}
`;

export const jobGenerator: Generator = {
  summary: 'a job class with a payload schema (jobs/<name>.ts)',
  async run(name, project, options) {
    const words = jobWords(name);
    const file = `${typeof options.app === 'string' ? `apps/${options.app}/` : ''}jobs/${words.join('-')}.ts`;
    const cls = words.map((w) => (w[0] as string).toUpperCase() + w.slice(1)).join('');
    if (!(await project.writeFileIfMissing(file, jobSource(cls)))) project.log(`${file} exists; left as it is`);
  },
};
