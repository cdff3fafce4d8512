// The targets file (and LAKETS_TARGETS): its shape, one line per problem naming the target and the key,
// and the handlers' environment of each target, parsed by the same rules as today's variables.
import { describe, expect, test } from 'vitest';
import { ConfigError, parseConfig } from '../../lib/config.ts';
import {
  deployedTargets,
  findTarget,
  LISTED_TARGETS,
  listNames,
  parseTargets,
  type TargetEntry,
  targetEnv,
} from '../../lib/estate.ts';

const good = {
  name: 'eu-prod',
  databricksHost: 'https://dbc-1.cloud.databricks.com',
  spSecretName: 'lakets/sp',
  lakebaseProject: 'eu-prod',
  database: 'metrics',
};

function problems(json: unknown): readonly string[] {
  try {
    parseTargets(json, 'targets.json');
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    const e = error as ConfigError;
    expect(e.message).not.toMatch(/[\r\n]/);
    expect(e.message.startsWith('targets.json: ')).toBe(true);
    for (const p of e.problems) expect(p).not.toMatch(/[\r\n]/);
    return e.problems;
  }
  throw new Error(`parseTargets accepted ${JSON.stringify(json)}`);
}

describe('parseTargets', () => {
  test('a valid file: entries as written (trimmed), with the optional keys', () => {
    const entries = parseTargets(
      [
        {
          ...good,
          pgRole: ' lakets_jobs ',
          timezone: 'Europe/Berlin',
          jobs: { tiering: { enabled: false } },
        },
        {
          name: 'legacy-1',
          databricksHost: 'https://dbc-2.cloud.databricks.com',
          spSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:lakets/sp-AbCdEf',
          spSecretKmsKeyArn: 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
          lakebaseInstance: 'legacy-instance',
          jobs: { retention: { schedule: 'cron(0 3 * * ? *)' }, 'rollup-refresh': { enabled: true } },
        },
      ],
      'targets.json',
    );
    expect(entries[0]).toEqual({
      ...good,
      pgRole: 'lakets_jobs',
      timezone: 'Europe/Berlin',
      jobs: { tiering: { enabled: false } },
    });
    expect(entries[1]?.jobs).toEqual({
      retention: { schedule: 'cron(0 3 * * ? *)' },
      'rollup-refresh': { enabled: true },
    });
  });

  test('not an array, or an empty one', () => {
    expect(problems({ targets: [] })[0]).toMatch(/must be a JSON array of objects.*not an object/);
    expect(problems([])[0]).toMatch(/empty; list at least one target/);
  });

  test('an entry that is not an object', () => {
    expect(problems([good, 'prod'])).toEqual([
      'targets[1]: is the string "prod", not an object; fix: give each target as {"name": ..., ...}',
    ]);
  });

  test('a missing, malformed or duplicate name', () => {
    const { name: _, ...noName } = good;
    expect(problems([noName])).toEqual([
      'targets[0]: name: is missing; fix: give every target a unique name such as "eu-prod"',
    ]);
    expect(problems([{ ...good, name: 'EU_prod' }])[0]).toMatch(
      /^targets\[0\] "EU_prod": name: "EU_prod" is not a target name .*; fix: rename it/,
    );
    expect(problems([{ ...good, name: 'a'.repeat(41) }])[0]).toMatch(/is not a target name/);
    expect(problems([{ ...good, name: '-x' }])[0]).toMatch(/is not a target name/);
    expect(problems([good, { ...good }])).toEqual([
      'targets[1] "eu-prod": name: is also the name of targets[0]; fix: give each target its own name',
    ]);
  });

  test('an unknown key is named, with the keys a target takes', () => {
    const [line] = problems([{ ...good, lakebaseProjet: 'x' }]);
    expect(line).toMatch(/^targets\[0\] "eu-prod": "lakebaseProjet": is not a target key; fix: remove it/);
    expect(line).toContain('lakebaseProject');
    expect(line).toContain('spSecretKmsKeyArn');
    // Stack-wide context keys are not per target.
    expect(problems([{ ...good, alarmEmail: 'a@b.c' }])[0]).toMatch(/"alarmEmail": is not a target key/);
  });

  test('a connection value that is not a non-empty string', () => {
    expect(problems([{ ...good, database: 5 }])).toEqual([
      'targets[0] "eu-prod": database: is number 5; fix: give database as a non-empty string, or leave the key out',
    ]);
    expect(problems([{ ...good, pgRole: '  ' }])[0]).toMatch(/pgRole: is the string " {2}"/);
    expect(problems([{ ...good, name: 7 }])[0]).toMatch(/^targets\[0\]: name: is number 7/);
  });

  test('a KMS key that is not a key ARN (an alias is refused)', () => {
    expect(problems([{ ...good, spSecretKmsKeyArn: 'alias/lakets' }])[0]).toMatch(
      /spSecretKmsKeyArn: "alias\/lakets" is not a KMS key ARN; fix: give the key ARN/,
    );
    expect(
      problems([{ ...good, spSecretKmsKeyArn: 'arn:aws:kms:eu-west-1:123456789012:alias/lakets' }])[0],
    ).toMatch(/is not a KMS key ARN/);
    expect(
      parseTargets(
        [{ ...good, spSecretKmsKeyArn: `arn:aws:kms:eu-west-1:123456789012:key/mrk-${'a'.repeat(32)}` }],
        'f',
      )[0]?.spSecretKmsKeyArn,
    ).toMatch(/mrk-/);
  });

  test('a time zone that is not an IANA name', () => {
    expect(problems([{ ...good, timezone: 'Mars/Olympus' }])[0]).toMatch(
      /timezone: "Mars\/Olympus" is not an IANA time zone name/,
    );
    expect(problems([{ ...good, timezone: '+01:00' }])[0]).toMatch(/timezone/);
  });

  test('job overrides: known jobs, enabled boolean, schedule expressions, not both off and scheduled', () => {
    expect(problems([{ ...good, jobs: [] }])[0]).toMatch(/jobs: is an array/);
    expect(problems([{ ...good, jobs: { vacuum: {} } }])[0]).toMatch(
      /jobs\.vacuum: is not a job; fix: name one of partition-manager, tiering, retention, rollup-refresh/,
    );
    expect(problems([{ ...good, jobs: { tiering: true } }])[0]).toMatch(/jobs\.tiering: is boolean true/);
    expect(problems([{ ...good, jobs: { tiering: { enabled: 'no' } } }])[0]).toMatch(
      /jobs\.tiering\.enabled: is the string "no"; fix: set true or false/,
    );
    expect(problems([{ ...good, jobs: { tiering: { schedule: 'daily' } } }])[0]).toMatch(
      /jobs\.tiering\.schedule: the string "daily" is not a schedule expression/,
    );
    // Scheduler's own shapes, refused at synth rather than at deploy: a Unix 5-field cron, both day
    // fields set (or neither '?'), a zero or mis-numbered rate.
    for (const bad of [
      'cron(0 3 * * *)',
      'cron(0 3 * * 1 *)',
      'cron(0 3 ? * ? *)',
      'rate(0 minutes)',
      'rate(1 hours)',
      'rate(5 minute)',
    ]) {
      expect(problems([{ ...good, jobs: { tiering: { schedule: bad } } }])[0], bad).toMatch(
        /jobs\.tiering\.schedule: .* is not a schedule expression/,
      );
    }
    for (const ok of ['cron(0 3 * * ? *)', 'cron(0 3 ? * SUN *)', 'cron(0/15 * * * ? *)', 'rate(1 day)']) {
      expect(parseTargets([{ ...good, jobs: { tiering: { schedule: ok } } }], 'f')[0]?.jobs, ok).toEqual({
        tiering: { schedule: ok },
      });
    }
    expect(problems([{ ...good, jobs: { tiering: { at: '03:00' } } }])[0]).toMatch(
      /jobs\.tiering\.at: is not a job setting/,
    );
    expect(
      problems([{ ...good, jobs: { tiering: { enabled: false, schedule: 'rate(1 hour)' } } }])[0],
    ).toMatch(/jobs\.tiering: is disabled and has a schedule/);
    expect(
      parseTargets([{ ...good, jobs: { tiering: { schedule: 'rate(2 hours)' } } }], 'f')[0]?.jobs,
    ).toEqual({ tiering: { schedule: 'rate(2 hours)' } });
  });

  test('every problem is reported, one line each, in order; the message counts them', () => {
    try {
      parseTargets(
        [
          { ...good, timezone: 'Nowhere', bogus: 1 },
          { ...good, name: 'us-prod', database: 1 },
        ],
        'estate.json',
      );
      expect.unreachable();
    } catch (error) {
      const e = error as ConfigError;
      expect(e.problems).toHaveLength(3);
      expect(e.problems[0]).toMatch(/^targets\[0\] "eu-prod": "bogus"/);
      expect(e.problems[1]).toMatch(/^targets\[0\] "eu-prod": timezone/);
      expect(e.problems[2]).toMatch(/^targets\[1\] "us-prod": database/);
      expect(e.message).toMatch(/^estate\.json: 3 problems; the first: targets\[0\] "eu-prod": "bogus"/);
      expect(e.code).toBe('CONFIG_INVALID');
    }
  });
});

