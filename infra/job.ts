// One LakeTS job: its Lambda function (role, log group, async-invoke policy) and its EventBridge schedule.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, TimeZone, Validations } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsDestination } from 'aws-cdk-lib/aws-lambda-destinations';
import { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import { LambdaInvoke } from 'aws-cdk-lib/aws-scheduler-targets';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { type JobSpec, METRICS_NAMESPACE } from '../lib/jobs/spec.ts';
import { FUNCTION_BUNDLING } from './bundling.ts';
import { jobEnvironment, type LakeTsConfig } from './config.ts';
import type { SchedulePlan } from './schedule.ts';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

// Measured: a run over 1,000 ChronoTables (1,000 partitions created, or 1,000 retention calls) peaks
// at 125-145 MB RSS (`/usr/bin/time` around `npm run invoke`, unbundled, so the bundle uses less):
// 256 MB leaves about 2x headroom. Revisit with CloudWatch "Max Memory Used" at larger scales.
const MEMORY_MB = 256;

export interface JobNetwork {
  readonly vpc: ec2.IVpc;
  readonly subnets: readonly ec2.ISubnet[];
  readonly securityGroups: readonly ec2.ISecurityGroup[];
}

export interface LakeTsJobProps {
  readonly spec: JobSpec;
  readonly config: LakeTsConfig;
  /** ARN (exact, or with the `-??????` suffix wildcard for a secret imported by name) to grant GetSecretValue on. */
  readonly secretPolicyArn: string;
  /** What the handler passes to GetSecretValue as SecretId. */
  readonly secretId: string;
  readonly failureQueue: sqs.IQueue;
  readonly schedulerDlq: sqs.IQueue;
  /** The stack's own schedule group: Scheduler presents its ARN when it assumes the job's role. */
  readonly scheduleGroup: scheduler.IScheduleGroup;
  /** When the job runs (infra/schedule.ts): expression and time zone. */
  readonly plan: SchedulePlan;
  readonly network?: JobNetwork;
}

export class LakeTsJob extends Construct {
  readonly spec: JobSpec;
  readonly fn: NodejsFunction;
  readonly schedule: scheduler.Schedule;
  readonly plan: SchedulePlan;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: LakeTsJobProps) {
    super(scope, id);
    const { spec, config, network } = props;
    this.spec = spec;
    this.plan = props.plan;

    this.logGroup = new logs.LogGroup(this, 'Logs', { retention: logs.RetentionDays.ONE_MONTH });

    // Our own role instead of the default one, so no AWS managed policy with logs:* on every group.
    const role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `LakeTS ${spec.title}: its log group and the service principal secret`,
    });
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [this.logGroup.logGroupArn],
      }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:GetSecretValue'],
        resources: [props.secretPolicyArn],
      }),
    );
    if (network) {
      // What AWSLambdaVPCAccessExecutionRole grants, minus its logs:* on every log group.
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          actions: [
            'ec2:CreateNetworkInterface',
            'ec2:DescribeNetworkInterfaces',
            'ec2:DescribeSubnets',
            'ec2:DeleteNetworkInterface',
            'ec2:AssignPrivateIpAddresses',
            'ec2:UnassignPrivateIpAddresses',
          ],
          resources: ['*'],
        }),
      );
      Validations.of(role).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'Lambda manages the VPC network interfaces of this function through its role: the ENI ids do not exist before Lambda creates them and the ec2 Describe actions do not support resource-level permissions.',
      });
    }

    // From the one list of settings: exactly the variables the handlers read, and the runtime's.
    const environment = jobEnvironment(config, props.secretId, {
      name: spec.name,
      metricsNamespace: METRICS_NAMESPACE,
    });

    this.fn = new NodejsFunction(this, 'Function', {
      functionName: `${config.stackName}-${spec.name}`,
      description: `LakeTS ${spec.title}: ${spec.summary}`,
      entry: join(REPO_ROOT, 'functions', `${spec.name}.ts`),
      handler: 'handler',
      projectRoot: REPO_ROOT,
      depsLockFilePath: join(REPO_ROOT, 'package-lock.json'),
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: MEMORY_MB,
      timeout: Duration.minutes(spec.timeoutMinutes),
      role,
      logGroup: this.logGroup,
      // The runtime's own records (an invocation's error, an init error) as JSON too, like Powertools'
      // and EMF: every line in the log group is one JSON document that Logs Insights can query.
      loggingFormat: lambda.LoggingFormat.JSON,
      environment,
      // Asynchronous invocations (the scheduler's, and `aws lambda invoke --invocation-type Event`):
      // bounded retries, then the event lands on the failure queue. See Delivery in lib/jobs/spec.ts.
      retryAttempts: spec.delivery.lambdaRetryAttempts,
      maxEventAge: Duration.minutes(spec.delivery.lambdaMaxEventAgeMinutes),
      onFailure: new SqsDestination(props.failureQueue),
      ...(network && {
        vpc: network.vpc,
        vpcSubnets: { subnets: [...network.subnets] },
        securityGroups: [...network.securityGroups],
      }),
      bundling: FUNCTION_BUNDLING,
    });

    this.schedule = this.addSchedule(props);
  }

  private addSchedule(props: LakeTsJobProps): scheduler.Schedule {
    const { spec, config, scheduleGroup, plan } = props;
    // Scheduler assumes the role presenting the schedule GROUP's ARN as aws:SourceArn (EventBridge Scheduler
    // User Guide, "Confused deputy prevention": never a schedule's ARN or a name prefix, which never match).
    // The group is this stack's own, so only its schedules may assume the role; the role may only invoke
    // this function.
    const role = new iam.Role(this, 'SchedulerRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        conditions: {
          StringEquals: {
            'aws:SourceAccount': scheduleGroup.env.account,
            'aws:SourceArn': scheduleGroup.scheduleGroupArn,
          },
        },
      }),
      description: `EventBridge Scheduler: invoke LakeTS ${spec.title}`,
    });
    return new scheduler.Schedule(this, 'Schedule', {
      scheduleName: `${config.stackName}-${spec.name}`,
      scheduleGroup,
      description: `LakeTS ${spec.title}: ${spec.summary}`,
      schedule: scheduler.ScheduleExpression.expression(plan.expression, TimeZone.of(plan.timezone)),
      timeWindow: scheduler.TimeWindow.off(),
      // No input: the handlers treat an empty event as "the scheduled run".
      target: new InvokeThisFunction(this.fn, {
        role,
        deadLetterQueue: props.schedulerDlq,
        retryAttempts: spec.delivery.schedulerRetryAttempts,
        maxEventAge: Duration.minutes(spec.delivery.schedulerMaxEventAgeMinutes),
      }),
    });
  }
}

/**
 * LambdaInvoke whose role grant names the function ARN only. The stock target uses grantInvoke, which
 * adds `<arn>:*` (every version and alias); the scheduler only ever invokes the unqualified ARN.
 */
class InvokeThisFunction extends LambdaInvoke {
  readonly #fn: lambda.IFunction;

  constructor(fn: lambda.IFunction, props: ConstructorParameters<typeof LambdaInvoke>[1]) {
    super(fn, props);
    this.#fn = fn;
  }

  protected override addTargetActionToRole(role: iam.IRole): void {
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [this.#fn.functionArn] }),
    );
  }
}
