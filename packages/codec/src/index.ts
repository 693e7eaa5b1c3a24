/**
 * Codec facade: `loadCodec()` returns the native addon (packages/codec/native/mega-codec.<platform>.node)
 * when present and built from this package's version, else the TS backend, saying why once at debug
 * level. `MEGA_CODEC=auto|native|ts` picks the mode; `MEGA_CODEC_ADDON=<path>` overrides the file.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Binding, createNativeCodec } from './native.js';
import { createTsCodec } from './ts.js';
import type { Codec } from './types.js';
import { CodecError } from './types.js';

export { createNativeCodec } from './native.js';
export { createTsCodec } from './ts.js';
export type * from './types.js';
export { CodecError, DEFAULTS as CODEC_DEFAULTS } from './types.js';

export type CodecMode = 'auto' | 'native' | 'ts';
export interface LoadCodecOptions {
  mode?: CodecMode;
  /** pino-compatible; gets the one fallback line. */
  log?: { debug(obj: object, msg: string): void };
  /** Addon file; default MEGA_CODEC_ADDON, then packages/codec/native/. */
  addonPath?: string;
  /** Size-class routing (default on; MEGA_CODEC_ROUTING=0 turns it off). */
  routing?: boolean;
}

const require = createRequire(import.meta.url);

/** Every function the native backend calls on the addon. */
const EXPORTS = [
  'takePending',
  'deriveKey',
  'seal',
  'open',
  'Sealer',
  'Opener',
  'sealText',
  'openText',
  'deflate',
  'inflate',
  'Deflater',
  'Inflater',
  'encodeFrame',
  'validateFrame',
  'encodeServerFrame',
  'decodeServerFrame',
] as const satisfies ReadonlyArray<keyof Binding>;

function loadBinding(explicit?: string): Binding {
  const override = explicit ?? process.env.MEGA_CODEC_ADDON;
  // `../native/` resolves the same from src/ and dist/.
  const dir = fileURLToPath(new URL('../native/', import.meta.url));
  const abis = process.platform === 'linux' ? ['-gnu', '-musl'] : process.platform === 'win32' ? ['-msvc'] : [''];
  const candidates = override
    ? [resolve(override)]
    : abis.map((abi) => join(dir, `mega-codec.${process.platform}-${process.arch}${abi}.node`));
  const found = candidates.filter((p) => existsSync(p));
  if (found.length === 0) throw new Error(`no addon at ${candidates.join(' or ')} (build it with npm run build:native)`);
  const want = (require('../package.json') as { version: string }).version;
  let lastError: unknown;
  for (const path of found) {
    try {
      const binding = require(path) as Binding;
      const got = binding.version();
      // Same version but built from an older tree (the version only moves on releases): refused
      // here rather than failing on the first call it lacks.
      const lacking = EXPORTS.filter((k) => typeof binding[k] !== 'function');
      if (got === want && lacking.length === 0) return binding;
      lastError =
        got === want
          ? new Error(`addon ${path} lacks ${lacking.join(', ')}: built from an older tree (rebuild: npm run build:native)`)
          : new Error(`addon ${path} is version ${got}, the kernel is ${want} (rebuild: npm run build:native)`);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

/**
 * Size-class routing measured with `mega bench codec` (2-core AMD EPYC, Node 24, see FORMAT.md):
 * envelope/server-frame building and server-frame decoding are memcpy/parse-bound, node's Buffer
 * code matches the addon at every size and skips the crossing; stateless inflate of >= 64 KiB of
 * compressed input is faster in node:zlib. Stateful objects are never routed: their state lives in
 * one backend.
 */
export const ROUTING = Object.freeze({ tsOnly: ['encodeFrame', 'encodeServerFrame', 'decodeServerFrame'], inflateTsFrom: 64 * 1024 });

export function loadCodec(opts: LoadCodecOptions = {}): Codec {
  const mode = opts.mode ?? ((process.env.MEGA_CODEC || 'auto') as CodecMode);
  if (mode !== 'auto' && mode !== 'native' && mode !== 'ts') {
    throw new CodecError('codec.invalid_argument', `MEGA_CODEC must be auto, native or ts (got "${mode}")`);
  }
  if (mode === 'ts') return createTsCodec('forced (MEGA_CODEC=ts or mode "ts")');
  let native: Codec;
  try {
    native = createNativeCodec(loadBinding(opts.addonPath));
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    if (mode === 'native')
      throw new CodecError('codec.native_unavailable', `native codec requested but unavailable: ${why}`, { cause: err });
    const reason = `native addon unavailable: ${why}`;
    opts.log?.debug({ err }, `codec: using the TS backend (${reason})`);
    return createTsCodec(reason);
  }
  if (!(opts.routing ?? process.env.MEGA_CODEC_ROUTING !== '0')) return native;
  const ts = createTsCodec();
  return {
    ...native,
    encodeFrame: ts.encodeFrame,
    encodeServerFrame: ts.encodeServerFrame,
    decodeServerFrame: ts.decodeServerFrame,
    inflate: (data, o) => (data.length >= ROUTING.inflateTsFrom ? ts : native).inflate(data, o),
  };
}
