// AWS's side of every call the deployment depends on, decided by a real IAM policy evaluator on the
// synthesized template, with the request context each service documents (test/infra/aws/requests.ts).
// A passing synth and cdk-nag say nothing about whether Scheduler can assume its role or CloudWatch may
// publish to the topic; these tests do.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { beforeAll, describe, expect, it } from 'vitest';
import { defineApp } from '../../infra/stack.ts';
import { JOB_NAMES } from '../../lib/jobs/catalog.ts';
import {
  cloudWatchPublishesAlarm,
  functionDecryptsSecret,
  functionReadsSecret,
  lambdaWritesFailureDestination,
  schedulerAssumesRole,
  schedulerInvokesFunction,
  schedulerWritesDeadLetter,
} from './aws/requests.ts';
import { decide, type PolicyDocument } from './aws/simulate.ts';
import { ConcreteTemplate, DEPLOYMENT, type Resource } from './aws/template.ts';
import { REQUIRED_CONTEXT } from './synth.ts';

const { account, region } = DEPLOYMENT;
const OTHER_ACCOUNT = '210987654321';
const SECRET_ARN = `arn:aws:secretsmanager:${region}:${account}:secret:lakets/sp-AbC123`;

/** The template of `context`, resolved for one deployment (bundling skipped: only the template matters). */
function deployed(context: Record<string, unknown>): ConcreteTemplate {
  const app = new App({ context: { ...context, 'aws:cdk:bundling-stacks': [] } });
  const stack = defineApp(app);
  const template = app.synth().getStackByName(stack.stackName).template;
  return new ConcreteTemplate(template, { stackName: stack.stackName });
}

/** The policies attached to a role: its inline ones and every AWS::IAM::Policy naming it. */
function identityPolicies(t: ConcreteTemplate, roleId: string): PolicyDocument[] {
  const inline = (t.byId(roleId).properties.Policies ?? []).map((p: PolicyDocument) => p.PolicyDocument);
  const attached = t
    .ofType('AWS::IAM::Policy')
    .filter((p) => t.raw(p.id).Roles.some((r: unknown) => ConcreteTemplate.target(r) === roleId))
    .map((p) => p.properties.PolicyDocument);
  return [...inline, ...attached];
}

/** The resource policy a queue or topic carries in the template (AWS::SQS::QueuePolicy, AWS::SNS::TopicPolicy). */
function resourcePolicy(
  t: ConcreteTemplate,
  type: string,
  listKey: string,
  targetId: string,
): PolicyDocument | undefined {
  const policies = t
    .ofType(type)
    .filter((p) => t.raw(p.id)[listKey].some((r: unknown) => ConcreteTemplate.target(r) === targetId));
  expect(policies.length, `${type} of ${targetId}`).toBeLessThanOrEqual(1);
  return policies[0]?.properties.PolicyDocument;
}

interface Job {
  readonly schedule: Resource;
  readonly scheduleRoleId: string;
  readonly scheduleRoleArn: string;
  /** The ARN Scheduler presents as aws:SourceArn: the schedule's group (`default` when it names none). */
  readonly scheduleGroupArn: string;
  readonly functionArn: string;
  readonly executionRoleId: string;
  readonly executionRoleArn: string;
  readonly dlqId: string;
  readonly dlqArn: string;
  readonly failureQueueId: string;
  readonly failureQueueArn: string;
}

function jobOf(t: ConcreteTemplate, name: string): Job {
  const fn = t.ofType('AWS::Lambda::Function').find((f) => f.properties.FunctionName.endsWith(`-${name}`));
  if (!fn) throw new Error(`no function for ${name}`);
  const schedule = t
    .ofType('AWS::Scheduler::Schedule')
    .find((s) => ConcreteTemplate.target(t.raw(s.id).Target.Arn) === fn.id);
  if (!schedule) throw new Error(`no schedule for ${name}`);
  const invokeConfig = t
    .ofType('AWS::Lambda::EventInvokeConfig')
    .find((c) => ConcreteTemplate.target(t.raw(c.id).FunctionName) === fn.id);
  if (!invokeConfig) throw new Error(`no async invoke config for ${name}`);
  const group = schedule.properties.GroupName ?? 'default';
  return {
    schedule,
    scheduleRoleId: ConcreteTemplate.target(t.raw(schedule.id).Target.RoleArn),
    scheduleRoleArn: schedule.properties.Target.RoleArn,
    scheduleGroupArn: `arn:aws:scheduler:${region}:${account}:schedule-group/${group}`,
    functionArn: schedule.properties.Target.Arn,
    executionRoleId: ConcreteTemplate.target(t.raw(fn.id).Role),
    executionRoleArn: fn.properties.Role,
    dlqId: ConcreteTemplate.target(t.raw(schedule.id).Target.DeadLetterConfig.Arn),
    dlqArn: schedule.properties.Target.DeadLetterConfig.Arn,
    failureQueueId: ConcreteTemplate.target(t.raw(invokeConfig.id).DestinationConfig.OnFailure.Destination),
    failureQueueArn: invokeConfig.properties.DestinationConfig.OnFailure.Destination,
  };
}

