// Deployment settings, read once from CDK context (-c key=value or cdk.json) and validated at synth time
// by the same rules the handlers apply to the environment the stack gives them (lib/settings.ts).
// Defaults live there, not in cdk.json, so a bare `cdk synth -c ...` with the three required keys works.
import { createHash } from 'node:crypto';
import { DEFAULT_TARGET, parseTargets, type TargetEntry } from '../lib/estate.ts';
import {
  ConfigError,
  type ConnectionValues,
  type ContextKey,
  type ContextRule,
  endpointProject,
  functionEnvironment,
  isStackName,
  type JobIdentity,
  SETTINGS,
  type Setting,
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
  /**
   * Bare project name (a `projects/` prefix in context is accepted and stripped); exactly one of it
   * and `lakebaseInstance` is set.
   */
  readonly lakebaseProject?: string;
  /** A Lakebase Provisioned database instance instead of a project. */
  readonly lakebaseInstance?: string;
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
 * (`app.node.tryGetContext`): strings from `-c`, any JSON type from cdk.json. Each key is read by its
 * setting's rule in lib/settings.ts, in the settings' order; what involves two settings (one of two
 * keys, an endpoint of the project, a VPC with its subnets) is checked after. Every problem is reported,
 * one line each, naming the key and the fix.
 */
export function parseConfig(get: (key: ContextKey) => unknown): LakeTsConfig {
  const problems: string[] = [];
  let firstKey: ContextKey | undefined;
  const fail = (key: ContextKey, what: string, fix: string): void => {
    firstKey ??= key;
    problems.push(`context "${key}": ${what}; fix: ${fix}`);
  };
  const text = new Map<ContextKey, string>();
  const lists = new Map<ContextKey, string[]>();
  /** Keys given with a value their rule refused: the checks across settings leave them alone. */
  const refused = new Set<ContextKey>();

  for (const setting of Object.values(SETTINGS) as Setting[]) {
    if (setting.kind !== 'connection' && setting.kind !== 'stack') continue;
    let given = false;
    for (const key of setting.context as ContextKey[]) {
      const rule = setting.rules[key] as ContextRule;
      const raw = get(key);
      if (raw === undefined || raw === null) continue;
      if (rule.item) {
        if (raw === '') continue;
        const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : undefined;
        if (!items || items.some((i) => typeof i !== 'string')) {
          refused.add(key);
          fail(key, 'expected a comma-separated list', rule.fix);
          continue;
        }
        const ids = items.map((i: string) => i.trim()).filter((i) => i !== '');
        const bad = ids.filter((i) => !rule.item?.(i));
        if (bad.length > 0) {
          refused.add(key);
          fail(key, `malformed id(s) ${bad.join(', ')}`, rule.fix);
        }
        if (ids.length > 0) lists.set(key, ids);
        continue;
      }
      if (typeof raw !== 'string') {
        refused.add(key);
        fail(key, `expected a string, got ${typeof raw}`, `-c ${key}=<value>`);
        continue;
      }
      const value = raw.trim();
      if (value === '') continue;
      given = true;
      const checked = rule.check ? rule.check(value) : { value };
      if ('problem' in checked) {
        refused.add(key);
        fail(key, checked.problem, checked.fix ?? rule.fix);
      } else {
        text.set(key, checked.value);
      }
    }
    const alternative = setting.kind === 'connection' ? setting.required?.or : undefined;
    const alternativeGiven = (() => {
      const raw = alternative === undefined ? undefined : get(alternative as ContextKey);
      return typeof raw === 'string' && raw.trim() !== '';
    })();
    if (!given && !alternativeGiven && setting.kind === 'connection' && setting.required) {
      fail(setting.context[0] as ContextKey, setting.required.what, setting.required.fix);
    }
  }

  // Across settings. Each pair of alternatives: one of the two.
  const secretArn = text.get('spSecretArn');
  const secretName = text.get('spSecretName');
  if (secretArn !== undefined && secretName !== undefined) {
    fail(
      'spSecretArn',
      'both spSecretArn and spSecretName are set',
      'pass only one of -c spSecretArn=<arn> or -c spSecretName=<name>',
    );
  }
  const alarmEmail = text.get('alarmEmail');
  const alarmTopicArn = text.get('alarmTopicArn');
  if (alarmEmail !== undefined && alarmTopicArn !== undefined) {
    fail(
      'alarmEmail',
      'both alarmEmail and alarmTopicArn are set',
      'pass only one (subscribe the address to your own topic)',
    );
  }
  const lakebaseProject = text.get('lakebaseProject');
  const lakebaseInstance = text.get('lakebaseInstance');
  if (lakebaseInstance !== undefined && (lakebaseProject !== undefined || refused.has('lakebaseProject'))) {
    fail(
      'lakebaseInstance',
      'both lakebaseProject and lakebaseInstance are set',
      'pass only one: -c lakebaseProject=<name> (Autoscaling) or -c lakebaseInstance=<name> (Provisioned)',
    );
  }
  const lakebaseEndpoint = text.get('lakebaseEndpoint');
  const endpointOf = lakebaseEndpoint === undefined ? undefined : endpointProject(lakebaseEndpoint);
  if (lakebaseEndpoint !== undefined && (lakebaseInstance !== undefined || refused.has('lakebaseInstance'))) {
    fail(
      'lakebaseEndpoint',
      'pins an endpoint of an Autoscaling project, and lakebaseInstance names a Provisioned instance',
      'drop -c lakebaseEndpoint (an instance has one read-write host)',
    );
  } else if (lakebaseProject && endpointOf !== undefined && endpointOf !== lakebaseProject) {
    fail(
      'lakebaseEndpoint',
      `names project "${endpointOf}" but lakebaseProject is "${lakebaseProject}"`,
      'make the two agree',
    );
  }
  const vpcId = text.get('vpcId');
  const subnetIds = lists.get('subnetIds') ?? [];
  const securityGroupIds = lists.get('securityGroupIds') ?? [];
  let vpc: VpcConfig | undefined;
  if (vpcId === undefined) {
    if (!refused.has('vpcId') && (subnetIds.length > 0 || securityGroupIds.length > 0)) {
      fail('vpcId', 'subnetIds/securityGroupIds need a VPC', '-c vpcId=vpc-0123456789abcdef0');
    }
  } else if (subnetIds.length === 0) {
    if (!refused.has('subnetIds')) {
      fail(
        'subnetIds',
        'missing: a VPC needs the (private, with egress) subnets to run in',
        '-c subnetIds=subnet-aaa,subnet-bbb',
      );
    }
  } else {
    vpc = { vpcId, subnetIds, securityGroupIds };
  }

  if (firstKey !== undefined) throw new ConfigError(firstKey, problems.join(' | '), problems);
  const pgRole = text.get('pgRole');
  const database = text.get('database');
  const alarms: AlarmTarget =
    alarmEmail !== undefined
      ? { kind: 'email', email: alarmEmail }
      : alarmTopicArn !== undefined
        ? { kind: 'topic', topicArn: alarmTopicArn }
        : { kind: 'none' };
  return {
    stackName: text.get('stackName') ?? defaultStackName(lakebaseProject ?? lakebaseInstance ?? '', database),
    ...(lakebaseProject !== undefined && { lakebaseProject }),
    ...(lakebaseInstance !== undefined && { lakebaseInstance }),
    databricksHost: text.get('databricksHost') ?? '',
    spSecret:
      secretArn !== undefined ? { kind: 'arn', arn: secretArn } : { kind: 'name', name: secretName ?? '' },
    ...(lakebaseEndpoint !== undefined && { lakebaseEndpoint }),
    ...(pgRole !== undefined && { pgRole }),
    ...(database !== undefined && { database }),
    timezone: text.get('timezone') ?? DEFAULT_TIMEZONE,
    alarms,
    ...(vpc && { vpc }),
  };
}

/** What the stack maintains, for descriptions: an Autoscaling project or a Provisioned instance. */
export function lakebaseTarget(config: LakeTsConfig): { kind: 'project' | 'instance'; name: string } {
  return config.lakebaseInstance !== undefined
    ? { kind: 'instance', name: config.lakebaseInstance }
    : { kind: 'project', name: config.lakebaseProject ?? '' };
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
    instance: config.lakebaseInstance,
    host: config.databricksHost,
    secretId,
    endpoint: config.lakebaseEndpoint,
    pgRole: config.pgRole,
    database: config.database,
  };
  return functionEnvironment(values, job);
}

