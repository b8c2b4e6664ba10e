import os from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // The slow files mostly wait on child processes (servers, CLI runs, lock timeouts), so two at a
    // time cut the wall time by about 40 % even on two cores, where vitest's default (cores - 1) runs one.
    maxWorkers: Math.max(2, os.availableParallelism() - 1),
  },
});
