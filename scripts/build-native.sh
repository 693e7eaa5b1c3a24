#!/usr/bin/env bash
# Builds the mega-codec addon in release mode and puts it where the kernel looks for it:
# packages/codec/native/mega-codec.<platform-arch-abi>.node (e.g. linux-x64-gnu). The kernel falls back to
# its TS codec when the file is missing, so this step is optional for development.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
mkdir -p packages/codec/native
# A progress line while cargo works (it shows no progress bar when its output is not a terminal):
# the elapsed time every 15 s, and the total at the end.
started=$SECONDS
echo "build:native: building the native codec addon (cargo, release; a first build compiles every crate: minutes) ..."
( while sleep 15; do echo "  ... build:native: $((SECONDS - started)) s"; done ) &
ticker=$!
trap 'kill "$ticker" 2>/dev/null || true' EXIT
# --no-js: the kernel has its own loader (version check + TS fallback), not the generated one;
# the generated .d.ts goes to target/ for reference (the facade types the binding by hand).
npx napi build --platform --release --no-js \
  --cwd crates/mega-napi \
  --output-dir "$root/packages/codec/native" \
  --dts ../../target/mega-codec.d.ts "$@"
echo "build:native: done in $((SECONDS - started)) s"
ls -l packages/codec/native/*.node
