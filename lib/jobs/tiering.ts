// Tiering: for each table with an enabled tiering-kind policy (least recently run first),
// _get_chunks_to_tier() then tier_chunk() per candidate. Never drops anything. A chunk's outcome is
// its status in _chunk_metadata read after the calls (once per run), and a deferral's reason is
// computed from the chunk's last_write_lsn and Lakehouse Sync's state for its shadow; LakeTS's
// NOTICEs are kept as evidence only. A synced table whose Sync state the role cannot read carries a
// SyncStateUnreadable warning. Stamps last_run_at on every tiering-kind policy of a table once it has been evaluated (the
// public job stamps only 'tiering', and only when there were candidates).
import { attempt } from './attempt.ts';
import { defineJob } from './definition.ts';
import { errorLine } from './errors.ts';
import { DAILY_DELIVERY, gatedParts } from './gated.ts';
import * as sync from './sync-state.ts';
import { type ChronoTable, policyTables } from './targets.ts';
import type { ItemResult, JobContext, JobLogic } from './types.ts';

const KINDS = ['tiering', 'tiered_retention'];

interface Candidate {
  id: number;
  name: string;
  last_write_lsn: string | null;
}

interface Evaluation {
  shadow: sync.ShadowState;
  candidates: Candidate[];
}

// Every table's candidates and its shadow's state in one round trip (a job over 1,000 tables is
// then as cheap as the same calls from one psql session); per table only when the batch fails.
function evaluateSql(access: sync.SyncAccess): string {
  const { joins, columns } = sync.shadowSql(access);
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

type EvaluationRow = sync.ShadowRow & { id: number; candidates: Candidate[] };

async function evaluate(
  db: JobContext['db'],
  access: sync.SyncAccess,
  ids: number[],
): Promise<Map<number, Evaluation>> {
  const { rows } = await db.query<EvaluationRow>(evaluateSql(access), [ids]);
  return new Map(rows.map((r) => [r.id, { shadow: sync.shadowState(r, access), candidates: r.candidates }]));
}

const run: JobLogic = async (ctx) => {
  const items: ItemResult[] = [];
  const tables = await policyTables(ctx, KINDS, items);
  const access = await sync.syncAccess(ctx.db);
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
  const attempts: Attempt[] = [];
  for (const t of tables) {
    let evaluation: Evaluation | undefined;
    const table = await attempt(ctx, items, { kind: 'table', name: t.name }, async () => {
      evaluation = batch?.get(t.id) ?? (await evaluate(ctx.db, access, [t.id])).get(t.id);
      if (!evaluation) throw new Error(`${t.name} is no longer a ChronoTable`);
      return tableItems(t, evaluation);
    });
    if (!evaluation || table?.[0]?.outcome === 'failed') continue;
    evaluated.push(t.id);
    for (const c of evaluation.candidates) {
      const chunk = await attempt(ctx, items, { kind: 'chunk', name: c.name }, () =>
        tierChunk(ctx, evaluation as Evaluation, c),
      );
      const item = chunk?.[0];
      if (!ctx.options.dryRun && item?.outcome === 'deferred') {
        attempts.push({ table: t.id, chunk: c, before: evaluation.shadow, item });
      }
    }
  }
  await settle(ctx.db, access, attempts);
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
  table: number;
  chunk: Candidate;
  /** Lakehouse Sync's state for the shadow before the call. */
  before: sync.ShadowState;
  /** Its report item, settled from the state read after all the calls. */
  item: ItemResult;
}

/** The table's own item, when it has something to say: no candidates, or a Sync state it cannot read. */
function tableItems(t: ChronoTable, { shadow, candidates }: Evaluation): ItemResult[] {
  // Nothing can be proven for a synced table whose Sync state this role cannot read: say so once.
  const warning = shadow.unreadable
    ? {
        code: 'SyncStateUnreadable' as const,
        message: `${shadow.reason}: Tiering cannot prove any chunk durable (run npm run grants, or grant it)`,
      }
    : undefined;
  if (candidates.length === 0) {
    return [
      {
        kind: 'table',
        name: t.name,
        outcome: 'unchanged',
        count: 0,
        reason:
          shadow.reason === null
            ? 'no active chunk is older than the tiering policy'
            : `${shadow.reason}: nothing can be proven durable (fail-closed)`,
        ...(warning ? { warning } : {}),
      },
    ];
  }
  return warning ? [{ kind: 'table', name: t.name, outcome: 'unchanged', count: 0, warning }] : [];
}

/**
 * One candidate: in a dry run, whether it would be tiered; else tier_chunk, its outcome left
 * `deferred` until settle() reads the chunk's state after all the calls.
 */
async function tierChunk(
  { db, options }: JobContext,
  { shadow }: Evaluation,
  c: Candidate,
): Promise<ItemResult> {
  if (options.dryRun) {
    const reason = sync.notDurableReason(shadow, c.last_write_lsn);
    return {
      kind: 'chunk',
      name: c.name,
      outcome: reason === null ? 'would-tier' : 'deferred',
      ...(reason === null ? {} : { reason }),
    };
  }
  await db.query('SELECT lakets.tier_chunk($1)', [c.name]);
  return { kind: 'chunk', name: c.name, outcome: 'deferred' };
}

/**
 * Each attempted chunk's outcome from its status after tier_chunk, read once for the whole run; a
 * deferral's reason from its last_write_lsn and Lakehouse Sync's state (read only for the tables
 * with a chunk left active).
 */
async function settle(db: JobContext['db'], access: sync.SyncAccess, attempts: Attempt[]): Promise<void> {
  if (attempts.length === 0) return;
  try {
    const now = await sync.readChunks(
      db,
      attempts.map((a) => a.chunk.id),
    );
    const left = attempts.filter((a) => now.get(a.chunk.id)?.status === 'active');
    const shadows =
      left.length > 0
        ? await sync.readShadows(db, access, [...new Set(left.map((a) => a.table))])
        : new Map();
    for (const a of attempts) {
      const chunk = now.get(a.chunk.id);
      const item = a.item;
      if (chunk?.status === 'tiered') {
        item.outcome = 'tiered';
      } else if (!chunk) {
        item.outcome = 'skipped';
        item.reason = 'the chunk is no longer in lakets._chunk_metadata';
      } else if (chunk.status !== 'active') {
        item.outcome = 'skipped';
        item.reason = `status is ${chunk.status}, only active chunks are tiered`;
      } else {
        const after: sync.ShadowState | undefined = shadows.get(a.table);
        item.reason =
          (after ? sync.notDurableReason(after, chunk.last_write_lsn) : null) ??
          sync.notDurableReason(a.before, a.chunk.last_write_lsn) ??
          "tier_chunk left it active although Lakehouse Sync's state read before and after proves it durable (it changed during the call?); the next run retries";
      }
    }
  } catch (error) {
    // Never throw past collected items: each says what is known.
    const why = `its state after tier_chunk could not be read: ${errorLine(error)}`;
    for (const a of attempts) Object.assign(a.item, { outcome: 'failed', reason: why });
  }
}

const parts = gatedParts(
  { total: 'chunksTiered', outcome: 'tiered', metric: 'ChunksTiered' },
  'ChunksTieringDeferred',
  [
    ['_get_chunks_to_tier', 'text, text'],
    ['tier_chunk', 'text'],
  ],
);

export const tiering = defineJob({
  name: 'tiering',
  title: 'Tiering',
  summary: 'Flags cold chunks that are durable in Unity Catalog as tiered',
  schedule: 'cron(0 2 * * ? *)',
  periodMinutes: 24 * 60,
  timeoutMinutes: 15,
  // A late Tiering may overlap Retention (03:00): safe, Retention is gated on UC durability itself
  // and defers what is not yet durable to the next day.
  delivery: DAILY_DELIVERY,
  payload: ['dryRun', 'tables', 'check'],
  lockKey: 2,
  run,
  totals: parts.totals,
  emits: parts.emits,
  counted: 'chunks tiered',
  needs: parts.needs,
});
