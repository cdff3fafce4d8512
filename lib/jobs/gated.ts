// What Tiering and Retention share as jobs: both act on chunks behind the durability gate (proof from
// Lakehouse Sync's state), so they count, measure and need the same things, and run daily.
import { countItems } from './definition.ts';
import type { Delivery, MetricName } from './spec.ts';
import { unreadableItems } from './sync-state.ts';
import type { ItemOutcome, ItemResult } from './types.ts';

/** 2 h + 2 h + 15 min of a day: a lost run is retried well before the next. */
export const DAILY_DELIVERY: Delivery = {
  schedulerMaxEventAgeMinutes: 120,
  schedulerRetryAttempts: 20,
  lambdaMaxEventAgeMinutes: 120,
  lambdaRetryAttempts: 2,
};

/**
 * The totals, metrics and needs of a gated job: the chunks it acted on (`acted`), those the gate
 * deferred, and the synced tables whose Sync state the role cannot read; `calls` are its own LakeTS
 * functions (the gate's _cdf_committed_lsn is added).
 */
export function gatedParts<K extends string>(
  acted: { total: K; outcome: ItemOutcome; metric: MetricName },
  deferredMetric: MetricName,
  calls: ReadonlyArray<readonly [string, string]>,
) {
  type Totals = Record<K | 'chunksDeferred' | 'syncStateUnreadable', number>;
  return {
    totals: (items: ItemResult[]): Totals =>
      ({
        [acted.total]: countItems(items, 'chunk', acted.outcome),
        chunksDeferred: countItems(items, 'chunk', 'deferred'),
        syncStateUnreadable: unreadableItems(items),
      }) as Totals,
    emits: [
      { name: acted.metric, value: (t: Totals) => t[acted.total] },
      { name: deferredMetric, value: (t: Totals) => t.chunksDeferred },
      { name: 'SyncStateUnreadable' as const, value: (t: Totals) => t.syncStateUnreadable, dryRunToo: true },
    ],
    needs: {
      functions: [...calls, ['_cdf_committed_lsn', 'text'] as const],
      tables: [
        ['_chronotable_registry', ['SELECT']],
        ['_chunk_metadata', ['SELECT', 'UPDATE']],
        ['_policy_registry', ['SELECT', 'UPDATE']],
      ] as const,
      chronoTables: true,
      syncState: true,
    },
  };
}
