/**
 * The ProjectEditor handed to a plugin's `configure(project)` by `mega plugin add`. Every change
 * is idempotent (absent -> add, present -> leave alone) and reported as one line, so the user sees
 * exactly what a plugin touched.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { APP_CONFIG_NAMES } from '../../config.js';
import { ConfigError } from '../../errors.js';
import type { AnyPlugin, ProjectEditor } from '../../plugin.js';
import { CoreAppConfig, CoreGlobalConfig } from '../../schema.js';
import { addDefault } from './config-edit.js';

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface EditorOptions {
  dir: string;
  /** The project's global config file (absolute). */
  configFile: string;
  /** Prints one line of progress. */
  say: (line: string) => void;
  /** The plugin being configured: its declared keys decide which file a key belongs in. */
  plugin?: AnyPlugin;
}

export function createProjectEditor(options: EditorOptions): ProjectEditor {
  const { configFile, say } = options;
  const keys = (scope: 'global' | 'app') =>
    new Set([
      ...Object.keys((scope === 'global' ? CoreGlobalConfig : CoreAppConfig).properties),
      ...Object.keys(options.plugin?.config?.[scope]?.properties ?? {}),
    ]);
  const globalKeys = keys('global');
  const appKeys = keys('app');
  const dir = resolve(options.dir);
  const rel = (path: string) => relative(dir, path) || path;
  // configure() may fire edits without awaiting each one; file edits are read-modify-write, so run them in turn.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(task: () => Promise<T>): Promise<T> => {
    const run = queue.then(task);
    queue = run.catch(() => undefined);
    return run;
  };

  const appConfigFile = async (app: string): Promise<string> => {
    const appDir = join(dir, 'apps', app);
    if (!/^[a-z0-9][a-z0-9_-]*$/.test(app) || !existsSync(appDir)) {
      throw new ConfigError('app.not_found', `no app "${app}" in ${dir} (expected apps/${app}/)`, { details: { app } });
    }
    const found = APP_CONFIG_NAMES.map((n) => join(appDir, n)).find((f) => existsSync(f));
    if (found) return found;
    const file = join(appDir, 'app.config.ts');
    await writeFile(file, "import { defineAppConfig } from '@mega/kernel';\n\nexport default defineAppConfig({});\n");
    say(`  create ${rel(file)}`);
    return file;
  };

  return {
    dir,
    setConfigDefault: (key, value, app) =>
      serial(async () => {
        const path = key.split('.');
        const top = path[0] ?? '';
        // Fail here, not at the next boot: a key in the wrong file is a config.scope_violation.
        if (app !== undefined && globalKeys.has(top)) {
          throw new ConfigError('config.scope_violation', `"${top}" belongs in ${rel(configFile)}, not in an app config`, {
            details: { key, app },
          });
        }
        if (app === undefined && appKeys.has(top)) {
          throw new ConfigError('config.scope_violation', `"${top}" belongs in apps/<name>/app.config.ts, not in ${rel(configFile)}`, {
            details: { key },
          });
        }
        const file = app === undefined ? configFile : await appConfigFile(app);
        const source = await readFile(file, 'utf8');
        const next = addDefault(source, rel(file), path, value);
        if (next === source) return false;
        await writeFile(file, next);
        say(`  update ${rel(file)} (${key})`);
        return true;
      }),

    addEnv: (key, value, comment) =>
      serial(async () => {
        if (!ENV_KEY.test(key)) throw new ConfigError('config.env_invalid', `"${key}" is not a valid environment variable name`);
        if (/[\r\n]/.test(value) || (comment !== undefined && /[\r\n]/.test(comment))) {
          throw new ConfigError('config.env_invalid', `the value and comment of ${key} must fit on one line`);
        }
        const file = join(dir, '.env');
        const current = existsSync(file) ? await readFile(file, 'utf8') : '';
        if (new RegExp(`^\\s*(?:export\\s+)?${key}\\s*=`, 'm').test(current)) return false;
        // Quote only when the value would otherwise be cut at a space or a '#'.
        const printed = /^[^\s#'"`\\]*$/.test(value) ? value : value.includes("'") ? JSON.stringify(value) : `'${value}'`;
        const lines = `${comment ? `# ${comment}\n` : ''}${key}=${printed}\n`;
        const separator = current === '' || current.endsWith('\n') ? '' : '\n';
        await writeFile(file, current + separator + lines);
        say(`  update .env (${key})`);
        return true;
      }),

    writeFileIfMissing: (path, content) =>
      serial(async () => {
        const file = resolve(dir, path);
        if (file !== dir && !file.startsWith(dir + sep)) {
          throw new ConfigError('config.invalid', `writeFileIfMissing: ${path} is outside the project directory`, { details: { path } });
        }
        if (existsSync(file)) return false;
        await mkdir(dirname(file), { recursive: true });
        await writeFile(file, content, { flag: 'wx' });
        say(`  create ${rel(file)}`);
        return true;
      }),

    log: (message) => say(`  ${message}`),
  };
}
