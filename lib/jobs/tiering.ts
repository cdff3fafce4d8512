// Tiering: for each table with an enabled tiering-kind policy, _get_chunks_to_tier() then
// tier_chunk() per candidate. Never drops anything. Stamps last_run_at on every tiering-kind
// policy of a table once it has been evaluated (the public job stamps only 'tiering', and only
// when there were candidates).
import { mayStart } from './budget.ts';
import { errorLine } from './errors.ts';
import { withNotices } from './notices.ts';
import { type ChronoTable, policyTables } from './targets.ts';
import type { ItemResult, JobContext, JobLogic } from './types.ts';

const KINDS = ['tiering', 'tiered_retention'];

interface Evaluation {
  id: number;
  /** Lakehouse Sync's committed LSN for the shadow (NULL: nothing can be proven). */
  committed: string | null;
  candidates: Array<{ chunk_name: string; durable: boolean }>;
}

// Every table's candidates in one round trip (a job over 1,000 tables is then as cheap as the
// same calls from one psql session); per table only when a table's evaluation fails.
const EVALUATE_SQL = `
  SELECT r.id, lakets._cdf_committed_lsn(r.shadow_table_name)::text AS committed,
         coalesce((SELECT json_agg(json_build_object(
                            'chunk_name', c.chunk_name,
                            'durable', coalesce(lakets._cdf_committed_lsn(r.shadow_table_name) >= m.last_write_lsn, false))
                          ORDER BY c.range_start)
                     FROM lakets._get_chunks_to_tier(r.table_name, r.schema_name) c
                     JOIN lakets._chunk_metadata m ON m.id = c.chunk_id), '[]') AS candidates
    FROM lakets._chronotable_registry r
   WHERE r.id = ANY ($1::int[])`;

async function evaluate(db: JobContext['db'], ids: number[]): Promise<Map<number, Evaluation>> {
  const { rows } = await db.query<Evaluation & Record<string, unknown>>(EVALUATE_SQL, [ids]);
  return new Map(rows.map((r) => [r.id, r]));
}

export const tiering: JobLogic = async (ctx) => {
  const items: ItemResult[] = [];
  const tables = await policyTables(ctx, KINDS, items);
  let batch: Map<number, Evaluation> | undefined;
  try {
    batch = await evaluate(
      ctx.db,
      tables.map((t) => t.id),
    );
  } catch {
    batch = undefined; // one table's error fails the batch: evaluate table by table below
  }
  const evaluated: number[] = [];
  for (const t of tables) {
    if (!mayStart(ctx.budget, items, 'table', t.name)) continue;
    try {
      const evaluation = batch?.get(t.id) ?? (await evaluate(ctx.db, [t.id])).get(t.id);
      if (!evaluation) throw new Error(`${t.name} is no longer a ChronoTable`);
      await tierTable(ctx, t, evaluation, items);
      evaluated.push(t.id);
    } catch (error) {
      items.push({ kind: 'table', name: t.name, outcome: 'failed', reason: errorLine(error) });
    }
  }
  if (!ctx.options.dryRun && evaluated.length > 0) {
    try {
      await ctx.db.query(
        `UPDATE lakets._policy_registry SET last_run_at = now()
          WHERE chronotable_id = ANY ($1::int[]) AND enabled AND policy_type = ANY ($2::text[])`,
        [evaluated, KINDS],
      );
    } catch (error) {
      // Never throw past collected items: the report would lose them.
      for (const t of tables.filter((x) => evaluated.includes(x.id))) {
        items.push({
          kind: 'table',
          name: t.name,
          outcome: 'failed',
          reason: `last_run_at not stamped: ${errorLine(error)}`,
        });
      }
    }
  }
  return items;
};

async function tierTable(
  { db, options, budget }: JobContext,
  t: ChronoTable,
  { committed, candidates }: Evaluation,
  items: ItemResult[],
): Promise<void> {
  if (candidates.length === 0) {
    items.push({
      kind: 'table',
      name: t.name,
      outcome: 'unchanged',
      count: 0,
      reason: whyNoCandidates(t, committed),
    });
  }
  for (const c of candidates) {
    if (!mayStart(budget, items, 'chunk', c.chunk_name)) continue;
    const started = Date.now();
    if (options.dryRun) {
      items.push({
        kind: 'chunk',
        name: c.chunk_name,
        outcome: c.durable ? 'would-tier' : 'deferred',
        ...(c.durable ? {} : { reason: 'not proven durable in Unity Catalog yet' }),
      });
      continue;
    }
    try {
      const { result, notices } = await withNotices(db, () =>
        db.query<{ tiered: boolean }>('SELECT lakets.tier_chunk($1) AS tiered', [c.chunk_name]),
      );
      const tiered = result.rows[0]?.tiered === true;
      items.push({
        kind: 'chunk',
        name: c.chunk_name,
        outcome: tiered ? 'tiered' : 'deferred',
        ...(tiered ? {} : { reason: reasonFrom(notices, c.chunk_name) }),
        ...(notices.length > 0 ? { notices } : {}),
        durationMs: Date.now() - started,
      });
    } catch (error) {
      items.push({ kind: 'chunk', name: c.chunk_name, outcome: 'failed', reason: errorLine(error) });
    }
    budget.spent(Date.now() - started);
  }
}

function whyNoCandidates(t: ChronoTable, committed: string | null): string {
  if (!t.shadow) return 'sync is not enabled, so nothing can be proven durable';
  if (committed === null) {
    return `Lakehouse Sync reports no committed LSN for the shadow ${t.shadow} (not STREAMING, or wal2delta unreadable for this role): fail-closed`;
  }
  return 'no active chunk is older than the tiering policy';
}

/** The reason LakeTS gave for this chunk, without its "lakets: ... chunk X:" prefix. */
function reasonFrom(notices: string[], chunk: string): string {
  const marker = `chunk ${chunk}: `;
  for (const n of notices) {
    const at = n.indexOf(marker);
    if (at >= 0) return n.slice(at + marker.length);
  }
  return notices[0] ?? 'LakeTS gave no reason';
}
