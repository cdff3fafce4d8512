// The default deployment (secret by name, email alarms), scheduled in a non-UTC time zone.
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { missedRunAlarmShape, outcomePeriod } from '../../infra/monitoring.ts';
import { JOB_NAMES, JOBS } from '../../lib/jobs/catalog.ts';
import { METRIC_NAMES, METRICS_NAMESPACE } from '../../lib/jobs/spec.ts';
import { normaliseTemplate } from './normalise.ts';
import {
  acknowledgements,
  bundleOf,
  expectOwnJobOnly,
  findingsIgnoringAcknowledgements,
  REQUIRED_CONTEXT,
  type Synthesized,
  synth,
} from './synth.ts';

const TIMEZONE = 'Europe/Berlin';
/** The default stack name of project "demo": LakeTs-<project>. */
const STACK = 'LakeTs-demo';
let synthesized: Synthesized;
let template: Template;
// biome-ignore lint/suspicious/noExplicitAny: CloudFormation resources are untyped JSON
type Resources = Record<string, { Type: string; Properties: any }>;
let resources: Resources;

beforeAll(() => {
  synthesized = synth({ ...REQUIRED_CONTEXT, timezone: TIMEZONE, alarmEmail: 'oncall@example.com' });
  template = Template.fromJSON(synthesized.template);
  resources = synthesized.template.Resources;
});

const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
const functionOf = (job: string) => {
  const found = ofType('AWS::Lambda::Function').find(
    ([, r]) => r.Properties.FunctionName === `${STACK}-${job}`,
  );
  if (!found) throw new Error(`no function for ${job}`);
  return found;
};
const policiesOfRole = (roleId: string) =>
  ofType('AWS::IAM::Policy').filter(([, p]) =>
    p.Properties.Roles.some((r: { Ref?: string }) => r.Ref === roleId),
  );
const statementsOfRole = (roleId: string) =>
  policiesOfRole(roleId).flatMap(
    ([, p]) => p.Properties.PolicyDocument.Statement as Record<string, unknown>[],
  );

describe('functions', () => {
  it('are four functions on nodejs24.x arm64 with 512 MB and per-job timeouts', () => {
    template.resourceCountIs('AWS::Lambda::Function', 4);
    for (const job of JOB_NAMES) {
      const [, fn] = functionOf(job);
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        MemorySize: 512,
        Handler: 'index.handler',
        Timeout: JOBS[job].timeoutMinutes * 60,
      });
    }
    expect(functionOf('rollup-refresh')[1].Properties.Timeout).toBe(600);
    expect(functionOf('partition-manager')[1].Properties.Timeout).toBe(300);
  });

  it('get their settings from the environment, and no secret value', () => {
    for (const job of JOB_NAMES) {
      const env = functionOf(job)[1].Properties.Environment.Variables;
      expect(env).toEqual({
        LAKETS_PROJECT: 'demo',
        DATABRICKS_HOST: 'https://x.cloud.databricks.com',
        LAKETS_SP_SECRET_ID: 'lakets/sp',
        POWERTOOLS_SERVICE_NAME: job,
        POWERTOOLS_METRICS_NAMESPACE: 'LakeTS',
        POWERTOOLS_LOG_LEVEL: 'INFO',
        NODE_OPTIONS: '--enable-source-maps',
      });
    }
    const text = JSON.stringify(synthesized.template);
    expect(text).not.toMatch(/client_secret|SecretString|resolve:secretsmanager/);
    template.resourceCountIs('AWS::SecretsManager::Secret', 0);
  });

  it('each log to their own log group with a retention', () => {
    template.resourceCountIs('AWS::Logs::LogGroup', 4);
    template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
    const groups = new Set(
      JOB_NAMES.map((job) => functionOf(job)[1].Properties.LoggingConfig.LogGroup.Ref as string),
    );
    expect(groups.size).toBe(4);
  });

  it('retry asynchronous failures within the job period, then send them to the encrypted failure queue', () => {
    const [failureQueueId] = queueIds();
    for (const job of JOB_NAMES) {
      const [fnId] = functionOf(job);
      template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
        FunctionName: { Ref: fnId },
        Qualifier: '$LATEST',
        MaximumRetryAttempts: JOBS[job].delivery.lambdaRetryAttempts,
        MaximumEventAgeInSeconds: JOBS[job].delivery.lambdaMaxEventAgeMinutes * 60,
        DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [failureQueueId, 'Arn'] } } },
      });
    }
  });
});

