import { mkdtempSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Kind, OptionalKind, Type as PackageType } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';

type Builder = typeof PackageType;

describe('the one-file TypeBox that the build puts in dist (scripts/bundle-typebox.mjs)', () => {
  it('is the installed TypeBox: the schemas it builds equal the package ones, symbol kinds included', async () => {
    const script = new URL('../scripts/bundle-typebox.mjs', import.meta.url).href;
    const { bundleTypebox } = (await import(script)) as { bundleTypebox: (out: string) => Promise<string> };
    const out = join(mkdtempSync(join(tmpdir(), 'mega-typebox-')), 'typebox.js');
    const main = createRequire(import.meta.url).resolve('@sinclair/typebox'); // <package>/build/cjs/index.js
    const installed = JSON.parse(readFileSync(join(dirname(main), '..', '..', 'package.json'), 'utf8')) as { version: string };
    expect(await bundleTypebox(out)).toBe(installed.version);

    const { Type } = (await import(pathToFileURL(out).href)) as { Type: Builder };
    expect(Type).not.toBe(PackageType);
    const make = (T: Builder) =>
      T.Object(
        {
          name: T.Optional(T.String({ minLength: 1 })),
          mode: T.Union([T.Literal('a'), T.Integer({ default: 2 })]),
          tags: T.Array(T.String()),
        },
        { additionalProperties: false, default: {} },
      );
    const bundled = make(Type);
    expect(bundled).toEqual(make(PackageType));
    expect(JSON.stringify(bundled)).toBe(JSON.stringify(make(PackageType)));
    // Symbol.for keys: the package's guards recognise what the bundle built.
    expect([bundled[Kind], bundled.properties.name[OptionalKind], bundled.properties.mode[Kind]]).toEqual(['Object', 'Optional', 'Union']);
  });
});
