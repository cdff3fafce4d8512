// Tiering: for each table with an enabled tiering-kind policy (least recently run first),
// _get_chunks_to_tier() then tier_chunk() per candidate. Never drops anything. A chunk's outcome is
// its status in _chunk_metadata after the call, and a deferral's reason is computed from the chunk's
// last_write_lsn and Lakehouse Sync's state for its shadow; LakeTS's NOTICEs are kept as evidence
// only. Stamps last_run_at on every tiering-kind policy of a table once it has been evaluated (the
// public job stamps only 'tiering', and only when there were candidates).
import { mayStart } from './budget.ts';
import { errorLine } from './errors.ts';
import { withNotices } from './notices.ts';
import {
  notDurableReason,
  type ShadowRow,
  type ShadowState,
  type SyncAccess,
  shadowSql,
  shadowState,
  syncAccess,
} from './sync-state.ts';
import { type ChronoTable, policyTables } from './targets.ts';
import type { ItemResult, JobContext, JobLogic } from './types.ts';

const KINDS = ['tiering', 'tiered_retention'];

interface Candidate {
  id: number;
  name: string;
  last_write_lsn: string | null;
}

interface Evaluation {
  shadow: ShadowState;
  candidates: Candidate[];
}

// Every table's candidates and its shadow's state in one round trip (a job over 1,000 tables is
// then as cheap as the same calls from one psql session); per table only when the batch fails.
function evaluateSql(access: SyncAccess): string {
  const { joins, columns } = shadowSql(access);
  return `
  SELECT r.id, r.shadow_table_name, ${columns},
         coalesce((SELECT json_agg(json_build_object(
                            'id', c.chunk_id, 'name', c.chunk_name, 'last_write_lsn', m.last_write_lsn::text)
                          ORDER BY c.range_start)
                     FROM lakets._get_chunks_to_tier(r.table_name, r.schema_name) c
                     JOIN lakets._chunk_metadata m ON m.id = c.chunk_id), '[]') AS candidates
    FROM lakets._chronotable_registry r ${joins}
   WHERE r.id = ANY ($1::int[])`;
}

// The candidates' state after tier_chunk, and the shadow's state now.
function afterSql(access: SyncAccess): string {
  const { joins, columns } = shadowSql(access);
  return `
  SELECT r.id, r.shadow_table_name, ${columns},
         coalesce((SELECT json_agg(json_build_object(
                            'id', m.id, 'status', m.status, 'last_write_lsn', m.last_write_lsn::text))
                     FROM lakets._chunk_metadata m WHERE m.id = ANY ($2::int[])), '[]') AS chunks
    FROM lakets._chronotable_registry r ${joins}
   WHERE r.id = $1`;
}

type EvaluationRow = ShadowRow & { id: number; candidates: Candidate[] };

async function evaluate(
  db: JobContext['db'],
  access: SyncAccess,
  ids: number[],
): Promise<Map<number, Evaluation>> {
  const { rows } = await db.query<EvaluationRow>(evaluateSql(access), [ids]);
  return new Map(rows.map((r) => [r.id, { shadow: shadowState(r, access), candidates: r.candidates }]));
}

