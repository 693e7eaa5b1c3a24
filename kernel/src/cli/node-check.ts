/** The Node version check every command makes: an old Node fails later, in ways that do not name it. */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** A warning line when `version` does not satisfy the engines range of @mega/kernel; undefined otherwise. */
export function nodeWarning(version: string = process.versions.node): string | undefined {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { engines?: { node?: string } };
  const range = pkg.engines?.node;
  if (!range || satisfies(version, range)) return undefined;
  return `mega: warning: Node v${version} does not satisfy ${range}, which @mega/kernel needs: built-in modules may be missing (node:sqlite); install a newer Node, and see mega doctor`;
}

/** A plain `>=major[.minor[.patch]]` range is compared here: loading semver costs ~10 ms of every command's start. */
function satisfies(version: string, range: string): boolean {
  const min = /^>=\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(range.trim());
  const have = /^v?(\d+)\.(\d+)\.(\d+)$/.exec(version);
  if (!min || !have) {
    return (createRequire(import.meta.url)('semver') as { satisfies(v: string, r: string): boolean }).satisfies(version, range);
  }
  for (let i = 1; i <= 3; i++) {
    const diff = Number(have[i]) - Number(min[i] ?? 0);
    if (diff !== 0) return diff > 0;
  }
  return true;
}
