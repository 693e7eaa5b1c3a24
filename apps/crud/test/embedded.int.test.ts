/**
 * apps/crud on embedded defaults, as `mega start` runs it with no CRUD_* variable: PGlite under the
 * project's .mega/, the memory jobs driver, chat history and the outbox in memory. The migrations are
 * applied to PGlite at boot; a restart finds them applied and the data kept.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { waitUntil } from '@mega/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runMega, type Watched } from '../../../scripts/test/procs.js';
import { client, openChat } from './client.js';
import { copyApp, SECRETS } from './project.js';

let dir: string;
let mega: Watched | undefined;
let port: number;

/** No CRUD_* variable reaches the app, whatever the shell running the tests exported. */
const embedded = () => ({
  ...SECRETS,
  NODE_ENV: 'development',
  CRUD_DATABASE_URL: '',
  CRUD_MONGO_URL: '',
  CRUD_REDIS_URL: '',
  CRUD_NATS_URL: '',
  CRUD_DIGEST_CRON: '* * * * * *',
});

async function start(): Promise<void> {
  port = await freePort();
  mega = runMega(['start', '--port', String(port)], dir, embedded());
  await mega.waitFor(/ready in \d+ ms/, 120_000);
}

beforeAll(async () => {
  dir = copyApp('mega-crud-embedded-');
  await start();
}, 150_000);

afterAll(async () => {
  await mega?.kill('SIGTERM');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('apps/crud on embedded defaults', () => {
  it('PGlite with the migrations applied, memory jobs, memory history and outbox; data survives a restart', async () => {
    expect(existsSync(join(dir, '.mega', 'pglite', 'primary', 'PG_VERSION'))).toBe(true);
    expect(mega?.out()).toMatch(/applied 2 migration\(s\)/);
    expect(mega?.out()).toMatch(/"driver":"memory"/);

    const api = client(port);
    const signup = await api.call('POST', '/api/users', { email: 'kim@example.com', name: 'kim', password: 'correct horse battery' });
    expect(signup.status).toBe(201);
    const me = (await api.call('GET', '/api/me')).data;
    expect(me.stores).toEqual({ history: 'memory', outbox: 'memory' });
    const note = await api.call('POST', '/api/notes', { title: 'embedded', body: 'on PGlite' });
    expect(note.status).toBe(201);
    const mails = await waitUntil(
      async () => {
        const res = await api.call('GET', '/api/outbox');
        return res.data.items.length ? res.data : undefined;
      },
      { what: 'the welcome mail' },
    );
    expect(mails).toMatchObject({ store: 'memory', items: [{ kind: 'welcome', to: 'kim@example.com' }] });

    const chat = await openChat(port, api.cookie, me.keys.ws);
    expect((await chat.next('chat.history')).payload.items).toEqual([]);
    await chat.send({ type: 'chat.send', payload: { text: 'hello, memory' } });
    expect((await chat.next('chat.msg')).payload.text).toBe('hello, memory');
    chat.ws.close();
    const again = await openChat(port, api.cookie, me.keys.ws);
    expect((await again.next('chat.history')).payload.items.map((m: { text: string }) => m.text)).toEqual(['hello, memory']);
    again.ws.close();
    await waitUntil(async () => (await api.call('GET', '/api/digest')).data.digest?.notes === 1, { what: 'a digest counting the note' });

    // Restart on the same directory: nothing left to migrate, the user and the note are there.
    await mega?.kill('SIGTERM');
    await start();
    expect(mega?.out()).not.toMatch(/applied \d+ migration/);
    const back = client(port);
    expect((await back.call('POST', '/api/session', { email: 'kim@example.com', password: 'correct horse battery' })).status).toBe(200);
    expect((await back.call('GET', '/api/notes')).data.items).toEqual([expect.objectContaining({ title: 'embedded', body: 'on PGlite' })]);
  }, 240_000);

  it('hostile input is a typed 4xx, never a 500 from the database', async () => {
    const api = client(port);
    const bad = async (method: string, path: string, json?: unknown) => {
      const res = await api.call(method, path, json);
      expect(res.status, `${method} ${path}`).toBe(400);
      expect(res.data).toBeUndefined();
      expect((res.json as { error: { code: string } }).error.code).toBe('validation.failed');
    };
    await bad('POST', '/api/users', { email: 'nul@example.com', name: 'a\u0000b', password: 'correct horse' });
    await bad('POST', '/api/session', { email: 'a\u0000b@example.com', password: 'correct horse' });
    expect((await api.call('POST', '/api/users', { email: 'nul@example.com', name: 'nul', password: 'correct horse' })).status).toBe(201);
    await bad('POST', '/api/notes', { title: 'x', body: '\u0000' });
    await bad('GET', '/api/users/2147483648');
    await bad('GET', '/api/notes/2147483648');
    await bad('PATCH', '/api/notes/99999999999999999999', { title: 'x' });
  }, 60_000);
});
