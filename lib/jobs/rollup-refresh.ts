// RollUp Refresh. The public job calls refresh_rollup_cascade() once, so one failing RollUp rolls
// back every other refresh of the run. Here the DAG is ordered client-side (Kahn, dependencies
// first, over the registry's depends_on) and each RollUp is refreshed by refresh_rollup() in its
// own transaction: a failure undoes only that RollUp, and everything that depends on it, directly
// or not, is skipped and named. Among the RollUps whose dependencies are done, the least recently
// refreshed goes first. A RollUp counts as refreshed when its last_refreshed_at moved; a skip's
// reason is computed from the registry (the public refresh_rollup says nothing about refresh_lag).
// NULL refresh_lag means "never wait", in a dry run too.
import { quoteIdentifier } from '../identifier.ts';
import { attempt } from './attempt.ts';
import { countItems, defineJob } from './definition.ts';
import type { PreflightContext } from './needs.ts';
import { PayloadError } from './payload.ts';
import type { ItemResult, JobContext, JobLogic } from './types.ts';

interface Node {
  id: number;
  name: string;
  depends_on: number[];
  /** When it was last refreshed (UTC text), NULL if never. */
  last_refreshed_at: string | null;
  refresh_lag: string | null;
  /** refresh_lag has passed (or is NULL: never wait) as of the read: LakeTS will refresh it. */
  due: boolean;
  /** When refresh_lag passes (only when not due). */
  due_at: string | null;
}

export const CYCLE_MESSAGE = 'Circular dependency detected in RollUp DAG';

/** What ordering needs of a RollUp (the DAG check has no refresh times: all count as never refreshed). */
type Ordered = Pick<Node, 'id' | 'name' | 'depends_on'> & { last_refreshed_at?: string | null };

/** Least recently refreshed first (never refreshed first), then by name. */
function urgency(a: Ordered, b: Ordered): number {
  const x = a.last_refreshed_at ?? null;
  const y = b.last_refreshed_at ?? null;
  if (x !== y) {
    if (x === null) return -1;
    if (y === null) return 1;
    // Same session, same (UTC) rendering: the text orders as the time does.
    return x < y ? -1 : 1;
  }
  return a.name.localeCompare(b.name);
}

/**
 * Refresh order over `nodes` (all, or `root` plus everything it depends on), and what a cycle left
 * out: dependencies first, and among the RollUps whose dependencies are done, the least recently
 * refreshed first. A run cut short by its deadline leaves the ones it refreshed stamped, so the
 * next run starts with the ones it did not reach.
 */
export function refreshOrder<N extends Ordered>(nodes: N[], root?: string): { order: N[]; cyclic: N[] } {
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
  const order: N[] = [];
  for (;;) {
    const ready = scope.filter(
      (n) => !done.has(n.id) && n.depends_on.every((d) => done.has(d) || !inScope.has(d)),
    );
    if (ready.length === 0) break;
    const next = ready.reduce((a, b) => (urgency(b, a) < 0 ? b : a));
    done.add(next.id);
    order.push(next);
  }
  return { order, cyclic: scope.filter((n) => !done.has(n.id)) };
}

// Timestamps as UTC text (the session pins TimeZone=UTC), compared as read: no precision is lost.
const NODES_SQL = `
  SELECT id, name, depends_on, last_refreshed_at::text, refresh_lag::text,
         (last_refreshed_at IS NULL OR refresh_lag IS NULL OR last_refreshed_at + refresh_lag <= now()) AS due,
         (last_refreshed_at + refresh_lag)::text AS due_at
    FROM lakets._rollup_registry ORDER BY name`;

/** Why a RollUp that is not due is skipped (the public refresh_rollup says nothing). */
function lagReason(n: Node): string {
  return `refresh_lag ${n.refresh_lag} has not passed since its last refresh at ${n.last_refreshed_at} (due at ${n.due_at})`;
}

const run: JobLogic = async (ctx) => {
  const { rows } = await ctx.db.query<Node & Record<string, unknown>>(NODES_SQL);
  const { order, cyclic } = refreshOrder(rows, ctx.options.rollup);
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
    const done = await attempt(ctx, items, { kind: 'rollup', name: n.name }, () => refresh(ctx, n));
    if (done?.[0]?.outcome === 'failed') blocked.add(n.id);
  }
  return items;
};

