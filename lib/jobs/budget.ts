// A time budget from the Lambda context: no new item starts unless the time left covers a fixed
// reserve (to log the report and close the connection) plus the slowest item seen so far.
import type { Budget } from './types.ts';

export function timeBudget(remainingMs: () => number, reserveMs = 15_000): Budget {
  let slowest = 0;
  let left = Number.POSITIVE_INFINITY; // as of the last canStart(): the clock is read once per item
  return {
    canStart: () => {
      left = remainingMs();
      return left > reserveMs + slowest;
    },
    spent: (ms) => {
      slowest = Math.max(slowest, ms);
    },
    statementLimitMs: () => left - reserveMs,
  };
}

/** For runs with no deadline (the CLI, the demo, tests). */
export const unlimited: Budget = { canStart: () => true, spent: () => {} };