/** [failure queue, scheduler DLQ] logical ids. */
function queueIds(): [string, string] {
  const ids = ofType('AWS::SQS::Queue').map(([id]) => id);
  const failure = ids.find((id) => id.startsWith('FailureQueue'));
  const dlq = ids.find((id) => id.startsWith('SchedulerDlq'));
  if (!failure || !dlq) throw new Error(`queues: ${ids.join(', ')}`);
  return [failure, dlq];
}

describe('bundles', () => {
  it.each(JOB_NAMES)('%s: its bundle holds its own job and no other', (name) => {
    const code = bundleOf(synthesized.directory, functionOf(name)[1]);
    expectOwnJobOnly(code, name);
  });
});

describe('schedules', () => {
  // Sub-daily jobs in UTC (no wall clock, no DST); daily jobs at local times that exist once every day in
  // Berlin: 02:00 does not exist there one day a year, so both move an hour later (test/infra/dst.test.ts).
  const expressions = {
    'partition-manager': ['cron(0 */6 * * ? *)', 'UTC'],
    tiering: ['cron(0 3 * * ? *)', TIMEZONE],
    retention: ['cron(0 4 * * ? *)', TIMEZONE],
    'rollup-refresh': ['cron(0/15 * * * ? *)', 'UTC'],
  } as const;

  const groupId = () => {
    const [group, ...more] = ofType('AWS::Scheduler::ScheduleGroup');
    expect(more).toHaveLength(0);
    if (!group) throw new Error('no schedule group');
    return group;
  };

  it("are in the stack's own schedule group, named after the stack", () => {
    const [, group] = groupId();
    expect(group.Properties.Name).toBe(STACK);
    for (const [, schedule] of ofType('AWS::Scheduler::Schedule'))
      expect(schedule.Properties.GroupName).toBe(STACK);
  });

  it('run each job on its expression and time zone, with retry and DLQ', () => {
    template.resourceCountIs('AWS::Scheduler::Schedule', 4);
    const [, dlqId] = queueIds();
    for (const job of JOB_NAMES) {
      const [fnId] = functionOf(job);
      template.hasResourceProperties('AWS::Scheduler::Schedule', {
        Name: `${STACK}-${job}`,
        ScheduleExpression: expressions[job][0],
        ScheduleExpressionTimezone: expressions[job][1],
        FlexibleTimeWindow: { Mode: 'OFF' },
        State: 'ENABLED',
        Target: {
          Arn: { 'Fn::GetAtt': [fnId, 'Arn'] },
          DeadLetterConfig: { Arn: { 'Fn::GetAtt': [dlqId, 'Arn'] } },
          RetryPolicy: {
            MaximumRetryAttempts: JOBS[job].delivery.schedulerRetryAttempts,
            MaximumEventAgeInSeconds: JOBS[job].delivery.schedulerMaxEventAgeMinutes * 60,
          },
          Input: Match.absent(),
        },
      });
    }
  });

  it("each use a role that can invoke only their own function, assumable only by the stack's schedule group", () => {
    const [, dlqId] = queueIds();
    const [groupLogicalId] = groupId();
    for (const [, schedule] of ofType('AWS::Scheduler::Schedule')) {
      const roleId = schedule.Properties.Target.RoleArn['Fn::GetAtt'][0] as string;
      const statements = statementsOfRole(roleId);
      expect(statements).toEqual([
        { Action: 'lambda:InvokeFunction', Effect: 'Allow', Resource: schedule.Properties.Target.Arn },
        { Action: 'sqs:SendMessage', Effect: 'Allow', Resource: { 'Fn::GetAtt': [dlqId, 'Arn'] } },
      ]);
      const role = resources[roleId];
      expect(role?.Properties.ManagedPolicyArns).toBeUndefined();
      const trust = role?.Properties.AssumeRolePolicyDocument.Statement;
      expect(trust).toEqual([
        {
          Action: 'sts:AssumeRole',
          Effect: 'Allow',
          Principal: { Service: 'scheduler.amazonaws.com' },
          // The group's ARN, as Scheduler presents it (a schedule's ARN never matches).
          Condition: {
            StringEquals: {
              'aws:SourceAccount': { Ref: 'AWS::AccountId' },
              'aws:SourceArn': { 'Fn::GetAtt': [groupLogicalId, 'Arn'] },
            },
          },
        },
      ]);
    }
  });
});

