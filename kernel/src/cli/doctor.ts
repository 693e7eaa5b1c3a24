/**
 * `mega doctor`: one screen of what a project needs to run — Node against the pinned engines, the
 * @mega package versions, the native codec (and why it fell back), which configured services answer,
 * and every config problem the kernel reports — exit 1 when anything is wrong. Services are probed
 * twice: a TCP connect per declared URL (works even when the config is invalid), then, when the
 * config is valid, the project boots without serving (`serve: false`) and runs its health checks.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadProject } from '../config.js';
import { isMegaError } from '../errors.js';
import type { Kernel } from '../kernel.js';
import type { CliIO } from './io.js';
import { findProjectDir, formatError, noProjectMessage, settleNodeEnv } from './service.js';

export const DOCTOR_HELP = `Usage: mega doctor [options]

Checks the project in this directory: Node version, @mega package versions, native codec,
configured services (connect + health checks), config problems. Exit 1 when something is wrong.

Options:
  --timeout <ms>   per service check and for the whole boot (default 5000)
  -h, --help       show this help`;

type Status = 'ok' | 'warn' | 'FAIL';
interface Row {
  status: Status;
  text: string;
}

/** Default ports by URL scheme, for the connect-only probe. */
const PORTS: Record<string, number> = {
  'redis:': 6379,
  'rediss:': 6380,
  'postgres:': 5432,
  'postgresql:': 5432,
  'mongodb:': 27017,
  'nats:': 4222,
  'amqp:': 5672,
  'http:': 80,
  'https:': 443,
  'ws:': 80,
  'wss:': 443,
};

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves when host:port accepts a TCP connection, rejects with the reason otherwise. */
function tcpProbe(host: string, port: number, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    const done = (error?: Error) => {
      socket.destroy();
      if (error) reject(error);
      else resolve();
    };
    socket.setTimeout(ms, () => done(new Error(`no answer within ${ms} ms`)));
    socket.once('connect', () => done());
    socket.once('error', (e: NodeJS.ErrnoException) => done(new Error(e.code ?? e.message)));
  });
}

function satisfies(version: string, range: string): boolean {
  const require = createRequire(import.meta.url);
  const semver = require('semver') as { satisfies(v: string, r: string): boolean };
  return semver.satisfies(version, range);
}

