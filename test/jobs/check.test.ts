// The preflight check (lib/jobs/check.ts, `{"check": true}`, `npm run check`): runs no job, and names
// each missing privilege with its fix — against the compatible schema, and against the public
// LakeTS's caller's rights (test/support/public-rights-grid.ts) with objects outside `public`.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { installWal2delta } from '../../dev/fake-lakehouse-sync.ts';
import { lambdaContext } from '../../dev/lambda-context.ts';
import { applyGrants } from '../../lib/grants.ts';
import { quoteIdentifier } from '../../lib/identifier.ts';
import { CheckFailed, jobHandler } from '../../lib/job-handler.ts';
import { JOB_LIST, JOBS } from '../../lib/jobs/catalog.ts';
import { type CheckReport, preflight } from '../../lib/jobs/check.ts';
import { PayloadError, parseInvocation } from '../../lib/jobs/payload.ts';
import { findCycle } from '../../lib/jobs/rollup-refresh.ts';
import { observability } from '../../lib/observability.ts';
import { buildEstate } from '../reliability/support/scenario.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { stateFingerprint } from '../support/lakets-fixtures.ts';
import { callerRights } from '../support/public-rights-grid.ts';

const ALL = JOB_LIST;
const script = join(import.meta.dirname, '../../scripts/check.ts');
const invoke = join(import.meta.dirname, '../../scripts/invoke.ts');
const suffix = randomBytes(3).toString('hex');

/** The original jobs' documented grant list (docs/lakets-contract.md), nothing more. */
function seedGrants(role: string): string {
  const r = quoteIdentifier(role);
  return `GRANT USAGE, CREATE ON SCHEMA public, lakets TO ${r};
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, lakets TO ${r};
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lakets TO ${r};
    ALTER DEFAULT PRIVILEGES IN SCHEMA public, lakets GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${r};`;
}

function failed(report: CheckReport): Record<string, string> {
  return Object.fromEntries(
    report.items.filter((i) => i.status === 'fail').map((i) => [i.check, `${i.detail} | fix: ${i.fix}`]),
  );
}

function cli(url: string, ...args: string[]) {
  const env: NodeJS.ProcessEnv = { ...process.env, LAKETS_DATABASE_URL: url };
  delete env['LAKETS_PROJECT'];
  return spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', env });
}

let db: TestDatabase;
let admin: pg.Client;
const roles: string[] = [];

async function loginRole(name: string): Promise<{ url: string; client: () => Promise<pg.Client> }> {
  const password = randomBytes(12).toString('hex');
  await admin.query(`CREATE ROLE ${quoteIdentifier(name)} LOGIN PASSWORD ${pg.escapeLiteral(password)}`);
  roles.push(name);
  return { url: db.urlFor(name, password), client: () => db.connect({ user: name, password }) };
}

beforeAll(async () => {
  db = await freshDatabase({ lakets: true });
  admin = await db.connect();
  await installWal2delta(admin);
  await buildEstate(admin, 'chk'); // synced tables of every policy kind, a RollUp DAG, Lakehouse Sync
  await admin.query(`CREATE ROLE chk_owner_${suffix} NOLOGIN; CREATE SCHEMA sensors`);
  await admin.query(`CREATE TABLE sensors.probe (ts timestamptz NOT NULL, v float8)`);
  await admin.query(`SELECT lakets.create_chronotable('probe', 'ts', interval '1 day', 'sensors')`);
});
afterAll(async () => {
  for (const r of roles) await admin.query(`DROP OWNED BY ${quoteIdentifier(r)}`).catch(() => {});
});

