#!/usr/bin/env bash
# README command (1): build, then run apps/simple with `mega start` on embedded defaults (no services).
set -euo pipefail
cd "$(dirname "$0")/.."
npm run -s build
cd apps/simple
exec npx --no-install mega start "$@"
