// Deployment settings, read once from CDK context (-c key=value or cdk.json) and validated at synth time.
// Defaults live here, not in cdk.json, so a bare `cdk synth -c ...` with the three required keys works.

export const DEFAULT_STACK_NAME = 'LakeTsJobs';
export const DEFAULT_TIMEZONE = 'UTC';

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

/** Every context key this app reads, for the error messages and the tests. */
export const CONTEXT_KEYS = [
  'stackName',
  'lakebaseProject',
  'databricksHost',
  'spSecretArn',
  'spSecretName',
  'lakebaseEndpoint',
  'pgRole',
  'database',
  'timezone',
  'alarmEmail',
  'alarmTopicArn',
  'vpcId',
  'subnetIds',
  'securityGroupIds',
] as const;
export type ContextKey = (typeof CONTEXT_KEYS)[number];

/** All problems found in the context, one line each, naming the key and the fix. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

// Lakebase resource ids (project, branch, endpoint): 1-63 lowercase letters, digits, hyphens (RFC 1123),
// the same rule the handlers apply to LAKETS_PROJECT / LAKETS_LAKEBASE_ENDPOINT at run time.
const RESOURCE_ID = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const ENDPOINT = /^projects\/([^/]+)\/branches\/([^/]+)\/endpoints\/([^/]+)$/;
const PARTITION = 'aws(?:-cn|-us-gov|-iso(?:-[a-z])?)?';
const SECRET_ARN = new RegExp(
  `^arn:${PARTITION}:secretsmanager:[a-z0-9-]+:\\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$`,
);
const SECRET_NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;
const TOPIC_ARN = new RegExp(`^arn:${PARTITION}:sns:[a-z0-9-]+:\\d{12}:[A-Za-z0-9_-]{1,256}$`);
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const STACK_NAME = /^[A-Za-z][A-Za-z0-9-]{0,39}$/;
const VPC_ID = /^vpc-[0-9a-f]{8,17}$/;
const SUBNET_ID = /^subnet-[0-9a-f]{8,17}$/;
const SG_ID = /^sg-[0-9a-f]{8,17}$/;
// Region/Area/Location style names; `Intl` then confirms the zone exists. Offsets such as +01:00 are
// valid for Intl but not for EventBridge Scheduler, hence the shape check first.
const TZ_SHAPE = /^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*$/;

/**
 * Parses the context into a typed config. `get` returns the raw context value of a key
 * (`app.node.tryGetContext`): strings from `-c`, any JSON type from cdk.json.
 */
export function parseConfig(get: (key: ContextKey) => unknown): LakeTsConfig {
  const problems: string[] = [];
  const fail = (key: ContextKey, what: string, fix: string): undefined => {
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

  const stackName = text('stackName') ?? DEFAULT_STACK_NAME;
  if (!STACK_NAME.test(stackName)) {
    fail(
      'stackName',
      `"${stackName}" is not a valid stack name (letter first, letters/digits/-, ≤ 40)`,
      '-c stackName=LakeTsJobs',
    );
  }

  const projectRaw = text('lakebaseProject');
  let lakebaseProject = '';
  if (projectRaw === undefined) {
    fail('lakebaseProject', 'missing (the Lakebase project the jobs maintain)', '-c lakebaseProject=<name>');
  } else {
    lakebaseProject = projectRaw.replace(/^projects\//, '');
    if (!RESOURCE_ID.test(lakebaseProject)) {
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
    const url = URL.canParse(hostRaw) ? new URL(hostRaw) : undefined;
    if (url?.protocol !== 'https:' || url.username || url.password || url.search || url.hash) {
      fail(
        'databricksHost',
        `"${hostRaw}" is not an https URL`,
        '-c databricksHost=https://<workspace>.cloud.databricks.com',
      );
    } else if (url.pathname !== '/') {
      fail(
        'databricksHost',
        `"${hostRaw}" has a path; give the workspace origin only`,
        `-c databricksHost=${url.origin}`,
      );
    } else {
      databricksHost = url.origin;
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
    if (SECRET_ARN.test(secretArn)) spSecret = { kind: 'arn', arn: secretArn };
    else
      fail(
        'spSecretArn',
        `"${secretArn}" is not a complete Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 chars>)`,
        'copy the ARN from the console, or use -c spSecretName=<name>',
      );
  } else if (secretName !== undefined) {
    if (secretName.startsWith('arn:'))
      fail('spSecretName', 'looks like an ARN', `-c spSecretArn=${secretName}`);
    else if (!SECRET_NAME.test(secretName))
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
    const match = ENDPOINT.exec(lakebaseEndpoint);
    if (!match?.slice(1).every((part) => RESOURCE_ID.test(part))) {
      fail(
        'lakebaseEndpoint',
        `"${lakebaseEndpoint}" is malformed`,
        '-c lakebaseEndpoint=projects/<p>/branches/<b>/endpoints/<e>',
      );
    } else if (lakebaseProject && match[1] !== lakebaseProject) {
      fail(
        'lakebaseEndpoint',
        `names project "${match[1]}" but lakebaseProject is "${lakebaseProject}"`,
        'make the two agree',
      );
    }
  }

  // Postgres identifiers: at most 63 bytes; anything else is quoted by the handlers.
  const identifier = (key: 'pgRole' | 'database'): string | undefined => {
    const value = text(key);
    if (value !== undefined && (Buffer.byteLength(value) > 63 || value.includes('\0'))) {
      return fail(key, 'is not a Postgres identifier (at most 63 bytes)', `-c ${key}=<name>`);
    }
    return value;
  };
  const pgRole = identifier('pgRole');
  const database = identifier('database');

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
    if (EMAIL.test(alarmEmail)) alarms = { kind: 'email', email: alarmEmail };
    else fail('alarmEmail', `"${alarmEmail}" is not an email address`, '-c alarmEmail=oncall@example.com');
  } else if (alarmTopicArn !== undefined) {
    if (TOPIC_ARN.test(alarmTopicArn)) alarms = { kind: 'topic', topicArn: alarmTopicArn };
    else
      fail(
        'alarmTopicArn',
        `"${alarmTopicArn}" is not an SNS topic ARN`,
        '-c alarmTopicArn=arn:aws:sns:<region>:<account>:<topic>',
      );
  }

  const vpcId = text('vpcId');
  const subnetIds = list('subnetIds', SUBNET_ID, 'subnet-0123456789abcdef0,subnet-0fedcba9876543210');
  const securityGroupIds = list('securityGroupIds', SG_ID, 'sg-0123456789abcdef0');
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

  if (problems.length > 0) throw new ConfigError(problems);
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

export function isIanaTimeZone(name: string): boolean {
  if (!TZ_SHAPE.test(name)) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}
