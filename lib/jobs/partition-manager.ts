// Partition Manager: lakets._ensure_partitions() for every ChronoTable (or the named ones), most
// urgent first, each on the chunk grid the table already has.
import type { Queryable } from '../queryable.ts';
import { attempt } from './attempt.ts';
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
         g.max_end,
         -- date_bin refuses month intervals and non-positive ones: such a table keeps its own failure.
         CASE WHEN r.chunk_interval > interval '0' AND date_part('month', r.chunk_interval) = 0
                   AND date_part('year', r.chunk_interval) = 0
              THEN extract(epoch FROM g.latest - date_bin(r.chunk_interval, g.latest, timestamptz '2000-01-01 00:00:00+00'))::float8
         END AS offset_s
    FROM lakets._chronotable_registry r
    LEFT JOIN LATERAL (
      SELECT max(m.range_end) AS max_end, max(m.range_start) AS latest
        FROM lakets._chunk_metadata m
       WHERE m.chronotable_id = r.id AND m.status <> 'dropped') g ON true`;

// What _ensure_partitions would create with its defaults (past 1, future 3) on the table's grid,
// for a dry run.
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
}

/**
 * The tables in the order a run attempts them: the one whose partitions end soonest first (none at
 * all first of all), so a run cut short by its time budget leaves the least urgent for the next.
 */
async function plan(db: Queryable, tables: ChronoTable[]): Promise<Planned[]> {
  const { rows } = await db.query<{
    id: number;
    interval_s: number;
    max_end: Date | null;
    offset_s: number | null;
  }>(GRID_STATE_SQL);
  const state = new Map(rows.map((r) => [r.id, r]));
  const planned = tables.map((table) => {
    const s = state.get(table.id);
    return {
      table,
      maxEnd: s?.max_end ? s.max_end.getTime() : null,
      grid: chunkGrid(s?.interval_s ?? 1, s?.offset_s ?? null),
    };
  });
  // Array.prototype.sort is stable: ties keep the name order of chronoTables().
  return planned.sort((a, b) => (a.maxEnd ?? -Infinity) - (b.maxEnd ?? -Infinity));
}

/**
 * Runs `_ensure_partitions` for one table. On an offset grid the call runs in a transaction whose
 * TimeZone is the grid's fixed offset; PL/pgSQL keeps the origin of its first plan for the whole
 * session, so plans are discarded before the call (to drop a UTC origin) and after it (so the next
 * table is not binned on this one's).
 */
async function ensurePartitions(db: Queryable, id: number, grid: ChunkGrid): Promise<number> {
  const call = () =>
    db.query<{ created: number }>('SELECT lakets._ensure_partitions(p_chronotable_id => $1) AS created', [
      id,
    ]);
  if (!grid.timeZone) return Number((await call()).rows[0]?.created ?? 0);
  await db.query('BEGIN');
  try {
    await db.query(`SELECT set_config('TimeZone', $1, true)`, [grid.timeZone]);
    await db.query('DISCARD PLANS');
    const created = Number((await call()).rows[0]?.created ?? 0);
    await db.query('COMMIT');
    return created;
  } catch (error) {
    await db.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    await db.query('DISCARD PLANS').catch(() => {});
  }
}

const run: JobLogic = async (ctx) => {
  const { db, options } = ctx;
  const items: ItemResult[] = [];
  for (const { table: t, grid } of await plan(db, await chronoTables(db, [], options.tables))) {
    const gridNote = grid.offsetSeconds === 0 ? {} : { grid: grid.description };
    await attempt(ctx, items, { kind: 'table', name: t.name, ...gridNote }, async () => {
      // A dry run counts what a real run would create, on the same grid.
      const count = options.dryRun
        ? ((await db.query<{ missing: number }>(MISSING_SQL, [t.id, grid.origin])).rows[0]?.missing ?? 0)
        : await ensurePartitions(db, t.id, grid);
      const changed = options.dryRun ? 'would-create' : 'created';
      return { kind: 'table', name: t.name, outcome: count > 0 ? changed : 'unchanged', count, ...gridNote };
    });
  }
  return items;
};

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
