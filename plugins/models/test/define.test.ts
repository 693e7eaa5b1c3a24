/**
 * Model definitions without a database: checks at definition time (unknown field types, keys,
 * indexes, relations), the TypeBox schemas and validation details, the TableSpec and snapshot, and
 * where / orderBy / cursor parsing against hostile input.
 */
import { describe, expect, it } from 'vitest';
import { likeToRegExp } from '../src/engine-mongo.js';
import { belongsTo, compiledOf, defineModel, field, hasMany, snapshotOf, snapshotsByDb, tableNameOf, tableSpecOf } from '../src/index.js';
import { decodeCursor, encodeCursor, parseOrder, parseWhere } from '../src/query.js';

const User = defineModel({
  name: 'User',
  table: 'users',
  fields: {
    id: field.id(),
    email: field.string({ length: 120 }).unique(),
    name: field.string().nullable(),
    role: field.string({ enum: ['member', 'admin'] }).default('member'),
    age: field.integer().nullable(),
    score: field.float().default(0),
    active: field.boolean().default(true),
    token: field.uuid().defaultUuid(),
    birthday: field.date().nullable(),
    seenAt: field.timestamp().nullable(),
    meta: field.json<{ tags: string[] }>().nullable(),
    balance: field.decimal({ precision: 12, scale: 2 }).default('0'),
    visits: field.bigint().default(0),
  },
  indexes: [{ columns: ['role', 'age'] }, { columns: ['name', 'role'], unique: true, name: 'users_name_role_uq' }],
  relations: { notes: hasMany('Note', { foreignKey: 'user_id' }) },
  timestamps: true,
});

const Note = defineModel({
  name: 'Note',
  fields: { id: field.id(), user_id: field.integer().index(), body: field.text() },
  relations: { user: belongsTo('User', { foreignKey: 'user_id', onDelete: 'cascade' }) },
});

