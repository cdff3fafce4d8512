// Alarms (to one SNS topic) and the CloudWatch dashboard for the four jobs.
import { Duration } from 'aws-cdk-lib';
import * as cw from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as sns from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import {
  type JobSpec,
  latestStartMinutes,
  METRIC_UNITS,
  METRICS_NAMESPACE,
  type MetricName,
  OUTCOME_METRICS,
  SERVICE_DIMENSION,
} from '../lib/jobs/spec.ts';
import { FAILURE_CODE_DIMENSION, RUN_FAILED_METRIC } from '../lib/observability.ts';
import { type LakeTsConfig, lakebaseTarget } from './config.ts';
import type { LakeTsJob } from './job.ts';

/** Short windows for "something went wrong"; a few minutes is enough for a page, not a flap. */
const FAST_PERIOD = Duration.minutes(5);
/** Retention deferrals must persist this many consecutive days before anyone is paged. */
const DEFERRAL_DAYS = 3;

export interface MonitoringProps {
  readonly config: LakeTsConfig;
  readonly jobs: readonly LakeTsJob[];
  readonly failureQueue: sqs.IQueue;
  readonly schedulerDlq: sqs.IQueue;
}

export function jobMetric(job: JobSpec, name: MetricName, options: cw.MetricOptions = {}): cw.Metric {
  return new cw.Metric({
    namespace: METRICS_NAMESPACE,
    metricName: name,
    dimensionsMap: { [SERVICE_DIMENSION]: job.name },
    statistic: METRIC_UNITS[name] === 'Milliseconds' ? cw.Stats.MAXIMUM : cw.Stats.SUM,
    ...options,
  });
}

/**
 * RunFailed of one job, a line per stable error code (PG_LOGIN_REJECTED, PAYLOAD_INVALID, JOB_FAILED...):
 * why invocations ended as errors, including those that failed before a report existed. The codes are
 * open-ended, so a SEARCH finds every {service, code} series rather than a fixed list.
 */
export function runFailedByCode(job: JobSpec, period: Duration): cw.MathExpression {
  const search = `{${METRICS_NAMESPACE},${SERVICE_DIMENSION},${FAILURE_CODE_DIMENSION}} MetricName="${RUN_FAILED_METRIC}" ${SERVICE_DIMENSION}="${job.name}"`;
  return new cw.MathExpression({
    expression: `SEARCH('${search}', 'Sum', ${period.toSeconds()})`,
    usingMetrics: {},
    label: `${RUN_FAILED_METRIC} \${PROP('Dim.${FAILURE_CODE_DIMENSION}')}`,
    period,
  });
}

/**
 * A run counts as missed when the function saw no invocation for one period plus the delivery window
 * (scheduler + Lambda max event age): a run that is late but still inside its retry window is not missed.
 */
export function missedRunWindow(job: JobSpec): Duration {
  return Duration.minutes(job.periodMinutes + latestStartMinutes(job));
}

export class Monitoring extends Construct {
  readonly topic: sns.ITopic;
  readonly alarms: cw.Alarm[] = [];
  readonly dashboard: cw.Dashboard;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const { config } = props;
    this.topic = this.alarmTopic(config);
    const action = new SnsAction(this.topic);
    const alarm = (alarmId: string, alarmProps: cw.AlarmProps): cw.Alarm => {
      const created = new cw.Alarm(this, alarmId, alarmProps);
      created.addAlarmAction(action);
      created.addOkAction(action);
      this.alarms.push(created);
      return created;
    };
    const name = (suffix: string) => `${config.stackName}-${suffix}`;

    for (const job of props.jobs) {
      const { spec, fn } = job;
      alarm(`${spec.name}-errors`, {
        alarmName: name(`${spec.name}-errors`),
        alarmDescription: `${spec.title} failed (error or timeout). Logs: ${job.logGroup.logGroupName}.`,
        metric: fn.metricErrors({ period: FAST_PERIOD, statistic: cw.Stats.SUM }),
        threshold: 1,
        comparisonOperator: cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cw.TreatMissingData.NOT_BREACHING,
      });
      alarm(`${spec.name}-throttles`, {
        alarmName: name(`${spec.name}-throttles`),
        alarmDescription: `${spec.title} was throttled (account or function concurrency exhausted).`,
        metric: fn.metricThrottles({ period: FAST_PERIOD, statistic: cw.Stats.SUM }),
        threshold: 1,
        comparisonOperator: cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cw.TreatMissingData.NOT_BREACHING,
      });
      const window = missedRunWindow(spec);
      alarm(`${spec.name}-missed-run`, {
        alarmName: name(`${spec.name}-missed-run`),
        alarmDescription: `${spec.title} did not run for ${window.toHumanString()} (schedule ${spec.schedule}, ${config.timezone}). Check the schedule, its DLQ and the throttles alarm.`,
        metric: fn.metricInvocations({ period: window, statistic: cw.Stats.SUM }),
        threshold: 1,
        comparisonOperator: cw.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: 1,
        // No datapoint at all is exactly the failure we look for.
        treatMissingData: cw.TreatMissingData.BREACHING,
      });
      if (spec.metrics.includes('ChunksRetentionDeferred')) {
        alarm(`${spec.name}-deferrals-persist`, {
          alarmName: name(`${spec.name}-deferrals-persist`),
          alarmDescription: `${spec.title} deferred chunks on ${DEFERRAL_DAYS} consecutive days: expired data is not reaching Unity Catalog (sync or Tiering stuck), so Lakebase partitions are kept.`,
          metric: jobMetric(spec, 'ChunksRetentionDeferred', { period: Duration.days(1) }),
          threshold: 0,
          comparisonOperator: cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
          evaluationPeriods: DEFERRAL_DAYS,
          datapointsToAlarm: DEFERRAL_DAYS,
          // A day without a run says nothing about deferrals; the missed-run alarm covers it.
          treatMissingData: cw.TreatMissingData.NOT_BREACHING,
        });
      }
      if (spec.metrics.includes('SyncStateUnreadable')) {
        alarm(`${spec.name}-sync-state-unreadable`, {
          alarmName: name(`${spec.name}-sync-state-unreadable`),
          alarmDescription: `${spec.title} could not read Lakehouse Sync's state (wal2delta) for synced tables, so it proved nothing durable and left their chunks in place. Grant the job role USAGE on schema wal2delta and SELECT on wal2delta.tables (npm run grants); the report's warnings name the missing privilege.`,
          metric: jobMetric(spec, 'SyncStateUnreadable', { period: Duration.days(1) }),
          threshold: 0,
          comparisonOperator: cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
          evaluationPeriods: 1,
          // A day without a run says nothing about access; the missed-run alarm covers it.
          treatMissingData: cw.TreatMissingData.NOT_BREACHING,
        });
      }
    }

