#!/usr/bin/env node
// Thin shim so the bin path is stable while the CLI lives in dist/.
import '../dist/cli/main.js';
