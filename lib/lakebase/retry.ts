// Backoff for transient Databricks answers (429, 5xx, network): exponential with jitter, and bounded
// in total so that a Lambda invocation fails with a clear error well before its own timeout.

export interface RetryPolicy {
  /** Total time allowed for retrying one call, from its first attempt. */
  budgetMs: number;
  /** Delay cap of the first retry; doubles with each further retry. */
  baseDelayMs: number;
  /** Upper bound of any single delay. */
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { budgetMs: 20_000, baseDelayMs: 250, maxDelayMs: 4_000 };

/**
 * Delay before retry number `retry` (1-based): "equal jitter", half fixed and half random, so retries
 * from many containers spread out but never collapse to zero.
 */
export function backoffDelay(retry: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, retry - 1));
  return Math.round(cap / 2 + (random() * cap) / 2);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
