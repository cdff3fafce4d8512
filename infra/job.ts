// One LakeTS job: its Lambda function (role, log group, async-invoke policy) and its EventBridge schedule.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AssetHashType, DockerImage, Duration, Stack, TimeZone, Validations } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsDestination } from 'aws-cdk-lib/aws-lambda-destinations';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import { LambdaInvoke } from 'aws-cdk-lib/aws-scheduler-targets';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { type BuildOptions, buildSync } from 'esbuild';
import { DEFAULT_TARGET } from '../lib/estate.ts';
import type { JobSpec } from '../lib/jobs/spec.ts';
import { esbuildOptions } from './bundling.ts';
import type { SchedulePlan } from './schedule.ts';

// The sources' root: the checkout, or `dist/` of the installed package, whose functions are compiled to
// JavaScript (Node strips no types under node_modules); esbuild bundles either at the app's synth.
const SOURCE_ROOT = fileURLToPath(new URL('..', import.meta.url));
const SOURCE_EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';

/** The handler module of a job, as this copy of the construct ships it. */
export function functionEntry(job: string): string {
  return join(SOURCE_ROOT, 'functions', `${job}${SOURCE_EXT}`);
}

// Measured (peak RSS of a fresh process running the job unbundled; the bundle uses less): 1,000
// ChronoTables 125-145 MB; 10,000 ChronoTables 118-143 MB with nothing to do, 148 MB creating a
// partition on each, 161 MB tiering a chunk of each, 202 MB dropping a chunk of each (20,000 report
// items). 256 MB would leave 1.3x at 10,000 tables; 512 MB leaves 2.5x (and twice the CPU).
const MEMORY_MB = 512;

export interface JobNetwork {
  readonly vpc: ec2.IVpc;
  readonly subnets: readonly ec2.ISubnet[];
  readonly securityGroups: readonly ec2.ISecurityGroup[];
}

export interface LakeTsJobProps {
  readonly spec: JobSpec;
  /** Names the function (`<namePrefix>-<job>`). */
  readonly namePrefix: string;
  /** ARNs (exact, or with the `-??????` suffix wildcard for a secret imported by name) to grant GetSecretValue on. */
  readonly secretPolicyArns: readonly string[];
  /** Customer-managed KMS keys of those secrets: kms:Decrypt through Secrets Manager only. */
  readonly kmsKeyArns: readonly string[];
  /** The function's environment (infra/config.ts: jobEnvironment or estateEnvironment). */
  readonly environment: Record<string, string>;
  /**
   * Set for an estate: the validated targets, compiled into the bundle as `__LAKETS_TARGETS__`. Unset
   * for a single-target deployment, whose settings are in the environment as they always were.
   */
  readonly bundledTargets?: string;
  readonly failureQueue: sqs.IQueue;
  readonly schedulerDlq: sqs.IQueue;
  /** The stack's own schedule group: Scheduler presents its ARN when it assumes the job's role. */
  readonly scheduleGroup: scheduler.IScheduleGroup;
  readonly network?: JobNetwork;
}

/** One schedule of a job: for the one target of a single-target stack, or one target of an estate. */
export interface JobScheduleProps {
  readonly scheduleName: string;
  /** When the job runs (infra/schedule.ts): expression and time zone. */
  readonly plan: SchedulePlan;
  /** The event: none for a single-target stack (the scheduled run), `{"target": name}` in an estate. */
  readonly target?: string;
  /** Flexible time window in minutes; 0 is OFF. */
  readonly windowMinutes: number;
  readonly enabled: boolean;
  /** The target's own schedule (a `jobs.<job>.schedule` override) instead of the job's. */
  readonly overridden?: boolean;
}

export class LakeTsJob extends Construct {
  readonly spec: JobSpec;
  readonly fn: lambda.Function;
  readonly logGroup: logs.LogGroup;
  /** The role every schedule of this job assumes to invoke it. */
  readonly schedulerRole: iam.Role;
  /** Its schedules, one per target (one for a single-target stack). */
  readonly schedules: scheduler.Schedule[] = [];
  /** The plans of its enabled schedules, by target name. */
  readonly plans = new Map<string, SchedulePlan>();
  /** The targets whose enabled schedule is the job's own (no override): what its missed-run alarm watches. */
  readonly onJobSchedule = new Set<string>();
  readonly #props: LakeTsJobProps;