describe('targetEnv and the handlers’ rules', () => {
  test('context keys become the variables the handlers read; nothing else', () => {
    expect(
      targetEnv({
        ...good,
        pgRole: 'r',
        lakebaseEndpoint: 'projects/eu-prod/branches/b/endpoints/e',
        timezone: 'UTC',
      }),
    ).toEqual({
      DATABRICKS_HOST: 'https://dbc-1.cloud.databricks.com',
      LAKETS_SP_SECRET_ID: 'lakets/sp',
      LAKETS_PROJECT: 'eu-prod',
      LAKETS_LAKEBASE_ENDPOINT: 'projects/eu-prod/branches/b/endpoints/e',
      LAKETS_DATABASE: 'metrics',
      LAKETS_PG_ROLE: 'r',
    });
    const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:lakets/sp-AbCdEf';
    expect(
      targetEnv({ name: 'p', lakebaseInstance: 'inst', spSecretArn: arn, databricksHost: 'https://h' }),
    ).toEqual({ LAKETS_LAKEBASE_INSTANCE: 'inst', LAKETS_SP_SECRET_ID: arn, DATABRICKS_HOST: 'https://h' });
  });

  test('parseConfig(targetEnv(entry)) applies today’s rules: a project and an instance together is an error', () => {
    expect(parseConfig(targetEnv(good))).toEqual({
      kind: 'databricks',
      project: 'projects/eu-prod',
      host: 'https://dbc-1.cloud.databricks.com',
      secretId: 'lakets/sp',
      database: 'metrics',
    });
    const [entry] = parseTargets([{ ...good, lakebaseInstance: 'inst' }], 'f') as [TargetEntry];
    expect(() => parseConfig(targetEnv(entry))).toThrow(
      /LAKETS_PROJECT and LAKETS_LAKEBASE_INSTANCE are both set/,
    );
  });
});