/** One validated target of an estate: its entry, and its connection as the stack's config types it. */
export interface EstateTarget {
  readonly entry: TargetEntry;
  readonly config: LakeTsConfig;
}

/**
 * Validates each target's keys by the rules today's context is validated by (parseConfig), so a value
 * the synth accepts is one the handlers accept; plus the keys only a target has. Every problem, one line
 * each naming the target and the key: `targets[2] "eu-prod": lakebaseProject: ...; fix: ...`.
 */
export function validateTargets(entries: readonly TargetEntry[], defaultTimezone: string): EstateTarget[] {
  const problems: string[] = [];
  const targets: EstateTarget[] = [];
  // The shape (names, unknown keys, jobs, KMS key, time zone) by lib/estate.ts, for entries a CDK app
  // built itself as much as for a file; then each entry's connection by the context's rules.
  try {
    parseTargets(entries, 'targets');
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(...error.problems);
  }
  entries.forEach((entry, i) => {
    const at = `targets[${i}] "${entry.name}"`;
    const values = entry as unknown as Record<string, unknown>;
    try {
      const config = parseConfig((key) => {
        // The target's own zone is parseTargets' to check (one line, not two); here only the connection.
        if (key === 'timezone') return defaultTimezone;
        const setting = (Object.values(SETTINGS) as Setting[]).find(
          (s) => 'context' in s && (s.context as readonly string[]).includes(key),
        );
        return setting?.kind === 'connection' ? values[key] : undefined;
      });
      targets.push({ entry, config });
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      for (const p of error.problems) problems.push(p.replace(/^context "([^"]+)": /, `${at}: $1: `));
    }
  });
  if (problems.length > 0) throw new ConfigError('targets', problems.join(' | '), problems);
  return targets;
}

/** The one target of today's context: a one-target estate named `default`. */
export function contextTarget(config: LakeTsConfig): TargetEntry {
  return {
    name: DEFAULT_TARGET,
    databricksHost: config.databricksHost,
    ...(config.spSecret.kind === 'arn'
      ? { spSecretArn: config.spSecret.arn }
      : { spSecretName: config.spSecret.name }),
    ...(config.lakebaseProject !== undefined && { lakebaseProject: config.lakebaseProject }),
    ...(config.lakebaseInstance !== undefined && { lakebaseInstance: config.lakebaseInstance }),
    ...(config.lakebaseEndpoint !== undefined && { lakebaseEndpoint: config.lakebaseEndpoint }),
    ...(config.pgRole !== undefined && { pgRole: config.pgRole }),
    ...(config.database !== undefined && { database: config.database }),
    timezone: config.timezone,
  };
}
