/**
 * The types a model definition gives, inferred from its fields (no code generation): the row read
 * back, the insert and update shapes, typed where clauses and list options, and the `Model` API.
 */
import type { AnyTables } from '@mega/adapters';
import type { TObject } from '@sinclair/typebox';
import type { Kysely, SelectQueryBuilder } from 'kysely';
import type { ClientSession, Collection, Document } from 'mongodb';
import type { AnyField } from './fields.js';

/** Flattens an intersection for readable hovers and error messages. */
export type Simplify<T> = { [K in keyof T]: T[K] } & {};

export type FieldsMap = Record<string, AnyField>;

/** `true`: `created_at` / `updated_at`; or name them. */
export type TimestampOption = boolean | { readonly createdAt: string; readonly updatedAt: string };

type TimestampKeys<TS> = TS extends true
  ? 'created_at' | 'updated_at'
  : TS extends { readonly createdAt: infer C extends string; readonly updatedAt: infer U extends string }
    ? C | U
    : never;

// Inferred from the phantom `$type` member, not from the class's type parameters: inferring through
// the builder methods (which mention the parameters in `this` types) gives up and yields `any`.
type TypeOf<X> = X extends { readonly $type: infer S } ? S : never;
type ReadOf<X> = TypeOf<X> extends { read: infer T; nullable: infer N } ? (N extends true ? T | null : T) : never;
type WriteOf<X> = TypeOf<X> extends { write: infer I; nullable: infer N } ? (N extends true ? I | null : I) : never;

type OptionalKeys<F> = {
  [K in keyof F]: TypeOf<F[K]> extends { nullable: infer N; hasDefault: infer D }
    ? N extends true
      ? K
      : D extends true
        ? K
        : never
    : never;
}[keyof F];

type PrimaryKeys<F> = { [K in keyof F]: TypeOf<F[K]> extends { primary: true } ? K : never }[keyof F];

/** The row read back: every field (nullable ones `| null`) and the managed timestamps. */
export type RowOfFields<F, TS> = Simplify<{ -readonly [K in keyof F]: ReadOf<F[K]> } & { [K in TimestampKeys<TS>]: Date }>;

/** What `create` takes: fields without a default and not nullable are required. */
export type InsertOfFields<F> = Simplify<
  { -readonly [K in Exclude<keyof F, OptionalKeys<F>>]: WriteOf<F[K]> } & { -readonly [K in OptionalKeys<F>]?: WriteOf<F[K]> }
>;

/** What `update` takes: any field but the primary key (timestamps are managed). */
export type UpdateOfFields<F> = Simplify<{ -readonly [K in Exclude<keyof F, PrimaryKeys<F>>]?: WriteOf<F[K]> }>;

export type PrimaryKeyOf<F> = ReadOf<F[PrimaryKeys<F>]>;

/** The closed set of operators a where clause may use (anything else is `model.invalid_where`, 400). */
export interface Ops<V> {
  eq?: V;
  ne?: V;
  gt?: V;
  gte?: V;
  lt?: V;
  lte?: V;
  in?: readonly V[];
  /** SQL LIKE (`%` any run, `_` one character, `\` escapes); string fields only. */
  like?: V extends string ? string : never;
  isNull?: boolean;
}

/** Field -> value (equality; `null` means IS NULL) or operators; all conditions are ANDed. */
export type Where<R> = { [K in keyof R]?: Exclude<R[K], null> | (null extends R[K] ? null : never) | Ops<Exclude<R[K], null>> };

export type OrderBy<R> = { [K in keyof R]?: 'asc' | 'desc' };

export interface ListOptions<R> {
  where?: Where<R>;
  /** Keys in order of precedence; the primary key is always appended as the last tie-breaker. Default: primary key ascending. */
  orderBy?: OrderBy<R>;
  /** Rows per page (default `models.defaultLimit`, 50; at most `models.maxLimit`, 1000). */
  limit?: number;
  /** `nextCursor` of the previous page; null or absent: the first page. */
  cursor?: string | null;
}

export interface Page<R> {
  items: R[];
  /** Opaque token for the next page; null on the last page. */
  nextCursor: string | null;
}

export interface UpsertOptions<R, U> {
  /** The unique key (a unique field or unique index) that identifies an existing row. */
  conflict: readonly (keyof R & string)[];
  /** Fields to overwrite on an existing row (default: every given field except the conflict keys). */
  update?: readonly (keyof U & string)[];
}

/** A relation, named by the target model (strings, so two models can refer to each other without import cycles). */
export interface RelationDef<K extends 'belongsTo' | 'hasMany' = 'belongsTo' | 'hasMany', T extends string = string> {
  readonly kind: K;
  readonly model: T;
  readonly foreignKey: string;
  readonly onDelete?: 'cascade' | 'set null' | 'restrict';
}

/**
 * Models by name, for a typed `ctx.models.<Name>` and typed relations. Extend it in each model file:
 * `declare module '@mega/models' { interface Models { User: typeof User } }`.
 */
// biome-ignore lint/suspicious/noEmptyInterface: extended by apps through declaration merging.
export interface Models {}

/** The types a model carries. */
export interface ModelTypes {
  name: string;
  table: string;
  row: object;
  insert: object;
  update: object;
  pk: string | number;
  relations: Record<string, RelationDef>;
}

