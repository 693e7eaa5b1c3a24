/** B12 (issue 11): destroying an HTTP session closes its WebSockets with 1008, here and, through presence, elsewhere. */
import { bootProject, stopAll, writeProject } from '@mega/testing';
import { loginTag } from '@mega/ws-presence';
import { afterEach, describe, expect, it } from 'vitest';

afterEach(stopAll);

type Rec = { events: Array<Record<string, any>> };

const ROUTES = `
import { AuthError } from '@mega/kernel';
const requireUser = async (_req: any, ctx: any) => {
  const user = await ctx.session.get('user');
  if (!user || !ctx.session.id) throw new AuthError('auth.required', 'log in');
  return { userId: user, sessionId: ctx.session.id };
};
class Chat {
  onConnect(sock: any, ctx: any) {
    const id = ctx.presence.join({ userId: ctx.auth.userId, httpSessionId: ctx.auth.sessionId, channels: ['room'] });
    sock.send({ type: 'joined', payload: { id } });
  }
}
export default (r: any) => {
  r.http.post('/login', async (req: any, _p: any, ctx: any) => { await ctx.session.regenerate(); await ctx.session.set('user', req.body.user); return { sid: ctx.session.id }; });
  r.http.post('/logout', async (_q: any, _p: any, ctx: any) => { await ctx.session.destroy(); return { ok: true }; });
  r.ws('/chat', Chat, { before: requireUser });
  r.ws('/other', Chat, { before: requireUser });
};
`;
// Stands in for a cluster transport: records presence events and serves a roster with an entry held elsewhere.
const CLUSTER = `
import { definePlugin } from '@mega/kernel';
export default definePlugin({
  name: 'fake-cluster', version: '1.0.0', dependsOn: ['@mega/ws-presence'],
  setup(api) {
    api.tap('presence', async (ev: any) => { (globalThis as any).logoutTest.events.push({ ...ev, app: undefined, frame: undefined }); });
    api.tap('boot', () => {
      const p = api.use('presence').of(api.kernel.apps[0]);
      p.setRosterProvider((ns: string, _c: any, local: any[]) => ns === '/other' ? [...local, ...(globalThis as any).logoutTest.remote] : local);
    });
  },
});
`;

describe('@mega/ws-presence and @mega/session', () => {
  it('B12: ctx.session.destroy() closes the sockets of that session with 1008 and sends a disconnect for remote ones', async () => {
    const r: Rec & { remote: unknown[] } = { events: [], remote: [] };
    (globalThis as unknown as { logoutTest: Rec }).logoutTest = r;
    const b = await bootProject(
      writeProject({
        'mega.config.ts':
          "export default { plugins: ['@mega/http', '@mega/session', '@mega/ws', '@mega/ws-presence', './cluster.ts'], server: { port: 0, host: '127.0.0.1' } };\n",
        'app.config.ts': "export default { session: { secret: 'a-session-secret-of-32-bytes-or-more' } };\n",
        'routes/r.ts': ROUTES,
        'cluster.ts': CLUSTER,
      }),
    );
    const login = async (user: string) => {
      const res = await b.inject('/login', { json: { user } });
      const cookie = String(([] as string[]).concat(res.headers['set-cookie'] ?? [])[0]).split(';')[0] as string;
      return { cookie, sid: (res.data as { sid: string }).sid };
    };
    const alice = await login('alice');
    const bob = await login('bob');
    const open = async (cookie: string, path = '/chat') => {
      const c = await b.ws(path, { headers: { cookie } });
      return { c, id: (await c.next('joined')).payload as { id: string } };
    };
    const a1 = await open(alice.cookie);
    const a2 = await open(alice.cookie, '/other');
    const b1 = await open(bob.cookie);
    // Presence ids are opaque: the HTTP session id appears in no id and in no presence event.
    for (const { id } of [a1.id, a2.id]) {
      expect(id.startsWith(`${loginTag(alice.sid)}.`)).toBe(true);
      expect(id).not.toContain(alice.sid);
    }
    expect(a1.id.id).not.toBe(a2.id.id);
    // Another instance holds a third socket of Alice's session (a roster entry of her tag).
    const remoteId = `${loginTag(alice.sid)}.elsewhere1`;
    r.remote.push({ sessionId: remoteId, userId: 'alice', channels: ['room'] });

    expect((await b.inject('/logout', { method: 'POST', headers: { cookie: alice.cookie } })).data).toEqual({ ok: true });
    expect(await a1.c.closed).toEqual({ code: 1008, reason: 'logged out' });
    expect(await a2.c.closed).toEqual({ code: 1008, reason: 'logged out' });
    expect(b1.c.isOpen).toBe(true);
    expect(r.events.filter((e) => e.kind === 'disconnect')).toEqual([
      expect.objectContaining({ kind: 'disconnect', sessionId: remoteId, mode: 'kick', reason: 'logged out' }),
    ]);
    expect(JSON.stringify(r.events)).not.toContain(alice.sid);
    expect(JSON.stringify(r.events)).not.toContain(bob.sid);
    await b1.c.close();
  });
});
