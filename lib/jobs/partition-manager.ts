// Partition Manager: lakets._ensure_partitions() for every ChronoTable (or the named ones).
import { mayStart } from './budget.ts';
import { errorLine } from './errors.ts';
import { withNotices } from './notices.ts';
import { chronoTables } from './targets.ts';
import type { ItemResult, JobLogic } from './types.ts';

// What _ensure_partitions would create with its defaults (past 1, future 3), for a dry run.
const MISSING_SQL = `
  SELECT count(*)::int AS missing
    FROM lakets._chronotable_registry r,
         LATERAL (SELECT date_bin(r.chunk_interval, now(), timestamptz '2000-01-01 00:00:00+00') AS base) b,
         generate_series(b.base - r.chunk_interval, b.base + 3 * r.chunk_interval, r.chunk_interval) s
   WHERE r.id = $1
     AND NOT EXISTS (SELECT 1 FROM lakets._chunk_metadata m
                      WHERE m.chronotable_id = r.id AND m.range_start = s AND m.status <> 'dropped')`;

export const partitionManager: JobLogic = async ({ db, options, budget }) => {
  const items: ItemResult[] = [];
  for (const t of await chronoTables(db, [], options.tables)) {
    if (!mayStart(budget, items, 'table', t.name)) continue;
    const started = Date.now();
    try {
      if (options.dryRun) {
        const { rows } = await db.query<{ missing: number }>(MISSING_SQL, [t.id]);
        const missing = rows[0]?.missing ?? 0;
        items.push({
          kind: 'table',
          name: t.name,
          outcome: missing > 0 ? 'would-create' : 'unchanged',
          count: missing,
        });
      } else {
        const { result, notices } = await withNotices(db, () =>
          db.query<{ created: number }>(
            'SELECT lakets._ensure_partitions(p_chronotable_id => $1) AS created',
            [t.id],
          ),
        );
        const created = Number(result.rows[0]?.created ?? 0);
        items.push({
          kind: 'table',
          name: t.name,
          outcome: created > 0 ? 'created' : 'unchanged',
          count: created,
          ...(notices.length > 0 ? { notices } : {}),
        });
      }
    } catch (error) {
      items.push({ kind: 'table', name: t.name, outcome: 'failed', reason: errorLine(error) });
    }
    const last = items.at(-1);
    if (last) last.durationMs = Date.now() - started;
    budget.spent(Date.now() - started);
  }
  return items;
};
