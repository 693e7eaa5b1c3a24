/**
 * `defineModel({...})`: checks a definition once (types known, one primary key, indexes and relations
 * naming real fields), derives its TypeBox schemas and compiled checkers, and returns the `Model`.
 * Every problem is a ConfigError naming the model and the field, thrown when the model file loads,
 * i.e. at boot.
 */
import { ConfigError, ValidationError } from '@mega/kernel';
import type { TObject, TSchema } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type { TypeCheck } from '@sinclair/typebox/compiler';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { ValueErrorType } from '@sinclair/typebox/errors';
import { FIELD_TYPES, type FieldDraft, isField } from './fields.js';
import { ModelImpl } from './model.js';
import type { FieldType } from './schema.js';
import type {
  FieldsMap,
  InsertOfFields,
  Model,
  ModelSchemas,
  PrimaryKeyOf,
  RelationDef,
  RowOfFields,
  TimestampOption,
  UpdateOfFields,
} from './types.js';

export interface ModelDefinition<N extends string, T extends string, F extends FieldsMap, TS extends TimestampOption, R> {
  /** The model's name (`ctx.models.<name>`), PascalCase by convention. */
  name: N;
  /** Table or collection; default: snake_case of the name, pluralised (`BlogPost` -> `blog_posts`). */
  table?: T;
  /** `services.dbs` alias; default: the app's `models.db`, else the db registry's default. */
  db?: string;
  fields: F;
  /** Composite (or named) indexes; one-column ones can also be declared with `.index()` / `.unique()`. */
  indexes?: ReadonlyArray<{ columns: readonly (keyof F & string)[]; unique?: boolean; name?: string }>;
  relations?: R;
  /** Managed `created_at` / `updated_at` (or the names given). */
  timestamps?: TS;
}

export interface FieldInfo extends FieldDraft {
  name: string;
}

/** Everything derived once from a definition, shared by all bindings of the model. */
export interface CompiledModel {
  readonly name: string;
  readonly table: string;
  readonly db: string | undefined;
  readonly fields: ReadonlyMap<string, FieldInfo>;
  readonly fieldNames: readonly string[];
  readonly pk: FieldInfo;
  readonly timestamps: { createdAt: string; updatedAt: string } | undefined;
  readonly indexes: ReadonlyArray<{ columns: readonly string[]; unique: boolean; name?: string }>;
  readonly relations: Readonly<Record<string, RelationDef>>;
  readonly schemas: ModelSchemas;
  /** Throws `validation.failed` (400) with details. */
  check(data: unknown, mode: 'create' | 'update'): void;
}

export function belongsTo<const T extends string>(
  model: T,
  options: { foreignKey: string; onDelete?: 'cascade' | 'set null' | 'restrict' },
): RelationDef<'belongsTo', T> {
  return Object.freeze({ kind: 'belongsTo', model, ...options });
}

export function hasMany<const T extends string>(model: T, options: { foreignKey: string }): RelationDef<'hasMany', T> {
  return Object.freeze({ kind: 'hasMany', model, foreignKey: options.foreignKey });
}

/** `BlogPost` -> `blog_posts`, `Category` -> `categories`, `Box` -> `boxes`. */
export function tableNameOf(name: string): string {
  const snake = name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/[^A-Za-z0-9]+/g, '_')
    .toLowerCase();
  if (/[^aeiou]y$/.test(snake)) return `${snake.slice(0, -1)}ies`;
  if (/(s|x|z|ch|sh)$/.test(snake)) return `${snake}es`;
  return `${snake}s`;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const UUID = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
const DATE = '^\\d{4}-\\d{2}-\\d{2}$';
const DATE_TIME = '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?(Z|[+-]\\d{2}:?\\d{2})?$';
const INT32 = { minimum: -2147483648, maximum: 2147483647 };

