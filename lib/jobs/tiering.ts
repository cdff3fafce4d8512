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

interface Candidate {
  chunk_name: string;
  last_write_lsn: string | null;
  durable: boolean;
}

export const tiering: JobLogic = async (ctx) => {
  const items: ItemResult[] = [];
  for (const t of await policyTables(ctx, KINDS, items)) {
    if (!mayStart(ctx.budget, items, 'table', t.name)) continue;
    try {
      await tierTable(ctx, t, items);
    } catch (error) {
      items.push({ kind: 'table', name: t.name, outcome: 'failed', reason: errorLine(error) });
    }
  }
  return items;
};

async function tierTable(
  { db, options, budget }: JobContext,
  t: ChronoTable,
  items: ItemResult[],
): Promise<void> {
  const { rows } = await db.query<Candidate & Record<string, unknown>>(
    `SELECT c.chunk_name, m.last_write_lsn::text,
            coalesce(lakets._cdf_committed_lsn(r.shadow_table_name) >= m.last_write_lsn, false) AS durable
       FROM lakets._get_chunks_to_tier($1, $2) c
       JOIN lakets._chunk_metadata m ON m.id = c.chunk_id
       JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
      ORDER BY c.range_start`,
    [t.table, t.schema],
  );
  if (rows.length === 0) {
    items.push({
      kind: 'table',
      name: t.name,
      outcome: 'unchanged',
      count: 0,
      reason: await whyNoCandidates(db, t),
    });
  }
  for (const c of rows) {
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
  if (!options.dryRun) {
    await db.query(
      `UPDATE lakets._policy_registry SET last_run_at = now()
        WHERE chronotable_id = $1 AND enabled AND policy_type = ANY ($2::text[])`,
      [t.id, KINDS],
    );
  }
}

async function whyNoCandidates(db: JobContext['db'], t: ChronoTable): Promise<string> {
  if (!t.shadow) return 'sync is not enabled, so nothing can be proven durable';
  const { rows } = await db.query<{ lsn: string | null }>(
    'SELECT lakets._cdf_committed_lsn($1)::text AS lsn',
    [t.shadow],
  );
  if (rows[0]?.lsn == null) {
    return `Lakehouse Sync reports no committed LSN for the shadow ${t.shadow} (not STREAMING, or wal2delta unreadable for this role): fail-closed`;
  }
  return 'no active chunk is older than the tiering policy';
}

/** The reason LakeTS gave for this chunk, without its "lakets: ... chunk X:" prefix. */
export function reasonFrom(notices: string[], chunk: string): string {
  const marker = `chunk ${chunk}: `;
  for (const n of notices) {
    const at = n.indexOf(marker);
    if (at >= 0) return n.slice(at + marker.length);
  }
  return notices[0] ?? 'LakeTS gave no reason';
}
