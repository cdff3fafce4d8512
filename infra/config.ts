// Deployment settings, read once from CDK context (-c key=value or cdk.json) and validated at synth time
// by the same rules the handlers apply to the environment the stack gives them (lib/settings.ts).
// Defaults live there, not in cdk.json, so a bare `cdk synth -c ...` with the three required keys works.
import { createHash } from 'node:crypto';
import {
  ConfigError,
  type ConnectionValues,
  type ContextKey,
  endpointProject,
  functionEnvironment,
  isEmail,
  isIanaTimeZone,
  isLoginName,
  isSecretArn,
  isSecretName,
  isStackName,
  isTopicArn,
  type JobIdentity,
  projectId,
  SECURITY_GROUP_ID,
  SETTINGS,
  SUBNET_ID,
  VPC_ID,
  workspaceOrigin,
} from '../lib/settings.ts';

export { ConfigError, type ContextKey } from '../lib/settings.ts';

export const DEFAULT_TIMEZONE = SETTINGS.timezone.default;

/**
 * The stack name when `stackName` is unset: `LakeTs-<project>`, plus `-<database>` when a database other
 * than the default is set, so deploying a second project (or a second database of one) never replaces the
 * first one's stack. Where that is not a valid stack name (too long, or characters a stack name cannot
 * hold), its readable start and 8 hex characters of a hash of the whole identity.
 */
export function defaultStackName(project: string, database?: string): string {
  const parts = ['LakeTs', project];
  if (database !== undefined && database !== SETTINGS.database.default) parts.push(database);
  const plain = parts.join('-');
  if (isStackName(plain)) return plain;
  const hash = createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 8);
  const readable = plain
    .replace(/[^A-Za-z0-9-]+/g, '-')
    .slice(0, 40 - hash.length - 1)
    .replace(/-+$/, '');
  return `${readable}-${hash}`;
}

/** The service principal's `{"client_id","client_secret"}` secret: imported, never created. */
export type SpSecretRef =
  | { readonly kind: 'arn'; readonly arn: string }
  | { readonly kind: 'name'; readonly name: string };

export type AlarmTarget =
  | { readonly kind: 'email'; readonly email: string }
  | { readonly kind: 'topic'; readonly topicArn: string }
  | { readonly kind: 'none' };

export interface VpcConfig {
  readonly vpcId: string;
  readonly subnetIds: readonly string[];
  /** Empty: the stack creates one egress-only security group for the four functions. */
  readonly securityGroupIds: readonly string[];
}

export interface LakeTsConfig {
  readonly stackName: string;
  /** Bare project name (a `projects/` prefix in context is accepted and stripped). */
  readonly lakebaseProject: string;
  /** https origin of the Databricks workspace, no trailing slash. */
  readonly databricksHost: string;
  readonly spSecret: SpSecretRef;
  readonly lakebaseEndpoint?: string;
  readonly pgRole?: string;
  readonly database?: string;
  /** IANA time zone the schedules' cron expressions are evaluated in. */
  readonly timezone: string;
  readonly alarms: AlarmTarget;
  readonly vpc?: VpcConfig;
}

/**
 * Parses the context into a typed config. `get` returns the raw context value of a key
 * (`app.node.tryGetContext`): strings from `-c`, any JSON type from cdk.json.
 */
