// An estate: the databases (targets) one deployment maintains. A targets file (and LAKETS_TARGETS, the
// same JSON) is an array of objects whose keys are the connection context keys of lib/settings.ts plus
// `name`, `spSecretKmsKeyArn`, `timezone` and `jobs`. parseTargets checks the file's shape (every
// problem, one line each, naming the target and the key); the connection values themselves are checked
// by the settings' rules: the synth's with the context rules, the handlers' by parseConfig(targetEnv()).
// The deployed functions learn the targets from a build-time constant (bundled with the code, so the
// Lambda environment stays small whatever the number of targets); neither it nor LAKETS_TARGETS set:
// today's single-target environment, a one-target estate named `default`.
import { ConfigError, isIanaTimeZone, SETTINGS, type Setting } from './settings.ts';

/** One job's setting for one target: left out (`enabled: false`) or on another schedule. */
export interface JobOverride {
  readonly enabled?: boolean;
  /** An EventBridge Scheduler expression: `cron(...)` or `rate(...)`. */
  readonly schedule?: string;
}

/** The job names a `jobs` override may name (kept here so this module stays free of the jobs' code). */
export const TARGET_JOB_NAMES = ['partition-manager', 'tiering', 'retention', 'rollup-refresh'] as const;
export type TargetJobName = (typeof TARGET_JOB_NAMES)[number];

/** One database to maintain, as the targets file gives it (connection values as written, trimmed). */
export interface TargetEntry {
  readonly name: string;
  readonly databricksHost?: string;
  readonly spSecretName?: string;
  readonly spSecretArn?: string;
  readonly lakebaseProject?: string;
  readonly lakebaseEndpoint?: string;
  readonly lakebaseInstance?: string;
  readonly database?: string;
  readonly pgRole?: string;
  /** The customer-managed KMS key that encrypts the secret (the functions may decrypt only via Secrets Manager). */
  readonly spSecretKmsKeyArn?: string;
  /** IANA time zone of this target's daily jobs. */
  readonly timezone?: string;
  readonly jobs?: Readonly<Partial<Record<TargetJobName, JobOverride>>>;
}

/** The name of the one target of a deployment configured the single-target way (context or env). */
export const DEFAULT_TARGET = 'default';

/** A target name: it appears in schedule names, metric dimensions and log records. */
export const TARGET_NAME = /^[a-z0-9][a-z0-9-]{0,39}$/;

/** The connection context keys (lib/settings.ts, kind `connection`), each with its variable. */
const CONNECTION_KEYS: ReadonlyMap<string, string> = new Map(
  (Object.values(SETTINGS) as Setting[]).flatMap((s) =>
    s.kind === 'connection' ? s.context.map((key) => [key, s.env] as const) : [],
  ),
);
const OWN_KEYS = ['name', 'spSecretKmsKeyArn', 'timezone', 'jobs'] as const;
const ALLOWED_KEYS: readonly string[] = [...OWN_KEYS, ...CONNECTION_KEYS.keys()];

const PARTITION = 'aws(?:-cn|-us-gov|-iso(?:-[a-z])?)?';
const KMS_KEY_ARN = new RegExp(
  `^arn:${PARTITION}:kms:[a-z0-9-]+:\\d{12}:key/(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$`,
);
/**
 * Whether `expression` has the shape EventBridge Scheduler takes, so a mistake stops the synth instead of
 * the deploy: `rate(<n ≥ 1> <unit>)` (singular for 1), or `cron(...)` with its six fields (minutes,
 * hours, day of month, month, day of week, year), exactly one of the two day fields `?`.
 */
