/**
 * `mega start --watch`: development restarts. This process only watches; the app runs in a child
 * `mega start` (same arguments, no --watch) that is stopped gracefully and started again when a
 * source file of the project changes. A child that fails to boot is not restarted until the next
 * change, so a syntax error waits for its fix instead of looping.
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import type { FSWatcher } from 'node:fs';
import { watch } from 'node:fs';
import type { CliIO } from './io.js';

/** What counts as a source change: code, config, templates, locales, .env. */
const WATCHED = /(\.(?:[cm]?[jt]s|json|eta|html|css)|(?:^|\/)\.env(?:\.[\w.-]+)?)$/;
/** Never watched: dependencies, build output, runtime state (sessions, PGlite, uploads), VCS. */
const IGNORED = /(?:^|\/)(?:node_modules|dist|\.mega|\.git|coverage)(?:\/|$)/;
const STOP_GRACE_MS = 10_000;

export function isWatchedPath(relPath: string): boolean {
  const path = relPath.split('\\').join('/');
  return WATCHED.test(path) && !IGNORED.test(path);
}

export interface WatchOptions {
  dir: string;
  /** Arguments for the child `mega start` (without --watch). */
  args: string[];
  io: CliIO;
  debounceMs?: number;
}

export function runWatch({ dir, args, io, debounceMs = 150 }: WatchOptions): Promise<number> {
  const bin = process.argv[1] as string;
  let child: ChildProcess | undefined;
  let stopping = false;
  let timer: NodeJS.Timeout | undefined;
  const changed = new Set<string>();

  const start = () => {
    // Own process group: a terminal's Ctrl+C reaches only this process, which stops the child once.
    const c = spawn(process.execPath, [...process.execArgv, bin, 'start', ...args], {
      cwd: io.cwd,
      stdio: 'inherit',
      env: process.env,
      detached: true,
    });
    child = c;
    c.on('exit', (code, signal) => {
      if (child === c) child = undefined;
      if (!stopping && !c.killed) io.stderr(`mega start --watch: the app exited (${signal ?? code}); waiting for a change to restart`);
    });
  };
  const stop = (c: ChildProcess): Promise<void> =>
    new Promise((done) => {
      if (c.exitCode !== null || c.signalCode !== null) return done();
      const force = setTimeout(() => c.kill('SIGKILL'), STOP_GRACE_MS);
      c.once('exit', () => {
        clearTimeout(force);
        done();
      });
      c.kill('SIGTERM');
    });
  let restarting: Promise<void> = Promise.resolve();
  const restart = () => {
    const files = [...changed].slice(0, 3).join(', ') + (changed.size > 3 ? `, +${changed.size - 3} more` : '');
    changed.clear();
    io.stdout(`mega start --watch: ${files} changed; restarting`);
    restarting = restarting.then(async () => {
      if (child) await stop(child);
      if (!stopping) start();
    });
  };

  let watcher: FSWatcher;
  try {
    watcher = watch(dir, { recursive: true }, (_event, file) => {
      if (!file || !isWatchedPath(file.toString())) return;
      changed.add(file.toString());
      clearTimeout(timer);
      timer = setTimeout(restart, debounceMs);
    });
  } catch (error) {
    io.stderr(`mega start --watch: cannot watch ${dir}: ${(error as Error).message}`);
    return Promise.resolve(1);
  }
  io.stdout(`mega start --watch: watching ${dir} (restarts on .ts/.js/.json/.eta/.env changes)`);
  process.on('exit', () => child?.kill('SIGKILL')); // never leave an orphan app behind
  start();

  return new Promise((resolve) => {
    const shutdown = () => {
      if (stopping) return;
      stopping = true;
      clearTimeout(timer);
      watcher.close();
      restarting.then(() => (child ? stop(child) : undefined)).then(() => resolve(0));
    };
    process.on('SIGINT', shutdown);
    process.on('SIGTERM', shutdown);
  });
}
