// Partition Manager: lakets._ensure_partitions() for every ChronoTable (or the named ones), most
// urgent first, each on the chunk grid the table already has.
import type { Queryable } from '../queryable.ts';
import { attempt, decided } from './attempt.ts';
import { type ChunkGrid, chunkGrid } from './chunk-grid.ts';
import { defineJob } from './definition.ts';
import type { PreflightContext } from './needs.ts';
import { type ChronoTable, chronoTables } from './targets.ts';
import type { ItemResult, JobLogic } from './types.ts';

// Per ChronoTable: how far its partitions reach (the end of its last non-dropped chunk, NULL when it
// has none) and where its latest chunk sits against the UTC grid.
const GRID_STATE_SQL = `
  SELECT r.id,
         extract(epoch FROM r.chunk_interval)::float8 AS interval_s,
         g.max_end, g.latest,
         -- date_bin refuses month intervals and non-positive ones: such a table keeps its own failure.
         (r.chunk_interval > interval '0' AND date_part('month', r.chunk_interval) = 0
          AND date_part('year', r.chunk_interval) = 0) AS binnable,
         CASE WHEN r.chunk_interval > interval '0' AND date_part('month', r.chunk_interval) = 0
                   AND date_part('year', r.chunk_interval) = 0
              THEN extract(epoch FROM g.latest - date_bin(r.chunk_interval, g.latest, timestamptz '2000-01-01 00:00:00+00'))::float8
         END AS offset_s
    FROM lakets._chronotable_registry r
    LEFT JOIN LATERAL (
      SELECT max(m.range_end) AS max_end, max(m.range_start) AS latest
        FROM lakets._chunk_metadata m
       WHERE m.chronotable_id = r.id AND m.status <> 'dropped') g ON true`;

// The run's one read: each table's grid state, whether its table still exists (read from the
// catalogs: to_regclass raises without USAGE on the schema), and what _ensure_partitions would create
// with its defaults (past 1, future 3) on the table's own grid: the ranges with no non-dropped
// chunk. NULL where that cannot be computed (a month interval): such a table is called. Also the
// session's time zone, which the calls on offset grids change and give back.
const PLAN_SQL = `
  SELECT s.*, current_setting('TimeZone') AS session_zone,
         EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = r.schema_name AND c.relname = r.table_name) AS present,
         -- Any chunk boundary is an origin of the table's grid: its latest chunk's start, or the UTC one.
         CASE WHEN s.binnable THEN (
           SELECT count(*)::int
             FROM LATERAL (SELECT date_bin(r.chunk_interval, now(),
                                           coalesce(s.latest, timestamptz '2000-01-01 00:00:00+00')) AS base) b,
                  generate_series(b.base - r.chunk_interval, b.base + 3 * r.chunk_interval, r.chunk_interval) x
            WHERE NOT EXISTS (SELECT 1 FROM lakets._chunk_metadata m
                               WHERE m.chronotable_id = r.id AND m.range_start = x AND m.status <> 'dropped'))
         END AS missing
    FROM (${GRID_STATE_SQL}) s JOIN lakets._chronotable_registry r ON r.id = s.id`;

// What _ensure_partitions would create for one table, for a dry run of a table PLAN_SQL could not
// count (it fails here as the call would).
const MISSING_SQL = `
  SELECT count(*)::int AS missing
    FROM lakets._chronotable_registry r,
         LATERAL (SELECT date_bin(r.chunk_interval, now(), $2::timestamptz) AS base) b,
         generate_series(b.base - r.chunk_interval, b.base + 3 * r.chunk_interval, r.chunk_interval) s
   WHERE r.id = $1
     AND NOT EXISTS (SELECT 1 FROM lakets._chunk_metadata m
                      WHERE m.chronotable_id = r.id AND m.range_start = s AND m.status <> 'dropped')`;

interface Planned {
  table: ChronoTable;
  maxEnd: number | null;
  grid: ChunkGrid;
  /** Partitions _ensure_partitions would create now (null: unknown, so it is called). */
  missing: number | null;
  /** Whether the run must call _ensure_partitions (or, dry, count) for it: see needsCall(). */
  call: boolean;
}

/**
 * Whether a table needs its _ensure_partitions call: the call can only report "0 created" and change
 * nothing when its table exists, its grid is one the call can continue (the UTC grid, or an offset a
 * session time zone expresses: otherwise the public LakeTS fails with 42P17 and that failure is the
 * table's outcome) and no range of the default window lacks a chunk.
 */
