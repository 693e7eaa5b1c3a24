/** Shared by the file-store and Redis-store suites. */
export const SESSION_ROUTES = `import { AuthError } from '@mega/kernel';
export default (r: any) => {
  r.http.get('/plain', async () => 'plain');
  r.http.get('/me', async (_q: any, _p: any, ctx: any) => ({ user: (await ctx.session.get('user')) ?? null, sid: ctx.session.id ?? null }));
  r.http.post('/login', async (req: any, _p: any, ctx: any) => {
    await ctx.session.set('cart', 3);
    const before = ctx.session.id;
    await ctx.session.regenerate();
    await ctx.session.set('user', req.body.user);
    return { before, after: ctx.session.id };
  });
  r.http.post('/logout', async (_q: any, _p: any, ctx: any) => { await ctx.session.destroy(); return { ok: true }; });
  r.http.get('/private', async (_q: any, _p: any, ctx: any) => {
    const user = await ctx.session.get('user');
    if (!user) throw new AuthError('auth.required', 'log in first');
    return { user };
  });
};`;

export function sessionFiles(session = "{ secret: 'a-session-secret-for-tests' }") {
  return {
    'apps/web/app.config.ts': `export default { session: ${session} };`,
    'apps/web/routes/r.ts': SESSION_ROUTES,
  };
}

/** Cookie jar of one test browser. */
export function jar() {
  let cookie = '';
  return {
    get header(): Record<string, string> {
      return cookie ? { cookie } : {};
    },
    take(setCookie: string[] | undefined) {
      for (const c of setCookie ?? []) {
        const pair = c.split(';')[0] as string;
        cookie = pair.endsWith('=') ? '' : pair;
      }
    },
    set(value: string) {
      cookie = value;
    },
  };
}
