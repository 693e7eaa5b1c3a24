/** Loads an app's `models/**\/*.{ts,mts,js,mjs}`: every exported model, checked at load (boot). */
import { existsSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ConfigError, isMegaError } from '@mega/kernel';
import { createJiti } from 'jiti';
import { compiledOf, isModel } from './model.js';
import type { AnyModel } from './types.js';

const jiti = createJiti(import.meta.url, { interopDefault: false });
const FILE = /^(?!.*\.(d|test|spec)\.[mc]?[jt]s$).*\.(ts|mts|js|mjs)$/;

/**
 * The models exported by the files of `<appDir>/<dir>` (default `models`), sorted by name. A model
 * exported from two files (one re-exports the other) counts once; two models with one name is
 * `model.duplicate`; a file that fails to load is `models.load_failed` naming it, and a problem in a
 * definition keeps its own code (`model.unknown_field_type`, ...).
 */
export async function loadModels(appDir: string, options: { dir?: string } = {}): Promise<AnyModel[]> {
  const root = join(appDir, options.dir ?? 'models');
  if (!existsSync(root)) return [];
  const files = readdirSync(root, { recursive: true, encoding: 'utf8' })
    .filter((f) => FILE.test(f))
    .sort();
  const byName = new Map<string, { model: AnyModel; file: string }>();
  for (const name of files) {
    const file = join(root, name);
    const shown = relative(appDir, file);
    let mod: Record<string, unknown>;
    try {
      mod = (await jiti.import(file)) as Record<string, unknown>;
    } catch (error) {
      if (isMegaError(error)) {
        (error as { message: string }).message = `${error.message} (in ${shown})`;
        throw error;
      }
      throw new ConfigError('models.load_failed', `failed to load model file ${shown}: ${(error as Error).message.split('\n')[0]}`, {
        details: { file: shown },
        cause: error,
      });
    }
    for (const value of new Set(Object.values(mod ?? {}))) {
      if (!isModel(value)) continue;
      const modelName = compiledOf(value).name;
      const seen = byName.get(modelName);
      if (seen && seen.model !== value) {
        throw new ConfigError('model.duplicate', `model "${modelName}" is defined twice (${seen.file} and ${shown})`, {
          details: { model: modelName, files: [seen.file, shown] },
        });
      }
      byName.set(modelName, { model: value, file: shown });
    }
  }
  return [...byName.values()].map((e) => e.model).sort((a, b) => compiledOf(a).name.localeCompare(compiledOf(b).name));
}