function needsCall(missing: number | null, present: boolean, grid: ChunkGrid): boolean {
  return missing === null || missing > 0 || !present || (grid.offsetSeconds !== 0 && !grid.timeZone);
}

/**
 * The tables in the order a run reports them: the one whose partitions end soonest first (none at
 * all first of all), so a run cut short by its time budget leaves the least urgent for the next.
 */
async function plan(
  db: Queryable,
  tables: ChronoTable[],
  everyItem: boolean,
): Promise<{ planned: Planned[]; sessionZone: string }> {
  const { rows } = await db.query<{
    id: number;
    interval_s: number;
    max_end: Date | null;
    offset_s: number | null;
    present: boolean;
    missing: number | null;
    session_zone: string;
  }>(PLAN_SQL);
  const state = new Map(rows.map((r) => [r.id, r]));
  const planned = tables.map((table): Planned => {
    const s = state.get(table.id);
    const grid = chunkGrid(s?.interval_s ?? 1, s?.offset_s ?? null);
    const missing = s ? s.missing : null;
    return {
      table,
      maxEnd: s?.max_end ? s.max_end.getTime() : null,
      grid,
      missing,
      call: everyItem || needsCall(missing, s?.present ?? false, grid),
    };
  });
  // Array.prototype.sort is stable: ties keep the name order of chronoTables().
  planned.sort((a, b) => (a.maxEnd ?? -Infinity) - (b.maxEnd ?? -Infinity));
  return { planned, sessionZone: rows[0]?.session_zone ?? 'UTC' };
}

/**
 * The session's time zone for the calls. On an offset grid a call runs with TimeZone set to the
 * grid's fixed offset; PL/pgSQL keeps the origin of its first plan for the whole session, so plans
 * are discarded with each change. The change is one message (SET and DISCARD PLANS together) and is
 * made only when the zone differs from the previous call's: the calls are ordered so that tables on
 * one grid follow each other. After the run the session gets its own zone back (plans discarded).
 */
function zoneSwitcher(db: Queryable, sessionZone: string) {
  // undefined: the session's own zone, untouched by this run; null: unknown after a failed change.
  let current: string | null | undefined;
  const change = async (zone: string): Promise<void> => {
    current = null;
    await db.query(`SET TimeZone TO ${literal(zone)}; DISCARD PLANS`);
  };
  return {
    async enter(zone: string | undefined): Promise<void> {
      if (zone === current) return;
      await change(zone ?? sessionZone);
      current = zone;
    },
    async leave(): Promise<void> {
      if (current === undefined) return;
      await change(sessionZone);
      current = undefined;
    },
  };
}

