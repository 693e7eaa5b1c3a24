/**
 * @mega/asp: application-layer AES-256-GCM on top of TLS (SPEC §5, ADR-127).
 *
 * - WS: every frame of a namespace listed in `asp.websocket.namespaces` is `E:` + base64url(sealed)
 *   both ways, with a per-session key the codec derives from the master secret. Connections of those
 *   namespaces get an inbound transform that opens frames (before the kernel `wsMessage` hook and the
 *   handler) and an outbound one that seals envelopes; other namespaces pay nothing.
 * - HTTP: routes in `asp.http.enabledPaths` take and return sealed bodies, signalled by a header.
 * - Keys reach clients over their HTTP session (`ctx.asp.keys()`); `@mega/asp/client` speaks it.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Handler, HttpRouteOptions, HttpServer } from '@mega/http';
import { envelope, HTTP_STAGES, noStore } from '@mega/http';
import type { App, ConfigInput, MegaContext, MegaError, RouteDefinition } from '@mega/kernel';
import { AuthError, ConfigError, definePlugin, MegaError as MegaErrorClass, packageVersion, ValidationError } from '@mega/kernel';
import type { WsConnection } from '@mega/ws';
import type { ValidateFunction } from 'ajv';
import { Ajv } from 'ajv';
import type { AspConfig } from './config.js';
import { AspAppConfig } from './config.js';
import type { SessionCrypto } from './keys.js';
import { SessionKeys } from './keys.js';

export type { AspConfig } from './config.js';
export { AspAppConfig, AspConfigSchema } from './config.js';
export { SessionKeys } from './keys.js';

/** Counters of ASP outcomes since boot. */
export interface AspStats {
  opened: number;
  sealed: number;
  'asp.signal': number;
  'asp.malformed': number;
  'asp.decrypt': number;
  'asp.drift': number;
  'asp.replay': number;
}

/** `ctx.asp`: the session's ASP keys, to hand to the client over its HTTP session. */
export interface CtxAsp {
  /** The session id ASP keys this ctx with (ctx.auth.sessionId, else ctx.session.id). */
  readonly sessionId: string | undefined;
  /** base64url keys for this session (loads ctx.session if needed); throws asp.no_session without one. */
  keys(): Promise<{ ws: string; http: string }>;
}

export interface AspService {
  stats(): AspStats;
  /** base64url keys of a session of an app. */
  keysFor(app: App | string, sessionId: string): { ws: string; http: string };
  /** True when `ns` is an encrypted namespace of the app. */
  isEncrypted(app: App | string, ns: string): boolean;
}

declare module '@mega/kernel' {
  /** This plugin's keys of app.config.ts (see the README's config table). */
  interface AppConfig {
    asp?: ConfigInput<typeof AspAppConfig>['asp'];
  }
  interface MegaServices {
    asp: AspService;
  }
  interface MegaContext {
    readonly asp: CtxAsp;
  }
}

export const CONTENT_TYPE = 'application/x-mega-asp';
const B64URL = /^[A-Za-z0-9_-]*$/;
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

interface AppState {
  config: AspConfig;
  namespaces: Set<string>;
  paths: string[];
  ws: SessionKeys;
  http: SessionKeys;
}

type MaybeSession = { id?: unknown; all?: () => Promise<unknown> };

function sessionOf(ctx: MegaContext): MaybeSession | undefined {
  try {
    return (ctx as unknown as { session?: MaybeSession }).session;
  } catch {
    return undefined; // @mega/session is installed but off for this app
  }
}

/** The session ASP keys a ctx with: `ctx.auth.sessionId` (WS `before`), else the loaded `ctx.session.id`. */
export function sessionIdOf(ctx: MegaContext): string | undefined {
  const auth = ctx.auth as { sessionId?: unknown } | undefined;
  if (typeof auth?.sessionId === 'string' && auth.sessionId) return auth.sessionId;
  const id = sessionOf(ctx)?.id;
  return typeof id === 'string' && id ? id : undefined;
}

/** Like sessionIdOf, loading `ctx.session` (@mega/session reads its store lazily) when needed. */
export async function resolveSessionId(ctx: MegaContext): Promise<string | undefined> {
  const known = sessionIdOf(ctx);
  if (known) return known;
  const session = sessionOf(ctx);
  if (typeof session?.all !== 'function') return undefined;
  await session.all();
  return typeof session.id === 'string' && session.id ? session.id : undefined;
}