describe('defineModel', () => {
  it('derives names: table, field order with timestamps last, primary key', () => {
    expect([User.name, User.table, Note.table, User.primaryKey]).toEqual(['User', 'users', 'notes', 'id']);
    expect(User.fields.at(-2)).toBe('created_at');
    expect(User.fields.at(-1)).toBe('updated_at');
    expect(['BlogPost', 'Category', 'Box', 'Key'].map(tableNameOf)).toEqual(['blog_posts', 'categories', 'boxes', 'keys']);
  });

  it('refuses an unknown field type at definition time, naming the model and the field', () => {
    const define = () =>
      defineModel({
        name: 'Invoice',
        // A JavaScript model (or a cast) naming a type that does not exist.
        fields: { id: field.id(), total: { type: 'money' } as never },
      });
    expect(define).toThrow(
      expect.objectContaining({
        code: 'model.unknown_field_type',
        message: expect.stringMatching(/model "Invoice": field "total" has unknown type "money"; known types: id, uuid, string/),
        details: expect.objectContaining({ model: 'Invoice', field: 'total', type: 'money' }),
      }),
    );
  });

  it('refuses models without exactly one usable primary key, bad indexes and dangling relations', () => {
    expect(() => defineModel({ name: 'A', fields: { name: field.string() } })).toThrow(
      expect.objectContaining({ code: 'model.invalid_primary_key' }),
    );
    expect(() => defineModel({ name: 'B', fields: { id: field.id(), code: field.uuid().primary() } })).toThrow(
      expect.objectContaining({ code: 'model.invalid_primary_key', message: expect.stringContaining('2 primary keys') }),
    );
    expect(() => defineModel({ name: 'C', fields: { id: field.id() }, indexes: [{ columns: ['nope' as 'id'] }] })).toThrow(
      expect.objectContaining({ code: 'model.invalid_index' }),
    );
    expect(() =>
      defineModel({ name: 'D', fields: { id: field.id() }, relations: { owner: belongsTo('User', { foreignKey: 'owner_id' }) } }),
    ).toThrow(expect.objectContaining({ code: 'model.invalid_relation' }));
    expect(() => defineModel({ name: 'E', table: 'bad table', fields: { id: field.id() } })).toThrow(
      expect.objectContaining({ code: 'model.invalid_table' }),
    );
    expect(() => defineModel({ name: 'F', fields: { id: field.id(), created_at: field.timestamp() }, timestamps: true })).toThrow(
      expect.objectContaining({ code: 'model.invalid_timestamps' }),
    );
    // A relation to a model that is not loaded beside it fails when the snapshot is built (at boot).
    expect(() => snapshotOf([Note])).toThrow(expect.objectContaining({ code: 'model.invalid_relation' }));
  });

  it('validates create input and update patches with field-level details, never echoing values', () => {
    expect(() => User.validate({ email: 'a@example.com' })).not.toThrow();
    expect(() => User.validate({ email: 'a@example.com', seenAt: new Date(), birthday: '2000-02-29', meta: { tags: [] } })).not.toThrow();
    const secret = 'hunter2-secret-value';
    let error: unknown;
    try {
      User.validate({ email: 42, role: 'owner', age: 1.5, password: secret });
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ code: 'validation.failed', status: 400 });
    const details = (error as { details: Array<{ path: string; keyword: string }> }).details;
    expect(details.map((d) => d.path).sort()).toEqual(['/age', '/email', '/password', '/role']);
    expect(JSON.stringify(error) + String((error as Error).message)).not.toContain(secret);
    expect(() => User.validate({}, 'create')).toThrow(expect.objectContaining({ details: [expect.objectContaining({ path: '/email' })] }));
    // Patches: every field optional, the key and the managed timestamps are not writable.
    expect(() => User.validate({ name: null }, 'update')).not.toThrow();
    expect(() => User.validate({ id: 5 }, 'update')).toThrow(expect.objectContaining({ code: 'validation.failed' }));
    expect(() => User.validate({ created_at: new Date() }, 'update')).toThrow(expect.objectContaining({ code: 'validation.failed' }));
    expect(() => User.validate({ email: 'x'.repeat(121) }, 'update')).toThrow(expect.objectContaining({ code: 'validation.failed' }));
    expect(() => User.validate({ seenAt: new Date('nope') }, 'update')).toThrow(expect.objectContaining({ code: 'validation.failed' }));
  });

  it('gives plain JSON Schemas usable as HTTP body schemas', () => {
    const create = JSON.parse(JSON.stringify(User.schemas.create));
    expect(create).toMatchObject({ type: 'object', additionalProperties: false, required: ['email'] });
    expect(create.properties.seenAt.anyOf[0]).toMatchObject({ type: 'string', pattern: expect.any(String) });
    expect(Object.keys(User.schemas.update.properties)).not.toContain('id');
    expect(Object.keys(User.schemas.row.properties)).toContain('updated_at');
  });

  it('compiles to the normalized TableSpec the migrations diff', () => {
    const spec = tableSpecOf(Note, [User, Note]);
    expect(spec).toEqual({
      name: 'notes',
      model: 'Note',
      primaryKey: 'id',
      timestamps: false,
      fields: [
        { name: 'id', type: 'id', nullable: false, primary: true },
        { name: 'user_id', type: 'integer', nullable: false, references: { table: 'users', column: 'id', onDelete: 'cascade' } },
        { name: 'body', type: 'text', nullable: false },
      ],
      indexes: [{ name: 'notes_user_id_idx', columns: ['user_id'], unique: false }],
    });
    const users = snapshotOf([User, Note]).tables.users;
    expect(users?.fields.find((f) => f.name === 'email')).toEqual({
      name: 'email',
      type: 'string',
      nullable: false,
      unique: true,
      length: 120,
    });
    expect(users?.fields.find((f) => f.name === 'token')).toMatchObject({ default: { kind: 'uuid' } });
    expect(users?.fields.find((f) => f.name === 'created_at')).toEqual({
      name: 'created_at',
      type: 'timestamp',
      nullable: false,
      default: { kind: 'now' },
    });
    expect(users?.indexes).toEqual([
      { name: 'users_role_age_idx', columns: ['role', 'age'], unique: false },
      { name: 'users_name_role_uq', columns: ['name', 'role'], unique: true },
    ]);
    // JSON in, JSON out: a snapshot survives a round trip through the journal file.
    const snap = snapshotOf([User, Note]);
    expect(JSON.parse(JSON.stringify(snap))).toEqual(snap);
  });

  it('groups snapshots by db alias, dropping foreign keys across databases', () => {
    const Event = defineModel({
      name: 'Event',
      db: 'docs',
      fields: { id: field.id(), user_id: field.integer() },
      relations: { user: belongsTo('User', { foreignKey: 'user_id' }) },
    });
    const byDb = snapshotsByDb([User, Note, Event], 'primary');
    expect(Object.keys(byDb).sort()).toEqual(['docs', 'primary']);
    expect(Object.keys(byDb.primary?.tables ?? {})).toEqual(['notes', 'users']);
    expect(byDb.docs?.tables.events?.fields[1]).toEqual({ name: 'user_id', type: 'integer', nullable: false });
    expect(byDb.primary?.tables.notes?.fields[1]?.references).toMatchObject({ table: 'users' });
  });
});

