import { defineAppConfig } from '@mega/kernel';

// No hosts: this app answers on any Host header (the default app).
export default defineAppConfig({});