export function isScheduleExpression(expression: string): boolean {
  const rate = /^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$/.exec(expression);
  if (rate) {
    const n = Number(rate[1]);
    return n >= 1 && (n === 1) === !rate[2]?.endsWith('s');
  }
  const cron = /^cron\(([^()]+)\)$/.exec(expression);
  const fields = cron?.[1]?.trim().split(/\s+/) ?? [];
  if (fields.length !== 6 || fields.some((f) => !/^[0-9A-Za-z*?,\-/#L]+$/.test(f))) return false;
  return (fields[2] === '?') !== (fields[4] === '?');
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') {
    return `the string ${JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value)}`;
  }
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Validates a targets file (or LAKETS_TARGETS) parsed from JSON: an array of objects, each with a unique
 * `name`, only known keys, string values, a valid `spSecretKmsKeyArn`, `timezone` and `jobs`. Every
 * problem is one line, `targets[i] "name": key: problem; fix: ...`; a ConfigError carries them all
 * (`problems`) and its message says how many there are and the first. `source` names the file or
 * variable in that message.
 */
export function parseTargets(json: unknown, source: string): TargetEntry[] {
  const problems: string[] = [];
  if (!Array.isArray(json)) {
    throw new ConfigError(
      source,
      `${source}: the targets must be a JSON array of objects such as [{"name": "prod", "databricksHost": "https://...", ...}], not ${describe(json)}`,
    );
  }
  if (json.length === 0) {
    throw new ConfigError(source, `${source}: the targets array is empty; list at least one target`);
  }
  const seen = new Map<string, number>();
  const entries: TargetEntry[] = [];
  json.forEach((raw, i) => {
    const rawName = isObject(raw) ? raw['name'] : undefined;
    const label = `targets[${i}]${typeof rawName === 'string' && rawName ? ` ${JSON.stringify(rawName.slice(0, 40))}` : ''}`;
    const problem = (key: string, what: string, fix: string) =>
      problems.push(`${label}: ${key}: ${what}; fix: ${fix}`);
    if (!isObject(raw)) {
      problems.push(
        `${label}: is ${describe(raw)}, not an object; fix: give each target as {"name": ..., ...}`,
      );
      return;
    }
    const entry: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(raw)) {
      if (!ALLOWED_KEYS.includes(key)) {
        problem(
          JSON.stringify(key.slice(0, 60)),
          'is not a target key',
          `remove it; a target takes ${ALLOWED_KEYS.join(', ')}`,
        );
        continue;
      }
      if (key === 'jobs') continue;
      if (typeof value !== 'string' || value.trim() === '') {
        problem(key, `is ${describe(value)}`, `give ${key} as a non-empty string, or leave the key out`);
        continue;
      }
      entry[key] = value.trim();
    }

    const name = entry['name'];
    if (!('name' in raw)) {
      problem('name', 'is missing', 'give every target a unique name such as "eu-prod"');
    } else if (typeof name === 'string') {
      if (!TARGET_NAME.test(name)) {
        problem(
          'name',
          `"${name.slice(0, 60)}" is not a target name (1-40 lowercase letters, digits, hyphens; a letter or digit first)`,
          'rename it, e.g. "eu-prod"',
        );
      } else if (seen.has(name)) {
        problem('name', `is also the name of targets[${seen.get(name)}]`, 'give each target its own name');
      } else {
        seen.set(name, i);
      }
    }
    const kms = entry['spSecretKmsKeyArn'];
    if (typeof kms === 'string' && !KMS_KEY_ARN.test(kms)) {
      problem(
        'spSecretKmsKeyArn',
        `"${kms.slice(0, 120)}" is not a KMS key ARN`,
        'give the key ARN arn:aws:kms:<region>:<account>:key/<key id> (not an alias)',
      );
    }
    const timezone = entry['timezone'];
    if (typeof timezone === 'string' && !isIanaTimeZone(timezone)) {
      problem('timezone', `"${timezone.slice(0, 60)}" is not an IANA time zone name`, 'e.g. "Europe/Berlin"');
    }
    if ('jobs' in raw) {
      const jobs = parseJobs(raw['jobs'], (key, what, fix) => problem(key, what, fix));
      if (jobs) entry['jobs'] = jobs;
    }
    entries.push(entry as unknown as TargetEntry);
  });
  if (problems.length > 0) {
    const first = problems[0] ?? '';
    throw new ConfigError(
      source,
      problems.length === 1
        ? `${source}: ${first}`
        : `${source}: ${problems.length} problems; the first: ${first}`,
      problems,
    );
  }
  return entries;
}

function parseJobs(
  value: unknown,
  problem: (key: string, what: string, fix: string) => void,
): Partial<Record<TargetJobName, JobOverride>> | undefined {
  if (!isObject(value)) {
    problem('jobs', `is ${describe(value)}`, 'give an object such as {"tiering": {"enabled": false}}');
    return undefined;
  }
  const jobs: Partial<Record<TargetJobName, JobOverride>> = {};
  for (const [job, override] of Object.entries(value)) {
    const key = `jobs.${job.slice(0, 40)}`;
    if (!(TARGET_JOB_NAMES as readonly string[]).includes(job)) {
      problem(key, 'is not a job', `name one of ${TARGET_JOB_NAMES.join(', ')}`);
      continue;
    }
    if (!isObject(override)) {
      problem(key, `is ${describe(override)}`, 'give {"enabled": false} or {"schedule": "cron(...)"}');
      continue;
    }
    const out: { enabled?: boolean; schedule?: string } = {};
    let ok = true;
    for (const [k, v] of Object.entries(override)) {
      if (k === 'enabled' && typeof v === 'boolean') out.enabled = v;
      else if (k === 'schedule' && typeof v === 'string' && isScheduleExpression(v.trim()))
        out.schedule = v.trim();
      else {
        ok = false;
        problem(
          `${key}.${k.slice(0, 40)}`,
          k === 'enabled'
            ? `is ${describe(v)}`
            : k === 'schedule'
              ? `${describe(v)} is not a schedule expression`
              : 'is not a job setting',
          k === 'enabled'
            ? 'set true or false'
            : k === 'schedule'
              ? 'give "cron(<minutes> <hours> <day> <month> <weekday> <year>)" with "?" in one of the day fields, or "rate(<n> minutes|hours|days)" ("rate(1 hour)" for one)'
              : 'a job takes "enabled" and "schedule" only',
        );
      }
    }
    if (ok && out.enabled === false && out.schedule !== undefined) {
      problem(key, 'is disabled and has a schedule', 'remove "schedule", or "enabled": false');
      continue;
    }
    if (ok) jobs[job as TargetJobName] = out;
  }
  return jobs;
}

/**
 * The handlers' environment of one target: each connection context key the entry sets, under its
 * setting's variable (spSecretName and spSecretArn both become LAKETS_SP_SECRET_ID). Nothing else: a
 * target never inherits another's (or the shell's) connection settings.
 */
export function targetEnv(entry: TargetEntry): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, variable] of CONNECTION_KEYS) {
    const value = (entry as unknown as Record<string, unknown>)[key];
    if (typeof value === 'string') env[variable] = value;
  }
  return env;
}

