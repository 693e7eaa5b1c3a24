/**
 * @mega/models in a real project: models loaded from `models/`, bound to the app's database
 * (embedded PGlite) and used by routes through `ctx.models` and plain imports; the model's schema as
 * the HTTP body schema; a unique violation answered 409; where clauses taken from request bodies
 * that try to inject operators or SQL; relations; boot errors naming the model and field.
 */
import type { SqlDb } from '@mega/adapters';
import { type Booted, bootProject, stopAll, writeProject } from '@mega/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelsService } from '../src/index.js';
import { snapshotOf } from '../src/index.js';
import { createTables } from './fixtures.js';

const config = (db = "{ driver: 'pglite', url: 'memory://' }") =>
  `export default { plugins: ['@mega/http', '@mega/db-postgres', '@mega/models'], services: { dbs: { primary: ${db} } }, models: { maxLimit: 50 } };\n`;

const userModel = `import { defineModel, field, hasMany } from '@mega/models';

export const User = defineModel({
  name: 'User',
  table: 'users',
  fields: {
    id: field.id(),
    email: field.string({ length: 120 }).unique(),
    name: field.string({ length: 80 }).nullable(),
    role: field.string({ length: 10, enum: ['member', 'admin'] }).default('member'),
  },
  relations: { notes: hasMany('Note', { foreignKey: 'user_id' }) },
  timestamps: true,
});

declare module '@mega/models' {
  interface Models {
    User: typeof User;
  }
}
`;

const noteModel = `import { belongsTo, defineModel, field } from '@mega/models';

export const Note = defineModel({
  name: 'Note',
  fields: { id: field.id(), user_id: field.integer().index(), body: field.text() },
  relations: { author: belongsTo('User', { foreignKey: 'user_id', onDelete: 'cascade' }) },
});
`;

const routes = `import type { Router } from '@mega/http';
import { User } from '../models/user.ts';

export default (router: Router) => {
  router.http.post('/users', async (req, reply, ctx) => {
    const user = await ctx.models.User.create(req.body as never);
    reply.code(201);
    return user;
  }, { schema: { body: User.schemas.create } });
  // Validation by the model only (no route schema): the same 400 with field details.
  router.http.post('/users/unchecked', async (req, _reply, ctx) => ctx.models.User.create(req.body as never));
  router.http.get('/users/:id', async (req, _reply, ctx) => ctx.models.User.findOrFail(Number((req.params as { id: string }).id)));
  router.http.patch('/users/:id', async (req, _reply, ctx) =>
    ctx.models.User.update(Number((req.params as { id: string }).id), req.body as never), { schema: { body: User.schemas.update } });
  // The where clause comes straight from the client: the model refuses anything outside its closed set.
  router.http.post('/users/search', async (req, _reply, ctx) => {
    const body = (req.body ?? {}) as { where?: unknown; orderBy?: unknown; limit?: number; cursor?: string };
    return ctx.models.User.list(body as never);
  });
  router.http.get('/users/:id/notes', async (req, _reply, ctx) => {
    const user = await ctx.models.User.findOrFail(Number((req.params as { id: string }).id));
    return ctx.models.User.related(user, 'notes');
  });
  router.http.post('/notes', async (req, _reply, ctx) => (ctx.models as Record<string, any>).Note.create(req.body));
  // A plain import of the model file works once the app is up.
  router.http.get('/plain/:id', async (req) => User.findOrFail(Number((req.params as { id: string }).id)));
  router.http.get('/count', async (_req, _reply, ctx) => ({ users: await ctx.models.User.count(), apps: ctx.app.name }));
};
`;