function readJson(file: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Each problem the kernel reported (a combined boot error lists them in details.problems). */
function problemsOf(error: unknown): string[] {
  if (isMegaError(error)) {
    const all = (error.details as { problems?: Array<{ code?: string; message: string }> } | undefined)?.problems;
    if (all?.length) return all.map((p) => `[${p.code ?? 'error'}] ${p.message}`);
    return [`[${error.code}] ${error.message}`];
  }
  return [formatError(error).replace(/^mega: /, '')];
}

export async function doctorCommand(argv: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { timeout: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    io.stdout(DOCTOR_HELP);
    return 0;
  }
  const timeoutMs = Number(values.timeout ?? 5000);
  const sections: Array<[string, Row[]]> = [];
  const section = (title: string): Row[] => {
    const rows: Row[] = [];
    sections.push([title, rows]);
    return rows;
  };

  // Node against the engines the kernel (and the project, when it pins one) declares.
  const node = section('node');
  const kernelPkg = readJson(new URL('../../package.json', import.meta.url).pathname) ?? {};
  const kernelEngine = (kernelPkg.engines as { node?: string } | undefined)?.node;
  const dir = findProjectDir(io.cwd);
  const projectPkg = dir ? readJson(join(dir, 'package.json')) : undefined;
  const projectEngine = (projectPkg?.engines as { node?: string } | undefined)?.node;
  for (const [who, range] of [
    ['@mega/kernel', kernelEngine],
    ['this project', projectEngine],
  ] as const) {
    if (!range) continue;
    const ok = satisfies(process.versions.node, range);
    node.push({ status: ok ? 'ok' : 'FAIL', text: `${process.version} ${ok ? 'satisfies' : 'does not satisfy'} ${range} (${who})` });
  }
  if (!node.length) node.push({ status: 'ok', text: process.version });

  const packages = section('packages');
  const { KERNEL_VERSION } = await import('../kernel.js');
  const codecVersion = (kernelPkg.dependencies as Record<string, string> | undefined)?.['@mega/codec'];
  packages.push({ status: 'ok', text: `@mega/kernel@${KERNEL_VERSION}${codecVersion ? `, @mega/codec@${codecVersion}` : ''}` });

  // The codec: native addon or the TypeScript fallback, and why.
  const codecRows = section('codec');
  try {
    const { loadCodec } = await import('@mega/codec');
    const codec = loadCodec();
    codecRows.push(
      codec.backend === 'native'
        ? { status: 'ok', text: 'native addon loaded' }
        : { status: 'warn', text: `TypeScript fallback (same bytes, slower): ${codec.reason ?? 'no reason given'}` },
    );
  } catch (error) {
    codecRows.push({ status: 'FAIL', text: (error as Error).message });
  }

  const config = section('config');
  const services = section('services');
  if (!dir) {
    config.push({ status: 'FAIL', text: noProjectMessage('doctor', io.cwd).replace(/^mega doctor: /, '') });
  } else {
    settleNodeEnv(dir, undefined);
    await checkProject(dir, timeoutMs, { packages, config, services });
  }

  const width = Math.max(...sections.map(([t]) => t.length));
  const lines = [`mega doctor: ${dir ?? io.cwd} (NODE_ENV=${process.env.NODE_ENV ?? 'development'})`];
  for (const [title, rows] of sections) {
    rows.forEach((row, i) => {
      lines.push(`  ${(i === 0 ? title : '').padEnd(width)}  ${row.status.padEnd(4)}  ${row.text}`);
    });
  }
  const failed = sections.flatMap(([, rows]) => rows).filter((r) => r.status === 'FAIL').length;
  const warned = sections.flatMap(([, rows]) => rows).filter((r) => r.status === 'warn').length;
  lines.push(
    failed
      ? `\n${failed} problem${failed === 1 ? '' : 's'} found${warned ? `, ${warned} warning${warned === 1 ? '' : 's'}` : ''}`
      : `\nall checks passed${warned ? ` (${warned} warning${warned === 1 ? '' : 's'})` : ''}`,
  );
  io.stdout(lines.join('\n'));
  return failed ? 1 : 0;
}

async function checkProject(dir: string, timeoutMs: number, out: { packages: Row[]; config: Row[]; services: Row[] }): Promise<void> {
  const { loadKernel, loadPlugins } = await import('../kernel.js');
  const { createLogger } = await import('../logger.js');
  let project: Awaited<ReturnType<typeof loadProject>>;
  try {
    project = await loadProject(dir);
    const plugins = await loadPlugins(project.config, project.dir, project.file);
    out.packages.push({ status: 'ok', text: plugins.map((p) => `${p.name}@${p.version}`).join(', ') || 'no plugins listed' });
  } catch (error) {
    for (const p of problemsOf(error)) out.config.push({ status: 'FAIL', text: p });
    return;
  }

  // Connect-only probes: every declared service with a network URL.
  const probes: Array<Promise<void>> = [];
  for (const [kind, aliases] of Object.entries(project.config.services ?? {})) {
    for (const [alias, decl] of Object.entries(aliases ?? {})) {
      const name = `${kind}.${alias} (${decl.driver})`;
      let url: URL | undefined;
      try {
        url = decl.url ? new URL(decl.url) : undefined;
      } catch {
        out.services.push({ status: 'FAIL', text: `${name}: url is not a URL` });
        continue;
      }
      const port = url && (Number(url.port) || PORTS[url.protocol]);
      if (!url?.hostname || !port) {
        out.services.push({ status: 'ok', text: `${name}: embedded (its health check runs once the project boots)` });
        continue;
      }
      const where = `${url.hostname}:${port}`;
      probes.push(
        tcpProbe(url.hostname.replace(/^\[|\]$/g, ''), port, timeoutMs).then(
          () => void out.services.push({ status: 'ok', text: `${name}: ${where} accepts connections` }),
          (error: Error) =>
            void out.services.push({
              status: decl.optional ? 'warn' : 'FAIL',
              text: `${name}: ${where} does not answer (${error.message})${decl.optional ? ', optional' : ''}`,
            }),
        ),
      );
    }
  }
  await Promise.all(probes);

  // The kernel's own validation and boot, without serving; then its health checks.
  let kernel: Kernel | undefined;
  try {
    kernel = await loadKernel({ dir, serve: false, logger: createLogger({ level: 'silent' }) });
    await within(kernel.start(), timeoutMs * 3, 'boot');
    out.config.push({
      status: 'ok',
      text: `valid; booted ${kernel.apps.length} app(s) without serving: ${kernel.apps.map((a) => a.name).join(', ')}`,
    });
  } catch (error) {
    // Validation fails before setup (state "created"); anything later is a plugin's boot failing.
    const prefix = kernel && kernel.state !== 'created' ? 'boot failed: ' : '';
    for (const p of problemsOf(error)) out.config.push({ status: 'FAIL', text: prefix + p });
    await kernel?.stop('doctor').catch(() => undefined);
    return;
  }
  for (const entry of kernel.healthChecks()) {
    try {
      await within(entry.check(), timeoutMs, entry.name);
      out.services.push({ status: 'ok', text: `${entry.name}: answers (health check of ${entry.plugin})` });
    } catch (error) {
      out.services.push({ status: 'FAIL', text: `${entry.name}: ${(error as Error).message} (health check of ${entry.plugin})` });
    }
  }
  if (!out.services.length) out.services.push({ status: 'ok', text: 'none configured' });
  await within(kernel.stop('doctor'), timeoutMs, 'shutdown').catch(() => undefined);
}
