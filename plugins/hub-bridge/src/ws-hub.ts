/**
 * `mega ws-hub`: runs the Rust hub sidecar (sidecar/, binary `mega-hub`). Builds it with cargo when
 * the binary is missing or older than its sources, then runs it in the foreground with the
 * project's `.env` under the real environment, forwarding SIGINT/SIGTERM and its exit code.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, utimesSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEnv } from 'node:util';
import { type CliIO, startProgress } from '@mega/kernel';

const HELP = `Usage: mega ws-hub [--no-build] [-- hub args]

Runs the hub sidecar (mega-hub) in the foreground; Ctrl+C or SIGTERM drains it (bridges get 4503).
Builds it first with "cargo build --release -p mega-hub" when the binary is missing or stale.

Options:
  --no-build   never build; fail when the binary is missing
  --help       show this help

Environment (also read from ./.env; the real environment wins):
  MEGA_WSHUB_TOKENS           required, comma-separated bridge tokens
  MEGA_WSHUB_HOST             listen address (default 127.0.0.1)
  MEGA_WSHUB_PORT             listen port (default 3100)
  MEGA_WSHUB_HEARTBEAT_MS     heartbeat interval (default 25000)
  MEGA_WSHUB_MAX_FRAME_BYTES  largest message (default 1048576)
  MEGA_HUB_BIN                use this binary instead of building one`;

/** Sources whose change makes the binary stale, relative to the Cargo workspace root. */
const SOURCES = ['sidecar/src', 'sidecar/Cargo.toml', 'crates/mega-codec/src', 'crates/mega-codec/Cargo.toml', 'Cargo.toml', 'Cargo.lock'];

/** The Cargo workspace holding sidecar/: above this module first (repo checkout), then above cwd. */
export function findHubWorkspace(cwd: string): string | undefined {
  for (const start of [dirname(fileURLToPath(import.meta.url)), cwd]) {
    let dir = resolve(start);
    for (;;) {
      if (existsSync(join(dir, 'sidecar', 'Cargo.toml')) && existsSync(join(dir, 'Cargo.toml'))) return dir;
      const up = dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  }
  return undefined;
}

function newestMtime(path: string): number {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  let max = 0;
  for (const e of readdirSync(path)) max = Math.max(max, newestMtime(join(path, e)));
  return max;
}

/** True when `bin` is missing or older than any hub source. */
export function hubBinaryStale(root: string, bin: string): boolean {
  if (!existsSync(bin)) return true;
  const built = statSync(bin).mtimeMs;
  return SOURCES.some((s) => newestMtime(join(root, s)) > built);
}

/** Cargo leaves the binary alone when a newer source did not change the build; mark it fresh. */
export function markHubBuilt(bin: string): void {
  const now = new Date();
  utimesSync(bin, now, now);
}

export function hubBinaryPath(root: string): string {
  const target = process.env.CARGO_TARGET_DIR ? resolve(root, process.env.CARGO_TARGET_DIR) : join(root, 'target');
  return join(target, 'release', 'mega-hub');
}

function run(cmd: string, args: string[], cwd: string, io: CliIO): Promise<number> {
  return new Promise((done) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const forward = (b: Buffer) => io.stderr(b.toString('utf8').replace(/\n$/, ''));
    child.stdout.on('data', forward);
    child.stderr.on('data', forward);
    child.on('error', (e: NodeJS.ErrnoException) => {
      io.stderr(
        e.code === 'ENOENT'
          ? `mega ws-hub: "${cmd}" not found: install Rust (https://rustup.rs) or set MEGA_HUB_BIN to a built mega-hub`
          : `mega ws-hub: cannot run ${cmd}: ${e.message}`,
      );
      done(127);
    });
    child.on('close', (code) => done(code ?? 1));
  });
}

function readDotEnv(cwd: string): Record<string, string> {
  const file = join(cwd, '.env');
  if (!existsSync(file)) return {};
  return parseEnv(readFileSync(file, 'utf8')) as Record<string, string>;
}

export async function wsHubCommand(argv: string[], io: CliIO): Promise<number> {
  const sep = argv.indexOf('--');
  const own = sep === -1 ? argv : argv.slice(0, sep);
  const passthrough = sep === -1 ? [] : argv.slice(sep + 1);
  if (own.includes('--help') || own.includes('-h')) {
    io.stdout(HELP);
    return 0;
  }
  const unknown = own.find((a) => a !== '--no-build');
  if (unknown !== undefined) {
    io.stderr(`mega ws-hub: unknown option "${unknown}" (see mega ws-hub --help)`);
    return 2;
  }

  // The environment is checked before anything is built: a missing token must not cost a cargo build first.
  const env = { ...readDotEnv(io.cwd), ...process.env };
  if (!(env.MEGA_WSHUB_TOKENS ?? '').split(',').some((t) => t.trim())) {
    io.stderr(
      'mega ws-hub: MEGA_WSHUB_TOKENS is required: a comma-separated list of bridge tokens, in the environment or ./.env (e.g. MEGA_WSHUB_TOKENS=$(openssl rand -hex 32))',
    );
    return 2;
  }

  let bin = process.env.MEGA_HUB_BIN;
  if (!bin) {
    const root = findHubWorkspace(io.cwd);
    if (!root) {
      io.stderr('mega ws-hub: cannot find the hub sources (sidecar/Cargo.toml); set MEGA_HUB_BIN to a built mega-hub');
      return 1;
    }
    bin = hubBinaryPath(root);
    if (hubBinaryStale(root, bin)) {
      if (own.includes('--no-build')) {
        io.stderr(`mega ws-hub: ${bin} is missing or older than its sources (--no-build given)`);
        return 1;
      }
      const building = startProgress(io.stderr, 'mega ws-hub: building the hub (cargo build --release -p mega-hub)', {
        hint: 'a first build compiles every crate: minutes',
      });
      const code = await run('cargo', ['build', '--release', '-p', 'mega-hub'], root, io);
      if (code !== 0 || !existsSync(bin)) {
        building.fail();
        io.stderr(`mega ws-hub: the hub build failed (exit ${code}); fix the error above and retry`);
        return 1;
      }
      building.done();
      markHubBuilt(bin);
    }
  } else if (!existsSync(bin)) {
    io.stderr(`mega ws-hub: MEGA_HUB_BIN=${bin} does not exist`);
    return 1;
  }

  return new Promise((done) => {
    // Own process group: a terminal's Ctrl+C reaches only us, and we forward it exactly once
    // (a second signal makes the hub skip its drain).
    const child = spawn(bin, passthrough, { cwd: io.cwd, env, stdio: 'inherit', detached: true });
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    const onExit = () => child.kill('SIGTERM');
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    process.on('exit', onExit);
    const cleanup = () => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      process.off('exit', onExit);
    };
    child.on('error', (e) => {
      cleanup();
      io.stderr(`mega ws-hub: cannot start ${bin}: ${e.message}`);
      done(1);
    });
    child.on('exit', (code, signal) => {
      cleanup();
      done(code ?? 128 + (signal ? constants.signals[signal] : 1));
    });
  });
}
