// One settings module for the handlers and the stack: each function's environment is exactly what the
// handlers read (plus the runtime's own), every value the handlers would refuse already stops the synth,
// what the synth accepts the handlers accept, and the table of docs/operations.md is the module's.
import { readFileSync } from 'node:fs';
import { App } from 'aws-cdk-lib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jobEnvironment, type LakeTsConfig, parseConfig as parseContext } from '../../infra/config.ts';
import { defineApp } from '../../infra/stack.ts';
import { parseConfig as parseEnvironment } from '../../lib/config.ts';
import { JOB_NAMES } from '../../lib/jobs/catalog.ts';
import { METRICS_NAMESPACE } from '../../lib/jobs/spec.ts';
import {
  ConfigError,
  type ContextKey,
  SETTINGS,
  type Setting,
  settingsTable,
  withSettingsTable,
} from '../../lib/settings.ts';
import { targetResolver } from '../../lib/target.ts';
import { REQUIRED_CONTEXT } from './synth.ts';

const SEED = 14_2;
const settings = Object.values(SETTINGS) as Setting[];
const envNames = (kind: Setting['kind']) =>
  settings.flatMap((s) => (s.kind === kind && 'env' in s ? [s.env] : []));
const RUNTIME = envNames('runtime');
const LOCAL = envNames('local');
const CONNECTION = envNames('connection');

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:lakets/sp-AbC123';
const FULL_CONTEXT = {
  lakebaseProject: 'projects/prod',
  databricksHost: 'https://dbc-1.cloud.databricks.com/',
  spSecretArn: SECRET_ARN,
  lakebaseEndpoint: 'projects/prod/branches/production/endpoints/ep-rw',
  pgRole: '6f1d2c3b-aaaa-bbbb-cccc-0123456789ab',
  database: 'lakets',
};
/** A Lakebase Provisioned instance instead of a project (and so without a pinned endpoint). */
const INSTANCE_CONTEXT = {
  lakebaseInstance: 'lakets-provisioned',
  databricksHost: 'https://dbc-1.cloud.databricks.com/',
  spSecretArn: SECRET_ARN,
  pgRole: '6f1d2c3b-aaaa-bbbb-cccc-0123456789ab',
  database: 'lakets',
};

/** The variables of each function in the synthesized template (bundling skipped: only the template matters). */
function functionEnvironments(context: Record<string, unknown>): Record<string, string>[] {
  const app = new App({ context: { ...context, 'aws:cdk:bundling-stacks': [] } });
  const stack = defineApp(app);
  const template = app.synth().getStackByName(stack.stackName).template;
  return Object.values(
    template.Resources as Record<
      string,
      { Type: string; Properties: { Environment: { Variables: Record<string, string> } } }
    >,
  )
    .filter((r) => r.Type === 'AWS::Lambda::Function')
    .map((r) => r.Properties.Environment.Variables);
}

/**
 * Parses `env` as a handler does (the deployment's targets first, then the one target's settings) and
 * records every variable it looks at.
 */
function handlerReads(env: Record<string, string>): { config: unknown; read: Set<string> } {
  const read = new Set<string>();
  const watched = new Proxy(env, {
    get(target, key) {
      if (typeof key === 'string') read.add(key);
      return Reflect.get(target, key);
    },
  });
  return { config: targetResolver(watched)(undefined).config, read };
}

