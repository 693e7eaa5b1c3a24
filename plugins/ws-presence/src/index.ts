import type { App } from '@mega/kernel';
import { definePlugin, MegaError, packageVersion } from '@mega/kernel';
// Brings the `sessions` service type of @mega/session into scope (an optional peer).
import type {} from '@mega/session';
import type { WsConnection } from '@mega/ws';
import { connectionOf } from '@mega/ws';
import type { BroadcastOptions, JoinOptions, PresenceEntry, PresenceMessage } from './presence.js';
import { Presence } from './presence.js';

export type { BroadcastOptions, JoinOptions, PresenceEntry, PresenceMessage, RosterProvider } from './presence.js';
export { loginTag, Presence } from './presence.js';

/** The `presence` service: one Presence per app. */
export interface PresenceService {
  of(app: App | string): Presence;
}

/** `ctx.presence`: the app's presence bound to the ctx's connection and namespace. */
export interface CtxPresence {
  /** joinSession for this connection; returns the presence session id. */
  join(options: JoinOptions): string;
  leave(): void;
  /** Joined sessions of this namespace (or `ns`), optionally one channel. */
  list(channel?: string, ns?: string): PresenceEntry[];
  broadcast(options: Omit<BroadcastOptions, 'ns'> & { ns?: string }): number;
  directToUser(userId: string, message: PresenceMessage): number;
  /** Metadata of this connection's session. */
  updateMetadata(metadata: Record<string, unknown>): boolean;
  /** The app-wide Presence (indices, local delivery for cluster transports). */
  readonly app: Presence;
}

declare module '@mega/kernel' {
  interface MegaServices {
    presence: PresenceService;
  }
  interface MegaContext {
    readonly presence: CtxPresence;
  }
  interface AppExtensions {
    readonly presence: Presence;
  }
}

function bind(presence: Presence, conn: WsConnection | undefined): CtxPresence {
  const needConn = (what: string): WsConnection => {
    if (!conn) throw new MegaError('presence.no_connection', `ctx.presence.${what} needs a WebSocket ctx (use it from a channel)`);
    return conn;
  };
  const nsOf = (ns: string | undefined, what: string): string => {
    const v = ns ?? conn?.ns;
    if (!v) throw new MegaError('presence.ns_required', `ctx.presence.${what} outside a WebSocket ctx needs an explicit ns`);
    return v;
  };
  return {
    app: presence,
    join: (options) => presence.joinSession(needConn('join'), options),
    leave: () => presence.leave(needConn('leave')),
    list: (channel, ns) => presence.list(nsOf(ns, 'list'), channel),
    broadcast: (options) => presence.broadcast({ ...options, ns: nsOf(options.ns, 'broadcast') }),
    directToUser: (userId, message) => presence.directToUser(userId, message),
    updateMetadata: (metadata) => {
      const c = needConn('updateMetadata');
      const entry = presence.entryOf(c);
      if (!entry) throw new MegaError('presence.not_joined', 'updateMetadata needs ctx.presence.join() first');
      return presence.updateMetadata(entry.sessionId, metadata);
    },
  };
}

export default definePlugin({
  name: '@mega/ws-presence',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/ws'],
  // After @mega/session when it is loaded: its `sessions` service tells presence which sessions end.
  after: ['@mega/session'],
  setup(api) {
    const ws = api.use('ws');
    const byApp = new Map<string, Presence>();
    for (const app of api.kernel.apps) byApp.set(app.name, new Presence(api.kernel, ws, app));
    const of = (app: App | string): Presence => {
      const name = typeof app === 'string' ? app : app.name;
      const p = byApp.get(name);
      if (!p) throw new MegaError('app.not_found', `no app named "${name}" has presence`);
      return p;
    };
    api.provide('presence', { of });
    api.contributeApp('presence', (app) => of(app));
    api.contributeCtx('presence', (ctx) => bind(of(ctx.app), connectionOf(ctx)));
    ws.onOpen((conn) => byApp.get(conn.app.name)?.track(conn));
    ws.onClose((conn) => byApp.get(conn.app.name)?.untrack(conn));
    // A destroyed HTTP session (logout) ends its sockets everywhere: 1008 here, `disconnect` events for the rest.
    if (api.has('sessions')) {
      api.use('sessions').onDestroy(({ app, id }) => {
        byApp.get(app)?.endHttpSession(id, 'logged out');
      });
    }
    // Runs before @mega/ws's shutdown (reverse dependency order): sessions leave, then sockets close 1001.
    api.onShutdown(async () => {
      for (const p of byApp.values()) await p.close();
    });
  },
  configure(project) {
    project.log('ctx.presence is available in channels: ctx.presence.join({ userId, sessionId, channels }) in onConnect');
  },
});
