/**
 * `mega generate job` (contributed by @mega/jobs): the real CLI writes jobs/<name>.ts in a temporary
 * project, and that project boots and runs the generated job on the memory driver.
 */
import { bootProject, stopAll } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { generateOnce, generatorProject, megaGenerate } from '../../../scripts/test/generate.js';
import { jobWords } from '../src/generators.js';
import type { JobsService } from '../src/index.js';
import { poll } from './fixtures.js';

describe('mega generate job (contributed by @mega/jobs)', () => {
  afterEach(stopAll);

  it('derives the file and class names', () => {
    const words = ['SendMail', 'send_mail', 'BuildReportJob'].map(jobWords);
    expect(words).toEqual([
      ['send', 'mail'],
      ['send', 'mail'],
      ['build', 'report'],
    ]);
  });

  it('writes jobs/send-mail.ts, which boots, validates its payload and runs', async () => {
    const dir = generatorProject(['@mega/jobs'], { 'app.config.ts': 'export default {};\n' });
    const source = await generateOnce(dir, '@mega/jobs', 'job', 'jobs/send-mail.ts', ['SendMail']);
    expect(source).toContain('export class SendMail extends MegaJob<Payload>');

    const booted = await bootProject(dir);
    const service: JobsService = booted.kernel.use('jobs');
    const jobs = service.app();
    expect(service.driver).toBe('memory');
    await expect(jobs.enqueue('SendMail', { id: '' })).rejects.toMatchObject({ code: 'jobs.invalid_payload', status: 400 });
    const done: string[] = [];
    jobs.on('done', (e) => void done.push(e.id));
    const id = await jobs.enqueue('SendMail', { id: '42' });
    await poll(() => done.includes(id), 5000, 'the generated job to be done');
    const ran = booted.findLogs('SendMail ran');
    expect(ran).toHaveLength(1);
    expect(ran[0]).toMatchObject({ jobId: id, attempt: 1, payload: { id: '42' } });
  });

  it('writes into apps/<app>/jobs with --app in a multi-app project and refuses a name not starting with a letter', async () => {
    const dir = generatorProject(['@mega/jobs'], { 'apps/mail/app.config.ts': 'export default {};\n' });
    await generateOnce(dir, '@mega/jobs', 'job', 'apps/mail/jobs/welcome-email.ts', ['welcome-email', '--app', 'mail']);
    // A name that does not start with a letter: the CLI exits non-zero and writes nothing.
    const refused = await megaGenerate(dir, 'job', '1st', '--app', 'mail').catch((e: { code: number; stderr: string }) => e);
    expect(refused).toMatchObject({ code: 1, stderr: expect.stringContaining('generate.invalid_name') });
    const booted = await bootProject(dir);
    expect([...booted.kernel.use('jobs').app('mail').specs.keys()]).toEqual(['WelcomeEmail']);
  });
});
