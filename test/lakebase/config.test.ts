// Configuration: what the deployed functions and local runs set, and the one-line errors otherwise.
import { inspect } from 'node:util';
import { describe, expect, test } from 'vitest';
import { ConfigError, getConfig, parseConfig } from '../../lib/config.ts';

const base = {
  LAKETS_PROJECT: 'lakets-prod',
  DATABRICKS_HOST: 'https://dbc-1234.cloud.databricks.com',
  LAKETS_SP_SECRET_ID: 'lakets/service-principal',
};

function configError(env: Record<string, string>): ConfigError {
  try {
    parseConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    const e = error as ConfigError;
    expect(e.message).not.toMatch(/[\r\n]/);
    expect(e.message).toContain(e.variable);
    return e;
  }
  throw new Error(`parseConfig accepted ${JSON.stringify(env)}`);
}

describe('databricks mode', () => {
  test('a deployed function: project, host and secret id; defaults for the rest', () => {
    expect(parseConfig(base)).toEqual({
      kind: 'databricks',
      project: 'projects/lakets-prod',
      host: 'https://dbc-1234.cloud.databricks.com',
      secretId: 'lakets/service-principal',
      database: 'databricks_postgres',
    });
  });

  test('project given as projects/<name>, host without scheme or with a trailing slash', () => {
    const config = parseConfig({
      ...base,
      LAKETS_PROJECT: 'projects/lakets-prod',
      DATABRICKS_HOST: 'dbc-1234.cloud.databricks.com/',
    });
    expect(config).toMatchObject({
      project: 'projects/lakets-prod',
      host: 'https://dbc-1234.cloud.databricks.com',
    });
  });

  test('optional endpoint pin, role and database; a secret ARN', () => {
    const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:lakets/sp-AbCdEf';
    const config = parseConfig({
      ...base,
      LAKETS_SP_SECRET_ID: arn,
      LAKETS_LAKEBASE_ENDPOINT: 'projects/lakets-prod/branches/production/endpoints/primary',
      LAKETS_PG_ROLE: 'lakets_jobs',
      LAKETS_DATABASE: 'metrics',
    });
    expect(config).toMatchObject({
      secretId: arn,
      endpoint: 'projects/lakets-prod/branches/production/endpoints/primary',
      pgRole: 'lakets_jobs',
      database: 'metrics',
    });
  });

  test('a pinned endpoint names its project when LAKETS_PROJECT is unset', () => {
    const { LAKETS_PROJECT: _, ...rest } = base;
    const config = parseConfig({
      ...rest,
      LAKETS_LAKEBASE_ENDPOINT: 'projects/other/branches/main/endpoints/ep-1',
    });
    expect(config).toMatchObject({ project: 'projects/other' });
  });

  test('local runs: DATABRICKS_CLIENT_ID/SECRET instead of a secret id; the secret never prints', () => {
    const { LAKETS_SP_SECRET_ID: _, ...rest } = base;
    const config = parseConfig({
      ...rest,
      DATABRICKS_CLIENT_ID: 'app-id-1',
      DATABRICKS_CLIENT_SECRET: 'dose-very-secret-value',
    });
    if (config.kind !== 'databricks') throw new Error('expected databricks');
    expect(config.clientId).toBe('app-id-1');
    expect(config.clientSecret?.reveal()).toBe('dose-very-secret-value');
    expect(JSON.stringify(config)).not.toContain('dose-very-secret-value');
    expect(inspect(config, { depth: 5 })).not.toContain('dose-very-secret-value');
    expect(`${config.clientSecret}`).toBe('***');
  });

  test('the secret id wins over DATABRICKS_CLIENT_* left in a shell', () => {
    const config = parseConfig({ ...base, DATABRICKS_CLIENT_ID: 'x', DATABRICKS_CLIENT_SECRET: 'y' });
    expect(config).toMatchObject({ secretId: base.LAKETS_SP_SECRET_ID });
    expect(config).not.toHaveProperty('clientSecret');
  });

  test('blank variables count as unset', () => {
    const config = parseConfig({
      ...base,
      LAKETS_PG_ROLE: '  ',
      LAKETS_DATABASE: '',
      LAKETS_DATABASE_URL: '',
    });
    expect(config).toMatchObject({ kind: 'databricks', database: 'databricks_postgres' });
    expect(config).not.toHaveProperty('pgRole');
  });
});

describe('direct mode', () => {
  test('LAKETS_DATABASE_URL bypasses Databricks: nothing else is required, and the URL never prints', () => {
    const config = parseConfig({ LAKETS_DATABASE_URL: 'postgres://me:hunter2-password@127.0.0.1:5432/db' });
    expect(config.kind).toBe('direct');
    if (config.kind !== 'direct') return;
    expect(config.databaseUrl.reveal()).toBe('postgres://me:hunter2-password@127.0.0.1:5432/db');
    expect(JSON.stringify(config)).not.toContain('hunter2');
  });

  test('a URL that is not postgres:// is refused without echoing it', () => {
    const e = configError({ LAKETS_DATABASE_URL: 'mysql://me:hunter2-password@db/x' });
    expect(e.variable).toBe('LAKETS_DATABASE_URL');
    expect(e.message).not.toContain('hunter2');
  });
});

