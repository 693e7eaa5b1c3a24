/**
 * apps/chat end to end: `mega start` in a copy of the app (real process, real PostgreSQL), two
 * Chromium contexts (Debian's chromium via playwright-core) chatting over the encrypted namespace,
 * and a Node client checking the last-30 replay. Screenshot: .artifacts/chat.png.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type InjectInit, inject } from '@mega/testing';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { AspClient } from '../../../plugins/asp/src/client.js';
import { ARTIFACTS, type LaunchedBrowser, launchChromium } from '../../../scripts/test/browser.js';
import { freePort, runMega, type Watched } from '../../../scripts/test/procs.js';
import { serviceEnv } from '../../../scripts/test/service-env.js';

/** The page-side global the evaluate callbacks use (this test program has no DOM lib). */
declare const document: { querySelectorAll(selector: string): Iterable<{ textContent: string | null }> };

const REPO = join(import.meta.dirname, '../../..');
const APP = join(REPO, 'apps/chat');
const RUN = Math.random().toString(36).slice(2, 7);

let dir: string;
let mega: Watched | undefined;
let base: string;
let port: number;
let chrome: LaunchedBrowser;

const http = (path: string, init?: InjectInit) => inject(port, path, init);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mega-chat-'));
  for (const entry of ['mega.config.ts', 'app.config.ts', 'package.json', 'routes', 'controllers', 'channels', 'lib', 'public']) {
    cpSync(join(APP, entry), join(dir, entry), { recursive: true });
  }
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  mega = runMega(['start', '--port', String(port)], dir, {
    NODE_ENV: 'development',
    CHAT_DATABASE_URL: serviceEnv().DATABASE_URL,
    MEGA_ASP_SECRET: 'chat-test-asp-master-secret-0123456789abcdef',
    MEGA_SESSION_SECRET: 'chat-test-session-secret-0123456789abcdef',
    MEGA_SECURITY_SECRET: 'chat-test-security-secret-0123456789abcdef',
  });
  await mega.waitFor(/ready in \d+ ms/, 60_000);
  expect((await http('/health')).status).toBe(200);
  chrome = await launchChromium();
}, 120_000);

