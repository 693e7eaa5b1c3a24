/**
 * Route validators kept on disk. Fastify compiles every route schema with Ajv at each start, and the
 * first compile also compiles Ajv's meta-schema: ~20 ms of a cold `mega start` for one schema. The
 * generated code (Ajv standalone) is kept in the nearest `node_modules/.cache/mega`, the kernel's
 * cache of config validators, under a hash of the schema, the shared schemas, the Ajv options and
 * the versions of Ajv, ajv-formats and @fastify/ajv-compiler; a later start loads it without
 * creating an Ajv instance at all.
 *
 * A miss compiles exactly as Fastify would (its own compiler, same options), so a bad schema fails
 * boot with the same error, and only a schema that compiled is ever written. A file that does not
 * load (corrupt, truncated) counts as a miss and is replaced; writes go through a rename, so
 * workers starting together never read half a file (the kernel's `codeCache`, shared with its config
 * validators). No writable node_modules: compiled every time.
 */
import { hash } from 'node:crypto';
import { createRequire } from 'node:module';
import { codeCache } from '@mega/kernel';

/** What Fastify hands a validator compiler for one part of one route. */
export interface ValidatorRequest {
  schema: unknown;
  method?: string;
  url?: string;
  httpPart?: string;
  contentType?: string;
}

/** The Ajv part of Fastify's options (`options.ajv`, with Fastify's defaults filled in). */
export interface AjvServerOptions {
  customOptions?: object;
  plugins?: unknown[];
  onCreate?: unknown;
  mode?: string;
}

type Validate = ((data: unknown) => boolean) & { errors?: unknown };
type Standalone = { default: (ajv: unknown, validate: Validate) => string };
type Compile = (request: ValidatorRequest) => Validate;
/** Fastify's `schemaController.compilersFactory.buildValidator` signature. */
export type BuildValidator = (externalSchemas: unknown, options?: AjvServerOptions) => Compile;

const AJV_REFERENCE = Symbol.for('fastify.ajv-compiler.reference');

interface Located {
  /** `require` from Fastify's compiler: the generated code's requires (ajv runtime, ajv-formats) resolve there. */
  require: NodeJS.Require;
  /** `require` from Fastify itself. */
  fastify: NodeJS.Require;
  versions: string;
}

let located: Located | undefined;

/** Where Fastify's validator compiler lives, and the versions the key holds (without loading it). */
function locate(): Located {
  if (located) return located;
  const fromFastify = createRequire(createRequire(import.meta.url).resolve('fastify'));
  const local = createRequire(fromFastify.resolve('@fastify/ajv-compiler'));
  const version = (name: string) => (local(`${name}/package.json`) as { version: string }).version;
  const versions = [
    version('ajv'),
    version('ajv-formats'),
    (fromFastify('@fastify/ajv-compiler/package.json') as { version: string }).version,
  ];
  located = { require: local, fastify: fromFastify, versions: versions.join(' ') };
  return located;
}

/**
 * A `buildValidator` for Fastify's schema controller that reads route validators from the cache
 * under `projectDir`'s nearest node_modules and compiles (then stores) only the ones missing.
 */
export function cachedValidators(projectDir: string): BuildValidator {
  const cache = codeCache(projectDir);
  // One Fastify compiler factory per server (as Fastify makes), created on the first miss.
  let factory: BuildValidator | undefined;
  return (externalSchemas, options = {}) => {
    // Ajv plugins and onCreate are code a key cannot cover: such a server compiles as Fastify does.
    const cacheable = cache !== undefined && !options.plugins?.length && !options.onCreate;
    // `code.source` keeps the generated code for the cache; it changes nothing in what it validates.
    const given = options.customOptions as { code?: object } | undefined;
    const customOptions = cacheable ? { ...given, code: { ...given?.code, source: true } } : given;
    let compile: Compile | undefined;
    const build = (request: ValidatorRequest): Validate => {
      factory ??= (locate().require('@fastify/ajv-compiler') as () => BuildValidator)();
      compile ??= factory(externalSchemas, { ...options, customOptions });
      return compile(request);
    };
    if (!cacheable) return build;
    return (request) => {
      const { require, versions } = locate();
      let key: string;
      try {
        key = hash('sha256', JSON.stringify([versions, options.mode, customOptions, externalSchemas, request.httpPart, request.schema]));
      } catch {
        return build(request); // not JSON (a BigInt, a cycle): Ajv decides, as without the cache
      }
      const name = `route-${key.slice(0, 32)}.cjs`;
      const cached = cache?.load(name, require);
      if (typeof cached === 'function') return cached as Validate;
      const validate = build(request);
      const ajv = (compile as unknown as Record<symbol, { ajv: unknown } | undefined>)[AJV_REFERENCE]?.ajv;
      // Not kept when Ajv cannot emit the schema standalone (or node_modules is read-only): compiled at every start.
      if (ajv) cache?.store(name, () => (require('ajv/dist/standalone/index.js') as Standalone).default(ajv, validate));
      return validate;
    };
  };
}

type BuildSerializer = (externalSchemas: unknown, options?: unknown) => unknown;

/**
 * Fastify's response serializer factory, loaded when a route first declares a response schema
 * (Fastify itself loads it with every server: ~3 ms of a cold start that most apps never use).
 */
export function lazySerializers(): BuildSerializer {
  let factory: BuildSerializer | undefined;
  return (externalSchemas, options) => {
    factory ??= (locate().fastify('@fastify/fast-json-stringify-compiler') as () => BuildSerializer)();
    return factory(externalSchemas, options);
  };
}
