/**
 * `mega bench <target>`: one verb over the repository's benchmarks. `codec` runs in this process
 * (it measures the installed addon); every other target is an npm script of the Mega checkout
 * (`npm run bench:<target>`), which builds what it needs first, so it runs only inside that checkout.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { CliIO } from './io.js';

export const BENCH_HELP = `Usage: mega bench <target> [-- script args]

Targets:
  codec      native vs TypeScript codec, side by side (--json); runs anywhere
  http       HTTP throughput (autocannon) against a built app
  ws         WebSocket fan-out and round trips
  jobs       job queue: Mega on JetStream vs BullMQ, CPU per job incl. the broker
  workers    worker-thread pool
  realtime   fan-out vs raw ws, Socket.IO 4.8 and Centrifugo 6.9.1 (builds Centrifugo once)
  otel       metrics and tracing overhead per request
  models     model find/create/list vs the raw pg driver
  cluster    node:cluster + hub fan-out (builds the Rust hub)
  hub        the Rust hub alone (cargo)
  ctx, lock, bus, startup   micro-benchmarks of the kernel and plugins

Every target but codec is an npm script of the Mega repository (npm run bench:<target>) and runs
only inside a checkout of it.`;

/** The Mega repository checkout at or above `from`: its root package.json is named "mega" and has bench scripts. */
export function findMegaCheckout(from: string): { root: string; scripts: Record<string, string> } | undefined {
  let dir = resolve(from);
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; scripts?: Record<string, string> };
        if (pkg.name === 'mega' && pkg.scripts?.['build:native']) return { root: dir, scripts: pkg.scripts };
      } catch {
        // an unreadable package.json is not the checkout: keep walking up
      }
    }
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

export async function benchCommand(argv: string[], io: CliIO): Promise<number> {
  const [target, ...rest] = argv;
  if (!target || target === '--help' || target === '-h' || target === 'help') {
    io.stdout(BENCH_HELP);
    return target ? 0 : 2;
  }
  if (target === 'codec') {
    const { benchCodec } = await import('@mega/codec/bench');
    return benchCodec(rest);
  }
  const checkout = findMegaCheckout(io.cwd);
  const script = `bench:${target}`;
  if (!checkout) {
    io.stderr(
      `mega bench ${target}: this benchmark is a script of the Mega repository (npm run ${script}) and runs only inside a checkout of it; here only "mega bench codec" runs`,
    );
    return 1;
  }
  if (!checkout.scripts[script]) {
    const available = Object.keys(checkout.scripts)
      .filter((s) => s.startsWith('bench:'))
      .map((s) => s.slice('bench:'.length));
    io.stderr(`mega bench: unknown target "${target}" (available: ${available.join(', ')})`);
    return 2;
  }
  const args = ['run', script, ...(rest.length ? ['--', ...rest.filter((a) => a !== '--')] : [])];
  io.stderr(`mega bench ${target}: npm ${args.join(' ')} (in ${checkout.root})`);
  return new Promise((done) => {
    const child = spawn(process.platform === 'win32' ? 'npm.cmd' : 'npm', args, { cwd: checkout.root, stdio: 'inherit' });
    child.on('error', (error) => {
      io.stderr(`mega bench ${target}: cannot run npm: ${error.message}`);
      done(127);
    });
    child.on('exit', (code, signal) => done(code ?? (signal ? 1 : 0)));
  });
}
