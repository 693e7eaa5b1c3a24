import { join } from 'node:path';
import { redactUrl } from '@mega/adapters';
// Brings the ctx.reply and `redis` service types of @mega/http and @mega/cache-redis into scope.
import type {} from '@mega/cache-redis';
import type {} from '@mega/http';
import type { ConfigInput, Static } from '@mega/kernel';
import { definePlugin, MegaError, PluginError, packageVersion, Secret, Type } from '@mega/kernel';
import type { FastifyRequest } from 'fastify';
import type { SessionApi, SessionRuntime } from './session.js';
import { Session, sessionCookieKey } from './session.js';
import type { SessionStore } from './stores.js';
import { FileSessionStore, RedisSessionStore } from './stores.js';

export type { SessionApi } from './session.js';
export { SESSION_COOKIE_LABEL, Session, sessionCookieKey, signId, unsignId } from './session.js';
export type { SessionData, SessionStore, StoredSession } from './stores.js';
export { FileSessionStore, RedisSessionStore } from './stores.js';

const CACHE_REDIS = '@mega/cache-redis';

/** The app key `session` of apps/<name>/app.config.ts: the one source of its type and defaults. */
export const SessionAppConfig = Type.Object({
  session: Type.Object(
    {
      enabled: Type.Boolean({ default: true }),
      cookieName: Type.String({ pattern: '^[A-Za-z0-9_-]+$', default: 'mega_sid' }),
      /** HMAC key of the cookie; filled by the kernel from MEGA_SESSION_SECRET or MEGA_SECRET when absent. */
      // Optional for the kernel: only an app with sessions enabled needs it (checked in setup).
      secret: Type.Optional(
        Secret({ env: 'MEGA_SESSION_SECRET', code: 'session.secret_missing', purpose: 'sessions', minBytes: 16, optional: true }),
      ),
      /** Session lifetime, rolled on every write. */
      ttlMs: Type.Integer({ minimum: 1000, default: 86_400_000 }),
      /** Extend a session read in the second half of its lifetime. */
      rolling: Type.Boolean({ default: true }),
      cookie: Type.Object(
        {
          path: Type.String({ default: '/' }),
          domain: Type.Optional(Type.String({ minLength: 1 })),
          httpOnly: Type.Boolean({ default: true }),
          sameSite: Type.Union([Type.Literal('lax'), Type.Literal('strict'), Type.Literal('none')], { default: 'lax' }),
          /** Unset: true in production (it depends on the environment, so it has no static default). */
          secure: Type.Optional(Type.Boolean()),
        },
        { additionalProperties: false, default: {} },
      ),
      // One object for both drivers (not a union): Ajv applies defaults only outside anyOf.
      store: Type.Object(
        {
          driver: Type.Union([Type.Literal('file'), Type.Literal('redis')], { default: 'file' }),
          /** file: directory relative to the project (default `.mega/sessions/<app>`). */
          dir: Type.Optional(Type.String({ minLength: 1 })),
          /** file: expiry scan interval; 0 turns it off. */
          cleanupIntervalMs: Type.Integer({ minimum: 0, default: 3_600_000 }),
          /** redis: the `services.caches` alias (@mega/cache-redis) holding the sessions (default: `default` or the only one). */
          cache: Type.Optional(Type.String({ minLength: 1 })),
          /** redis: key prefix (default `mega:sess:<app>:`). */
          prefix: Type.Optional(Type.String()),
        },
        { additionalProperties: false, default: {} },
      ),
    },
    { additionalProperties: false, default: {} },
  ),
});

export type SessionConfig = Static<typeof SessionAppConfig>['session'];

/** Called after `ctx.session.destroy()` removed a session (its id, its app). */
export type SessionEndListener = (event: { app: string; id: string }) => void | Promise<void>;

/** Service `sessions`: the store of each app's sessions (admin tools, tests). */
export interface SessionService {
  storeOf(app: string): SessionStore | undefined;
  /** True when the app has sessions on (`ctx.session` works there). */
  enabled(app: string): boolean;
  /**
   * Listens for destroyed sessions (call during setup or boot). `destroy()` awaits the listeners; one
   * that throws is logged at `warn`, never fails the request. @mega/ws-presence closes the session's sockets here.
   */
  onDestroy(listener: SessionEndListener): void;
}

declare module '@mega/kernel' {
  /** This plugin's keys of app.config.ts (see the README's config table). */
  interface AppConfig {
    session?: ConfigInput<typeof SessionAppConfig>['session'];
  }
  interface MegaServices {
    sessions: SessionService;
  }
  interface MegaContext {
    /** The visitor's session (HTTP requests of apps with sessions on). */
    readonly session: SessionApi;
  }
}

