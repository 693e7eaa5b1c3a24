/**
 * @mega/models: models defined once in an app's `models/` give typed CRUD, validation schemas and the
 * normalized schema migrations diff. Each app's models are bound to the app's databases (`ctx.db(alias)`,
 * the registry @mega/db-postgres, @mega/db-sqlite, @mega/db-mariadb and @mega/db-mongo share) and
 * reached as `ctx.models.<Name>`, `getApp().models.<Name>`, or by importing the model.
 */
import type { AdapterRegistry } from '@mega/adapters';
import type { App, ConfigInput, MegaContext, Static } from '@mega/kernel';
import { ConfigError, definePlugin, packageVersion, Type } from '@mega/kernel';
import { modelGenerator } from './generators.js';
import { loadModels } from './loader.js';
import { compiledOf, type ModelImpl, markLoaded, registry } from './model.js';
import { snapshotOf } from './snapshot.js';
import type { AnyModel, Models } from './types.js';

export type { CompiledModel, FieldInfo, ModelDefinition } from './define.js';
export { belongsTo, defineModel, hasMany, tableNameOf } from './define.js';
export type { AnyField, FieldDraft } from './fields.js';
export { FIELD_TYPES, Field, field, isField } from './fields.js';
export { modelGenerator, modelWords } from './generators.js';
export { loadModels } from './loader.js';
export { compiledOf, isModel } from './model.js';
export type { FieldDefault, FieldSpec, FieldType, IndexSpec, SchemaSnapshot, TableSpec } from './schema.js';
export { snapshotOf, snapshotsByDb, tableSpecOf } from './snapshot.js';
export type {
  AnyModel,
  FieldsMap,
  InsertOf,
  InsertOfFields,
  ListOptions,
  Model,
  ModelSchemas,
  Models,
  ModelTx,
  ModelTypes,
  MongoLike,
  Ops,
  OrderBy,
  Page,
  RelatedOf,
  RelationDef,
  RowOf,
  RowOfFields,
  TimestampOption,
  UpdateOf,
  UpdateOfFields,
  UpsertOptions,
  Where,
} from './types.js';

/** `models` in mega.config.ts. */
export const ModelsGlobalConfig = Type.Object({
  models: Type.Object(
    {
      /** Model files directory inside each app. */
      dir: Type.String({ minLength: 1, default: 'models' }),
      /** `list()` page size when no `limit` is given. */
      defaultLimit: Type.Integer({ minimum: 1, default: 50 }),
      /** The largest `limit` `list()` accepts (more is `model.invalid_limit`, 400). */
      maxLimit: Type.Integer({ minimum: 1, default: 1000 }),
    },
    { additionalProperties: false, default: {} },
  ),
});

/** `models` in an app.config.ts. */
export const ModelsAppConfig = Type.Object({
  models: Type.Object(
    {
      /** The `services.dbs` alias of this app's models that name no `db` (default: `primary`, or the only one). */
      db: Type.Optional(Type.String({ minLength: 1 })),
    },
    { additionalProperties: false, default: {} },
  ),
});

/** One app's bound models by name (`ctx.models`): typed through the `Models` interface. */
export type AppModels = MegaContext['models'];

/** Service `models`: every app's models (used by @mega/migrations and `mega migrate`). */
export interface ModelsService {
  readonly apps: readonly string[];
  /** The app's models as loaded from its files (unbound definitions). */
  definitions(app: string): AnyModel[];
  /** The app's models bound to their dbs, by name. */
  bound(app: string): Readonly<Record<string, AnyModel>>;
  /** The alias a model of `app` without its own `db` uses. */
  defaultDb(app: string): string;
  /** The alias `model` is bound to in `app`. */
  dbOf(app: string, model: AnyModel): string;
}

declare module '@mega/kernel' {
  /**
   * `ctx.models`' type. It extends @mega/models' `Models` (extend that one, as the generator does);
   * declared here, on the kernel, so that two copies of this package in one program (sources and
   * build) declare `ctx.models` with the very same type.
   */
  interface MegaModels extends Models {}
  interface MegaConfig {
    models?: ConfigInput<typeof ModelsGlobalConfig>['models'];
  }
  interface AppConfig {
    models?: ConfigInput<typeof ModelsAppConfig>['models'];
  }
  interface MegaContext {
    /** This app's models, bound to its databases (`ctx.models.User.find(1)`). */
    readonly models: Readonly<MegaModels>;
  }
  interface AppExtensions {
    readonly models: Readonly<MegaModels>;
  }
  interface MegaServices {
    models: ModelsService;
  }
}

