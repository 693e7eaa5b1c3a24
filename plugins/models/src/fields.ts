/**
 * Field builders: `field.string({ length: 80 }).unique()`. Each builder is an immutable value that
 * carries, at the type level, the value type read back (`T`), the value type accepted on writes
 * (`I`), and whether the field is nullable, has a default (may be left out on insert) and is the
 * primary key; at run time, the draft of its FieldSpec.
 */
import type { FieldDefault, FieldType } from './schema.js';

/** Every portable type, as a run-time list (a model naming anything else fails at boot). */
export const FIELD_TYPES: readonly FieldType[] = [
  'id',
  'uuid',
  'string',
  'text',
  'integer',
  'bigint',
  'float',
  'decimal',
  'boolean',
  'date',
  'timestamp',
  'json',
];

/** What a builder holds at run time: a FieldSpec without its name, plus model-only flags. */
export interface FieldDraft {
  type: FieldType;
  nullable: boolean;
  primary: boolean;
  unique: boolean;
  index: boolean;
  default?: FieldDefault;
  length?: number;
  precision?: number;
  scale?: number;
  /** Validation only (not a column constraint): allowed string values. */
  enum?: readonly string[];
}

const FIELD = Symbol.for('mega.models.field');

export class Field<T, I, N extends boolean, D extends boolean, P extends boolean> {
  declare readonly [FIELD]: true;
  /** Phantom members: the types this field carries (never set at run time). */
  declare readonly $type: { read: T; write: I; nullable: N; hasDefault: D; primary: P };
  readonly draft: Readonly<FieldDraft>;

  constructor(draft: FieldDraft) {
    this.draft = Object.freeze(draft);
    Object.defineProperty(this, FIELD, { value: true });
  }

  #with<R>(patch: Partial<FieldDraft>): R {
    return new Field({ ...this.draft, ...patch }) as R;
  }

  /** The column may hold null (reads as `T | null`; may be left out on insert). */
  nullable(): Field<T, I, true, D, P> {
    return this.#with({ nullable: true });
  }

  /** A constant default (also the column default in migrations); the field may be left out on insert. */
  default(value: I & (string | number | boolean | null)): Field<T, I, N, true, P> {
    return this.#with({ default: { kind: 'value', value } });
  }

  /** Defaults to the current time (timestamp / date fields). */
  defaultNow(this: Field<Date, I, N, D, P> | Field<string, I, N, D, P>): Field<T, I, N, true, P> {
    if (this.draft.type !== 'timestamp' && this.draft.type !== 'date') {
      throw new TypeError(`defaultNow() applies to timestamp and date fields, not ${this.draft.type}`);
    }
    return (this as Field<T, I, N, D, P>).#with({ default: { kind: 'now' } });
  }

  /** Defaults to a random UUID (uuid fields), made by the model layer on insert. */
  defaultUuid(this: Field<string, I, N, D, P>): Field<T, I, N, true, P> {
    if (this.draft.type !== 'uuid') throw new TypeError(`defaultUuid() applies to uuid fields, not ${this.draft.type}`);
    return (this as Field<T, I, N, D, P>).#with({ default: { kind: 'uuid' } });
  }

  /** A single-column unique constraint. */
  unique(): Field<T, I, N, D, P> {
    return this.#with({ unique: true });
  }

  /** A single-column (non-unique) index. */
  index(): Field<T, I, N, D, P> {
    return this.#with({ index: true });
  }

  /** The primary key (one per model); `field.id()` already is one. */
  primary(): Field<T, I, N, D, true> {
    return this.#with({ primary: true });
  }
}

/** Any field builder. */
// biome-ignore lint/suspicious/noExplicitAny: the widest field, for constraints; the concrete types come from inference.
export type AnyField = Field<any, any, boolean, boolean, boolean>;

export function isField(value: unknown): value is AnyField {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[FIELD] === true;
}

const make = <T, I = T, D extends boolean = false, P extends boolean = false>(type: FieldType, extra: Partial<FieldDraft> = {}) =>
  new Field<T, I, false, D, P>({ type, nullable: false, primary: false, unique: false, index: false, ...extra });

// Overloads rather than defaulted type parameters: inside `fields: {...}` a generic builder would take
// its type argument from the contextual type (any field) and type the column `any`.
function string(options?: { length?: number }): Field<string, string, false, false, false>;
function string<const E extends string>(options: { length?: number; enum: readonly E[] }): Field<E, E, false, false, false>;
function string(options: { length?: number; enum?: readonly string[] } = {}): Field<string, string, false, false, false> {
  return make<string>('string', {
    ...(options.length === undefined ? {} : { length: options.length }),
    ...(options.enum ? { enum: [...options.enum] } : {}),
  });
}

function json(): Field<unknown, unknown, false, false, false>;
function json<T>(): Field<T, T, false, false, false>;
function json(): Field<unknown, unknown, false, false, false> {
  return make<unknown>('json');
}

/** The builders: one per portable type. */
export const field = {
  /** Auto-increment integer primary key (a counter document on Mongo): reads as a number. */
  id: () => make<number, number, true, true>('id', { primary: true }),
  /** A UUID string; `.defaultUuid()` makes one on insert. */
  uuid: () => make<string>('uuid'),
  /** Bounded text (`length`, default 255); `enum` restricts the values (validation only). */
  string,
  text: () => make<string>('text'),
  /** 32-bit integer. */
  integer: () => make<number>('integer'),
  /** 64-bit integer: reads as a decimal string (exact on every driver); writes take a string or a safe integer. */
  bigint: () => make<string, string | number>('bigint'),
  float: () => make<number>('float'),
  /** Exact decimal: reads as a string; writes take a string or a number. */
  decimal: (options: { precision?: number; scale?: number } = {}) =>
    make<string, string | number>('decimal', {
      ...(options.precision === undefined ? {} : { precision: options.precision }),
      ...(options.scale === undefined ? {} : { scale: options.scale }),
    }),
  boolean: () => make<boolean>('boolean'),
  /** A calendar date, read as `YYYY-MM-DD`; writes take that string or a Date (its UTC date). */
  date: () => make<string, string | Date>('date'),
  /** A point in time, read as a Date; writes take a Date or an ISO 8601 string. */
  timestamp: () => make<Date, Date | string>('timestamp'),
  /** Any JSON value (jsonb / JSON / TEXT / BSON); `field.json<T>()` types it. */
  json,
} as const;
