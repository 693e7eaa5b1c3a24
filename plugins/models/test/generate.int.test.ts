/**
 * `mega generate model` (contributed by @mega/models) through the real CLI: the model file boots in
 * a project on embedded PGlite, and the test written beside it passes when vitest runs it there.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { bootProject, stopAll } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { generatorProject, megaGenerate } from '../../../scripts/test/generate.js';
import { modelWords, parseFields } from '../src/generators.js';
import type { ModelsService } from '../src/index.js';

const exec = promisify(execFile);
/** `mega generate model ...args` lists the kind, creates `file` (and the test), and leaves both alone when run again. */
async function generateOnce(dir: string, file: string, args: string[]): Promise<string> {
  expect(await megaGenerate(dir)).toMatch(/\n\s+model\s+.*\(@mega\/models\)/);
  const first = await megaGenerate(dir, 'model', ...args);
  expect(first).toMatch(new RegExp(`create\\s+${file.replace(/[.*/]/g, '\\$&')}`));
  expect(first).toMatch(/create\s+test\/[a-z-]+-model\.test\.ts/);
  const source = readFileSync(join(dir, file), 'utf8');
  const again = await megaGenerate(dir, 'model', ...args);
  expect(again).not.toMatch(/create\s/);
  expect(again).toContain(file);
  expect(readFileSync(join(dir, file), 'utf8')).toBe(source);
  return source;
}

const VITEST = join(import.meta.dirname, '..', '..', '..', 'node_modules', 'vitest', 'vitest.mjs');

describe('mega generate model (contributed by @mega/models)', () => {
  afterEach(stopAll);

  it('derives names and reads --fields', () => {
    expect(['BlogPost', 'blog_post', 'order-item'].map(modelWords)).toEqual([
      ['blog', 'post'],
      ['blog', 'post'],
      ['order', 'item'],
    ]);
    expect(parseFields('title:string, body:text?')).toEqual([
      { name: 'title', type: 'string', nullable: false },
      { name: 'body', type: 'text', nullable: true },
    ]);
    expect(() => parseFields('price:money')).toThrow(expect.objectContaining({ code: 'generate.invalid_fields' }));
    expect(() => modelWords('1st')).toThrow(expect.objectContaining({ code: 'generate.invalid_name' }));
  });

  it('writes models/<name>.ts that boots as ctx.models.<Name>, and a test that passes', async () => {
    const dir = generatorProject(['@mega/db-postgres', '@mega/models'], {
      'app.config.ts': 'export default {};\n',
      'mega.config.ts':
        "export default { plugins: ['@mega/db-postgres', '@mega/models'], services: { dbs: { primary: { driver: 'pglite', url: 'memory://' } } } };\n",
    });
    const source = await generateOnce(dir, 'models/blog-post.ts', [
      'BlogPost',
      '--fields',
      'title:string,body:text?,views:integer,published:boolean,at:timestamp?',
    ]);
    expect(source).toContain("export const BlogPost = defineModel({\n  name: 'BlogPost',\n  table: 'blog_posts',");
    expect(source).toContain('body: field.text().nullable(),');
    expect(source).toContain('BlogPost: typeof BlogPost;');

    const booted = await bootProject(dir);
    const models = booted.kernel.use<ModelsService>('models');
    expect(Object.keys(models.bound(booted.kernel.apps[0]?.name as string))).toEqual(['BlogPost']);

    const { stdout } = await exec(process.execPath, [VITEST, 'run', 'test/blog-post-model.test.ts', '--reporter', 'verbose'], { cwd: dir });
    expect(stdout).toMatch(/2 passed/);
  }, 120_000);

  it('writes into apps/<app>/models with --app and refuses bad names', async () => {
    const dir = generatorProject(['@mega/models'], { 'apps/blog/app.config.ts': 'export default {};\n' });
    await generateOnce(dir, 'apps/blog/models/comment.ts', ['Comment', '--app', 'blog']);
    const refused = await megaGenerate(dir, 'model', '9lives').catch((e: { code: number; stderr: string }) => e);
    expect(refused).toMatchObject({ code: 1, stderr: expect.stringContaining('generate.invalid_name') });
  });
});