export default definePlugin({
  name: '@mega/session',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/http'],
  // Set up after the Redis owner when it is loaded, so its `redis` service is there.
  after: [CACHE_REDIS],
  config: { app: SessionAppConfig },
  setup(api) {
    const { kernel } = api;
    const runtimes = new Map<string, SessionRuntime>();
    const configs = new Map<string, SessionConfig>();
    for (const app of kernel.apps) {
      const config = api.appConfig(app).session;
      if (!config.enabled) continue;
      if (config.secret === undefined) {
        throw new MegaError(
          'session.secret_missing',
          `app ${app.name}: sessions need a secret in production; set session.secret in its app.config.ts or MEGA_SESSION_SECRET`,
        );
      }
      if (config.store.driver === 'redis') {
        if (!api.has('redis')) {
          throw new PluginError(
            'plugin.missing_dependency',
            `app ${app.name}: session.store.driver 'redis' needs ${CACHE_REDIS}, which is not in plugins; run: mega plugin add ${CACHE_REDIS}`,
            { plugin: api.name, details: { plugin: api.name, missing: CACHE_REDIS, app: app.name } },
          );
        }
        const { aliases } = api.use('redis');
        const alias = config.store.cache;
        if (alias !== undefined ? !aliases.includes(alias) : aliases.length === 0) {
          throw new MegaError(
            'session.store_invalid',
            `app ${app.name}: the redis session store needs services.caches.${alias ?? 'default'} with driver 'redis' (declared: ${aliases.join(', ') || 'none'}); set session.store.cache to one of them`,
            { details: { app: app.name, cache: alias, known: aliases } },
          );
        }
      }
      configs.set(app.name, config);
    }

    const endListeners: SessionEndListener[] = [];
    api.provide('sessions', {
      storeOf: (app: string) => runtimes.get(app)?.store,
      enabled: (app: string) => configs.has(app),
      onDestroy: (listener) => {
        endListeners.push(listener);
      },
    });
    const ended = async (app: string, id: string): Promise<void> => {
      for (const listener of endListeners) {
        try {
          await listener({ app, id });
        } catch (error) {
          api.log.warn({ err: error, app }, 'session: a destroy listener failed (the session is destroyed)');
        }
      }
    };
    api.contributeCtx('session', (ctx) => {
      const runtime = runtimes.get(ctx.app.name);
      if (!runtime) throw new MegaError('session.disabled', `sessions are off for app ${ctx.app.name}`);
      const source = ctx.source as Partial<FastifyRequest> | undefined;
      const cookie = source?.headers?.cookie;
      return new Session(runtime, typeof cookie === 'string' ? cookie : undefined, ctx.reply, ctx.log);
    });

    api.tap('boot', () => {
      for (const [name, config] of configs) {
        const { store } = config;
        let instance: SessionStore;
        if (store.driver === 'redis') {
          // The shared client of @mega/cache-redis (connected by its own boot tap, which runs first).
          const redis = api.use('redis');
          instance = new RedisSessionStore(redis.client(store.cache), store.prefix ?? `mega:sess:${name}:`);
          api.log.debug({ app: name, cache: store.cache, url: redactUrl(redis.url(store.cache)) }, 'session: redis store');
        } else {
          const dir = store.dir ? join(kernel.dir, store.dir) : join(kernel.dir, '.mega', 'sessions', name);
          instance = new FileSessionStore(dir, store.cleanupIntervalMs, (error) =>
            api.log.warn({ err: error, app: name }, 'session: expiry scan failed'),
          );
        }
        const { cookie } = config;
        runtimes.set(name, {
          store: instance,
          cookieName: config.cookieName,
          // Always set: the kernel fills a Secret from the environment (or a random one in development) or fails boot.
          // The cookie is signed with a key derived for this purpose only (HKDF label mega.session.cookie.v1).
          key: sessionCookieKey(config.secret as string),
          ended: (id) => ended(name, id),
          ttlMs: config.ttlMs,
          rolling: config.rolling,
          cookie: {
            path: cookie.path,
            httpOnly: cookie.httpOnly,
            sameSite: cookie.sameSite,
            secure: cookie.secure ?? kernel.env === 'production',
            ...(cookie.domain ? { domain: cookie.domain } : {}),
          },
        });
      }
    });

    api.onShutdown(async () => {
      for (const runtime of runtimes.values()) await runtime.store.close();
    });
  },
});