/** The JSON Schema of one field's value: `write` (what create/update accept) or `row` (a row as JSON). */
function valueSchema(f: FieldDraft, mode: 'write' | 'row'): TSchema {
  switch (f.type) {
    case 'id':
      return Type.Integer({ minimum: 1, maximum: 2147483647 });
    case 'uuid':
      return Type.String({ pattern: UUID });
    case 'string':
      return f.enum ? Type.Union(f.enum.map((v) => Type.Literal(v))) : Type.String(mode === 'write' ? { maxLength: f.length ?? 255 } : {});
    case 'text':
      return Type.String();
    case 'integer':
      return Type.Integer(INT32);
    case 'bigint':
      return mode === 'row'
        ? Type.String()
        : Type.Union([
            Type.Integer({ minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER }),
            Type.String({ pattern: '^-?\\d{1,19}$' }),
          ]);
    case 'float':
      return Type.Number();
    case 'decimal':
      return mode === 'row' ? Type.String() : Type.Union([Type.Number(), Type.String({ pattern: '^-?\\d+(\\.\\d+)?$' })]);
    case 'boolean':
      return Type.Boolean();
    case 'date':
      return Type.String({ pattern: DATE });
    case 'timestamp':
      return Type.String({ pattern: DATE_TIME });
    case 'json':
      return Type.Unknown();
  }
}

function nullableOf(schema: TSchema, nullable: boolean): TSchema {
  return nullable ? Type.Union([schema, Type.Null()]) : schema;
}

function problem(model: string, code: string, message: string, details: Record<string, unknown>): ConfigError {
  return new ConfigError(code, `model "${model}": ${message}`, { details: { model, ...details } });
}

/** A builder, or (JavaScript models) a plain `{ type, nullable?, ... }` object: checked the same way. */
function draftOf(model: string, name: string, value: unknown): FieldDraft {
  const raw = isField(value) ? value.draft : (value as Partial<FieldDraft> | undefined);
  const type = raw?.type as string | undefined;
  if (!raw || typeof raw !== 'object' || !FIELD_TYPES.includes(type as FieldType)) {
    throw problem(
      model,
      'model.unknown_field_type',
      `field "${name}" has ${type === undefined ? 'no type' : `unknown type "${String(type)}"`}; known types: ${FIELD_TYPES.join(', ')} (use field.<type>())`,
      { field: name, type },
    );
  }
  return {
    type: type as FieldType,
    nullable: raw.nullable === true,
    primary: raw.primary === true || type === 'id',
    unique: raw.unique === true,
    index: raw.index === true,
    ...(raw.default ? { default: raw.default } : {}),
    ...(raw.length === undefined ? {} : { length: raw.length }),
    ...(raw.precision === undefined ? {} : { precision: raw.precision }),
    ...(raw.scale === undefined ? {} : { scale: raw.scale }),
    ...(raw.enum ? { enum: raw.enum } : {}),
  };
}

