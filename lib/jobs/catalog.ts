// The four LakeTS maintenance jobs (shared by the handlers and infra/): names, schedules, delivery windows and the metrics they emit.
// Dependency-free on purpose (no aws-cdk-lib, no node:*), so handlers and lib code can import it too.

export const METRICS_NAMESPACE = 'LakeTS';

/** The dimension Powertools Metrics adds to every metric; its value is POWERTOOLS_SERVICE_NAME (= job name). */
export const SERVICE_DIMENSION = 'service';

export const JOB_NAMES = ['partition-manager', 'tiering', 'retention', 'rollup-refresh'] as const;
export type JobName = (typeof JOB_NAMES)[number];

/**
 * Metric names the handlers emit (Powertools Metrics, namespace LakeTS, dimension service=<job>). CloudWatch
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
 * (checked by test/infra/jobs.test.ts).
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

export const JOBS: Readonly<Record<JobName, JobSpec>> = {
  'partition-manager': {
    name: 'partition-manager',
    title: 'Partition Manager',
    summary: 'Pre-creates future partitions of every chronotable',
    schedule: 'cron(0 */6 * * ? *)',
    periodMinutes: 6 * 60,
    timeoutMinutes: 5,
    // 1 h + 1 h + 5 min of a 6 h period: a lost run is recovered long before partitions run out.
    delivery: {
      schedulerMaxEventAgeMinutes: 60,
      schedulerRetryAttempts: 20,
      lambdaMaxEventAgeMinutes: 60,
      lambdaRetryAttempts: 2,
    },
    metrics: ['PartitionsCreated'],
  },
  tiering: {
    name: 'tiering',
    title: 'Tiering',
    summary: 'Flags cold chunks that are durable in Unity Catalog as tiered',
    schedule: 'cron(0 2 * * ? *)',
    periodMinutes: 24 * 60,
    timeoutMinutes: 15,
    // 2 h + 2 h + 15 min of a day. A late Tiering may overlap Retention (03:00): safe, Retention is gated
    // on UC durability itself and defers what is not yet durable to the next day.
    delivery: {
      schedulerMaxEventAgeMinutes: 120,
      schedulerRetryAttempts: 20,
      lambdaMaxEventAgeMinutes: 120,
      lambdaRetryAttempts: 2,
    },
    metrics: ['ChunksTiered', 'ChunksTieringDeferred', 'SyncStateUnreadable'],
  },
  retention: {
    name: 'retention',
    title: 'Retention',
    summary: 'Drops expired Lakebase partitions once they are durable in Unity Catalog',
    schedule: 'cron(0 3 * * ? *)',
    periodMinutes: 24 * 60,
    timeoutMinutes: 15,
    delivery: {
      schedulerMaxEventAgeMinutes: 120,
      schedulerRetryAttempts: 20,
      lambdaMaxEventAgeMinutes: 120,
      lambdaRetryAttempts: 2,
    },
    metrics: ['ChunksDropped', 'ChunksRetentionDeferred', 'SyncStateUnreadable'],
  },
  'rollup-refresh': {
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
    metrics: ['RollupsRefreshed', 'RollupsSkipped', 'RollupsFailed'],
  },
};

/** Latest a scheduled run can start after its slot, in minutes. */
export function latestStartMinutes(job: JobSpec): number {
  return job.delivery.schedulerMaxEventAgeMinutes + job.delivery.lambdaMaxEventAgeMinutes;
}

/** Every metric a job emits, in dashboard order. */
export function jobMetrics(job: JobSpec): readonly MetricName[] {
  return [...job.metrics, ...OUTCOME_METRICS, 'RunDuration'];
}
