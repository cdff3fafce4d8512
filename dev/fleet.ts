// A fleet of ChronoTables and RollUp chains built set-based through the public LakeTS API, for the
// round-trip tests and the latency benchmark (bench/scale.ts builds its tables with the same builder, in
// its own shape): the same shape at 3 tables or 10,000. Every table `fNNNNN` has daily chunks
// (LakeTS's default window, plus one chunk 40 days old), a tiering policy (60 days) and a retention
// policy (90 days), sync to its shadow with Lakehouse Sync (the fake) caught up for good, and a row per
// device and hour for the last 6 hours. RollUp chains `rNNNNN_k` sit on the first tables:
// k = 1 aggregates its table hourly, each next one aggregates the one before it.
//
// Each job can be given nothing to do or one unit of work per item (`setScenario`):
//   Partition Manager  the newest partition of each table forgotten (one to create)
//   Tiering            the tiering policy at 20 days (the old chunk is a candidate)
//   Retention          the retention policy at 30 days (the old chunk is dropped)
//   RollUp Refresh     refresh_lag 0 (each RollUp is due); nothing to do: 1 hour after a refresh
import type pg from 'pg';
import type { JobReport } from '../lib/jobs/types.ts';
import { LSN_ALWAYS_CAUGHT_UP, setSyncOfAll, WAL2DELTA_DDL } from './fake-lakehouse-sync.ts';

type Queryable = Pick<pg.ClientBase, 'query'>;
export type FleetJob = 'partition-manager' | 'tiering' | 'retention' | 'rollup-refresh';
export type Scenario = 'nothing' | 'one';

