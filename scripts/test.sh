#!/usr/bin/env bash
# The whole test suite on a fresh machine: real services up, TypeScript and the native addon
# built, lint and typecheck, then unit + integration tests. `npm test` runs this (npm puts the
# pinned Node 24 first on PATH); CI runs the same command through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s ==\n' "$*"; }

# Rust builds share one target dir outside the clone, so a fresh clone reuses earlier builds; a
# machine without it simply builds from scratch.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mega/cargo-target}"


node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 22 ]; then
  echo "scripts/test.sh: Node $(node -v) is too old; run it through npm (npm test), which uses the pinned Node 24" >&2
  exit 1
fi

step "services (PostgreSQL, Redis, NATS+JetStream, FerretDB, MariaDB, Prometheus, Jaeger)"
bash scripts/services.sh up
while IFS='=' read -r key value; do
  [ -n "$key" ] && export "$key=$value"
done < <(bash scripts/services.sh env)

step "browser for UI tests (Debian chromium, never downloaded)"
# playwright-core drives the distribution's Chromium; install it only when it is missing.
if [ ! -x /usr/bin/chromium ]; then
  command -v apt-get >/dev/null || { echo "/usr/bin/chromium is missing and there is no apt-get: install Chromium by hand" >&2; exit 1; }
  apt_sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo -n true 2>/dev/null || { echo "/usr/bin/chromium is missing: run as root or: sudo apt-get install -y chromium" >&2; exit 1; }
    apt_sudo=(sudo -n)
  fi
  apt_cmd=("${apt_sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300)
  "${apt_cmd[@]}" install chromium || { "${apt_cmd[@]}" update && "${apt_cmd[@]}" install chromium; }
fi

step "build (tsc -b)"
npm run -s build

if [ -f scripts/build-native.sh ]; then
  step "native codec addon"
  if command -v cargo >/dev/null 2>&1; then
    bash scripts/build-native.sh
    step "Rust tests + clippy"
    cargo test -q -p mega-codec -p mega-napi
    cargo clippy -q -p mega-codec -p mega-napi --all-targets -- -D warnings
  elif [ "${CI:-}" = "true" ]; then
    echo "cargo is required in CI to build and test the native codec" >&2
    exit 1
  else
    echo "cargo not found: testing the TypeScript codec backend only"
  fi
fi

if [ -d sidecar ]; then
  step "hub sidecar (cargo test, release build for the integration tests)"
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is required to build and test the hub sidecar (sidecar/)" >&2
    exit 1
  fi
  cargo test -q -p mega-hub
  cargo build --release -p mega-hub
fi

step "lint + typecheck"
npm run -s lint
npx tsc -p tsconfig.tests.json

step "tests (unit + integration)"
npx vitest run "$@"
