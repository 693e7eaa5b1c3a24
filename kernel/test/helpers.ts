import { tmpdir } from 'node:os';
import type { KernelOptions } from '../src/kernel.js';
import { Kernel } from '../src/kernel.js';
import { createLogger } from '../src/logger.js';
import type { PluginDefinition } from '../src/plugin.js';

/** A kernel with inline plugins and apps, no files, silent logs. */
export function testKernel(plugins: PluginDefinition[], extra: Partial<KernelOptions> = {}): Kernel {
  return new Kernel({
    dir: tmpdir(),
    config: {},
    apps: [{ name: `app${Math.random().toString(36).slice(2, 8)}`, dir: tmpdir(), config: {}, file: undefined }],
    plugins,
    logger: createLogger({ level: 'silent' }),
    ...extra,
  });
}