  constructor(scope: Construct, id: string, props: LakeTsJobProps) {
    super(scope, id);
    const { spec, network } = props;
    this.spec = spec;
    this.#props = props;

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
        resources: [...props.secretPolicyArns],
      }),
    );
    if (props.kmsKeyArns.length > 0) {
      // A secret under a customer-managed key: Secrets Manager decrypts it with the caller's permission,
      // calling KMS on its behalf (kms:ViaService). Never directly: the key opens nothing else for the job.
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          actions: ['kms:Decrypt'],
          resources: [...props.kmsKeyArns],
          conditions: {
            StringEquals: { 'kms:ViaService': `secretsmanager.${Stack.of(this).region}.amazonaws.com` },
          },
        }),
      );
    }
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

    const environment = props.environment;
    const common = {
      functionName: `${props.namePrefix}-${spec.name}`,
      description: `LakeTS ${spec.title}: ${spec.summary}`,
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
    } satisfies Partial<lambda.FunctionProps>;
    this.fn = new lambda.Function(this, 'Function', {
      ...common,
      handler: 'index.handler',
      code: bundledCode(functionEntry(spec.name), props.bundledTargets),
    });
    this.schedulerRole = this.schedulerRoleFor(props);
  }

  /**
   * Adds one schedule of this job, in `scope` (this job for a single-target stack, so its logical id is
   * the one it always had; the estate's schedule stack otherwise).
   */
  addSchedule(scope: Construct, id: string, s: JobScheduleProps): scheduler.Schedule {
    const { spec } = this;
    const props = this.#props;
    const schedule = new scheduler.Schedule(scope, id, {
      scheduleName: s.scheduleName,
      scheduleGroup: props.scheduleGroup,
      description: `LakeTS ${spec.title}${s.target === undefined ? '' : ` for ${s.target}`}: ${spec.summary}`,
      schedule: scheduler.ScheduleExpression.expression(s.plan.expression, TimeZone.of(s.plan.timezone)),
      timeWindow:
        s.windowMinutes > 0
          ? scheduler.TimeWindow.flexible(Duration.minutes(s.windowMinutes))
          : scheduler.TimeWindow.off(),
      enabled: s.enabled,
      // No input for a single-target stack: the handlers treat an empty event as "the scheduled run".
      target: new InvokeThisFunction(this.fn, {
        role: this.schedulerRole,
        deadLetterQueue: props.schedulerDlq,
        retryAttempts: spec.delivery.schedulerRetryAttempts,
        maxEventAge: Duration.minutes(spec.delivery.schedulerMaxEventAgeMinutes),
        ...(s.target !== undefined && {
          input: scheduler.ScheduleTargetInput.fromObject({ target: s.target }),
        }),
      }),
    });
    this.schedules.push(schedule);
    if (s.enabled) this.plans.set(s.target ?? DEFAULT_TARGET, s.plan);
    if (s.enabled && !s.overridden) this.onJobSchedule.add(s.target ?? DEFAULT_TARGET);
    return schedule;
  }

  private schedulerRoleFor(props: LakeTsJobProps): iam.Role {
    const { spec, scheduleGroup } = props;
    // Scheduler assumes the role presenting the schedule GROUP's ARN as aws:SourceArn (EventBridge Scheduler
    // User Guide, "Confused deputy prevention": never a schedule's ARN or a name prefix, which never match).
    // The group is this stack's own, so only its schedules may assume the role; the role may only invoke
    // this function.
    return new iam.Role(this, 'SchedulerRole', {
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
  }
}

/**
 * A function's code, bundled at synth with esbuild's API (esbuild is a dependency of the package, so
 * synth never needs Docker), with the options of infra/bundling.ts; an estate's targets compiled in as the
 * constant `__LAKETS_TARGETS__`. Not NodejsFunction: it passes `define` on esbuild's command line, where
 * a thousand targets (about 250 KB) exceed the 128 KB one argument may have on Linux, and it needs a
 * lock file beside the sources, which an installed package does not have.
 */
function bundledCode(entry: string, targets: string | undefined): lambda.Code {
  return lambda.Code.fromAsset(dirname(entry), {
    assetHashType: AssetHashType.OUTPUT,
    bundling: {
      image: DockerImage.fromRegistry('public.ecr.aws/docker/library/node:24'),
      // Never used (the bundling is local), but CDK caches a bundled asset by its source folder and
      // bundling options, which do not see `tryBundle`: without what bundles here in them, all four
      // functions (one folder) would get the first one's bundle.
      environment: {
        LAKETS_BUNDLE: createHash('sha256')
          .update(entry)
          .update(targets ?? '')
          .digest('hex'),
      },
      local: {
        tryBundle(outputDir: string): boolean {
          // Built in memory as if beside the sources, then written out: the source map's paths are then
          // relative to the sources, not to wherever the cloud assembly is, so the asset hash does not
          // change with `cdk synth -o` or a pipeline's nested assembly.
          const virtual = join(SOURCE_ROOT, '.bundle', 'index.mjs');
          const built = buildSync({ ...functionBuildOptions(entry, virtual, targets), write: false });
          for (const file of built.outputFiles)
            writeFileSync(join(outputDir, basename(file.path)), file.contents);
          return true;
        },
      },
    },
  });
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

/** esbuild's options for a function: infra/bundling.ts's, and an estate's targets as a constant. */
export function functionBuildOptions(
  entry: string,
  outfile: string,
  targets: string | undefined,
): BuildOptions {
  return {
    ...esbuildOptions(),
    entryPoints: [entry],
    outfile,
    absWorkingDir: SOURCE_ROOT,
    // A JSON string literal of the validated entries: lib/estate.ts reads it as __LAKETS_TARGETS__.
    ...(targets !== undefined && { define: { __LAKETS_TARGETS__: JSON.stringify(targets) } }),
    logLevel: 'error',
  };
}
