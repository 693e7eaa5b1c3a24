/**
 * The typed API, checked by the compiler: `npm run typecheck` (tsconfig.tests.json) type-checks this
 * file, and every `@ts-expect-error` line below must be an error (a wrong field name, a wrong value
 * type, a missing required field...), or the check fails. Vitest then runs the same definitions to
 * confirm the inferred types match what comes back at run time.
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import { compiledOf, defineModel, field, hasMany, type InsertOf, type Page, type RowOf, type UpdateOf, type Where } from '../src/index.js';

const Post = defineModel({
  name: 'Post',
  table: 'posts',
  fields: {
    id: field.id(),
    title: field.string({ length: 200 }),
    body: field.text().nullable(),
    status: field.string({ enum: ['draft', 'published'] }).default('draft'),
    views: field.integer().default(0),
    publishedAt: field.timestamp().nullable(),
    tags: field.json<string[]>().nullable(),
    price: field.decimal(),
  },
  relations: { comments: hasMany('Comment', { foreignKey: 'post_id' }) },
  timestamps: true,
});

type PostRow = RowOf<typeof Post>;

/** Never called: only compiled. Each marked line must fail to compile. */
export async function compileOnly(): Promise<void> {
  // Row type: fields, nullability, managed timestamps.
  const post = await Post.findOrFail(1);
  const title: string = post.title;
  const body: string | null = post.body;
  const status: 'draft' | 'published' = post.status;
  const created: Date = post.created_at;
  const tags: string[] | null = post.tags;
  // @ts-expect-error a nullable field is not a plain string
  const notNull: string = post.body;
  // @ts-expect-error no such field on the row
  post.titel;

  // Inserts: required fields must be there, with the right types; no unknown fields.
  await Post.create({ title: 'Hello', price: '9.99' });
  await Post.create({ title: 'Hello', price: 9.99, publishedAt: new Date(), body: null });
  // @ts-expect-error a wrong field name
  await Post.create({ titel: 'Hello', price: '1' });
  // @ts-expect-error a required field (price) missing
  await Post.create({ title: 'Hello' });
  // @ts-expect-error a wrong value type
  await Post.create({ title: 42, price: '1' });
  // @ts-expect-error a value outside the enum
  await Post.create({ title: 'x', price: '1', status: 'archived' });
  // @ts-expect-error timestamps are managed, not written
  await Post.create({ title: 'x', price: '1', created_at: new Date() });

  // Updates: any field but the key.
  await Post.update(1, { views: 3 });
  // @ts-expect-error the primary key is not updatable
  await Post.update(1, { id: 2 });
  // @ts-expect-error a wrong field name in a patch
  await Post.update(1, { veiws: 3 });
  // @ts-expect-error the key is a number
  await Post.find('1');

  // Where clauses: known fields, operators of the closed set, operand types.
  await Post.findBy({ title: 'Hello', views: { gte: 10 }, body: null, status: { in: ['draft'] } });
  await Post.list({ where: { title: { like: 'He%' } }, orderBy: { created_at: 'desc' }, limit: 10 });
  // @ts-expect-error a wrong field name in a where clause
  await Post.findBy({ titel: 'Hello' });
  // @ts-expect-error an operator outside the closed set
  await Post.findBy({ views: { $gt: 1 } });
  // @ts-expect-error like on a number field
  await Post.findBy({ views: { like: '1%' } });
  // @ts-expect-error a wrong operand type
  await Post.findBy({ views: { gt: 'ten' } });
  // @ts-expect-error null on a non-nullable field
  await Post.findBy({ title: null });
  // @ts-expect-error a wrong field name in orderBy
  await Post.list({ orderBy: { craeted_at: 'desc' } });
  // @ts-expect-error a wrong direction
  await Post.list({ orderBy: { views: 'up' } });
  // @ts-expect-error upsert on an unknown key
  await Post.upsert({ title: 'x', price: '1' }, { conflict: ['slug'] });
  // @ts-expect-error no such relation
  await Post.related(post, 'authors');

  void [title, body, status, created, tags, notNull];
}

describe('inferred model types', () => {
  it('match the definition', () => {
    expectTypeOf<PostRow['id']>().toEqualTypeOf<number>();
    expectTypeOf<PostRow['body']>().toEqualTypeOf<string | null>();
    expectTypeOf<PostRow['publishedAt']>().toEqualTypeOf<Date | null>();
    expectTypeOf<PostRow['updated_at']>().toEqualTypeOf<Date>();
    expectTypeOf<PostRow['price']>().toEqualTypeOf<string>();
    expectTypeOf<InsertOf<typeof Post>['price']>().toEqualTypeOf<string | number>();
    expectTypeOf<InsertOf<typeof Post>>().toHaveProperty('title');
    expectTypeOf<UpdateOf<typeof Post>>().not.toHaveProperty('id');
    expectTypeOf<Awaited<ReturnType<typeof Post.list>>>().toEqualTypeOf<Page<PostRow>>();
    expectTypeOf<Where<PostRow>>().toHaveProperty('views');
    // The definition the types come from is the one the run time checks.
    expect(compiledOf(Post).fieldNames).toEqual([
      'id',
      'title',
      'body',
      'status',
      'views',
      'publishedAt',
      'tags',
      'price',
      'created_at',
      'updated_at',
    ]);
    expect(Object.keys(Post.schemas.create.properties)).toEqual(['id', 'title', 'body', 'status', 'views', 'publishedAt', 'tags', 'price']);
    expect(Post.schemas.create.required).toEqual(['title', 'price']);
  });
});
