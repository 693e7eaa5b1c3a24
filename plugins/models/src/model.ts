/**
 * The model object: the definition plus CRUD. It checks every input (create/update payloads against
 * the model's schema, where clauses, orderings, cursors), fills defaults and timestamps, and hands
 * the database work to an engine (Kysely for SQL, the driver for Mongo). An instance returned by
 * `defineModel` is unbound: its calls go to the copy an app bound when it loaded the model file
 * (`ctx.models.<Name>` is that copy).
 */
import { randomUUID } from 'node:crypto';
import { isSqlDb } from '@mega/adapters';
import { MegaError, NotFoundError } from '@mega/kernel';
import type { CompiledModel } from './define.js';
import type { Engine, Row } from './engine.js';
import { MongoEngine } from './engine-mongo.js';
import { SqlEngine } from './engine-sql.js';
import { decodeCursor, encodeCursor, parseOrder, parseWhere, pkValue } from './query.js';
import type { AnyModel, ModelTx, MongoLike, Page } from './types.js';

const MODEL = Symbol.for('mega.models.model');

/** Limits and the sibling models (relations) of a binding. */
export interface ModelEnv {
  readonly defaultLimit: number;
  readonly maxLimit: number;
  /** The model called `name` in the same app (relations). */
  resolve?(name: string): ModelImpl | undefined;
}

export const DEFAULT_ENV: ModelEnv = { defaultLimit: 50, maxLimit: 1000 };

/**
 * Bound models per app, shared by every copy of this module (a test runner loading the sources
 * beside the built package): `app -> model name -> bound model`.
 */
const REGISTRY_KEY = Symbol.for('mega.models.registry');
const shared = globalThis as unknown as Record<symbol, Map<string, Map<string, ModelImpl>> | undefined>;
export const registry: Map<string, Map<string, ModelImpl>> = shared[REGISTRY_KEY] ?? new Map();
shared[REGISTRY_KEY] = registry;
/** Which apps loaded which (unbound) model object. */
const loadedBy = new WeakMap<object, Set<string>>();

export function markLoaded(model: AnyModel, app: string): void {
  const set = loadedBy.get(model) ?? new Set<string>();
  set.add(app);
  loadedBy.set(model, set);
}

export function isModel(value: unknown): value is AnyModel {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[MODEL] === true;
}

/** The compiled definition behind a model (also one loaded by another copy of this module). */
export function compiledOf(model: AnyModel): CompiledModel {
  const c = (model as unknown as { compiled?: CompiledModel }).compiled;
  if (!isModel(model) || !c) throw new TypeError('not a model made by defineModel');
  return c;
}

function engineFor(m: CompiledModel, db: unknown): Engine {
  if (isSqlDb(db)) return new SqlEngine(m, db);
  const mongo = db as Partial<MongoLike> | undefined;
  if (mongo && typeof mongo.collection === 'function' && typeof mongo.native?.startSession === 'function') {
    return new MongoEngine(m, mongo as MongoLike);
  }
  throw new MegaError(
    'model.unsupported_db',
    `model "${m.name}": db "${(db as { alias?: string } | undefined)?.alias ?? String(db)}" is neither an SQL adapter (SqlDb: @mega/db-postgres, @mega/db-sqlite, @mega/db-mariadb) nor MongoDB (@mega/db-mongo)`,
    { details: { model: m.name } },
  );
}

const notFound = (m: CompiledModel, what: string) =>
  new NotFoundError('db.not_found', `${m.name} ${what} not found`, { details: { model: m.name, table: m.table } });

export class ModelImpl {
  readonly compiled: CompiledModel;
  readonly #engine: Engine | undefined;
  readonly #env: ModelEnv;
  declare readonly [MODEL]: true;

  constructor(compiled: CompiledModel, engine: Engine | undefined, env: ModelEnv = DEFAULT_ENV) {
    this.compiled = compiled;
    this.#engine = engine;
    this.#env = env;
    Object.defineProperty(this, MODEL, { value: true });
  }

