// A fresh database per test file on the run's shared cluster, and clients on it that are closed for you.
import pg from 'pg';
import { afterAll, inject } from 'vitest';
import { createDatabase, type LocalPostgresInfo } from '../../dev/local-postgres.ts';
import { installLakets } from '../../lib/schema/installer.ts';

export interface TestDatabase {
  name: string;
  info: LocalPostgresInfo;
  /** Superuser URL of this database. */
  url: string;
  /** URL of this database for another login role. */
  urlFor(user: string, password: string): string;
  /** A connected superuser client (or as `user`), closed after the file's tests. */
  connect(options?: { user?: string; password?: string; timeZone?: string }): Promise<pg.Client>;
}

export async function freshDatabase(options: { lakets?: boolean } = {}): Promise<TestDatabase> {
  const info = inject('postgres');
  const name = await createDatabase(info, 't');
  const clients: pg.Client[] = [];
  afterAll(async () => {
    await Promise.allSettled(clients.map((c) => c.end()));
  });
  const urlFor = (user: string, password: string) =>
    `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${info.host}:${info.port}/${name}`;
  const db: TestDatabase = {
    name,
    info,
    url: urlFor(info.user, info.password),
    urlFor,
    async connect({ user = info.user, password = info.password, timeZone = 'UTC' } = {}) {
      const client = new pg.Client({
        host: info.host,
        port: info.port,
        user,
        password,
        database: name,
        options: `-c TimeZone=${timeZone}`,
      });
      client.on('error', () => {}); // a test may terminate the backend on purpose
      await client.connect();
      clients.push(client);
      return client;
    },
  };
  if (options.lakets) {
    const admin = await db.connect();
    await installLakets(admin);
  }
  return db;
}