/** `/a/b` matches `/a/b`; `/a/*` matches `/a` and everything below it. */
export function pathMatches(patterns: readonly string[], path: string): boolean {
  return patterns.some((p) => (p.endsWith('/*') ? path === p.slice(0, -2) || path.startsWith(p.slice(0, -1)) : p === path));
}

function aspError(code: string, message: string): MegaError {
  return new MegaErrorClass(code, message, { status: code === 'asp.no_session' ? 401 : 400 });
}

/** A codec failure as the plugin reports it: the ASP codes as they are, anything else malformed. */
function openError(error: unknown): MegaError {
  const code = (error as { code?: string }).code;
  if (code === 'asp.decrypt' || code === 'asp.drift' || code === 'asp.replay') return aspError(code, (error as Error).message);
  return aspError('asp.malformed', (error as Error).message);
}

export default definePlugin({
  name: '@mega/asp',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/http', '@mega/ws'],
  config: { app: AspAppConfig },
  setup(api) {
    const { kernel } = api;
    const stats: AspStats = {
      opened: 0,
      sealed: 0,
      'asp.signal': 0,
      'asp.malformed': 0,
      'asp.decrypt': 0,
      'asp.drift': 0,
      'asp.replay': 0,
    };
    const apps = new Map<string, AppState>();
    for (const app of kernel.apps) {
      const config = api.appConfig(app).asp;
      const namespaces = config.websocket.namespaces;
      const paths = config.http.enabledPaths;
      if (namespaces.length === 0 && paths.length === 0) continue;
      // The kernel filled and length-checked the secret (file, else MEGA_ASP_SECRET; a random one in
      // development); it is optional there because only apps that encrypt something need it.
      if (config.masterSecret === undefined) {
        throw new ConfigError(
          'asp.config',
          `app ${app.name}: ASP session keys need a secret in production; set asp.masterSecret in its app.config.ts, MEGA_ASP_SECRET or MEGA_SECRET`,
          { details: { key: 'asp.masterSecret', app: app.name } },
        );
      }
      const master = Buffer.from(config.masterSecret, 'utf8');
      const opts = { windowMs: config.windowMs, replayCapacity: config.replayCapacity, maxSessions: config.maxSessions };
      apps.set(app.name, {
        config,
        namespaces: new Set(namespaces),
        paths,
        ws: new SessionKeys(kernel.codec, master, 'ws', opts),
        http: new SessionKeys(kernel.codec, master, 'http', opts),
      });
    }
    const stateOf = (app: App | string) => apps.get(typeof app === 'string' ? app : app.name);
    const keysFor = (app: App | string, sessionId: string) => {
      const s = stateOf(app);
      if (!s) throw new MegaErrorClass('asp.disabled', `ASP is not enabled for app ${typeof app === 'string' ? app : app.name}`);
      return { ws: s.ws.keyFor(sessionId).toString('base64url'), http: s.http.keyFor(sessionId).toString('base64url') };
    };
    api.provide('asp', {
      stats: () => ({ ...stats }),
      keysFor,
      isEncrypted: (app, ns) => stateOf(app)?.namespaces.has(ns) ?? false,
    });
    api.contributeCtx(
      'asp',
      (ctx): CtxAsp => ({
        get sessionId() {
          return sessionIdOf(ctx);
        },
        async keys() {
          const id = await resolveSessionId(ctx);
          if (!id) throw new AuthError('asp.no_session', 'ASP keys need a session: log in first');
          const keys = keysFor(ctx.app, id);
          // Key material: the HTTP response that carries it must not sit in any cache.
          const reply = (ctx as { reply?: Parameters<typeof noStore>[0] }).reply;
          if (reply && !reply.sent) noStore(reply);
          return keys;
        },
      }),
    );
    if (apps.size === 0) return;

    // One warning per second per code: failures are counted always, logged without flooding.
    const lastWarn = new Map<string, number>();
    const report = (code: keyof AspStats, fields: Record<string, unknown>) => {
      stats[code]++;
      const now = Date.now();
      if (now - (lastWarn.get(code) ?? 0) >= 1000) {
        lastWarn.set(code, now);
        api.log.warn({ ...fields, code, count: stats[code] }, `asp: frame rejected (${code})`);
      } else api.log.debug({ ...fields, code }, 'asp: frame rejected');
    };

    /** Opens base64url text (an HTTP body after its `E:`); the error says which check failed. */
    const openText = (s: SessionCrypto, text: string, ns: string): Buffer | MegaError => {
      if (!B64URL.test(text) || text.length % 4 === 1) return aspError('asp.malformed', 'E: frame is not base64url');
      try {
        return s.opener.open(Buffer.from(text, 'base64url'), ns);
      } catch (error) {
        return openError(error);
      }
    };

    // ---------------------------------------------------------------------------------- WS
    const ws = api.use('ws');
    const wsState = new WeakMap<WsConnection, { s: SessionCrypto; app: AppState; sessionId: string }>();
    ws.onClose((conn) => {
      const st = wsState.get(conn);
      if (!st) return;
      wsState.delete(conn);
      st.app.ws.release(st.sessionId);
    });
    ws.onOpen((conn) => {
      const app = apps.get(conn.app.name);
      if (!app?.namespaces.has(conn.ns)) return;
      const sessionId = sessionIdOf(conn.ctx);
      if (!sessionId) throw new AuthError('asp.no_session', `${conn.ns} is an encrypted namespace: connect with a session`);
      // Pinned while the socket is open: LRU pressure from other sessions never drops this
      // session's replay cache under a live connection (released in onClose below).
      const s = app.ws.acquire(sessionId);
      wsState.set(conn, { s, app, sessionId });
      const ns = conn.ns;
      // One codec call per frame each way: the codec writes and reads the `E:` + base64url text
      // itself, so no JS string is made for a frame.
      conn.setOutboundTransform((env) => {
        stats.sealed++;
        return s.sealer.sealText(env, ns);
      });
      // Every frame is opened here, in arrival order, before the wsMessage hook (whose taps see the
      // opened JSON) and the handler.
      conn.setInboundTransform((data, binary) => {
        let result: Buffer | MegaError;
        if (binary || data[0] !== 0x45 || data[1] !== 0x3a) {
          result = aspError('asp.signal', `${ns} is an encrypted namespace: send E: + base64url(sealed) text frames`);
        } else {
          try {
            result = s.opener.openText(data, ns);
          } catch (error) {
            result = openError(error);
          }
        }
        if (Buffer.isBuffer(result)) {
          stats.opened++;
          return result;
        }
        report(result.code as keyof AspStats, { connId: conn.id, ns });
        if (app.config.onFailure === 'close') conn.close(1008, result.code);
        return result;
      });
    });

    // -------------------------------------------------------------------------------- HTTP
    const ajv = new Ajv({ allErrors: true, strict: false });
    let httpService: HttpServer | undefined;
    const http = (): HttpServer => {
      httpService ??= api.use('http');
      return httpService;
    };
    api.tap('route', (def) => {
      if (def.kind !== 'http') return def;
      const app = apps.get(def.app.name);
      if (!app || !pathMatches(app.paths, def.path)) return def;
      return sealRoute(def, app);
    });

    const sealRoute = (def: RouteDefinition, app: AppState): RouteDefinition => {
      const inner = def.handler as Handler;
      const header = app.config.http.header;
      // The route's body schema applies to the opened body, not to the sealed text on the wire.
      const { body: bodySchema, ...schema } = (def.options.schema ?? {}) as Record<string, unknown>;
      let validateBody: ValidateFunction | undefined;
      if (bodySchema && typeof bodySchema === 'object') validateBody = ajv.compile(bodySchema);
      const handler: Handler = async (req, reply, ctx) => {
        if (req.headers[header] !== '1') {
          throw aspError(
            'asp.signal',
            `${def.path} takes ASP-sealed requests: send ${header}: 1 (and an E: body with content-type ${CONTENT_TYPE})`,
          );
        }
        const sessionId = await resolveSessionId(ctx);
        if (!sessionId) throw aspError('asp.no_session', 'ASP needs a session: log in first');
        const s = app.http.get(sessionId);
        const url = req.url;
        const q = url.indexOf('?');
        const ns = q === -1 ? url : url.slice(0, q);
        const raw = req.body as unknown;
        let body: unknown;
        if (raw !== undefined && raw !== null && raw !== '') {
          if (typeof raw !== 'string' || !raw.startsWith('E:')) {
            report('asp.signal', { path: ns });
            throw aspError('asp.signal', `the body must be E: + base64url(sealed) sent as ${CONTENT_TYPE}`);
          }
          const opened = openText(s, raw.slice(2), ns);
          if (!Buffer.isBuffer(opened)) {
            report(opened.code as keyof AspStats, { path: ns });
            throw opened;
          }
          stats.opened++;
          // @mega/http's own JSON rules (depth limit, __proto__ / constructor guard): a sealed body
          // is no more trusted than a plain one once opened.
          if (opened.length) {
            try {
              body = http().parseJson(opened.toString('utf8'));
            } catch (error) {
              if ((error as MegaError).code === 'http.invalid_json' && !/prototype/.test((error as Error).message)) {
                throw aspError('asp.malformed', 'the opened body is not JSON');
              }
              throw error;
            }
          }
        } else if (BODY_METHODS.has(req.method)) {
          // Without a sealed body an unsafe request would carry no ASP integrity or replay check at
          // all; a client with nothing to send seals an empty payload (AspClient.fetch does).
          report('asp.signal', { path: ns });
          throw aspError(
            'asp.signal',
            `${req.method} ${def.path} takes a sealed body: send E: + base64url(sealed), an empty payload if there is nothing to send`,
          );
        }
        if (validateBody && !validateBody(body)) {
          throw new ValidationError('validation.failed', 'request body does not match the schema', {
            details: (validateBody.errors ?? [])
              .slice(0, 20)
              .map((e) => ({ path: e.instancePath || '/', message: e.message ?? 'is invalid' })),
          });
        }
        (req as { body: unknown }).body = body;
        const result = await inner(req, reply, ctx);
        if (reply.sent) return reply;
        const out = envelope(result, reply);
        if (out === reply || reply.sent) return reply;
        if (typeof out === 'object' && out !== null && typeof (out as { pipe?: unknown }).pipe === 'function') {
          throw new MegaErrorClass('asp.unsupported', `${def.path}: streams cannot be sealed; return JSON, a string or a Buffer`);
        }
        const plain =
          Buffer.isBuffer(out) || out instanceof Uint8Array
            ? out
            : Buffer.from(typeof out === 'string' ? out : JSON.stringify(out), 'utf8');
        stats.sealed++;
        reply.header(header, '1').type(CONTENT_TYPE);
        return reply.send(`E:${s.sealer.seal(plain, ns).toString('base64url')}`);
      };
      // The sealed text arrives as a text body of its own content type (route option of @mega/http).
      const bodyTypes = [...((def.options as HttpRouteOptions).bodyTypes ?? []), CONTENT_TYPE];
      const options = { ...def.options, bodyTypes, ...(Object.keys(schema).length ? { schema } : { schema: undefined }) };
      return { ...def, handler, options, meta: { ...def.meta, asp: true } };
    };

    // After the route files loaded: a listed namespace or path without a route is most likely a typo.
    api.tap(
      'boot',
      () => {
        const http = api.use('http');
        for (const [name, app] of apps) {
          for (const ns of app.namespaces) {
            if (!ws.routes.some((r) => r.app.name === name && r.path === ns))
              api.log.warn({ app: name, ns }, 'asp: encrypted namespace has no ws route');
          }
          for (const p of app.paths) {
            if (!http.routes.some((r) => r.kind === 'http' && r.app.name === name && pathMatches([p], r.path))) {
              api.log.warn({ app: name, path: p }, 'asp: enabled path matches no http route');
            }
          }
        }
      },
      { stage: HTTP_STAGES.freeze + 60 },
    );
  },
  async configure(project) {
    // A project made by `mega new` has MEGA_SECRET in .env: ASP's key derives from it, nothing to add.
    if (/^\s*MEGA_SECRET\s*=/m.test(await readFile(join(project.dir, '.env'), 'utf8').catch(() => ''))) return;
    await project.addEnv(
      'MEGA_ASP_SECRET',
      randomBytes(32).toString('base64url'),
      'ASP master secret (@mega/asp): keep it out of version control',
    );
  },
});
