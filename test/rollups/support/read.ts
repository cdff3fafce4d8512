// What a RollUp test reads back: the registry row, the pending invalidations, the newest bucket,
// row counts, and the difference between a RollUp's table and its query run from scratch.
import pg from 'pg';

export interface RegistryRow {
  id: number;
  name: string;
  source_chronotable_id: number | null;
  rollup_table: string;
  bucket_column: string;
  watermark: Date | null;
  depends_on: number[];
  last_refreshed_at: Date | null;
  refresh_query: string | null;
  invalidation_enabled: boolean;
}

export async function registry(client: pg.Client, name: string): Promise<RegistryRow> {
  const { rows } = await client.query<RegistryRow>('SELECT * FROM lakets._rollup_registry WHERE name = $1', [
    name,
  ]);
  if (!rows[0]) throw new Error(`no RollUp ${name}`);
  return rows[0];
}

/** Max bucket materialized in a RollUp table. */
export async function maxBucket(client: pg.Client, table: string, column = 'bucket'): Promise<Date | null> {
  const { rows } = await client.query<{ m: Date | null }>(
    `SELECT max(${pg.escapeIdentifier(column)}) AS m FROM ${table}`,
  );
  return rows[0]!.m;
}

/** The invalidation log of a RollUp, as ISO bucket starts, ascending. */
export async function pendingBuckets(client: pg.Client, name: string): Promise<string[]> {
  const { rows } = await client.query<{ b: Date }>(
    `SELECT l.bucket_start AS b FROM lakets._rollup_invalidation_log l
       JOIN lakets._rollup_registry r ON r.id = l.rollup_id
      WHERE r.name = $1 ORDER BY 1`,
    [name],
  );
  return rows.map((r) => r.b.toISOString());
}

export interface DiffRow {
  side: 'missing' | 'extra';
  bucket: Date;
  [column: string]: unknown;
}

/**
 * Rows that differ between a RollUp's table and its query run from scratch now: `missing` rows are in
 * the query's result but not the table, `extra` the other way round. `where` restricts both sides
 * (a SQL condition on their columns, e.g. on `bucket`).
 */
export async function diff(
  client: pg.Client,
  table: string,
  query: string,
  where = 'true',
  params: unknown[] = [],
): Promise<DiffRow[]> {
  const { rows } = await client.query<DiffRow>(
    `WITH expected AS (SELECT * FROM (${query}) q WHERE ${where}),
          actual AS (SELECT * FROM ${table} t WHERE ${where})
     SELECT 'missing' AS side, * FROM (SELECT * FROM expected EXCEPT ALL SELECT * FROM actual) a
     UNION ALL
     SELECT 'extra' AS side, * FROM (SELECT * FROM actual EXCEPT ALL SELECT * FROM expected) b
     ORDER BY bucket, side`,
    params,
  );
  return rows;
}

/** Number of rows in a table (or any FROM item). */
export async function count(client: pg.Client, from: string): Promise<number> {
  const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${from}`);
  return rows[0]!.n;
}
