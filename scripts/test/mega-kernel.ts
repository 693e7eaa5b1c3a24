/**
 * Boots a real kernel (the built @mega/kernel, as a project would) with inline plugins, services
 * and apps, for the data and coordination plugins' tests. `stopAll()` in afterEach/afterAll.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AppConfig, MegaConfig, PluginDefinition } from '@mega/kernel';
import { createLogger, Kernel } from '@mega/kernel';
import { pino } from 'pino';

const running = new Set<Kernel>();

export interface KernelSpec {
  plugins: PluginDefinition[];
  services?: MegaConfig['services'];
  /** App name -> app config. Default: one app named `app<random>`. */
  apps?: Record<string, AppConfig>;
  dir?: string;
  /** Log level (default silent); pass a logger level to see what plugins log. */
  level?: 'silent' | 'error' | 'warn' | 'info' | 'debug';
  /** Collected log lines (JSON objects), for assertions on what was reported. */
  logs?: Array<Record<string, unknown>>;
}

export function makeKernel(spec: KernelSpec): Kernel {
  const dir = spec.dir ?? mkdtempSync(join(tmpdir(), 'mega-data-'));
  const apps = spec.apps ?? { [`app${Math.random().toString(36).slice(2, 8)}`]: {} };
  const logs = spec.logs;
  const logger = logs
    ? pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) })
    : createLogger({ level: spec.level ?? 'silent' });
  const kernel = new Kernel({
    dir,
    config: { services: spec.services ?? {} },
    apps: Object.entries(apps).map(([name, config]) => ({ name, dir: join(dir, 'apps', name), config, file: undefined })),
    plugins: spec.plugins,
    logger,
  });
  running.add(kernel);
  return kernel;
}

export async function startKernel(spec: KernelSpec): Promise<Kernel> {
  const kernel = makeKernel(spec);
  await kernel.start();
  return kernel;
}

export async function stopAll(): Promise<void> {
  const all = [...running];
  running.clear();
  await Promise.all(all.map((k) => k.stop()));
}
