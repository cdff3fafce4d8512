// Building blocks for job tests: ChronoTables with data, late writes, chunk statuses and a fingerprint
// of what the jobs may change. Lakehouse Sync is played by dev/fake-lakehouse-sync.ts.
import type pg from 'pg';
import { createChronotable } from '../../dev/chronotable.ts';

export interface MetricsTable {
  /** Unquoted table name in schema public. */
  name: string;
  id: number;
}

/**
 * A ChronoTable `name(ts, device, value)` with daily chunks and one row per device per hour for
 * `days` days up to now, plus the default partition window.
 */
export async function metricsTable(
  db: pg.Client,
  name: string,
  days = 10,
  devices = 3,
): Promise<MetricsTable> {
  const id = await createChronotable(db, {
    name,
    columns: 'device text NOT NULL, value float8',
    partitions: { days },
    rows: {
      sql: `SELECT t, 'd' || d, d * 10 + extract(hour FROM t)
              FROM generate_series(date_trunc('hour', now()) - make_interval(days => $1), now(), interval '1 hour') t,
                   generate_series(1, $2) d`,
      values: [days, devices],
    },
  });
  return { name, id };
}

export function quote(identifier: string): string {
  return `"${identifier.replaceAll('"', '""')}"`;
}

/** A late write into the chunk that holds `daysAgo` (after Sync's committed LSN, so unproven). */
export async function lateWrite(db: pg.Client, name: string, daysAgo: number): Promise<string> {
  await db.query(
    `UPDATE public.${quote(name)} SET value = value + 1
      WHERE ts >= date_trunc('day', now()) - make_interval(days => $1)
        AND ts < date_trunc('day', now()) - make_interval(days => $1) + interval '1 hour'`,
    [daysAgo],
  );
  const { rows } = await db.query<{ chunk_name: string }>(
    `SELECT m.chunk_name FROM lakets._chunk_metadata m JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
      WHERE r.table_name = $1 AND m.range_start = date_trunc('day', now()) - make_interval(days => $2)`,
    [name, daysAgo],
  );
  return rows[0]?.chunk_name as string;
}

export async function chunkStatuses(db: pg.Client, name: string): Promise<Record<string, string>> {
  const { rows } = await db.query<{ chunk_name: string; status: string }>(
    `SELECT m.chunk_name, m.status FROM lakets._chunk_metadata m
       JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
      WHERE r.table_name = $1 ORDER BY m.range_start`,
    [name],
  );
  return Object.fromEntries(rows.map((r) => [r.chunk_name, r.status]));
}

/**
 * A fingerprint of everything the jobs may change: registries, partitions, RollUp bookkeeping.
 * `last_run_at` is left out with `ignoreRunStamps`: every run stamps it, by design.
 */
export async function stateFingerprint(db: pg.Client, { ignoreRunStamps = false } = {}): Promise<string> {
  const { rows } = await db.query<{ f: string }>(
    `
    SELECT md5(concat_ws('|',
      (SELECT string_agg(format('%s:%s:%s:%s:%s', chunk_name, status, tiered_at, last_write_lsn, range_end), ',' ORDER BY chunk_name)
         FROM lakets._chunk_metadata),
      (SELECT string_agg(format('%s:%s:%s', id, config, CASE WHEN $1 THEN NULL ELSE last_run_at END), ',' ORDER BY id)
         FROM lakets._policy_registry),
      (SELECT string_agg(format('%s:%s:%s', name, watermark, last_refreshed_at), ',' ORDER BY name) FROM lakets._rollup_registry),
      (SELECT string_agg(format('%s:%s', rollup_id, bucket_start), ',' ORDER BY rollup_id, bucket_start) FROM lakets._rollup_invalidation_log),
      (SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p'))
    )) AS f`,
    [ignoreRunStamps],
  );
  return rows[0]?.f as string;
}
