/**
 * The newcomer's path (issue 15), in a temp dir outside this repository, with nothing but the
 * checkout as the source of the @mega packages: README's "Start your own project" command
 * (`npm run mega -- new`) packs the checkout and installs from the tarballs -> `mega plugin add
 * ws-presence db-postgres jobs models migrations` with the project's own installed CLI -> `mega
 * generate channel`, `job`, `model` and `migration` -> `mega start` (applies the migration) -> HTTP
 * and WebSocket requests -> `mega routes` -> `mega console` driven over stdin -> `mega test`. The second test generates every kind in the same project: tsc and the generated
 * tests pass, --dry-run writes nothing, nothing is overwritten without --force.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { openWs } from '@mega/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, httpGet, killAll, until } from '../../scripts/test/procs.js';

const REPO = join(import.meta.dirname, '../..');
// Tarballs are content-hashed, so one cache is safely shared between runs; npm reuses its own cache.
const ENV = {
  MEGA_PACK_CACHE: join(tmpdir(), 'mega-test-packs'),
  npm_config_prefer_offline: 'true',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
  NODE_ENV: '',
};
const parent = mkdtempSync(join(tmpdir(), 'mega-outside-'));
const dir = join(parent, 'my-app');
const children: ChildProcess[] = [];

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await killAll();
  rmSync(parent, { recursive: true, force: true });
});

function run(cmd: string, args: string[], cwd: string): Promise<{ code: number | null; out: string }> {
  return new Promise((done) => {
    const child = spawn(cmd, args, { cwd, env: { ...process.env, ...ENV } });
    children.push(child);
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      out += c.toString();
    });
    // Colours off the text that assertions read (vitest colours its summary when the parent does).
    child.on('close', (code) => done({ code, out: stripVTControlCharacters(out) }));
  });
}

/** Wall time per step, for the log (a slow step shows where; nothing asserts on time). */
function stepTimer() {
  let last = performance.now();
  const steps: string[] = [];
  const step = (name: string) => {
    const now = performance.now();
    steps.push(`${name} ${((now - last) / 1000).toFixed(1)} s`);
    last = now;
  };
  step.report = () => steps.join(', ');
  return step;
}

/** The project's own installed CLI (node_modules/@mega/kernel), as `npx mega` runs it. */
const projectMega = (args: string[]) => run(process.execPath, [join(dir, 'node_modules/@mega/kernel/bin/mega.js'), ...args], dir);

async function expectOk(step: Promise<{ code: number | null; out: string }>, ...contains: string[]): Promise<string> {
  const { code, out } = await step;
  for (const text of contains) expect(out, out).toContain(text);
  expect(code, out).toBe(0);
  return out;
}

