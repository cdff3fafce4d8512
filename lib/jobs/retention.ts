// Retention: one execute_retention() per table with an enabled retention-kind policy (the public
// job calls it once per policy row, so a table with two rows ran twice). p_force only from a
// manual payload that names its tables. Per-chunk outcomes come from the registry before and
// after the call, and from the NOTICE (deferred) and WARNING (failed) lines LakeTS raises.
import { mayStart } from './budget.ts';
import { errorLine } from './errors.ts';
import { noticesByChunk, withNotices } from './notices.ts';
import { type ChronoTable, policyTables } from './targets.ts';
import type { ItemResult, JobContext, JobLogic } from './types.ts';

const KINDS = ['retention', 'tiered_retention'];

// Chunks past the cut-off, and whether each would pass the gate: what execute_retention decides.
const PLAN_SQL = `
  WITH pol AS (
    SELECT max((p.config ->> 'drop_after')::interval) AS drop_after,
           bool_or(p.policy_type = 'tiered_retention') AS tiered
      FROM lakets._policy_registry p
     WHERE p.chronotable_id = $1 AND p.enabled AND p.policy_type IN ('retention', 'tiered_retention')
  ), reg AS (
    SELECT r.sync_enabled OR pol.tiered AS gated, lakets._cdf_committed_lsn(r.shadow_table_name) AS committed, pol.drop_after
      FROM lakets._chronotable_registry r, pol WHERE r.id = $1
  )
  SELECT m.chunk_name,
         (NOT reg.gated OR $2::boolean
          OR coalesce(reg.committed >= m.last_write_lsn, false)) AS droppable
    FROM lakets._chunk_metadata m, reg
   WHERE m.chronotable_id = $1 AND m.status IN ('active', 'tiered') AND m.range_end <= now() - reg.drop_after
   ORDER BY m.range_start`;

export const retention: JobLogic = async (ctx) => {
  const items: ItemResult[] = [];
  const tables = await policyTables(ctx, KINDS, items);
  // The live chunks of every table in one round trip: they name the chunks in LakeTS's NOTICEs and
  // tell which ones a call dropped, so each table then costs just its execute_retention() call.
  const { rows } = await ctx.db.query<{ id: number; chunks: string[] }>(
    `SELECT chronotable_id AS id, array_agg(chunk_name) AS chunks FROM lakets._chunk_metadata
      WHERE chronotable_id = ANY ($1::int[]) AND status IN ('active', 'tiered') GROUP BY 1`,
    [tables.map((t) => t.id)],
  );
  const live = new Map(rows.map((r) => [r.id, r.chunks]));
  for (const t of tables) {
    if (!mayStart(ctx.budget, items, 'table', t.name)) continue;
    const started = Date.now();
    try {
      items.push(...(ctx.options.dryRun ? await plan(ctx, t) : await enforce(ctx, t, live.get(t.id) ?? [])));
    } catch (error) {
      items.push({ kind: 'table', name: t.name, outcome: 'failed', reason: errorLine(error) });
    }
    ctx.budget.spent(Date.now() - started);
  }
  return items;
};

async function plan({ db, options }: JobContext, t: ChronoTable): Promise<ItemResult[]> {
  const { rows } = await db.query<{ chunk_name: string; droppable: boolean }>(PLAN_SQL, [
    t.id,
    options.force,
  ]);
  return [
    {
      kind: 'table',
      name: t.name,
      outcome: rows.some((r) => r.droppable) ? 'would-drop' : 'unchanged',
      count: rows.filter((r) => r.droppable).length,
    },
    ...rows.map(
      (r): ItemResult =>
        r.droppable
          ? { kind: 'chunk', name: r.chunk_name, outcome: 'would-drop' }
          : {
              kind: 'chunk',
              name: r.chunk_name,
              outcome: 'deferred',
              reason: 'not proven durable in Unity Catalog yet',
            },
    ),
  ];
}

async function enforce({ db, options }: JobContext, t: ChronoTable, before: string[]): Promise<ItemResult[]> {
  const started = Date.now();
  const { result, notices } = await withNotices(db, () =>
    db.query<{ dropped: number }>('SELECT lakets.execute_retention($1, $2, $3) AS dropped', [
      t.table,
      t.schema,
      options.force,
    ]),
  );
  const count = Number(result.rows[0]?.dropped ?? 0);
  const gone =
    count === 0
      ? { rows: [] }
      : await db.query<{ chunk_name: string }>(
          `SELECT chunk_name FROM lakets._chunk_metadata
            WHERE chronotable_id = $1 AND status = 'dropped' AND chunk_name = ANY ($2::text[])`,
          [t.id, before],
        );
  const dropped = new Set(gone.rows.map((r) => r.chunk_name));
  const byChunk = noticesByChunk(notices, before);
  const chunks: ItemResult[] = [];
  for (const name of before) {
    if (dropped.has(name)) {
      chunks.push({ kind: 'chunk', name, outcome: 'dropped' });
      continue;
    }
    const reason = byChunk.get(name);
    if (reason === undefined) continue;
    const failed = notices.some((n) => n.startsWith('WARNING') && n.includes(`chunk ${name}: `));
    chunks.push({ kind: 'chunk', name, outcome: failed ? 'failed' : 'deferred', reason });
  }
  const table: ItemResult = {
    kind: 'table',
    name: t.name,
    outcome: count > 0 ? 'dropped' : 'unchanged',
    count,
    durationMs: Date.now() - started,
    ...(options.force ? { reason: 'forced: the durability gate was skipped' } : {}),
    ...(notices.length > 0 ? { notices } : {}),
  };
  return [table, ...chunks];
}
