// The shapes every job shares: what a run is asked to do, and the report it returns.
import type { Queryable } from '../queryable.ts';
import type { NoticeLog } from './notices.ts';
import type { JobName } from './spec.ts';

export type { JobName };

export interface TableRef {
  schema: string;
  table: string;
}

/** What a run is asked to do, parsed once from the invocation payload (see payload.ts). */
export interface JobOptions {
  dryRun: boolean;
  /** Limit to these tables (Partition Manager, Tiering, Retention). */
  tables?: TableRef[];
  /** Cascade from this RollUp: it and what it depends on (RollUp Refresh). */
  rollup?: string;
  /** Retention only, and only with `tables`: skip the durability gate. */
  force: boolean;
  /** Run no job: check what the job needs and report it (lib/jobs/check.ts). */
  check?: true;
  /** Where the run came from, for the log. */
  trigger: 'schedule' | 'manual';
}

export type ItemKind = 'table' | 'chunk' | 'rollup';

export type ItemOutcome =
  | 'created'
  | 'unchanged'
  | 'tiered'
  | 'deferred'
  | 'dropped'
  | 'refreshed'
  | 'skipped'
  | 'failed'
  | 'not-started'
  | 'would-create'
  | 'would-tier'
  | 'would-drop'
  | 'would-refresh';

export interface ItemResult {
  kind: ItemKind;
  /** Schema-qualified table or chunk name, or RollUp name. */
  name: string;
  outcome: ItemOutcome;
  /** Why (deferred, skipped, failed), in one line. */
  reason?: string;
  /** How many (partitions created, chunks dropped), where that is the item's result. */
  count?: number;
  /**
   * NOTICE and WARNING text LakeTS raised while this item ran, verbatim. Evidence for a person:
   * outcomes and reasons are decided from state, never from this text (its wording is no contract).
   */
  notices?: string[];
  /** Set when the item could not be decided for a reason the operator must fix (counted by a metric). */
  warning?: ItemWarning;
  /** Partition Manager, for a table whose chunks are not on the UTC grid: which grid it kept. */
  grid?: string;
  durationMs?: number;
}

/** Why nothing could be proven for an item; `code` names the metric that counts such items. */
export interface ItemWarning {
  code: 'SyncStateUnreadable';
  message: string;
}

export type RunStatus = 'ok' | 'warning' | 'partial' | 'failed' | 'skipped' | 'incomplete' | 'dry-run';

export interface JobReport {
  job: JobName;
  /** The target (database of the estate) the run was for; set by the handler (`default`: single target). */
  target?: string;
  status: RunStatus;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  trigger: JobOptions['trigger'];
  dryRun: boolean;
  /** Why the run as a whole was skipped or failed, in one line. */
  reason?: string;
  items: ItemResult[];
  totals: Record<string, number>;
  /** Items a budget-limited run did not start: the next run picks them up. */
  leftForNextRun?: string[];
  /** What kept the run from proving anything for some items (distinct item warnings), with the fix. */
  warnings?: string[];
  /** NOTICE/WARNING text the server sent outside any item, verbatim (evidence, like an item's). */
  notices?: string[];
}

/** What a job's logic gets: a connected client (autocommit), its options, a time budget, the run's NOTICEs. */
export interface JobContext {
  db: Queryable;
  options: JobOptions;
  budget: Budget;
  notices: NoticeLog;
}

export interface Budget {
  /** False when too little time is left to start another item. */
  canStart(): boolean;
  /** Records how long an item took (the reserve grows with the slowest item). */
  spent(durationMs: number): void;
  /** How long a statement of the item just allowed to start may run; none without a deadline. */
  statementLimitMs?(): number;
}

/** One job's logic: attempts every item and returns them; totals are derived by the runner. */
export type JobLogic = (ctx: JobContext) => Promise<ItemResult[]>;
