import { defineConfig } from 'vitest/config';

// Two projects: unit (fast, may stub) and integration (real processes and real services, no mocks).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['kernel/test/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'plugins/*/test/**/*.test.ts', 'apps/*/test/**/*.test.ts'],
          exclude: ['**/*.int.test.ts', '**/node_modules/**'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: [
            'kernel/test/**/*.int.test.ts',
            'packages/*/test/**/*.int.test.ts',
            'plugins/*/test/**/*.int.test.ts',
            'scripts/test/**/*.int.test.ts',
            'apps/*/test/**/*.int.test.ts',
          ],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          // Integration suites start servers and processes; on 2 cores they run one file at a time.
          fileParallelism: false,
        },
      },
    ],
  },
});
