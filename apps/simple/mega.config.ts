// Global configuration of the `simple` sample: a single-app project (app.config.ts sits beside this
// file), so `mega start` here runs one app on embedded defaults.
import { defineConfig } from '@mega/kernel';

export default defineConfig({
  plugins: ['@mega/http'],
  server: { port: 3000 },
});
