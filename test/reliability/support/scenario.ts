// A small but complete LakeTS estate, built the same way in any database (so that a database whose
// jobs were interrupted can be compared with a control database whose jobs were not): three synced
// ChronoTables with the three policy kinds, Lakehouse Sync caught up except for one late write,
// missing future partitions, and a RollUp DAG with invalidation and fresh rows to refresh.
import type pg from 'pg';
import { forgetDroppedShadows, syncCaughtUp } from '../../../dev/fake-lakehouse-sync.ts';
import { lateWrite, metricsTable, quote } from '../../support/lakets-fixtures.ts';

export interface Estate {
  tag: string;
  /** tiered_retention (tier 2 days, drop 5 days), synced, with a late write in its day-6 chunk. */
  a: string;
  /** retention (5 days), synced. */
  b: string;
  /** tiering (2 days), synced. */
  c: string;
  /** RollUps: hourly over a, daily over hourly, hourly count over b (invalidation on for a and b). */
  hourly: string;
  daily: string;
  other: string;
  lateChunk: string;
}

export async function buildEstate(db: pg.Client, tag: string): Promise<Estate> {
  const e = {
    tag,
    a: `${tag}_a`,
    b: `${tag}_b`,
    c: `${tag}_c`,
    hourly: `${tag}_h`,
    daily: `${tag}_d`,
    other: `${tag}_o`,
    lateChunk: '',
  };
  for (const t of [e.a, e.b, e.c]) await metricsTable(db, t, 8, 2);
  await db.query(`SELECT lakets.add_tiered_retention_policy($1, interval '2 days', interval '5 days')`, [
    e.a,
  ]);
  await db.query(`SELECT lakets.add_retention_policy($1, interval '5 days')`, [e.b]);
  await db.query(`SELECT lakets.add_tiering_policy($1, interval '2 days')`, [e.c]);
  for (const t of [e.a, e.b, e.c]) await db.query('SELECT lakets.enable_sync($1)', [t]);

  const rollup = (name: string, query: string, interval: string, source: string | null, deps: string[]) =>
    db.query(`SELECT lakets.create_rollup($1, $2, $3::interval, $4, 'public', $5)`, [
      name,
      query,
      interval,
      source,
      deps,
    ]);
  await rollup(
    e.hourly,
    `SELECT lakets.time_bucket('1 hour', ts) AS bucket, device, sum(value) AS v, count(*) AS n FROM public.${quote(e.a)} GROUP BY 1, 2`,
    '1 hour',
    e.a,
    [],
  );
  await rollup(
    e.daily,
    `SELECT lakets.time_bucket('1 day', bucket) AS bucket, device, sum(v) AS v, sum(n) AS n FROM public.${quote(`_rollup_${e.hourly}`)} GROUP BY 1, 2`,
    '1 day',
    null,
    [e.hourly],
  );
  await rollup(
    e.other,
    `SELECT lakets.time_bucket('1 hour', ts) AS bucket, count(*) AS n FROM public.${quote(e.b)} GROUP BY 1`,
    '1 hour',
    e.b,
    [],
  );
  for (const r of [e.hourly, e.other]) await db.query('SELECT lakets.enable_rollup_invalidation($1)', [r]);
  await db.query("UPDATE lakets._rollup_registry SET refresh_lag = interval '0' WHERE name = ANY ($1)", [
    [e.hourly, e.daily, e.other],
  ]);

  for (const t of [e.a, e.b, e.c]) await syncCaughtUp(db, t);
  // After Sync's committed_lsn: unproven, so its chunk is deferred by Tiering and Retention.
  e.lateChunk = await lateWrite(db, e.a, 6);
  // Fresh rows for the RollUps (and a late one into an already materialized bucket).
  for (const t of [e.a, e.b])
    await db.query(
      `INSERT INTO public.${quote(t)} VALUES (date_trunc('hour', now()), 'd9', 7), (date_trunc('day', now()) - interval '3 days' + interval '5 hours', 'd9', 11)`,
    );
  // The two newest partitions of each table are missing, as if time had passed.
  for (const t of [e.a, e.b, e.c]) {
    const { rows } = await db.query<{ chunk_name: string }>(
      `SELECT m.chunk_name FROM lakets._chunk_metadata m JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
        WHERE r.table_name = $1 ORDER BY m.range_start DESC LIMIT 2`,
      [t],
    );
    for (const r of rows) {
      await db.query(`DROP TABLE public.${quote(r.chunk_name.slice('public.'.length))}`);
      await db.query('DELETE FROM lakets._chunk_metadata WHERE chunk_name = $1', [r.chunk_name]);
    }
  }
  return e;
}

