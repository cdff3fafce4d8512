// A hung statement must not outlive the invocation: Lambda would kill the process before the report,
// the log record and RunFailed exist. Before each item, the session's statement_timeout is capped to
// the time the budget leaves beyond its reserve. It is re-set only when that time has fallen below the
// cap in force (the new cap is 90% of it), so a run makes a few dozen SETs at most, not one per item;
// never above the session's own timeout (10 min on the jobs' connections), which comes back after the run.
import type { Queryable } from '../queryable.ts';
import type { Budget } from './types.ts';

/** A statement always gets this long: the budget's reserve (15 s) absorbs the overrun. */
const MIN_STATEMENT_MS = 5_000;
// Per session: the timeout in force (ms, Infinity for none) and whether this run changed it.
const inForce = new WeakMap<Queryable, { ms: number; changed: boolean }>();

/** Caps statement_timeout for the item about to start, where the budget has a deadline. */
export async function capStatements(db: Queryable, budget: Budget): Promise<void> {
  const limit = budget.statementLimitMs?.();
  if (limit === undefined) return;
  let current = inForce.get(db);
  if (!current) {
    const { rows } = await db.query<{ ms: number }>(
      `SELECT setting::int AS ms FROM pg_settings WHERE name = 'statement_timeout'`,
    );
    const ms = rows[0]?.ms ?? 0;
    current = { ms: ms > 0 ? ms : Number.POSITIVE_INFINITY, changed: false };
    inForce.set(db, current);
  }
  if (limit >= current.ms) return;
  const cap = Math.floor(Math.max(MIN_STATEMENT_MS, limit * 0.9));
  if (cap >= current.ms) return;
  await db.query(`SELECT set_config('statement_timeout', $1, false)`, [String(cap)]);
  inForce.set(db, { ms: cap, changed: true });
}

/** Gives the session its own statement_timeout back, if a run capped it. */
export async function uncapStatements(db: Queryable): Promise<void> {
  const current = inForce.get(db);
  inForce.delete(db);
  if (current?.changed) await db.query('RESET statement_timeout');
}
