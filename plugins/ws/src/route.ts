/**
 * Route compilation at boot: checks the channel class, builds the dispatch table from its dotted
 * method names, compiles per-type payload schemas, and resolves per-route limits. Mistakes stop the
 * boot with a code naming the route.
 */
import type { App, RouteDefinition } from '@mega/kernel';
import { MegaError } from '@mega/kernel';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { Ajv } from 'ajv';
import type { WsConfig } from './config.js';
import type { ResolvedCompression } from './deflate.js';
import { resolveCompression } from './deflate.js';
import type { BeforeUpgrade, ChannelClass, WsRouteOptions } from './types.js';

/** Dotted lowercase words, as SPEC §5 and the codec's envelope check define a type. */
export const DOTTED_TYPE = /^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+$/;
const ANY_TYPE = /^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*$/;
const RESERVED = new Set(['constructor', 'onConnect', 'onDisconnect']);

export interface CompiledRoute {
  readonly app: App;
  readonly path: string;
  readonly Channel: ChannelClass;
  /** Message types this channel handles (method names). */
  readonly types: ReadonlySet<string>;
  readonly validators: ReadonlyMap<string, ValidateFunction>;
  readonly before: readonly BeforeUpgrade[];
  readonly heartbeatMs: number;
  readonly maxPayload: number;
  readonly maxFragments: number;
  readonly maxBufferedBytes: number;
  readonly writeDelayMs: number;
  readonly preConnectQueue: number;
  readonly compression: ResolvedCompression | null;
  readonly rejectWith: 'http' | 'close';
  readonly origins: 'same-host' | '*' | ReadonlySet<string>;
}

const ajv = new Ajv({ allErrors: true, strict: false });

function routeError(def: RouteDefinition, code: string, message: string, cause?: unknown): MegaError {
  return new MegaError(code, `ws route ${def.path} (app ${def.app.name}): ${message}`, cause === undefined ? {} : { cause });
}

/** Dotted method names along the prototype chain (excluding Object.prototype). */
function messageTypes(Channel: ChannelClass): Set<string> {
  const types = new Set<string>();
  for (let proto = Channel.prototype as object | null; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      if (RESERVED.has(name) || !DOTTED_TYPE.test(name)) continue;
      const d = Object.getOwnPropertyDescriptor(proto, name);
      if (d && typeof d.value === 'function') types.add(name);
    }
  }
  return types;
}

function positiveInt(def: RouteDefinition, key: string, value: unknown, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw routeError(def, 'ws.route_invalid', `${key} must be an integer >= ${min} (got ${String(value)})`);
  }
  return value;
}

export function compileRoute(def: RouteDefinition, config: WsConfig): CompiledRoute {
  const Channel = def.handler as ChannelClass;
  if (typeof Channel !== 'function' || typeof Channel.prototype !== 'object') {
    throw routeError(def, 'ws.channel_invalid', 'the channel must be a class (new () => channel)');
  }
  if (!def.path.startsWith('/')) throw routeError(def, 'ws.route_invalid', 'path must start with "/"');
  const options = def.options as WsRouteOptions & Record<string, unknown>;
  const types = messageTypes(Channel);
  const validators = new Map<string, ValidateFunction>();
  for (const [type, schema] of Object.entries(options.schemas ?? {})) {
    if (!ANY_TYPE.test(type)) throw routeError(def, 'ws.schema_invalid', `"${type}" is not a message type (dotted lowercase words)`);
    if (!types.has(type)) {
      throw routeError(
        def,
        'ws.schema_without_handler',
        `a schema is given for "${type}" but ${Channel.name || 'the channel'} has no ['${type}'] method`,
      );
    }
    try {
      validators.set(type, ajv.compile(schema));
    } catch (error) {
      throw routeError(def, 'ws.schema_invalid', `schema for "${type}" does not compile: ${(error as Error).message}`, error);
    }
  }
  const before = options.before === undefined ? [] : Array.isArray(options.before) ? options.before : [options.before];
  for (const fn of before) {
    if (typeof fn !== 'function')
      throw routeError(def, 'ws.route_invalid', 'before must be a function (req, ctx) => auth, or a list of them');
  }
  const rejectWith = options.rejectWith ?? 'http';
  if (rejectWith !== 'http' && rejectWith !== 'close') throw routeError(def, 'ws.route_invalid', 'rejectWith must be "http" or "close"');
  const o = options.origins ?? 'same-host';
  if (o !== 'same-host' && o !== '*' && !(Array.isArray(o) && o.every((x) => typeof x === 'string'))) {
    throw routeError(def, 'ws.route_invalid', "origins must be 'same-host', '*' or a list of origins");
  }
  const origins = o === 'same-host' || o === '*' ? o : new Set((o as readonly string[]).map((x) => x.toLowerCase().replace(/\/$/, '')));
  let compression: ResolvedCompression | null;
  try {
    compression = resolveCompression(options.compression, config.compression);
  } catch (error) {
    throw routeError(def, 'ws.route_invalid', (error as Error).message, error);
  }
  if (compression) {
    positiveInt(def, 'compression.threshold', compression.threshold, 0, 0);
    positiveInt(def, 'compression.maxContexts', compression.maxContexts, 0, 0);
    if (!Number.isInteger(compression.level) || compression.level < 0 || compression.level > 9) {
      throw routeError(def, 'ws.route_invalid', 'compression.level must be 0..9');
    }
    const bits = compression.serverMaxWindowBits;
    if (!Number.isInteger(bits) || bits < 9 || bits > 15)
      throw routeError(def, 'ws.route_invalid', 'compression.serverMaxWindowBits must be 9..15');
  }
  return {
    app: def.app,
    path: def.path,
    Channel,
    types,
    validators,
    before,
    heartbeatMs: positiveInt(def, 'heartbeatMs', options.heartbeatMs, config.heartbeatMs, 0),
    maxPayload: positiveInt(def, 'maxPayload', options.maxPayload, config.maxPayload),
    maxFragments: positiveInt(def, 'maxFragments', options.maxFragments, config.maxFragments),
    maxBufferedBytes: positiveInt(def, 'maxBufferedBytes', options.maxBufferedBytes, config.maxBufferedBytes),
    writeDelayMs: positiveInt(def, 'writeDelayMs', options.writeDelayMs, config.writeDelayMs, 0),
    preConnectQueue: positiveInt(def, 'preConnectQueue', options.preConnectQueue, config.preConnectQueue, 0),
    compression,
    rejectWith,
    origins,
  };
}

/** Ajv errors as `{ path, message }`, at most 10. */
export function schemaDetails(errors: ErrorObject[] | null | undefined): Array<{ path: string; message: string }> {
  return (errors ?? []).slice(0, 10).map((e) => ({ path: e.instancePath || '/', message: e.message ?? 'is invalid' }));
}
