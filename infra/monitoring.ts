// Alarms (to one SNS topic) and the CloudWatch dashboard for the four jobs. docs/alarms.md is the runbook.
import { ArnFormat, Aws, Duration, Stack } from 'aws-cdk-lib';
import * as cw from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sns from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { DEFAULT_TARGET } from '../lib/estate.ts';
import {
  type JobSpec,
  latestStartMinutes,
  METRIC_UNITS,
  METRICS_NAMESPACE,
  type MetricName,
  OUTCOME_METRICS,
  SERVICE_DIMENSION,
} from '../lib/jobs/spec.ts';
import { FAILURE_CODE_DIMENSION, RUN_FAILED_METRIC, TARGET_DIMENSION } from '../lib/observability.ts';
import type { AlarmTarget } from './config.ts';
import type { LakeTsJob } from './job.ts';
import { flexibleWindowMinutes } from './schedule.ts';

/** Retention deferrals must persist this many consecutive days before anyone is paged. */
const DEFERRAL_DAYS = 3;
/** A failed run landing on a queue: one notification per hour with new messages, however many arrive. */
const QUEUE_PERIOD = Duration.hours(1);
/** EventBridge Scheduler invokes a target up to about a minute after its slot (FlexibleTimeWindow OFF). */
const SCHEDULER_JITTER_MINUTES = 1;

export interface MonitoringProps {
  /** Names the alarms and the dashboard (`<namePrefix>-...`). */
  readonly namePrefix: string;
  readonly alarms: AlarmTarget;
  /** The daily jobs' default time zone, for the dashboard's text. */
  readonly timezone: string;
  /** What is maintained, for the dashboard's title, e.g. "project `demo`" or "3 targets". */
  readonly title: string;
  /**
   * An estate (targets other than the single `default` one): each job also gets a failed-run alarm whose
   * contributors are the targets, the missed-run window includes the flexible window, and the dashboard
   * breaks runs down by target.
   */
  readonly estate: boolean;
  readonly jobs: readonly LakeTsJob[];
  readonly failureQueue: sqs.IQueue;
  readonly schedulerDlq: sqs.IQueue;
}

/**
 * One job's metric of one target. The runtime publishes every metric with {service, target} (`default`
 * for a single-target deployment), and CloudWatch matches dimension sets exactly.
 */
