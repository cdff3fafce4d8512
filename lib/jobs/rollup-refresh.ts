// RollUp Refresh. The public job calls refresh_rollup_cascade() once, so one failing RollUp rolls
// back every other refresh of the run. Here the DAG is ordered client-side (Kahn, dependencies
// first, over the registry's depends_on) and each RollUp is refreshed by refresh_rollup() in its
// own transaction: a failure undoes only that RollUp, and everything that depends on it, directly
// or not, is skipped and named.
import { mayStart } from './budget.ts';
import { errorLine } from './errors.ts';
import { withNotices } from './notices.ts';
import { PayloadError } from './payload.ts';
import type { ItemResult, JobLogic } from './types.ts';

interface Node {
  id: number;
  name: string;
  depends_on: number[];
  due: boolean;
}

export const CYCLE_MESSAGE = 'Circular dependency detected in RollUp DAG';

/** Refresh order over `nodes` (all, or `root` plus everything it depends on), and what a cycle left out. */
export function refreshOrder(nodes: Node[], root?: string): { order: Node[]; cyclic: Node[] } {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  let scope = nodes;
  if (root !== undefined) {
    const start = nodes.find((n) => n.name === root);
    if (!start)
      throw new PayloadError(`RollUp ${JSON.stringify(root)} does not exist (see lakets.show_rollups())`);
    const seen = new Set<number>();
    const stack = [start.id];
    while (stack.length > 0) {
      const id = stack.pop() as number;
      if (seen.has(id)) continue;
      seen.add(id);
      for (const d of byId.get(id)?.depends_on ?? []) stack.push(d);
    }
    scope = nodes.filter((n) => seen.has(n.id));
  }
  const inScope = new Set(scope.map((n) => n.id));
  const done = new Set<number>();
  const order: Node[] = [];
  for (;;) {
    const ready = scope
      .filter((n) => !done.has(n.id) && n.depends_on.every((d) => done.has(d) || !inScope.has(d)))
      .sort((a, b) => a.name.localeCompare(b.name));
    if (ready.length === 0) break;
    for (const n of ready) {
      done.add(n.id);
      order.push(n);
    }
  }
  return { order, cyclic: scope.filter((n) => !done.has(n.id)) };
}

export const rollupRefresh: JobLogic = async ({ db, options, budget }) => {
  const { rows } = await db.query<Node & Record<string, unknown>>(
    `SELECT id, name, depends_on,
            (last_refreshed_at IS NULL OR last_refreshed_at + refresh_lag <= now()) AS due
       FROM lakets._rollup_registry ORDER BY name`,
  );
  const { order, cyclic } = refreshOrder(rows, options.rollup);
  const items: ItemResult[] = cyclic.map((n) => ({
    kind: 'rollup',
    name: n.name,
    outcome: 'failed',
    reason: `${CYCLE_MESSAGE}: ${cyclic.map((c) => c.name).join(', ')} are in or behind a cycle of depends_on`,
  }));
  const byId = new Map(rows.map((n) => [n.id, n.name]));
  const blocked = new Set<number>(cyclic.map((n) => n.id));
  for (const n of order) {
    const blockers = n.depends_on.filter((d) => blocked.has(d)).map((d) => byId.get(d) ?? String(d));
    if (blockers.length > 0) {
      blocked.add(n.id);
      items.push({
        kind: 'rollup',
        name: n.name,
        outcome: 'skipped',
        reason: `depends on ${blockers.join(', ')}, which failed (or depends on a failure)`,
      });
      continue;
    }
    if (!mayStart(budget, items, 'rollup', n.name)) continue;
    if (options.dryRun) {
      items.push(
        n.due
          ? { kind: 'rollup', name: n.name, outcome: 'would-refresh' }
          : {
              kind: 'rollup',
              name: n.name,
              outcome: 'skipped',
              reason: 'refresh_lag has not passed since the last refresh',
            },
      );
      continue;
    }
    const started = Date.now();
    try {
      const { result, notices } = await withNotices(db, () =>
        db.query<{ refreshed: boolean }>('SELECT lakets.refresh_rollup($1) AS refreshed', [n.name]),
      );
      const refreshed = result.rows[0]?.refreshed === true;
      items.push({
        kind: 'rollup',
        name: n.name,
        outcome: refreshed ? 'refreshed' : 'skipped',
        ...(refreshed
          ? {}
          : { reason: notices[0]?.replace(/^lakets: RollUp .*? skipped: /, '') ?? 'LakeTS gave no reason' }),
        ...(notices.length > 0 ? { notices } : {}),
        durationMs: Date.now() - started,
      });
    } catch (error) {
      blocked.add(n.id);
      items.push({
        kind: 'rollup',
        name: n.name,
        outcome: 'failed',
        reason: errorLine(error),
        durationMs: Date.now() - started,
      });
    }
    budget.spent(Date.now() - started);
  }
  return items;
};