describe('errors name the variable and the fix, on one line', () => {
  test.each([
    [{ ...base, LAKETS_PROJECT: '' }, 'LAKETS_PROJECT', /set it to the Lakebase project name/],
    [{ ...base, LAKETS_PROJECT: 'Bad_Name' }, 'LAKETS_PROJECT', /"Bad_Name" is not a Lakebase project name/],
    [{ ...base, LAKETS_PROJECT: 'projects/a/branches/b' }, 'LAKETS_PROJECT', /not a Lakebase project name/],
    [{ ...base, DATABRICKS_HOST: '' }, 'DATABRICKS_HOST', /set it to the workspace URL/],
    [
      { ...base, DATABRICKS_HOST: 'http://dbc-1234.cloud.databricks.com' },
      'DATABRICKS_HOST',
      /must use https/,
    ],
    [
      { ...base, DATABRICKS_HOST: 'https://dbc-1.cloud.databricks.com/api/2.0' },
      'DATABRICKS_HOST',
      /no path/,
    ],
    [{ ...base, DATABRICKS_HOST: 'https://exa mple' }, 'DATABRICKS_HOST', /is not a URL/],
    [
      { ...base, LAKETS_SP_SECRET_ID: 'has spaces in it' },
      'LAKETS_SP_SECRET_ID',
      /not a Secrets Manager secret/,
    ],
    [
      { ...base, LAKETS_LAKEBASE_ENDPOINT: 'projects/lakets-prod/branches/main' },
      'LAKETS_LAKEBASE_ENDPOINT',
      /projects\/<project>\/branches\/<branch>\/endpoints\/<endpoint>/,
    ],
    [
      { ...base, LAKETS_LAKEBASE_ENDPOINT: 'projects/other/branches/main/endpoints/ep' },
      'LAKETS_LAKEBASE_ENDPOINT',
      /not in LAKETS_PROJECT/,
    ],
    [{ ...base, LAKETS_PG_ROLE: 'r'.repeat(64) }, 'LAKETS_PG_ROLE', /at most 63 bytes/],
    [{ ...base, LAKETS_DATABASE: 'd'.repeat(64) }, 'LAKETS_DATABASE', /at most 63 bytes/],
  ])('%# %s', (env, variable, fix) => {
    const e = configError(env as Record<string, string>);
    expect(e.variable).toBe(variable);
    expect(e.message).toMatch(fix);
  });

  test('no credentials at all: names LAKETS_SP_SECRET_ID and the local alternative', () => {
    const { LAKETS_SP_SECRET_ID: _, ...rest } = base;
    const e = configError(rest);
    expect(e.variable).toBe('LAKETS_SP_SECRET_ID');
    expect(e.message).toMatch(/DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET/);
  });

  test('half of the local pair: names the missing one, never echoes the other', () => {
    const { LAKETS_SP_SECRET_ID: _, ...rest } = base;
    const e = configError({ ...rest, DATABRICKS_CLIENT_SECRET: 'dose-secret-half-pair' });
    expect(e.variable).toBe('DATABRICKS_CLIENT_ID');
    expect(e.message).not.toContain('dose-secret-half-pair');
  });

  test('http is refused even on loopback: every Databricks request is verified TLS', () => {
    for (const host of ['http://127.0.0.1:4010', 'http://localhost:4010', 'http://[::1]:4010']) {
      const e = configError({ ...base, DATABRICKS_HOST: host });
      expect(e.variable).toBe('DATABRICKS_HOST');
      expect(e.message).toMatch(/must use https/);
    }
    expect(parseConfig({ ...base, DATABRICKS_HOST: 'https://127.0.0.1:4010' })).toMatchObject({
      host: 'https://127.0.0.1:4010',
    });
  });
});

test('getConfig parses process.env once and keeps it', () => {
  const saved = process.env.LAKETS_DATABASE_URL;
  try {
    process.env.LAKETS_DATABASE_URL = 'postgres://a:b@127.0.0.1:1/x';
    const first = getConfig();
    process.env.LAKETS_DATABASE_URL = 'postgres://changed:c@127.0.0.1:1/y';
    expect(getConfig()).toBe(first);
    expect(first.kind === 'direct' && first.databaseUrl.reveal()).toBe('postgres://a:b@127.0.0.1:1/x');
  } finally {
    if (saved === undefined) delete process.env.LAKETS_DATABASE_URL;
    else process.env.LAKETS_DATABASE_URL = saved;
  }
});