const FLEET_SQL = `
${WAL2DELTA_DDL}
CREATE SCHEMA IF NOT EXISTS fleet;

CREATE OR REPLACE FUNCTION fleet.tname(i int, p_prefix text DEFAULT 'f', p_width int DEFAULT 5) RETURNS text
  LANGUAGE sql IMMUTABLE RETURN p_prefix || lpad(i::text, p_width, '0');
CREATE OR REPLACE FUNCTION fleet.rname(i int, k int) RETURNS text LANGUAGE sql IMMUTABLE
  RETURN 'r' || lpad(i::text, 5, '0') || '_' || k;

-- The old chunk: one day, 40 days back (on the table's grid).
CREATE OR REPLACE FUNCTION fleet.old_chunk(p_id int) RETURNS int LANGUAGE sql AS $$
  SELECT lakets._ensure_partitions(p_id, p_range_start => now() - interval '40 days',
                                   p_range_end => now() - interval '40 days' + interval '1 second')
$$;

-- Tables p_from..p_to with the fleet's shape by default; bench/scale.ts gives its own (names, the old
-- chunk's range, policies, how many hours of rows) and builds with the same steps.
CREATE OR REPLACE FUNCTION fleet.add_tables(
  p_from int, p_to int,
  p_prefix text DEFAULT 'f', p_width int DEFAULT 5,
  p_old_start timestamptz DEFAULT NULL, p_old_end timestamptz DEFAULT NULL,
  p_tier_after interval DEFAULT '60 days', p_drop_after interval DEFAULT '90 days',
  p_rows_back interval DEFAULT '5 hours'
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  n text;
  v_id int;
BEGIN
  FOR i IN p_from..p_to LOOP
    n := fleet.tname(i, p_prefix, p_width);
    EXECUTE format('CREATE TABLE public.%I (ts timestamptz NOT NULL, device int NOT NULL, value float8)', n);
    v_id := lakets.create_chronotable(n, 'ts', interval '1 day');
    IF p_old_start IS NULL THEN
      PERFORM fleet.old_chunk(v_id);
    ELSE
      PERFORM lakets._ensure_partitions(v_id, p_range_start => p_old_start, p_range_end => p_old_end);
    END IF;
    PERFORM lakets.add_tiering_policy(n, p_tier_after);
    PERFORM lakets.add_retention_policy(n, p_drop_after);
    EXECUTE format('INSERT INTO public.%I SELECT t, d, d FROM generate_series(date_trunc(''hour'', now()) - $1, '
                   'date_trunc(''hour'', now()), interval ''1 hour'') t, generate_series(1, 2) d', n) USING p_rows_back;
    PERFORM lakets.enable_sync(n);
  END LOOP;
END $$;

CREATE OR REPLACE FUNCTION fleet.add_chains(p_from int, p_to int, p_length int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN p_from..p_to LOOP
    PERFORM lakets.create_rollup(fleet.rname(i, 1),
      format('SELECT lakets.time_bucket(''1 hour'', ts) AS bucket, device, count(*)::bigint AS n, sum(value) AS v FROM public.%I GROUP BY 1, 2', fleet.tname(i)),
      interval '1 hour', fleet.tname(i));
    FOR k IN 2..p_length LOOP
      PERFORM lakets.create_rollup(fleet.rname(i, k),
        format('SELECT lakets.time_bucket(''1 hour'', bucket) AS bucket, device, sum(n)::bigint AS n, sum(v) AS v FROM public.%I GROUP BY 1, 2',
               '_rollup_' || fleet.rname(i, k - 1)),
        interval '1 hour', NULL, 'public', ARRAY[fleet.rname(i, k - 1)]);
    END LOOP;
  END LOOP;
END $$;

-- Partition Manager, one unit each: forget the newest partition of each table (whose chunks match
-- p_like; bench/scale.ts: of the ChronoTables p_from..p_to).
CREATE OR REPLACE FUNCTION fleet.drop_newest(p_from int DEFAULT NULL, p_to int DEFAULT NULL,
                                             p_like text DEFAULT 'public.f%') RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  c record;
  k int := 0;
BEGIN
  FOR c IN SELECT DISTINCT ON (m.chronotable_id) m.id, m.chunk_name FROM lakets._chunk_metadata m
            WHERE m.status <> 'dropped' AND m.chunk_name LIKE p_like
              AND (p_from IS NULL OR m.chronotable_id BETWEEN p_from AND p_to)
            ORDER BY m.chronotable_id, m.range_start DESC LOOP
    EXECUTE format('DROP TABLE %s', c.chunk_name);
    DELETE FROM lakets._chunk_metadata WHERE id = c.id;
    k := k + 1;
  END LOOP;
  RETURN k;
END $$;

-- Retention, after a run that dropped the old chunks: bring them back, for the tables on the UTC grid
-- or for those on another (each from a session of its grid's zone, where LakeTS bins in it).
CREATE OR REPLACE FUNCTION fleet.restore_old(p_offset_grid boolean) RETURNS int LANGUAGE sql AS $$
  SELECT coalesce(sum(fleet.old_chunk(r.id)), 0)::int
    FROM lakets._chronotable_registry r
   WHERE r.table_name LIKE 'f%'
     AND EXISTS (SELECT 1 FROM lakets._chunk_metadata m WHERE m.chronotable_id = r.id AND m.status = 'dropped')
     AND (SELECT extract(epoch FROM max(m.range_start) - date_bin('1 day', max(m.range_start), timestamptz '2000-01-01 00:00:00+00')) <> 0
            FROM lakets._chunk_metadata m WHERE m.chronotable_id = r.id AND m.status <> 'dropped') = p_offset_grid
$$;
`;

/** Installs the builder's functions and Lakehouse Sync's table (idempotent). */
export async function installFleet(db: Queryable): Promise<void> {
  await db.query(FLEET_SQL);
}

/** Opens a new session (closed by the caller with `end`). */
export type SessionFactory = () => Promise<Queryable & { end(): Promise<void> }>;