describe("each function's environment", () => {
  // What each context leaves unset among the connection settings the handlers read.
  const unsetOptions = new Map<object, string[]>([
    [
      REQUIRED_CONTEXT,
      ['LAKETS_LAKEBASE_INSTANCE', 'LAKETS_LAKEBASE_ENDPOINT', 'LAKETS_PG_ROLE', 'LAKETS_DATABASE'],
    ],
    [FULL_CONTEXT, ['LAKETS_LAKEBASE_INSTANCE']],
    [INSTANCE_CONTEXT, ['LAKETS_PROJECT', 'LAKETS_LAKEBASE_ENDPOINT']],
  ]);
  it.each([
    ['only the required context', REQUIRED_CONTEXT],
    ['every connection setting of a project in the context', FULL_CONTEXT],
    ['every connection setting of an instance in the context', INSTANCE_CONTEXT],
  ])('with %s: exactly the variables the handlers read, plus the runtime settings', (_, context) => {
    const environments = functionEnvironments(context);
    expect(environments).toHaveLength(JOB_NAMES.length);
    for (const env of environments) {
      const { read } = handlerReads(env);
      // Everything set that the handler does not read is a runtime setting, and all of those are set.
      expect(Object.keys(env).filter((k) => !read.has(k))).toEqual(RUNTIME);
      // Everything the handler reads is a setting; what is not set is local-only or an unset option.
      const unset = [...read].filter((k) => !(k in env));
      expect(unset.sort()).toEqual([...LOCAL, ...(unsetOptions.get(context) ?? [])].sort());
    }
  });

  it('carries the context values to the handlers unchanged in meaning', () => {
    const [env] = functionEnvironments(FULL_CONTEXT);
    expect(parseEnvironment(env)).toEqual({
      kind: 'databricks',
      project: 'projects/prod',
      host: 'https://dbc-1.cloud.databricks.com',
      secretId: SECRET_ARN,
      endpoint: FULL_CONTEXT.lakebaseEndpoint,
      pgRole: FULL_CONTEXT.pgRole,
      database: 'lakets',
    });
    const [instanceEnv] = functionEnvironments(INSTANCE_CONTEXT);
    expect(parseEnvironment(instanceEnv)).toEqual({
      kind: 'databricks',
      instance: 'lakets-provisioned',
      host: 'https://dbc-1.cloud.databricks.com',
      secretId: SECRET_ARN,
      pgRole: INSTANCE_CONTEXT.pgRole,
      database: 'lakets',
    });
  });

  it('the handlers read no variable that is not a setting', () => {
    const read = new Set<string>();
    const envs: Record<string, string>[] = [
      { LAKETS_DATABASE_URL: 'postgres://u:p@127.0.0.1:5432/d' },
      { LAKETS_PROJECT: 'p', DATABRICKS_HOST: 'h', DATABRICKS_CLIENT_ID: 'i', DATABRICKS_CLIENT_SECRET: 's' },
      ...functionEnvironments(FULL_CONTEXT),
      ...functionEnvironments(INSTANCE_CONTEXT),
    ];
    for (const env of envs) for (const k of handlerReads(env).read) read.add(k);
    expect([...read].sort()).toEqual([...CONNECTION, ...LOCAL].sort());
  });
});

// ---------------------------------------------------------------------------------------------
// The same values through both parsers
// ---------------------------------------------------------------------------------------------

const HANDLER_BASE: Record<string, string> = {
  [SETTINGS.project.env]: 'demo',
  [SETTINGS.host.env]: REQUIRED_CONTEXT.databricksHost,
  [SETTINGS.secretId.env]: REQUIRED_CONTEXT.spSecretName,
};

/** The handlers' environment for an instance instead of a project. */
const INSTANCE_BASE: Record<string, string> = {
  [SETTINGS.host.env]: REQUIRED_CONTEXT.databricksHost,
  [SETTINGS.secretId.env]: REQUIRED_CONTEXT.spSecretName,
};

/**
 * A good value of each connection setting, the context each is given in, and the handlers'
 * environment it is added to (default HANDLER_BASE).
 */
const GOOD: Record<string, { value: string; context: Record<string, string>; env?: Record<string, string> }> =
  {
    project: { value: 'demo', context: REQUIRED_CONTEXT },
    instance: {
      value: 'lakets-provisioned',
      context: {
        databricksHost: REQUIRED_CONTEXT.databricksHost,
        spSecretName: REQUIRED_CONTEXT.spSecretName,
      },
      env: INSTANCE_BASE,
    },
    host: { value: REQUIRED_CONTEXT.databricksHost, context: REQUIRED_CONTEXT },
    secretId: {
      value: 'lakets/sp',
      context: { lakebaseProject: 'demo', databricksHost: REQUIRED_CONTEXT.databricksHost },
    },
    endpoint: { value: 'projects/demo/branches/main/endpoints/ep-1', context: REQUIRED_CONTEXT },
    pgRole: { value: 'lakets_jobs', context: REQUIRED_CONTEXT },
    database: { value: 'databricks_postgres', context: REQUIRED_CONTEXT },
  };

const HOSTILE = [
  '',
  '  ',
  'role\twith-tab',
  'line\nbreak',
  'nel\u0085x',
  'ls\u2028x',
  'ps\u2029x',
  'bell\u0007',
  'del\u007f',
  'c1\u0090',
  'nul\u0000',
  'r'.repeat(64),
  'é'.repeat(32),
  'Bad_Name',
  'projects/',
  'projects/a/branches/b',
  'projects/demo/branches/Main/endpoints/ep-1',
  'projects/other/branches/main/endpoints/ep-1',
  'http://x.cloud.databricks.com',
  'https://x.cloud.databricks.com/path',
  'https://x.cloud.databricks.com/?q=1',
  'https://u:p@x.cloud.databricks.com',
  'x.cloud.databricks.com',
  'https://exa mple',
  'ftp://x',
  'has spaces in it',
  `arn:aws:secretsmanager:eu-west-1:123456789012:secret:${'n'.repeat(2100)}-AbC123`,
  'arn:aws:secretsmanager:eu-west-1:123:secret:x',
];

