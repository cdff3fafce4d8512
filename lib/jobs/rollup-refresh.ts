// RollUp Refresh. The public job calls refresh_rollup_cascade() once, so one failing RollUp rolls
// back every other refresh of the run. Here the DAG is ordered client-side (Kahn, dependencies
// first, over the registry's depends_on) and each RollUp is refreshed by refresh_rollup() in its
// own transaction: a failure undoes only that RollUp, and everything that depends on it, directly
// or not, is skipped and named. Among the RollUps whose dependencies are done, the least recently
// refreshed goes first. A RollUp counts as refreshed when its last_refreshed_at moved; a skip's
// reason is computed from the registry (the public refresh_rollup says nothing about refresh_lag).
// NULL refresh_lag means "never wait", in a dry run too.
import { quoteIdentifier } from '../identifier.ts';
import { attempt, decided } from './attempt.ts';
import { countItems, defineJob } from './definition.ts';
import { errorLine } from './errors.ts';
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
  /** How long after the read refresh_lag passes, in ms (only when not due). */
  due_in_ms: number | null;
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
         (last_refreshed_at + refresh_lag)::text AS due_at,
         extract(epoch FROM last_refreshed_at + refresh_lag - now())::float8 * 1000 AS due_in_ms
    FROM lakets._rollup_registry ORDER BY name`;

/** Why a RollUp that is not due is skipped (the public refresh_rollup says nothing). */
function lagReason(n: Node): string {
  return `refresh_lag ${n.refresh_lag} has not passed since its last refresh at ${n.last_refreshed_at} (due at ${n.due_at})`;
}

/** A refresh_rollup() call whose outcome is settled from the registry after all the calls. */
interface Called {
  n: Node;
  /** What refresh_rollup returned. */
  ours: boolean;
  item: ItemResult;
}

/**
 * A run. A RollUp whose refresh_lag has not passed gets no call (refresh_rollup would return FALSE and
 * change nothing; the public one says nothing either): it is skipped with the reason the call would
 * have got. Each due RollUp costs its one refresh_rollup() call; whether its last_refreshed_at moved
 * is read once for all of them after the loop. `everyItem` calls every RollUp as the jobs did before:
 * the reference the equivalence test compares this with.
 */
function refreshRun(everyItem: boolean): JobLogic {
  return async (ctx) => {
    const { rows } = await ctx.db.query<Node & Record<string, unknown>>(NODES_SQL);
    const readAt = Date.now();
    // A manual run naming a RollUp calls it and what it depends on, due or not: LakeTS's own answer
    // (its NOTICE) is what the person asked for.
    const callAll = everyItem || ctx.options.rollup !== undefined;
    const { order, cyclic } = refreshOrder(rows, ctx.options.rollup);
    const items: ItemResult[] = cyclic.map((n) => ({
      kind: 'rollup',
      name: n.name,
      outcome: 'failed',
      reason: `${CYCLE_MESSAGE}: ${cyclic.map((c) => c.name).join(', ')} are in or behind a cycle of depends_on`,
    }));
    const byId = new Map(rows.map((n) => [n.id, n.name]));
    const blocked = new Set<number>(cyclic.map((n) => n.id));
    const called: Called[] = [];
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
      // Not due as read, and refresh_lag has not passed since (a long run re-checks by the clock).
      const waiting = !n.due && n.due_in_ms !== null && Date.now() - readAt < n.due_in_ms;
      if (!ctx.options.dryRun && waiting && !callAll) {
        decided(ctx, items, { kind: 'rollup', name: n.name, outcome: 'skipped', reason: lagReason(n) });
        continue;
      }
      const done = await attempt(ctx, items, { kind: 'rollup', name: n.name }, () => refresh(ctx, n, called));
      if (done?.[0]?.outcome === 'failed') blocked.add(n.id);
    }
    await settle(ctx, called);
    return items;
  };
}

const run = refreshRun(false);

/** The same run calling refresh_rollup for every RollUp: the reference. */
export const runCallingEveryRollup = refreshRun(true);

/**
 * One RollUp: in a dry run, whether it is due; else refresh_rollup(), its outcome settled from the
 * registry after the loop (`refreshed` until then).
 */
async function refresh({ db, options }: JobContext, n: Node, called: Called[]): Promise<ItemResult> {
  if (options.dryRun) {
    return n.due
      ? { kind: 'rollup', name: n.name, outcome: 'would-refresh' }
      : { kind: 'rollup', name: n.name, outcome: 'skipped', reason: lagReason(n) };
  }
  const result = await db.query<{ refreshed: boolean }>('SELECT lakets.refresh_rollup($1) AS refreshed', [
    n.name,
  ]);
  const item: ItemResult = { kind: 'rollup', name: n.name, outcome: 'refreshed' };
  called.push({ n, ours: result.rows[0]?.refreshed === true, item });
  return item;
}

/**
 * Refreshed when refresh_rollup said so and its last_refreshed_at moved (read once, after every call:
 * refresh_rollup stamps only its own RollUp); a skip's reason from what was read before.
 */
async function settle({ db }: JobContext, called: Called[]): Promise<void> {
  if (called.length === 0) return;
  try {
    const { rows } = await db.query<{ id: number; last_refreshed_at: string | null }>(
      'SELECT id, last_refreshed_at::text FROM lakets._rollup_registry WHERE id = ANY ($1::int[])',
      [called.map((c) => c.n.id)],
    );
    const after = new Map(rows.map((r) => [r.id, r.last_refreshed_at]));
    for (const { n, ours, item } of called) {
      const exists = after.has(n.id);
      const moved = exists && (after.get(n.id) ?? null) !== n.last_refreshed_at;
      if (moved && ours) continue;
      item.outcome = 'skipped';
      item.reason = skipReason(n, moved, exists);
    }
  } catch (error) {
    // Never throw past collected items: each says what is unknown.
    const why = `its state after refresh_rollup could not be read: ${errorLine(error)}`;
    for (const { item } of called) Object.assign(item, { outcome: 'failed', reason: why });
  }
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
