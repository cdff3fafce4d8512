// Every setting of the jobs, defined once: the environment variable the handlers read, the CDK context
// key the stack takes it from, the rule both apply, its default and its line in the table of
// docs/operations.md.
// lib/config.ts parses the environment with it, infra/config.ts the context, infra/job.ts builds the
// functions' environment with it, and `npm run docs:settings` writes that table from it; so a
// value `cdk synth` accepts is one the handlers accept too.
import { identifierProblem } from './identifier.ts';
import { oneLine } from './one-line.ts';

/** A bad setting: one line per problem, naming the variable (or context key) and the fix. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly code = 'CONFIG_INVALID';
  /** The environment variable (handlers) or context key (synth) at fault; the first of several. */
  readonly variable: string;
  /** Every problem found, one line each: the handlers stop at the first, the synth reports them all. */
  readonly problems: readonly string[];
  constructor(variable: string, message: string, problems: readonly string[] = [message]) {
    super(oneLine(message));
    this.variable = variable;
    this.problems = problems.map((p) => oneLine(p));
  }
}

/**
 * How the synth reads one context key: `check` turns the trimmed value into what the stack uses, or says
 * what is wrong (with its own fix when the fix depends on the value); `fix` is the usual one. `item`
 * makes the key a comma-separated list (or a JSON array in cdk.json) whose every entry must pass it.
 */
export interface ContextRule {
  readonly check?: (
    value: string,
  ) => { readonly value: string } | { readonly problem: string; readonly fix?: string };
  readonly item?: (id: string) => boolean;
  readonly fix: string;
}

/** For a required setting: what to say when none of its context keys is given. */
export interface Missing {
  readonly what: string;
  readonly fix: string;
  /** Another setting's context key that may be given instead (exactly one of the two). */
  readonly or?: string;
}

/**
 * - `connection`: read by the handlers from `env`; the stack sets it from the context key(s).
 * - `local`: read by the handlers, set by hand for local runs and tests; never deployed.
 * - `stack`: a context key that shapes the stack only; the functions never see it.
 * - `runtime`: set by the stack on every function for the runtime (Powertools, Node); no context key.
 */
export type Setting =
  | {
      readonly kind: 'connection';
      readonly env: string;
      readonly context: readonly string[];
      /** The synth's rule for each context key. */
      readonly rules: Readonly<Record<string, ContextRule>>;
      readonly required?: Missing;
      readonly default?: string;
      readonly doc: string;
    }
  | { readonly kind: 'local'; readonly env: string; readonly doc: string }
  | {
      readonly kind: 'stack';
      readonly context: readonly string[];
      readonly rules: Readonly<Record<string, ContextRule>>;
      readonly default?: string;
      readonly doc: string;
    }
  | {
      readonly kind: 'runtime';
      readonly env: string;
      readonly value: (job: JobIdentity) => string;
      readonly doc: string;
    };

/** What a function's runtime settings depend on. */
export interface JobIdentity {
  readonly name: string;
  readonly metricsNamespace: string;
}