const trustPolicy = (t: ConcreteTemplate, roleId: string) =>
  t.byId(roleId).properties.AssumeRolePolicyDocument;
const queuePolicy = (t: ConcreteTemplate, queueId: string) =>
  resourcePolicy(t, 'AWS::SQS::QueuePolicy', 'Queues', queueId);

describe('the default deployment (secret by name, email alarms)', () => {
  let t: ConcreteTemplate;
  beforeAll(() => {
    t = deployed({ ...REQUIRED_CONTEXT, timezone: 'Europe/Berlin', alarmEmail: 'oncall@example.com' });
  });

  describe.each(JOB_NAMES)('%s', (name) => {
    it('Scheduler assumes its role, which invokes the function and writes the scheduler DLQ', async () => {
      const job = jobOf(t, name);
      const assume = schedulerAssumesRole(job.scheduleRoleArn, account, job.scheduleGroupArn);
      expect(await decide(assume, { resource: trustPolicy(t, job.scheduleRoleId) })).toBe('Allowed');
      const identity = identityPolicies(t, job.scheduleRoleId);
      expect(await decide(schedulerInvokesFunction(job.scheduleRoleArn, job.functionArn), { identity })).toBe(
        'Allowed',
      );
      const deadLetter = schedulerWritesDeadLetter(job.scheduleRoleArn, job.dlqArn);
      expect(await decide(deadLetter, { identity, resource: queuePolicy(t, job.dlqId) })).toBe('Allowed');
    });

    it("Scheduler cannot assume its role for another account's or another group's schedules", async () => {
      const job = jobOf(t, name);
      const trust = { resource: trustPolicy(t, job.scheduleRoleId) };
      const otherGroup = job.scheduleGroupArn.replace(/schedule-group\/.*$/, 'schedule-group/someone-else');
      expect(await decide(schedulerAssumesRole(job.scheduleRoleArn, account, otherGroup), trust)).not.toBe(
        'Allowed',
      );
      const foreign = job.scheduleGroupArn.replace(account, OTHER_ACCOUNT);
      expect(await decide(schedulerAssumesRole(job.scheduleRoleArn, OTHER_ACCOUNT, foreign), trust)).not.toBe(
        'Allowed',
      );
    });

    it('its role invokes only its own function', async () => {
      const job = jobOf(t, name);
      const identity = identityPolicies(t, job.scheduleRoleId);
      for (const other of JOB_NAMES.filter((n) => n !== name)) {
        const request = schedulerInvokesFunction(job.scheduleRoleArn, jobOf(t, other).functionArn);
        expect(await decide(request, { identity }), other).toBe('ImplicitlyDenied');
      }
    });

    it('the function reads its secret and no other', async () => {
      const job = jobOf(t, name);
      const identity = identityPolicies(t, job.executionRoleId);
      expect(await decide(functionReadsSecret(job.executionRoleArn, SECRET_ARN), { identity })).toBe(
        'Allowed',
      );
      for (const other of [
        `arn:aws:secretsmanager:${region}:${account}:secret:lakets/sp-other-AbC123`,
        `arn:aws:secretsmanager:${region}:${account}:secret:lakets/prod-AbC123`,
        `arn:aws:secretsmanager:${region}:${account}:secret:other-AbC123`,
      ]) {
        expect(await decide(functionReadsSecret(job.executionRoleArn, other), { identity }), other).toBe(
          'ImplicitlyDenied',
        );
      }
    });

    it("Lambda writes a failed run to the failure queue with the function's role, over TLS only", async () => {
      const job = jobOf(t, name);
      const identity = identityPolicies(t, job.executionRoleId);
      const resource = queuePolicy(t, job.failureQueueId);
      const request = lambdaWritesFailureDestination(job.executionRoleArn, job.failureQueueArn);
      expect(await decide(request, { identity, resource })).toBe('Allowed');
      const plain = { ...request, context: { ...request.context, 'aws:SecureTransport': 'false' } };
      expect(await decide(plain, { identity, resource })).toBe('ExplicitlyDenied');
    });
  });

  describe('alarms', () => {
    const topic = () => {
      const [found, ...more] = t.ofType('AWS::SNS::Topic');
      expect(more).toEqual([]);
      if (!found) throw new Error('no topic');
      return {
        arn: t.resolve({ Ref: found.id }) as string,
        policy: resourcePolicy(t, 'AWS::SNS::TopicPolicy', 'Topics', found.id),
      };
    };
    const alarmArns = () =>
      t
        .ofType('AWS::CloudWatch::Alarm')
        .map((a) => `arn:aws:cloudwatch:${region}:${account}:alarm:${a.properties.AlarmName}`);

    it('CloudWatch publishes every alarm to the topic over TLS', async () => {
      const { arn, policy } = topic();
      expect(alarmArns().length).toBeGreaterThan(10);
      for (const alarm of alarmArns()) {
        expect(await decide(cloudWatchPublishesAlarm(arn, account, alarm), { resource: policy }), alarm).toBe(
          'Allowed',
        );
      }
    });

    it('a publish over plain HTTP is denied, and so is one for an alarm of another stack or account', async () => {
      const { arn, policy } = topic();
      for (const alarm of alarmArns()) {
        expect(
          await decide(cloudWatchPublishesAlarm(arn, account, alarm, false), { resource: policy }),
          alarm,
        ).toBe('ExplicitlyDenied');
      }
      const stranger = `arn:aws:cloudwatch:${region}:${account}:alarm:SomeoneElse-errors`;
      expect(await decide(cloudWatchPublishesAlarm(arn, account, stranger), { resource: policy })).not.toBe(
        'Allowed',
      );
      const foreign = alarmArns()[0]?.replace(account, OTHER_ACCOUNT) ?? '';
      expect(
        await decide(cloudWatchPublishesAlarm(arn, OTHER_ACCOUNT, foreign), { resource: policy }),
      ).not.toBe('Allowed');
    });
  });
});