/**
 * Adds ChronoTables `from`..`to` (in slices, so no transaction holds too many locks), from `db`'s
 * session: a session in another time zone lays them out on its grid where LakeTS reads the origin in
 * the session's zone. Lakehouse Sync is then caught up with every shadow.
 *
 * Given a session factory, each slice runs in a session of its own: a backend that has created
 * thousands of relations gets slower at every further DDL (measured: 100 tables took 4.6 s at the
 * start and 24 s after 2,000 in one session; 2.2 s throughout with a new session per slice).
 */
export async function addTables(
  db: Queryable | SessionFactory,
  from: number,
  to: number,
  slice = 50,
): Promise<void> {
  const withSession = async (fn: (s: Queryable) => Promise<unknown>): Promise<void> => {
    if (typeof db !== 'function') {
      await fn(db);
      return;
    }
    const s = await db();
    try {
      await fn(s);
    } finally {
      await s.end();
    }
  };
  for (let a = from; a <= to; a += slice) {
    await withSession((s) => s.query('SELECT fleet.add_tables($1, $2)', [a, Math.min(to, a + slice - 1)]));
  }
  await withSession((s) => setSyncOfAll(s, 'STREAMING', LSN_ALWAYS_CAUGHT_UP));
}

/** Adds RollUp chains of `length` on tables `from`..`to` (each due: refresh_lag 0, never refreshed). */
export async function addChains(
  db: Queryable,
  from: number,
  to: number,
  length: number,
  slice = 50,
): Promise<void> {
  for (let a = from; a <= to; a += slice) {
    await db.query('SELECT fleet.add_chains($1, $2, $3)', [a, Math.min(to, a + slice - 1), length]);
  }
  await db.query(`UPDATE lakets._rollup_registry SET refresh_lag = interval '0'`);
}

/**
 * Gives `job` nothing to do, or one unit of work per item. RollUp Refresh's "nothing" needs the
 * RollUps refreshed once (run the job with "one" first): it only sets refresh_lag back to 1 hour.
 * `offsetSession`: a session in the zone of the tables on an offset grid (where LakeTS bins in the
 * session's zone), to bring their old chunks back.
 */
export async function setScenario(
  db: Queryable,
  job: FleetJob,
  scenario: Scenario,
  offsetSession: Queryable = db,
): Promise<void> {
  const one = scenario === 'one';
  switch (job) {
    case 'partition-manager':
      if (one) await db.query('SELECT fleet.drop_newest()');
      break;
    case 'tiering':
      if (!one)
        await db.query(
          `UPDATE lakets._chunk_metadata SET status = 'active', tiered_at = NULL WHERE status = 'tiered'`,
        );
      await db.query(
        `UPDATE lakets._policy_registry SET config = jsonb_build_object('after', $1::text) WHERE policy_type = 'tiering'`,
        [one ? '20 days' : '60 days'],
      );
      break;
    case 'retention':
      if (!one) {
        await db.query('SELECT fleet.restore_old(false)');
        await offsetSession.query('SELECT fleet.restore_old(true)');
      }
      await db.query(
        `UPDATE lakets._policy_registry SET config = jsonb_build_object('drop_after', $1::text) WHERE policy_type = 'retention'`,
        [one ? '30 days' : '90 days'],
      );
      break;
    case 'rollup-refresh':
      await db.query('UPDATE lakets._rollup_registry SET refresh_lag = $1::interval', [one ? '0' : '1 hour']);
      break;
  }
}

/** Units of work a run did: tables given a partition, chunks tiered or dropped, RollUps refreshed. */
export function unitsOf(job: FleetJob, report: JobReport): number {
  const outcome = {
    'partition-manager': 'created',
    tiering: 'tiered',
    retention: 'dropped',
    'rollup-refresh': 'refreshed',
  }[job];
  const kind = job === 'partition-manager' ? 'table' : job === 'rollup-refresh' ? 'rollup' : 'chunk';
  return report.items.filter((i) => i.kind === kind && i.outcome === outcome).length;
}
