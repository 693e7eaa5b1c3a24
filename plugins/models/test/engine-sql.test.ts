/**
 * The SQL engine's hot paths over a recording SqlDb (statements compiled by a real Kysely, nothing
 * executed): one statement per shape with the values bound in column order, rows normalised per
 * result, driver errors through toMegaError, and every failure of find/list/create a rejection.
 */
import type { SqlDb, SqlResult, SqlStatement } from '@mega/adapters';
import { MegaError } from '@mega/kernel';
import { Kysely, PostgresDialect } from 'kysely';
import { describe, expect, it } from 'vitest';
import { compiledOf, defineModel, field } from '../src/index.js';
import { base64url } from '../src/query.js';
import { valueMap } from '../src/values.js';

const User = defineModel({
  name: 'User',
  table: 'users',
  fields: {
    id: field.id(),
    email: field.string({ length: 120 }).unique(),
    name: field.string().nullable(),
    age: field.integer(),
    visits: field.bigint().default(0),
  },
  timestamps: true,
});

/** A SqlDb that records statements and answers with the rows it is given. */
function recordingDb(answer: (s: SqlStatement) => Record<string, unknown>[] | Error) {
  const statements: SqlStatement[] = [];
  const kysely = new Kysely<never>({ dialect: new PostgresDialect({ pool: {} as never }) });
  const db: SqlDb = {
    alias: 'rec',
    dialect: 'postgres',
    kysely: () => kysely as never,
    toMegaError: (e) => new MegaError('db.query_failed', `mapped: ${(e as Error).message}`),
    execute: <R>(s: SqlStatement): Promise<SqlResult<R>> => {
      statements.push({ sql: s.sql, parameters: [...s.parameters] });
      const rows = answer(s);
      return rows instanceof Error ? Promise.reject(rows) : Promise.resolve({ rows: rows as R[], numAffectedRows: 1n });
    },
  };
  return { db, statements };
}

const row = (id: number, extra: Record<string, unknown> = {}) => ({
  id,
  email: `u${id}@example.com`,
  name: null,
  age: 30,
  visits: '0',
  created_at: new Date(0),
  updated_at: new Date(0),
  ...extra,
});

