// The one ChronoTable builder of the tests, the demo and the bench: a table `ts timestamptz` plus
// the caller's columns, made a ChronoTable through the public API (create_chronotable), with
// partitions over a window and rows loaded before or after the conversion, as the caller needs.
import pg from 'pg';
import { syncCaughtUp } from './fake-lakehouse-sync.ts';

type Queryable = Pick<pg.ClientBase, 'query'>;

/** Rows to load: a SELECT (or VALUES) yielding `ts` and then the other columns, in order. */
export interface Rows {
  sql: string;
  values?: unknown[];
}

export interface ChronotableSpec {
  name: string;
  /** Default public. */
  schema?: string;
  /** Column definitions after `ts timestamptz NOT NULL`, e.g. `device int NOT NULL, value float8`. */
  columns: string;
  /** Chunk interval (default 1 day). */
  chunk?: string;
  /** Rows already in the table when it becomes a ChronoTable (create_chronotable keeps them). */
  existingRows?: Rows;
  /**
   * Partitions (_ensure_partitions) from `from` to `to` (LakeTS's default window end when absent), or
   * from `days` days before the server's now().
   */
  partitions?: { from: Date; to?: Date } | { days: number };
  /** Rows written once the partitions exist. */
  rows?: Rows;
}

/** `schema.name` quoted for SQL. */
export function qname(schema: string, name: string): string {
  return `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(name)}`;
}

/** Builds the ChronoTable `spec` describes; returns its registry id. */
export async function createChronotable(db: Queryable, spec: ChronotableSpec): Promise<number> {
  const schema = spec.schema ?? 'public';
  const rel = qname(schema, spec.name);
  await db.query(`CREATE TABLE ${rel} (ts timestamptz NOT NULL, ${spec.columns})`);
  if (spec.existingRows)
    await db.query(`INSERT INTO ${rel} ${spec.existingRows.sql}`, spec.existingRows.values);
  const { rows } = await db.query<{ id: number }>(
    'SELECT lakets.create_chronotable($1, $2, $3::interval, $4) AS id',
    [spec.name, 'ts', spec.chunk ?? '1 day', schema],
  );
  const id = rows[0]?.id as number;
  const p = spec.partitions;
  if (p && 'days' in p) {
    await db.query(
      'SELECT lakets._ensure_partitions($1, p_range_start => now() - make_interval(days => $2))',
      [id, p.days],
    );
  } else if (p) {
    await db.query('SELECT lakets._ensure_partitions($1, p_range_start => $2, p_range_end => $3)', [
      id,
      p.from,
      p.to ?? null,
    ]);
  }
  if (spec.rows) await db.query(`INSERT INTO ${rel} ${spec.rows.sql}`, spec.rows.values);
  return id;
}

/**
 * Gives each job work on `table` (a ChronoTable of device readings some 10 days deep, in public):
 * chunks tiered after 3 days and dropped after 8, proven durable (Lakehouse Sync caught up), and an
 * hourly RollUp `<table>_hourly` due now. The estate bench and the estate test start from this.
 */
export async function giveEveryJobWork(db: Queryable, table: string): Promise<void> {
  await db.query(`SELECT lakets.add_tiered_retention_policy($1, interval '3 days', interval '8 days')`, [
    table,
  ]);
  await db.query('SELECT lakets.enable_sync($1)', [table]);
  await syncCaughtUp(db, table);
  await db.query(
    `SELECT lakets.create_rollup($1 || '_hourly',
       format('SELECT lakets.time_bucket(''1 hour'', ts) AS bucket, device, avg(value) AS v FROM %I GROUP BY 1, 2', $1::text),
       interval '1 hour', $1)`,
    [table],
  );
  await db.query(`UPDATE lakets._rollup_registry SET refresh_lag = interval '0'`);
}
