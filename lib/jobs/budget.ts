// A time budget from the Lambda context: no new item starts unless the time left covers a fixed
// reserve (to log the report and close the connection) plus the slowest item seen so far.
import type { Budget } from './types.ts';

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