export async function dropEstate(db: pg.Client, e: Estate): Promise<void> {
  for (const r of [e.daily, e.hourly, e.other])
    await db.query('SELECT lakets.drop_rollup(name) FROM lakets._rollup_registry WHERE name = $1', [r]);
  for (const t of [e.a, e.b, e.c])
    await db.query(
      'SELECT lakets.drop_chronotable(table_name) FROM lakets._chronotable_registry WHERE table_name = $1',
      [t],
    );
  await forgetDroppedShadows(db);
}

/** The chunks a job can act on in an estate, by role (for locking them in fault tests). */
export async function chunkWhere(db: pg.Client, table: string, condition: string): Promise<string> {
  const { rows } = await db.query<{ chunk_name: string }>(
    `SELECT m.chunk_name FROM lakets._chunk_metadata m JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
      WHERE r.table_name = $1 AND ${condition} ORDER BY m.range_start LIMIT 1`,
    [table],
  );
  const name = rows[0]?.chunk_name;
  if (!name) throw new Error(`no chunk of ${table} where ${condition}`);
  return name;
}

/** From-scratch aggregates of the estate's RollUps, to compare with what refreshes materialized. */
export async function rollupDrift(db: pg.Client, e: Estate): Promise<number> {
  // Buckets over dropped source chunks keep their last value by contract: compare live ones only.
  const { rows } = await db.query<{ n: number; d1: string | null; d2: string | null; d3: string | null }>(
    `WITH live AS (
       SELECT m.range_start, m.range_end FROM lakets._chunk_metadata m JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
        WHERE r.table_name = $1 AND m.status <> 'dropped'),
     fresh AS (SELECT lakets.time_bucket('1 hour', ts) AS bucket, device, sum(value) AS v, count(*) AS n
                 FROM public.${quote(e.a)} GROUP BY 1, 2),
     kept AS (SELECT bucket, device, v, n FROM public.${quote(`_rollup_${e.hourly}`)} t
               WHERE EXISTS (SELECT 1 FROM live WHERE t.bucket >= live.range_start AND t.bucket < live.range_end)),
     d1 AS ((SELECT * FROM fresh EXCEPT ALL SELECT * FROM kept) UNION ALL (SELECT * FROM kept EXCEPT ALL SELECT * FROM fresh)),
     fresh_o AS (SELECT lakets.time_bucket('1 hour', ts) AS bucket, count(*) AS n FROM public.${quote(e.b)} GROUP BY 1),
     live_o AS (
       SELECT m.range_start, m.range_end FROM lakets._chunk_metadata m JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
        WHERE r.table_name = $2 AND m.status <> 'dropped'),
     kept_o AS (SELECT bucket, n FROM public.${quote(`_rollup_${e.other}`)} t
                 WHERE EXISTS (SELECT 1 FROM live_o WHERE t.bucket >= live_o.range_start AND t.bucket < live_o.range_end)),
     d2 AS ((SELECT * FROM fresh_o EXCEPT ALL SELECT * FROM kept_o) UNION ALL (SELECT * FROM kept_o EXCEPT ALL SELECT * FROM fresh_o)),
     daily AS (SELECT lakets.time_bucket('1 day', bucket) AS bucket, device, sum(v) AS v, sum(n) AS n
                 FROM public.${quote(`_rollup_${e.hourly}`)} GROUP BY 1, 2),
     d3 AS ((SELECT * FROM daily EXCEPT ALL SELECT * FROM public.${quote(`_rollup_${e.daily}`)})
            UNION ALL (SELECT * FROM public.${quote(`_rollup_${e.daily}`)} EXCEPT ALL SELECT * FROM daily))
     SELECT ((SELECT count(*) FROM d1) + (SELECT count(*) FROM d2) + (SELECT count(*) FROM d3))::int AS n,
            (SELECT json_agg(x) FROM (SELECT 'hourly' AS rollup, * FROM d1 LIMIT 3) x)::text AS d1,
            (SELECT json_agg(x) FROM (SELECT 'other' AS rollup, * FROM d2 LIMIT 3) x)::text AS d2,
            (SELECT json_agg(x) FROM (SELECT 'daily' AS rollup, * FROM d3 LIMIT 3) x)::text AS d3`,
    [e.a, e.b],
  );
  const r = rows[0];
  lastDrift = [r?.d1, r?.d2, r?.d3].filter(Boolean).join(' ');
  return r?.n ?? -1;
}

/** Some of the rows behind the last rollupDrift() count (for failure messages). */
export let lastDrift = '';