describe('secret by ARN, an existing alarm topic', () => {
  const TOPIC_ARN = `arn:aws:sns:${region}:${account}:oncall`;
  let t: ConcreteTemplate;
  beforeAll(() => {
    t = deployed({
      lakebaseProject: 'prod',
      databricksHost: REQUIRED_CONTEXT.databricksHost,
      spSecretArn: SECRET_ARN,
      alarmTopicArn: TOPIC_ARN,
    });
  });

  it.each(JOB_NAMES)('%s: the function reads exactly that secret', async (name) => {
    const job = jobOf(t, name);
    const identity = identityPolicies(t, job.executionRoleId);
    expect(await decide(functionReadsSecret(job.executionRoleArn, SECRET_ARN), { identity })).toBe('Allowed');
    const sibling = SECRET_ARN.replace('-AbC123', '-XyZ789');
    expect(await decide(functionReadsSecret(job.executionRoleArn, sibling), { identity })).toBe(
      'ImplicitlyDenied',
    );
  });

  it("leaves the existing topic's policy alone: its owner must allow cloudwatch.amazonaws.com (assumed, not provable here)", () => {
    // The stack cannot see the topic's policy; an AWS::SNS::TopicPolicy here would replace its owner's.
    expect(t.ofType('AWS::SNS::TopicPolicy')).toEqual([]);
    expect(t.ofType('AWS::SNS::Topic')).toEqual([]);
    for (const alarm of t.ofType('AWS::CloudWatch::Alarm'))
      expect(alarm.properties.AlarmActions).toEqual([TOPIC_ARN]);
  });
});

