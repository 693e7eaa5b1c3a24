/**
 * apps/crud on the real services: `mega start` in a copy of the app (a real process) with
 * PostgreSQL (a database of its own), MongoDB (the outbox), Redis (chat history, sessions, the
 * scheduler's lock) and NATS JetStream (jobs). The API end to end, cursor pagination under inserts,
 * the welcome-mail job, the schedule, the encrypted chat with its Redis history, the migrations'
 * status, and the chat page in Chromium. Screenshot: .artifacts/crud.png.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { waitUntil } from '@mega/testing';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import pg from 'pg';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ARTIFACTS, type LaunchedBrowser, launchChromium } from '../../../scripts/test/browser.js';
import { freePort, runMega, type Watched } from '../../../scripts/test/procs.js';
import { serviceEnv } from '../../../scripts/test/service-env.js';
import { type Api, client, openChat } from './client.js';
import { copyApp, SECRETS } from './project.js';

/** Page-side globals the evaluate callbacks use (this test program has no DOM lib). */
declare const document: { querySelectorAll(selector: string): Iterable<{ textContent: string | null }> };

const env = serviceEnv();
const RUN = `${process.pid}_${Math.random().toString(36).slice(2, 7)}`;
const DB = `crud_${RUN}`;
const withDb = (url: string, db: string) => {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
};
const PG_URL = withDb(env.DATABASE_URL, DB);
const MONGO_URL = withDb(env.MONGO_URL, DB);

/** The app's environment: every part on a real service. */
const serviceVars = () => ({
  ...SECRETS,
  NODE_ENV: 'development',
  CRUD_DATABASE_URL: PG_URL,
  CRUD_MONGO_URL: MONGO_URL,
  CRUD_REDIS_URL: env.REDIS_URL,
  CRUD_NATS_URL: env.NATS_URL,
});

let dir: string;
let mega: Watched | undefined;
let port: number;
let redis: Redis;
let mongo: MongoClient;

async function signUp(name: string): Promise<{ api: Api; id: number; email: string }> {
  const api = client(port);
  const email = `${name}-${RUN}@example.com`;
  const res = await api.call('POST', '/api/users', { email, name, password: 'correct horse battery' });
  expect(res.status, res.text).toBe(201);
  return { api, id: res.data.id, email };
}

beforeAll(async () => {
  const admin = new pg.Client({ connectionString: env.DATABASE_URL });
  await admin.connect();
  await admin.query(`create database ${DB}`);
  await admin.end();
  redis = new Redis(env.REDIS_URL);
  await redis.del('crud:chat:history');
  mongo = await MongoClient.connect(env.MONGO_URL);
  dir = copyApp();
  port = await freePort();
  mega = runMega(['start', '--port', String(port)], dir, { ...serviceVars(), CRUD_DIGEST_CRON: '* * * * * *' });
  await mega.waitFor(/ready in \d+ ms/, 90_000);
}, 120_000);