/** One RollUp: in a dry run, whether it is due; else refresh_rollup() and what its registry row shows after. */
async function refresh({ db, options }: JobContext, n: Node): Promise<ItemResult> {
  if (options.dryRun) {
    return n.due
      ? { kind: 'rollup', name: n.name, outcome: 'would-refresh' }
      : { kind: 'rollup', name: n.name, outcome: 'skipped', reason: lagReason(n) };
  }
  const result = await db.query<{ refreshed: boolean }>('SELECT lakets.refresh_rollup($1) AS refreshed', [
    n.name,
  ]);
  // Refreshed when its last_refreshed_at moved; the reason for a skip from what was read before.
  const after = await db.query<{ last_refreshed_at: string | null }>(
    'SELECT last_refreshed_at::text FROM lakets._rollup_registry WHERE id = $1',
    [n.id],
  );
  const moved = (after.rows[0]?.last_refreshed_at ?? null) !== n.last_refreshed_at;
  const ours = result.rows[0]?.refreshed === true;
  return {
    kind: 'rollup',
    name: n.name,
    outcome: moved && ours ? 'refreshed' : 'skipped',
    ...(moved && ours ? {} : { reason: skipReason(n, moved, after.rows.length > 0) }),
  };
}

function skipReason(n: Node, moved: boolean, exists: boolean): string {
  if (!exists) return 'the RollUp is no longer in lakets._rollup_registry';
  if (moved) return 'another session refreshed it meanwhile (its last_refreshed_at moved)';
  if (!n.due) return lagReason(n);
  return 'not refreshed although refresh_lag had passed: refresh_rollup declined (another session was refreshing it, for one); the next run retries';
}

/** The names of RollUps on (or behind) a dependency cycle, or none: what refreshOrder cannot order. */
export function findCycle(
  rollups: Array<{ id: number; name: string; depends_on: number[] | null }>,
): string[] {
  return refreshOrder(rollups.map((r) => ({ ...r, depends_on: r.depends_on ?? [] }))).cyclic.map(
    (r) => r.name,
  );
}

/** The RollUp DAG: no cycle, and no dependency on a RollUp that does not exist. */
async function checkDag({ db, add }: PreflightContext): Promise<void> {
  const { rows } = await db.query<{ id: number; name: string; depends_on: number[] | null }>(
    'SELECT id, name, depends_on FROM lakets._rollup_registry ORDER BY name',
  );
  const cycle = findCycle(rows);
  const ids = new Set(rows.map((r) => r.id));
  const dangling = rows.filter((r) => (r.depends_on ?? []).some((d) => !ids.has(d)));
  if (cycle.length > 0)
    add(
      'rollup dag',
      'fail',
      `RollUps ${cycle.map((name) => quoteIdentifier(name)).join(', ')} are on (or behind) a dependency cycle: none of them can be refreshed`,
      'break the cycle: UPDATE lakets._rollup_registry SET depends_on = ... for one of them, or drop_rollup() it',
    );
  else if (dangling.length > 0)
    add(
      'rollup dag',
      'fail',
      `RollUps ${dangling.map((r) => quoteIdentifier(r.name)).join(', ')} depend on RollUp ids that do not exist`,
      'remove the missing ids from lakets._rollup_registry.depends_on',
    );
  else add('rollup dag', 'pass', `${rows.length} RollUps, no dependency cycle`);
}

export const rollupRefresh = defineJob({
  name: 'rollup-refresh',
  title: 'RollUp Refresh',
  summary: 'Refreshes RollUps in dependency order, children before parents',
  schedule: 'cron(0/15 * * * ? *)',
  periodMinutes: 15,
  timeoutMinutes: 10,
  // 3 min + 1 min + 10 min of 15: no Lambda retry (it could not finish before the next run, which
  // is the retry: refreshes are incremental and idempotent).
  delivery: {
    schedulerMaxEventAgeMinutes: 3,
    schedulerRetryAttempts: 3,
    lambdaMaxEventAgeMinutes: 1,
    lambdaRetryAttempts: 0,
  },
  payload: ['dryRun', 'rollup', 'check'],
  lockKey: 4,
  run,
  totals: (items) => ({
    rollupsRefreshed: countItems(items, 'rollup', 'refreshed'),
    rollupsSkipped: countItems(items, 'rollup', 'skipped'),
    rollupsFailed: countItems(items, 'rollup', 'failed'),
  }),
  emits: [
    { name: 'RollupsRefreshed', value: (t) => t.rollupsRefreshed },
    { name: 'RollupsSkipped', value: (t) => t.rollupsSkipped },
    { name: 'RollupsFailed', value: (t) => t.rollupsFailed },
  ],
  counted: 'refreshed',
  needs: {
    functions: [['refresh_rollup', 'text']],
    tables: [
      ['_chronotable_registry', ['SELECT']],
      ['_chunk_metadata', ['SELECT']],
      ['_rollup_registry', ['SELECT', 'UPDATE']],
      ['_rollup_invalidation_log', ['SELECT', 'DELETE']],
    ],
    rollups: true,
    checks: [{ name: 'rollup dag', run: checkDag }],
  },
});