export function parseConfig(get: (key: ContextKey) => unknown): LakeTsConfig {
  const problems: string[] = [];
  let firstKey: ContextKey | undefined;
  const fail = (key: ContextKey, what: string, fix: string): undefined => {
    firstKey ??= key;
    problems.push(`context "${key}": ${what}; fix: ${fix}`);
    return undefined;
  };
  const text = (key: ContextKey): string | undefined => {
    const raw = get(key);
    if (raw === undefined || raw === null) return undefined;
    if (typeof raw !== 'string')
      return fail(key, `expected a string, got ${typeof raw}`, `-c ${key}=<value>`);
    const value = raw.trim();
    return value === '' ? undefined : value;
  };
  const list = (key: ContextKey, pattern: RegExp, example: string): string[] => {
    const raw = get(key);
    if (raw === undefined || raw === null || raw === '') return [];
    const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : undefined;
    if (!items || items.some((i) => typeof i !== 'string')) {
      fail(key, 'expected a comma-separated list', `-c ${key}=${example}`);
      return [];
    }
    const ids = items.map((i: string) => i.trim()).filter((i) => i !== '');
    const bad = ids.filter((i) => !pattern.test(i));
    if (bad.length > 0) fail(key, `malformed id(s) ${bad.join(', ')}`, `-c ${key}=${example}`);
    return ids;
  };

  const givenStackName = text('stackName');
  if (givenStackName !== undefined && !isStackName(givenStackName)) {
    fail(
      'stackName',
      `"${givenStackName}" is not a valid stack name (letter first, letters/digits/-, ≤ 40)`,
      '-c stackName=LakeTsJobs',
    );
  }

  const projectRaw = text('lakebaseProject');
  let lakebaseProject = '';
  if (projectRaw === undefined) {
    fail('lakebaseProject', 'missing (the Lakebase project the jobs maintain)', '-c lakebaseProject=<name>');
  } else {
    lakebaseProject = projectId(projectRaw) ?? '';
    if (lakebaseProject === '') {
      fail(
        'lakebaseProject',
        `"${projectRaw}" is not a project id (1-63 lowercase letters, digits, hyphens) or projects/<id>`,
        '-c lakebaseProject=<name>',
      );
    }
  }

  const hostRaw = text('databricksHost');
  let databricksHost = '';
  if (hostRaw === undefined) {
    fail(
      'databricksHost',
      'missing (the Databricks workspace URL)',
      '-c databricksHost=https://<workspace>.cloud.databricks.com',
    );
  } else {
    const url = workspaceOrigin(hostRaw, false);
    if ('origin' in url) {
      databricksHost = url.origin;
    } else if (url.problem === 'has a path') {
      fail(
        'databricksHost',
        `"${hostRaw}" has a path; give the workspace origin only`,
        `-c databricksHost=${new URL(hostRaw).origin}`,
      );
    } else {
      fail(
        'databricksHost',
        `"${hostRaw}" is not an https URL`,
        '-c databricksHost=https://<workspace>.cloud.databricks.com',
      );
    }
  }

  const secretArn = text('spSecretArn');
  const secretName = text('spSecretName');
  let spSecret: SpSecretRef = { kind: 'name', name: '' };
  if (secretArn !== undefined && secretName !== undefined) {
    fail(
      'spSecretArn',
      'both spSecretArn and spSecretName are set',
      'pass only one of -c spSecretArn=<arn> or -c spSecretName=<name>',
    );
  } else if (secretArn !== undefined) {
    if (isSecretArn(secretArn)) spSecret = { kind: 'arn', arn: secretArn };
    else
      fail(
        'spSecretArn',
        `"${secretArn}" is not a complete Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 chars>)`,
        'copy the ARN from the console, or use -c spSecretName=<name>',
      );
  } else if (secretName !== undefined) {
    if (secretName.startsWith('arn:'))
      fail('spSecretName', 'looks like an ARN', `-c spSecretArn=${secretName}`);
    else if (!isSecretName(secretName))
      fail('spSecretName', `"${secretName}" is not a valid secret name`, '-c spSecretName=<name>');
    else spSecret = { kind: 'name', name: secretName };
  } else {
    fail(
      'spSecretName',
      "missing: the existing secret holding the service principal's client_id/client_secret",
      '-c spSecretName=<name> or -c spSecretArn=<arn>',
    );
  }

  const lakebaseEndpoint = text('lakebaseEndpoint');
  if (lakebaseEndpoint !== undefined) {
    const endpointOf = endpointProject(lakebaseEndpoint);
    if (endpointOf === undefined) {
      fail(
        'lakebaseEndpoint',
        `"${lakebaseEndpoint}" is malformed`,
        '-c lakebaseEndpoint=projects/<p>/branches/<b>/endpoints/<e>',
      );
    } else if (lakebaseProject && endpointOf !== lakebaseProject) {
      fail(
        'lakebaseEndpoint',
        `names project "${endpointOf}" but lakebaseProject is "${lakebaseProject}"`,
        'make the two agree',
      );
    }
  }

  // Postgres role and database: the handlers' rule (at most 63 bytes, no control characters or line
  // separators); anything else is quoted by the handlers.
  const identifier = (key: 'pgRole' | 'database'): string | undefined => {
    const value = text(key);
    if (value !== undefined && !isLoginName(value)) {
      return fail(
        key,
        'is not a Postgres identifier (at most 63 bytes, no control characters)',
        `-c ${key}=<name>`,
      );
    }
    return value;
  };
  const pgRole = identifier('pgRole');
  const database = identifier('database');
  const stackName = givenStackName ?? defaultStackName(lakebaseProject, database);

  const timezone = text('timezone') ?? DEFAULT_TIMEZONE;
  if (!isIanaTimeZone(timezone)) {
    fail(
      'timezone',
      `"${timezone}" is not an IANA time zone name`,
      `-c timezone=Europe/Berlin (default ${DEFAULT_TIMEZONE})`,
    );
  }

  const alarmEmail = text('alarmEmail');
  const alarmTopicArn = text('alarmTopicArn');
  let alarms: AlarmTarget = { kind: 'none' };
  if (alarmEmail !== undefined && alarmTopicArn !== undefined) {
    fail(
      'alarmEmail',
      'both alarmEmail and alarmTopicArn are set',
      'pass only one (subscribe the address to your own topic)',
    );
  } else if (alarmEmail !== undefined) {
    if (isEmail(alarmEmail)) alarms = { kind: 'email', email: alarmEmail };
    else fail('alarmEmail', `"${alarmEmail}" is not an email address`, '-c alarmEmail=oncall@example.com');
  } else if (alarmTopicArn !== undefined) {
    if (isTopicArn(alarmTopicArn)) alarms = { kind: 'topic', topicArn: alarmTopicArn };
    else
      fail(
        'alarmTopicArn',
        `"${alarmTopicArn}" is not an SNS topic ARN`,
        '-c alarmTopicArn=arn:aws:sns:<region>:<account>:<topic>',
      );
  }

  const vpcId = text('vpcId');
  const subnetIds = list('subnetIds', SUBNET_ID, 'subnet-0123456789abcdef0,subnet-0fedcba9876543210');
  const securityGroupIds = list('securityGroupIds', SECURITY_GROUP_ID, 'sg-0123456789abcdef0');
  let vpc: VpcConfig | undefined;
  if (vpcId === undefined) {
    if (subnetIds.length > 0 || securityGroupIds.length > 0) {
      fail('vpcId', 'subnetIds/securityGroupIds need a VPC', '-c vpcId=vpc-0123456789abcdef0');
    }
  } else if (!VPC_ID.test(vpcId)) {
    fail('vpcId', `"${vpcId}" is not a VPC id`, '-c vpcId=vpc-0123456789abcdef0');
  } else if (subnetIds.length === 0) {
    fail(
      'subnetIds',
      'missing: a VPC needs the (private, with egress) subnets to run in',
      '-c subnetIds=subnet-aaa,subnet-bbb',
    );
  } else {
    vpc = { vpcId, subnetIds, securityGroupIds };
  }

  if (firstKey !== undefined) throw new ConfigError(firstKey, problems.join(' | '), problems);
  return {
    stackName,
    lakebaseProject,
    databricksHost,
    spSecret,
    ...(lakebaseEndpoint !== undefined && { lakebaseEndpoint }),
    ...(pgRole !== undefined && { pgRole }),
    ...(database !== undefined && { database }),
    timezone,
    alarms,
    ...(vpc && { vpc }),
  };
}

/**
 * The environment of a job's function: the connection settings as the handlers read them (unset ones
 * left out, so the handlers apply the same defaults) and the runtime settings. `secretId` is what the
 * handler passes to GetSecretValue: the ARN, or the name of a secret imported by name.
 */
export function jobEnvironment(
  config: LakeTsConfig,
  secretId: string,
  job: JobIdentity,
): Record<string, string> {
  const values: ConnectionValues = {
    project: config.lakebaseProject,
    host: config.databricksHost,
    secretId,
    endpoint: config.lakebaseEndpoint,
    pgRole: config.pgRole,
    database: config.database,
  };
  return functionEnvironment(values, job);
}