export function compileModel(def: ModelDefinition<string, string, FieldsMap, TimestampOption, unknown>): CompiledModel {
  const name = def?.name;
  if (typeof name !== 'string' || !/^[A-Za-z][A-Za-z0-9_]*$/.test(name)) {
    throw new ConfigError('model.invalid_name', `defineModel needs a name made of letters, digits and _ (got ${JSON.stringify(name)})`, {
      details: { model: name },
    });
  }
  const table = def.table ?? tableNameOf(name);
  if (!IDENT.test(table)) throw problem(name, 'model.invalid_table', `table "${table}" is not a valid identifier`, { table });
  if (typeof def.fields !== 'object' || def.fields === null) throw problem(name, 'model.no_fields', 'fields is missing', {});
  const fields = new Map<string, FieldInfo>();
  for (const [key, value] of Object.entries(def.fields)) {
    if (!IDENT.test(key)) throw problem(name, 'model.invalid_field', `field name "${key}" is not a valid identifier`, { field: key });
    const draft = draftOf(name, key, value);
    if (draft.default?.kind === 'now' && draft.type !== 'timestamp' && draft.type !== 'date') {
      throw problem(name, 'model.invalid_default', `field "${key}": a "now" default needs a timestamp or date field`, { field: key });
    }
    fields.set(key, { name: key, ...draft });
  }
  const ts = def.timestamps === true ? { createdAt: 'created_at', updatedAt: 'updated_at' } : def.timestamps || undefined;
  if (ts) {
    for (const key of [ts.createdAt, ts.updatedAt]) {
      if (!IDENT.test(key) || fields.has(key)) {
        throw problem(name, 'model.invalid_timestamps', `timestamp field "${key}" is not a valid name or is also declared in fields`, {
          field: key,
        });
      }
      fields.set(key, {
        name: key,
        type: 'timestamp',
        nullable: false,
        primary: false,
        unique: false,
        index: false,
        default: { kind: 'now' },
      });
    }
  }
  const primaries = [...fields.values()].filter((f) => f.primary);
  if (primaries.length !== 1) {
    throw problem(
      name,
      'model.invalid_primary_key',
      primaries.length === 0
        ? 'has no primary key: add `id: field.id()` (or mark one field with .primary())'
        : `has ${primaries.length} primary keys (${primaries.map((f) => f.name).join(', ')}); composite keys are not supported, use a unique index`,
      { fields: primaries.map((f) => f.name) },
    );
  }
  const pk = primaries[0] as FieldInfo;
  if (pk.nullable || pk.type === 'json' || pk.type === 'boolean' || pk.type === 'float') {
    throw problem(
      name,
      'model.invalid_primary_key',
      `primary key "${pk.name}" cannot be ${pk.nullable ? 'nullable' : `of type ${pk.type}`}`,
      {
        field: pk.name,
      },
    );
  }
  const indexes = (def.indexes ?? []).map((index, i) => {
    const columns = [...(index?.columns ?? [])];
    if (columns.length === 0) throw problem(name, 'model.invalid_index', `index #${i + 1} has no columns`, { index: i });
    for (const c of columns) {
      if (!fields.has(c)) throw problem(name, 'model.invalid_index', `index #${i + 1} names unknown field "${c}"`, { index: i, field: c });
    }
    if (index.name !== undefined && !IDENT.test(index.name)) {
      throw problem(name, 'model.invalid_index', `index name "${index.name}" is not a valid identifier`, { index: i });
    }
    return { columns, unique: index.unique === true, ...(index.name ? { name: index.name } : {}) };
  });
  const relations: Record<string, RelationDef> = {};
  for (const [key, rel] of Object.entries((def.relations ?? {}) as Record<string, RelationDef>)) {
    if (!rel || (rel.kind !== 'belongsTo' && rel.kind !== 'hasMany') || typeof rel.model !== 'string') {
      throw problem(name, 'model.invalid_relation', `relation "${key}" must be belongsTo('Model', {...}) or hasMany('Model', {...})`, {
        relation: key,
      });
    }
    if (rel.kind === 'belongsTo' && !fields.has(rel.foreignKey)) {
      throw problem(name, 'model.invalid_relation', `relation "${key}": foreign key "${rel.foreignKey}" is not a field of ${name}`, {
        relation: key,
        field: rel.foreignKey,
      });
    }
    relations[key] = rel;
  }
  const fieldNames = [...fields.keys()];
  const managed = new Set(ts ? [ts.createdAt, ts.updatedAt] : []);
  const createProps: Record<string, TSchema> = {};
  const updateProps: Record<string, TSchema> = {};
  const rowProps: Record<string, TSchema> = {};
  for (const f of fields.values()) {
    rowProps[f.name] = nullableOf(valueSchema(f, 'row'), f.nullable);
    if (managed.has(f.name)) continue;
    const write = nullableOf(valueSchema(f, 'write'), f.nullable);
    createProps[f.name] = f.nullable || f.default || f.type === 'id' ? Type.Optional(write) : write;
    if (!f.primary) updateProps[f.name] = Type.Optional(write);
  }
  const schemas: ModelSchemas = {
    create: Type.Object(createProps, { additionalProperties: false, title: `${name}.create` }),
    update: Type.Object(updateProps, { additionalProperties: false, title: `${name}.update` }),
    row: Type.Object(rowProps, { title: name }),
  };
  const checkers = { create: TypeCompiler.Compile(schemas.create), update: TypeCompiler.Compile(schemas.update) };
  const dateFields = [...fields.values()]
    .filter((f) => (f.type === 'timestamp' || f.type === 'date') && !managed.has(f.name))
    .map((f) => f.name);
  return Object.freeze({
    name,
    table,
    db: def.db,
    fields,
    fieldNames,
    pk,
    timestamps: ts ? { createdAt: ts.createdAt, updatedAt: ts.updatedAt } : undefined,
    indexes,
    relations: Object.freeze(relations),
    schemas,
    check: (data: unknown, mode: 'create' | 'update') => checkInput(name, checkers[mode], dateFields, data, mode),
  });
}