/** The project's own `mega <args>`, left running: its output so far (stdout and stderr) and its exit. */
function megaProcess(args: string[]) {
  const child = spawn(process.execPath, [join(dir, 'node_modules/@mega/kernel/bin/mega.js'), ...args], {
    cwd: dir,
    env: { ...process.env, ...ENV },
  });
  children.push(child);
  let out = '';
  const collect = (c: Buffer) => {
    out += c.toString();
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const exited = new Promise<number | null>((done) => child.on('close', done));
  return { child, exited, out: () => out };
}

/** `mega console` driven like a user at the prompt: one line, then wait for what it prints. */
function megaConsole() {
  const { child, exited, out: output } = megaProcess(['console']);
  return {
    exited,
    out: output,
    send: (text: string) => child.stdin.write(`${text}\n`),
    /** Sends `line` and resolves with what the REPL printed for it (up to the next prompt). */
    async line(text: string): Promise<string> {
      const from = output().length;
      child.stdin.write(`${text}\n`);
      return until(
        () => {
          const answer = output().slice(from);
          return /mega> $/.test(answer) ? answer.replace(/mega> $/, '').trim() : undefined;
        },
        30_000,
        `console output for ${text}`,
      ).catch((error: unknown) => {
        throw new Error(`${String(error)}\n${output()}`);
      });
    },
  };
}

describe('the newcomer path, outside the repository', () => {
  it('README -> new -> plugin add -> generate channel, job, model -> start -> HTTP and WS -> console -> test', {
    timeout: 180_000,
  }, async () => {
    // README, "Start your own project": the command it gives, run as written (from the checkout).
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Start your own project'));
    expect(section).toMatch(/^npm run mega -- new \S+/m);
    const step = stepTimer();
    await expectOk(run('npm', ['run', '-s', 'mega', '--', 'new', dir], REPO), 'Running npm install', 'done in');

    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    expect(pkg.mega).toEqual({ checkout: REPO });
    expect(pkg.dependencies['@mega/kernel']).toMatch(/^file:.*mega-kernel-0\.2\.0-[0-9a-f]{12}\.tgz$/);
    expect(pkg.devDependencies['@mega/testing']).toMatch(/^file:.*mega-testing-.*\.tgz$/);
    expect(Object.keys(pkg.devDependencies)).toEqual(expect.arrayContaining(['vitest', 'typescript', '@types/node']));
    expect(pkg.overrides['@mega/codec']).toMatch(/^file:.*\.tgz$/);
    // Real copies, not links into the checkout.
    expect(existsSync(join(dir, 'node_modules/@mega/kernel/dist/index.js'))).toBe(true);
    expect(existsSync(join(dir, 'node_modules/@mega/kernel/src'))).toBe(false);
    expect(readdirSync(dir)).toEqual(
      expect.arrayContaining(['.env', '.gitignore', 'README.md', 'tsconfig.json', 'vitest.config.ts', 'test', 'routes', 'controllers']),
    );
    expect(readFileSync(join(dir, '.env'), 'utf8')).toMatch(/^MEGA_SECRET=[A-Za-z0-9_-]{43}$/m);
    expect(readFileSync(join(dir, '.gitignore'), 'utf8')).toMatch(/^\.env$/m);

    step('mega new (pack + npm install)');
    await expectOk(projectMega(['plugin', 'add', 'ws-presence']), '+ @mega/ws-presence@0.1.0');
    // Several plugins at once: one npm install from the packed checkout.
    const added = await expectOk(
      projectMega(['plugin', 'add', 'db-postgres', 'jobs', 'models', 'migrations']),
      '+ @mega/db-postgres@0.1.0',
      '+ @mega/jobs@0.1.0',
      '+ @mega/models@0.1.0',
      '+ @mega/migrations@0.1.0',
    );
    expect(added.match(/^Running npm install .*\.\.\.$/gm)).toHaveLength(1);
    expect(readFileSync(join(dir, 'mega.config.ts'), 'utf8')).toMatch(/'@mega\/ws-presence'.*'@mega\/db-postgres'.*'@mega\/jobs'/s);
    const list = await expectOk(projectMega(['plugin', 'list']));
    expect(list).toMatch(/^\* @mega\/ws-presence +0\.1\.0$/m);

    step('plugin add (2 commands)');
    await expectOk(projectMega(['generate', 'channel', 'Lobby']), 'create channels/lobby.ts', 'create test/lobby-channel.test.ts');
    await expectOk(projectMega(['g', 'job', 'SendMail']), 'create jobs/send-mail.ts', 'create test/job-send-mail.test.ts');
    await expectOk(
      projectMega(['g', 'model', 'Note', '--fields', 'title:string']),
      'create models/note.ts',
      'create test/note-model.test.ts',
    );
    await expectOk(projectMega(['g', 'migration', 'create-notes']));
    expect(readdirSync(join(dir, 'migrations')).some((f) => f.endsWith('-create-notes.ts'))).toBe(true);

    step('generate channel, job, model, migration');
    const port = await freePort();
    const server = megaProcess(['start', '--port', String(port)]);
    try {
      const home = await until(async () => {
        const r = await httpGet(port, '/').catch(() => undefined);
        return r?.status === 200 ? r : undefined;
      }, 60_000).catch((error: unknown) => {
        throw new Error(`${String(error)}\n${server.out()}`);
      });
      expect(home.json).toEqual({ data: { message: 'Hello from my-app', app: 'my-app' } });
      expect((await httpGet(port, '/ready')).json).toEqual({ data: { status: 'ready' } });
      const ws = await openWs(`ws://127.0.0.1:${port}/ws/lobby`);
      expect((await ws.next('lobby.welcome')).payload).toEqual({ app: 'my-app' });
      expect((await ws.request('lobby.echo', { text: 'hi' })).payload).toEqual({ text: 'hi' });
      await ws.close();
    } finally {
      server.child.kill('SIGTERM');
    }
    expect(await server.exited, server.out()).toBe(0);
    const log = server.out();
    // The first PGlite boot is announced and timed (progress for long work).
    expect(log).toMatch(/initialising the embedded database in .*\(first boot takes a few seconds\)/);
    expect(log).toMatch(/embedded database initialised in \d+\.\d s/);
    // The one MEGA_SECRET of .env: no development secret was made, nothing warned about one.
    expect(log).not.toContain('development secret');
    expect(existsSync(join(dir, '.mega/dev-secret'))).toBe(false);

    step('start (first PGlite boot) + HTTP + WS');
    const routes = await expectOk(projectMega(['routes']));
    expect(routes).toMatch(/^my-app +GET +\/ +http +HomeController\.index$/m);
    expect(routes).toMatch(/^my-app +GET +\/ws\/lobby +ws +LobbyChannel$/m);
    expect(routes).toMatch(/^@mega\/health +GET +\/ready +/m);

    step('routes');
    const repl = megaConsole();
    await until(() => /mega> $/.test(repl.out()) || undefined, 30_000, 'the console prompt').catch((error: unknown) => {
      throw new Error(`${String(error)}\n${repl.out()}`);
    });
    expect(repl.out()).toContain('console (development), not listening: app my-app');
    expect(await repl.line('app.name')).toBe("'my-app'");
    expect(await repl.line(`const { rows } = await db().query('select 41 + 1 as n')`)).toBe('');
    expect(await repl.line('rows[0].n')).toBe('42');
    expect(await repl.line(`typeof (await ctx.jobs.enqueue('SendMail', { id: '7' }))`)).toBe("'string'");
    expect(await repl.line(`use('http').routes.some((r) => r.path === '/ws/lobby')`)).toBe('true');
    // The model, on the table its migration made when mega start applied it.
    expect(await repl.line(`(await models.Note.create({ title: 'hello' })).title`)).toBe("'hello'");
    expect(await repl.line('(await models.Note.list()).items.length')).toBe('1');
    // .reload picks up a route file written while the console runs.
    writeFileSync(join(dir, 'routes/late.ts'), `export default (router: any) => router.http.get('/late', async () => ({ late: true }));\n`);
    expect(await repl.line('.reload')).toMatch(/^reloaded: \d+ project modules, apps my-app$/);
    expect(await repl.line(`use('http').routes.some((r) => r.path === '/late')`)).toBe('true');
    rmSync(join(dir, 'routes/late.ts'));
    repl.send('.exit');
    expect(await repl.exited, repl.out()).toBe(0);
    expect(readFileSync(join(dir, '.mega/console_history'), 'utf8')).toContain('rows[0].n\n');

    step('console');
    const tests = await expectOk(
      projectMega(['test']),
      'test/home.test.ts',
      'test/lobby-channel.test.ts',
      'test/job-send-mail.test.ts',
      'test/note-model.test.ts',
    );
    expect(tests).toMatch(/Test Files +4 passed \(4\)/);
    step('mega test');
    console.log(`newcomer path: ${step.report()}`);
  });

  it('generates every kind: each file typechecks and its test passes; --dry-run writes nothing; --force is needed to overwrite', {
    timeout: 120_000,
  }, async () => {
    await expectOk(projectMega(['plugin', 'add', 'scheduler', 'workers']), '+ @mega/scheduler@0.1.0', '+ @mega/workers@0.1.0');
    const kinds = await expectOk(projectMega(['generate']));
    for (const kind of ['controller', 'route', 'channel', 'model', 'migration', 'job', 'schedule', 'worker', 'plugin', 'test']) {
      expect(kinds).toMatch(new RegExp(`^ {2}${kind} `, 'm'));
    }

    const dry = await expectOk(projectMega(['g', 'route', 'Orders', '--dry-run']), 'nothing is written', 'would create routes/orders.ts');
    expect(dry).toContain("    |   router.http.post('/orders', createOrders, {");
    expect(existsSync(join(dir, 'routes/orders.ts'))).toBe(false);
    expect(existsSync(join(dir, 'test/orders-route.test.ts'))).toBe(false);

    await expectOk(projectMega(['g', 'controller', 'Users']), 'create controllers/users.ts', 'create test/users-controller.test.ts');
    await expectOk(projectMega(['g', 'route', 'Orders']), 'create routes/orders.ts', 'create test/orders-route.test.ts');
    await expectOk(
      projectMega(['g', 'plugin', 'AuditLog']),
      'create plugins/audit-log.ts',
      'update mega.config.ts (plugins: ./plugins/audit-log.ts)',
    );
    await expectOk(projectMega(['g', 'test', 'smoke']), 'create test/smoke.test.ts');
    await expectOk(
      projectMega(['g', 'schedule', 'Cleanup', '--cron', '0 * * * *']),
      'create schedules/cleanup.ts',
      'test/schedule-cleanup.test.ts',
    );
    await expectOk(projectMega(['g', 'worker', 'Hash']), 'create workers/hash.ts', 'create test/worker-hash.test.ts');

    // An edited file is never overwritten without --force.
    const edited = `${readFileSync(join(dir, 'controllers/users.ts'), 'utf8')}// mine\n`;
    writeFileSync(join(dir, 'controllers/users.ts'), edited);
    const again = await projectMega(['g', 'controller', 'Users']);
    expect(again.code, again.out).toBe(1);
    expect(again.out).toContain('exists controllers/users.ts (left as it is; --force overwrites it)');
    expect(again.out).toContain('identical routes/users.ts');
    expect(readFileSync(join(dir, 'controllers/users.ts'), 'utf8')).toBe(edited);
    await expectOk(projectMega(['g', 'controller', 'Users', '--force']), 'overwrite controllers/users.ts');
    expect(readFileSync(join(dir, 'controllers/users.ts'), 'utf8')).not.toContain('// mine');
    const unknown = await projectMega(['g', 'gizmo', 'x']);
    expect([unknown.code, unknown.out.includes('unknown kind "gizmo"')]).toEqual([2, true]);

    const tsc = await run(process.execPath, [join(dir, 'node_modules/typescript/bin/tsc'), '-p', dir], dir);
    expect(tsc.code, tsc.out).toBe(0);
    const tests = await expectOk(projectMega(['test']));
    expect(tests).toMatch(/Test Files +10 passed \(10\)/);
    for (const file of ['users-controller', 'orders-route', 'audit-log-plugin', 'smoke', 'schedule-cleanup', 'worker-hash']) {
      expect(tests).toContain(`test/${file}.test.ts`);
    }
  });
});