describe('finding targets', () => {
  const entries = parseTargets(
    Array.from({ length: 30 }, (_, i) => ({ ...good, name: `t${i}` })),
    'f',
  );
  test('findTarget by name', () => {
    expect(findTarget(entries, 't7')?.name).toBe('t7');
    expect(findTarget(entries, 'T7')).toBeUndefined();
  });
  test('the names an error lists are bounded', () => {
    const text = listNames(entries);
    expect(text.split(', ')).toHaveLength(LISTED_TARGETS + 1);
    expect(text).toMatch(/^t0, t1, .*t19, … and 10 more$/);
    expect(listNames(entries.slice(0, 2))).toBe('t0, t1');
  });
});

describe('deployedTargets', () => {
  test('LAKETS_TARGETS names the targets; unset, the single-target environment', () => {
    expect(deployedTargets({ LAKETS_TARGETS: JSON.stringify([good]) })).toEqual({
      source: 'LAKETS_TARGETS',
      entries: [good],
    });
    expect(deployedTargets({ LAKETS_TARGETS: ' ' })).toEqual({ source: 'environment' });
    expect(deployedTargets({})).toEqual({ source: 'environment' });
  });
  test('LAKETS_TARGETS that is not JSON, or not valid targets: one line naming it', () => {
    expect(() => deployedTargets({ LAKETS_TARGETS: '[{' })).toThrow(/^LAKETS_TARGETS is not JSON/);
    expect(() => deployedTargets({ LAKETS_TARGETS: '[{"name": "x", "nope": 1}]' })).toThrow(
      /^LAKETS_TARGETS: targets\[0\] "x": "nope": is not a target key/,
    );
  });
});
