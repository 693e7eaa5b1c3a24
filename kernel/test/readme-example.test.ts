import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO, writeProject } from '../../scripts/test/project.js';
import type { Kernel } from '../src/kernel.js';
import { loadKernel } from '../src/kernel.js';
import { createLogger } from '../src/logger.js';

/** The "Write your own plugin" example from kernel/README.md, verbatim. */
function readmeExample(): string {
  const readme = readFileSync(join(REPO, 'kernel/README.md'), 'utf8');
  const block = /<!-- example:start -->\s*```ts\n([\s\S]*?)```\s*<!-- example:end -->/.exec(readme);
  if (!block?.[1]) throw new Error('kernel/README.md lost its example block');
  return block[1];
}

describe('kernel/README.md plugin example', () => {
  let kernel: Kernel | undefined;
  afterAll(() => kernel?.stop());

  it('boots as a project plugin, wraps routes through the route hook and adds its header', async () => {
    const dir = writeProject({
      'mega.config.ts': `export default { plugins: ['@mega/http', './plugins/response-time.ts'], server: { port: 0, host: '127.0.0.1' } };\n`,
      'plugins/response-time.ts': readmeExample(),
      'apps/web/app.config.ts': 'export default {};\n',
      'apps/web/routes/index.ts': `export default (router: any) => { router.http.get('/hi', async () => ({ hi: true })); };\n`,
    });
    kernel = await loadKernel({ dir, logger: createLogger({ level: 'silent' }) });
    await kernel.start();
    const http = kernel.use<{ port: number; routes: Array<{ path: string; meta: Record<string, unknown> }> }>('http');
    expect(http.routes.find((r) => r.path === '/hi')?.meta).toEqual({ timed: true });
    const res = await fetch(`http://127.0.0.1:${http.port}/hi`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ data: { hi: true } });
    expect(res.headers.get('x-response-time')).toMatch(/^\d+\.\d{2}ms$/);
  });
});