describe('an estate of three targets (-c targets=<file>), one secret under a customer managed key', () => {
  const KEY_ARN = `arn:aws:kms:${region}:${account}:key/1234abcd-12ab-34cd-56ef-1234567890ab`;
  const OTHER_KEY = `arn:aws:kms:${region}:${account}:key/ffffffff-12ab-34cd-56ef-1234567890ab`;
  const EU_SECRET = `arn:aws:secretsmanager:${region}:${account}:secret:lakets/eu-XyZ789`;
  const STAGING_SECRET = `arn:aws:secretsmanager:${region}:${account}:secret:lakets/staging-QwE456`;
  let t: ConcreteTemplate;
  beforeAll(() => {
    const dir = mkdtempSync(join(tmpdir(), 'lakets-policy-'));
    const file = join(dir, 'targets.json');
    const host = REQUIRED_CONTEXT.databricksHost;
    writeFileSync(
      file,
      JSON.stringify([
        { name: 'prod', databricksHost: host, spSecretName: 'lakets/sp', lakebaseProject: 'prod' },
        {
          name: 'eu',
          databricksHost: host,
          spSecretArn: EU_SECRET,
          spSecretKmsKeyArn: KEY_ARN,
          lakebaseProject: 'eu',
        },
        {
          name: 'staging',
          databricksHost: host,
          spSecretArn: STAGING_SECRET,
          lakebaseInstance: 'staging-instance',
        },
      ]),
    );
    t = deployed({ targets: file, alarmEmail: 'oncall@example.com' });
  });

  describe.each(JOB_NAMES)('%s', (name) => {
    it("the function reads every target's secret, and no secret of no target", async () => {
      const job = jobOf(t, name);
      const identity = identityPolicies(t, job.executionRoleId);
      for (const secret of [SECRET_ARN, EU_SECRET, STAGING_SECRET]) {
        expect(await decide(functionReadsSecret(job.executionRoleArn, secret), { identity }), secret).toBe(
          'Allowed',
        );
      }
      for (const other of [
        `arn:aws:secretsmanager:${region}:${account}:secret:lakets/eu-AbC123`,
        `arn:aws:secretsmanager:${region}:${account}:secret:lakets/other-AbC123`,
        `arn:aws:secretsmanager:${region}:${account}:secret:lakets/sp-other-AbC123`,
      ]) {
        expect(await decide(functionReadsSecret(job.executionRoleArn, other), { identity }), other).toBe(
          'ImplicitlyDenied',
        );
      }
    });

    it('the function decrypts with the declared key through Secrets Manager only, and with no other key', async () => {
      const job = jobOf(t, name);
      // KMS honours IAM policies only when the key policy delegates to the account: the default key
      // policy does (docs/estate-deploy.md says so); a key policy of its own must name the role instead.
      const keyPolicy = {
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Principal: { AWS: `arn:aws:iam::${account}:root` },
            Action: 'kms:*',
            Resource: '*',
          },
        ],
      };
      const identity = identityPolicies(t, job.executionRoleId);
      const decideKms = (r: Parameters<typeof decide>[0]) => decide(r, { identity, resource: keyPolicy });
      const via = functionDecryptsSecret(job.executionRoleArn, KEY_ARN, region, true);
      expect(await decideKms(via)).toBe('Allowed');
      const direct = functionDecryptsSecret(job.executionRoleArn, KEY_ARN, region, false);
      expect(await decideKms(direct)).toBe('ImplicitlyDenied');
      const otherRegion = functionDecryptsSecret(job.executionRoleArn, KEY_ARN, 'us-east-2', true);
      expect(await decideKms(otherRegion)).toBe('ImplicitlyDenied');
      const otherKey = functionDecryptsSecret(job.executionRoleArn, OTHER_KEY, region, true);
      expect(await decideKms(otherKey)).toBe('ImplicitlyDenied');
    });

    it('Scheduler assumes its role with the group ARN for every target, and for no other group', async () => {
      const schedules = t
        .ofType('AWS::Scheduler::Schedule')
        .filter((s) => s.properties.Target.Arn === jobOf(t, name).functionArn);
      expect(schedules.map((s) => JSON.parse(s.properties.Target.Input).target).sort()).toEqual([
        'eu',
        'prod',
        'staging',
      ]);
      for (const s of schedules) {
        const roleId = ConcreteTemplate.target(t.raw(s.id).Target.RoleArn);
        const groupArn = `arn:aws:scheduler:${region}:${account}:schedule-group/${s.properties.GroupName}`;
        const trust = { resource: trustPolicy(t, roleId) };
        expect(
          await decide(schedulerAssumesRole(s.properties.Target.RoleArn, account, groupArn), trust),
        ).toBe('Allowed');
        const other = groupArn.replace(/schedule-group\/.*$/, 'schedule-group/someone-else');
        expect(
          await decide(schedulerAssumesRole(s.properties.Target.RoleArn, account, other), trust),
        ).not.toBe('Allowed');
        const identity = identityPolicies(t, roleId);
        expect(
          await decide(schedulerInvokesFunction(s.properties.Target.RoleArn, s.properties.Target.Arn), {
            identity,
          }),
        ).toBe('Allowed');
      }
    });
  });

  it("CloudWatch publishes every alarm, the failed-targets and the targets' missed-run ones too, to the topic", async () => {
    const [topic] = t.ofType('AWS::SNS::Topic');
    if (!topic) throw new Error('no topic');
    const arn = t.resolve({ Ref: topic.id }) as string;
    const policy = resourcePolicy(t, 'AWS::SNS::TopicPolicy', 'Topics', topic.id);
    const names = t.ofType('AWS::CloudWatch::Alarm').map((a) => a.properties.AlarmName as string);
    expect(names.filter((n) => n.endsWith('-failed-targets'))).toHaveLength(JOB_NAMES.length);
    // The targets' own missed-run alarms are allowed by name pattern, not ARN by ARN.
    expect(names.filter((n) => /-missed-run-[a-z0-9-]+$/.test(n)).length).toBeGreaterThan(JOB_NAMES.length);
    for (const n of names) {
      const alarm = `arn:aws:cloudwatch:${region}:${account}:alarm:${n}`;
      expect(await decide(cloudWatchPublishesAlarm(arn, account, alarm), { resource: policy }), n).toBe(
        'Allowed',
      );
    }
  });
});
