/** Where a CLI command reads its directory and writes its output (injectable for tests). */
export type { CliIO } from '../plugin.js';
