/**
 * The codec addon's socket fan-out (crates/mega-napi/src/net.rs): one call writes a broadcast frame
 * to many sockets with `send(2)`, bypassing Node's stream machinery for sockets that have nothing
 * queued. Loaded from the same file the kernel's codec loaded (so only when the codec runs native:
 * `MEGA_CODEC=ts` turns it off too); `MEGA_WS_NATIVE_SEND=0` turns it off alone. Linux only.
 */
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import type { Codec } from '@mega/kernel';

export interface NativeSend {
  /**
   * Writes `frame` to the first `count` descriptors of `fds` without blocking; returns how many did
   * not take all of it, each as (index, bytes written) in `out` (2 × count entries).
   */
  sendToMany(frame: Uint8Array, fds: Uint32Array, count: number, out: Uint32Array): number;
}

export function loadNativeSend(codec: Codec): NativeSend | null {
  if (process.platform !== 'linux' || codec.backend !== 'native' || process.env.MEGA_WS_NATIVE_SEND === '0') return null;
  try {
    // @mega/codec is the kernel's dependency: resolve it from there (works hoisted or nested).
    const fromKernel = createRequire(createRequire(import.meta.url).resolve('@mega/kernel'));
    const pkg = fromKernel.resolve('@mega/codec/package.json');
    const override = process.env.MEGA_CODEC_ADDON;
    const candidates = override
      ? [resolve(override)]
      : ['-gnu', '-musl'].map((abi) => join(dirname(pkg), 'native', `mega-codec.linux-${process.arch}${abi}.node`));
    const version = (fromKernel(pkg) as { version: string }).version;
    for (const path of candidates) {
      try {
        // The module cache hands back the instance the codec loaded.
        const binding = fromKernel(path) as Partial<NativeSend> & { version?: () => string };
        if (typeof binding.sendToMany === 'function' && binding.version?.() === version) return binding as NativeSend;
      } catch {
        // Not this file (absent, or another libc): try the next.
      }
    }
  } catch {
    // @mega/codec not resolvable from here: Node's streams do the writing.
  }
  return null;
}
