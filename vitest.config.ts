import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Native tests share one process-wide backend; run files one at a time so timings and
    // thread counts do not interfere.
    fileParallelism: false,
  },
});