describe('SQL engine hot paths', () => {
  it('compiles one statement per shape and binds each call its own values, in column order', async () => {
    const { db, statements } = recordingDb((s) => [row(Number(s.parameters[0]) || 1)]);
    const U = User.bind(db);
    await U.create({ email: 'a@example.com', age: 1 });
    await U.create({ id: 7, email: 'b@example.com', age: 2 });
    await U.create({ email: 'c@example.com', name: 'C', age: 3 });
    const [a, b, c] = statements;
    expect(a?.sql).toBe(
      'insert into "users" ("email", "name", "age", "visits", "created_at", "updated_at") values ($1, $2, $3, $4, $5, $6) returning *',
    );
    expect(a?.parameters.slice(0, 4)).toEqual(['a@example.com', null, 1, '0']);
    expect(b?.sql).toBe(
      'insert into "users" ("id", "email", "name", "age", "visits", "created_at", "updated_at") values ($1, $2, $3, $4, $5, $6, $7) returning *',
    );
    expect(b?.parameters.slice(0, 5)).toEqual([7, 'b@example.com', null, 2, '0']);
    expect(c?.sql).toBe(a?.sql);
    expect(c?.parameters.slice(0, 4)).toEqual(['c@example.com', 'C', 3, '0']);

    statements.length = 0;
    await U.list({ where: { age: { gte: 30 } }, limit: 20 });
    await U.list({ where: { age: { gte: 40 }, name: null }, limit: 5 });
    await U.list({ where: { age: { gte: 50 } }, limit: 10 });
    expect(statements.map((s) => s.sql)).toEqual([
      'select * from "users" where "age" >= $1 order by "id" asc limit $2',
      'select * from "users" where ("age" >= $1 and "name" is null) order by "id" asc limit $2',
      'select * from "users" where "age" >= $1 order by "id" asc limit $2',
    ]);
    expect(statements.map((s) => s.parameters)).toEqual([
      [30, 21],
      [40, 6],
      [50, 11],
    ]);
  });

  it('consecutive selects of different shapes never share a statement (list lengths, IS NULL / IS NOT NULL, orderings)', async () => {
    const { db, statements } = recordingDb(() => []);
    const U = User.bind(db);
    await U.list({ where: { id: { in: [1, 2] } }, limit: 5 });
    await U.list({ where: { id: { in: [1, 2, 3] } }, limit: 5 });
    await U.list({ where: { name: null }, limit: 5 });
    await U.list({ where: { name: { isNull: false } }, limit: 5 });
    await U.list({ where: { name: { isNull: false } }, orderBy: { age: 'desc' }, limit: 5 });
    await U.list({ where: { name: { isNull: false } }, orderBy: { age: 'asc' }, limit: 5 });
    await U.list({ where: { name: { isNull: false } }, orderBy: { age: 'asc' }, limit: 5 });
    expect(statements.map((s) => s.sql)).toEqual([
      'select * from "users" where "id" in ($1, $2) order by "id" asc limit $3',
      'select * from "users" where "id" in ($1, $2, $3) order by "id" asc limit $4',
      'select * from "users" where "name" is null order by "id" asc limit $1',
      'select * from "users" where "name" is not null order by "id" asc limit $1',
      'select * from "users" where "name" is not null order by "age" desc, "id" desc limit $1',
      'select * from "users" where "name" is not null order by "age" asc, "id" asc limit $1',
      'select * from "users" where "name" is not null order by "age" asc, "id" asc limit $1',
    ]);
    expect(statements.map((s) => s.parameters)).toEqual([[1, 2, 6], [1, 2, 3, 6], [6], [6], [6], [6], [6]]);
  });

  it('a cursor page repeats a keyset value in the SQL: each placeholder gets its value', async () => {
    const { db, statements } = recordingDb(() => Array.from({ length: 3 }, (_, i) => row(i + 1, { age: 30 + i })));
    const U = User.bind(db);
    const first = await U.list({ orderBy: { age: 'desc' }, limit: 2 });
    expect(first.items).toHaveLength(2);
    await U.list({ orderBy: { age: 'desc' }, limit: 2, cursor: first.nextCursor });
    expect(statements[1]?.sql).toBe(
      'select * from "users" where ("age" < $1 or ("age" = $2 and "id" < $3)) order by "age" desc, "id" desc limit $4',
    );
    expect(statements[1]?.parameters).toEqual([31, 31, 2, 3]);
  });

  it('find, list and create reject (never throw) on bad input, unbound models and driver errors', async () => {
    const { db } = recordingDb((s) => (s.sql.startsWith('insert') ? new Error('duplicate key') : [row(1)]));
    const U = User.bind(db);
    const pending = [
      U.list({ limit: 0 }),
      U.list({ where: { nope: 1 } as never }), // untyped input, as from a request body
      U.create({ email: 'x@example.com' } as never),
      U.create({ email: 'x@example.com', age: 1 }),
      User.find(1),
    ];
    for (const p of pending) expect(p).toBeInstanceOf(Promise);
    const codes = await Promise.all(
      pending.map((p) =>
        (p as Promise<unknown>).then(
          () => 'resolved',
          (e: MegaError) => e.code,
        ),
      ),
    );
    expect(codes).toEqual(['model.invalid_limit', 'model.invalid_where', 'validation.failed', 'db.query_failed', 'model.unbound']);
    await expect(U.find('abc' as never)).resolves.toBeUndefined();
    await expect(U.find(1)).resolves.toMatchObject({ id: 1, visits: '0' });
  });
});

describe('row normalisation per result', () => {
  const m = compiledOf(User);

  it('PostgreSQL: a column already of the model type is left alone; one that is not is converted on every row', () => {
    const v = valueMap(m, 'postgres');
    // age from an int8 column comes as strings (after a null); visits (bigint) from a numeric driver value.
    const rows = [row(1, { age: null, visits: 5 }), row(2, { age: '42', visits: 6 }), row(3, { age: '43', visits: null })];
    v.readRows(rows);
    expect(rows.map((r) => [r.age, r.visits])).toEqual([
      [null, '5'],
      [42, '6'],
      [43, null],
    ]);
    const typed = [row(1), row(2)];
    const before = typed.map((r) => ({ ...r }));
    expect(v.readRows(typed)).toEqual(before);
  });

  it('SQLite: values are converted row by row (a column may mix types)', () => {
    const v = valueMap(m, 'sqlite');
    const rows = [row(1, { age: 1, created_at: '2024-01-02 03:04:05' }), row(2, { age: '2', created_at: new Date(5) })];
    v.readRows(rows);
    expect(rows.map((r) => r.age)).toEqual([1, 2]);
    expect(rows.map((r) => (r.created_at as Date).toISOString())).toEqual(['2024-01-02T03:04:05.000Z', new Date(5).toISOString()]);
  });
});

describe('cursor encoding', () => {
  it('base64url gives what Buffer gives, for ASCII (encoded here) and other text (through Buffer)', () => {
    const texts = [''];
    for (let n = 1; n <= 40; n++) texts.push(Array.from({ length: n }, (_, i) => String.fromCharCode(32 + ((i * 37 + n) % 95))).join(''));
    texts.push('["k1x",20,"2024-01-02T03:04:05.000Z"]', '["a","é"]', 'ü', 'xü', 'xyü', '日本語のカーソル', '😀😀', '\u007f\u0080');
    for (const t of texts) expect(base64url(t), t).toBe(Buffer.from(t).toString('base64url'));
  });
});
