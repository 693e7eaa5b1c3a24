/**
 * `mega generate worker` (contributed by @mega/workers): the real CLI writes workers/<name>.ts in a
 * temporary project, and that project boots and runs the generated task on a worker thread.
 */
import { createHash } from 'node:crypto';
import { bootProject, stopAll } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { generateOnce, generatorProject } from '../../../scripts/test/generate.js';
import { workerName } from '../src/generators.js';

describe('mega generate worker (contributed by @mega/workers)', () => {
  afterEach(stopAll);

  it('derives a name usable as ctx.workers.<name> and refuses names that do not start with a letter', () => {
    expect(['Hash', 'image_resize', 'PrimeCount', 'x-2'].map(workerName)).toEqual(['hash', 'imageResize', 'primeCount', 'x2']);
    expect(() => workerName('2fast')).toThrow(expect.objectContaining({ code: 'generate.invalid_name' }));
  });

  it('writes workers/hash.ts, which the project boots and runs off the main thread', async () => {
    const dir = generatorProject(['@mega/workers'], { 'app.config.ts': 'export default {};\n' });
    const source = await generateOnce(dir, '@mega/workers', 'worker', 'workers/hash.ts', ['Hash']);
    expect(source).toContain("from '@mega/workers/define'");

    const booted = await bootProject(dir);
    const hash = booted.kernel.use('workers').of('mega-test-project').hash;
    expect(await hash?.run({ text: 'abc' })).toEqual({ sha256: createHash('sha256').update('abc').digest('hex') });
    expect(hash?.stats()).toMatchObject({ completed: 1, failed: 0 });
  });

  it('writes into apps/<app>/workers with --app in a multi-app project', async () => {
    const dir = generatorProject(['@mega/workers'], { 'apps/media/app.config.ts': 'export default {};\n' });
    await generateOnce(dir, '@mega/workers', 'worker', 'apps/media/workers/imageResize.ts', ['image-resize', '--app', 'media']);
    const booted = await bootProject(dir);
    expect(Object.keys(booted.kernel.use('workers').of('media'))).toEqual(['imageResize']);
  });
});