    alarm('failure-queue-not-empty', {
      alarmName: name('failure-queue-not-empty'),
      alarmDescription:
        'A job run failed after all its Lambda retries (or expired). The message on the failure queue names the function and the error.',
      metric: props.failureQueue.metricApproximateNumberOfMessagesVisible({
        period: FAST_PERIOD,
        statistic: cw.Stats.MAXIMUM,
      }),
      threshold: 1,
      comparisonOperator: cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cw.TreatMissingData.NOT_BREACHING,
    });
    alarm('scheduler-dlq-not-empty', {
      alarmName: name('scheduler-dlq-not-empty'),
      alarmDescription:
        'EventBridge Scheduler could not invoke a job within its retry policy (permissions, throttling, deleted function). The message attributes carry the error.',
      metric: props.schedulerDlq.metricApproximateNumberOfMessagesVisible({
        period: FAST_PERIOD,
        statistic: cw.Stats.MAXIMUM,
      }),
      threshold: 1,
      comparisonOperator: cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cw.TreatMissingData.NOT_BREACHING,
    });

    this.dashboard = this.buildDashboard(props);
  }

  private alarmTopic(config: LakeTsConfig): sns.ITopic {
    if (config.alarms.kind === 'topic')
      return sns.Topic.fromTopicArn(this, 'AlarmTopic', config.alarms.topicArn);
    const topic = new sns.Topic(this, 'AlarmTopic', {
      displayName: `LakeTS jobs alarms (${config.stackName})`,
      enforceSSL: true,
    });
    if (config.alarms.kind === 'email') topic.addSubscription(new EmailSubscription(config.alarms.email));
    return topic;
  }

  private buildDashboard(props: MonitoringProps): cw.Dashboard {
    const { config } = props;
    const dashboard = new cw.Dashboard(this, 'Dashboard', {
      dashboardName: config.stackName,
      defaultInterval: Duration.days(7),
    });
    dashboard.addWidgets(
      new cw.TextWidget({
        markdown: `# LakeTS jobs: ${lakebaseTarget(config).kind} \`${lakebaseTarget(config).name}\`\nSchedules in ${config.timezone}. One row per job: duration, invocations, outcomes and the work the run did (namespace \`${METRICS_NAMESPACE}\`, dimension \`${SERVICE_DIMENSION}\`).`,
        width: 24,
        height: 2,
      }),
      new cw.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 16, height: 4 }),
      new cw.GraphWidget({
        title: 'Failed runs waiting in queues',
        left: [
          props.failureQueue.metricApproximateNumberOfMessagesVisible({ label: 'failure queue (Lambda)' }),
          props.schedulerDlq.metricApproximateNumberOfMessagesVisible({ label: 'scheduler DLQ' }),
        ],
        width: 8,
        height: 4,
      }),
    );
    for (const { spec, fn } of props.jobs) {
      const period = Duration.minutes(Math.min(spec.periodMinutes, 60));
      const work = spec.metrics.map((m) => jobMetric(spec, m, { period, label: m }));
      dashboard.addWidgets(
        new cw.GraphWidget({
          title: `${spec.title}: duration (ms)`,
          left: [
            fn.metricDuration({ period, statistic: cw.Stats.MAXIMUM, label: 'Lambda max' }),
            fn.metricDuration({ period, statistic: cw.Stats.AVERAGE, label: 'Lambda avg' }),
            jobMetric(spec, 'RunDuration', { period, label: 'RunDuration (handler)' }),
          ],
          leftAnnotations: [{ value: spec.timeoutMinutes * 60_000, label: 'timeout', color: cw.Color.RED }],
          width: 6,
        }),
        new cw.GraphWidget({
          title: `${spec.title}: invocations`,
          left: [
            fn.metricInvocations({ period, label: 'invocations' }),
            fn.metricErrors({ period, label: 'errors' }),
            fn.metricThrottles({ period, label: 'throttles' }),
            runFailedByCode(spec, period),
          ],
          width: 6,
        }),
        new cw.GraphWidget({
          title: `${spec.title}: outcomes`,
          left: OUTCOME_METRICS.map((m) => jobMetric(spec, m, { period, label: m })),
          width: 6,
        }),
        new cw.GraphWidget({ title: `${spec.title}: work done`, left: work, width: 6 }),
      );
    }
    return dashboard;
  }
}
