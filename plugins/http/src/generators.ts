/**
 * `mega generate controller <Name> [--app <app>]`: a controller class and a route file that mounts
 * it, in the app's folder (the project root of a single-app project, apps/<app>/ otherwise).
 */
import type { Generator, ProjectEditor } from '@mega/kernel';
import { ValidationError } from '@mega/kernel';

/** `user-profile`, `UserProfile`, `userProfile` -> { file: 'user-profile', cls: 'UserProfile' }. */
export function names(raw: string): { file: string; cls: string } {
  const words = raw
    .replace(/Controller$/, '')
    .split(/[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])/)
    .filter(Boolean)
    .map((w) => w.toLowerCase());
  if (words.length === 0 || !/^[a-z]/.test(words[0] as string)) {
    throw new ValidationError('generate.invalid_name', `"${raw}" is not a usable name: start with a letter (e.g. UserProfile)`);
  }
  return { file: words.join('-'), cls: words.map((w) => w[0]?.toUpperCase() + w.slice(1)).join('') };
}

export const controllerGenerator: Generator = {
  summary: 'a controller class (controllers/<name>.ts) and a route file mounting it (routes/<name>.ts)',
  async run(name: string, project: ProjectEditor, options: Record<string, string | boolean>) {
    const { file, cls } = names(name);
    const base = typeof options.app === 'string' ? `apps/${options.app}/` : '';
    const controller = `${base}controllers/${file}.ts`;
    const wrote = await project.writeFileIfMissing(
      controller,
      `import type { Handler } from '@mega/http';

// Controllers are static methods (req, reply, ctx); what they return is sent as { data }.
export class ${cls}Controller {
  static index: Handler = async (_req, _reply, ctx) => ({ controller: '${cls}', app: ctx.app.name });
}
`,
    );
    await project.writeFileIfMissing(
      `${base}routes/${file}.ts`,
      `import type { Router } from '@mega/http';
import { ${cls}Controller } from '../controllers/${file}.js';

export default (router: Router) => {
  router.http.get('/${file}', ${cls}Controller.index);
};
`,
    );
    if (!wrote) project.log(`${controller} exists; left as it is`);
  },
};
