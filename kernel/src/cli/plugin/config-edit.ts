/**
 * AST-anchored edits of `mega.config.ts` / `app.config.ts`.
 *
 * magicast parses the file (recast + Babel, TypeScript-aware, node offsets) and we splice text at
 * those positions instead of letting recast reprint: recast reprints the *whole* object literal as
 * soon as a property is added (trailing comments move to the line above, blank lines appear between
 * properties) and reflows an array when an element is pushed. Splicing leaves every byte outside
 * the inserted or removed item alone. Every result is parsed again and checked before it is
 * returned, so a splice can never write a broken config.
 */

import type { ASTNode } from 'magicast';
import { detectCodeFormat, parseModule } from 'magicast';
import { ConfigError } from '../../errors.js';

type NodeOf<T extends ASTNode['type']> = Extract<ASTNode, { type: T }>;
type ObjectNode = NodeOf<'ObjectExpression'>;
type ArrayNode = NodeOf<'ArrayExpression'>;
type Positioned = { start?: number | null; end?: number | null };

const startOf = (n: Positioned): number => n.start ?? 0;
const endOf = (n: Positioned): number => n.end ?? 0;

/** After an item: optional comma, then only comments up to the end of the line. */
const REST_OF_LINE = /^\s*(,)?(?:\s*(?:\/\/.*|\/\*.*?\*\/))*\s*$/;

/**
 * recast (inside magicast) hands Babel a copy of the file with indentation re-rendered as spaces
 * and line ends joined with `lineTerminator`, so node offsets are offsets into that copy. We parse
 * a same-length stand-in whose indentation is already spaces and whose line ends are single
 * characters: the copy then equals the stand-in, and offsets are offsets into the user's file.
 */
function sameLengthShadow(source: string): string {
  return source
    .replace(/\r\n?/g, (eol) => (eol.length === 2 ? ' \n' : '\n'))
    .replace(/^[^\S\n\u2028\u2029]+/gm, (indent) => ' '.repeat(indent.length));
}

function parse(source: string, file: string): ASTNode {
  try {
    return parseModule(sameLengthShadow(source), { lineTerminator: '\n' }).$ast;
  } catch (error) {
    throw new ConfigError('config.syntax', `cannot parse ${file}: ${(error as Error).message}; fix it, then run the command again`, {
      cause: error,
      details: { file },
    });
  }
}

/**
 * The config object literal: `export default defineConfig({...})`, `export default {...}`,
 * `... satisfies MegaConfig`, or `const config = ...; export default config`.
 */
export function configObject(source: string, file: string): ObjectNode {
  const program = parse(source, file);
  const body = program.type === 'Program' ? program.body : [];
  let node: ASTNode | null | undefined = body.find((n) => n.type === 'ExportDefaultDeclaration')?.declaration;
  for (let depth = 0; node && depth < 10; depth++) {
    switch (node.type) {
      case 'ObjectExpression':
        return spans(source, node, '{', '}', file);
      case 'CallExpression':
        node = node.arguments[0];
        break;
      case 'TSAsExpression':
      case 'TSSatisfiesExpression':
      case 'TSNonNullExpression':
      case 'ParenthesizedExpression':
        node = node.expression;
        break;
      case 'Identifier': {
        const name: string = node.name;
        node = body
          .flatMap((s) => (s.type === 'VariableDeclaration' ? s.declarations : []))
          .find((d) => d.id.type === 'Identifier' && d.id.name === name)?.init;
        break;
      }
      default:
        node = undefined;
    }
  }
  throw new ConfigError('config.not_editable', `${file}: cannot find the config object; expected export default defineConfig({ ... })`, {
    details: { file },
  });
}

function keyOf(prop: ObjectNode['properties'][number]): string | undefined {
  if (prop.type !== 'ObjectProperty' || prop.computed) return undefined;
  if (prop.key.type === 'Identifier') return prop.key.name;
  if (prop.key.type === 'StringLiteral') return prop.key.value;
  return undefined;
}

function findProperty(obj: ObjectNode, key: string): NodeOf<'ObjectProperty'> | undefined {
  const prop = obj.properties.find((p) => keyOf(p) === key);
  return prop?.type === 'ObjectProperty' ? prop : undefined;
}

function pluginsArray(source: string, obj: ObjectNode, file: string): ArrayNode | undefined {
  const prop = findProperty(obj, 'plugins');
  if (!prop) return undefined;
  if (prop.value.type !== 'ArrayExpression') {
    throw new ConfigError(
      'config.not_editable',
      `${file}: "plugins" is not an array literal, so it cannot be edited safely; edit it by hand`,
      {
        details: { file, key: 'plugins' },
      },
    );
  }
  return spans(source, prop.value, '[', ']', file);
}

