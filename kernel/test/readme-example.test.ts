import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootProject, stopAll, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';

/** The repository root. */
const REPO = join(import.meta.dirname, '../..');

/** The "Write your own plugin" example from kernel/README.md, verbatim. */
function readmeExample(): string {
  const readme = readFileSync(join(REPO, 'kernel/README.md'), 'utf8');
  const block = /<!-- example:start -->\s*```ts\n([\s\S]*?)```\s*<!-- example:end -->/.exec(readme);
  if (!block?.[1]) throw new Error('kernel/README.md lost its example block');
  return block[1];
}

const CHANNEL = `export class EchoChannel {
  ['echo.send'](sock: any, msg: any) { sock.send({ type: 'echo.reply', id: msg.id, payload: msg.payload }); }
  ['admin.reset'](sock: any) { sock.send({ type: 'admin.done' }); }
}
`;

afterEach(() => stopAll());

describe('kernel/README.md plugin example', () => {
  it('boots as a project plugin: wraps routes through the route hook, logs the final count, refuses blocked WS types', async () => {
    const dir = writeProject({
      'mega.config.ts': `export default {
  plugins: ['@mega/http', '@mega/ws', './plugins/response-time.ts'],
  responseTime: { blockedTypes: ['admin.reset'] },
};\n`,
      'plugins/response-time.ts': readmeExample(),
      'apps/web/app.config.ts': 'export default {};\n',
      'apps/web/channels/echo.ts': CHANNEL,
      'apps/web/routes/index.ts': `import { EchoChannel } from '../channels/echo.js';
export default (router: any) => {
  router.http.get('/hi', async () => ({ hi: true }));
  router.http.post('/echo', async (req: any) => req.body);
  router.ws('/ws/echo', EchoChannel);
};\n`,
    });
    const app = await bootProject(dir);

    // The boot tap at stage 1000 runs after every route exists: both HTTP routes, not the WS one.
    expect(await app.waitForLog('response-time: routes wrapped')).toMatchObject({ plugin: 'response-time', wrapped: 2 });
    const http = app.kernel.use<{ routes: Array<{ path: string; meta: Record<string, unknown> }> }>('http');
    expect(http.routes.find((r) => r.path === '/hi')?.meta).toEqual({ timed: true });

    const res = await app.inject('/hi');
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ data: { hi: true } });
    expect(res.headers['x-response-time']).toMatch(/^\d+\.\d{2}ms$/);
    expect((await app.inject('/echo', { json: { a: 1 } })).data).toEqual({ a: 1 });

    const ws = await app.ws('/ws/echo');
    expect(await ws.request('echo.send', { text: 'hi' })).toMatchObject({ type: 'echo.reply', payload: { text: 'hi' } });
    ws.send('admin.reset');
    expect((await ws.next('error')).payload).toMatchObject({ code: 'response-time.blocked' });
    expect(ws.messages.some((m) => m.type === 'admin.done')).toBe(false);
    expect(await ws.request('echo.send', { text: 'still open' })).toMatchObject({ payload: { text: 'still open' } });

    await app.stop();
    expect(app.findLogs('response-time: frames seen')[0]).toMatchObject({ frames: 3 });
  });

  it('applies its config defaults: the header name and no blocked types', async () => {
    const dir = writeProject({
      'mega.config.ts': `export default { plugins: ['@mega/http', './plugins/response-time.ts'] };\n`,
      'plugins/response-time.ts': readmeExample(),
      'app.config.ts': 'export default {};\n',
      'routes/index.ts': `export default (router: any) => { router.http.get('/', async () => 'ok'); };\n`,
    });
    const app = await bootProject(dir);
    expect((await app.inject('/')).headers['x-response-time']).toBeDefined();
    expect(app.findLogs('response-time: routes wrapped')[0]).toMatchObject({ wrapped: 1 });
  });
});
