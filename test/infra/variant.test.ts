// The other deployment shapes: secret by ARN, pinned endpoint and role, an existing alarm topic, a VPC.
import { App, type Environment } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../infra/config.ts';
import { defineApp } from '../../infra/stack.ts';
import { JOB_NAMES, JOBS } from '../../lib/jobs/catalog.ts';
import { acknowledgements, findingsIgnoringAcknowledgements, type Synthesized, synth } from './synth.ts';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:lakets/sp-AbC123';
const TOPIC_ARN = 'arn:aws:sns:eu-west-1:123456789012:oncall';
const BASE = {
  stackName: 'LakeTsProd',
  lakebaseProject: 'projects/prod',
  databricksHost: 'https://dbc-1.cloud.databricks.com/',
  spSecretArn: SECRET_ARN,
  lakebaseEndpoint: 'projects/prod/branches/production/endpoints/ep-rw',
  pgRole: '6f1d2c3b-aaaa-bbbb-cccc-0123456789ab',
  database: 'lakets',
  timezone: 'Asia/Kolkata',
  alarmTopicArn: TOPIC_ARN,
  vpcId: 'vpc-0123456789abcdef0',
  subnetIds: 'subnet-0123456789abcdef0,subnet-0fedcba9876543210',
};

// biome-ignore lint/suspicious/noExplicitAny: CloudFormation resources are untyped JSON
const ofType = (s: Synthesized, type: string): any[] =>
  Object.values(s.template.Resources as Record<string, { Type: string; Properties: unknown }>)
    .filter((r) => r.Type === type)
    .map((r) => r.Properties);

function expectNagClean(s: Synthesized, expectedAcks: string[]): void {
  expect(s.report.pluginReports.flatMap((r) => r.violations)).toEqual([]);
  const acks = acknowledgements(s.stack);
  expect(acks.map((a) => a.id).sort()).toEqual([...expectedAcks].sort());
  const hidden = findingsIgnoringAcknowledgements(s.stack);
  for (const a of acks)
    expect(
      hidden.some((f) => f.id === a.id && f.path.startsWith(a.path)),
      a.id,
    ).toBe(true);
  for (const f of hidden)
    expect(
      acks.some((a) => a.id === f.id && f.path.startsWith(a.path)),
      f.id,
    ).toBe(true);
}

const VPC_ACK = 'AwsSolutions-IAM5[Resource::*]';

describe('secret by ARN, existing topic, VPC with a stack-made security group', () => {
  let s: Synthesized;
  let template: Template;
  beforeAll(() => {
    s = synth(BASE);
    template = Template.fromJSON(s.template);
  });

  it('passes every optional setting to the functions, and the secret ARN as its id', () => {
    for (const job of JOB_NAMES) {
      template.hasResourceProperties('AWS::Lambda::Function', {
        FunctionName: `LakeTsProd-${job}`,
        Environment: {
          Variables: {
            LAKETS_PROJECT: 'prod',
            DATABRICKS_HOST: 'https://dbc-1.cloud.databricks.com',
            LAKETS_SP_SECRET_ID: SECRET_ARN,
            LAKETS_LAKEBASE_ENDPOINT: 'projects/prod/branches/production/endpoints/ep-rw',
            LAKETS_PG_ROLE: '6f1d2c3b-aaaa-bbbb-cccc-0123456789ab',
            LAKETS_DATABASE: 'lakets',
            POWERTOOLS_SERVICE_NAME: job,
          },
        },
      });
    }
  });

  it('grants GetSecretValue on exactly that ARN', () => {
    const statements = ofType(s, 'AWS::IAM::Policy')
      .flatMap((p) => p.PolicyDocument.Statement)
      .filter((st: { Action: unknown }) => JSON.stringify(st.Action).includes('secretsmanager'));
    expect(statements).toHaveLength(4);
    for (const st of statements)
      expect(st).toEqual({ Action: 'secretsmanager:GetSecretValue', Effect: 'Allow', Resource: SECRET_ARN });
  });

  it('schedules the daily jobs in the configured time zone at their own hours (no DST there), the others in UTC', () => {
    const schedules = ofType(s, 'AWS::Scheduler::Schedule');
    expect(schedules).toHaveLength(4);
    for (const schedule of schedules) {
      const job = JOB_NAMES.find((n) => schedule.Name === `LakeTsProd-${n}`);
      if (!job) throw new Error(`unexpected schedule ${schedule.Name}`);
      expect(schedule.GroupName).toBe('LakeTsProd');
      expect(schedule.ScheduleExpression).toBe(JOBS[job].schedule);
      expect(schedule.ScheduleExpressionTimezone).toBe(
        JOBS[job].periodMinutes === 1440 ? 'Asia/Kolkata' : 'UTC',
      );
    }
  });

  it("alarms to the existing topic and creates none, nor a policy that would replace its owner's", () => {
    template.resourceCountIs('AWS::SNS::Topic', 0);
    template.resourceCountIs('AWS::SNS::Subscription', 0);
    template.resourceCountIs('AWS::SNS::TopicPolicy', 0);
    for (const alarm of ofType(s, 'AWS::CloudWatch::Alarm')) expect(alarm.AlarmActions).toEqual([TOPIC_ARN]);
  });

  it('adds no rule of its own to the template (the region is checked at synth when known)', () => {
    expect(Object.keys(s.template.Rules ?? {})).toEqual(['CheckBootstrapVersion']);
  });

  it('runs the functions in the imported subnets with an egress-only security group (443, 5432)', () => {
    template.resourceCountIs('AWS::EC2::SecurityGroup', 1);
    template.hasResourceProperties('AWS::EC2::SecurityGroup', {
      VpcId: 'vpc-0123456789abcdef0',
      SecurityGroupEgress: [
        Match.objectLike({ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 443, ToPort: 443 }),
        Match.objectLike({ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 5432, ToPort: 5432 }),
      ],
      SecurityGroupIngress: Match.absent(),
    });
    for (const fn of ofType(s, 'AWS::Lambda::Function')) {
      expect(fn.VpcConfig.SubnetIds).toEqual(['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210']);
      expect(fn.VpcConfig.SecurityGroupIds).toHaveLength(1);
    }
  });

  it('adds only the ENI permissions Lambda needs in a VPC, no managed policy', () => {
    for (const role of ofType(s, 'AWS::IAM::Role')) expect(role.ManagedPolicyArns).toBeUndefined();
    const wildcard = ofType(s, 'AWS::IAM::Policy')
      .flatMap((p) => p.PolicyDocument.Statement)
      .filter((st: { Resource: unknown }) => JSON.stringify(st.Resource).includes('*'));
    expect(wildcard).toHaveLength(4);
    for (const st of wildcard) {
      expect(st.Resource).toBe('*');
      for (const action of st.Action)
        expect(action).toMatch(
          /^ec2:(Create|Describe|Delete|Assign|Unassign)\w*(NetworkInterfaces?|Subnets|PrivateIpAddresses)$/,
        );
    }
  });

  it('is cdk-nag clean, with the ENI wildcard acknowledged on each function role', () => {
    expectNagClean(s, ['AwsSolutions-SQS3', 'AwsSolutions-SQS3', ...JOB_NAMES.map(() => VPC_ACK)]);
  });
});

