// Powertools logger and metrics for one job, and the metrics a report turns into.
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { METRICS_NAMESPACE, type MetricName } from './jobs/catalog.ts';
import type { JobName, JobReport } from './jobs/types.ts';

export interface Observability {
  logger: Logger;
  metrics: Metrics;
}

export function observability(job: JobName): Observability {
  const logger = new Logger({ serviceName: job });
  // Metrics' own warnings (e.g. nothing to publish) go through our logger: JSON records, not plain lines.
  return { logger, metrics: new Metrics({ namespace: METRICS_NAMESPACE, serviceName: job, logger }) };
}

/** Counts invocations that ended as a Lambda error, by stable code (dimensions: service, code). */
export const RUN_FAILED_METRIC = 'RunFailed';
export const FAILURE_CODE_DIMENSION = 'code';

/**
 * The one RunFailed datapoint of a failed invocation. The code dimension must not reach the report's
 * metrics, which the alarms read by {service} only: with a report's metrics stored it goes out as its
 * own EMF record (single metric); without (the run never started) it is the invocation's only metric,
 * flushed with the others, so that Metrics has something to publish and no warning to log.
 */
export function publishRunFailed(metrics: Metrics, code: string): void {
  const target = metrics.hasStoredMetrics() ? metrics.singleMetric() : metrics;
  target.addDimension(FAILURE_CODE_DIMENSION, code);
  target.addMetric(RUN_FAILED_METRIC, MetricUnit.Count, 1);
}

/** The per-run metrics of a report (the names the alarms and the dashboard use). */
export function reportMetrics(report: JobReport): Partial<Record<MetricName, number>> {
  const t = report.totals;
  const n = (key: string) => t[key] ?? 0;
  const byJob: Record<JobName, Partial<Record<MetricName, number>>> = {
    'partition-manager': { PartitionsCreated: n('partitionsCreated') },
    tiering: { ChunksTiered: n('chunksTiered'), ChunksTieringDeferred: n('chunksDeferred') },
    retention: { ChunksDropped: n('chunksDropped'), ChunksRetentionDeferred: n('chunksDeferred') },
    'rollup-refresh': {
      RollupsRefreshed: n('rollupsRefreshed'),
      RollupsSkipped: n('rollupsSkipped'),
      RollupsFailed: n('rollupsFailed'),
    },
  };
  // What the role cannot read is true of a dry run too; a skipped run read nothing.
  const access =
    (report.job === 'tiering' || report.job === 'retention') && report.status !== 'skipped'
      ? { SyncStateUnreadable: n('syncStateUnreadable') }
      : {};
  return {
    // A dry run changed nothing: its would-be counts must not feed the alarms.
    ...(report.dryRun || report.status === 'skipped' ? {} : byJob[report.job]),
    ...access,
    ItemsFailed: n('failed'),
    RunDuration: report.durationMs,
    RunIncomplete: report.status === 'incomplete' ? 1 : 0,
    RunSkipped: report.status === 'skipped' ? 1 : 0,
  };
}

export function publish(metrics: Metrics, report: JobReport): void {
  for (const [name, value] of Object.entries(reportMetrics(report))) {
    metrics.addMetric(name, name === 'RunDuration' ? MetricUnit.Milliseconds : MetricUnit.Count, value);
  }
}