describe('where clauses from untrusted input', () => {
  const m = compiledOf(User);
  const rejects = (where: unknown, code = 'model.invalid_where') =>
    expect(() => parseWhere(m, where)).toThrow(expect.objectContaining({ code, status: 400 }));

  it('takes equality, null, the closed operator set and skips undefined', () => {
    const conds = parseWhere(m, {
      email: 'a@example.com',
      name: null,
      age: { gte: 18, lt: '65' },
      role: { in: ['member', 'admin'] },
      seenAt: { gt: '2024-01-01T00:00:00Z' },
      active: 'true',
      birthday: undefined,
    });
    expect(conds.map((c) => [c.field.name, c.op, c.value])).toEqual([
      ['email', 'eq', 'a@example.com'],
      ['name', 'isNull', true],
      ['age', 'gte', 18],
      ['age', 'lt', 65],
      ['role', 'in', ['member', 'admin']],
      ['seenAt', 'gt', new Date('2024-01-01T00:00:00Z')],
      ['active', 'eq', true],
    ]);
    expect(parseWhere(m, { name: { ne: null } })[0]).toMatchObject({ op: 'isNull', value: false });
  });

  it('refuses Mongo operators, unknown fields and operators, and wrongly typed operands (injection attempts)', () => {
    rejects({ $where: 'sleep(1000)' });
    rejects({ $or: [{ email: 'a' }] });
    rejects({ email: { $ne: null } });
    rejects({ email: { $regex: '.*' } });
    rejects({ email: { $function: { body: 'return 1' } } });
    rejects({ 'email; drop table users; --': 'x' });
    rejects(JSON.parse('{"__proto__": {"admin": true}}'));
    rejects({ constructor: 'x' });
    rejects({ email: { eq: { $gt: '' } } });
    rejects({ email: ['a', 'b'] });
    rejects({ age: '1 OR 1=1' });
    rejects({ age: { in: 'all' } });
    rejects({ age: { in: Array.from({ length: 1001 }, () => 1) } });
    rejects({ age: { like: '1%' } });
    rejects({ meta: { eq: 'x' } });
    rejects({ active: { gt: true } });
    rejects({ email: {} });
    rejects('email = 1');
    rejects([{ email: 'a' }]);
    rejects({ token: { eq: 'not-a-uuid' } });
    // A string that looks like SQL is only ever a value.
    expect(parseWhere(m, { email: "' OR 1=1 --" })[0]).toMatchObject({ op: 'eq', value: "' OR 1=1 --" });
  });

  it('orders by known non-nullable fields with the key as tie-breaker, and refuses the rest', () => {
    expect(parseOrder(m, { created_at: 'desc' }).map((k) => [k.field.name, k.desc])).toEqual([
      ['created_at', true],
      ['id', true],
    ]);
    expect(parseOrder(m, undefined).map((k) => k.field.name)).toEqual(['id']);
    for (const bad of [{ name: 'asc' }, { email: 'up' }, { 'id desc; --': 'asc' }, { meta: 'asc' }, 'id']) {
      expect(() => parseOrder(m, bad)).toThrow(expect.objectContaining({ code: 'model.invalid_order', status: 400 }));
    }
  });

  it('round-trips opaque cursors and refuses forged or foreign ones', () => {
    const order = parseOrder(m, { created_at: 'desc' });
    const at = new Date('2024-03-01T10:00:00.123Z');
    const token = encodeCursor(order, { created_at: at, id: 7 });
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor(m, order, token)).toEqual([at, 7]);
    const bad = (t: unknown, o = order) =>
      expect(() => decodeCursor(m, o, t)).toThrow(expect.objectContaining({ code: 'model.invalid_cursor', status: 400 }));
    bad(encodeCursor(parseOrder(m, { email: 'asc' }), { email: 'a', id: 1 }));
    bad('not base64 at all!');
    bad(Buffer.from('[1,2').toString('base64url'));
    bad(Buffer.from(JSON.stringify([JSON.parse(Buffer.from(token, 'base64url').toString())[0], 'yesterday', 7])).toString('base64url'));
    // An id outside the 32-bit column range is refused here, not left for the database to fail on (500).
    const signature = JSON.parse(Buffer.from(token, 'base64url').toString())[0];
    bad(Buffer.from(JSON.stringify([signature, at.toISOString(), 3_000_000_000])).toString('base64url'));
    bad(Buffer.from(JSON.stringify([signature, at.toISOString(), '3000000000'])).toString('base64url'));
    bad(
      Buffer.from(JSON.stringify([JSON.parse(Buffer.from(token, 'base64url').toString())[0], at.toISOString(), { $gt: 0 }])).toString(
        'base64url',
      ),
    );
    bad(42);
  });

  it('turns LIKE patterns into anchored RegExps without regex injection', () => {
    expect(likeToRegExp('ada%').test('ada lovelace')).toBe(true);
    expect(likeToRegExp('ada%').test('the ada')).toBe(false);
    expect(likeToRegExp('a_c').test('abc')).toBe(true);
    expect(likeToRegExp('100\\%').test('100%')).toBe(true);
    expect(likeToRegExp('100\\%').test('1000')).toBe(false);
    expect(likeToRegExp('(.*)+$').test('(.*)+$')).toBe(true);
    expect(likeToRegExp('(.*)+$').test('aaaa')).toBe(false);
  });
});
