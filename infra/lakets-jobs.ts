// LakeTsJobs: the four LakeTS jobs for an estate of Lakebase databases, as one construct a CDK app adds.
// Four functions whatever the number of targets; one EventBridge Scheduler schedule per (target, job).
import { createHash } from 'node:crypto';
import { ArnFormat, Duration, NestedStack, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { DEFAULT_TARGET, type TargetEntry } from '../lib/estate.ts';
import { JOB_LIST } from '../lib/jobs/catalog.ts';
import { METRICS_NAMESPACE } from '../lib/jobs/spec.ts';
import { functionEnvironment } from '../lib/settings.ts';
import {
  type AlarmTarget,
  ConfigError,
  DEFAULT_TIMEZONE,
  type EstateTarget,
  jobEnvironment,
  type LakeTsConfig,
  type VpcConfig,
  validateTargets,
} from './config.ts';
import { type JobNetwork, LakeTsJob } from './job.ts';
import { Monitoring } from './monitoring.ts';
import {
  dailyShiftHours,
  flexibleWindowMinutes,
  jobSchedule,
  type SchedulePlan,
  staggered,
} from './schedule.ts';

/**
 * CloudFormation allows 500 resources per stack. The parent stack holds about 110 of its own; above this
 * many (target, job) schedules they go to nested stacks of SCHEDULES_PER_STACK each (every schedule is one
 * resource, with its missed-run alarm one more).
 */
export const INLINE_SCHEDULES = 150;
export const SCHEDULES_PER_STACK = 200;

/**
 * An estate schedule's name: `<target>-<job>-<5 hex characters of the deployment's name prefix>`, at most
 * 64 characters (a 40-character target and partition-manager). CloudFormation identifies a schedule by
 * its name alone (cfn-lint E3019), not by its group: two deployments in one account and region with a
 * target of the same name would otherwise claim the same schedule.
 */
export function estateScheduleName(namePrefix: string, target: string, job: string): string {
  return `${target}-${job}-${createHash('sha256').update(namePrefix).digest('hex').slice(0, 5)}`;
}

/** An estate schedule that gets its target's own missed-run alarm, and the scope the alarm goes in. */
interface WatchedSchedule {
  readonly scope: Construct;
  readonly job: LakeTsJob;
  readonly target: string;
  readonly schedule: string;
}

export interface LakeTsJobsProps {
  /**
   * The databases to maintain (lib/estate.ts parseTargets gives them from a targets file). Each entry's
   * connection keys are validated by the same rules as the stack's context. A single entry named
   * `default` is a single-target deployment as the stack always made it: its settings in the functions'
   * environment, one unnamed scheduled event per job.
   */
  readonly targets: readonly TargetEntry[];
  /** Names the functions, the schedule group, the alarms and the dashboard: `<namePrefix>-...`. */
  readonly namePrefix: string;
  /** Where alarms notify: an address (a new topic), an existing topic in the stack's region, or none. */
  readonly alarms?: AlarmTarget;
  /** Run the functions in these private subnets (with egress to Databricks and AWS APIs). */
  readonly network?: VpcConfig;
  /** IANA zone of the daily jobs' local times, for targets that name none. Default UTC. */
  readonly timezone?: string;
  /** For the dashboard's title. Default: the target count. */
  readonly title?: string;
}

export class LakeTsJobs extends Construct {
  readonly jobs: readonly LakeTsJob[];
  readonly failureQueue: sqs.Queue;
  readonly schedulerDlq: sqs.Queue;
  readonly scheduleGroup: scheduler.ScheduleGroup;
  readonly monitoring: Monitoring;
  /** The validated targets. */
  readonly targets: readonly EstateTarget[];
  /** props.namePrefix: names the functions, the schedule group, the alarms and the dashboard. */
  readonly namePrefix: string;
  /** The nested stacks holding schedules (none up to INLINE_SCHEDULES schedules). */
  readonly scheduleStacks: NestedStack[] = [];

  constructor(scope: Construct, id: string, props: LakeTsJobsProps) {
    super(scope, id);
    this.namePrefix = props.namePrefix;
    const timezone = props.timezone ?? DEFAULT_TIMEZONE;
    this.targets = validateTargets(props.targets, timezone);
    const single = this.targets.length === 1 && this.targets[0]?.entry.name === DEFAULT_TARGET;
    const shifts = this.dailyShifts(timezone);

    // Both queues only hold failed runs for a human (or a redrive) to look at: 14 days, the SQS maximum.
    this.failureQueue = this.deadLetterQueue(
      'FailureQueue',
      'on-failure destination of the four functions: runs that failed after all Lambda retries',
    );
    this.schedulerDlq = this.deadLetterQueue(
      'SchedulerDlq',
      'EventBridge Scheduler dead-letter queue: scheduled runs it could not deliver to Lambda',
    );

    // The stack's own group (unique per account and region, as group names are): the scheduler roles
    // trust this group's ARN, so no other schedule can use them. Deleting it deletes its schedules.
    this.scheduleGroup = new scheduler.ScheduleGroup(this, 'ScheduleGroup', {
      scheduleGroupName: props.namePrefix,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    const secretPolicyArns = [...new Set(this.targets.map((t) => this.secretPolicyArn(t.config)))];
    const kmsKeyArns = [
      ...new Set(this.targets.flatMap((t) => (t.entry.spSecretKmsKeyArn ? [t.entry.spSecretKmsKeyArn] : []))),
    ];
    checkPolicySize(this.targets, kmsKeyArns);
    const network = props.network && this.importNetwork(props.network);
    // A single target's settings in the environment, as ever; an estate's compiled into the bundle
    // (Lambda's environment holds 4 KB in all, so it carries the runtime settings only).
    const bundledTargets = single ? undefined : JSON.stringify(this.targets.map((t) => t.entry));
    this.jobs = JOB_LIST.map((spec) => {
      const identity = { name: spec.name, metricsNamespace: METRICS_NAMESPACE };
      const only = this.targets[0];
      const environment =
        single && only
          ? jobEnvironment(only.config, secretIdOf(only.config), identity)
          : functionEnvironment(
              {
                project: undefined,
                instance: undefined,
                host: undefined,
                secretId: undefined,
                endpoint: undefined,
                pgRole: undefined,
                database: undefined,
              },
              identity,
            );
      return new LakeTsJob(this, spec.name, {
        spec,
        namePrefix: props.namePrefix,
        secretPolicyArns,
        kmsKeyArns,
        environment,
        ...(bundledTargets !== undefined && { bundledTargets }),
        failureQueue: this.failureQueue,
        schedulerDlq: this.schedulerDlq,
        scheduleGroup: this.scheduleGroup,
        ...(network && { network }),
      });
    });

    if (single) {
      const only = this.targets[0] as EstateTarget;
      for (const job of this.jobs) {
        const plan = this.planFor(job, only, shifts, timezone);
        // In the job's own scope and named as ever: the single-target stack's logical ids do not move.
        job.addSchedule(job, 'Schedule', {
          scheduleName: `${props.namePrefix}-${job.spec.name}`,
          plan,
          windowMinutes: 0,
          enabled: isEnabled(only, job),
          overridden: only.entry.jobs?.[job.spec.name]?.schedule !== undefined,
        });
      }
    }
    const watched = single ? [] : this.addEstateSchedules(shifts, timezone);

    this.monitoring = new Monitoring(this, 'Monitoring', {
      namePrefix: props.namePrefix,
      alarms: props.alarms ?? { kind: 'none' },
      timezone,
      title: props.title ?? `${this.targets.length} targets`,
      estate: !single,
      jobs: this.jobs,
      failureQueue: this.failureQueue,
      schedulerDlq: this.schedulerDlq,
    });
    // Beside each schedule (in its nested stack, if any): its target's own missed-run alarm.
    for (const w of watched) this.monitoring.addTargetMissedRun(w.scope, w.job, w.target, w.schedule);
  }

  /**
   * Every (target, job) schedule: in this construct up to INLINE_SCHEDULES, else in nested stacks.
   * Returns the schedules that get a missed-run alarm of their own (enabled, on the job's own schedule).
   */
  private addEstateSchedules(shifts: Map<string, number>, timezone: string): WatchedSchedule[] {
    const watched: WatchedSchedule[] = [];
    const pairs = this.targets.flatMap((target) => this.jobs.map((job) => ({ target, job })));
    const nested = pairs.length > INLINE_SCHEDULES;
    let scope: Construct = this;
    pairs.forEach(({ target, job }, i) => {
      if (nested && i % SCHEDULES_PER_STACK === 0) {
        const part = new NestedStack(this, `Schedules${i / SCHEDULES_PER_STACK + 1}`, {
          description: `LakeTS schedules ${i + 1}-${Math.min(i + SCHEDULES_PER_STACK, pairs.length)} of ${pairs.length}`,
        });
        // The schedules name the group by its name, not a reference: without this, CloudFormation could
        // create them before their group.
        part.node.addDependency(this.scheduleGroup);
        this.scheduleStacks.push(part);
        scope = part;
      }
      const name = target.entry.name;
      const overridden = target.entry.jobs?.[job.spec.name]?.schedule !== undefined;
      const scheduleName = estateScheduleName(this.namePrefix, name, job.spec.name);
      const schedule = job.addSchedule(scope, `${name}-${job.spec.name}`, {
        scheduleName,
        plan: this.planFor(job, target, shifts, timezone),
        target: name,
        // A target's own schedule runs when it says: the job's window fits the job's period, not the override's.
        windowMinutes: overridden ? 0 : flexibleWindowMinutes(job.spec),
        enabled: isEnabled(target, job),
        overridden,
      });
      if (!nested) schedule.node.addDependency(this.scheduleGroup);
      if (isEnabled(target, job) && !overridden)
        watched.push({ scope, job, target: name, schedule: scheduleName });
    });
    return watched;
  }

  /** A target's plan for a job: its override, or the job's own schedule in the target's zone. */
  private planFor(
    job: LakeTsJob,
    target: EstateTarget,
    shifts: Map<string, number>,
    timezone: string,
  ): SchedulePlan {
    const zone = target.entry.timezone ?? timezone;
    const override = target.entry.jobs?.[job.spec.name];
    if (override?.schedule !== undefined) {
      return {
        expression: override.schedule,
        timezone: override.schedule.startsWith('cron(') ? zone : 'UTC',
      };
    }
    const plan = jobSchedule(job.spec, zone, shifts.get(zone) ?? 0);
    return target.entry.name === DEFAULT_TARGET ? plan : staggered(plan, job.spec, target.entry.name);
  }

  /** Daily jobs move together, by whole hours, to local times that exist once every day in each zone. */
  private dailyShifts(timezone: string): Map<string, number> {
    const shifts = new Map<string, number>();
    const problems: string[] = [];
    const year = new Date().getUTCFullYear();
    const zones = new Set([timezone, ...this.targets.map((t) => t.entry.timezone ?? timezone)]);
    for (const zone of zones) {
      const shift = dailyShiftHours(zone, JOB_LIST, year);
      if (shift === undefined) {
        const who = this.targets.filter((t) => (t.entry.timezone ?? timezone) === zone);
        problems.push(
          who.length === 1 && who[0]?.entry.name === DEFAULT_TARGET
            ? `context "timezone": "${zone}" has no hour at which the daily jobs' local times exist once every day; fix: -c timezone=UTC`
            : `timezone "${zone}" (${who.map((t) => t.entry.name).join(', ') || 'the default'}) has no hour at which the daily jobs' local times exist once every day; fix: "timezone": "UTC"`,
        );
      } else shifts.set(zone, shift);
    }
    if (problems.length > 0) throw new ConfigError('timezone', problems.join(' | '), problems);
    return shifts;
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

  /**
   * The ARN to grant GetSecretValue on. By name the full ARN is unknown: Secrets Manager appends "-" and 6
   * random characters, matched by "-??????" (exactly six, so "lakets/sp" cannot match "lakets/sp-other-abcdef").
   */
  private secretPolicyArn(config: LakeTsConfig): string {
    if (config.spSecret.kind === 'arn') return config.spSecret.arn;
    return Stack.of(this).formatArn({
      service: 'secretsmanager',
      resource: 'secret',
      resourceName: `${config.spSecret.name}-??????`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
  }

  /** Imports the VPC from its ids (no lookup, so synth stays offline). */
  private importNetwork(vpc: VpcConfig): JobNetwork {
    // The functions name their subnets explicitly, so the VPC's own AZ/subnet lists are never consulted.
    const imported = ec2.Vpc.fromVpcAttributes(this, 'Vpc', {
      vpcId: vpc.vpcId,
      availabilityZones: Stack.of(this).availabilityZones,
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
 * IAM holds at most 10,240 characters of inline policy per role. Each distinct secret (and KMS key) is one
 * ARN in every function role's policy: about a hundred of them fill it, and the deploy would fail late
 * (the role's policy is created after the functions). Secrets are per service principal, which is usually
 * one per workspace, so an estate needs few; more are refused here, at synth.
 */
export const ROLE_POLICY_BUDGET = 8_000;
/** The resolved length of an ARN the stack formats: `arn:aws:secretsmanager:<region>:<account>:secret:` is at most 63 characters. */
const FORMATTED_SECRET_PREFIX = 63;

function checkPolicySize(targets: readonly EstateTarget[], kmsKeyArns: readonly string[]): void {
  // The ARNs as IAM will hold them: a secret by name is `<prefix><name>-??????`.
  const secretArns = new Set(
    targets.map(({ config: { spSecret } }) =>
      spSecret.kind === 'arn'
        ? spSecret.arn
        : `${'x'.repeat(FORMATTED_SECRET_PREFIX)}${spSecret.name}-??????`,
    ),
  );
  const size = [...secretArns, ...kmsKeyArns].reduce((sum, arn) => sum + arn.length + 3, 0);
  if (size <= ROLE_POLICY_BUDGET) return;
  throw new ConfigError(
    'targets',
    `targets: ${secretArns.size} distinct secrets and ${kmsKeyArns.length} KMS keys need about ${size} characters in each function role's policy, more than the ${ROLE_POLICY_BUDGET} this stack allows itself (IAM: 10,240 per role); fix: share one service principal secret per workspace between that workspace's targets`,
  );
}

/** What a single-target function passes to GetSecretValue: the ARN, or the name (no partial-ARN ambiguity). */
function secretIdOf(config: LakeTsConfig): string {
  return config.spSecret.kind === 'arn' ? config.spSecret.arn : config.spSecret.name;
}

/** `"jobs": {"<job>": {"enabled": false}}` keeps the schedule, disabled: visible, and one switch to turn on. */
function isEnabled(target: EstateTarget, job: LakeTsJob): boolean {
  const override = target.entry.jobs?.[job.spec.name];
  return override?.enabled !== false;
}
