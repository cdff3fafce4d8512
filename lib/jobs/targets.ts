// Which ChronoTables a run covers, read from the LakeTS registries (only the columns of
// docs/lakets-contract.md, "What the jobs read", so the jobs work against the public LakeTS too).

import type { Queryable } from '../queryable.ts';
import { formatTable, PayloadError } from './payload.ts';
import type { ItemResult, JobContext, TableRef } from './types.ts';

export interface ChronoTable extends TableRef {
  id: number;
  shadow: string | null;
  /** Whether the table has an enabled policy of the kinds the job asked about. */
  hasPolicy: boolean;
  /** Latest `last_run_at` of those policies: when the job last processed the table (NULL: never). */
  lastRunAt: Date | null;
  name: string;
}

/**
 * All ChronoTables (ordered by name), with `hasPolicy` set for the given policy kinds, limited to
 * `only` when the payload named tables. A named table that is not a ChronoTable is bad input.
 */
export async function chronoTables(
  db: Queryable,
  policyKinds: string[],
  only?: TableRef[],
): Promise<ChronoTable[]> {
  const { rows } = await db.query<{
    id: number;
    schema_name: string;
    table_name: string;
    shadow_table_name: string | null;
    has_policy: boolean;
    last_run_at: Date | null;
  }>(
    `SELECT r.id, r.schema_name, r.table_name, r.shadow_table_name, p.has_policy, p.last_run_at
       FROM lakets._chronotable_registry r
       CROSS JOIN LATERAL (
         SELECT count(*) > 0 AS has_policy, max(p.last_run_at) AS last_run_at
           FROM lakets._policy_registry p
          WHERE p.chronotable_id = r.id AND p.enabled AND p.policy_type = ANY ($1::text[])) p
      ORDER BY r.schema_name, r.table_name`,
    [policyKinds],
  );
  const all = rows.map((r) => {
    const ref = { schema: r.schema_name, table: r.table_name };
    return {
      ...ref,
      id: r.id,
      shadow: r.shadow_table_name,
      hasPolicy: r.has_policy,
      lastRunAt: r.last_run_at,
      name: formatTable(ref),
    };
  });
  if (!only) return all;
  const byKey = new Map(all.map((t) => [JSON.stringify([t.schema, t.table]), t]));
  return only.map((ref) => {
    const found = byKey.get(JSON.stringify([ref.schema, ref.table]));
    if (!found)
      throw new PayloadError(
        `${formatTable(ref)} is not a ChronoTable in this database (see lakets._chronotable_registry)`,
      );
    return found;
  });
}

/**
 * The ChronoTables with an enabled policy of `kinds` (Tiering, Retention), least recently run first
 * (never run first, then by name): a run cut short by its deadline leaves the tables it did reach
 * stamped, so the next run starts with the ones it did not, and no table starves. A table the
 * payload named that has no such policy is reported as skipped rather than silently left out.
 */
export async function policyTables(
  ctx: JobContext,
  kinds: string[],
  items: ItemResult[],
): Promise<ChronoTable[]> {
  const tables = await chronoTables(ctx.db, kinds, ctx.options.tables);
  for (const t of tables) {
    if (!t.hasPolicy && ctx.options.tables) {
      items.push({
        kind: 'table',
        name: t.name,
        outcome: 'skipped',
        reason: `no enabled ${kinds.join(' or ')} policy`,
      });
    }
  }
  return tables.filter((t) => t.hasPolicy).sort(byLeastRecentlyRun);
}

/** Never run first, then the oldest run; ties keep their order (by name). */
export function byLeastRecentlyRun(a: { lastRunAt: Date | null }, b: { lastRunAt: Date | null }): number {
  if (a.lastRunAt === null || b.lastRunAt === null)
    return (a.lastRunAt === null ? 0 : 1) - (b.lastRunAt === null ? 0 : 1);
  return a.lastRunAt.getTime() - b.lastRunAt.getTime();
}