/** Date objects are valid values of timestamp / date fields; the JSON schema checks their ISO form. */
function checkInput(model: string, checker: TypeCheck<TObject>, dateFields: readonly string[], data: unknown, mode: string): void {
  let value = data;
  if (typeof data === 'object' && data !== null && !Array.isArray(data)) {
    let copy: Record<string, unknown> | undefined;
    for (const key of dateFields) {
      const v = (data as Record<string, unknown>)[key];
      if (v instanceof Date) {
        copy ??= { ...(data as Record<string, unknown>) };
        copy[key] = Number.isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString();
      }
    }
    if (copy) value = copy;
  }
  if (checker.Check(value)) return;
  throw validationError(model, mode, checker, value);
}

function validationError(model: string, mode: string, checker: TypeCheck<TObject>, value: unknown): ValidationError {
  // The offending values stay out of the error: they may be passwords or tokens.
  const details: Array<{ in: string; path: string; message: string; keyword: string }> = [];
  for (const e of checker.Errors(value)) {
    if (details.length >= 20) break;
    const path = e.path || '/';
    if (details.some((d) => d.path === path)) continue; // a union reports each branch: keep the first per path
    const keyword = e.type === ValueErrorType.ObjectAdditionalProperties ? 'additionalProperties' : (ValueErrorType[e.type] ?? 'invalid');
    details.push({ in: 'model', path, message: e.message, keyword });
  }
  const first = details[0];
  const message = first
    ? `${model}.${mode}: ${first.path === '/' ? '' : `${first.path.slice(1)} `}${first.message}${details.length > 1 ? ` (and ${details.length - 1} more)` : ''}`
    : `${model}.${mode}: invalid input`;
  return new ValidationError('validation.failed', message, { details });
}

/**
 * Defines a model. The row, insert and update types come from `fields` (and `timestamps`); the
 * returned object is both the definition and, once an app loaded it, its typed CRUD.
 */
export function defineModel<
  const N extends string,
  F extends FieldsMap,
  const T extends string = string,
  const TS extends TimestampOption = false,
  const R extends Record<string, RelationDef> = Record<never, never>,
>(
  definition: ModelDefinition<N, T, F, TS, R>,
): Model<{
  name: N;
  table: T;
  row: RowOfFields<F, TS>;
  insert: InsertOfFields<F>;
  update: UpdateOfFields<F>;
  pk: Extract<PrimaryKeyOf<F>, string | number>;
  relations: R;
}> {
  const compiled = compileModel(definition as unknown as ModelDefinition<string, string, FieldsMap, TimestampOption, unknown>);
  // biome-ignore lint/suspicious/noExplicitAny: the implementation is untyped; the definition's types are the interface.
  return new ModelImpl(compiled, undefined) as any;
}
