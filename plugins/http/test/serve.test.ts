import type { HttpServer } from '@mega/http';
import { createLogger, type Kernel, loadKernel } from '@mega/kernel';
import { writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';

describe('processes that serve no traffic (mega worker, mega scheduler)', () => {
  let kernel: Kernel | undefined;
  afterEach(() => kernel?.stop());

  it('with serve: false, @mega/http registers routes but never listens', async () => {
    const dir = writeProject({
      'mega.config.ts': "export default { plugins: ['@mega/http'], server: { port: 0, host: '127.0.0.1' } };\n",
      'app.config.ts': 'export default {};\n',
      'routes/index.ts': "export default (router: any) => { router.http.get('/hi', async () => ({ hi: true })); };\n",
    });
    kernel = await loadKernel({ dir, serve: false, logger: createLogger({ level: 'silent' }) });
    await kernel.start();
    const http = kernel.use<HttpServer>('http');
    expect(kernel.serving).toBe(false);
    expect(http.routes.map((r) => r.path)).toContain('/hi');
    expect(http.fastify.server.listening).toBe(false);
  });
});
