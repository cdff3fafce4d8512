// The LakeTS Jobs stack: four scheduled Lambda jobs, their failure queues, alarms and dashboard.
import {
  type App,
  ArnFormat,
  CfnOutput,
  Duration,
  type Environment,
  RemovalPolicy,
  Stack,
  type StackProps,
  Tags,
  Token,
  Validations,
} from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { Construct } from 'constructs';
import { JOB_LIST } from '../lib/jobs/catalog.ts';
import { ConfigError, type ContextKey, type LakeTsConfig, lakebaseTarget, parseConfig } from './config.ts';
import { type JobNetwork, LakeTsJob } from './job.ts';
import { Monitoring } from './monitoring.ts';
import { dailyShiftHours, jobSchedule } from './schedule.ts';

export interface LakeTsJobsStackProps extends StackProps {
  readonly config: LakeTsConfig;
  /** For an environment-agnostic stack: the region `cdk deploy` will deploy it to, when known. */
  readonly deployRegion?: string;
}

export class LakeTsJobsStack extends Stack {
  readonly jobs: readonly LakeTsJob[];
  readonly failureQueue: sqs.Queue;
  readonly schedulerDlq: sqs.Queue;
  readonly scheduleGroup: scheduler.ScheduleGroup;
  readonly monitoring: Monitoring;

  constructor(scope: Construct, id: string, props: LakeTsJobsStackProps) {
    super(scope, id, props);
    const { config } = props;
    this.checkAlarmTopicRegion(config, props.deployRegion);

    // Both queues only hold failed runs for a human (or a redrive) to look at: 14 days, the SQS maximum.
    this.failureQueue = this.deadLetterQueue(
      'FailureQueue',
      'on-failure destination of the four functions: runs that failed after all Lambda retries',
    );
    this.schedulerDlq = this.deadLetterQueue(
      'SchedulerDlq',
      'EventBridge Scheduler dead-letter queue: scheduled runs it could not deliver to Lambda',
    );

    // The stack's own group, named after the stack (unique per account and region, as group names are):
    // the scheduler roles trust this group's ARN, so no other schedule can use them. Deleting the stack
    // deletes its schedules with it.
    this.scheduleGroup = new scheduler.ScheduleGroup(this, 'ScheduleGroup', {
      scheduleGroupName: config.stackName,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    // Daily jobs move together, by whole hours, to local times that exist once every day in the zone.
    const shift = dailyShiftHours(config.timezone, JOB_LIST, new Date().getUTCFullYear());
    if (shift === undefined) {
      throw new ConfigError(
        'timezone',
        `context "timezone": "${config.timezone}" has no hour at which the daily jobs' local times exist once every day; fix: -c timezone=UTC`,
      );
    }

    const secret = this.importSecret(config);
    const network = config.vpc && this.importNetwork(config.vpc);
    this.jobs = JOB_LIST.map(
      (spec) =>
        new LakeTsJob(this, spec.name, {
          spec,
          config,
          secretPolicyArn: secret.policyArn,
          secretId: secret.id,
          failureQueue: this.failureQueue,
          schedulerDlq: this.schedulerDlq,
          scheduleGroup: this.scheduleGroup,
          plan: jobSchedule(spec, config.timezone, shift),
          ...(network && { network }),
        }),
    );

    this.monitoring = new Monitoring(this, 'Monitoring', {
      config,
      jobs: this.jobs,
      failureQueue: this.failureQueue,
      schedulerDlq: this.schedulerDlq,
    });

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

  private deadLetterQueue(id: string, purpose: string): sqs.Queue {
    const queue = new sqs.Queue(this, id, {
      // SSE-SQS: encrypted at rest with no key policy to keep in step with Lambda and Scheduler.
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    Validations.of(queue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: `This queue is itself a dead-letter queue (${purpose}); nothing consumes it automatically, so a DLQ behind it would never receive anything.`,
    });
    return queue;
  }

  /** The SP secret: imported, never created. Returns the ARN to grant on and the id handlers read. */
  private importSecret(config: LakeTsConfig): { policyArn: string; id: string } {
    if (config.spSecret.kind === 'arn') {
      const secret = secretsmanager.Secret.fromSecretCompleteArn(this, 'SpSecret', config.spSecret.arn);
      return { policyArn: secret.secretArn, id: secret.secretArn };
    }
    // By name the full ARN is unknown: Secrets Manager appends "-" and 6 random characters, matched by
    // "-??????" (exactly six, so "lakets/sp" cannot match "lakets/sp-other-abcdef"). The handlers get the
    // name, which GetSecretValue resolves without the partial-ARN ambiguity.
    const secret = secretsmanager.Secret.fromSecretNameV2(this, 'SpSecret', config.spSecret.name);
    const policyArn = this.formatArn({
      service: 'secretsmanager',
      resource: 'secret',
      resourceName: `${config.spSecret.name}-??????`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    return { policyArn, id: secret.secretName };
  }

  /** Imports the VPC from its ids (no lookup, so synth stays offline). */
  private importNetwork(vpc: NonNullable<LakeTsConfig['vpc']>): JobNetwork {
    // The functions name their subnets explicitly, so the VPC's own AZ/subnet lists are never consulted.
    const imported = ec2.Vpc.fromVpcAttributes(this, 'Vpc', {
      vpcId: vpc.vpcId,
      availabilityZones: this.availabilityZones,
    });
    const subnets = vpc.subnetIds.map((id, i) => ec2.Subnet.fromSubnetId(this, `Subnet${i}`, id));
    if (vpc.securityGroupIds.length > 0) {
      const securityGroups = vpc.securityGroupIds.map((id, i) =>
        ec2.SecurityGroup.fromSecurityGroupId(this, `SecurityGroup${i}`, id, { mutable: false }),
      );
      return { vpc: imported, subnets, securityGroups };
    }
    // Egress only to what the jobs talk to: HTTPS (Databricks, Secrets Manager, CloudWatch) and Postgres.
    const sg = new ec2.SecurityGroup(this, 'JobsSecurityGroup', {
      vpc: imported,
      description: 'LakeTS jobs: egress to HTTPS (Databricks, AWS APIs) and Postgres (Lakebase) only',
      allowAllOutbound: false,
    });
    sg.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'Databricks workspace and AWS APIs');
    sg.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(5432), 'Lakebase Postgres');
    return { vpc: imported, subnets, securityGroups: [sg] };
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
  const config = parseConfig((key: ContextKey) => app.node.tryGetContext(key));
  const stack = new LakeTsJobsStack(app, config.stackName, {
    config,
    ...(env && { env }),
    ...(deployRegion && { deployRegion }),
    description: `LakeTS maintenance jobs for Lakebase ${lakebaseTarget(config).kind} ${lakebaseTarget(config).name}`,
  });
  Tags.of(stack).add('app', 'lakets-jobs');
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return stack;
}
