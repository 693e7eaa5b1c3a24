// loadCodec: mode selection, the single debug line on fallback, typed errors, version check.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadCodec } from '../src/index.js';
import { isMegaError } from '../src/types.js';

const dir = mkdtempSync(join(tmpdir(), 'mega-codec-'));
const fakeAddon = join(dir, 'fake.cjs');
writeFileSync(fakeAddon, 'module.exports = { version: () => "0.0.0-other" };');
const missing = join(dir, 'missing.node');
const stale = join(dir, 'stale.cjs');
// This package's version, but without the ASP text calls: an addon built from an older tree.
writeFileSync(
  stale,
  `const v = require(${JSON.stringify(new URL('../package.json', import.meta.url).pathname)}).version;
module.exports = { version: () => v, takePending() {}, deriveKey() {}, seal() {}, open() {}, Sealer() {}, Opener() {} };`,
);

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    return isMegaError(err) ? err.code : 'not-a-mega-error';
  }
  return undefined;
}

describe('loadCodec', () => {
  afterEach(() => vi.unstubAllEnvs());

  it('mode ts is honoured and says why', () => {
    const c = loadCodec({ mode: 'ts' });
    expect(c.backend).toBe('ts');
    expect(c.reason).toMatch(/forced/);
    vi.stubEnv('MEGA_CODEC', 'ts');
    expect(loadCodec().backend).toBe('ts');
  });

  it('auto falls back to TS with exactly one debug line carrying the cause', () => {
    const debug = vi.fn();
    const c = loadCodec({ mode: 'auto', addonPath: missing, log: { debug } });
    expect(c.backend).toBe('ts');
    expect(c.reason).toMatch(/missing\.node/);
    expect(debug).toHaveBeenCalledTimes(1);
    expect(debug.mock.calls[0]?.[0]).toHaveProperty('err');
  });

  it('native without the addon is a typed error', () => {
    expect(codeOf(() => loadCodec({ mode: 'native', addonPath: missing }))).toBe('codec.native_unavailable');
  });

  it('an addon from another version is refused', () => {
    const debug = vi.fn();
    const c = loadCodec({ addonPath: fakeAddon, log: { debug } });
    expect(c.backend).toBe('ts');
    expect(c.reason).toMatch(/0\.0\.0-other/);
    expect(codeOf(() => loadCodec({ mode: 'native', addonPath: fakeAddon }))).toBe('codec.native_unavailable');
  });

  it('an addon of the right version that lacks a call the backend uses is refused, naming it', () => {
    const debug = vi.fn();
    const c = loadCodec({ addonPath: stale, log: { debug } });
    expect(c.backend).toBe('ts');
    expect(c.reason).toMatch(/lacks .*sealText, openText.*older tree/);
    expect(codeOf(() => loadCodec({ mode: 'native', addonPath: stale }))).toBe('codec.native_unavailable');
    // The real addon has them all.
    expect(loadCodec({ mode: 'native' }).backend).toBe('native');
  });

  it('MEGA_CODEC_ADDON overrides the location and bad modes are refused', () => {
    vi.stubEnv('MEGA_CODEC_ADDON', missing);
    expect(loadCodec().reason).toMatch(/missing\.node/);
    vi.stubEnv('MEGA_CODEC', 'fast');
    expect(codeOf(() => loadCodec())).toBe('codec.invalid_argument');
  });
});