export const tiering: JobLogic = async (ctx) => {
  const items: ItemResult[] = [];
  const tables = await policyTables(ctx, KINDS, items);
  const access = await syncAccess(ctx.db);
  let batch: Map<number, Evaluation> | undefined;
  try {
    batch = await evaluate(
      ctx.db,
      access,
      tables.map((t) => t.id),
    );
  } catch {
    batch = undefined; // one table's error fails the batch: evaluate table by table below
  }
  const evaluated: number[] = [];
  for (const t of tables) {
    if (!mayStart(ctx.budget, items, 'table', t.name)) continue;
    try {
      const evaluation = batch?.get(t.id) ?? (await evaluate(ctx.db, access, [t.id])).get(t.id);
      if (!evaluation) throw new Error(`${t.name} is no longer a ChronoTable`);
      await tierTable(ctx, access, t, evaluation, items);
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

interface Attempt {
  chunk: Candidate;
  notices: string[];
  durationMs: number;
  /** Its report item, settled from the state read after the table's calls. */
  item: ItemResult;
}

async function tierTable(
  { db, options, budget }: JobContext,
  access: SyncAccess,
  t: ChronoTable,
  { shadow, candidates }: Evaluation,
  items: ItemResult[],
): Promise<void> {
  // Nothing can be proven for a synced table whose Sync state this role cannot read: say so once.
  const warning = shadow.unreadable
    ? {
        code: 'SyncStateUnreadable' as const,
        message: `${shadow.reason}: Tiering cannot prove any chunk durable (run npm run grants, or grant it)`,
      }
    : undefined;
  if (candidates.length === 0) {
    items.push({
      kind: 'table',
      name: t.name,
      outcome: 'unchanged',
      count: 0,
      reason:
        shadow.reason === null
          ? 'no active chunk is older than the tiering policy'
          : `${shadow.reason}: nothing can be proven durable (fail-closed)`,
      ...(warning ? { warning } : {}),
    });
    return;
  }
  const chunkItems: ItemResult[] = [];
  if (warning) chunkItems.push({ kind: 'table', name: t.name, outcome: 'unchanged', count: 0, warning });
  const attempts: Attempt[] = [];
  for (const c of candidates) {
    if (!mayStart(budget, chunkItems, 'chunk', c.name)) continue;
    if (options.dryRun) {
      const reason = notDurableReason(shadow, c.last_write_lsn);
      chunkItems.push({
        kind: 'chunk',
        name: c.name,
        outcome: reason === null ? 'would-tier' : 'deferred',
        ...(reason === null ? {} : { reason }),
      });
      continue;
    }
    const started = Date.now();
    try {
      const { notices } = await withNotices(db, () => db.query('SELECT lakets.tier_chunk($1)', [c.name]));
      const item: ItemResult = { kind: 'chunk', name: c.name, outcome: 'deferred' };
      attempts.push({ chunk: c, notices, durationMs: Date.now() - started, item });
      chunkItems.push(item);
    } catch (error) {
      chunkItems.push({ kind: 'chunk', name: c.name, outcome: 'failed', reason: errorLine(error) });
    }
    budget.spent(Date.now() - started);
  }
  try {
    if (attempts.length > 0) await settle(db, access, t, shadow, attempts);
  } finally {
    items.push(...chunkItems);
  }
}

/** Each attempted chunk's outcome from its status after tier_chunk; a deferral's reason from state. */
async function settle(
  db: JobContext['db'],
  access: SyncAccess,
  t: ChronoTable,
  before: ShadowState,
  attempts: Attempt[],
): Promise<void> {
  let after: { shadow: ShadowState; chunks: Map<number, { status: string; last_write_lsn: string | null }> };
  try {
    const { rows } = await db.query<
      ShadowRow & { chunks: Array<{ id: number; status: string; last_write_lsn: string | null }> }
    >(afterSql(access), [t.id, attempts.map((a) => a.chunk.id)]);
    const row = rows[0];
    if (!row) throw new Error(`${t.name} is no longer a ChronoTable`);
    after = { shadow: shadowState(row, access), chunks: new Map(row.chunks.map((c) => [c.id, c])) };
  } catch (error) {
    const why = `its state after tier_chunk could not be read: ${errorLine(error)}`;
    for (const a of attempts) Object.assign(a.item, { outcome: 'failed', reason: why });
    return;
  }
  for (const a of attempts) {
    const now = after.chunks.get(a.chunk.id);
    const item = a.item;
    Object.assign(item, { durationMs: a.durationMs }, a.notices.length > 0 ? { notices: a.notices } : {});
    if (now?.status === 'tiered') {
      item.outcome = 'tiered';
    } else if (!now) {
      item.outcome = 'skipped';
      item.reason = 'the chunk is no longer in lakets._chunk_metadata';
    } else if (now.status !== 'active') {
      item.outcome = 'skipped';
      item.reason = `status is ${now.status}, only active chunks are tiered`;
    } else {
      item.reason =
        notDurableReason(after.shadow, now.last_write_lsn) ??
        notDurableReason(before, a.chunk.last_write_lsn) ??
        "tier_chunk left it active although Lakehouse Sync's state read before and after proves it durable (it changed during the call?); the next run retries";
    }
  }
}