export const SETTINGS = {
  project: {
    kind: 'connection',
    env: 'LAKETS_PROJECT',
    context: ['lakebaseProject'],
    required: {
      what: 'missing (the Lakebase project the jobs maintain; or -c lakebaseInstance=<name> for a Provisioned instance)',
      fix: '-c lakebaseProject=<name>',
      or: 'lakebaseInstance',
    },
    rules: {
      lakebaseProject: {
        check: (v) =>
          projectOrProblem(v) ?? {
            problem: `"${v}" is not a project id (1-63 lowercase letters, digits, hyphens) or projects/<id>`,
          },
        fix: '-c lakebaseProject=<name>',
      },
    },
    doc: 'the Lakebase Autoscaling project, `<name>` or `projects/<name>`',
  },
  instance: {
    kind: 'connection',
    env: 'LAKETS_LAKEBASE_INSTANCE',
    context: ['lakebaseInstance'],
    rules: {
      lakebaseInstance: {
        check: (v) =>
          isInstanceName(v)
            ? { value: v }
            : { problem: `"${v}" is not a database instance name (1-63 letters, digits, hyphens)` },
        fix: '-c lakebaseInstance=<name>',
      },
    },
    doc: 'instead of a project (and of `LAKETS_LAKEBASE_ENDPOINT`): the Lakebase Provisioned database instance, by name (1-63 letters, digits, hyphens); the jobs connect to its `read_write_dns` while it is `AVAILABLE`, wait a bounded time while it is starting, updating or failing over, and never start it ([Provisioned instances](provisioned.md))',
  },
  host: {
    kind: 'connection',
    env: 'DATABRICKS_HOST',
    context: ['databricksHost'],
    required: {
      what: 'missing (the Databricks workspace URL)',
      fix: '-c databricksHost=https://<workspace>.cloud.databricks.com',
    },
    rules: {
      databricksHost: {
        check: (v) => {
          const url = workspaceOrigin(v, false);
          if ('origin' in url) return { value: url.origin };
          if (url.problem === 'has a path')
            return {
              problem: `"${v}" has a path; give the workspace origin only`,
              fix: `-c databricksHost=${new URL(v).origin}`,
            };
          return { problem: `"${v}" is not an https URL` };
        },
        fix: '-c databricksHost=https://<workspace>.cloud.databricks.com',
      },
    },
    doc: 'workspace URL, `https://…` (https only; its certificate is always verified, see below); the synth wants the scheme written out',
  },
  secretId: {
    kind: 'connection',
    env: 'LAKETS_SP_SECRET_ID',
    context: ['spSecretName', 'spSecretArn'],
    required: {
      what: "missing: the existing secret holding the service principal's client_id/client_secret",
      fix: '-c spSecretName=<name> or -c spSecretArn=<arn>',
    },
    rules: {
      spSecretName: {
        check: (v) =>
          v.startsWith('arn:')
            ? { problem: 'looks like an ARN', fix: `-c spSecretArn=${v}` }
            : isSecretName(v)
              ? { value: v }
              : { problem: `"${v}" is not a valid secret name` },
        fix: '-c spSecretName=<name>',
      },
      spSecretArn: {
        check: (v) =>
          isSecretArn(v)
            ? { value: v }
            : {
                problem: `"${v}" is not a complete Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 chars>)`,
              },
        fix: 'copy the ARN from the console, or use -c spSecretName=<name>',
      },
    },
    doc: 'Secrets Manager secret holding `{"client_id","client_secret"}` of the service principal: its name, or its complete ARN (`spSecretArn`, instead of `spSecretName`); imported, never created. Locally `DATABRICKS_CLIENT_ID` / `DATABRICKS_CLIENT_SECRET` work instead',
  },
  endpoint: {
    kind: 'connection',
    env: 'LAKETS_LAKEBASE_ENDPOINT',
    context: ['lakebaseEndpoint'],
    rules: {
      lakebaseEndpoint: {
        check: (v) => (endpointProject(v) === undefined ? { problem: `"${v}" is malformed` } : { value: v }),
        fix: '-c lakebaseEndpoint=projects/<p>/branches/<b>/endpoints/<e>',
      },
    },
    doc: "with a project only: pins `projects/<p>/branches/<b>/endpoints/<e>` and skips resolution; it must be a read-write endpoint (`ENDPOINT_TYPE_READ_WRITE`, checked on the one read of it), since every job writes. Unset: the project's default branch read-write endpoint",
  },
  pgRole: {
    kind: 'connection',
    env: 'LAKETS_PG_ROLE',
    context: ['pgRole'],
    rules: { pgRole: { check: (v) => loginNameOrProblem(v), fix: '-c pgRole=<name>' } },
    doc: "the Postgres role; unset: the service principal's identity (SCIM `userName`, its application id). Another role must be a **group role the service principal is a member of** (step 4 below): the credential is then requested for it (`group_name`), and a Lakebase credential logs in as nothing else",
  },
  database: {
    kind: 'connection',
    env: 'LAKETS_DATABASE',
    context: ['database'],
    rules: { database: { check: (v) => loginNameOrProblem(v), fix: '-c database=<name>' } },
    default: 'databricks_postgres',
    doc: 'the Postgres database',
  },
  databaseUrl: {
    kind: 'local',
    env: 'LAKETS_DATABASE_URL',
    doc: 'a direct Postgres URL for local runs and tests: bypasses Databricks and Secrets Manager, and wins over everything above',
  },
  targets: {
    kind: 'local',
    env: 'LAKETS_TARGETS',
    doc: 'the targets of an estate for local runs and tests: a JSON array with the keys of a targets file (docs/estate.md); `npm run invoke` and `npm run check` then take a target. Deployed functions have the targets bundled, never in their environment',
  },
  clientId: {
    kind: 'local',
    env: 'DATABRICKS_CLIENT_ID',
    doc: "locally, with `DATABRICKS_CLIENT_SECRET`, instead of `LAKETS_SP_SECRET_ID`: the service principal's OAuth client (`LAKETS_SP_SECRET_ID` wins when both are set)",
  },
  clientSecret: {
    kind: 'local',
    env: 'DATABRICKS_CLIENT_SECRET',
    doc: 'the secret of that OAuth client; never printed',
  },
  stackName: {
    kind: 'stack',
    context: ['stackName'],
    rules: {
      stackName: {
        check: (v) =>
          isStackName(v)
            ? { value: v }
            : { problem: `"${v}" is not a valid stack name (letter first, letters/digits/-, ≤ 40)` },
        fix: '-c stackName=LakeTsJobs',
      },
    },
    default: 'LakeTs-<project>',
    doc: 'the CloudFormation stack, its schedule group, and the prefix of its function, schedule and alarm names; the default adds `-<database>` when `database` is set (and a hash suffix when that is not a valid stack name), so two projects never share a stack',
  },
  timezone: {
    kind: 'stack',
    context: ['timezone'],
    default: 'UTC',
    rules: {
      timezone: {
        check: (v) =>
          isIanaTimeZone(v) ? { value: v } : { problem: `"${v}" is not an IANA time zone name` },
        fix: '-c timezone=Europe/Berlin (default UTC)',
      },
    },
    doc: 'IANA time zone of the daily jobs (Tiering, Retention), moved later by whole hours together when their local time does not exist once every day there; the sub-daily jobs run in UTC',
  },
  alarmEmail: {
    kind: 'stack',
    context: ['alarmEmail'],
    rules: {
      alarmEmail: {
        check: (v) => (isEmail(v) ? { value: v } : { problem: `"${v}" is not an email address` }),
        fix: '-c alarmEmail=oncall@example.com',
      },
    },
    doc: "an address subscribed to the stack's alarm topic",
  },
  alarmTopicArn: {
    kind: 'stack',
    context: ['alarmTopicArn'],
    rules: {
      alarmTopicArn: {
        check: (v) => (isTopicArn(v) ? { value: v } : { problem: `"${v}" is not an SNS topic ARN` }),
        fix: '-c alarmTopicArn=arn:aws:sns:<region>:<account>:<topic>',
      },
    },
    doc: 'instead of `alarmEmail`: an existing SNS topic the alarms notify',
  },
  vpcId: {
    kind: 'stack',
    context: ['vpcId'],
    rules: {
      vpcId: {
        check: (v) => (VPC_ID.test(v) ? { value: v } : { problem: `"${v}" is not a VPC id` }),
        fix: '-c vpcId=vpc-0123456789abcdef0',
      },
    },
    doc: 'run the functions in this VPC (with `subnetIds`)',
  },
  subnetIds: {
    kind: 'stack',
    context: ['subnetIds'],
    rules: {
      subnetIds: {
        item: (id) => SUBNET_ID.test(id),
        fix: '-c subnetIds=subnet-0123456789abcdef0,subnet-0fedcba9876543210',
      },
    },
    doc: 'with `vpcId`: comma-separated private subnets with egress to the workspace and Lakebase',
  },
  securityGroupIds: {
    kind: 'stack',
    context: ['securityGroupIds'],
    rules: {
      securityGroupIds: {
        item: (id) => SECURITY_GROUP_ID.test(id),
        fix: '-c securityGroupIds=sg-0123456789abcdef0',
      },
    },
    doc: 'with `vpcId`: comma-separated security groups; unset, the stack creates one allowing outbound 443 and 5432 only',
  },
  serviceName: {
    kind: 'runtime',
    env: 'POWERTOOLS_SERVICE_NAME',
    value: (job) => job.name,
    doc: "the job's name (`service` in its log records)",
  },
  metricsNamespace: {
    kind: 'runtime',
    env: 'POWERTOOLS_METRICS_NAMESPACE',
    value: (job) => job.metricsNamespace,
    doc: 'the CloudWatch namespace of the metrics (`LakeTS`)',
  },
  logLevel: {
    kind: 'runtime',
    env: 'POWERTOOLS_LOG_LEVEL',
    value: () => 'INFO',
    doc: 'the log level (`INFO`)',
  },
  nodeOptions: {
    kind: 'runtime',
    env: 'NODE_OPTIONS',
    value: () => '--enable-source-maps',
    doc: 'stack traces point into the TypeScript sources (`--enable-source-maps`)',
  },
} as const satisfies Record<string, Setting>;

