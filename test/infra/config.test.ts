// Context parsing: defaults, normalisation, and one clear line per mistake naming the key and the fix.
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  type ContextKey,
  defaultStackName,
  jobEnvironment,
  parseConfig,
} from '../../infra/config.ts';
import { isStackName } from '../../lib/settings.ts';
import { REQUIRED_CONTEXT } from './synth.ts';

const parse = (context: Partial<Record<ContextKey, unknown>>) => parseConfig((key) => context[key]);
const problemsOf = (context: Partial<Record<ContextKey, unknown>>): readonly string[] => {
  try {
    parse(context);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
};

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:lakets/sp-AbC123';

describe('parseConfig: accepted', () => {
  it('needs only the project, the host and the secret; everything else has a default', () => {
    expect(parse(REQUIRED_CONTEXT)).toEqual({
      stackName: 'LakeTs-demo',
      lakebaseProject: 'demo',
      databricksHost: 'https://x.cloud.databricks.com',
      spSecret: { kind: 'name', name: 'lakets/sp' },
      timezone: 'UTC',
      alarms: { kind: 'none' },
    });
  });

  it('normalises projects/<name>, a trailing slash on the host, and lists given as strings', () => {
    const config = parse({
      lakebaseProject: 'projects/my-proj',
      databricksHost: 'https://dbc-1234.cloud.databricks.com/',
      spSecretArn: SECRET_ARN,
      lakebaseEndpoint: 'projects/my-proj/branches/production/endpoints/ep-1',
      pgRole: '6f1d2c3b-aaaa-bbbb-cccc-0123456789ab',
      database: 'databricks_postgres',
      timezone: 'America/Argentina/Buenos_Aires',
      alarmTopicArn: 'arn:aws:sns:eu-west-1:123456789012:oncall',
      vpcId: 'vpc-0123456789abcdef0',
      subnetIds: ' subnet-0123456789abcdef0 , subnet-0fedcba9876543210',
      securityGroupIds: ['sg-0123456789abcdef0'],
    });
    expect(config).toMatchObject({
      lakebaseProject: 'my-proj',
      databricksHost: 'https://dbc-1234.cloud.databricks.com',
      spSecret: { kind: 'arn', arn: SECRET_ARN },
      lakebaseEndpoint: 'projects/my-proj/branches/production/endpoints/ep-1',
      timezone: 'America/Argentina/Buenos_Aires',
      alarms: { kind: 'topic', topicArn: 'arn:aws:sns:eu-west-1:123456789012:oncall' },
      vpc: {
        vpcId: 'vpc-0123456789abcdef0',
        subnetIds: ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'],
        securityGroupIds: ['sg-0123456789abcdef0'],
      },
    });
  });

  it('names the stack after the project (and a database other than the default), so two projects never share one', () => {
    const name = (context: Partial<Record<ContextKey, unknown>>) =>
      parse({ ...REQUIRED_CONTEXT, ...context }).stackName;
    expect(name({ lakebaseProject: 'sales' })).toBe('LakeTs-sales');
    expect(name({ lakebaseProject: 'projects/sales' })).toBe('LakeTs-sales');
    expect(name({ lakebaseProject: 'sales', database: 'databricks_postgres' })).toBe('LakeTs-sales');
    expect(name({ lakebaseProject: 'sales', database: 'metrics' })).toBe('LakeTs-sales-metrics');
    expect(name({ lakebaseProject: 'sales', stackName: 'Mine' })).toBe('Mine');
    // Names a stack cannot hold (an underscore, 63 characters) keep a readable start and a hash of the whole.
    const odd = name({ lakebaseProject: 'sales', database: 'metrics_eu' });
    const long = name({ lakebaseProject: 'p'.repeat(63) });
    for (const n of [odd, long]) expect(isStackName(n), n).toBe(true);
    expect(odd).toMatch(/^LakeTs-sales-metrics-eu-[0-9a-f]{8}$/);
    expect(long).toMatch(/^LakeTs-p+-[0-9a-f]{8}$/);
    expect(long).toHaveLength(40);
  });

  it('gives different projects and databases different default stack names', () => {
    const names = [
      defaultStackName('a'),
      defaultStackName('b'),
      defaultStackName('a', 'x'),
      defaultStackName('a', 'x_y'),
      defaultStackName('a', 'x-y'),
      defaultStackName('a', 'x.y'),
      defaultStackName('p'.repeat(63)),
      defaultStackName(`${'p'.repeat(62)}q`),
    ];
    expect(new Set(names).size).toBe(names.length);
  });

  it('takes a Lakebase Provisioned instance instead of a project, and gives it to the functions', () => {
    const config = parse({
      ...REQUIRED_CONTEXT,
      lakebaseProject: undefined,
      lakebaseInstance: 'lakets-Prov-1',
    });
    expect(config).toEqual({
      stackName: 'LakeTs-lakets-Prov-1',
      lakebaseInstance: 'lakets-Prov-1',
      databricksHost: 'https://x.cloud.databricks.com',
      spSecret: { kind: 'name', name: 'lakets/sp' },
      timezone: 'UTC',
      alarms: { kind: 'none' },
    });
    const env = jobEnvironment(config, 'lakets/sp', { name: 'tiering', metricsNamespace: 'LakeTS' });
    expect(env).toMatchObject({ LAKETS_LAKEBASE_INSTANCE: 'lakets-Prov-1' });
    expect(env).not.toHaveProperty('LAKETS_PROJECT');
  });

  it('treats empty strings as unset', () => {
    expect(parse({ ...REQUIRED_CONTEXT, timezone: '', alarmEmail: '  ' })).toMatchObject({
      timezone: 'UTC',
      alarms: { kind: 'none' },
    });
  });
});

describe('parseConfig: rejected with the key and the fix', () => {
  it.each<[string, Partial<Record<ContextKey, unknown>>, RegExp]>([
    [
      'missing lakebaseProject',
      { databricksHost: REQUIRED_CONTEXT.databricksHost, spSecretName: 'lakets/sp' },
      /^context "lakebaseProject": missing .*; fix: -c lakebaseProject=<name>$/,
    ],
    [
      'a malformed project',
      { ...REQUIRED_CONTEXT, lakebaseProject: 'projects/a/branches/b' },
      /^context "lakebaseProject": "projects\/a\/branches\/b" is not a project id/,
    ],
    [
      'an upper-case project',
      { ...REQUIRED_CONTEXT, lakebaseProject: 'My_Proj' },
      /"lakebaseProject": "My_Proj" is not a project id \(1-63 lowercase/,
    ],
    [
      'an endpoint with an invalid id',
      { ...REQUIRED_CONTEXT, lakebaseEndpoint: 'projects/demo/branches/Main/endpoints/ep-1' },
      /"lakebaseEndpoint": .* is malformed/,
    ],
    [
      'missing databricksHost',
      { lakebaseProject: 'demo', spSecretName: 'x' },
      /^context "databricksHost": missing.*-c databricksHost=https:\/\//,
    ],
    [
      'a non-https host',
      { ...REQUIRED_CONTEXT, databricksHost: 'http://x.cloud.databricks.com' },
      /^context "databricksHost": "http:\/\/x.cloud.databricks.com" is not an https URL; fix: -c databricksHost=https:\/\//,
    ],
    [
      'a host that is not a URL',
      { ...REQUIRED_CONTEXT, databricksHost: 'x.cloud.databricks.com' },
      /"databricksHost".*not an https URL/,
    ],
    [
      'a host with a path',
      { ...REQUIRED_CONTEXT, databricksHost: 'https://x.cloud.databricks.com/sql/1.0' },
      /"databricksHost".*has a path.*fix: -c databricksHost=https:\/\/x.cloud.databricks.com$/,
    ],
    [
      'a bad timezone',
      { ...REQUIRED_CONTEXT, timezone: 'Mars/Olympus_Mons' },
      /^context "timezone": "Mars\/Olympus_Mons" is not an IANA time zone name; fix: -c timezone=/,
    ],
    ['an offset as timezone', { ...REQUIRED_CONTEXT, timezone: '+01:00' }, /"timezone"/],
    [
      'both secret ARN and name',
      { ...REQUIRED_CONTEXT, spSecretArn: SECRET_ARN },
      /^context "spSecretArn": both spSecretArn and spSecretName are set; fix: pass only one/,
    ],
    [
      'no secret',
      { lakebaseProject: 'demo', databricksHost: REQUIRED_CONTEXT.databricksHost },
      /^context "spSecretName": missing.*fix: -c spSecretName=<name> or -c spSecretArn=<arn>$/,
    ],
    [
      'a malformed secret ARN',
      {
        lakebaseProject: 'demo',
        databricksHost: REQUIRED_CONTEXT.databricksHost,
        spSecretArn: 'arn:aws:secretsmanager:eu-west-1:123:secret:x',
      },
      /^context "spSecretArn": .* is not a complete Secrets Manager secret ARN/,
    ],
    [
      'a partial secret ARN (no random suffix)',
      {
        lakebaseProject: 'demo',
        databricksHost: REQUIRED_CONTEXT.databricksHost,
        spSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:lakets/sp',
      },
      /"spSecretArn".*not a complete.*-c spSecretName=<name>/,
    ],
    [
      'an ARN as secret name',
      { ...REQUIRED_CONTEXT, spSecretName: SECRET_ARN },
      /"spSecretName": looks like an ARN; fix: -c spSecretArn=arn:/,
    ],
    [
      'a malformed endpoint',
      { ...REQUIRED_CONTEXT, lakebaseEndpoint: 'projects/demo/endpoints/ep-1' },
      /^context "lakebaseEndpoint": .* is malformed; fix: -c lakebaseEndpoint=projects\/<p>\/branches\/<b>\/endpoints\/<e>$/,
    ],
    [
      'an endpoint of another project',
      { ...REQUIRED_CONTEXT, lakebaseEndpoint: 'projects/other/branches/main/endpoints/ep-1' },
      /"lakebaseEndpoint": names project "other" but lakebaseProject is "demo"/,
    ],
    [
      'a bad alarm email',
      { ...REQUIRED_CONTEXT, alarmEmail: 'oncall' },
      /"alarmEmail": "oncall" is not an email address/,
    ],
    [
      'a malformed topic ARN',
      { ...REQUIRED_CONTEXT, alarmTopicArn: 'arn:aws:sqs:eu-west-1:123456789012:q' },
      /"alarmTopicArn".*not an SNS topic ARN/,
    ],
    [
      'both alarm email and topic',
      { ...REQUIRED_CONTEXT, alarmEmail: 'a@b.co', alarmTopicArn: 'arn:aws:sns:eu-west-1:123456789012:t' },
      /"alarmEmail": both/,
    ],
    [
      'subnets without a VPC',
      { ...REQUIRED_CONTEXT, subnetIds: 'subnet-0123456789abcdef0' },
      /"vpcId": subnetIds\/securityGroupIds need a VPC/,
    ],
    [
      'a VPC without subnets',
      { ...REQUIRED_CONTEXT, vpcId: 'vpc-0123456789abcdef0' },
      /"subnetIds": missing/,
    ],
    [
      'a malformed subnet id',
      { ...REQUIRED_CONTEXT, vpcId: 'vpc-0123456789abcdef0', subnetIds: 'subnet-1,abc' },
      /"subnetIds": malformed id\(s\) subnet-1, abc/,
    ],
    [
      'a Postgres role over 63 bytes',
      { ...REQUIRED_CONTEXT, pgRole: 'r'.repeat(64) },
      /"pgRole": is not a Postgres identifier/,
    ],
    ['a non-string value', { ...REQUIRED_CONTEXT, timezone: 3 }, /"timezone": expected a string, got number/],
    [
      'both a project and an instance',
      { ...REQUIRED_CONTEXT, lakebaseInstance: 'lakets-prov' },
      /^context "lakebaseInstance": both lakebaseProject and lakebaseInstance are set; fix: pass only one: -c lakebaseProject=<name> \(Autoscaling\) or -c lakebaseInstance=<name> \(Provisioned\)$/,
    ],
    [
      'a malformed instance name',
      { ...REQUIRED_CONTEXT, lakebaseProject: undefined, lakebaseInstance: 'lakets/prov' },
      /^context "lakebaseInstance": "lakets\/prov" is not a database instance name .*; fix: -c lakebaseInstance=<name>$/,
    ],
    [
      'a pinned endpoint with an instance',
      {
        ...REQUIRED_CONTEXT,
        lakebaseProject: undefined,
        lakebaseInstance: 'lakets-prov',
        lakebaseEndpoint: 'projects/demo/branches/main/endpoints/ep-1',
      },
      /^context "lakebaseEndpoint": pins an endpoint of an Autoscaling project, and lakebaseInstance names a Provisioned instance; fix: drop -c lakebaseEndpoint/,
    ],
  ])('%s', (_, context, message) => {
    const problems = problemsOf(context);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(message);
    expect(problems[0]).not.toContain('\n');
  });

  it('reports every problem at once, one line each', () => {
    const problems = problemsOf({ databricksHost: 'ftp://x', timezone: 'Nowhere' });
    expect(problems.map((p) => p.match(/^context "(\w+)"/)?.[1])).toEqual([
      'lakebaseProject',
      'databricksHost',
      'spSecretName',
      'timezone',
    ]);
  });
});

describe('infra/app.ts', () => {
  it('exits 1 with one line per problem and no stack trace on bad context', () => {
    const result = spawnSync(process.execPath, ['infra/app.ts'], {
      cwd: new URL('../..', import.meta.url),
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH,
        CDK_OUTDIR: mkdtempSync(join(tmpdir(), 'lakets-app-')),
        CDK_CONTEXT_JSON: JSON.stringify({
          lakebaseProject: 'demo',
          databricksHost: 'http://x',
          spSecretName: 's',
        }),
      },
    });
    expect(result.status).toBe(1);
    expect(result.stderr.trim()).toBe(
      'LakeTS config: context "databricksHost": "http://x" is not an https URL; fix: -c databricksHost=https://<workspace>.cloud.databricks.com',
    );
  });
});