/** Guards every splice: the node's offsets must frame its brackets in the user's text. */
function spans<T extends Positioned>(source: string, node: T, open: string, close: string, file: string): T {
  if (source[startOf(node)] !== open || source[endOf(node) - 1] !== close) {
    throw new ConfigError('config.edit_failed', `could not map ${file} precisely enough to edit it safely; make the change by hand`, {
      details: { file },
    });
  }
  return node;
}

/** Package names listed as string literals in `plugins` (inline definitions are skipped). */
export function listedPlugins(source: string, file: string): string[] {
  const array = pluginsArray(source, configObject(source, file), file);
  return (array?.elements ?? []).flatMap((e) => (e?.type === 'StringLiteral' ? [e.value] : []));
}

/** Adds names to `plugins` (creating the key if absent). */
export function addPlugins(source: string, file: string, names: readonly string[]): string {
  if (names.length === 0) return source;
  const format = styleOf(source);
  const obj = configObject(source, file);
  const array = pluginsArray(source, obj, file);
  const texts = names.map((n) => literal(n, format.quote));
  const next = array
    ? insertItems(source, array, texts, format.unit)
    : insertItems(source, obj, [`plugins: [${texts.join(', ')}]`], format.unit);
  return verified(next, file, (text) => names.every((n) => listedPlugins(text, file).includes(n)));
}

/** Removes one name from `plugins`; the source is returned unchanged when it is not listed. */
export function removePlugin(source: string, file: string, name: string): string {
  const array = pluginsArray(source, configObject(source, file), file);
  const element = array?.elements.find((e) => e?.type === 'StringLiteral' && e.value === name);
  if (!array || !element) return source;
  const next = removeItem(source, array, element);
  return verified(next, file, (text) => !listedPlugins(text, file).includes(name));
}

/** True when the (dotted) key path already has a value in the config object. */
export function hasKey(source: string, file: string, path: readonly string[]): boolean {
  let obj: ObjectNode | undefined = configObject(source, file);
  for (const [i, key] of path.entries()) {
    const prop: NodeOf<'ObjectProperty'> | undefined = obj && findProperty(obj, key);
    if (!prop) return false;
    if (i === path.length - 1) return true;
    obj = prop.value.type === 'ObjectExpression' ? prop.value : undefined;
  }
  return false;
}

/**
 * Adds `key: value` at a (dotted) path unless present; missing parents become nested objects.
 * Returns the source unchanged when the key is already there.
 */
export function addDefault(source: string, file: string, path: readonly string[], value: unknown): string {
  const format = styleOf(source);
  let obj = configObject(source, file);
  for (const [i, key] of path.entries()) {
    const prop = findProperty(obj, key);
    if (!prop) {
      const nested = path.slice(i + 1).reduceRight<unknown>((inner, k) => ({ [k]: inner }), value);
      const text = `${propertyKey(key, format.quote)}: ${literal(nested, format.quote)}`;
      return verified(insertItems(source, obj, [text], format.unit), file, (t) => hasKey(t, file, path));
    }
    if (i === path.length - 1) return source;
    if (prop.value.type !== 'ObjectExpression') {
      const where = path.slice(0, i + 1).join('.');
      throw new ConfigError(
        'config.not_editable',
        `${file}: "${where}" is not an object literal, so ${path.join('.')} cannot be added safely; add it by hand`,
        {
          details: { file, key: path.join('.') },
        },
      );
    }
    obj = prop.value;
  }
  return source;
}

/** Re-parses an edit and checks its effect; a failure is our bug, so say how to proceed by hand. */
function verified(next: string, file: string, ok: (text: string) => boolean): string {
  let good = false;
  try {
    good = ok(next);
  } catch {
    good = false;
  }
  if (!good)
    throw new ConfigError('config.edit_failed', `could not edit ${file} safely (its layout confused the editor); make the change by hand`, {
      details: { file },
    });
  return next;
}

function styleOf(source: string): { quote: "'" | '"'; unit: string } {
  const format = detectCodeFormat(source);
  // magicast guesses double quotes for a file without strings; single quotes are this project's style.
  return {
    quote: format.quote === 'double' && source.includes('"') ? '"' : "'",
    unit: format.useTabs ? '\t' : ' '.repeat(format.tabWidth ?? 2),
  };
}

function lineStart(source: string, at: number): number {
  return source.lastIndexOf('\n', at - 1) + 1;
}

/** Index of the line terminator after `at` (the `\r` of a CRLF). */
function lineEnd(source: string, at: number): number {
  const match = /\r?\n/.exec(source.slice(at));
  return match ? at + match.index : source.length;
}