type Settings = typeof SETTINGS;
type ContextKeyOf<S> = S extends { readonly context: readonly (infer K)[] } ? K : never;
/** Every CDK context key the app reads. */
export type ContextKey = ContextKeyOf<Settings[keyof Settings]>;
export const CONTEXT_KEYS: readonly ContextKey[] = Object.values(SETTINGS).flatMap(
  (s: Setting) => ('context' in s ? s.context : []) as ContextKey[],
);

/** The settings of the `connection` kind, by key: what the stack passes on to the handlers. */
export type ConnectionKey = {
  [K in keyof Settings]: Settings[K]['kind'] extends 'connection' ? K : never;
}[keyof Settings];
/** Every connection setting's value, undefined when unset: a new setting cannot be forgotten here. */
export type ConnectionValues = { readonly [K in ConnectionKey]: string | undefined };

/**
 * A function's environment: the connection settings the stack resolved (unset ones left out, so the
 * handlers apply the same defaults) and the runtime settings of the job.
 */
export function functionEnvironment(values: ConnectionValues, job: JobIdentity): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, setting] of Object.entries(SETTINGS) as [keyof Settings, Setting][]) {
    if (setting.kind === 'connection') {
      const value = values[key as ConnectionKey];
      if (value !== undefined) env[setting.env] = value;
    } else if (setting.kind === 'runtime') {
      env[setting.env] = setting.value(job);
    }
  }
  return env;
}

