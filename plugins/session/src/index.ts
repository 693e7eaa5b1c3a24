import { join } from 'node:path';
// Brings the http plugin's ctx members (ctx.reply) into scope.
import type {} from '@mega/http';
import type { Kernel, ServiceDeclaration } from '@mega/kernel';
import { definePlugin, MegaError, packageVersion, resolveAppSecret } from '@mega/kernel';
import type { FastifyRequest } from 'fastify';
import { Redis } from 'ioredis';
import type { SessionRuntime } from './session.js';
import { Session } from './session.js';
import type { SessionStore } from './stores.js';
import { DEFAULT_FILE_CLEANUP_INTERVAL_MS, FileSessionStore, RedisSessionStore } from './stores.js';

export { Session, signId, unsignId } from './session.js';
export type { SessionData, SessionStore, StoredSession } from './stores.js';
export { DEFAULT_FILE_CLEANUP_INTERVAL_MS, FileSessionStore, RedisSessionStore } from './stores.js';

export interface SessionConfig {
  enabled?: boolean;
  cookieName?: string;
  /** HMAC secret for the cookie; default env MEGA_SESSION_SECRET or MEGA_SECRET. Required in production. */
  secret?: string;
  /** Session lifetime, rolled on every write. */
  ttlMs?: number;
  /** Extend a session read in the second half of its lifetime (default true). */
  rolling?: boolean;
  cookie?: { path?: string; domain?: string; httpOnly?: boolean; sameSite?: 'lax' | 'strict' | 'none'; secure?: boolean };
  store?: { driver: 'file'; dir?: string; cleanupIntervalMs?: number } | { driver: 'redis'; url?: string; cache?: string; prefix?: string };
}

/** Service `sessions`: the store of each app's sessions (admin tools, tests). */
export interface SessionService {
  storeOf(app: string): SessionStore | undefined;
}

declare module '@mega/kernel' {
  interface MegaServices {
    sessions: SessionService;
  }
  interface MegaContext {
    /** The visitor's session (HTTP requests of apps with sessions on). */
    readonly session: Session;
  }
}

const configSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    enabled: { type: 'boolean', default: true },
    cookieName: { type: 'string', pattern: '^[A-Za-z0-9_-]+$', default: 'mega_sid' },
    secret: { type: 'string', minLength: 16 },
    ttlMs: { type: 'integer', minimum: 1000, default: 86_400_000 },
    rolling: { type: 'boolean', default: true },
    cookie: {
      type: 'object',
      additionalProperties: false,
      properties: {
        path: { type: 'string', default: '/' },
        domain: { type: 'string' },
        httpOnly: { type: 'boolean', default: true },
        sameSite: { enum: ['lax', 'strict', 'none'], default: 'lax' },
        secure: { type: 'boolean' },
      },
      default: {},
    },
    store: {
      type: 'object',
      required: ['driver'],
      properties: {
        driver: { enum: ['file', 'redis'] },
        dir: { type: 'string' },
        cleanupIntervalMs: { type: 'integer', minimum: 0 },
        url: { type: 'string' },
        cache: { type: 'string' },
        prefix: { type: 'string' },
      },
      default: { driver: 'file' },
    },
  },
} as const;

async function connectRedis(url: string, what: string): Promise<Redis> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2 });
  client.on('error', () => undefined); // surfaced by the failing command
  try {
    await client.connect();
    await client.ping();
  } catch (error) {
    client.disconnect();
    throw new MegaError('session.store_unavailable', `cannot reach Redis for ${what} (${url}): ${(error as Error).message}`, {
      cause: error,
    });
  }
  return client;
}

export default definePlugin<undefined>({
  name: '@mega/session',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/http'],
  configKey: 'session',
  configScope: 'app',
  configSchema,
  setup(kernel: Kernel) {
    const runtimes = new Map<string, SessionRuntime>();
    const configs = new Map<string, SessionConfig>();
    for (const app of kernel.apps) {
      const config = kernel.appConfig<SessionConfig>(app, 'session');
      if (config.enabled === false) continue;
      configs.set(app.name, {
        ...config,
        secret: resolveAppSecret(kernel, app.name, config.secret, {
          configKey: 'session.secret',
          envVar: 'MEGA_SESSION_SECRET',
          code: 'session.secret_missing',
          purpose: 'sessions',
        }),
      });
    }

    kernel.provide('sessions', { storeOf: (app: string) => runtimes.get(app)?.store }, '@mega/session');
    kernel.contributeCtx(
      'session',
      (ctx) => {
        const runtime = runtimes.get(ctx.app.name);
        if (!runtime) throw new MegaError('session.disabled', `sessions are off for app ${ctx.app.name}`);
        const source = ctx.source as Partial<FastifyRequest> | undefined;
        const cookie = source?.headers?.cookie;
        return new Session(runtime, typeof cookie === 'string' ? cookie : undefined, ctx.reply, ctx.log);
      },
      '@mega/session',
    );

    kernel.hooks.boot.tapPromise('@mega/session', async () => {
      for (const [name, config] of configs) {
        const store = config.store ?? { driver: 'file' };
        let instance: SessionStore;
        if (store.driver === 'redis') {
          const declared: ServiceDeclaration | undefined = store.cache ? kernel.config.services?.caches?.[store.cache] : undefined;
          const url = store.url ?? declared?.url;
          if (!url) {
            throw new MegaError(
              'session.store_invalid',
              `app ${name}: the redis session store needs session.store.url or session.store.cache naming services.caches.<alias>`,
            );
          }
          instance = new RedisSessionStore(
            await connectRedis(url, `the sessions of app ${name}`),
            store.prefix ?? `mega:sess:${name}:`,
            true,
          );
        } else {
          const dir = store.dir ? join(kernel.dir, store.dir) : join(kernel.dir, '.mega', 'sessions', name);
          instance = new FileSessionStore(dir, store.cleanupIntervalMs ?? DEFAULT_FILE_CLEANUP_INTERVAL_MS, (error) =>
            kernel.log.warn({ err: error, app: name }, 'session: expiry scan failed'),
          );
        }
        const cookie = config.cookie ?? {};
        runtimes.set(name, {
          store: instance,
          cookieName: config.cookieName ?? 'mega_sid',
          secret: config.secret as string,
          ttlMs: config.ttlMs ?? 86_400_000,
          rolling: config.rolling ?? true,
          cookie: {
            path: cookie.path ?? '/',
            httpOnly: cookie.httpOnly ?? true,
            sameSite: cookie.sameSite ?? 'lax',
            secure: cookie.secure ?? kernel.env === 'production',
            ...(cookie.domain ? { domain: cookie.domain } : {}),
          },
        });
      }
    });

    kernel.hooks.shutdown.tapPromise('@mega/session', async () => {
      for (const runtime of runtimes.values()) await runtime.store.close();
    });
  },
});
