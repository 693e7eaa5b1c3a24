/**
 * Models -> the normalized schema (`TableSpec`, `SchemaSnapshot`) that migrations diff. Relations
 * name their target by model name, so foreign keys are resolved against the set of models given.
 */
import { ConfigError } from '@mega/kernel';
import type { CompiledModel } from './define.js';
import { compiledOf } from './model.js';
import type { FieldSpec, IndexSpec, SchemaSnapshot, TableSpec } from './schema.js';
import type { AnyModel } from './types.js';

/** The TableSpec of `model`; `models` resolves belongsTo targets (default: just this model). */
export function tableSpecOf(model: AnyModel, models: readonly AnyModel[] = [model]): TableSpec {
  const m = compiledOf(model);
  const byName = new Map(models.map((x) => [compiledOf(x).name, compiledOf(x)]));
  const refs = new Map<string, NonNullable<FieldSpec['references']>>();
  for (const [relation, rel] of Object.entries(m.relations)) {
    if (rel.kind !== 'belongsTo') continue;
    const target = byName.get(rel.model);
    if (!target) {
      throw new ConfigError(
        'model.invalid_relation',
        `model "${m.name}": relation "${relation}" belongs to "${rel.model}", which is not among the app's models (${[...byName.keys()].join(', ')})`,
        { details: { model: m.name, relation, target: rel.model } },
      );
    }
    refs.set(rel.foreignKey, { table: target.table, column: target.pk.name, ...(rel.onDelete ? { onDelete: rel.onDelete } : {}) });
  }
  const fields: FieldSpec[] = [...m.fields.values()].map((f) => {
    const spec: FieldSpec = { name: f.name, type: f.type, nullable: f.nullable };
    if (f.primary) spec.primary = true;
    if (f.unique && !f.primary) spec.unique = true;
    if (f.default) spec.default = { ...f.default };
    if (f.type === 'string') spec.length = f.length ?? 255;
    if (f.precision !== undefined) spec.precision = f.precision;
    if (f.scale !== undefined) spec.scale = f.scale;
    const ref = refs.get(f.name);
    if (ref) spec.references = ref;
    return spec;
  });
  const indexes: IndexSpec[] = [];
  for (const f of m.fields.values()) {
    if (f.index && !f.primary) indexes.push({ name: `${m.table}_${f.name}_idx`, columns: [f.name], unique: false });
  }
  for (const i of m.indexes) {
    indexes.push({
      name: i.name ?? `${m.table}_${i.columns.join('_')}_${i.unique ? 'key' : 'idx'}`,
      columns: [...i.columns],
      unique: i.unique,
    });
  }
  return { name: m.table, model: m.name, primaryKey: m.pk.name, fields, indexes, timestamps: m.timestamps !== undefined };
}

/** Every model's TableSpec by table name; two models on one table is `model.duplicate_table`. */
export function snapshotOf(models: readonly AnyModel[], resolveAgainst: readonly AnyModel[] = models): SchemaSnapshot {
  const tables: Record<string, TableSpec> = {};
  const owner = new Map<string, string>();
  for (const model of [...models].sort((a, b) => compiledOf(a).table.localeCompare(compiledOf(b).table))) {
    const m: CompiledModel = compiledOf(model);
    const seen = owner.get(m.table);
    if (seen !== undefined && seen !== m.name) {
      throw new ConfigError('model.duplicate_table', `models "${seen}" and "${m.name}" both use table "${m.table}"`, {
        details: { table: m.table, models: [seen, m.name] },
      });
    }
    owner.set(m.table, m.name);
    tables[m.table] = tableSpecOf(model, resolveAgainst);
  }
  return { version: 1, tables };
}

/**
 * Snapshots per db alias: each model under its `db`, or `defaultDb`. Relations resolve across all
 * models; a foreign key to a table in another database cannot exist, so it is left out.
 */
export function snapshotsByDb(models: readonly AnyModel[], defaultDb: string): Record<string, SchemaSnapshot> {
  const groups = new Map<string, AnyModel[]>();
  for (const model of models) {
    const alias = compiledOf(model).db ?? defaultDb;
    groups.set(alias, [...(groups.get(alias) ?? []), model]);
  }
  const out: Record<string, SchemaSnapshot> = {};
  for (const [alias, group] of groups) {
    const snap = snapshotOf(group, models);
    for (const spec of Object.values(snap.tables)) {
      for (const f of spec.fields) if (f.references && !snap.tables[f.references.table]) delete f.references;
    }
    out[alias] = snap;
  }
  return out;
}
