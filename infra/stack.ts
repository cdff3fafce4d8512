// The LakeTS Jobs stack: four scheduled Lambda jobs, their failure queues, alarms and dashboard.
import { readFileSync } from 'node:fs';
import {
  type App,
  CfnOutput,
  type Environment,
  Stack,
  type StackProps,
  Tags,
  Token,
  Validations,
} from 'aws-cdk-lib';
import type * as scheduler from 'aws-cdk-lib/aws-scheduler';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { Construct } from 'constructs';
import { parseTargets, type TargetEntry } from '../lib/estate.ts';
import { SETTINGS, type Setting } from '../lib/settings.ts';
import {
  ConfigError,
  type ContextKey,
  contextTarget,
  type LakeTsConfig,
  lakebaseTarget,
  parseConfig,
} from './config.ts';
import type { LakeTsJob } from './job.ts';
import { LakeTsJobs } from './lakets-jobs.ts';
import type { Monitoring } from './monitoring.ts';

export interface LakeTsJobsStackProps extends StackProps {
  readonly config: LakeTsConfig;
  /** The estate (a targets file); unset, the config's own connection is the one target, `default`. */
  readonly targets?: readonly TargetEntry[];
  /** For an environment-agnostic stack: the region `cdk deploy` will deploy it to, when known. */
  readonly deployRegion?: string;
}

export class LakeTsJobsStack extends Stack {
  readonly estate: LakeTsJobs;
  readonly jobs: readonly LakeTsJob[];
  readonly failureQueue: sqs.Queue;
  readonly schedulerDlq: sqs.Queue;
  readonly scheduleGroup: scheduler.ScheduleGroup;
  readonly monitoring: Monitoring;

  constructor(scope: Construct, id: string, props: LakeTsJobsStackProps) {
    super(scope, id, props);
    const { config } = props;
    this.checkAlarmTopicRegion(config, props.deployRegion);

    // 'Default' leaves the construct out of the logical ids: a single-target stack keeps the ids it had
    // before the construct existed, so updating it replaces nothing.
    this.estate = new LakeTsJobs(this, 'Default', {
      targets: props.targets ?? [contextTarget(config)],
      namePrefix: config.stackName,
      alarms: config.alarms,
      timezone: config.timezone,
      title:
        props.targets === undefined
          ? `${lakebaseTarget(config).kind} \`${lakebaseTarget(config).name}\``
          : `${props.targets.length} targets`,
      ...(config.vpc && { network: config.vpc }),
    });
    ({
      jobs: this.jobs,
      failureQueue: this.failureQueue,
      schedulerDlq: this.schedulerDlq,
      scheduleGroup: this.scheduleGroup,
      monitoring: this.monitoring,
    } = this.estate);

    for (const job of this.jobs) {
      new CfnOutput(this, `${job.spec.name}-function`, {
        description: `${job.spec.title} function name (aws lambda invoke --function-name ...)`,
        value: job.fn.functionName,
      });
    }
    new CfnOutput(this, 'ScheduleGroupName', { value: this.scheduleGroup.scheduleGroupName });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.monitoring.topic.topicArn });
    new CfnOutput(this, 'FailureQueueUrl', { value: this.failureQueue.queueUrl });
    new CfnOutput(this, 'SchedulerDlqUrl', { value: this.schedulerDlq.queueUrl });
    new CfnOutput(this, 'DashboardName', { value: this.monitoring.dashboard.dashboardName });
  }

  /**
   * Alarm actions must be in the alarm's region: a topic elsewhere is refused at synth when the region is
   * known, the stack's own or, for an environment-agnostic stack, the one `cdk deploy` targets
   * (CDK_DEFAULT_REGION, set by the CLI). A template deployed by other means to another region fails at
   * its first alarm, which CloudWatch refuses, and rolls back.
   */
  private checkAlarmTopicRegion(config: LakeTsConfig, deployRegion: string | undefined): void {
    if (config.alarms.kind !== 'topic') return;
    const region = Token.isUnresolved(this.region) ? deployRegion : this.region;
    const topicRegion = config.alarms.topicArn.split(':')[3] ?? '';
    if (region !== undefined && region !== '' && topicRegion !== region) {
      throw new ConfigError(
        'alarmTopicArn',
        `context "alarmTopicArn": the topic is in ${topicRegion} but the stack deploys to ${region}, and alarm actions must be in the alarm's region; fix: -c alarmTopicArn=<a topic in ${region}>, or -c alarmEmail=<address>`,
      );
    }
  }
}

