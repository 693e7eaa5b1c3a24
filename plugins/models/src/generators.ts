/**
 * `mega generate model <Name> [--fields title:string,body:text?,views:integer] [--app <app>]`: a
 * model file in the app's `models/` (the project root of a single-app project, apps/<app>/ otherwise)
 * and a test in the project's `test/` that checks its validation schema and its table spec.
 */
import type { Generator, ProjectEditor } from '@mega/kernel';
import { ValidationError } from '@mega/kernel';
import { tableNameOf } from './define.js';
import { FIELD_TYPES } from './fields.js';
import type { FieldType } from './schema.js';

/** `BlogPost`, `blog_post`, `blog-posts` -> ['blog', 'post'...]; a name not starting with a letter is refused. */
export function modelWords(raw: string): string[] {
  const words = raw
    .split(/[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])/)
    .filter(Boolean)
    .map((w) => w.toLowerCase());
  if (words.length === 0 || !/^[a-z]/.test(words[0] as string)) {
    throw new ValidationError('generate.invalid_name', `"${raw}" is not a usable model name: start with a letter (e.g. BlogPost)`);
  }
  return words;
}

interface GenField {
  name: string;
  type: FieldType;
  nullable: boolean;
}

/** `title:string,body:text?` -> fields; default one `name: string`. */
export function parseFields(spec: string | boolean | undefined): GenField[] {
  if (typeof spec !== 'string' || spec.trim() === '') return [{ name: 'name', type: 'string', nullable: false }];
  return spec.split(',').map((part) => {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([a-z]+)(\?)?\s*$/.exec(part);
    const type = m?.[2] as FieldType | undefined;
    if (!m || !type || !FIELD_TYPES.includes(type) || type === 'id') {
      throw new ValidationError(
        'generate.invalid_fields',
        `--fields "${part.trim()}" is not name:type[?] with a type among ${FIELD_TYPES.filter((t) => t !== 'id').join(', ')}`,
      );
    }
    if (m[1] === 'id') throw new ValidationError('generate.invalid_fields', '--fields: "id" is added by the generator');
    return { name: m[1] as string, type, nullable: m[3] === '?' };
  });
}

const SAMPLE: Record<FieldType, string> = {
  id: '1',
  uuid: "'8f14e45f-ceea-467f-a0d6-3b7f1c7c2b4e'",
  string: "'example'",
  text: "'Some longer text.'",
  integer: '42',
  bigint: "'9007199254740993'",
  float: '1.5',
  decimal: "'12.50'",
  boolean: 'true',
  date: "'2024-05-01'",
  timestamp: "new Date('2024-05-01T12:00:00Z')",
  json: "{ tags: ['a'] }",
};
const WRONG: Record<FieldType, string> = {
  id: "'x'",
  uuid: "'not-a-uuid'",
  string: '42',
  text: '42',
  integer: "'many'",
  bigint: "'big'",
  float: "'x'",
  decimal: "'x'",
  boolean: "'yes'",
  date: "'May 1st'",
  timestamp: "'yesterday'",
  json: 'undefined',
};

function modelSource(cls: string, table: string, fields: GenField[]): string {
  const lines = fields.map((f) => {
    const args = f.type === 'string' ? '{ length: 200 }' : '';
    return `    ${f.name}: field.${f.type}(${args})${f.nullable ? '.nullable()' : ''},`;
  });
  return `import { defineModel, field } from '@mega/models';

// One definition gives the row/insert/update types, the validation schema (${cls}.schemas.create is also an
// HTTP body schema), typed CRUD (ctx.models.${cls}.find/list/create/update/delete) and the migration diff
// (mega migrate generate create-${table.replace(/_/g, '-')}).
export const ${cls} = defineModel({
  name: '${cls}',
  table: '${table}',
  fields: {
    id: field.id(),
${lines.join('\n')}
  },
  timestamps: true,
});

declare module '@mega/models' {
  interface Models {
    ${cls}: typeof ${cls};
  }
}
`;
}

function testSource(cls: string, table: string, file: string, base: string, fields: GenField[]): string {
  const required = fields.filter((f) => !f.nullable);
  const sample = fields.map((f) => `${f.name}: ${SAMPLE[f.type]}`).join(', ');
  const breaker = (required.find((f) => f.type !== 'json') ?? fields.find((f) => f.type !== 'json')) as GenField | undefined;
  return `import { snapshotOf } from '@mega/models';
import { describe, expect, it } from 'vitest';
import { ${cls} } from '../${base}models/${file}.js';

describe('${cls} model', () => {
  it('accepts a valid ${cls} and refuses unknown fields${breaker ? ' and wrong types' : ''}', () => {
    expect(() => ${cls}.validate({ ${sample} })).not.toThrow();
    expect(() => ${cls}.validate({ ${sample}, unknownField: 1 })).toThrow(expect.objectContaining({ code: 'validation.failed', status: 400 }));${
      breaker
        ? `
    // The valid sample with one field of the wrong type (spread first: a literal may not repeat a key).
    const valid = { ${sample} };
    expect(() => ${cls}.validate({ ...valid, ${breaker.name}: ${WRONG[breaker.type]} })).toThrow(
      expect.objectContaining({ code: 'validation.failed', details: [expect.objectContaining({ path: '/${breaker.name}' })] }),
    );`
        : ''
    }
  });

  it('describes the ${table} table for migrations', () => {
    const spec = snapshotOf([${cls}]).tables.${table};
    expect(spec?.fields.map((f) => f.name)).toEqual(['id', ${fields.map((f) => `'${f.name}'`).join(', ')}, 'created_at', 'updated_at']);
    expect(spec?.primaryKey).toBe('id');
  });
});
`;
}

async function write(project: ProjectEditor, path: string, content: string): Promise<void> {
  if (!(await project.writeFileIfMissing(path, content))) project.log(`${path} exists; left as it is`);
}

export const modelGenerator: Generator = {
  summary: 'a model (models/<name>.ts: fields, types, validation, table spec) and its test',
  async run(name, project, options) {
    const words = modelWords(name);
    const app = typeof options.app === 'string' ? options.app : undefined;
    if (app !== undefined && !/^[a-z0-9][a-z0-9_-]*$/.test(app)) {
      throw new ValidationError('generate.invalid_app', `--app "${app}" is not an app directory name (apps/<name>)`);
    }
    const fields = parseFields(options.fields);
    const base = app ? `apps/${app}/` : '';
    const file = words.join('-');
    const cls = words.map((w) => (w[0] as string).toUpperCase() + w.slice(1)).join('');
    const table = typeof options.table === 'string' ? options.table : tableNameOf(cls);
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(table))
      throw new ValidationError('generate.invalid_name', `--table "${table}" is not an identifier`);
    await write(project, `${base}models/${file}.ts`, modelSource(cls, table, fields));
    await write(project, `test/${file}-model.test.ts`, testSource(cls, table, file, base, fields));
  },
};