const DB_PLUGINS = ['@mega/db-postgres', '@mega/db-sqlite', '@mega/db-mariadb', '@mega/db-mongo'];

export default definePlugin({
  name: '@mega/models',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  after: DB_PLUGINS,
  config: { global: ModelsGlobalConfig, app: ModelsAppConfig },
  generators: { model: modelGenerator },
  async setup(api, config) {
    const c = config.models;
    if (c.defaultLimit > c.maxLimit) {
      throw new ConfigError('config.invalid', `models.defaultLimit (${c.defaultLimit}) is above models.maxLimit (${c.maxLimit})`, {
        details: { defaultLimit: c.defaultLimit, maxLimit: c.maxLimit },
      });
    }
    const dbs = api.has('adapters:dbs') ? api.use<AdapterRegistry<unknown>>('adapters:dbs') : undefined;
    const perApp = new Map<string, { app: App; definitions: AnyModel[]; bound: Record<string, AnyModel>; defaultDb: string }>();
    for (const app of api.kernel.apps) {
      const definitions = await loadModels(app.dir, { dir: c.dir });
      // Relations must name models of this app: checked now, so a typo stops the boot.
      snapshotOf(definitions);
      const appDb = api.appConfig(app).models.db;
      const bound: Record<string, AnyModel> = {};
      const byName = new Map<string, ModelImpl>();
      const env = { defaultLimit: c.defaultLimit, maxLimit: c.maxLimit, resolve: (name: string) => byName.get(name) };
      // `get` picks the default alias and throws adapter.unknown_alias naming the known ones.
      const defaultDb = dbs && dbs.aliases.length > 0 ? (dbs.get(appDb) as { alias: string }).alias : (appDb ?? 'primary');
      if (definitions.length > 0) {
        if (!dbs || dbs.aliases.length === 0) {
          throw new ConfigError(
            'models.no_db',
            `app "${app.name}" has models (${definitions.map((m) => compiledOf(m).name).join(', ')}) but no database: run mega plugin add db-postgres (embedded PGlite by default), or db-sqlite, db-mariadb, db-mongo`,
            { details: { app: app.name } },
          );
        }
        for (const model of definitions) {
          const db = dbs.get(compiledOf(model).db ?? defaultDb);
          const b = (model as unknown as ModelImpl).bind(db, env);
          byName.set(b.name, b);
          bound[b.name] = b as unknown as AnyModel;
          markLoaded(model, app.name);
        }
      }
      perApp.set(app.name, { app, definitions, bound: Object.freeze(bound), defaultDb });
      if (definitions.length) {
        api.log.debug({ app: app.name, models: Object.keys(bound) }, `models: ${Object.keys(bound).length} model(s) for "${app.name}"`);
      }
    }
    const entry = (name: string) => {
      const found = perApp.get(name);
      if (!found)
        throw new ConfigError('models.unknown_app', `no app "${name}" (apps: ${[...perApp.keys()].join(', ')})`, {
          details: { app: name },
        });
      return found;
    };
    // Unbound model objects (plain imports) find their app's bound copy here.
    const registered = new Map<string, Map<string, ModelImpl>>();
    for (const [name, e] of perApp) {
      const map = new Map(Object.entries(e.bound) as Array<[string, ModelImpl]>);
      registered.set(name, map);
      registry.set(name, map);
    }
    api.onShutdown(() => {
      for (const [name, map] of registered) if (registry.get(name) === map) registry.delete(name);
    });
    api.contributeCtx('models', (ctx) => perApp.get(ctx.app.name)?.bound ?? Object.freeze({}));
    api.contributeApp('models', (app: App) => perApp.get(app.name)?.bound ?? Object.freeze({}));
    api.provide('models', {
      get apps() {
        return [...perApp.keys()];
      },
      definitions: (app) => [...entry(app).definitions],
      bound: (app) => entry(app).bound,
      defaultDb: (app) => entry(app).defaultDb,
      dbOf: (app, model) => compiledOf(model).db ?? entry(app).defaultDb,
    } satisfies ModelsService);
  },
});

export type ModelsConfig = Static<typeof ModelsGlobalConfig>['models'];