describe('against the compatible schema (definer rights)', () => {
  it('passes for a role granted by npm run grants, and changes nothing', async () => {
    const role = await loginRole(`chk_ok_${suffix}`);
    await applyGrants(admin, `chk_ok_${suffix}`);
    const before = await stateFingerprint(admin);
    const client = await role.client();
    const report = await preflight(client, ALL, { tlsRequired: false });
    expect(failed(report)).toEqual({});
    expect(report.status).toBe('pass');
    expect(report.items.find((i) => i.check === 'partition ownership')?.detail).toMatch(/SECURITY DEFINER/);
    expect(report.items.filter((i) => i.check.startsWith('shadow: ')).map((i) => i.status)).toEqual([
      'pass',
      'pass',
      'pass',
    ]);
    expect(report.items.find((i) => i.check === 'rollup dag')).toMatchObject({ status: 'pass' });
    expect(await stateFingerprint(admin)).toBe(before);

    // The CLI: same result, exit 0.
    const out = cli(role.url);
    expect(out.status, out.stderr + out.stdout).toBe(0);
    expect(out.stdout).toMatch(
      /^LakeTS preflight check for partition-manager, tiering, retention, rollup-refresh as role "chk_ok_/,
    );
    expect(out.stdout).toMatch(/: PASS \(/);
    expect(out.stdout).not.toContain(role.url.split(':')[2]?.split('@')[0] ?? 'x');
  });

  it('with only the seed’s grants, names each missing privilege with its fix', async () => {
    const role = await loginRole(`chk_seed_${suffix}`);
    await admin.query(seedGrants(`chk_seed_${suffix}`));
    const report = await preflight(await role.client(), ALL, { tlsRequired: false });
    expect(report.status).toBe('fail');
    const f = failed(report);
    expect(Object.keys(f).sort()).toEqual([
      'lakehouse sync state',
      'schema usage: lakets_cdf',
      'schema usage: sensors',
    ]);
    expect(f['lakehouse sync state']).toMatch(
      /no USAGE on schema wal2delta.*fix: an admin runs `npm run grants -- chk_seed_/,
    );
    expect(f['lakehouse sync state']).toContain('GRANT SELECT ON wal2delta.tables TO');
    expect(f['schema usage: sensors']).toMatch(
      /no USAGE on schema "sensors", which holds ChronoTable sensors.probe/,
    );
    expect(f['schema usage: sensors']).toContain(`GRANT USAGE ON SCHEMA "sensors" TO "chk_seed_${suffix}";`);

    // The CLI prints each failure with its fix and exits 1.
    const out = cli(role.url, 'tiering');
    expect(out.status).toBe(1);
    expect(out.stdout).toMatch(/FAIL +lakehouse sync state/);
    expect(out.stdout).toMatch(/fix: an admin runs `npm run grants/);
  });

  it('finds a RollUp dependency cycle', async () => {
    expect(
      findCycle([
        { id: 1, name: 'a', depends_on: [2] },
        { id: 2, name: 'b', depends_on: [1] },
        { id: 3, name: 'c', depends_on: [] },
      ]),
    ).toEqual(['a', 'b']);
    await admin.query('BEGIN');
    try {
      await admin.query(
        `UPDATE lakets._rollup_registry SET depends_on = ARRAY(SELECT id FROM lakets._rollup_registry WHERE name = 'chk_d') WHERE name = 'chk_h'`,
      );
      const report = await preflight(admin, [JOBS['rollup-refresh']], { tlsRequired: false });
      expect(failed(report)['rollup dag']).toMatch(
        /"chk_d", "chk_h" are on \(or behind\) a dependency cycle/,
      );
    } finally {
      await admin.query('ROLLBACK');
    }
  });
});

describe('against the public LakeTS’s caller’s rights', () => {
  beforeAll(async () => {
    await admin.query(`ALTER TABLE sensors.probe OWNER TO chk_owner_${suffix}`);
    await callerRights(admin);
  });

  it('with only the seed’s grants: ownership of the ChronoTables is named too', async () => {
    const role = await loginRole(`chk_pub_${suffix}`);
    await admin.query(seedGrants(`chk_pub_${suffix}`));
    const report = await preflight(await role.client(), ALL, { tlsRequired: false });
    const f = failed(report);
    // The superuser owns the estate's tables, chk_owner the one in sensors.
    expect(f[`partition ownership: chk_owner_${suffix}`]).toMatch(
      new RegExp(
        `owns sensors.probe: this role is not a member of it \\| fix: .*GRANT "chk_owner_${suffix}" TO "chk_pub_${suffix}" WITH INHERIT TRUE, SET FALSE;`,
      ),
    );
    expect(f['partition ownership: postgres']).toMatch(/"postgres" owns public.chk_a/);
    expect(f['schema usage: sensors']).toBeDefined();
  });

  it('after npm run grants, only what it could not grant remains (a superuser owner)', async () => {
    const role = await loginRole(`chk_pub2_${suffix}`);
    const applied = await applyGrants(admin, `chk_pub2_${suffix}`);
    expect(applied.plan.manual.map((m) => m.purpose)).toEqual([
      expect.stringMatching(/"postgres" is a superuser/),
    ]);
    const f = failed(await preflight(await role.client(), ALL, { tlsRequired: false }));
    expect(Object.keys(f)).toEqual(['partition ownership: postgres']);
  });
});

describe('{"check": true} to a handler', () => {
  it('is a payload of its own', () => {
    expect(parseInvocation(JOBS.retention, { check: true })).toMatchObject({
      check: true,
      trigger: 'manual',
    });
    expect(parseInvocation(JOBS.retention, { check: false }).check).toBeUndefined();
    expect(() => parseInvocation(JOBS.retention, { check: true, dryRun: true })).toThrow(PayloadError);
    expect(() => parseInvocation(JOBS.tiering, { check: 'yes' })).toThrow(/"check" must be true or false/);
  });

  it('returns the report when it passes, and is a Lambda error with the report logged when it fails', async () => {
    const ok = await loginRole(`chk_h1_${suffix}`);
    await applyGrants(admin, `chk_h1_${suffix}`);
    const tools = observability('rollup-refresh');
    const logged = vi.spyOn(tools.logger, 'error');
    const saved = process.env['LAKETS_DATABASE_URL'];
    try {
      process.env['LAKETS_DATABASE_URL'] = ok.url;
      // The public-like rights are on, but RollUp Refresh needs no partition DDL: it passes.
      const report = (await jobHandler(JOBS['rollup-refresh'], tools)(
        { check: true },
        lambdaContext('rollup-refresh'),
      )) as CheckReport;
      expect(report).toMatchObject({ check: true, status: 'pass', jobs: ['rollup-refresh'] });
      // The configuration is read once per container: the same role, now missing a privilege.
      await admin.query(`REVOKE EXECUTE ON FUNCTION lakets.refresh_rollup(text) FROM chk_h1_${suffix}`);
      const error = await jobHandler(JOBS['rollup-refresh'], tools)(
        { check: true },
        lambdaContext('rollup-refresh'),
      ).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CheckFailed);
      expect((error as CheckFailed).message).toBe(
        [
          'rollup-refresh check failed: 1 of 11 checks failed, each with its fix:',
          `1. execute: lakets.refresh_rollup(text): no EXECUTE on lakets.refresh_rollup; fix: an admin runs \`npm run grants -- chk_h1_${suffix}\` (with LAKETS_DATABASE_URL, it reads the database)`,
        ].join('\n'),
      );
      // npm run invoke prints the same: the report on stdout, the Lambda error's message on stderr.
      const env: NodeJS.ProcessEnv = { ...process.env, LAKETS_DATABASE_URL: ok.url };
      delete env['LAKETS_PROJECT'];
      const out = spawnSync(process.execPath, [invoke, 'rollup-refresh', '{"check": true}'], {
        encoding: 'utf8',
        env,
      });
      expect(out.status).toBe(1);
      expect(out.stderr).toContain(`invoke: ${(error as CheckFailed).message}\n`);
      expect(JSON.parse(out.stdout)).toMatchObject({ check: true, status: 'fail', totals: { fail: 1 } });
    } finally {
      if (saved === undefined) delete process.env['LAKETS_DATABASE_URL'];
      else process.env['LAKETS_DATABASE_URL'] = saved;
    }
    expect(logged).toHaveBeenCalledTimes(1);
    expect(logged.mock.calls[0]?.[0]).toBe('rollup-refresh check fail');
    const extra = logged.mock.calls[0]?.[1] as { report: CheckReport };
    expect(extra.report.items).toContainEqual(
      expect.objectContaining({ check: 'execute: lakets.refresh_rollup(text)', status: 'fail' }),
    );
  });
});
