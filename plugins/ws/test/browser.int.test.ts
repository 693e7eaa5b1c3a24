/** Chromium (Debian's package, through playwright-core) against a real Mega server: envelope, mega.v1, permessage-deflate both ways. */

import type { Kernel } from '@mega/kernel';
import { bootProject } from '@mega/testing';
import type { WsConnection } from '@mega/ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LaunchedBrowser, launchChromium } from '../../../scripts/test/browser.js';
import { project } from './support.js';

const CHANNEL = `
export class Echo {
  ['echo.send'](sock: any, msg: any) { sock.send({ type: 'echo.reply', id: msg.id, payload: msg.payload }); }
}
`;
const ROUTES = `
import { Echo } from '../channel.js';
export default (router: any) => {
  router.http.get('/', async (_req: any, reply: any) => reply.type('text/html').send('<!doctype html><title>ws</title>'));
  router.ws('/z', Echo, { compression: true });
  router.ws('/z-nctx', Echo, { compression: { serverNoContextTakeover: true, clientNoContextTakeover: true } });
  router.ws('/plain', Echo);
};
`;

let kernel: Kernel;
let port: number;
let chrome: LaunchedBrowser;

beforeAll(async () => {
  const b = await bootProject(project({ 'channel.ts': CHANNEL, 'routes/ws.ts': ROUTES }));
  kernel = b.kernel;
  port = b.port;
  chrome = await launchChromium();
});
afterAll(async () => {
  await chrome?.close();
  await kernel?.stop();
});

/** Runs in the page: opens a socket, echoes every text, reports what came back and what was negotiated. */
async function roundTrip(path: string, texts: string[]) {
  const context = await chrome.browser.newContext();
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${port}/`);
  const result = await page.evaluate(
    async ({ url, texts }) => {
      const ws = new WebSocket(url, ['mega.v1']);
      await new Promise((ok, fail) => {
        ws.onopen = ok;
        ws.onerror = () => fail(new Error('socket error'));
      });
      const replies: string[] = [];
      const done = new Promise<void>((ok) => {
        ws.onmessage = (e) => {
          replies.push(JSON.parse(e.data as string).payload.text);
          if (replies.length === texts.length) ok();
        };
      });
      for (const [i, text] of texts.entries()) ws.send(JSON.stringify({ type: 'echo.send', id: `m${i}`, payload: { text } }));
      await done;
      const info = { protocol: ws.protocol, extensions: ws.extensions, replies };
      ws.close(1000, 'bye');
      await new Promise((r) => (ws.onclose = r));
      return info;
    },
    { url: `ws://127.0.0.1:${port}${path}`, texts },
  );
  await context.close();
  return result;
}

function sample(): string[] {
  const out: string[] = ['short', ''];
  for (let i = 0; i < 30; i++) out.push(`${'chromium talks to mega '.repeat(20 + i * 13)}${i}${'é😀'.repeat(i % 4)}`);
  out.push('z'.repeat(300_000));
  return out;
}

describe('Chromium <-> Mega', () => {
  it.each(['/z', '/z-nctx'])('negotiates permessage-deflate on %s and round-trips compressed frames both ways', async (path) => {
    const texts = sample();
    const seen: WsConnection[] = [];
    kernel.use('ws').onClose((c) => seen.push(c));
    const r = await roundTrip(path, texts);
    expect(r.protocol).toBe('mega.v1');
    expect(r.extensions).toBe(
      path === '/z' ? 'permessage-deflate' : 'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
    );
    expect(r.replies).toEqual(texts);
    const conn = seen.find((c) => c.path === path);
    expect(conn?.compressedIn).toBeGreaterThan(25); // Chromium compressed what it sent
    // We compressed exactly the envelopes of 1 KiB or more (the threshold).
    const big = texts.filter(
      (text, i) => Buffer.byteLength(JSON.stringify({ type: 'echo.reply', id: `m${i}`, payload: { text } })) >= 1024,
    );
    expect(big.length).toBeGreaterThan(20);
    expect(conn?.compressedOut).toBe(big.length);
    expect(conn?.closeCode).toBe(1000);
  });

  it('speaks plain frames where compression is off', async () => {
    const r = await roundTrip('/plain', ['a', 'b'.repeat(5000)]);
    expect(r.extensions).toBe('');
    expect(r.replies).toEqual(['a', 'b'.repeat(5000)]);
  });
});
