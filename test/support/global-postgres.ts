// Vitest global setup: one embedded PostgreSQL 17 for the run, stopped (and its files removed) at the end.
import type { TestProject } from 'vitest/node';
import { type LocalPostgres, type LocalPostgresInfo, startLocalPostgres } from '../../dev/local-postgres.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    postgres: LocalPostgresInfo;
  }
}

let server: LocalPostgres | undefined;

export async function setup(project: TestProject): Promise<void> {
  server = await startLocalPostgres();
  const { host, port, user, password, caPem } = server;
  project.provide('postgres', { host, port, user, password, caPem });
}

export async function teardown(): Promise<void> {
  await server?.stop();
}
