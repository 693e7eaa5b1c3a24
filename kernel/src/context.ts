/**
 * Per-request / per-connection context. Building one costs a single small object: plugin
 * contributions (`ctx.db`, `ctx.session`, `ctx.t`, ...) are getters on a shared prototype that run
 * their factory on first access and memoise the value in a slot array, so untouched members cost
 * nothing and every ctx keeps the same hidden class. Measured against a lazy Proxy
 * (`npm run bench:ctx`), getters won every scenario: ~2x cheaper to create, 1.5-4x to read.
 */

import type { App } from './apps.js';
import { MegaError } from './errors.js';
import type { Logger } from './logger.js';

/** Members plugins add to ctx. Extend by declaration merging: `interface MegaContext { db(alias?: string): Db }`. */
export interface MegaContext {
  readonly app: App;
  /** Request id (HTTP) or connection id (WS). */
  readonly id: string;
  /** The transport object the owning plugin built this ctx for (Fastify request, WS connection). */
  readonly source: unknown;
  /** Child logger bound to the app and id; created on first use. */
  readonly log: Logger;
}

export type ContextContribution<T = unknown> = (ctx: MegaContext) => T;

export interface ContextInit {
  id: string;
  source?: unknown;
}

const UNSET = Symbol('unset');

export class ContextFactory {
  readonly #contributions = new Map<string, ContextContribution>();
  #ctor: (new (app: App, init: ContextInit) => MegaContext) | undefined;

  /** Registers a lazy member; allowed until the first ctx is built. */
  contribute(name: string, factory: ContextContribution, plugin = 'unknown'): void {
    if (this.#ctor) throw new MegaError('ctx.frozen', `[${plugin}] ctx.${name} must be contributed during setup or boot`);
    if (this.#contributions.has(name) || name === 'app' || name === 'id' || name === 'source' || name === 'log') {
      throw new MegaError('ctx.duplicate', `[${plugin}] ctx.${name} is already contributed`);
    }
    this.#contributions.set(name, factory);
  }

  has(name: string): boolean {
    return this.#contributions.has(name);
  }

  create(app: App, init: ContextInit): MegaContext {
    this.#ctor ??= this.#build();
    return new this.#ctor(app, init);
  }

  #build(): new (app: App, init: ContextInit) => MegaContext {
    const entries = [...this.#contributions.entries()];
    const size = entries.length;
    class Ctx {
      readonly app: App;
      readonly id: string;
      readonly source: unknown;
      _log: Logger | undefined = undefined;
      _slots: unknown[] | undefined = undefined;
      constructor(app: App, init: ContextInit) {
        this.app = app;
        this.id = init.id;
        this.source = init.source;
      }
      get log(): Logger {
        this._log ??= this.app.log.child({ reqId: this.id });
        return this._log;
      }
    }
    entries.forEach(([name, factory], index) => {
      Object.defineProperty(Ctx.prototype, name, {
        enumerable: true,
        get(this: Ctx) {
          this._slots ??= new Array<unknown>(size).fill(UNSET);
          const slots = this._slots;
          let value = slots[index];
          if (value === UNSET) {
            value = factory(this as unknown as MegaContext);
            slots[index] = value;
          }
          return value;
        },
      });
    });
    return Ctx as unknown as new (
      app: App,
      init: ContextInit,
    ) => MegaContext;
  }
}