export type RowOf<M> = M extends Model<infer T> ? T['row'] : never;
export type InsertOf<M> = M extends Model<infer T> ? T['insert'] : never;
export type UpdateOf<M> = M extends Model<infer T> ? T['update'] : never;

type TargetRow<N> = N extends keyof Models ? RowOf<Models[N]> : Record<string, unknown>;
export type RelatedOf<R> =
  R extends RelationDef<'hasMany', infer T>
    ? TargetRow<T>[]
    : R extends RelationDef<'belongsTo', infer T>
      ? TargetRow<T> | undefined
      : never;

/** What `transaction(fn)` hands to `fn`; model calls inside `fn` join the transaction by themselves. */
export interface ModelTx {
  /** The db alias the transaction runs on. */
  readonly db: string;
  readonly kind: 'sql' | 'mongo';
  /** SQL: the transaction's Kysely (queries on its connection). Throws on Mongo. */
  kysely<DB extends AnyTables = AnyTables>(): Kysely<DB>;
  /** Mongo: the session to pass to driver calls (`{ session }`); undefined on SQL. */
  readonly session: ClientSession | undefined;
}

export interface ModelSchemas {
  /** `create`'s input (additional properties refused): use it as an HTTP body schema. */
  readonly create: TObject;
  /** `update`'s patch: every field optional. */
  readonly update: TObject;
  /** A row as JSON (timestamps as date-time strings), e.g. a response schema. */
  readonly row: TObject;
}

/** Anything a model can be bound to: an SQL adapter (`SqlDb`) or a MongoDB adapter (`collection()` + `native`). */
export interface MongoLike {
  readonly alias: string;
  collection<T extends Document = Document>(name: string): Collection<T>;
  readonly native: { startSession(): ClientSession };
  readonly db: { admin(): { command(cmd: Document): Promise<Document> } };
}

type Tables<M extends ModelTypes> = { [K in M['table']]: M['row'] };

/** A model: its definition, and typed CRUD on the db it is bound to. */
export interface Model<M extends ModelTypes> {
  readonly name: M['name'];
  readonly table: M['table'];
  /** The db alias declared in the definition (undefined: the app's default). */
  readonly db: string | undefined;
  /** Field names in declaration order (timestamps last). */
  readonly fields: readonly string[];
  readonly primaryKey: string;
  readonly relations: M['relations'];
  readonly schemas: ModelSchemas;
  /** The db alias this instance is bound to (undefined: resolved on each call from the app that loaded it). */
  readonly boundTo: string | undefined;

  find(id: M['pk']): Promise<M['row'] | undefined>;
  /** `find`, or `db.not_found` (404). */
  findOrFail(id: M['pk']): Promise<M['row']>;
  findBy(where: Where<M['row']>): Promise<M['row'] | undefined>;
  findByOrFail(where: Where<M['row']>): Promise<M['row']>;
  /** Keyset pagination: stable while rows are inserted or deleted between pages. */
  list(options?: ListOptions<M['row']>): Promise<Page<M['row']>>;
  create(data: M['insert']): Promise<M['row']>;
  createMany(data: readonly M['insert'][]): Promise<M['row'][]>;
  /** By primary key: the updated row, or `db.not_found`. */
  update(id: M['pk'], patch: M['update']): Promise<M['row']>;
  /** By where (never empty): the number of rows matched. */
  update(where: Where<M['row']>, patch: M['update']): Promise<number>;
  /** By primary key: `db.not_found` when there is no such row. */
  delete(id: M['pk']): Promise<void>;
  /** By where (never empty): the number of rows deleted. */
  delete(where: Where<M['row']>): Promise<number>;
  count(where?: Where<M['row']>): Promise<number>;
  exists(where: Where<M['row']>): Promise<boolean>;
  /** Insert, or update the row with the same `conflict` key; resolves with the row as stored. */
  upsert(data: M['insert'], options: UpsertOptions<M['row'], M['update']>): Promise<M['row']>;
  /** Runs `fn` in a transaction on this model's db; nested calls are savepoints (SQL) or join the session (Mongo). */
  transaction<T>(fn: (tx: ModelTx) => Promise<T>): Promise<T>;
  /** hasMany: the related rows (up to `limit`, default 1000); belongsTo: the related row or undefined. */
  related<K extends keyof M['relations'] & string>(row: M['row'], name: K): Promise<RelatedOf<M['relations'][K]>>;
  /** Validates `create` input (or an `update` patch): resolves nothing, throws `validation.failed` (400). */
  validate(data: unknown, mode?: 'create' | 'update'): void;

  /** Escape hatch (SQL): a Kysely select on this model's table, in the current transaction if any. */
  query(): SelectQueryBuilder<Tables<M>, M['table'], object>;
  /** Escape hatch (SQL): the Kysely instance (the transaction's inside `transaction`). */
  kysely(): Kysely<Tables<M>>;
  /** Escape hatch (Mongo): the driver's collection (pass `tx.session` inside a transaction). */
  collection(): Collection<Document>;
  /** A copy of this model bound to `db` (scripts, tests). */
  bind(db: unknown): Model<M>;
}

// biome-ignore lint/suspicious/noExplicitAny: any model, whatever its types.
export type AnyModel = Model<any>;
