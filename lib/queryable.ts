// The part of pg.Client that this project's SQL needs, on its own so that any module can take a
// connection without importing the jobs' shapes (a pool client or a plain client both fit).

/** Runs a statement: what `npm run grants` (an admin connection) and the schema lookups need. */
export interface SqlClient {
  query<R extends Record<string, unknown> = Record<string, unknown>>(
    text: string,
    values?: unknown[],
  ): Promise<{ rows: R[] }>;
}

/** A job's connection: statements with their row counts, and the server's NOTICE/WARNING messages. */
export interface Queryable extends SqlClient {
  query<R extends Record<string, unknown> = Record<string, unknown>>(
    text: string,
    values?: unknown[],
  ): Promise<{ rows: R[]; rowCount: number | null }>;
  on(event: 'notice', listener: (notice: { severity?: string; message?: string }) => void): unknown;
  off(event: 'notice', listener: (notice: { severity?: string; message?: string }) => void): unknown;
}
