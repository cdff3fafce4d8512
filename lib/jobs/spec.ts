// What a LakeTS job is to infra/ and to the handlers alike: its spec (schedule, delivery window,
// timeout) and the metric vocabulary. Each job fills these in in its own definition (defineJob); the
// catalogue lists the four. Dependency-free on purpose (no aws-cdk-lib, no node:*, no imports).

export const METRICS_NAMESPACE = 'LakeTS';

/** The dimension Powertools Metrics adds to every metric; its value is POWERTOOLS_SERVICE_NAME (= job name). */
export const SERVICE_DIMENSION = 'service';

/** The jobs' names; the catalogue checks at compile time that it lists exactly these. */
export type JobName = 'partition-manager' | 'tiering' | 'retention' | 'rollup-refresh';

/**
 * Metric names the handlers emit (Powertools Metrics, namespace LakeTS, dimensions service=<job> and
 * target=<target name>, `default` for a single-target deployment). CloudWatch
 * matches dimension sets exactly: the alarms and dashboard read {service} only, so a handler that adds
 * other default dimensions would publish metrics they never see.
 */
export const METRIC_NAMES = [
  'PartitionsCreated',
  'ChunksTiered',
  'ChunksTieringDeferred',
  'ChunksDropped',
  'ChunksRetentionDeferred',
  'SyncStateUnreadable',
  'RollupsRefreshed',
  'RollupsSkipped',
  'RollupsFailed',
  'ItemsFailed',
  'RunDuration',
  'RunIncomplete',
  'RunSkipped',
] as const;
export type MetricName = (typeof METRIC_NAMES)[number];

/**
 * Unit of each metric as emitted; everything is a count except RunDuration. SyncStateUnreadable
 * (Tiering, Retention) counts the synced tables for which nothing could be proven because the job
 * role cannot read Lakehouse Sync's state (wal2delta).
 */
export const METRIC_UNITS: Readonly<Record<MetricName, 'Count' | 'Milliseconds'>> = {
  PartitionsCreated: 'Count',
  ChunksTiered: 'Count',
  ChunksTieringDeferred: 'Count',
  ChunksDropped: 'Count',
  ChunksRetentionDeferred: 'Count',
  SyncStateUnreadable: 'Count',
  RollupsRefreshed: 'Count',
  RollupsSkipped: 'Count',
  RollupsFailed: 'Count',
  ItemsFailed: 'Count',
  RunDuration: 'Milliseconds',
  RunIncomplete: 'Count',
  RunSkipped: 'Count',
};

/** Emitted by every job: how the run went. */
export const OUTCOME_METRICS = [
  'RunIncomplete',
  'RunSkipped',
  'ItemsFailed',
] as const satisfies readonly MetricName[];

/**
 * How a scheduled run is delivered. Scheduler invokes Lambda asynchronously: its retry policy only covers
 * the Invoke call (then its DLQ); a failing run is retried by Lambda's async config (then the failure queue).
 * Worst case a run starts `schedulerMaxEventAge + lambdaMaxEventAge` after its slot and ends one `timeout`
 * later; that must fit in the period, so a missed run is retried but never overlaps the next scheduled run
 * (checked by test/infra/catalog.test.ts).
 */
export interface Delivery {
  /** EventBridge Scheduler keeps retrying a failed Invoke call (throttling, service errors) this long. 1..1440. */
  readonly schedulerMaxEventAgeMinutes: number;
  /** Cap on those Invoke retries; the age above is the bound that matters. 0..185. */
  readonly schedulerRetryAttempts: number;
  /** Lambda keeps an accepted async event (queued or between retries) this long. 1..360. */
  readonly lambdaMaxEventAgeMinutes: number;
  /** Lambda re-runs a failed (error or timeout) invocation this often. 0..2. */
  readonly lambdaRetryAttempts: number;
}

export interface JobSpec {
  readonly name: JobName;
  readonly title: string;
  readonly summary: string;
  /** EventBridge Scheduler cron expression, evaluated in the configured time zone. */
  readonly schedule: string;
  readonly periodMinutes: number;
  readonly timeoutMinutes: number;
  readonly delivery: Delivery;
  /** Job-specific metrics, in addition to RunDuration and OUTCOME_METRICS. */
  readonly metrics: readonly MetricName[];
}

/** The fields a manual payload may carry. */
export type PayloadField = 'dryRun' | 'tables' | 'force' | 'rollup' | 'check';

/** Latest a scheduled run can start after its slot, in minutes. */
export function latestStartMinutes(job: JobSpec): number {
  return job.delivery.schedulerMaxEventAgeMinutes + job.delivery.lambdaMaxEventAgeMinutes;
}

/** Every metric a job emits, in dashboard order. */
export function jobMetrics(job: JobSpec): readonly MetricName[] {
  return [...job.metrics, ...OUTCOME_METRICS, 'RunDuration'];
}