describe('@mega/models in a project (PGlite)', () => {
  let booted: Booted;

  beforeAll(async () => {
    const dir = writeProject({
      'mega.config.ts': config(),
      'app.config.ts': 'export default {};\n',
      'models/user.ts': userModel,
      'models/note.ts': noteModel,
      'routes/index.ts': routes,
    });
    booted = await bootProject(dir);
    const service = booted.kernel.use<ModelsService>('models');
    const app = booted.kernel.apps[0]?.name as string;
    expect(service.definitions(app).map((m) => m.name)).toEqual(['Note', 'User']);
    expect(service.defaultDb(app)).toBe('primary');
    const db = (booted.kernel.apps[0] as unknown as { db(): SqlDb }).db();
    await createTables(db, snapshotOf(service.definitions(app)));
  });
  afterAll(stopAll);

  it('creates through ctx.models with the model schema as body schema; a duplicate is 409', async () => {
    const created = await booted.inject('/users', { json: { email: 'ada@example.com', name: 'Ada' } });
    expect(created.status).toBe(201);
    expect(created.data).toMatchObject({ id: 1, email: 'ada@example.com', name: 'Ada', role: 'member' });
    expect(typeof created.data.created_at).toBe('string');
    const dup = await booted.inject('/users', { json: { email: 'ada@example.com' } });
    expect([dup.status, dup.code]).toEqual([409, 'db.conflict']);
    expect(dup.text).not.toContain('ada@example.com');
    const bad = await booted.inject('/users', { json: { email: 42, role: 'root' } });
    expect([bad.status, bad.code]).toEqual([400, 'validation.failed']);
    const unchecked = await booted.inject('/users/unchecked', { json: { email: 'b@example.com', role: 'root', isAdmin: true } });
    expect([unchecked.status, unchecked.code]).toEqual([400, 'validation.failed']);
    expect(unchecked.error?.details.map((d: { path: string }) => d.path).sort()).toEqual(['/isAdmin', '/role']);
    expect((await booted.inject('/count')).data.users).toBe(1);
  });

  it('answers 404 for a missing row, through ctx.models and through a plain import', async () => {
    const missing = await booted.inject('/users/999');
    expect([missing.status, missing.code]).toEqual([404, 'db.not_found']);
    expect((await booted.inject('/plain/1')).data).toMatchObject({ id: 1, email: 'ada@example.com' });
    expect((await booted.inject('/plain/999')).status).toBe(404);
    const patched = await booted.inject('/users/1', { method: 'PATCH', json: { name: 'Countess' } });
    expect(patched.data).toMatchObject({ id: 1, name: 'Countess' });
    expect((await booted.inject('/users/999', { method: 'PATCH', json: { name: 'x' } })).status).toBe(404);
  });

  it('refuses operator and SQL injection attempts in where clauses from the request body', async () => {
    await booted.inject('/users', { json: { email: 'eve@example.com', role: 'admin' } });
    const attempts: unknown[] = [
      { where: { $where: 'sleep(5000) || true' } },
      { where: { email: { $ne: null } } },
      { where: { email: { $regex: '.*' } } },
      { where: { role: { $function: { body: 'return true', args: [], lang: 'js' } } } },
      { where: { "email' OR '1'='1": 'x' } },
      { where: { email: { eq: { $gt: '' } } } },
      { where: { id: '1 OR 1=1' } },
      { where: { email: { like: 5 } } },
      { orderBy: { 'id; drop table users; --': 'asc' } },
      { orderBy: { id: 'desc nulls first; drop table users' } },
      { cursor: "'; drop table users; --" },
      { limit: 10_000 },
    ];
    for (const body of attempts) {
      const res = await booted.inject('/users/search', { json: body });
      expect([res.status, res.code], JSON.stringify(body)).toEqual([
        400,
        expect.stringMatching(/^model\.invalid_(where|order|cursor|limit)$/),
      ]);
    }
    // Fastify's JSON parser already refuses a __proto__ key (the model would too: see define.test.ts).
    const proto = await booted.inject('/users/search', {
      body: '{"where":{"__proto__":{"polluted":true}}}',
      headers: { 'content-type': 'application/json' },
    });
    expect(proto.status).toBe(400);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // SQL in a value is only ever a value.
    const literal = await booted.inject('/users/search', { json: { where: { email: "x' OR '1'='1" } } });
    expect([literal.status, literal.data.items]).toEqual([200, []]);
    const like = await booted.inject('/users/search', { json: { where: { email: { like: '%' } }, orderBy: { email: 'asc' } } });
    expect(like.data.items.map((u: { email: string }) => u.email)).toEqual(['ada@example.com', 'eve@example.com']);
    // The table is still there.
    expect((await booted.inject('/count')).data.users).toBe(2);
  });

  it('pages through a route with the cursor it returned', async () => {
    for (let i = 0; i < 5; i++) await booted.inject('/users', { json: { email: `page${i}@example.com` } });
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res = await booted.inject('/users/search', { json: { limit: 3, ...(cursor ? { cursor } : {}) } });
      expect(res.status).toBe(200);
      const page = res.data as { items: Array<{ email: string }>; nextCursor: string | null };
      seen.push(...page.items.map((u) => u.email));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toHaveLength(7);
    expect(new Set(seen).size).toBe(7);
  });

  it('loads relations by model name', async () => {
    await booted.inject('/notes', { json: { user_id: 1, body: 'first' } });
    await booted.inject('/notes', { json: { user_id: 1, body: 'second' } });
    const notes = await booted.inject('/users/1/notes');
    expect(notes.data.map((n: { body: string }) => n.body)).toEqual(['first', 'second']);
    const service = booted.kernel.use<ModelsService>('models');
    const models = service.bound(booted.kernel.apps[0]?.name as string) as Record<
      string,
      { related(row: object, name: string): Promise<unknown>; find(id: number): Promise<object> }
    >;
    const note = await models.Note?.find(1);
    expect(await models.Note?.related(note as object, 'author')).toMatchObject({ id: 1, email: 'ada@example.com' });
    await expect(models.Note?.related(note as object, 'nope')).rejects.toMatchObject({ code: 'model.unknown_relation' });
  });
});