type Where = (region: string) => [Environment | undefined, string | undefined];
describe.each<[string, Where]>([
  ['the stack has an environment', (region) => [{ account: '123456789012', region }, undefined]],
  ['cdk deploy targets a region (CDK_DEFAULT_REGION)', (region) => [undefined, region]],
])('a region known at synth: %s', (_, where) => {
  const synthIn = (region: string, context: Record<string, unknown>) => {
    const app = new App({ context: { ...context, 'aws:cdk:bundling-stacks': [] } });
    const stack = defineApp(app, ...where(region));
    return app.synth().getStackByName(stack.stackName).template;
  };
  const CONTEXT = {
    lakebaseProject: 'prod',
    databricksHost: 'https://dbc-1.cloud.databricks.com',
    spSecretName: 'lakets/sp',
    alarmTopicArn: TOPIC_ARN,
  };

  it('refuses an alarm topic in another region, naming the key', () => {
    let error: unknown;
    try {
      synthIn('us-east-1', CONTEXT);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^context "alarmTopicArn": the topic is in eu-west-1 but the stack deploys to us-east-1.*; fix: -c alarmTopicArn=<a topic in us-east-1>/,
    );
    expect((error as ConfigError).variable).toBe('alarmTopicArn');
  });

  it('accepts one in its region', () => {
    const template = synthIn('eu-west-1', CONTEXT);
    const alarms = Object.values(
      template.Resources as Record<string, { Type: string; Properties: { AlarmActions: unknown } }>,
    ).filter((r) => r.Type === 'AWS::CloudWatch::Alarm');
    expect(alarms.length).toBeGreaterThan(10);
    for (const alarm of alarms) expect(alarm.Properties.AlarmActions).toEqual([TOPIC_ARN]);
  });
});

describe('VPC with existing security groups', () => {
  let s: Synthesized;
  beforeAll(() => {
    s = synth({ ...BASE, securityGroupIds: 'sg-0123456789abcdef0,sg-0fedcba9876543210' });
  });

  it('uses them as they are', () => {
    expect(ofType(s, 'AWS::EC2::SecurityGroup')).toHaveLength(0);
    expect(ofType(s, 'AWS::EC2::SecurityGroupEgress')).toHaveLength(0);
    for (const fn of ofType(s, 'AWS::Lambda::Function')) {
      expect(fn.VpcConfig.SecurityGroupIds).toEqual(['sg-0123456789abcdef0', 'sg-0fedcba9876543210']);
    }
    expectNagClean(s, ['AwsSolutions-SQS3', 'AwsSolutions-SQS3', ...JOB_NAMES.map(() => VPC_ACK)]);
  });
});