/** Near misses of a good value (one character inserted), and arbitrary strings. */
function values(good: string, salt: number): string[] {
  const char = fc.constantFrom(
    '\t',
    '\n',
    '\r',
    '\u0000',
    '\u0085',
    '\u2028',
    ' ',
    '/',
    ':',
    '?',
    '#',
    '@',
    'A',
    '_',
    'é',
    '"',
  );
  const nearMiss = fc
    .tuple(fc.nat(good.length), char)
    .map(([at, c]) => `${good.slice(0, at)}${c}${good.slice(at)}`);
  const any = fc.string({ unit: 'binary', maxLength: 70 });
  return [...HOSTILE, good, ...fc.sample(fc.oneof(nearMiss, any), { seed: SEED + salt, numRuns: 60 })];
}

function handlerRefuses(env: Record<string, string>): boolean {
  try {
    parseEnvironment(env);
    return false;
  } catch (error) {
    if (error instanceof ConfigError) return true;
    throw error;
  }
}

function contextProblems(context: Record<string, unknown>): readonly string[] | LakeTsConfig {
  try {
    return parseContext((key: ContextKey) => context[key]);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
}

describe('one rule for the synth and the handlers', () => {
  it('a pgRole with a tab stops the synth (it used to pass, then fail every invocation)', () => {
    const value = 'lakets\tjobs';
    expect(handlerRefuses({ ...HANDLER_BASE, [SETTINGS.pgRole.env]: value })).toBe(true);
    expect(contextProblems({ ...REQUIRED_CONTEXT, pgRole: value })).toEqual([
      expect.stringMatching(/^context "pgRole": is not a Postgres identifier/),
    ]);
  });

  it('every value the handlers refuse stops the synth, naming the key; every value the synth accepts works in the handlers', () => {
    const missed: string[] = [];
    let refused = 0;
    let accepted = 0;
    for (const [i, [name, good]] of Object.entries(GOOD).entries()) {
      const setting = SETTINGS[name as keyof typeof SETTINGS];
      if (setting.kind !== 'connection') throw new Error(`${name} is not a connection setting`);
      for (const value of values(good.value, i)) {
        const refusedByHandler = handlerRefuses({ ...(good.env ?? HANDLER_BASE), [setting.env]: value });
        for (const key of setting.context) {
          const context = { ...good.context, [key]: value };
          const result = contextProblems(context);
          const show = `${key}=${JSON.stringify(value).slice(0, 60)}`;
          if (Array.isArray(result)) {
            if (refusedByHandler) {
              refused++;
              if (!result.some((p: string) => p.includes(`"${key}"`) || p.includes(`-c ${key}=`)))
                missed.push(`${show}: refused, but not naming ${key}: ${result.join(' | ')}`);
            }
            continue;
          }
          if (refusedByHandler) {
            missed.push(`${show}: the handler refuses it, the synth accepts it`);
            continue;
          }
          // Accepted by the synth: the environment the stack builds from it works in the handler.
          accepted++;
          const config = result as LakeTsConfig;
          const secretId = config.spSecret.kind === 'arn' ? config.spSecret.arn : config.spSecret.name;
          const env = jobEnvironment(config, secretId, {
            name: 'tiering',
            metricsNamespace: METRICS_NAMESPACE,
          });
          if (handlerRefuses(env)) missed.push(`${show}: accepted by the synth, refused by the handler`);
        }
      }
    }
    expect(missed.slice(0, 10), `seed ${SEED}`).toEqual([]);
    expect(refused).toBeGreaterThan(300);
    expect(accepted).toBeGreaterThan(20);
  });
});

describe('docs/operations.md', () => {
  it('its configuration table is the one `npm run docs:settings` writes from the settings', () => {
    const doc = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
    expect(doc).toContain(settingsTable());
    expect(withSettingsTable(doc)).toBe(doc);
  });

  it('names every setting: each variable and context key once', () => {
    const table = settingsTable();
    for (const s of settings) {
      if ('env' in s) expect(table.split(`\`${s.env}\` |`).length - 1, s.env).toBe(1);
      if ('context' in s) for (const key of s.context) expect(table).toContain(`\`${key}\``);
    }
  });
});
