// Databricks Lakehouse Sync played locally, for the tests, the demo and the bench: it owns
// `wal2delta.tables (table_oid, status, committed_lsn)` as the LakeTS contract describes it
// (docs/lakets-contract.md, "What the jobs read"), one row per synced shadow, and moves a shadow's
// status and committed LSN when told to. The LakeTS schema never creates wal2delta; only this fake
// (standing in for Databricks) does.
import type pg from 'pg';

/** The statuses Lakehouse Sync reports for a synced table. */
export type SyncStatus = 'SNAPSHOTTING' | 'STREAMING' | 'SKIPPED';

/** An LSN like `0/16B3748`, or `current`: the WAL insert position now (everything so far is in Delta). */
export type SyncLsn = string;

/** A committed LSN past any real WAL position: Sync that has shipped everything, forever. */
export const LSN_ALWAYS_CAUGHT_UP = 'FFFFFFFF/FFFFFFFF';

/**
 * The schema and table Lakehouse Sync owns (idempotent SQL, usable in psql scripts too). One row per
 * synced table (the key) and a status always set, as Sync keeps it.
 */
export const WAL2DELTA_DDL = `CREATE SCHEMA IF NOT EXISTS wal2delta;
CREATE TABLE IF NOT EXISTS wal2delta.tables (table_oid oid PRIMARY KEY, status text NOT NULL, committed_lsn pg_lsn);`;

type Queryable = Pick<pg.ClientBase, 'query'>;

/** Creates the schema and table Lakehouse Sync owns (idempotent). */
export async function installWal2delta(db: Queryable): Promise<void> {
  await db.query(WAL2DELTA_DDL);
}

/** Removes wal2delta altogether, as on a database where Lakehouse Sync was never set up. */
export async function dropWal2delta(db: Queryable): Promise<void> {
  await db.query('DROP SCHEMA IF EXISTS wal2delta CASCADE');
}

/** The shadow of a synced ChronoTable, as a regclass literal usable in SQL; throws when not synced. */
export async function shadowOf(db: Queryable, table: string, schema = 'public'): Promise<string> {
  const { rows } = await db.query<{ shadow: string | null }>(
    `SELECT format('lakets_cdf.%I', shadow_table_name) AS shadow FROM lakets._chronotable_registry
      WHERE schema_name = $1 AND table_name = $2 AND shadow_table_name IS NOT NULL`,
    [schema, table],
  );
  const shadow = rows[0]?.shadow;
  if (!shadow) throw new Error(`${schema}.${table} is not synced`);
  return shadow;
}

/**
 * Sync's view of the shadow of `table`: its status and committed_lsn (`current` = the WAL insert
 * position now; absent or null = nothing committed yet). Returns the committed_lsn now recorded.
 */
export async function setSync(
  db: Queryable,
  table: string,
  status: SyncStatus,
  lsn?: SyncLsn | null,
  schema = 'public',
): Promise<string | null> {
  await shadowOf(db, table, schema);
  const [committed] = await upsert(db, status, lsn ?? null, { schema, table });
  return committed ?? null;
}

/** The same view for every synced ChronoTable at once (the bench's thousand tables); returns how many. */
export async function setSyncOfAll(db: Queryable, status: SyncStatus, lsn?: SyncLsn | null): Promise<number> {
  return (await upsert(db, status, lsn ?? null)).length;
}

async function upsert(
  db: Queryable,
  status: SyncStatus,
  lsn: SyncLsn | null,
  only?: { schema: string; table: string },
): Promise<Array<string | null>> {
  const { rows } = await db.query<{ committed_lsn: string | null }>(
    `INSERT INTO wal2delta.tables (table_oid, status, committed_lsn)
     SELECT format('lakets_cdf.%I', shadow_table_name)::regclass, $1,
            CASE WHEN $2::text = 'current' THEN pg_current_wal_insert_lsn() ELSE $2::pg_lsn END
       FROM lakets._chronotable_registry
      WHERE shadow_table_name IS NOT NULL AND ($3::text IS NULL OR (schema_name = $3 AND table_name = $4))
     ON CONFLICT (table_oid) DO UPDATE SET status = excluded.status, committed_lsn = excluded.committed_lsn
     RETURNING committed_lsn::text`,
    [status, lsn, only?.schema ?? null, only?.table ?? null],
  );
  return rows.map((r) => r.committed_lsn);
}

/** Lakehouse Sync streaming the shadow of `table`, caught up with everything written so far. */
export function syncCaughtUp(db: Queryable, table: string, schema = 'public'): Promise<string | null> {
  return setSync(db, table, 'STREAMING', 'current', schema);
}

/** Forgets the rows of shadows that no longer exist (after their ChronoTables were dropped). */
export async function forgetDroppedShadows(db: Queryable): Promise<void> {
  await db.query('DELETE FROM wal2delta.tables WHERE table_oid NOT IN (SELECT oid FROM pg_class)');
}
