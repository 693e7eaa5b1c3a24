/**
 * The `mega` CLI as users run it: real processes, real sockets, real signals.
 */

import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, httpGet as get, killAll, MEGA_BIN, runMega as mega, until as poll } from '../../scripts/test/procs.js';

/** The repository root. */
const REPO = join(import.meta.dirname, '../..');

afterEach(killAll);

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const PID_PROJECT = {
  'mega.config.ts': `export default { plugins: ['@mega/http'] };\n`,
  'apps/web/app.config.ts': 'export default {};\n',
  'apps/web/routes/pid.ts': `export default (r: any) => { r.http.get('/pid', async () => ({ pid: process.pid })); };\n`,
};

/** A plugin with a cluster-primary half: each worker pings the primary at boot, the primary answers that worker. */
const RELAY = `import { definePlugin } from '@mega/kernel';
export default definePlugin({
  name: 'relay',
  version: '1.0.0',
  primary: () => ({
    channel: 'relay:ping',
    handle(worker, message) { worker.send({ type: 'relay:pong', worker: worker.id, slot: (message as { slot: string }).slot }); },
  }),
  setup(api) {
    api.tap('boot', () => {
      if (!process.send) return;
      process.on('message', (m: { type?: string; slot?: string }) => {
        if (m?.type === 'relay:pong') api.log.info({ slot: m.slot }, 'relay pong for slot ' + m.slot);
      });
      process.send({ type: 'relay:ping', slot: process.env.MEGA_WORKER_SLOT });
    });
  },
});
`;