  get name(): string {
    return this.compiled.name;
  }
  get table(): string {
    return this.compiled.table;
  }
  get db(): string | undefined {
    return this.compiled.db;
  }
  get fields(): readonly string[] {
    return this.compiled.fieldNames;
  }
  get primaryKey(): string {
    return this.compiled.pk.name;
  }
  get relations() {
    return this.compiled.relations;
  }
  get schemas() {
    return this.compiled.schemas;
  }
  get boundTo(): string | undefined {
    return this.#engine?.alias;
  }

  bind(db: unknown, env: ModelEnv = this.#env): ModelImpl {
    return new ModelImpl(this.compiled, engineFor(this.compiled, db), env);
  }

  /** The bound copy this call runs on. */
  #bound(): ModelImpl {
    if (this.#engine) return this;
    const name = this.compiled.name;
    const apps = loadedBy.get(this);
    if (apps?.size === 1) {
      const found = registry.get([...apps][0] as string)?.get(name);
      if (found) return found;
    }
    const candidates = [...registry.values()].map((models) => models.get(name)).filter((m): m is ModelImpl => m !== undefined);
    if (candidates.length === 1) return candidates[0] as ModelImpl;
    if (candidates.length === 0) {
      throw new MegaError(
        'model.unbound',
        `model "${name}" is not bound to a database: list @mega/models in plugins and keep the model in an app's models/ folder (then use it after boot, or ctx.models.${name}), or bind it: ${name}.bind(db)`,
        { details: { model: name } },
      );
    }
    throw new MegaError('model.ambiguous', `several running apps have a model "${name}": use ctx.models.${name} (or app.models.${name})`, {
      details: { model: name },
    });
  }

