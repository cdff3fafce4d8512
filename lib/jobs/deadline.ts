// A hung statement must not outlive the invocation: Lambda would kill the process before the report,
// the log record and RunFailed exist. Before each item, the session's statement_timeout is capped to
// the time the budget leaves beyond its reserve. It is re-set only when that time has fallen below the
// cap in force (the new cap is 90% of it), so a run makes a few dozen SETs at most, not one per item.
// After the run the session default (10 min, from the connection) comes back.
import type { Budget, Queryable } from './types.ts';

/** A statement always gets this long: the budget's reserve (15 s) absorbs the overrun. */
const MIN_STATEMENT_MS = 5_000;
const capped = new WeakMap<Queryable, number>();

/** Caps statement_timeout for the item about to start, where the budget has a deadline. */
export async function capStatements(db: Queryable, budget: Budget): Promise<void> {
  const limit = budget.statementLimitMs?.();
  if (limit === undefined || limit >= (capped.get(db) ?? Number.POSITIVE_INFINITY)) return;
  const cap = Math.floor(Math.max(MIN_STATEMENT_MS, limit * 0.9));
  await db.query(`SELECT set_config('statement_timeout', $1, false)`, [String(cap)]);
  capped.set(db, cap);
}

/** Gives the session its own statement_timeout back, if a run capped it. */
export async function uncapStatements(db: Queryable): Promise<void> {
  if (!capped.has(db)) return;
  capped.delete(db);
  await db.query('RESET statement_timeout');
}