const eolOf = (source: string): string => (source.includes('\r\n') ? '\r\n' : '\n');

function indentAt(source: string, at: number): string {
  return /^[ \t]*/.exec(source.slice(lineStart(source, at), at))?.[0] ?? '';
}

function itemsOf(container: ObjectNode | ArrayNode): Positioned[] {
  return container.type === 'ArrayExpression' ? container.elements.filter((e) => e !== null) : container.properties;
}

/**
 * Inserts item texts after the last item of an array or object literal, following its layout:
 * one item per line (same indentation, same trailing-comma habit) when the last item ends its
 * line, otherwise inline as `, item`.
 */
function insertItems(source: string, container: ObjectNode | ArrayNode, texts: readonly string[], unit: string): string {
  const open = startOf(container);
  const close = endOf(container) - 1;
  const last = itemsOf(container).at(-1);
  const splice = (at: number, text: string): string => source.slice(0, at) + text + source.slice(at);
  const nl = eolOf(source);
  if (!last) {
    const inner = source.slice(open + 1, close);
    if (!inner.includes('\n')) {
      const pad = container.type === 'ObjectExpression' ? ' ' : '';
      return source.slice(0, open + 1) + pad + texts.join(', ') + pad + source.slice(close);
    }
    const indent = indentAt(source, open) + unit;
    return splice(open + 1, texts.map((t) => `${nl}${indent}${t},`).join(''));
  }
  const lastEnd = endOf(last);
  const eol = lineEnd(source, lastEnd);
  const rest = REST_OF_LINE.exec(source.slice(lastEnd, eol));
  if (!rest || close <= eol) return splice(lastEnd, texts.map((t) => `, ${t}`).join(''));
  const indent = indentAt(source, startOf(last));
  if (rest[1]) return splice(eol, texts.map((t) => `${nl}${indent}${t},`).join(''));
  // No trailing comma after the last item: give it one, and keep the new last item without.
  const added = texts.map((t) => `${nl}${indent}${t}`).join(',');
  return `${source.slice(0, lastEnd)},${source.slice(lastEnd, eol)}${added}${source.slice(eol)}`;
}

/** Removes one item: its whole line (with a comment on it) when it sits alone on its line. */
function removeItem(source: string, container: ArrayNode, item: Positioned): string {
  const items = itemsOf(container);
  const index = items.indexOf(item);
  const [s, e] = [startOf(item), endOf(item)];
  const from = lineStart(source, s);
  const eol = lineEnd(source, e);
  if (/^[ \t]*$/.test(source.slice(from, s)) && REST_OF_LINE.test(source.slice(e, eol)) && eol < endOf(container) - 1) {
    return source.slice(0, from) + source.slice(eol + (source.startsWith('\r\n', eol) ? 2 : 1));
  }
  const next = items[index + 1];
  if (next) return source.slice(0, s) + source.slice(startOf(next));
  const prev = items[index - 1];
  if (prev) return source.slice(0, endOf(prev)) + source.slice(e);
  // The only item: empty the brackets unless they also hold comments.
  const open = startOf(container) + 1;
  const close = endOf(container) - 1;
  const leftover = source.slice(open, s) + source.slice(e, close).replace(/^\s*,/, '');
  return /^\s*$/.test(leftover) ? source.slice(0, open) + source.slice(close) : source.slice(0, s) + source.slice(e).replace(/^\s*,/, '');
}

function quoteString(value: string, quote: "'" | '"'): string {
  const json = JSON.stringify(value);
  return quote === '"' ? json : `'${json.slice(1, -1).replace(/\\"/g, '"').replace(/'/g, "\\'")}'`;
}

function propertyKey(key: string, quote: "'" | '"'): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? key : quoteString(key, quote);
}

/** Prints JSON-like data as a one-line JS literal in the file's quote style. */
function literal(value: unknown, quote: "'" | '"' = "'"): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return quoteString(value, quote);
  if (typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) return String(value);
  if (Array.isArray(value)) return `[${value.map((v) => literal(v, quote)).join(', ')}]`;
  if (typeof value === 'object' && [Object.prototype, null].includes(Object.getPrototypeOf(value))) {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    return entries.length === 0 ? '{}' : `{ ${entries.map(([k, v]) => `${propertyKey(k, quote)}: ${literal(v, quote)}`).join(', ')} }`;
  }
  throw new ConfigError(
    'config.not_editable',
    `cannot write ${String(value)} into a config file; only strings, finite numbers, booleans, null, arrays and plain objects`,
  );
}