afterAll(async () => {
  await mega?.kill('SIGTERM');
  await redis?.del('crud:chat:history');
  redis?.disconnect();
  await mongo
    ?.db(DB)
    .dropDatabase()
    .catch(() => undefined);
  await mongo?.close();
  const admin = new pg.Client({ connectionString: env.DATABASE_URL });
  await admin.connect();
  await admin.query(`drop database if exists ${DB} with (force)`);
  await admin.end();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('apps/crud on PostgreSQL + MongoDB + Redis + NATS', () => {
  it('boots with the migrations applied on PostgreSQL and jobs on JetStream; mega migrate status agrees', async () => {
    const out = mega?.out() ?? '';
    expect(out).toMatch(/up\s+\d{14}-create-users-and-notes/);
    expect(out).toMatch(/up\s+\d{14}-add-auth-to-users/);
    expect(out).toMatch(/"driver":"jetstream"/);
    // --verify also compares the live schema with the models: exit 1 on any difference.
    const status = runMega(['migrate', 'status', '--verify', '--json'], dir, { ...serviceVars(), MEGA_LOG_LEVEL: 'error' });
    expect((await status.exited).code, status.out()).toBe(0);
    const json = JSON.parse(status.out().slice(status.out().indexOf('{')));
    const primary = json.targets.find((t: { alias: string }) => t.alias === 'primary');
    expect(primary.entries.map((e: { id: string; state: string }) => [e.id.replace(/^\d+-/, ''), e.state])).toEqual([
      ['create-users-and-notes', 'applied'],
      ['add-auth-to-users', 'applied'],
    ]);
    // The schema is really on the server, in this run's database.
    const db = new pg.Client({ connectionString: PG_URL });
    await db.connect();
    const { rows } = await db.query<{ column_name: string }>(
      "select column_name from information_schema.columns where table_name = 'users' order by ordinal_position",
    );
    await db.end();
    expect(rows.map((r) => r.column_name)).toEqual(expect.arrayContaining(['id', 'email', 'name', 'password_hash', 'last_login_at']));
  });

  it('sign-up validates with the model schemas, hashes the password with scrypt, refuses a taken email with 409', async () => {
    const api = client(port);
    const bad = await api.call('POST', '/api/users', { email: 'x@example.com', name: 'n'.repeat(65), password: 'correct horse' });
    expect([bad.status, bad.code]).toEqual([400, 'validation.failed']);
    expect(bad.error?.details).toEqual(
      expect.arrayContaining([expect.objectContaining({ in: 'body', path: '/name', keyword: 'maxLength' })]),
    );
    const short = await api.call('POST', '/api/users', { email: 'x@example.com', name: 'x', password: 'short' });
    expect([short.status, short.code]).toEqual([400, 'validation.failed']);
    const notEmail = await api.call('POST', '/api/users', { email: 'nope', name: 'x', password: 'correct horse' });
    expect([notEmail.status, notEmail.code]).toEqual([400, 'users.invalid_email']);

    const { api: ada, email, id } = await signUp('ada');
    const me = await ada.call('GET', '/api/me');
    expect(me.data.user).toMatchObject({ id, email, name: 'ada' });
    expect(JSON.stringify(me.data)).not.toContain('password');
    expect(me.data.stores).toEqual({ history: 'redis', outbox: 'mongodb' });
    const db = new pg.Client({ connectionString: PG_URL });
    await db.connect();
    const stored = (await db.query<{ password_hash: string }>('select password_hash from users where id = $1', [id])).rows[0];
    await db.end();
    expect(stored?.password_hash).toMatch(/^scrypt\$32768\$8\$1\$[\w-]{22}\$[\w-]{43}$/);

    const again = await client(port).call('POST', '/api/users', {
      email: email.toUpperCase(),
      name: 'ada2',
      password: 'correct horse battery',
    });
    expect([again.status, again.code]).toEqual([409, 'users.email_taken']);

    const wrong = await client(port).call('POST', '/api/session', { email, password: 'wrong horse battery' });
    expect([wrong.status, wrong.code]).toEqual([401, 'auth.invalid_credentials']);
    const nobody = await client(port).call('POST', '/api/session', { email: `nobody-${RUN}@example.com`, password: 'x'.repeat(10) });
    expect([nobody.status, nobody.code]).toEqual([401, 'auth.invalid_credentials']);
    const login = client(port);
    const ok = await login.call('POST', '/api/session', { email, password: 'correct horse battery' });
    expect(ok.status).toBe(200);
    expect(Date.parse(ok.data.last_login_at)).toBeGreaterThan(Date.now() - 60_000);
    expect((await login.call('GET', '/api/me')).status).toBe(200);
    const { csrf } = (await login.call('GET', '/api/me')).data;
    expect((await login.call('DELETE', '/api/session')).code).toMatch(/^csrf\./);
    expect((await login.call('DELETE', '/api/session', undefined, { 'x-csrf-token': csrf })).status).toBe(204);
    expect((await login.call('GET', '/api/me')).code).toBe('auth.required');
  });

  it('the welcome-mail job (JetStream) writes one mail per user to the MongoDB outbox', async () => {
    const { api, id, email } = await signUp('bea');
    const mails = await waitUntil(
      async () => {
        const res = await api.call('GET', '/api/outbox');
        return res.data.items.length > 0 ? res.data : undefined;
      },
      { timeoutMs: 20_000, what: 'the welcome mail' },
    );
    expect(mails.store).toBe('mongodb');
    expect(mails.items).toEqual([expect.objectContaining({ id: `welcome:${id}`, kind: 'welcome', to: email, subject: 'Welcome, bea' })]);
    const doc = await mongo
      .db(DB)
      .collection('mail_outbox')
      .findOne({ _id: `welcome:${id}` as never });
    expect(doc).toMatchObject({ userId: id, to: email });
  });

  it('notes: create, read, update, delete; validation from the Note model; others get 404', async () => {
    const { api } = await signUp('cid');
    const { api: other } = await signUp('dan');
    const created = await api.call('POST', '/api/notes', { title: 'groceries', body: 'milk' });
    expect(created.status).toBe(201);
    expect(created.headers.location).toBe(`/api/notes/${created.data.id}`);
    const id = created.data.id as number;
    expect((await api.call('GET', `/api/notes/${id}`)).data).toMatchObject({ id, title: 'groceries', body: 'milk' });
    expect((await other.call('GET', `/api/notes/${id}`)).code).toBe('notes.not_found');
    expect((await other.call('PATCH', `/api/notes/${id}`, { title: 'mine now' })).status).toBe(404);

    const tooLong = await api.call('POST', '/api/notes', { title: 't'.repeat(201) });
    expect([tooLong.status, tooLong.code]).toEqual([400, 'validation.failed']);
    const noTitle = await api.call('POST', '/api/notes', { body: 'x' });
    expect([noTitle.status, noTitle.code]).toEqual([400, 'validation.failed']);
    // The owner comes from the session: a user_id in the body does not move the note.
    const smuggled = await api.call('POST', '/api/notes', { title: 'smuggled', user_id: 1 });
    expect((await other.call('GET', `/api/notes/${smuggled.data.id}`)).status).toBe(404);
    expect((await api.call('GET', `/api/notes/${smuggled.data.id}`)).status).toBe(200);
    expect((await api.call('GET', '/api/notes/abc')).status).toBe(400);

    const updated = await api.call('PATCH', `/api/notes/${id}`, { body: 'milk, eggs' });
    expect(updated.data).toMatchObject({ id, title: 'groceries', body: 'milk, eggs' });
    expect(Date.parse(updated.data.updated_at)).toBeGreaterThanOrEqual(Date.parse(created.data.updated_at));
    expect((await api.call('PATCH', `/api/notes/${id}`, {})).status).toBe(400);

    const { csrf } = (await api.call('GET', '/api/me')).data;
    expect(
      (await other.call('DELETE', `/api/notes/${id}`, undefined, { 'x-csrf-token': (await other.call('GET', '/api/me')).data.csrf }))
        .status,
    ).toBe(404);
    expect((await api.call('DELETE', `/api/notes/${id}`, undefined, { 'x-csrf-token': csrf })).status).toBe(204);
    expect((await api.call('GET', `/api/notes/${id}`)).status).toBe(404);
  });

  it('cursor pagination: every note exactly once, newest first, while notes are added between pages', async () => {
    const { api } = await signUp('eve');
    const first: number[] = [];
    for (let i = 0; i < 25; i++) first.push((await api.call('POST', '/api/notes', { title: `note ${i}` })).data.id);
    const seen: number[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await api.call('GET', `/api/notes?limit=10${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      expect(res.status).toBe(200);
      seen.push(...res.data.items.map((n: { id: number }) => n.id));
      cursor = res.data.nextCursor;
      // New notes arrive between pages: they are newer than the cursor, so they never shift a page.
      if (pages++ === 0) for (let i = 0; i < 5; i++) await api.call('POST', '/api/notes', { title: `late ${i}` });
    } while (cursor);
    expect(seen).toEqual([...first].reverse());
    expect((await api.call('GET', '/api/notes?cursor=not-a-cursor')).code).toBe('model.invalid_cursor');
    expect((await api.call('GET', '/api/notes?limit=101')).status).toBe(400);

    const users = await api.call('GET', '/api/users?limit=2');
    expect(users.data.items).toHaveLength(2);
    expect(users.data.nextCursor).toEqual(expect.any(String));
    expect(JSON.stringify(users.data)).not.toContain('password');
  });

  it('deleting my account deletes my notes (foreign key cascade) and signs me out', async () => {
    const { api, id } = await signUp('fay');
    await api.call('POST', '/api/notes', { title: 'to be deleted' });
    const { csrf } = (await api.call('GET', '/api/me')).data;
    expect((await api.call('DELETE', '/api/users/me', undefined, { 'x-csrf-token': csrf })).status).toBe(204);
    expect((await api.call('GET', '/api/me')).status).toBe(401);
    const db = new pg.Client({ connectionString: PG_URL });
    await db.connect();
    const { rows } = await db.query<{ n: string }>('select count(*) as n from notes where user_id = $1', [id]);
    await db.end();
    expect(rows[0]?.n).toBe('0');
  });

  it('the Digest schedule ticks (every second here) and counts users and notes', async () => {
    const since = Date.now();
    // A run that started after the users and notes of the tests above exist.
    const digest = await waitUntil(
      async () => {
        const d = (await client(port).call('GET', '/api/digest')).data.digest;
        return d && Date.parse(d.tick) > since ? d : undefined;
      },
      { timeoutMs: 15_000, what: 'a digest run after this test started' },
    );
    expect(digest.runs).toBeGreaterThanOrEqual(2);
    expect(digest.users).toBeGreaterThanOrEqual(5);
    expect(digest.notes).toBeGreaterThanOrEqual(30);
  });

  it('chat: presence, the last 30 messages of the day replayed from Redis, join/leave notices', async () => {
    const { api: gus } = await signUp('gus');
    const { api: hal } = await signUp('hal');
    const keyOf = async (api: Api) => (await api.call('GET', '/api/me')).data.keys.ws as string;
    const a = await openChat(port, gus.cookie, await keyOf(gus));
    const history = await a.next('chat.history');
    expect(history.payload.me.userName).toBe('gus');
    expect(history.payload.members).toContain('gus');
    for (let i = 0; i < 35; i++) await a.send({ type: 'chat.send', id: `m${i}`, payload: { text: `${RUN} #${i}` } });
    for (let i = 0; i < 35; i++) expect((await a.next('chat.msg')).payload.text).toBe(`${RUN} #${i}`);
    expect(await redis.llen('crud:chat:history')).toBe(30);
    const ttl = await redis.pttl('crud:chat:history');
    expect(ttl).toBeGreaterThan(24 * 3600_000 - 60_000);
    expect(ttl).toBeLessThanOrEqual(24 * 3600_000);

    const b = await openChat(port, hal.cookie, await keyOf(hal));
    const replay = await b.next('chat.history');
    expect(replay.payload.items.map((m: { text: string }) => m.text)).toEqual(Array.from({ length: 30 }, (_, i) => `${RUN} #${i + 5}`));
    expect(replay.payload.members).toEqual(['gus', 'hal']);
    expect((await a.next('chat.presence')).payload).toMatchObject({ event: 'join', userName: 'hal', members: ['gus', 'hal'] });

    await b.send({ type: 'chat.send', payload: { text: '' } });
    expect((await b.next('error')).payload.code).toBe('ws.schema');

    b.ws.close();
    expect((await a.next('chat.presence')).payload).toMatchObject({ event: 'leave', userName: 'hal', members: ['gus'] });
    a.ws.close();
    await expect(openChat(port, client(port).cookie, await keyOf(gus))).rejects.toThrow('HTTP 401');
  });
});

describe('apps/crud chat page in Chromium', () => {
  let chrome: LaunchedBrowser;
  beforeAll(async () => {
    chrome = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await chrome?.close();
  });

  const base = () => `http://127.0.0.1:${port}`;

  async function register(page: Page, name: string): Promise<void> {
    await page.goto(`${base()}/`);
    await page.fill('#register-email', `${name}-${RUN}@example.com`);
    await page.fill('#register-name', name);
    await page.fill('#register-password', 'correct horse battery');
    await page.click('#register-submit');
    await page.waitForURL(`${base()}/app`);
    await page.waitForSelector('#status[data-state="open"]');
  }

  it('two users register, add a note, chat both ways over sealed frames, see each other join and leave', async () => {
    const ivy = `ivy${RUN.slice(-4)}`;
    const jon = `jon${RUN.slice(-4)}`;
    const ctxA = await chrome.browser.newContext();
    const ctxB = await chrome.browser.newContext();
    const pageA = await ctxA.newPage();
    const pageB = await ctxB.newPage();
    const wire: string[] = [];
    for (const page of [pageA, pageB]) {
      page.on('websocket', (ws) => {
        ws.on('framesent', (f) => wire.push(String(f.payload)));
        ws.on('framereceived', (f) => wire.push(String(f.payload)));
      });
    }
    await register(pageA, ivy);
    await register(pageB, jon);

    await pageA.fill('#note-title', 'from the page');
    await pageA.fill('#note-body', 'saved through the JSON API');
    await pageA.click('#note-add');
    await pageA.waitForSelector('#notes li .title');
    expect(await pageA.$$eval('#notes li .title', (els) => els.map((e) => e.textContent))).toEqual(['from the page']);

    await pageA.waitForFunction((n) => [...document.querySelectorAll('#notices li')].some((li) => li.textContent === `${n} joined`), jon);
    const members = (page: Page) => page.$$eval('#members li', (els) => els.map((e) => e.textContent));
    expect(await members(pageA)).toEqual(expect.arrayContaining([ivy, jon]));

    await pageA.fill('#text', `hello from ${ivy}`);
    await pageA.click('#send');
    await pageB.fill('#text', `hi from ${jon}`);
    await pageB.press('#text', 'Enter');
    for (const page of [pageA, pageB]) {
      await page.waitForFunction(
        ([a, b]) => {
          const t = [...document.querySelectorAll('#messages .msg .text')].map((e) => e.textContent);
          return t.includes(`hello from ${a}`) && t.includes(`hi from ${b}`);
        },
        [ivy, jon],
      );
    }
    await ctxB.close();
    await pageA.waitForFunction((n) => [...document.querySelectorAll('#notices li')].some((li) => li.textContent === `${n} left`), jon);
    expect(await members(pageA)).not.toContain(jon);

    expect(wire.length).toBeGreaterThan(4);
    for (const frame of wire) expect(frame).toMatch(/^E:[A-Za-z0-9_-]+$/);
    mkdirSync(ARTIFACTS, { recursive: true });
    await pageA.screenshot({ path: join(ARTIFACTS, 'crud.png'), fullPage: true });
    await ctxA.close();
  });
});