describe('@mega/models boot errors', () => {
  afterAll(stopAll);

  it('stops the boot on an unknown field type, naming the model, the field and the file', async () => {
    const dir = writeProject({
      'mega.config.ts': config(),
      'app.config.ts': 'export default {};\n',
      'models/invoice.ts': `import { defineModel, field } from '@mega/models';
export const Invoice = defineModel({ name: 'Invoice', fields: { id: field.id(), total: { type: 'money' } as never } });
`,
    });
    const error = await bootProject(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'model.unknown_field_type',
      message: expect.stringMatching(/model "Invoice": field "total" has unknown type "money".*models\/invoice\.ts/),
    });
  });

  it('stops the boot on a relation to a model the app does not have, and on models without a database', async () => {
    const dangling = writeProject({
      'mega.config.ts': config(),
      'app.config.ts': 'export default {};\n',
      'models/note.ts': noteModel,
    });
    await expect(bootProject(dangling)).rejects.toMatchObject({
      code: 'model.invalid_relation',
      message: expect.stringContaining('"User"'),
    });
    const noDb = writeProject({
      'mega.config.ts': "export default { plugins: ['@mega/models'] };\n",
      'app.config.ts': 'export default {};\n',
      'models/user.ts': userModel.replace("relations: { notes: hasMany('Note', { foreignKey: 'user_id' }) },", ''),
    });
    await expect(bootProject(noDb)).rejects.toMatchObject({
      code: 'models.no_db',
      message: expect.stringContaining('mega plugin add db-postgres'),
    });
    const unknownAlias = writeProject({
      'mega.config.ts': config(),
      'app.config.ts': "export default { models: { db: 'reports' } };\n",
    });
    await expect(bootProject(unknownAlias)).rejects.toMatchObject({ code: 'adapter.unknown_alias' });
  });
});