// ---------------------------------------------------------------------------------------------
// The rules. Each is applied by both parsers; each parser words its own message (a variable to set,
// or a `-c key=value` to pass).
// ---------------------------------------------------------------------------------------------

// Lakebase resource ids (project, branch, endpoint) are 1-63 lowercase letters, digits and hyphens
// (RFC 1123). Checking them also keeps them safe to splice into REST paths.
const RESOURCE_ID = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const ENDPOINT_PATH = /^projects\/([^/]+)\/branches\/([^/]+)\/endpoints\/([^/]+)$/;

/** The bare project id of `<id>` or `projects/<id>`, or undefined. */
export function projectId(raw: string): string | undefined {
  const id = raw.startsWith('projects/') ? raw.slice('projects/'.length) : raw;
  return RESOURCE_ID.test(id) ? id : undefined;
}

/** The project id that a `projects/<p>/branches/<b>/endpoints/<e>` path names, or undefined. */
export function endpointProject(raw: string): string | undefined {
  const m = ENDPOINT_PATH.exec(raw);
  return m?.slice(1).every((part) => RESOURCE_ID.test(part)) ? m[1] : undefined;
}

// A Provisioned instance name: 1-63 letters, digits and hyphens (the Lakebase app asks for letters and
// hyphens; digits are accepted too). Checking it also keeps it safe to splice into a REST path.
const INSTANCE_NAME = /^[A-Za-z0-9][A-Za-z0-9-]{0,62}$/;

/** A Lakebase Provisioned database instance name. */
export const isInstanceName = (raw: string): boolean => INSTANCE_NAME.test(raw);

function projectOrProblem(raw: string): { value: string } | undefined {
  const id = projectId(raw);
  return id === undefined ? undefined : { value: id };
}

export type WorkspaceUrl =
  | { readonly origin: string }
  | { readonly problem: 'not a URL' | 'not https' | 'not just the origin' | 'has a path' };

/**
 * The https origin of a workspace URL: https only, since the OAuth secret and tokens go there; no
 * credentials, query or path. `bareHost`: a host name without a scheme means https (the Databricks
 * SDK reads it so, and so do the handlers; the synth wants the scheme written out).
 */
