// Powertools logger and metrics for one job, and the metrics a report turns into.
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Job } from './jobs/definition.ts';
import { METRICS_NAMESPACE, type MetricName } from './jobs/spec.ts';
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

/** Counts invocations that ended as a Lambda error, by stable code (dimensions: service, target, code). */
export const RUN_FAILED_METRIC = 'RunFailed';
export const FAILURE_CODE_DIMENSION = 'code';
/** The dimension naming the target (the database of the estate) of every metric of a run. */
export const TARGET_DIMENSION = 'target';
/**
 * The target of an invocation whose event named none this deployment knows (never a target's name:
 * those begin with a letter or digit). Its metrics and log records carry this instead.
 */
export const UNRESOLVED_TARGET = '-';

/**
 * The one RunFailed datapoint of a failed invocation. The code dimension must not reach the report's
 * metrics, which the alarms read by {service, target} only: with a report's metrics stored it goes out
 * as its own EMF record (single metric, which starts from the default dimensions: the target is added
 * to it here); without (the run never started) it is the invocation's only metric, flushed with the
 * others, so that Metrics has something to publish and no warning to log. `metrics` already carries
 * the target dimension (the handler adds it to every invocation).
 */
export function publishRunFailed(metrics: Metrics, code: string, target: string): void {
  if (metrics.hasStoredMetrics()) {
    const single = metrics.singleMetric();
    single.addDimension(TARGET_DIMENSION, target);
    single.addDimension(FAILURE_CODE_DIMENSION, code);
    single.addMetric(RUN_FAILED_METRIC, MetricUnit.Count, 1);
    return;
  }
  metrics.addDimension(FAILURE_CODE_DIMENSION, code);
  metrics.addMetric(RUN_FAILED_METRIC, MetricUnit.Count, 1);
}

/** The per-run metrics of a job's report (the names the alarms and the dashboard use). */
export function reportMetrics(job: Job, report: JobReport): Partial<Record<MetricName, number>> {
  const n = (key: string) => report.totals[key] ?? 0;
  return {
    // A skipped run read nothing; a dry run changed nothing, so its would-be counts must not feed the
    // alarms (what the role cannot read is true of it too: the job's definition says which metric that is).
    ...(report.status === 'skipped' ? {} : job.workMetrics(report.totals, !report.dryRun)),
    ItemsFailed: n('failed'),
    RunDuration: report.durationMs,
    RunIncomplete: report.status === 'incomplete' ? 1 : 0,
    RunSkipped: report.status === 'skipped' ? 1 : 0,
  };
}

export function publish(metrics: Metrics, job: Job, report: JobReport): void {
  for (const [name, value] of Object.entries(reportMetrics(job, report))) {
    metrics.addMetric(name, name === 'RunDuration' ? MetricUnit.Milliseconds : MetricUnit.Count, value);
  }
}