  get #e(): Engine {
    return this.#engine ?? (this.#bound().#engine as Engine);
  }

  validate(data: unknown, mode: 'create' | 'update' = 'create'): void {
    this.compiled.check(data, mode);
  }

  // find, list and create are the hot paths: plain functions returning the engine's promise (one
  // async layer less each; `npm run bench:models`), every synchronous throw turned into a rejection
  // as an async function would.
  find(id: unknown): Promise<Row | undefined> {
    try {
      const e = this.#e;
      const key = pkValue(this.compiled, id);
      return key === undefined ? Promise.resolve(undefined) : e.find(key);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async findOrFail(id: unknown): Promise<Row> {
    const row = await this.find(id);
    if (!row) throw notFound(this.compiled, `${this.compiled.pk.name}=${String(id).slice(0, 64)}`);
    return row;
  }

  async findBy(where: unknown): Promise<Row | undefined> {
    const e = this.#e;
    const rows = await e.select(parseWhere(this.compiled, where), parseOrder(this.compiled, undefined), undefined, 1);
    return rows[0];
  }

  async findByOrFail(where: unknown): Promise<Row> {
    const row = await this.findBy(where);
    if (!row) throw notFound(this.compiled, 'matching the where clause');
    return row;
  }

  list(options: { where?: unknown; orderBy?: unknown; limit?: unknown; cursor?: unknown } = {}): Promise<Page<Row>> {
    try {
      const e = this.#e;
      const m = this.compiled;
      const env = this.#bound().#env;
      const limit = options.limit ?? env.defaultLimit;
      if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > env.maxLimit) {
        throw new MegaError('model.invalid_limit', `${m.name}: limit must be an integer from 1 to ${env.maxLimit}`, {
          status: 400,
          details: { model: m.name, max: env.maxLimit },
        });
      }
      const conds = parseWhere(m, options.where);
      const order = parseOrder(m, options.orderBy);
      const after = options.cursor === undefined || options.cursor === null ? undefined : decodeCursor(m, order, options.cursor);
      return e.select(conds, order, after, limit + 1, (rows): Page<Row> => {
        const more = rows.length > limit;
        if (more) rows.length = limit;
        return { items: rows, nextCursor: more ? encodeCursor(order, rows[limit - 1] as Row) : null };
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** A full record to insert: the input, defaults, timestamps; nullable fields left out become null. */
  #record(data: Record<string, unknown>, now: Date): Record<string, unknown> {
    const rec: Record<string, unknown> = {};
    for (const f of recordPlan(this.compiled)) {
      const name = f.name;
      if (f.fill === FILL_MANAGED) {
        rec[name] = now;
        continue;
      }
      const v = data[name];
      if (v !== undefined) rec[name] = v;
      else if (f.fill === FILL_VALUE) rec[name] = f.value;
      else if (f.fill === FILL_NOW) rec[name] = now;
      else if (f.fill === FILL_TODAY) rec[name] = now.toISOString().slice(0, 10);
      else if (f.fill === FILL_UUID) rec[name] = randomUUID();
      else if (f.fill === FILL_NULL) rec[name] = null;
    }
    return rec;
  }

  create(data: unknown): Promise<Row> {
    try {
      const e = this.#e;
      this.compiled.check(data, 'create');
      return e.insertOne(this.#record(data as Record<string, unknown>, new Date()));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async createMany(data: unknown): Promise<Row[]> {
    const e = this.#e;
    if (!Array.isArray(data)) throw new MegaError('validation.failed', `${this.compiled.name}.createMany takes an array`, { status: 400 });
    if (data.length === 0) return [];
    const now = new Date();
    const records = data.map((d) => {
      this.compiled.check(d, 'create');
      return this.#record(d as Record<string, unknown>, now);
    });
    return e.insert(records);
  }

  #patch(patch: unknown): Record<string, unknown> {
    const m = this.compiled;
    m.check(patch, 'update');
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(patch as Record<string, unknown>)) if (v !== undefined) out[k] = v;
    if (m.timestamps) out[m.timestamps.updatedAt] = new Date();
    return out;
  }

  async update(target: unknown, patch: unknown): Promise<Row | number> {
    const e = this.#e;
    const m = this.compiled;
    const values = this.#patch(patch);
    if (typeof target === 'object' && target !== null && !(target instanceof Date)) {
      const conds = parseWhere(m, target);
      if (conds.length === 0) throw emptyWhere(m, 'update');
      return Object.keys(values).length === 0 ? e.count(conds) : e.updateWhere(conds, values);
    }
    const key = pkValue(m, target);
    const row = key === undefined ? undefined : Object.keys(values).length === 0 ? await e.find(key) : await e.updateById(key, values);
    if (!row) throw notFound(m, `${m.pk.name}=${String(target).slice(0, 64)}`);
    return row;
  }

  async delete(target: unknown): Promise<number | undefined> {
    const e = this.#e;
    const m = this.compiled;
    if (typeof target === 'object' && target !== null) {
      const conds = parseWhere(m, target);
      if (conds.length === 0) throw emptyWhere(m, 'delete');
      return e.deleteWhere(conds);
    }
    const key = pkValue(m, target);
    if (key === undefined || !(await e.deleteById(key))) throw notFound(m, `${m.pk.name}=${String(target).slice(0, 64)}`);
    return undefined;
  }

  async count(where?: unknown): Promise<number> {
    const e = this.#e;
    return e.count(parseWhere(this.compiled, where));
  }

  async exists(where: unknown): Promise<boolean> {
    const e = this.#e;
    return (await e.select(parseWhere(this.compiled, where), undefined, undefined, 1)).length > 0;
  }

  async upsert(data: unknown, options: { conflict: readonly string[]; update?: readonly string[] }): Promise<Row> {
    const e = this.#e;
    const m = this.compiled;
    m.check(data, 'create');
    const conflict = [...(options?.conflict ?? [])];
    if (!isUniqueKey(m, conflict)) {
      throw new MegaError(
        'model.invalid_upsert',
        `${m.name}.upsert: conflict [${conflict.join(', ')}] must be the primary key, a unique field or the columns of a unique index`,
        { details: { model: m.name, conflict } },
      );
    }
    const input = data as Record<string, unknown>;
    for (const c of conflict) {
      if (input[c] === undefined || input[c] === null) {
        throw new MegaError('validation.failed', `${m.name}.upsert: conflict key "${c}" needs a value`, {
          status: 400,
          details: [{ in: 'model', path: `/${c}`, message: 'is required for upsert', keyword: 'required' }],
        });
      }
    }
    const managed = m.timestamps ? [m.timestamps.createdAt, m.timestamps.updatedAt] : [];
    const update = options.update
      ? [...options.update]
      : Object.keys(input).filter((k) => input[k] !== undefined && !conflict.includes(k) && k !== m.pk.name);
    for (const u of update) {
      if (!m.fields.has(u) || u === m.pk.name || managed.includes(u)) {
        throw new MegaError('model.invalid_upsert', `${m.name}.upsert: cannot update "${u}"`, { details: { model: m.name, field: u } });
      }
    }
    if (m.timestamps) update.push(m.timestamps.updatedAt);
    return e.upsert(this.#record(input, new Date()), conflict, update);
  }

  transaction<T>(fn: (tx: ModelTx) => Promise<T>): Promise<T> {
    return this.#e.transaction(fn);
  }

  async related(row: Row, name: string): Promise<Row | Row[] | undefined> {
    const m = this.compiled;
    const rel = Object.hasOwn(m.relations, name) ? m.relations[name] : undefined;
    if (!rel)
      throw new MegaError('model.unknown_relation', `${m.name} has no relation "${String(name).slice(0, 64)}"`, {
        details: { model: m.name },
      });
    const self = this.#bound();
    const target = self.#env.resolve?.(rel.model);
    if (!target) {
      throw new MegaError('model.unknown_relation', `${m.name}.${name}: model "${rel.model}" is not loaded beside ${m.name} in this app`, {
        details: { model: m.name, relation: name, target: rel.model },
      });
    }
    if (rel.kind === 'belongsTo') {
      const fk = row[rel.foreignKey];
      return fk === null || fk === undefined ? undefined : target.find(fk);
    }
    const page = await target.list({ where: { [rel.foreignKey]: row[m.pk.name] }, limit: target.#bound().#env.maxLimit });
    return page.items;
  }

  query(): unknown {
    return this.#e.query();
  }
  kysely(): unknown {
    return this.#e.kysely();
  }
  collection(): unknown {
    return this.#e.collection();
  }
}

/** How #record fills a field left out: the precedence of the checks it replaces, decided once per model. */
const FILL_MANAGED = 0; // a managed timestamp: always `now`, whatever was given
const FILL_NONE = 1;
const FILL_VALUE = 2;
const FILL_NOW = 3;
const FILL_TODAY = 4;
const FILL_UUID = 5;
const FILL_NULL = 6;
interface FieldFill {
  readonly name: string;
  readonly fill: number;
  readonly value?: unknown;
}
const recordPlans = new WeakMap<CompiledModel, readonly FieldFill[]>();

function recordPlan(m: CompiledModel): readonly FieldFill[] {
  let plan = recordPlans.get(m);
  if (!plan) {
    plan = [...m.fields.values()].map((f): FieldFill => {
      const d = f.default;
      if (m.timestamps && (f.name === m.timestamps.createdAt || f.name === m.timestamps.updatedAt))
        return { name: f.name, fill: FILL_MANAGED };
      if (d?.kind === 'value') return { name: f.name, fill: FILL_VALUE, value: d.value };
      if (d?.kind === 'now') return { name: f.name, fill: f.type === 'date' ? FILL_TODAY : FILL_NOW };
      if (d?.kind === 'uuid') return { name: f.name, fill: FILL_UUID };
      return { name: f.name, fill: f.nullable ? FILL_NULL : FILL_NONE };
    });
    recordPlans.set(m, plan);
  }
  return plan;
}

function emptyWhere(m: CompiledModel, op: string): MegaError {
  return new MegaError('model.invalid_where', `${m.name}.${op}: an empty where clause would touch every row`, {
    status: 400,
    details: { model: m.name },
  });
}

function isUniqueKey(m: CompiledModel, cols: readonly string[]): boolean {
  if (cols.length === 0 || cols.some((c) => !m.fields.has(c))) return false;
  if (cols.length === 1 && (cols[0] === m.pk.name || m.fields.get(cols[0] as string)?.unique)) return true;
  const set = new Set(cols);
  return m.indexes.some((i) => i.unique && i.columns.length === set.size && i.columns.every((c) => set.has(c)));
}

export type { Row };
