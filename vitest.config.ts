import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One PostgreSQL 17 cluster for the whole run; each test file makes its own database in it.
    // One CA for the fakes, trusted by the forked workers through NODE_EXTRA_CA_CERTS.
    globalSetup: ['test/support/global-postgres.ts', 'test/support/global-tls.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