export function jobMetric(
  job: JobSpec,
  name: MetricName,
  options: cw.MetricOptions = {},
  target: string = DEFAULT_TARGET,
): cw.Metric {
  return new cw.Metric({
    namespace: METRICS_NAMESPACE,
    metricName: name,
    dimensionsMap: { [SERVICE_DIMENSION]: job.name, [TARGET_DIMENSION]: target },
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
  const search = `{${METRICS_NAMESPACE},${SERVICE_DIMENSION},${TARGET_DIMENSION},${FAILURE_CODE_DIMENSION}} MetricName="${RUN_FAILED_METRIC}" ${SERVICE_DIMENSION}="${job.name}"`;
  return new cw.MathExpression({
    expression: `SEARCH('${search}', 'Sum', ${period.toSeconds()})`,
    usingMetrics: {},
    label: `${RUN_FAILED_METRIC} \${PROP('Dim.${TARGET_DIMENSION}')} \${PROP('Dim.${FAILURE_CODE_DIMENSION}')}`,
    period,
  });
}

/**
 * The window in which a healthy job's next invocation is certainly visible: its period, the delivery window
 * (a run late but inside its retries is not missed), the scheduler's jitter, and its timeout, because Lambda
 * publishes Invocations when an invocation ends, timestamped at its start.
 */
export function missedRunWindow(job: JobSpec, flexibleWindowMinutes = 0): Duration {
  return Duration.minutes(
    job.periodMinutes +
      latestStartMinutes(job) +
      SCHEDULER_JITTER_MINUTES +
      flexibleWindowMinutes +
      job.timeoutMinutes,
  );
}

/**
 * The missed-run alarm's shape: the window cut into periods (1 minute, or 1 hour past a day, as CloudWatch
 * allows at most a day of 1-minute periods), plus one period for their alignment; ALARM only when every one
 * of them had no invocation.
 */
export function missedRunAlarmShape(
  job: JobSpec,
  flexibleWindowMinutes = 0,
): { period: Duration; evaluationPeriods: number } {
  const minutes = missedRunWindow(job, flexibleWindowMinutes).toMinutes();
  const periodMinutes = minutes + 1 <= 24 * 60 ? 1 : 60;
  return {
    period: Duration.minutes(periodMinutes),
    evaluationPeriods: Math.ceil(minutes / periodMinutes) + 1,
  };
}

/**
 * The period of a job's errors and throttles alarms: its own period, at most an hour. Lambda publishes
 * Errors and Throttles with every invocation (0 or 1), timestamped at its start; a run's datapoint lands
 * in the period it started in, published before that period ends (delivery window + timeout fit in the
 * job's period: test/infra/catalog.test.ts).
 */
export function outcomePeriod(job: JobSpec): Duration {
  return Duration.minutes(Math.min(job.periodMinutes, 60));
}

/** Metrics Insights caps a query at 500 series (more is PARTIAL_DATA in an alarm): the worst 500 first. */
const INSIGHTS_SERIES = 500;

/** A job's metric per target, as a Metrics Insights query (one series per target). */
function byTarget(
  job: JobSpec,
  metric: string,
  stat: 'SUM' | 'COUNT' | 'MAX',
  period: Duration,
): cw.MathExpression {
  return new cw.MathExpression({
    expression: `SELECT ${stat}(${metric}) FROM "${METRICS_NAMESPACE}" WHERE ${SERVICE_DIMENSION} = '${job.name}' GROUP BY ${TARGET_DIMENSION} ORDER BY ${stat}() DESC LIMIT ${INSIGHTS_SERIES}`,
    usingMetrics: {},
    label: metric,
    period,
  });
}

/** A job's metric over every target of an estate (Metrics Insights aggregates the {service, target} series). */
function allTargets(job: JobSpec, metric: MetricName, period: Duration): cw.MathExpression {
  const stat = METRIC_UNITS[metric] === 'Milliseconds' ? 'MAX' : 'SUM';
  return new cw.MathExpression({
    expression: `SELECT ${stat}(${metric}) FROM "${METRICS_NAMESPACE}" WHERE ${SERVICE_DIMENSION} = '${job.name}'`,
    usingMetrics: {},
    label: metric,
    period,
  });
}

/** RunFailed of one job by target, whatever the code: the failed-targets alarm's query. */
export function runFailedByTarget(job: JobSpec, period: Duration): cw.MathExpression {
  return byTarget(job, RUN_FAILED_METRIC, 'SUM', period);
}

/** The name of a target's own missed-run alarm for a job (the topic policy allows them by this shape). */
export function targetMissedRunAlarmName(namePrefix: string, job: string, target: string): string {
  return `${namePrefix}-${job}-missed-run-${target}`;
}

export class Monitoring extends Construct {
  readonly topic: sns.ITopic;
  readonly alarms: cw.Alarm[] = [];
  /** An estate's missed-run alarm of each (target, job) on the job's own schedule (addTargetMissedRun). */
  readonly targetAlarms: cw.Alarm[] = [];
  readonly dashboard: cw.Dashboard;
  readonly #props: MonitoringProps;
  readonly #action: SnsAction;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    this.#props = props;
    this.topic = this.alarmTopic(props);
    const action = new SnsAction(this.topic);
    this.#action = action;
    const alarm = (alarmId: string, alarmProps: cw.AlarmProps): cw.Alarm => {
      const created = new cw.Alarm(this, alarmId, alarmProps);
      created.addAlarmAction(action);
      created.addOkAction(action);
      this.alarms.push(created);
      return created;
    };
    const name = (suffix: string) => `${props.namePrefix}-${suffix}`;

    for (const job of props.jobs) {
      const { spec, fn } = job;
      // Errors: the state is the outcome of the latest run (Lambda publishes Errors 0 or 1 with every
      // invocation). A period without a run says nothing (ignore keeps the state): a job failing every run
      // stays in ALARM (one notification), a healthy one stays OK, and the next clean run brings the OK.
      const outcome = outcomePeriod(spec);
      alarm(`${spec.name}-errors`, {
        alarmName: name(`${spec.name}-errors`),
        alarmDescription: `${spec.title} failed (error or timeout); OK again after a run without error. Logs: ${job.logGroup.logGroupName}. Runbook: docs/alarms.md.`,
        metric: fn.metricErrors({ period: outcome, statistic: cw.Stats.SUM }),
        threshold: 1,
        comparisonOperator: cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cw.TreatMissingData.IGNORE,
      });
      alarm(`${spec.name}-throttles`, {
        alarmName: name(`${spec.name}-throttles`),
        alarmDescription: `${spec.title} was throttled (account or function concurrency exhausted). Runbook: docs/alarms.md.`,
        metric: fn.metricThrottles({ period: outcome, statistic: cw.Stats.SUM }),
        threshold: 1,
        comparisonOperator: cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        // Throttles is not documented as published when nothing is throttled, so no data means none: a
        // sub-daily job throttled on every run fills every period (one ALARM); an hourly-or-rarer job
        // notifies once per throttled run.
        treatMissingData: cw.TreatMissingData.NOT_BREACHING,
      });
      const flexible = props.estate ? flexibleWindowMinutes(spec) : 0;
      const window = missedRunWindow(spec, flexible);
      const shape = missedRunAlarmShape(spec, flexible);
      const plans = [...job.plans.values()];
      const when =
        plans.length === 1 && plans[0]
          ? `schedule ${plans[0].expression} in ${plans[0].timezone}`
          : `${plans.length} schedules, one per target`;
      // Its window is the job's own period: a job no target runs on the job's own schedule (all disabled,
      // or every one on an override of its own) has no missed-run alarm, rather than one always in ALARM.
      if (job.onJobSchedule.size > 0)
        alarm(`${spec.name}-missed-run`, {
          alarmName: name(`${spec.name}-missed-run`),
          alarmDescription: `${spec.title} did not start for ${window.toHumanString()} (${when}). Check the schedule, the scheduler DLQ and the throttles alarm. Runbook: docs/alarms.md.`,
          metric: fn.metricInvocations({ period: shape.period, statistic: cw.Stats.SUM }),
          threshold: 1,
          comparisonOperator: cw.ComparisonOperator.LESS_THAN_THRESHOLD,
          evaluationPeriods: shape.evaluationPeriods,
          datapointsToAlarm: shape.evaluationPeriods,
          // No datapoint at all is exactly the failure we look for; one invocation anywhere in the window is OK.
          treatMissingData: cw.TreatMissingData.BREACHING,
        });
      if (props.estate) {
        // One alarm per job for every target: a Metrics Insights query grouped by target is a
        // multi-time-series alarm, each target a contributor, and the notification names the ones in ALARM.
        alarm(`${spec.name}-failed-targets`, {
          alarmName: name(`${spec.name}-failed-targets`),
          alarmDescription: `${spec.title} failed for a target (RunFailed by target; the contributors in ALARM are the targets, the failure code is in their log records). OK again after a period with no failed run of the target, whether or not it ran: a target still failing raises it again at its next run. Runbook: docs/alarms.md.`,
          metric: runFailedByTarget(spec, outcome),
          threshold: 1,
          comparisonOperator: cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          evaluationPeriods: 1,
          // RunFailed is published only by failed runs: no datapoint is no failure.
          treatMissingData: cw.TreatMissingData.NOT_BREACHING,
        });
      }
      if (props.estate) {
        // Per target, one alarm each: Metrics Insights alarms read only the last 3 hours, so an estate's
        // deferral alarm notifies on a target's first day of deferrals, not after three.
        for (const m of ['ChunksRetentionDeferred', 'SyncStateUnreadable'] as const) {
          if (!spec.metrics.includes(m)) continue;
          alarm(
            `${spec.name}-${m === 'ChunksRetentionDeferred' ? 'deferrals' : 'sync-state-unreadable'}-by-target`,
            {
              alarmName: name(
                `${spec.name}-${m === 'ChunksRetentionDeferred' ? 'deferrals' : 'sync-state-unreadable'}-by-target`,
              ),
              alarmDescription: `${spec.title}: ${m} above 0 for a target (the contributors in ALARM are the targets). Runbook: docs/alarms.md.`,
              metric: byTarget(spec, m, 'MAX', Duration.hours(1)),
              threshold: 0,
              comparisonOperator: cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
              evaluationPeriods: 1,
              // A period without a run says nothing (the missed-run alarm covers it): keep the state.
              treatMissingData: cw.TreatMissingData.IGNORE,
            },
          );
        }
      }
      if (!props.estate && spec.metrics.includes('ChunksRetentionDeferred')) {
        alarm(`${spec.name}-deferrals-persist`, {
          alarmName: name(`${spec.name}-deferrals-persist`),
          alarmDescription: `${spec.title} deferred chunks on ${DEFERRAL_DAYS} consecutive days: expired data is not reaching Unity Catalog (sync or Tiering stuck), so Lakebase partitions are kept.`,
          metric: jobMetric(spec, 'ChunksRetentionDeferred', { period: Duration.days(1) }),
          threshold: 0,
          comparisonOperator: cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
          evaluationPeriods: DEFERRAL_DAYS,
          datapointsToAlarm: DEFERRAL_DAYS,
          // A day without a run says nothing about deferrals (the missed-run alarm covers it): keep the state.
          treatMissingData: cw.TreatMissingData.IGNORE,
        });
      }
      if (!props.estate && spec.metrics.includes('SyncStateUnreadable')) {
        alarm(`${spec.name}-sync-state-unreadable`, {
          alarmName: name(`${spec.name}-sync-state-unreadable`),
          alarmDescription: `${spec.title} could not read Lakehouse Sync's state (wal2delta) for synced tables, so it proved nothing durable and left their chunks in place. Grant the job role USAGE on schema wal2delta and SELECT on wal2delta.tables (npm run grants); the report's warnings name the missing privilege.`,
          metric: jobMetric(spec, 'SyncStateUnreadable', { period: Duration.days(1) }),
          threshold: 0,
          comparisonOperator: cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
          evaluationPeriods: 1,
          // A day without a run says nothing about access (the missed-run alarm covers it): keep the state.
          treatMissingData: cw.TreatMissingData.IGNORE,
        });
      }
    }

    // Each new failed run notifies: the alarms count messages sent to the queue in the last hour, not the
    // messages waiting there (one message left unread would hold the alarm in ALARM and hide later ones).
    alarm('failure-queue-not-empty', {
      alarmName: name('failure-queue-not-empty'),
      alarmDescription:
        'A job run failed after all its Lambda retries (or expired) in the last hour. The message on the failure queue names the function and the error. Runbook: docs/alarms.md.',
      metric: props.failureQueue.metricNumberOfMessagesSent({
        period: QUEUE_PERIOD,
        statistic: cw.Stats.SUM,
      }),
      threshold: 1,
      comparisonOperator: cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cw.TreatMissingData.NOT_BREACHING,
    });
    alarm('scheduler-dlq-not-empty', {
      alarmName: name('scheduler-dlq-not-empty'),
      alarmDescription:
        'EventBridge Scheduler could not invoke a job within its retry policy in the last hour (permissions, throttling, deleted function). The message attributes carry the error. Runbook: docs/alarms.md.',
      metric: props.schedulerDlq.metricNumberOfMessagesSent({
        period: QUEUE_PERIOD,
        statistic: cw.Stats.SUM,
      }),
      threshold: 1,
      comparisonOperator: cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cw.TreatMissingData.NOT_BREACHING,
    });

    if (this.topic instanceof sns.Topic) this.allowCloudWatch(this.topic);
    this.dashboard = this.buildDashboard(props);
  }

  /**
   * An estate target's own missed-run alarm for a job, in `scope` (beside the target's schedule, so
   * that a nested schedule stack holds both): no run of the job reported for the target within the
   * job's missed-run window. RunDuration is published with every run's report, with {service, target}:
   * a run that fails before its report (a refused login) counts as missed, beside the failed-targets
   * alarm. One standard alarm per (target, job), since Metrics Insights alarms read only the last 3
   * hours and a series that stops publishing drops out of their results.
   */
  addTargetMissedRun(scope: Construct, job: LakeTsJob, target: string, scheduleName: string): cw.Alarm {
    const { spec } = job;
    const flexible = flexibleWindowMinutes(spec);
    const shape = missedRunAlarmShape(spec, flexible);
    const window = missedRunWindow(spec, flexible);
    const plan = job.plans.get(target);
    const created = new cw.Alarm(scope, `${target}-${spec.name}-missed-run`, {
      alarmName: targetMissedRunAlarmName(this.#props.namePrefix, spec.name, target),
      alarmDescription: `${spec.title} did not run for target ${target} for ${window.toHumanString()}${plan ? ` (schedule ${plan.expression} in ${plan.timezone})` : ''}: no report (RunDuration) of it. Check its schedule ${scheduleName}, the scheduler DLQ and its failed-targets alarm. Runbook: docs/alarms.md.`,
      metric: jobMetric(
        spec,
        'RunDuration',
        { period: shape.period, statistic: cw.Stats.SAMPLE_COUNT },
        target,
      ),
      threshold: 1,
      comparisonOperator: cw.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: shape.evaluationPeriods,
      datapointsToAlarm: shape.evaluationPeriods,
      treatMissingData: cw.TreatMissingData.BREACHING,
    });
    created.addAlarmAction(this.#action);
    created.addOkAction(this.#action);
    this.targetAlarms.push(created);
    return created;
  }

  /**
   * A topic policy replaces the topic's default one: enforceSSL's Deny alone would let no one publish.
   * CloudWatch publishes an alarm's notification as cloudwatch.amazonaws.com with aws:SourceAccount and
   * aws:SourceArn = the alarm's ARN: allow exactly this stack's alarms, over TLS (the Deny stays).
   */
  private allowCloudWatch(topic: sns.Topic): void {
    const publishBy = (sid: string, sourceArns: Record<string, Record<string, string[]>>) =>
      topic.addToResourcePolicy(
        new iam.PolicyStatement({
          sid,
          principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
          actions: ['sns:Publish'],
          resources: [topic.topicArn],
          conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID }, ...sourceArns },
        }),
      );
    publishBy('AllowThisStacksAlarms', {
      ArnEquals: { 'aws:SourceArn': this.alarms.map((a) => a.alarmArn) },
    });
    if (!this.#props.estate) return;
    // An estate's per-target missed-run alarms, by name (one pattern per job, not thousands of ARNs:
    // a topic policy holds 30 KB). The alarms are created after this policy, beside their schedules.
    const stack = Stack.of(this);
    const patterns = this.#props.jobs.map((j) =>
      stack.formatArn({
        service: 'cloudwatch',
        resource: 'alarm',
        resourceName: targetMissedRunAlarmName(this.#props.namePrefix, j.spec.name, '*'),
        arnFormat: ArnFormat.COLON_RESOURCE_NAME,
      }),
    );
    publishBy('AllowThisStacksTargetAlarms', { ArnLike: { 'aws:SourceArn': patterns } });
  }

  private alarmTopic(props: MonitoringProps): sns.ITopic {
    const { alarms } = props;
    // An existing topic is its owner's: its policy must let cloudwatch.amazonaws.com publish (docs/alarms.md).
    if (alarms.kind === 'topic') return sns.Topic.fromTopicArn(this, 'AlarmTopic', alarms.topicArn);
    const topic = new sns.Topic(this, 'AlarmTopic', {
      displayName: `LakeTS jobs alarms (${props.namePrefix})`,
      enforceSSL: true,
    });
    if (alarms.kind === 'email') topic.addSubscription(new EmailSubscription(alarms.email));
    return topic;
  }

  private buildDashboard(props: MonitoringProps): cw.Dashboard {
    // Dashboards are global per account: the region in the name keeps one stack per region apart.
    const dashboard = new cw.Dashboard(this, 'Dashboard', {
      dashboardName: `${props.namePrefix}-${Aws.REGION}`,
      defaultInterval: Duration.days(7),
    });
    dashboard.addWidgets(
      new cw.TextWidget({
        markdown: `# LakeTS jobs: ${props.title}\nDaily jobs at local time in ${props.timezone}, the others in UTC. One row per job: duration, invocations, outcomes and the work the run did (namespace \`${METRICS_NAMESPACE}\`, dimension \`${SERVICE_DIMENSION}\`).`,
        width: 24,
        height: 2,
      }),
      new cw.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 16, height: 4 }),
      new cw.GraphWidget({
        title: 'Failed runs: sent to the queues, and waiting there',
        left: [
          props.failureQueue.metricNumberOfMessagesSent({ label: 'sent: failure queue (Lambda)' }),
          props.schedulerDlq.metricNumberOfMessagesSent({ label: 'sent: scheduler DLQ' }),
          props.failureQueue.metricApproximateNumberOfMessagesVisible({ label: 'waiting: failure queue' }),
          props.schedulerDlq.metricApproximateNumberOfMessagesVisible({ label: 'waiting: scheduler DLQ' }),
        ],
        width: 8,
        height: 4,
      }),
    );
    for (const { spec, fn } of props.jobs) {
      const period = Duration.minutes(Math.min(spec.periodMinutes, 60));
      const metric = (m: MetricName, label: string = m): cw.IMetric =>
        props.estate ? allTargets(spec, m, period) : jobMetric(spec, m, { period, label });
      const lambdaDuration = [
        fn.metricDuration({ period, statistic: cw.Stats.MAXIMUM, label: 'Lambda max' }),
        fn.metricDuration({ period, statistic: cw.Stats.AVERAGE, label: 'Lambda avg' }),
      ];
      const timeoutLine = [{ value: spec.timeoutMinutes * 60_000, label: 'timeout', color: cw.Color.RED }];
      const invocations = new cw.GraphWidget({
        title: `${spec.title}: invocations`,
        left: [
          fn.metricInvocations({ period, label: 'invocations' }),
          fn.metricErrors({ period, label: 'errors' }),
          fn.metricThrottles({ period, label: 'throttles' }),
          runFailedByCode(spec, period),
        ],
        width: 6,
      });
      if (!props.estate) {
        dashboard.addWidgets(
          new cw.GraphWidget({
            title: `${spec.title}: duration (ms)`,
            left: [...lambdaDuration, metric('RunDuration', 'RunDuration (handler)')],
            leftAnnotations: timeoutLine,
            width: 6,
          }),
          invocations,
          new cw.GraphWidget({
            title: `${spec.title}: outcomes`,
            left: OUTCOME_METRICS.map((m) => metric(m)),
            width: 6,
          }),
          new cw.GraphWidget({
            title: `${spec.title}: work done`,
            left: spec.metrics.map((m) => metric(m)),
            width: 6,
          }),
        );
      } else {
        // A graph is one GetMetricData call, which may hold only one Metrics Insights query: in an
        // estate every metric aggregated over the targets gets a graph of its own.
        dashboard.addWidgets(
          new cw.GraphWidget({
            title: `${spec.title}: duration (ms)`,
            left: lambdaDuration,
            leftAnnotations: timeoutLine,
            width: 6,
          }),
          invocations,
          ...(['RunDuration', ...OUTCOME_METRICS, ...spec.metrics] as MetricName[]).map(
            (m) =>
              new cw.GraphWidget({
                title: `${spec.title}: ${m}${m === 'RunDuration' ? ' (handler, max over targets)' : ''}`,
                left: [metric(m)],
                width: 6,
              }),
          ),
        );
      }
      if (props.estate) {
        // Which targets ran and which failed: a line per target, from the metrics the runtime tags with it.
        dashboard.addWidgets(
          new cw.GraphWidget({
            title: `${spec.title}: runs by target (RunDuration count)`,
            left: [byTarget(spec, 'RunDuration', 'COUNT', period)],
            width: 12,
          }),
          new cw.GraphWidget({
            title: `${spec.title}: failed runs by target`,
            left: [runFailedByTarget(spec, period)],
            width: 12,
          }),
        );
      }
    }
    return dashboard;
  }
}