export function workspaceOrigin(raw: string, bareHost: boolean): WorkspaceUrl {
  const hasScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw);
  // Without a bare host, only what has a scheme by the handlers' reading: the URL parser would also
  // take "https:/<newline>/h" for https://h, which the handlers read as a host named "https".
  if (!bareHost && !hasScheme) return { problem: 'not a URL' };
  const text = hasScheme ? raw : `https://${raw}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { problem: 'not a URL' };
  }
  if (url.protocol !== 'https:') return { problem: 'not https' };
  if (url.username || url.password || url.search) return { problem: 'not just the origin' };
  if (url.pathname !== '/' && url.pathname !== '') return { problem: 'has a path' };
  return { origin: url.origin };
}

// Secrets Manager: names are letters, digits and /_+=.@- (at most 512); an id is a name or an ARN,
// which adds ':' (at most 2048). A complete ARN ends in "-" and the 6 random characters.
const SECRET_ID = /^[A-Za-z0-9/_+=.@:-]{1,2048}$/;
const SECRET_NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;
const PARTITION = 'aws(?:-cn|-us-gov|-iso(?:-[a-z])?)?';
const SECRET_ARN = new RegExp(
  `^arn:${PARTITION}:secretsmanager:[a-z0-9-]+:\\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$`,
);

/** A secret name or ARN, as GetSecretValue takes it. */
export const isSecretId = (raw: string): boolean => SECRET_ID.test(raw);
export const isSecretName = (raw: string): boolean => SECRET_NAME.test(raw);
export const isSecretArn = (raw: string): boolean => SECRET_ARN.test(raw) && isSecretId(raw);

/** A role or database name a connection logs in with (see identifierProblem). */
export const isLoginName = (raw: string): boolean => identifierProblem(raw, true) === undefined;

// The handlers' rule for a Postgres role or database: at most 63 bytes, no control characters or line
// separators; anything else is quoted by the handlers.
function loginNameOrProblem(raw: string): { value: string } | { problem: string } {
  return isLoginName(raw)
    ? { value: raw }
    : { problem: 'is not a Postgres identifier (at most 63 bytes, no control characters)' };
}

/** A postgres:// (or postgresql://) URL with a host. */
export function isDatabaseUrl(raw: string): boolean {
  const url = URL.canParse(raw) ? new URL(raw) : undefined;
  return !!url && (url.protocol === 'postgres:' || url.protocol === 'postgresql:') && !!url.hostname;
}

const STACK_NAME = /^[A-Za-z][A-Za-z0-9-]{0,39}$/;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const TOPIC_ARN = new RegExp(`^arn:${PARTITION}:sns:[a-z0-9-]+:\\d{12}:[A-Za-z0-9_-]{1,256}$`);
export const isStackName = (raw: string): boolean => STACK_NAME.test(raw);
export const isEmail = (raw: string): boolean => EMAIL.test(raw);
export const isTopicArn = (raw: string): boolean => TOPIC_ARN.test(raw);
export const VPC_ID = /^vpc-[0-9a-f]{8,17}$/;
export const SUBNET_ID = /^subnet-[0-9a-f]{8,17}$/;
export const SECURITY_GROUP_ID = /^sg-[0-9a-f]{8,17}$/;

// Region/Area/Location style names; `Intl` then confirms the zone exists. Offsets such as +01:00 are
// valid for Intl but not for EventBridge Scheduler, hence the shape check first.
const TZ_SHAPE = /^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*$/;

export function isIanaTimeZone(name: string): boolean {
  if (!TZ_SHAPE.test(name)) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// The settings table of docs/operations.md
// ---------------------------------------------------------------------------------------------

export const TABLE_BEGIN = '<!-- settings table: written by `npm run docs:settings` from lib/settings.ts -->';
export const TABLE_END = '<!-- end of settings table -->';

/** The configuration table of docs/operations.md, one row per setting. */
export function settingsTable(): string {
  const code = (s: string) => `\`${s}\``;
  const rows = (Object.values(SETTINGS) as Setting[]).map((s) => {
    const env = 'env' in s ? code(s.env) : '— (deployment only)';
    const context =
      'context' in s
        ? s.context.map((k) => code(k)).join(' or ')
        : s.kind === 'local'
          ? '— (local runs only)'
          : '— (set by the stack)';
    const all = Object.values(SETTINGS) as Setting[];
    const required = 'required' in s ? s.required : undefined;
    // Exactly one of two settings (`required.or`): each of the two rows names the other.
    const other = required
      ? all.find((o) => 'context' in o && required.or !== undefined && o.context.includes(required.or))
      : all.find(
          (o) =>
            o.kind === 'connection' &&
            o.required?.or !== undefined &&
            'context' in s &&
            s.context.includes(o.required.or),
        );
    const fallback =
      other && 'env' in other
        ? `required, or ${code(other.env)} instead`
        : required
          ? 'required'
          : 'default' in s && s.default
            ? code(s.default)
            : s.kind === 'connection' || s.kind === 'stack'
              ? 'unset'
              : '';
    return `| ${env} | ${context} | ${fallback} | ${s.doc} |`;
  });
  return [
    TABLE_BEGIN,
    '| variable (handlers) | context key (`cdk synth -c`) | default | meaning |',
    '|---|---|---|---|',
    ...rows,
    TABLE_END,
  ].join('\n');
}

/** `doc` with its settings table (between the two markers) replaced by the current one. */
export function withSettingsTable(doc: string): string {
  const begin = doc.indexOf(TABLE_BEGIN);
  const end = doc.indexOf(TABLE_END);
  if (begin < 0 || end < begin)
    throw new Error(`the document has no settings table markers (${TABLE_BEGIN})`);
  return doc.slice(0, begin) + settingsTable() + doc.slice(end + TABLE_END.length);
}