/** The entry named `name`, or undefined. */
export function findTarget(entries: readonly TargetEntry[], name: string): TargetEntry | undefined {
  return entries.find((e) => e.name === name);
}

/** At most this many names are listed in an error about a missing or unknown target. */
export const LISTED_TARGETS = 20;

/** `a, b, c` or `a, b, … and 980 more`: the names a payload error lists. */
export function listNames(entries: readonly TargetEntry[]): string {
  const names = entries.slice(0, LISTED_TARGETS).map((e) => e.name);
  const more = entries.length - names.length;
  return `${names.join(', ')}${more > 0 ? `, … and ${more} more` : ''}`;
}

// Replaced at bundle time (esbuild `define`) by a JSON string literal of the validated entries.
declare const __LAKETS_TARGETS__: string | undefined;

/** Where a deployment's targets come from. */
export type TargetSource = 'bundle' | 'LAKETS_TARGETS' | 'environment';

/**
 * The deployment's targets: the bundled constant, else LAKETS_TARGETS (local runs, tests), else
 * undefined (the single-target environment, target `default`). Throws ConfigError.
 */
export function deployedTargets(env: Record<string, string | undefined> = process.env): {
  source: TargetSource;
  entries?: TargetEntry[];
} {
  if (typeof __LAKETS_TARGETS__ !== 'undefined') {
    return { source: 'bundle', entries: parseTargets(JSON.parse(__LAKETS_TARGETS__), 'the bundled targets') };
  }
  const text = env[SETTINGS.targets.env]?.trim();
  if (!text) return { source: 'environment' };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ConfigError(
      'LAKETS_TARGETS',
      'LAKETS_TARGETS is not JSON: set it to a JSON array of targets, e.g. [{"name": "prod", "lakebaseProject": "...", ...}]',
    );
  }
  return { source: 'LAKETS_TARGETS', entries: parseTargets(json, 'LAKETS_TARGETS') };
}
