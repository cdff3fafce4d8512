// A time budget from the Lambda context: no new item starts unless the time left covers a fixed
// reserve (to log the report and close the connection) plus the slowest item seen so far.
import type { Budget, ItemKind, ItemResult } from './types.ts';

export function timeBudget(remainingMs: () => number, reserveMs = 15_000): Budget {
  let slowest = 0;
  return {
    canStart: () => remainingMs() > reserveMs + slowest,
    spent: (ms) => {
      slowest = Math.max(slowest, ms);
    },
  };
}

/** For runs with no deadline (the CLI, the demo, tests). */
export const unlimited: Budget = { canStart: () => true, spent: () => {} };

/** False, after recording the item as not started, when the budget leaves no time to start it. */
export function mayStart(budget: Budget, items: ItemResult[], kind: ItemKind, name: string): boolean {
  if (budget.canStart()) return true;
  items.push({ kind, name, outcome: 'not-started', reason: 'time budget exhausted' });
  return false;
}
