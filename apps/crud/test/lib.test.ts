/// <reference path="../plugins.d.ts" />
/**
 * The app's own pieces that need no server: scrypt hashes, the in-memory chat history (30 entries,
 * one day), and the HTTP schemas derived from the models. The type-only imports put every route,
 * controller, channel, job and schedule of the app under the repository's typecheck.
 */

import { Value } from '@sinclair/typebox/value';
import { describe, expect, it } from 'vitest';
import type {} from '../channels/chat.js';
import type {} from '../controllers/api.js';
import type {} from '../controllers/pages.js';
import type {} from '../jobs/welcome-mail.js';
import { type ChatEntry, HISTORY_LIMIT, HISTORY_TTL_MS, historyOf } from '../lib/history.js';
import { hashPassword, verifyPassword } from '../lib/passwords.js';
import { CreateNoteBody, IdParams, LoginBody, RegisterBody, UpdateMeBody, UpdateNoteBody } from '../lib/schemas.js';
import type {} from '../routes/api.js';
import type {} from '../routes/web.js';
import type {} from '../routes/ws.js';
import type {} from '../schedules/digest.js';

describe('passwords', () => {
  it('scrypt hashes: salted, verified in constant time, a wrong or tampered one refused', async () => {
    const a = await hashPassword('correct horse battery');
    const b = await hashPassword('correct horse battery');
    expect(a).toMatch(/^scrypt\$32768\$8\$1\$/);
    expect(a).not.toBe(b);
    expect(await verifyPassword('correct horse battery', a)).toBe(true);
    expect(await verifyPassword('correct horse batterY', a)).toBe(false);
    const parts = a.split('$');
    parts[5] = Buffer.alloc(32, 1).toString('base64url');
    expect(await verifyPassword('correct horse battery', parts.join('$'))).toBe(false);
    expect(await verifyPassword('x', null)).toBe(false);
    expect(await verifyPassword('x', 'md5$abc')).toBe(false);
  });
});

describe('chat history in memory', () => {
  const entry = (i: number, ts = Date.now()): ChatEntry => ({ id: String(i), userId: '1', userName: 'ada', text: `#${i}`, ts });

  it('keeps the last 30 entries and forgets those older than a day', async () => {
    const history = historyOf({} as never);
    expect(history.kind).toBe('memory');
    await history.add(entry(0, Date.now() - HISTORY_TTL_MS - 1000));
    for (let i = 1; i <= 40; i++) await history.add(entry(i));
    const recent = await history.recent();
    expect(recent).toHaveLength(HISTORY_LIMIT);
    expect(recent.map((e) => e.text)).toEqual(Array.from({ length: 30 }, (_, i) => `#${i + 11}`));
    const fresh = historyOf({} as never);
    await fresh.add(entry(1, Date.now() - HISTORY_TTL_MS - 1));
    await fresh.add(entry(2));
    expect((await fresh.recent()).map((e) => e.text)).toEqual(['#2']);
  });
});

describe('HTTP schemas come from the models', () => {
  it("sign-up takes the User model's email and name (lengths included) plus a password", () => {
    expect(Value.Check(RegisterBody, { email: 'a@b.co', name: 'ada', password: 'correct horse' })).toBe(true);
    expect(Value.Check(RegisterBody, { email: 'a@b.co', name: 'n'.repeat(65), password: 'correct horse' })).toBe(false);
    expect(Value.Check(RegisterBody, { email: `${'e'.repeat(320)}@b.co`, name: 'ada', password: 'correct horse' })).toBe(false);
    expect(Value.Check(RegisterBody, { email: 'a@b.co', name: 'ada', password: 'short' })).toBe(false);
    expect(Value.Check(RegisterBody, { email: 'a@b.co', name: 'ada', password: 'correct horse', password_hash: 'x' })).toBe(false);
  });

  it("a note's owner is not part of its body; a patch changes title or body, not nothing", () => {
    expect(Value.Check(CreateNoteBody, { title: 'x', body: 'y' })).toBe(true);
    expect(Value.Check(CreateNoteBody, { title: 'x', user_id: 2 })).toBe(false);
    expect(Value.Check(CreateNoteBody, { title: 't'.repeat(201) })).toBe(false);
    expect(Value.Check(UpdateNoteBody, {})).toBe(false);
    expect(Value.Check(UpdateNoteBody, { body: 'z' })).toBe(true);
  });

  it('refuses what PostgreSQL would fail on: U+0000 in a string, an id beyond its integer column', () => {
    const nul = 'a\u0000b';
    expect(Value.Check(RegisterBody, { email: 'a@b.co', name: nul, password: 'correct horse' })).toBe(false);
    expect(Value.Check(RegisterBody, { email: `${nul}@b.co`, name: 'ada', password: 'correct horse' })).toBe(false);
    expect(Value.Check(LoginBody, { email: nul, password: 'correct horse' })).toBe(false);
    expect(Value.Check(UpdateMeBody, { name: nul })).toBe(false);
    expect(Value.Check(CreateNoteBody, { title: 'x', body: nul })).toBe(false);
    expect(Value.Check(UpdateNoteBody, { title: nul })).toBe(false);
    expect(Value.Check(RegisterBody, { email: 'ädä@exämple.com', name: 'Ädä 🚀', password: 'correct horse' })).toBe(true);
    expect(Value.Check(IdParams, { id: 2147483647 })).toBe(true);
    expect(Value.Check(IdParams, { id: 2147483648 })).toBe(false);
  });
});