describe('least privilege', () => {
  it('grants GetSecretValue on the one secret only (name + exactly six suffix characters)', () => {
    const secretStatements = ofType('AWS::IAM::Policy')
      .flatMap(([, p]) => p.Properties.PolicyDocument.Statement as { Action: unknown; Resource: unknown }[])
      .filter((s) => JSON.stringify(s.Action).includes('secretsmanager'));
    expect(secretStatements).toHaveLength(4);
    for (const s of secretStatements) {
      expect(s.Action).toBe('secretsmanager:GetSecretValue');
      const resource = JSON.stringify(s.Resource);
      expect(resource).toContain(':secret:lakets/sp-??????');
      expect(resource).not.toContain('*');
    }
  });

  it('gives each function role only its log group, the secret and the failure queue', () => {
    const [failureQueueId] = queueIds();
    for (const job of JOB_NAMES) {
      const [, fn] = functionOf(job);
      const roleId = fn.Properties.Role['Fn::GetAtt'][0] as string;
      expect(resources[roleId]?.Properties.ManagedPolicyArns).toBeUndefined();
      const statements = statementsOfRole(roleId);
      expect(statements.map((s) => s.Action)).toEqual([
        ['logs:CreateLogStream', 'logs:PutLogEvents'],
        'secretsmanager:GetSecretValue',
        ['sqs:SendMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl'],
      ]);
      expect(statements[0]?.Resource).toEqual({
        'Fn::GetAtt': [fn.Properties.LoggingConfig.LogGroup.Ref, 'Arn'],
      });
      expect(statements[2]?.Resource).toEqual({ 'Fn::GetAtt': [failureQueueId, 'Arn'] });
    }
  });

  it('has no wildcard resource or action anywhere', () => {
    for (const [, policy] of ofType('AWS::IAM::Policy')) {
      for (const s of policy.Properties.PolicyDocument.Statement) {
        expect(JSON.stringify(s.Resource)).not.toContain('*');
        expect(JSON.stringify(s.Action)).not.toContain('*');
      }
    }
  });
});

describe('queues', () => {
  it('are SSE-encrypted, deny non-TLS access and keep failures 14 days', () => {
    template.resourceCountIs('AWS::SQS::Queue', 2);
    template.allResourcesProperties('AWS::SQS::Queue', {
      SqsManagedSseEnabled: true,
      MessageRetentionPeriod: 14 * 24 * 3600,
    });
    for (const queueId of queueIds()) {
      template.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: queueId }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Action: 'sqs:*',
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    }
  });
});