/**
 * Reads the config from the app's context, adds the stack and the cdk-nag AwsSolutions checks.
 * Throws ConfigError on bad context. `env`: the stack's account/region when known (infra/app.ts leaves it
 * environment-agnostic, so the synth needs no credentials); `deployRegion`: where the CLI deploys an
 * environment-agnostic stack (CDK_DEFAULT_REGION, which `cdk deploy` sets and a bare synth may not).
 */
export function defineApp(
  app: App,
  env?: Environment,
  deployRegion: string | undefined = process.env.CDK_DEFAULT_REGION,
): LakeTsJobsStack {
  const targetsPath = app.node.tryGetContext('targets') as unknown;
  const targets = targetsPath === undefined ? undefined : readTargets(targetsPath);
  const config =
    targets === undefined
      ? parseConfig((key: ContextKey) => app.node.tryGetContext(key))
      : estateConfig(app, targets);
  const stack = new LakeTsJobsStack(app, config.stackName, {
    config,
    ...(targets && { targets }),
    ...(env && { env }),
    ...(deployRegion && { deployRegion }),
    description:
      targets === undefined
        ? `LakeTS maintenance jobs for Lakebase ${lakebaseTarget(config).kind} ${lakebaseTarget(config).name}`
        : `LakeTS maintenance jobs for ${targets.length} Lakebase databases`,
  });
  Tags.of(stack).add('app', 'lakets-jobs');
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return stack;
}

/** The stack name of an estate when `stackName` is unset. */
export const DEFAULT_ESTATE_STACK_NAME = 'LakeTs-estate';

/** `-c targets=<path>`: the JSON targets file, its shape checked (lib/estate.ts); the keys by the construct. */
function readTargets(path: unknown): TargetEntry[] {
  if (typeof path !== 'string' || path.trim() === '') {
    throw new ConfigError('targets', 'context "targets": expected a file path; fix: -c targets=targets.json');
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(
      'targets',
      `context "targets": cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'}); fix: -c targets=<an existing JSON file>`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(
      'targets',
      `context "targets": ${path} is not JSON (${(error as Error).message}); fix: a JSON array of targets`,
    );
  }
  // Only the outer shape here: the construct checks every entry (shape and connection) in one list.
  return Array.isArray(json) ? (json as TargetEntry[]) : parseTargets(json, path);
}

/**
 * With a targets file, the context holds the stack's own keys only (stackName, timezone, alarms, VPC):
 * a connection key there would be silently ignored, so it is an error. The connection keys parseConfig
 * requires are read from the first target, which the construct validates again with the others.
 */
function estateConfig(app: App, targets: readonly TargetEntry[]): LakeTsConfig {
  const problems = (Object.values(SETTINGS) as Setting[])
    .filter((s) => s.kind === 'connection')
    .flatMap((s) => s.context)
    .filter((key) => app.node.tryGetContext(key) !== undefined)
    .map(
      (key) =>
        `context "${key}": a connection key beside -c targets; fix: put it in the targets file's entries`,
    );
  if (problems.length > 0) throw new ConfigError('targets', problems.join(' | '), problems);
  const first = (targets[0] ?? {}) as unknown as Record<string, unknown>;
  const connection = new Set<string>(
    (Object.values(SETTINGS) as Setting[]).flatMap((s) => (s.kind === 'connection' ? s.context : [])),
  );
  const config = parseConfig((key: ContextKey) =>
    connection.has(key) ? first[key] : app.node.tryGetContext(key),
  );
  const stackName =
    app.node.tryGetContext('stackName') === undefined ? DEFAULT_ESTATE_STACK_NAME : config.stackName;
  return { ...config, stackName };
}
