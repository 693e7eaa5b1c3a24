#!/usr/bin/env node
// Thin shim so the bin path is stable while the CLI lives in dist/. Node's on-disk compile cache
// (Node >= 22.1) skips recompiling the CLI's and plugins' modules on every start.
import module from 'node:module';

module.enableCompileCache?.();
await import('../dist/cli/main.js');
