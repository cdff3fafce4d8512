// The estate: the databases one deployment maintains (targets file, LAKETS_TARGETS, or the bundled list).
// Minimal version written by the infra helper against the shared design's signature; the runtime helper's
// lib/estate.ts replaces it at merge.
import { JOB_NAMES } from './jobs/catalog.ts';
import type { JobName } from './jobs/types.ts';
import { ConfigError, SETTINGS, type Setting } from './settings.ts';

export const TARGET_NAME = /^[a-z0-9][a-z0-9-]{0,39}$/;
/** The target of a single-target deployment configured by today's context or environment. */
export const DEFAULT_TARGET = 'default';

export type JobOverride = { readonly enabled: false } | { readonly schedule: string };

export interface TargetEntry {
  readonly name: string;
  readonly databricksHost?: string;
  readonly spSecretName?: string;
  readonly spSecretArn?: string;
  readonly spSecretKmsKeyArn?: string;
  readonly lakebaseProject?: string;
  readonly lakebaseEndpoint?: string;
  readonly lakebaseInstance?: string;
  readonly database?: string;
  readonly pgRole?: string;
  readonly timezone?: string;
  readonly jobs?: Readonly<Partial<Record<JobName, JobOverride>>>;
}

const CONNECTION_KEYS: readonly string[] = (Object.values(SETTINGS) as Setting[]).flatMap((s) =>
  s.kind === 'connection' ? s.context : [],
);
const EXTRA_KEYS = ['name', 'spSecretKmsKeyArn', 'timezone', 'jobs'];
const KNOWN_KEYS = new Set([...CONNECTION_KEYS, ...EXTRA_KEYS]);

/** The shape of a targets file: every problem, one line each naming the target and the key. */
export function parseTargets(json: unknown, source: string): TargetEntry[] {
  const problems: string[] = [];
  if (!Array.isArray(json) || json.length === 0) {
    throw new ConfigError(
      source,
      `${source}: expected a non-empty JSON array of targets; fix: [{"name": "prod", ...}]`,
    );
  }
  const seen = new Set<string>();
  json.forEach((raw: unknown, i: number) => {
    const label = (name?: unknown) => `targets[${i}]${typeof name === 'string' ? ` "${name}"` : ''}`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      problems.push(`${label()}: expected an object; fix: {"name": "prod", ...}`);
      return;
    }
    const entry = raw as Record<string, unknown>;
    const at = label(entry.name);
    if (typeof entry.name !== 'string' || !TARGET_NAME.test(entry.name)) {
      problems.push(
        `${at}: name: must be 1-40 lowercase letters, digits and hyphens; fix: "name": "eu-prod"`,
      );
    } else if (seen.has(entry.name)) {
      problems.push(`${at}: name: "${entry.name}" is used twice; fix: give each target its own name`);
    } else seen.add(entry.name);
    for (const key of Object.keys(entry)) {
      if (!KNOWN_KEYS.has(key))
        problems.push(`${at}: ${key}: unknown key; fix: remove it (keys: ${[...KNOWN_KEYS].join(', ')})`);
      else if (key !== 'jobs' && typeof entry[key] !== 'string')
        problems.push(`${at}: ${key}: expected a string; fix: "${key}": "<value>"`);
    }
    if (entry.jobs !== undefined) {
      if (entry.jobs === null || typeof entry.jobs !== 'object' || Array.isArray(entry.jobs)) {
        problems.push(
          `${at}: jobs: expected an object by job name; fix: "jobs": {"tiering": {"enabled": false}}`,
        );
      } else {
        for (const [job, o] of Object.entries(entry.jobs as Record<string, unknown>)) {
          if (!(JOB_NAMES as readonly string[]).includes(job)) {
            problems.push(`${at}: jobs.${job}: unknown job; fix: one of ${JOB_NAMES.join(', ')}`);
            continue;
          }
          const ok =
            o !== null &&
            typeof o === 'object' &&
            ((Object.keys(o).length === 1 && (o as Record<string, unknown>).enabled === false) ||
              (Object.keys(o).length === 1 &&
                typeof (o as Record<string, unknown>).schedule === 'string' &&
                /^(cron|rate)\(.+\)$/.test((o as Record<string, string>).schedule ?? '')));
          if (!ok) {
            problems.push(
              `${at}: jobs.${job}: expected {"enabled": false} or {"schedule": "cron(...)"}; fix: one of the two`,
            );
          }
        }
      }
    }
  });
  if (problems.length > 0) throw new ConfigError(source, problems.join(' | '), problems);
  return json as TargetEntry[];
}

/** The handlers' environment names for an entry's connection keys (context key → setting.env). */
export function targetEnv(entry: TargetEntry): Record<string, string> {
  const env: Record<string, string> = {};
  for (const setting of Object.values(SETTINGS) as Setting[]) {
    if (setting.kind !== 'connection') continue;
    for (const key of setting.context) {
      const value = (entry as unknown as Record<string, unknown>)[key];
      if (typeof value === 'string') env[setting.env] = value;
    }
  }
  return env;
}

export function findTarget(entries: readonly TargetEntry[], name: string): TargetEntry | undefined {
  return entries.find((e) => e.name === name);
}