function literal(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

async function ensurePartitions(db: Queryable, id: number): Promise<number> {
  const { rows } = await db.query<{ created: number }>(
    'SELECT lakets._ensure_partitions(p_chronotable_id => $1) AS created',
    [id],
  );
  return Number(rows[0]?.created ?? 0);
}

/**
 * A run. Tables PLAN_SQL proves complete are reported `unchanged` (0 created) without a call: a run
 * with nothing to do costs the same few statements at any number of tables, and each table to do
 * costs its one call (plus one zone change per run of tables on one offset grid). `everyItem` calls
 * every table as the jobs did before: the reference the equivalence test compares this with.
 */
function partitionRun(everyItem: boolean): JobLogic {
  return async (ctx) => {
    const { db, options } = ctx;
    // A manual run naming its tables calls each of them: LakeTS's own answer (an error, say) is what
    // the person asked for.
    const callAll = everyItem || options.tables !== undefined;
    const { planned, sessionZone } = await plan(db, await chronoTables(db, [], options.tables), callAll);
    // One slot per table in report order. The tables are taken by urgency, then grid, so that tables
    // on one grid follow each other and the session's zone changes once per grid.
    const slots = planned.map((): ItemResult[] => []);
    const zoneKey = (p: Planned) => p.grid.timeZone ?? '';
    const order = planned.map((_, i) => i);
    order.sort((a, b) => {
      const x = planned[a] as Planned;
      const y = planned[b] as Planned;
      const urgency = (x.maxEnd ?? -Infinity) - (y.maxEnd ?? -Infinity);
      if (urgency !== 0) return urgency;
      return zoneKey(x) < zoneKey(y) ? -1 : zoneKey(x) > zoneKey(y) ? 1 : a - b;
    });
    const zones = zoneSwitcher(db, sessionZone);
    try {
      for (const i of order) {
        const { table: t, grid, missing, call } = planned[i] as Planned;
        const slot = slots[i] as ItemResult[];
        const gridNote = grid.offsetSeconds === 0 ? {} : { grid: grid.description };
        if (!call) {
          decided(ctx, slot, { kind: 'table', name: t.name, outcome: 'unchanged', count: 0, ...gridNote });
          continue;
        }
        await attempt(ctx, slot, { kind: 'table', name: t.name, ...gridNote }, async () => {
          // A dry run counts what a real run would create, on the same grid.
          let count: number;
          if (!options.dryRun) {
            await zones.enter(grid.timeZone);
            count = await ensurePartitions(db, t.id);
          } else if (missing !== null && !callAll) {
            count = missing;
          } else {
            count =
              (await db.query<{ missing: number }>(MISSING_SQL, [t.id, grid.origin])).rows[0]?.missing ?? 0;
          }
          const changed = options.dryRun ? 'would-create' : 'created';
          return {
            kind: 'table',
            name: t.name,
            outcome: count > 0 ? changed : 'unchanged',
            count,
            ...gridNote,
          };
        });
      }
    } finally {
      // As before: a session that cannot take its zone back is broken, and the next run reconnects.
      await zones.leave().catch(() => {});
    }
    return slots.flat();
  };
}

const run = partitionRun(false);

/** The same run calling _ensure_partitions for every table (dry: counting each one): the reference. */
export const runCallingEveryTable = partitionRun(true);

/** Chunk grids: each ChronoTable's grid, and whether the installed LakeTS can continue it. */
async function checkGrids({ db, add, callerRights }: PreflightContext): Promise<void> {
  const { rows } = await db.query<{ id: number; interval_s: number; offset_s: number | null; name: string }>(
    `SELECT s.*, format('%I.%I', r.schema_name, r.table_name) AS name
       FROM (${GRID_STATE_SQL}) s JOIN lakets._chronotable_registry r ON r.id = s.id ORDER BY name`,
  );
  let utc = 0;
  for (const r of rows) {
    const grid = chunkGrid(r.interval_s, r.offset_s);
    if (grid.offsetSeconds === 0) utc++;
    else if (grid.timeZone) add(`chunk grid: ${r.name}`, 'pass', grid.description);
    else
      add(
        `chunk grid: ${r.name}`,
        callerRights ? 'fail' : 'warn',
        grid.description,
        'the public LakeTS cannot continue this grid: create its next partitions by hand, or move to the compatible schema (which keeps any grid)',
      );
  }
  add(
    'chunk grids',
    'pass',
    `${utc} of ${rows.length} ChronoTables on the UTC grid; the others are kept on their own grid`,
  );
}

export const partitionManager = defineJob({
  name: 'partition-manager',
  title: 'Partition Manager',
  summary: 'Pre-creates future partitions of every chronotable',
  schedule: 'cron(0 */6 * * ? *)',
  periodMinutes: 6 * 60,
  timeoutMinutes: 5,
  // 1 h + 1 h + 5 min of a 6 h period: a lost run is recovered long before partitions run out.
  delivery: {
    schedulerMaxEventAgeMinutes: 60,
    schedulerRetryAttempts: 20,
    lambdaMaxEventAgeMinutes: 60,
    lambdaRetryAttempts: 2,
  },
  payload: ['dryRun', 'tables', 'check'],
  lockKey: 1,
  run,
  totals: (items) => ({
    partitionsCreated: items
      .filter((i) => i.kind === 'table' && i.outcome === 'created')
      .reduce((n, i) => n + (i.count ?? 0), 0),
  }),
  emits: [{ name: 'PartitionsCreated', value: (t) => t.partitionsCreated }],
  counted: 'partitions created',
  needs: {
    functions: [
      ['_ensure_partitions', 'integer, integer, integer, timestamp with time zone, timestamp with time zone'],
    ],
    tables: [
      ['_chronotable_registry', ['SELECT']],
      ['_chunk_metadata', ['SELECT', 'INSERT', 'UPDATE']],
    ],
    chronoTables: true,
    createsPartitions: true,
    partitionDdl: true,
    checks: [{ name: 'chunk grids', run: checkGrids }],
  },
});