describe('mega CLI', () => {
  it('starts apps/simple, serves hello, echo and /health, prints the banner, and exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const started = performance.now();
    const run = mega(['start', '--port', String(port)], join(REPO, 'apps/simple'));
    const first = await poll(async () => {
      const r = await get(port, '/');
      return r.status === 200 ? r : undefined;
    });
    const coldStartMs = Math.round(performance.now() - started);
    console.log(`cold start to first 200 on apps/simple: ${coldStartMs} ms`);
    expect(JSON.parse(first.body)).toEqual({ data: { message: 'Hello from Mega', app: 'simple' } });
    expect(JSON.parse((await get(port, '/health')).body)).toEqual({ data: { status: 'ok' } });
    const echo = await fetch(`http://127.0.0.1:${port}/echo`, {
      method: 'POST',
      body: '{"a":[1,2]}',
      headers: { 'content-type': 'application/json' },
    });
    expect(await echo.json()).toEqual({ data: { echo: { a: [1, 2] } } });
    await run.waitFor(/plugins\s+@mega\/http@0\.1\.0/);
    expect(run.out()).toMatch(/apps\s+simple \(default host\)/);
    expect(run.out()).toMatch(/codec\s+(native|ts)/);
    run.child.kill('SIGTERM');
    expect(await run.exited).toEqual({ code: 0, signal: null });
  });

  it('cluster: routes plugin messages to their primary half, replaces a SIGKILLed worker, and SIGTERM drains every process with exit 0', async () => {
    const dir = writeProject({
      ...PID_PROJECT,
      'mega.config.ts': `export default { plugins: ['@mega/http', './relay.ts'] };\n`,
      'relay.ts': RELAY,
    });
    const port = await freePort();
    const run = mega(['start', '--workers', '2', '--port', String(port)], dir);
    await run.waitFor(/worker 1 ready pid=(\d+)/);
    await run.waitFor(/worker 2 ready pid=(\d+)/);
    const pids = [...run.out().matchAll(/worker \d ready pid=(\d+)/g)].map((m) => Number(m[1]));
    expect(pids).toHaveLength(2);
    // Each worker's ping reached the plugin's primary handler, which answered that worker.
    await run.waitFor(/relay pong for slot 1/);
    await run.waitFor(/relay pong for slot 2/);
    const victim = pids[0] as number;
    process.kill(victim, 'SIGKILL');
    await run.waitFor(new RegExp(`pid=${victim} exited \\(SIGKILL\\); replacing`));
    const replacement = await poll(async () => {
      const all = [...run.out().matchAll(/worker \d ready pid=(\d+)/g)].map((m) => Number(m[1]));
      return all.length >= 3 ? all[all.length - 1] : undefined;
    });
    expect(pids).not.toContain(replacement);
    // The new worker serves: keep asking until its pid answers (the kernel balances connections round-robin).
    const served = await poll(async () => {
      const r = await get(port, '/pid');
      const pid = (JSON.parse(r.body) as { data: { pid: number } }).data.pid;
      return pid === replacement ? pid : undefined;
    });
    expect(served).toBe(replacement);
    const workers = [pids[1] as number, replacement as number];
    run.child.kill('SIGTERM');
    expect(await run.exited).toEqual({ code: 0, signal: null });
    expect(run.out()).toContain('all workers stopped');
    for (const pid of workers) expect(alive(pid)).toBe(false);
  });

  it('a second signal forces exit while shutdown hangs', async () => {
    const dir = writeProject({
      ...PID_PROJECT,
      'mega.config.ts': `export default { plugins: ['@mega/http', './slow.ts'], lifecycle: { shutdownTimeoutMs: 60000 } };\n`,
      'slow.ts': `import { definePlugin } from '@mega/kernel';\nexport default definePlugin({ name: 'slow', version: '1.0.0', setup(api) { api.onShutdown(() => new Promise(() => {})); } });\n`,
    });
    const port = await freePort();
    const run = mega(['start', '--port', String(port)], dir);
    await run.waitFor(/ready in \d+ ms/);
    run.child.kill('SIGINT');
    await run.waitFor(/SIGINT received: shutting down/);
    run.child.kill('SIGINT');
    expect((await run.exited).code).toBe(130);
  });

  it('reports a broken config with file and line and exits 1', async () => {
    const dir = writeProject({
      'mega.config.ts': `export default {\n  plugins: [,,\n};\n`,
      'apps/web/app.config.ts': 'export default {};\n',
    });
    const run = mega(['start'], dir);
    expect((await run.exited).code).toBe(1);
    expect(run.out()).toMatch(/\[config\.syntax\] syntax error in .*mega\.config\.ts:\d+/);
  });

  it('--watch restarts the app on a source change, waits out a broken edit, ignores runtime state, and stops on SIGTERM', async () => {
    const route = (text: string) =>
      `export default (r: any) => { r.http.get('/v', async () => ({ v: ${JSON.stringify(text)}, pid: process.pid })); };\n`;
    const dir = writeProject({
      'mega.config.ts': `export default { plugins: ['@mega/http'] };\n`,
      'apps/web/app.config.ts': 'export default {};\n',
      'apps/web/routes/v.ts': route('one'),
    });
    const port = await freePort();
    const run = mega(['start', '--watch', '--port', String(port)], dir);
    const version = async () => (await get(port, '/v')).json?.data as { v: string; pid: number } | undefined;
    const first = await poll(async () => ((await version())?.v === 'one' ? await version() : undefined), 30_000);
    expect(run.out()).toContain('mega start --watch: watching');

    // Runtime state under .mega/ and unrelated files do not restart it.
    mkdirSync(join(dir, '.mega'), { recursive: true });
    writeFileSync(join(dir, '.mega', 'state.json'), '{}');
    writeFileSync(join(dir, 'notes.txt'), 'x');
    await new Promise((r) => setTimeout(r, 600));
    expect((await version())?.pid).toBe(first?.pid);

    writeFileSync(join(dir, 'apps/web/routes/v.ts'), route('two'));
    const second = await poll(async () => ((await version())?.v === 'two' ? await version() : undefined), 30_000);
    expect(second?.pid).not.toBe(first?.pid);
    expect(run.out()).toMatch(/apps\/web\/routes\/v\.ts changed; restarting/);

    // A broken edit: the app fails to boot and the watcher waits; the fix brings it back.
    writeFileSync(join(dir, 'apps/web/routes/v.ts'), 'export default (r: any) => { r.http.get(\n');
    await run.waitFor(/the app exited \(1\); waiting for a change/, 30_000);
    writeFileSync(join(dir, 'apps/web/routes/v.ts'), route('three'));
    const third = await poll(async () => ((await version())?.v === 'three' ? await version() : undefined), 30_000);

    run.child.kill('SIGTERM');
    expect(await run.exited).toEqual({ code: 0, signal: null });
    expect(alive(third?.pid as number)).toBe(false);
    expect((await mega(['start', '--watch', '--workers', '2'], dir).exited).code).toBe(2);
  });

  it('mega routes lists every route with app, hosts, kind, handler and middleware, plugin routes and global middleware, as tables or JSON', async () => {
    const table = mega(['routes'], join(REPO, 'apps/multi'));
    expect((await table.exited).code).toBe(0);
    expect(table.out()).toMatch(/^APP\s+METHOD\s+PATH\s+KIND\s+HANDLER\s+MIDDLEWARE$/m);
    expect(table.out()).toMatch(
      /^admin \(admin\.localhost\)\s+GET\s+\/dashboard\s+http\s+AdminController\.dashboard\s+before: requireAdmin$/m,
    );
    expect(table.out()).toMatch(/^admin \(admin\.localhost\)\s+POST\s+\/login\s+http\s+AdminController\.login\s+schema: body$/m);
    // Routes @mega/health adds to every app, and the middleware @mega/security adds to each app, by phase.
    expect(table.out()).toMatch(/^Routes added by plugins \(every app\):\nPLUGIN\s+METHOD\s+PATH\s+HANDLER$/m);
    expect(table.out()).toMatch(/^@mega\/health\s+GET\s+\/health\s+/m);
    expect(table.out()).toMatch(/^@mega\/health\s+GET\s+\/ready\s+/m);
    expect(table.out()).toMatch(/^request\s+@mega\/security\s+\S+\s+admin\s+POST, PUT, PATCH, DELETE$/m);
    expect(table.out()).toMatch(/^headers\s+@mega\/security\s+\S+\s+web\s+all$/m);
    const json = mega(['routes', '--json', '--app', 'web'], join(REPO, 'apps/multi'));
    expect((await json.exited).code).toBe(0);
    const listed = JSON.parse(json.out()) as {
      routes: Array<{ app: string; method: string; path: string; kind: string; handler: string }>;
      pluginRoutes: Array<{ plugin: string; path: string }>;
      middleware: Array<{ plugin: string; phase: string; apps: string[] }>;
    };
    expect(listed.routes.length).toBeGreaterThan(0);
    expect(new Set(listed.routes.map((r) => r.app))).toEqual(new Set(['web']));
    expect(listed.routes).toContainEqual(expect.objectContaining({ path: '/feedback', handler: 'WebController.feedback' }));
    expect(listed.pluginRoutes.map((r) => `${r.plugin} ${r.path}`)).toEqual(['@mega/health /health', '@mega/health /ready']);
    expect(new Set(listed.middleware.map((m) => m.apps.join()))).toEqual(new Set(['web']));
    const chat = mega(['routes', '--json'], join(REPO, 'apps/chat'));
    expect((await chat.exited).code).toBe(0);
    const chatRoutes = JSON.parse(chat.out()) as { routes: unknown[]; pluginRoutes: unknown[] };
    expect(chatRoutes.routes).toContainEqual(
      expect.objectContaining({ kind: 'ws', path: '/ws/chat', handler: 'ChatChannel', before: ['requireUser'] }),
    );
    // Without @mega/health, @mega/http serves /health itself; public/ is served under /static/.
    expect(chatRoutes.pluginRoutes).toEqual([
      { plugin: '@mega/http', method: 'GET', path: '/health', handler: 'liveness' },
      { plugin: '@mega/http', method: 'GET', path: '/static/*', handler: 'static files (public/)' },
    ]);
    const bare = writeProject({ 'mega.config.ts': 'export default { plugins: [] };\n', 'app.config.ts': 'export default {};\n' });
    const none = mega(['routes'], bare);
    expect((await none.exited).code).toBe(1);
    expect(none.out()).toContain('@mega/http is not installed');
    expect((await mega(['routes', '--nope'], bare).exited).code).toBe(2);
    // App-wide middleware of route files (router.http.use), every phase, in order.
    const used = writeProject({
      'mega.config.ts': "export default { plugins: ['@mega/http'] };\n",
      'apps/web/app.config.ts': 'export default {};\n',
      'apps/web/routes/index.ts': `export default (r: any) => {
  r.http.use(async function audit() {});
  r.http.use({ transform: function trim(body: unknown) { return body; }, after: [function stamp() {}] });
  r.http.get('/', async () => ({ ok: true }));
};
`,
    });
    const withUse = mega(['routes', '--json'], used);
    expect((await withUse.exited).code).toBe(0);
    const fromFiles = (JSON.parse(withUse.out()) as { middleware: Array<{ plugin: string; phase: string; name: string; apps: string[] }> })
      .middleware;
    expect(fromFiles).toEqual([
      { plugin: 'route files', phase: 'before', name: 'audit', apps: ['web'], methods: [] },
      { plugin: 'route files', phase: 'transform', name: 'trim', apps: ['web'], methods: [] },
      { plugin: 'route files', phase: 'after', name: 'stamp', apps: ['web'], methods: [] },
    ]);
    const usedTable = mega(['routes'], used);
    expect((await usedTable.exited).code).toBe(0);
    expect(usedTable.out()).toMatch(/^before\s+route files\s+audit\s+web\s+all$/m);
  });

  it('mega new writes a project that mega start serves, TypeScript accepts and mega test passes; refuses a non-empty dir, bad names and templates', async () => {
    const parent = writeProject({});
    const created = mega(['new', 'shop-front', '--skip-install'], parent);
    expect((await created.exited).code).toBe(0);
    expect(created.out()).toContain('npm install');
    const dir = join(parent, 'shop-front');
    expect(readdirSync(dir).sort()).toEqual([
      '.env',
      '.gitignore',
      'README.md',
      'app.config.ts',
      'controllers',
      'mega.config.ts',
      'package.json',
      'routes',
      'test',
      'tsconfig.json',
      'vitest.config.ts',
    ]);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    expect(pkg).toMatchObject({ name: 'shop-front', type: 'module', scripts: { test: 'mega test', start: 'mega start' } });
    expect(Object.keys(pkg.dependencies)).toEqual(['@mega/kernel', '@mega/http', '@mega/health']);
    expect(Object.keys(pkg.devDependencies)).toEqual(['@mega/testing', 'vitest', 'typescript', '@types/node']);
    // One generated secret; .env is private and ignored by git.
    const env = readFileSync(join(dir, '.env'), 'utf8');
    expect(env).toMatch(/^MEGA_SECRET=[A-Za-z0-9_-]{43}$/m);
    expect(statSync(join(dir, '.env')).mode & 0o077).toBe(0);
    expect(readFileSync(join(dir, '.gitignore'), 'utf8').split('\n')).toEqual(
      expect.arrayContaining(['.env', '.mega/*', '!.mega/journal/', 'node_modules/']),
    );
    expect(readFileSync(join(dir, 'README.md'), 'utf8')).toContain('npx mega generate');
    symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
    const port = await freePort();
    const run = mega(['start', '--port', String(port)], dir);
    const home = await poll(async () => {
      const r = await get(port, '/');
      return r.status === 200 ? r : undefined;
    }, 30_000);
    expect(home.json).toEqual({ data: { message: 'Hello from shop-front', app: 'shop-front' } });
    expect((await get(port, '/health')).json).toEqual({ data: { status: 'ok' } });
    run.child.kill('SIGTERM');
    expect((await run.exited).code).toBe(0);
    // The generated TypeScript (its own tsconfig.json) typechecks against the real packages.
    const tsc = await new Promise<{ code: number; out: string }>((done) =>
      execFile(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', dir], (error, stdout) =>
        done({ code: error ? ((error as { code?: number }).code ?? 1) : 0, out: stdout }),
      ),
    );
    expect(tsc.code, tsc.out).toBe(0);
    // mega test: the project's vitest with its config; the generated test passes.
    const tested = mega(['test'], dir);
    expect((await tested.exited).code, tested.out()).toBe(0);
    expect(stripVTControlCharacters(tested.out())).toMatch(/test\/home\.test\.ts \(3 tests\)/);

    const again = mega(['new', 'shop-front'], parent);
    expect((await again.exited).code).toBe(1);
    expect(again.out()).toContain('is not empty');
    expect((await mega(['new', 'Bad Name!'], parent).exited).code).toBe(2);
    expect((await mega(['new'], parent).exited).code).toBe(2);
    const template = mega(['new', 'x', '--template', 'blog'], parent);
    expect((await template.exited).code).toBe(2);
    expect(template.out()).toContain('unknown template "blog" (templates: api, chat, crud)');
  });

  it('mega new --template chat copies apps/chat with a test that registers, then chats over the encrypted channel', async () => {
    const parent = writeProject({});
    const created = mega(['new', 'talk', '--template', 'chat', '--skip-install'], parent);
    expect((await created.exited).code, created.out()).toBe(0);
    const dir = join(parent, 'talk');
    for (const file of ['channels/chat.ts', 'routes/ws.ts', 'controllers/auth.ts', 'public/chat.js', 'test/chat.test.ts', '.env']) {
      expect(existsSync(join(dir, file)), file).toBe(true);
    }
    expect(existsSync(join(dir, 'test/chat.int.test.ts'))).toBe(false);
    expect(readFileSync(join(dir, 'channels/chat.ts'), 'utf8')).toBe(readFileSync(join(REPO, 'apps/chat/channels/chat.ts'), 'utf8'));
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    expect(Object.keys(pkg.dependencies)).toEqual(
      expect.arrayContaining(['@mega/asp', '@mega/ws-presence', '@mega/session', '@mega/db-postgres']),
    );
    symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
    const tested = mega(['test'], dir);
    expect((await tested.exited).code, tested.out()).toBe(0);
    expect(stripVTControlCharacters(tested.out())).toMatch(/test\/chat\.test\.ts \(2 tests\)/);
  });

  it('mega new --template crud copies apps/crud with its migrations journal and a test of its API', async () => {
    const parent = writeProject({});
    const created = mega(['new', 'notes', '--template', 'crud', '--skip-install'], parent);
    expect((await created.exited).code, created.out()).toBe(0);
    const dir = join(parent, 'notes');
    for (const file of ['models/note.ts', 'migrations', '.mega/journal/snapshot.json', 'routes/api.ts', 'test/api.test.ts']) {
      expect(existsSync(join(dir, file)), file).toBe(true);
    }
    // Only the journal of .mega/ is source; the sample's repository tests stay behind.
    expect(readdirSync(join(dir, '.mega'))).toEqual(['journal']);
    expect(existsSync(join(dir, 'test/crud.int.test.ts'))).toBe(false);
    expect(readFileSync(join(dir, '.gitignore'), 'utf8').split('\n')).toEqual(
      expect.arrayContaining(['!.mega/journal/', '.env', 'node_modules/']),
    );
    symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
    const tested = mega(['test'], dir);
    expect((await tested.exited).code, tested.out()).toBe(0);
    expect(stripVTControlCharacters(tested.out())).toMatch(/test\/api\.test\.ts \(2 tests\)/);
  });

  it('takes NODE_ENV from the project .env, refuses an --env that disagrees, and logs the production banner as one JSON line', async () => {
    const dir = writeProject({ ...PID_PROJECT, '.env': 'NODE_ENV=production\n' });
    const port = await freePort();
    // NODE_ENV empty: as in a shell where it is not set (the harness sets NODE_ENV=test otherwise).
    const run = mega(['start', '--port', String(port)], dir, { NODE_ENV: '', MEGA_CODEC_ADDON: join(dir, 'missing.node') });
    const line = await run.waitFor(/^\{.*\(production\) ready in \d+ ms.*\}$/m);
    const banner = JSON.parse(line[0]) as { msg: string; address: string; plugins: string[]; codec: string };
    expect(banner.address).toBe(`http://localhost:${port}`);
    expect(banner.plugins).toEqual(['@mega/http@0.1.0']);
    // Outside the Mega repository the fallback reason names no npm script the project lacks.
    expect(banner.codec).toMatch(/^ts \(native addon unavailable: no addon at /);
    expect(banner.codec).not.toContain('build:native');
    expect(run.out()).not.toMatch(/^\s+listening/m);
    run.child.kill('SIGTERM');
    expect((await run.exited).code).toBe(0);

    const clash = mega(['start', '--env', 'development'], dir, { NODE_ENV: '' });
    expect((await clash.exited).code).toBe(1);
    expect(clash.out()).toContain(`mega start: --env development disagrees with NODE_ENV=production in ${join(dir, '.env')}`);
  });

  it('hints at --port when the port is in use, and at mega new when there is no project', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '0.0.0.0', r));
    const port = (taken.address() as { port: number }).port;
    try {
      const run = mega(['start', '--port', String(port)], writeProject(PID_PROJECT));
      expect((await run.exited).code).toBe(1);
      expect(run.out()).toContain(`hint: port ${port} is already in use`);
      expect(run.out()).toContain('--port <n>');
    } finally {
      taken.close();
    }
    const empty = writeProject({});
    for (const command of ['start', 'routes', 'doctor']) {
      const none = mega([command], empty);
      expect((await none.exited).code).toBe(1);
      expect(none.out()).toMatch(/no mega\.config\.ts in .* or above: create a project with "mega new <dir>"/);
    }
  });

  it('output into a reader that closed early ends cleanly, without an EPIPE stack', async () => {
    for (const args of [['--help'], ['routes', '--json']]) {
      const child = spawn(process.execPath, [MEGA_BIN, ...args], { cwd: join(REPO, 'apps/multi'), stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.destroy(); // the reader is gone before the first write: every write fails with EPIPE
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
      expect(err).not.toMatch(/EPIPE|at .*\(node:/);
      expect(code).toBe(0);
    }
  });

  it('mega bench: codec anywhere, the npm benchmarks only inside the Mega repository', async () => {
    const outside = mega(['bench', 'http'], writeProject({}));
    expect((await outside.exited).code).toBe(1);
    expect(outside.out()).toContain('runs only inside a checkout of it; here only "mega bench codec" runs');
    const unknown = mega(['bench', 'nope'], REPO);
    expect((await unknown.exited).code).toBe(2);
    expect(unknown.out()).toMatch(/unknown target "nope" \(available: .*http.*ws.*jobs/);
    const help = mega(['bench', '--help'], REPO);
    expect((await help.exited).code).toBe(0);
    expect(help.out()).toContain('mega bench <target>');
  });

  it('prints help, and exits 2 with help on an unknown command or flag', async () => {
    const help = mega(['--help'], REPO);
    expect((await help.exited).code).toBe(0);
    expect(help.out()).toContain('Usage: mega <command>');
    const startHelp = mega(['start', '--help'], REPO);
    expect((await startHelp.exited).code).toBe(0);
    expect(startHelp.out()).toContain('--workers <n>');
    for (const [command, text] of [
      ['new', '--template <t>'],
      ['generate', '--dry-run'],
      ['console', '.reload'],
      ['test', 'mega test --watch'],
      ['routes', 'pluginRoutes'],
    ]) {
      const shown = mega(['help', command as string], REPO);
      expect((await shown.exited).code, command).toBe(0);
      expect(shown.out(), command).toContain(text);
    }
    const unknown = mega(['frobnicate'], REPO);
    expect((await unknown.exited).code).toBe(2);
    expect(unknown.out()).toContain('unknown command "frobnicate"');
    const badFlag = mega(['start', '--wat'], REPO);
    expect((await badFlag.exited).code).toBe(2);
    const badWorkers = mega(['start', '--workers', 'lots'], REPO);
    expect((await badWorkers.exited).code).toBe(2);
  });
});