describe('alarms', () => {
  const alarms = () => ofType('AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
  const alarmNamed = (name: string) => {
    const found = alarms().find((a) => a.AlarmName === `${STACK}-${name}`);
    if (!found) throw new Error(`no alarm ${name}`);
    return found;
  };

  it('notify the topic, which has the email subscription, requires TLS and lets CloudWatch publish these alarms', () => {
    template.resourceCountIs('AWS::SNS::Topic', 1);
    const [topicId] = ofType('AWS::SNS::Topic')[0] ?? [];
    template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'oncall@example.com',
      TopicArn: { Ref: topicId },
    });
    const [[, policy], ...more] = ofType('AWS::SNS::TopicPolicy') as [[string, Resources[string]]];
    expect(more).toHaveLength(0);
    const [deny, allow, ...others] = policy.Properties.PolicyDocument.Statement;
    expect(others).toEqual([]);
    expect(deny).toMatchObject({
      Effect: 'Deny',
      Action: 'sns:Publish',
      Principal: '*',
      Condition: { Bool: { 'aws:SecureTransport': 'false' } },
    });
    expect(allow).toMatchObject({
      Effect: 'Allow',
      Action: 'sns:Publish',
      Principal: { Service: 'cloudwatch.amazonaws.com' },
      Resource: { Ref: topicId },
      Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
    });
    // Exactly this stack's alarms, by ARN (test/infra/policy.test.ts evaluates it).
    const sources = JSON.stringify(allow.Condition.ArnEquals['aws:SourceArn']);
    const alarmIds = ofType('AWS::CloudWatch::Alarm').map(([id]) => id);
    for (const id of alarmIds) expect(sources).toContain(`{"Fn::GetAtt":["${id}","Arn"]}`);
    expect(allow.Condition.ArnEquals['aws:SourceArn']).toHaveLength(alarmIds.length);
    expect(alarms()).toHaveLength(4 * 3 + 1 + 2 + 2);
    for (const a of alarms()) {
      expect(a.AlarmActions).toEqual([{ Ref: topicId }]);
      expect(a.OKActions).toEqual([{ Ref: topicId }]);
    }
  });

  it('cover errors (keeping their state through periods without a run) and throttles of every function', () => {
    // Errors: a run's 0 or 1 decides; a period without a run leaves the state: a job failing every run is
    // one ALARM (not ALARM -> OK -> ALARM each period), a healthy one never leaves OK.
    for (const job of JOB_NAMES) {
      const [fnId] = functionOf(job);
      for (const [suffix, metric, missing] of [
        ['errors', 'Errors', 'ignore'],
        ['throttles', 'Throttles', 'notBreaching'],
      ] as const) {
        expect(alarmNamed(`${job}-${suffix}`)).toMatchObject({
          Namespace: 'AWS/Lambda',
          MetricName: metric,
          Dimensions: [{ Name: 'FunctionName', Value: { Ref: fnId } }],
          Statistic: 'Sum',
          Period: outcomePeriod(JOBS[job]).toSeconds(),
          EvaluationPeriods: 1,
          Threshold: 1,
          ComparisonOperator: 'GreaterThanOrEqualToThreshold',
          TreatMissingData: missing,
        });
      }
    }
    expect(alarmNamed('rollup-refresh-errors').Period).toBe(15 * 60);
    expect(alarmNamed('tiering-errors').Period).toBe(3600);
  });

  it('fire on a missed run: no invocation in any period of the window, missing data breaching', () => {
    for (const job of JOB_NAMES) {
      const [fnId] = functionOf(job);
      const shape = missedRunAlarmShape(JOBS[job]);
      expect(alarmNamed(`${job}-missed-run`)).toMatchObject({
        Namespace: 'AWS/Lambda',
        MetricName: 'Invocations',
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: fnId } }],
        Statistic: 'Sum',
        Period: shape.period.toSeconds(),
        EvaluationPeriods: shape.evaluationPeriods,
        DatapointsToAlarm: shape.evaluationPeriods,
        Threshold: 1,
        ComparisonOperator: 'LessThanThreshold',
        TreatMissingData: 'breaching',
      });
    }
    // RollUp Refresh: 15 min period + 4 min delivery + 1 min jitter + 10 min timeout (Invocations is
    // published at a run's end, stamped at its start), in 1-minute periods, plus one for alignment.
    expect(alarmNamed('rollup-refresh-missed-run')).toMatchObject({ Period: 60, EvaluationPeriods: 31 });
    // Tiering: 24 h + 4 h + 1 min + 15 min, in hours (over a day of 1-minute periods is not allowed).
    expect(alarmNamed('tiering-missed-run')).toMatchObject({ Period: 3600, EvaluationPeriods: 30 });
  });

  it('fire when retention deferrals persist for three days', () => {
    expect(alarmNamed('retention-deferrals-persist')).toMatchObject({
      Namespace: 'LakeTS',
      MetricName: 'ChunksRetentionDeferred',
      // The runtime publishes every metric with {service, target}, `default` for a single-target stack.
      Dimensions: [
        { Name: 'service', Value: 'retention' },
        { Name: 'target', Value: 'default' },
      ],
      Statistic: 'Sum',
      Period: 86400,
      EvaluationPeriods: 3,
      DatapointsToAlarm: 3,
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      // A day without a run (its report carries 0 when nothing is deferred) keeps the state.
      TreatMissingData: 'ignore',
    });
  });

  it("fire when Tiering or Retention could not read Lakehouse Sync's state on a day", () => {
    for (const job of ['tiering', 'retention'] as const) {
      expect(alarmNamed(`${job}-sync-state-unreadable`)).toMatchObject({
        Namespace: 'LakeTS',
        MetricName: 'SyncStateUnreadable',
        Dimensions: [
          { Name: 'service', Value: job },
          { Name: 'target', Value: 'default' },
        ],
        Statistic: 'Sum',
        Period: 86400,
        EvaluationPeriods: 1,
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
        TreatMissingData: 'ignore',
      });
      expect(alarmNamed(`${job}-sync-state-unreadable`).AlarmDescription).toMatch(
        /USAGE on schema wal2delta and SELECT on wal2delta\.tables/,
      );
    }
  });

  it('fire on each new failed run sent to the failure queue or the scheduler DLQ, not on old ones waiting there', () => {
    const [failureQueueId, dlqId] = queueIds();
    for (const [name, queueId] of [
      ['failure-queue-not-empty', failureQueueId],
      ['scheduler-dlq-not-empty', dlqId],
    ] as const) {
      expect(alarmNamed(name)).toMatchObject({
        Namespace: 'AWS/SQS',
        MetricName: 'NumberOfMessagesSent',
        Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queueId, 'QueueName'] } }],
        Statistic: 'Sum',
        Period: 3600,
        EvaluationPeriods: 1,
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        TreatMissingData: 'notBreaching',
      });
    }
  });
});

