// `npm run grants`: the statements, applied by an admin on the real cluster, let the jobs' role do
// what the jobs do; a hostile role name stays a name.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { installWal2delta } from '../../dev/fake-lakehouse-sync.ts';
import { GrantsError, grantStatements, grantsScript, validateRole } from '../../lib/grants.ts';
import { quoteIdentifier } from '../../lib/identifier.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
let admin: pg.Client;
const roles: string[] = [];
const notices: string[] = [];

async function createRole(name: string, password?: string): Promise<void> {
  await admin.query(
    `CREATE ROLE ${pg.escapeIdentifier(name)} ${password ? `LOGIN PASSWORD ${pg.escapeLiteral(password)}` : 'NOLOGIN'}`,
  );
  roles.push(name);
}

async function apply(role: string, options: { owner?: string } = {}): Promise<void> {
  for (const statement of grantStatements(role, options)) await admin.query(statement.sql);
}

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect();
  admin.on('notice', (n) => notices.push(n.message ?? ''));
  // A stand-in for an installed LakeTS: a registry with a serial id, a function, a ChronoTable.
  await admin.query(`
    CREATE SCHEMA lakets;
    CREATE TABLE lakets._chronotable_registry (id serial PRIMARY KEY, table_name text NOT NULL);
    CREATE FUNCTION lakets.ping() RETURNS int LANGUAGE sql AS 'SELECT 1';
    REVOKE EXECUTE ON FUNCTION lakets.ping() FROM PUBLIC;
    CREATE TABLE public.metrics (ts timestamptz NOT NULL, v float8) PARTITION BY RANGE (ts);
    CREATE TABLE public.victim (id int);
  `);
});
afterAll(async () => {
  for (const role of roles.reverse()) {
    await admin.query(`DROP OWNED BY ${pg.escapeIdentifier(role)}`).catch(() => {});
    await admin.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(role)}`).catch(() => {});
  }
});

describe('applied by an admin', () => {
  const role = `app-${randomBytes(4).toString('hex')}-0000-4000-8000-000000000000`;
  const password = randomBytes(12).toString('hex');
  let jobs: pg.Client;

  beforeAll(async () => {
    await createRole(role, password);
    await apply(role);
    jobs = await db.connect({ user: role, password });
  });

  test('before Lakehouse Sync: the optional parts are skipped with a NOTICE, not an error', () => {
    expect(notices.some((n) => /schema wal2delta does not exist yet/.test(n))).toBe(true);
    expect(notices.some((n) => /schema lakets_cdf does not exist yet/.test(n))).toBe(true);
  });

  test('the role reads and writes the registries (serial ids included) and runs LakeTS functions', async () => {
    await jobs.query("INSERT INTO lakets._chronotable_registry (table_name) VALUES ('metrics')");
    expect((await jobs.query('SELECT count(*)::int AS n FROM lakets._chronotable_registry')).rows[0].n).toBe(
      1,
    );
    await jobs.query("UPDATE lakets._chronotable_registry SET table_name = 'metrics2'");
    await jobs.query('DELETE FROM lakets._chronotable_registry');
    expect((await jobs.query('SELECT lakets.ping() AS one')).rows[0].one).toBe(1);
    await jobs.query('SELECT * FROM public.metrics');
  });

  test('CREATE on the schemas, and default privileges on tables an admin creates later', async () => {
    await jobs.query('CREATE TABLE lakets.made_by_job (id int); DROP TABLE lakets.made_by_job');
    await admin.query('CREATE TABLE lakets._rollup_later (bucket timestamptz)');
    await jobs.query('INSERT INTO lakets._rollup_later VALUES (now())');
    expect((await jobs.query('SELECT count(*)::int AS n FROM lakets._rollup_later')).rows[0].n).toBe(1);
  });

  test('once Lakehouse Sync exists, running it again grants wal2delta.tables and lakets_cdf', async () => {
    await expect(jobs.query('SELECT * FROM wal2delta.tables')).rejects.toThrow(/does not exist/);
    await installWal2delta(admin);
    await admin.query('CREATE SCHEMA lakets_cdf');
    await expect(jobs.query('SELECT * FROM wal2delta.tables')).rejects.toMatchObject({ code: '42501' });
    await apply(role); // idempotent: everything again
    await jobs.query('SELECT * FROM wal2delta.tables');
    const has = await admin.query("SELECT has_schema_privilege($1, 'lakets_cdf', 'USAGE') AS ok", [role]);
    expect(has.rows[0].ok).toBe(true);
  });

  test('partitions need ownership: --owner makes the role a member of the owner, and then it can', async () => {
    const owner = `lakets_owner_${randomBytes(4).toString('hex')}`;
    await createRole(owner);
    await admin.query(`ALTER TABLE public.metrics OWNER TO ${pg.escapeIdentifier(owner)}`);
    const partition =
      "CREATE TABLE public.metrics_20260101_000000 PARTITION OF public.metrics FOR VALUES FROM ('2026-01-01') TO ('2026-01-02')";
    await expect(jobs.query(partition)).rejects.toThrow(/must be owner of table metrics/);
    await apply(role, { owner });
    await jobs.query(partition);
    await jobs.query('DROP TABLE public.metrics_20260101_000000');
  });

  test('the printed script is the same SQL and runs as a whole', async () => {
    const script = grantsScript(role);
    for (const s of grantStatements(role)) expect(script).toContain(s.sql);
    await admin.query(script);
  });
});

describe('role names', () => {
  test('a hostile name is quoted: nothing but the grants happens', async () => {
    const hostile = `x"; DROP TABLE public.victim; --$grants$ $$`;
    await createRole(hostile);
    expect(quoteIdentifier(hostile)).toBe('"x""; DROP TABLE public.victim; --$grants$ $$"');
    await admin.query(grantsScript(hostile));
    expect((await admin.query("SELECT to_regclass('public.victim') IS NOT NULL AS ok")).rows[0].ok).toBe(
      true,
    );
    const usage = await admin.query("SELECT has_schema_privilege($1, 'lakets', 'USAGE') AS ok", [hostile]);
    expect(usage.rows[0].ok).toBe(true);
  });

  test.each([
    ['', /empty/],
    ['public', /reserved/],
    ['PUBLIC', /reserved/],
    ['pg_read_all_data', /reserved/],
    ['r'.repeat(64), /longer than 63 bytes/],
    ['bad\nname', /control characters/],
  ])('refused: %j', (name, reason) => {
    expect(() => validateRole(name)).toThrow(GrantsError);
    expect(() => grantStatements(name)).toThrow(reason);
  });

  test('the script says how to create the OAuth role first, with the name as a literal', () => {
    expect(grantsScript("o'brien")).toContain(
      "SELECT databricks_create_role('o''brien', 'SERVICE_PRINCIPAL');",
    );
  });
});

describe('npm run grants', () => {
  const script = join(import.meta.dirname, '../../scripts/grants.ts');
  const run = (...args: string[]) => spawnSync(process.execPath, [script, ...args], { encoding: 'utf8' });

  test('prints the script for the role', () => {
    const out = execFileSync(process.execPath, [script, 'a1b2c3d4-aaaa-4bbb-8ccc-000000000001'], {
      encoding: 'utf8',
    });
    expect(out).toBe(grantsScript('a1b2c3d4-aaaa-4bbb-8ccc-000000000001'));
  });

  test('--owner adds the membership grant', () => {
    const result = run('jobs_role', '--owner', 'lakets_owner');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('GRANT "lakets_owner" TO "jobs_role" WITH INHERIT TRUE, SET FALSE;');
  });

  test('no role, or a bad one: usage on stderr, exit code 2', () => {
    const none = run();
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/^usage: npm run grants -- <role>/);
    const bad = run('public');
    expect(bad.status).toBe(2);
    expect(bad.stderr.split('\n')[0]).toBe(
      'npm run grants: "public" is a reserved role name: pass the role the jobs log in as',
    );
    expect(bad.stdout).toBe('');
  });
});