afterAll(async () => {
  await chrome?.close();
  await mega?.kill('SIGTERM');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function register(page: Page, name: string): Promise<void> {
  await page.goto(`${base}/`);
  await page.fill('#register-name', name);
  await page.fill('#register-password', 'correct horse battery');
  await page.click('#register-submit');
  await page.waitForURL(`${base}/chat`);
  await page.waitForSelector('#status[data-state="open"]');
}

const members = (page: Page) => page.$$eval('#members li', (els) => els.map((e) => e.textContent));
const texts = (page: Page) => page.$$eval('#messages .msg .text', (els) => els.map((e) => e.textContent));

describe('apps/chat in Chromium', () => {
  it('two users log in, chat both ways over the encrypted namespace, see each other, and see a leave', async () => {
    const alice = `alice-${RUN}`;
    const bob = `bob-${RUN}`;
    const ctxA = await chrome.browser.newContext();
    const ctxB = await chrome.browser.newContext();
    const pageA = await ctxA.newPage();
    const pageB = await ctxB.newPage();
    // Every frame on the wire must be sealed.
    const wire: string[] = [];
    for (const page of [pageA, pageB]) {
      page.on('websocket', (ws) => {
        ws.on('framesent', (f) => wire.push(String(f.payload)));
        ws.on('framereceived', (f) => wire.push(String(f.payload)));
      });
    }
    await register(pageA, alice);
    await register(pageB, bob);

    await pageA.waitForFunction((n) => [...document.querySelectorAll('#notices li')].some((li) => li.textContent === `${n} joined`), bob);
    expect(await members(pageA)).toEqual([alice, bob].sort());
    expect(await members(pageB)).toEqual([alice, bob].sort());

    await pageA.fill('#text', `hello from ${alice}`);
    await pageA.click('#send');
    // The page seals with WebCrypto (async): wait until Alice's message went round before Bob sends,
    // or Bob's may overtake it and the order below would test the browsers' crypto timing.
    await pageB.waitForFunction(
      (a) => [...document.querySelectorAll('#messages .msg .text')].some((e) => e.textContent === `hello from ${a}`),
      alice,
    );
    await pageB.fill('#text', `hi from ${bob}`);
    await pageB.press('#text', 'Enter');
    for (const page of [pageA, pageB]) {
      await page.waitForFunction(
        ([a, b]) => {
          const t = [...document.querySelectorAll('#messages .msg .text')].map((e) => e.textContent);
          return t.includes(`hello from ${a}`) && t.includes(`hi from ${b}`);
        },
        [alice, bob],
      );
    }
    const seenByB = await texts(pageB);
    expect(seenByB.indexOf(`hello from ${alice}`)).toBeLessThan(seenByB.indexOf(`hi from ${bob}`));

    await ctxB.close();
    await pageA.waitForFunction((n) => [...document.querySelectorAll('#notices li')].some((li) => li.textContent === `${n} left`), bob);
    expect(await members(pageA)).toEqual([alice]);

    expect(wire.length).toBeGreaterThan(6);
    for (const frame of wire) expect(frame).toMatch(/^E:[A-Za-z0-9_-]+$/);
    mkdirSync(ARTIFACTS, { recursive: true });
    await pageA.screenshot({ path: join(ARTIFACTS, 'chat.png'), fullPage: true });
    await ctxA.close();
  });
});

describe('apps/chat over HTTP and WS from Node', () => {
  /** Registers through the HTML form (CSRF token + cookie) and returns the session cookie and ASP key. */
  async function signUp(name: string) {
    const home = await http('/');
    const csrfCookie = String(home.headers['set-cookie']).split(';')[0] as string;
    const token = /name="_csrf" value="([^"]+)"/.exec(home.text)?.[1] as string;
    const form = new URLSearchParams({ _csrf: token, name, password: 'correct horse battery' }).toString();
    const headers = { cookie: csrfCookie, 'content-type': 'application/x-www-form-urlencoded', origin: base };
    const missing = await http('/register', {
      method: 'POST',
      body: new URLSearchParams({ name, password: 'x'.repeat(9) }).toString(),
      headers,
    });
    expect([missing.status, JSON.parse(missing.text).error.code]).toEqual([403, 'csrf.missing_token']);
    const res = await http('/register', { method: 'POST', body: form, headers });
    expect(res.status).toBe(303);
    const session = ([] as string[]).concat(res.headers['set-cookie'] ?? []).find((c) => c.startsWith('chat_sid=')) as string;
    const cookie = `${csrfCookie}; ${session.split(';')[0]}`;
    const me = JSON.parse((await http('/api/me', { headers: { cookie } })).text).data;
    expect(me.store).toBe('database');
    return { cookie, key: me.keys.ws as string };
  }

  async function connect(cookie: string, key: string) {
    const asp = await AspClient.create(key);
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/chat`, ['mega.v1'], { headers: { cookie } });
    const inbox: Array<Record<string, any>> = [];
    let wake: (() => void) | undefined;
    let chain = Promise.resolve();
    ws.on('message', (data) => {
      chain = chain.then(async () => {
        inbox.push(JSON.parse(await asp.openFrame(data.toString(), '/ws/chat')));
        wake?.();
      });
    });
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    await new Promise((ok, fail) => {
      ws.once('open', ok);
      ws.once('unexpected-response', (_q, r) => fail(new Error(`HTTP ${r.statusCode}`)));
    });
    const next = async (type: string) => {
      for (;;) {
        const i = inbox.findIndex((m) => m.type === type);
        if (i !== -1) return inbox.splice(i, 1)[0] as Record<string, any>;
        await new Promise<void>((r) => (wake = r));
      }
    };
    return { ws, asp, next, closed, send: async (m: unknown) => ws.send(await asp.sealFrame(JSON.stringify(m), '/ws/chat')) };
  }

  it('B17: a login whose name is not a string is a 400 in the envelope, never a 500', async () => {
    const home = await http('/');
    const csrfCookie = String(home.headers['set-cookie']).split(';')[0] as string;
    const token = /name="_csrf" value="([^"]+)"/.exec(home.text)?.[1] as string;
    const res = await http('/login', {
      method: 'POST',
      body: JSON.stringify({ _csrf: token, name: { toString: null }, password: 'correct horse battery' }),
      headers: { cookie: csrfCookie, 'content-type': 'application/json', origin: base, 'x-csrf-token': token },
    });
    expect([res.status, JSON.parse(res.text).error.code]).toEqual([400, 'validation.failed']);
  });

  it('B19: /api/me hands out the ASP key with Cache-Control: no-store', async () => {
    const { cookie } = await signUp(`dora-${RUN}`);
    const me = await http('/api/me', { headers: { cookie } });
    expect([me.status, me.headers['cache-control']]).toEqual([200, 'no-store']);
  });

  it('replays the last 30 messages to a new connection, refuses strangers, and rejects plain frames', async () => {
    const { cookie, key } = await signUp(`carol-${RUN}`);
    const a = await connect(cookie, key);
    expect((await a.next('chat.history')).payload.me.userName).toBe(`carol-${RUN}`);
    for (let i = 0; i < 35; i++) await a.send({ type: 'chat.send', id: `m${i}`, payload: { text: `${RUN} #${i}` } });
    for (let i = 0; i < 35; i++) expect((await a.next('chat.message')).payload.text).toBe(`${RUN} #${i}`);
    const b = await connect(cookie, key);
    const history = (await b.next('chat.history')).payload.items.map((m: any) => m.text);
    expect(history).toEqual(Array.from({ length: 30 }, (_, i) => `${RUN} #${i + 5}`));
    a.ws.send(JSON.stringify({ type: 'chat.send', payload: { text: 'plain' } }));
    expect((await a.next('error')).payload.code).toBe('asp.signal');
    await a.send({ type: 'chat.send', payload: { text: '' } });
    expect((await a.next('error')).payload.code).toBe('ws.schema');
    a.ws.close();
    b.ws.close();
    const stranger = new WebSocket(`ws://127.0.0.1:${port}/ws/chat`);
    const status = await new Promise((r) => stranger.once('unexpected-response', (_q, res) => r(res.statusCode)));
    expect(status).toBe(401);
  });

  it('B12: logging out closes the open chat sockets of that session with 1008, and only those', async () => {
    const dave = await signUp(`dave-${RUN}`);
    const erin = await signUp(`erin-${RUN}`);
    const tab1 = await connect(dave.cookie, dave.key);
    const tab2 = await connect(dave.cookie, dave.key);
    const other = await connect(erin.cookie, erin.key);
    for (const c of [tab1, tab2, other]) await c.next('chat.history');
    const page = await http('/chat', { headers: { cookie: dave.cookie } });
    const token = /name="_csrf" value="([^"]+)"/.exec(page.text)?.[1] as string;
    const out = await http('/logout', {
      method: 'POST',
      body: new URLSearchParams({ _csrf: token }).toString(),
      headers: { cookie: dave.cookie, 'content-type': 'application/x-www-form-urlencoded', origin: base },
    });
    expect(out.status).toBe(303);
    expect(await tab1.closed).toEqual({ code: 1008, reason: 'logged out' });
    expect(await tab2.closed).toEqual({ code: 1008, reason: 'logged out' });
    // Erin's socket lives on and sees Dave leave.
    await other.send({ type: 'chat.send', id: 'after', payload: { text: `${RUN} still here` } });
    expect((await other.next('chat.sent')).id).toBe('after');
    // The old cookie opens nothing any more.
    const again = new WebSocket(`ws://127.0.0.1:${port}/ws/chat`, ['mega.v1'], { headers: { cookie: dave.cookie } });
    expect(await new Promise((r) => again.once('unexpected-response', (_q, res) => r(res.statusCode)))).toBe(401);
    other.ws.close();
  });
});