describe('dashboard', () => {
  it('is named after the stack and its region (dashboards are global per account)', () => {
    const [, dashboard] = ofType('AWS::CloudWatch::Dashboard')[0] ?? [];
    expect(dashboard?.Properties.DashboardName).toEqual({
      'Fn::Join': ['', [`${STACK}-`, { Ref: 'AWS::Region' }]],
    });
  });

  it('shows every job and every metric the handlers emit', () => {
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const [, dashboard] = ofType('AWS::CloudWatch::Dashboard')[0] ?? [];
    const body = JSON.stringify(dashboard?.Properties.DashboardBody);
    for (const job of JOB_NAMES) expect(body).toContain(JOBS[job].title);
    for (const metric of METRIC_NAMES) expect(body).toContain(metric);
    expect(body).toContain(METRICS_NAMESPACE);
  });

  it("shows each job's failed invocations by stable code, those that never made a report included", () => {
    const [, dashboard] = ofType('AWS::CloudWatch::Dashboard')[0] ?? [];
    const body = JSON.stringify(dashboard?.Properties.DashboardBody);
    for (const job of JOB_NAMES) {
      // SEARCH('{LakeTS,service,target,code} MetricName="RunFailed" service="<job>"', ...), quotes escaped twice in the body.
      const search = new RegExp(
        String.raw`SEARCH\('\{LakeTS,service,target,code\} MetricName=\\+"RunFailed\\+" service=\\+"${job}\\+"'`,
      );
      expect(body).toMatch(search);
    }
  });
});

describe('cdk-nag AwsSolutions', () => {
  it('reports no unacknowledged finding, error or warning', () => {
    // synth() would have thrown on an error; warnings only show up in the report.
    const violations = synthesized.report.pluginReports.flatMap((r) => r.violations);
    expect(violations).toEqual([]);
  });

  it('has a reason for every acknowledgement, and no acknowledgement that hides nothing', () => {
    const acks = acknowledgements(synthesized.stack);
    for (const ack of acks) expect(ack.reason.length, ack.id).toBeGreaterThan(40);
    const hidden = findingsIgnoringAcknowledgements(synthesized.stack);
    // Every hidden finding sits under an acknowledgement of the same id, and vice versa.
    for (const f of hidden) {
      expect(
        acks.some((a) => a.id === f.id && f.path.startsWith(a.path)),
        `${f.id} at ${f.path}`,
      ).toBe(true);
    }
    for (const a of acks) {
      expect(
        hidden.some((f) => f.id === a.id && f.path.startsWith(a.path)),
        `${a.id} at ${a.path}`,
      ).toBe(true);
    }
    expect(acks.map((a) => a.id).sort()).toEqual(['AwsSolutions-SQS3', 'AwsSolutions-SQS3']);
  });
});

describe('snapshot', () => {
  it('matches, with asset hashes normalised', () => {
    expect(normaliseTemplate(synthesized.template)).toMatchSnapshot();
  });

  it('ignores a code change but not an infrastructure change', () => {
    const [fnId] = functionOf('tiering');
    const codeChanged = structuredClone(synthesized.template);
    codeChanged.Resources[fnId].Properties.Code.S3Key = `${'0'.repeat(64)}.zip`;
    expect(normaliseTemplate(codeChanged)).toEqual(normaliseTemplate(synthesized.template));

    const infraChanged = structuredClone(synthesized.template);
    infraChanged.Resources[fnId].Properties.Timeout = 899;
    expect(normaliseTemplate(infraChanged)).not.toEqual(normaliseTemplate(synthesized.template));
  });
});
