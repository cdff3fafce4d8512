// `npm run grants` reading the database: against a LakeTS whose functions run with the caller's
// rights (the public 0.1.3 behaviour, test/support/public-rights-grid.ts) and ChronoTables and RollUp
// sources outside `public`, the seed's literal list leaves the jobs failing; what it grants after
// reading the database lets every job run, it stays idempotent, and what it must not or cannot
// grant is printed with the exact statement to run.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { applyGrants, grantStatements, planGrants } from '../../lib/grants.ts';
import { unlimited } from '../../lib/jobs/budget.ts';
import { jobNamed } from '../../lib/jobs/catalog.ts';
import { runJob } from '../../lib/jobs/runner.ts';
import type { JobName, JobOptions } from '../../lib/jobs/types.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { callerRights } from '../support/public-rights-grid.ts';

const scheduled: JobOptions = { dryRun: false, force: false, trigger: 'schedule' };
const script = join(import.meta.dirname, '../../scripts/grants.ts');

let db: TestDatabase;
let admin: pg.Client;
const suffix = randomBytes(3).toString('hex');
const owner = `ct_owner_${suffix}`;

async function loginRole(name: string): Promise<{ name: string; password: string }> {
  const password = randomBytes(12).toString('hex');
  await admin.query(`CREATE ROLE ${pg.escapeIdentifier(name)} LOGIN PASSWORD ${pg.escapeLiteral(password)}`);
  return { name, password };
}

/** Hands a ChronoTable and its partitions to `role`. */
async function giveTo(role: string, table: string): Promise<void> {
  const { rows } = await admin.query<{ rel: string }>(
    `SELECT $1::regclass::text AS rel UNION ALL SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = $1::regclass`,
    [table],
  );
  for (const { rel } of rows) await admin.query(`ALTER TABLE ${rel} OWNER TO ${pg.escapeIdentifier(role)}`);
}

async function chronoTable(schema: string, name: string): Promise<void> {
  await admin.query(`CREATE TABLE ${schema}.${name} (ts timestamptz NOT NULL, device text, value float8)`);
  await admin.query(`SELECT lakets.create_chronotable($1, 'ts', interval '1 day', $2)`, [name, schema]);
  await admin.query(`SELECT lakets.add_retention_policy($1, interval '2 days', $2)`, [name, schema]);
  // Chunks back to 6 days ago, with rows: retention (2 days) has partitions to drop.
  await admin.query(
    `SELECT lakets._ensure_partitions(r.id, p_range_start => now() - interval '6 days')
       FROM lakets._chronotable_registry r WHERE r.schema_name = $1 AND r.table_name = $2`,
    [schema, name],
  );
  await admin.query(
    `INSERT INTO ${schema}.${name} SELECT t, 'd1', 1 FROM generate_series(now() - interval '5 days', now(), interval '1 day') t`,
  );
}

/** Makes Partition Manager need work: the future partitions are gone, as if time had passed. */
async function makeWork(): Promise<void> {
  await admin.query(`
    DO $$ DECLARE c record; BEGIN
      FOR c IN SELECT m.chunk_name FROM lakets._chunk_metadata m
                WHERE m.range_start > now() + interval '2 days' AND m.status <> 'dropped' LOOP
        EXECUTE 'DROP TABLE ' || c.chunk_name;  -- registry names are already quoted where needed
        DELETE FROM lakets._chunk_metadata WHERE chunk_name = c.chunk_name;
      END LOOP;
    END $$`);
}

async function runAs(user: { name: string; password: string }, job: JobName) {
  const client = await db.connect({ user: user.name, password: user.password });
  try {
    return await runJob(jobNamed(job), client, scheduled, unlimited);
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  db = await freshDatabase({ lakets: true });
  admin = await db.connect();
  await admin.query(`CREATE ROLE ${owner} NOLOGIN; CREATE SCHEMA sensors`);
  await chronoTable('public', 'plant');
  await chronoTable('sensors', 'probe');
  await admin.query(
    `SELECT lakets.create_rollup('probe_hourly',
       'SELECT lakets.time_bucket(''1 hour'', ts) AS bucket, count(*) AS n FROM sensors.probe GROUP BY 1',
       interval '1 hour', 'probe', 'sensors')`,
  );
  await giveTo(owner, 'public.plant');
  await giveTo(owner, 'sensors.probe');
  await callerRights(admin);
});

describe('against a LakeTS running DDL with the caller’s rights', () => {
  it('the seed’s list is not enough: ownership and schema USAGE are missing', async () => {
    const jobs = await loginRole(`seed_${suffix}`);
    for (const s of grantStatements(jobs.name)) await admin.query(s.sql);
    await makeWork();
    const report = await runAs(jobs, 'partition-manager');
    expect(report.status).toBe('failed');
    const reasons = report.items.map((i) => i.reason ?? '').join('\n');
    expect(reasons).toMatch(/must be owner of table plant/);
    expect(reasons).toMatch(/permission denied for schema sensors|must be owner of table probe/);
  });

  it('what it reads and grants lets every job run, and a second run changes nothing', async () => {
    const jobs = await loginRole(`jobs_${suffix}`);
    await admin.query(`REVOKE CONNECT ON DATABASE ${pg.escapeIdentifier(db.name)} FROM PUBLIC`);
    const plan = await planGrants(admin, jobs.name);
    expect(plan.callerRights).toBe(true);
    expect(plan.rightsReason).toMatch(/not SECURITY DEFINER/);
    const sql = plan.statements.map((s) => s.sql).join('\n');
    expect(sql).toContain(`GRANT CONNECT ON DATABASE ${pg.escapeIdentifier(db.name)} TO "${jobs.name}";`);
    expect(sql).toContain(`GRANT USAGE, CREATE ON SCHEMA "sensors" TO "${jobs.name}";`);
    expect(sql).toContain(`GRANT "${owner}" TO "${jobs.name}" WITH INHERIT TRUE, SET FALSE;`);
    expect(sql).toContain(`GRANT SELECT ON sensors.probe TO "${jobs.name}";`);
    expect(plan.manual).toEqual([]);

    // docs/operations.md step 5, as written: the CLI with an admin connection.
    const out = spawnSync(process.execPath, [script, jobs.name], {
      encoding: 'utf8',
      env: { ...process.env, LAKETS_DATABASE_URL: db.url },
    });
    expect(out.status, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/-- done: .*membership/);
    expect(out.stdout).not.toContain('NOT DONE');
    await makeWork();
    const pm = await runAs(jobs, 'partition-manager');
    expect(pm.status, JSON.stringify(pm.items)).toBe('ok');
    expect(pm.totals['partitionsCreated']).toBeGreaterThan(0);
    for (const job of ['tiering', 'retention', 'rollup-refresh'] as const) {
      const report = await runAs(jobs, job);
      expect(report.status, `${job}: ${JSON.stringify(report.items)}`).toBe('ok');
      // Retention's drops are DDL with the caller's rights too: they happened.
      if (job === 'retention') expect(report.totals['chunksDropped']).toBeGreaterThanOrEqual(6);
    }

    const members = `SELECT count(*)::int AS n FROM pg_auth_members WHERE member = $1::regrole`;
    const before = (await admin.query(members, [jobs.name])).rows[0].n;
    const again = await applyGrants(admin, jobs.name);
    expect(again.plan.statements.map((s) => s.sql)).toEqual(plan.statements.map((s) => s.sql));
    expect((await admin.query(members, [jobs.name])).rows[0].n).toBe(before);
    await admin.query(`GRANT CONNECT ON DATABASE ${pg.escapeIdentifier(db.name)} TO PUBLIC`);
  });

  it('never grants membership of a superuser owner: it prints how to move the ownership instead', async () => {
    const boss = `boss_${suffix}`;
    await admin.query(`CREATE ROLE ${boss} SUPERUSER NOLOGIN`);
    await admin.query(`CREATE TABLE public.rig (ts timestamptz NOT NULL)`);
    await admin.query(`SELECT lakets.create_chronotable('rig', 'ts', interval '1 day')`);
    await giveTo(boss, 'public.rig');
    const jobs = await loginRole(`jobs2_${suffix}`);
    const plan = await planGrants(admin, jobs.name);
    expect(plan.statements.map((s) => s.sql).join('\n')).not.toContain(`GRANT "${boss}"`);
    expect(plan.manual).toHaveLength(1);
    expect(plan.manual[0]?.purpose).toMatch(/is a superuser/);
    expect(plan.manual[0]?.sql).toContain('ALTER TABLE public.rig OWNER TO lakets_owner;');

    // The CLI applies the rest, prints what it did and what is left, and exits 1.
    const out = spawnSync(process.execPath, [script, jobs.name], {
      encoding: 'utf8',
      env: { ...process.env, LAKETS_DATABASE_URL: db.url },
    });
    expect(out.status, out.stderr).toBe(1);
    expect(out.stdout).toMatch(/-- done: log in to the database holding LakeTS/);
    expect(out.stdout).toMatch(/-- NOT DONE \(1\)/);
    expect(out.stdout).not.toContain(db.info.password);
    const member = await admin.query(`SELECT pg_has_role($1, $2, 'MEMBER') AS m`, [jobs.name, boss]);
    expect(member.rows[0].m).toBe(false);
    await admin.query(`SELECT lakets.drop_chronotable('rig')`);
  });

  it('nor of an owner inheriting a superuser or databricks_superuser, nor of one named by --owner', async () => {
    await admin.query(`DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'databricks_superuser') THEN
        CREATE ROLE databricks_superuser NOLOGIN;
      END IF; END $$`);
    const human = `human_${suffix}`;
    await admin.query(`CREATE ROLE ${human} NOLOGIN IN ROLE databricks_superuser`);
    await admin.query(`CREATE TABLE public.bench_rig (ts timestamptz NOT NULL)`);
    await admin.query(`SELECT lakets.create_chronotable('bench_rig', 'ts', interval '1 day')`);
    await giveTo(human, 'public.bench_rig');
    const jobs = await loginRole(`jobs3_${suffix}`);
    const plan = await planGrants(admin, jobs.name, { owner: db.info.user });
    const sql = plan.statements.map((s) => s.sql).join('\n');
    expect(sql).not.toContain(`GRANT "${human}"`);
    expect(sql).not.toContain(`GRANT ${pg.escapeIdentifier(db.info.user)} TO`);
    const manual = plan.manual.find((m) => m.purpose.includes(human));
    expect(manual?.purpose).toMatch(/member of one \(or of databricks_superuser\)/);
    expect(manual?.sql).toContain('ALTER TABLE public.bench_rig OWNER TO lakets_owner;');

    await applyGrants(admin, jobs.name, { owner: db.info.user });
    const member = await admin.query(
      `SELECT pg_has_role($1, $2, 'MEMBER') AS human, pg_has_role($1, $3, 'MEMBER') AS admin`,
      [jobs.name, human, db.info.user],
    );
    expect(member.rows[0]).toEqual({ human: false, admin: false });
    await admin.query(`SELECT lakets.drop_chronotable('bench_rig')`);
  });

  it('a role that does not exist is a one-line error naming the fix', async () => {
    await expect(planGrants(admin, `nobody_${suffix}`)).rejects.toThrow(
      /does not exist .*databricks_create_role/,
    );
  });
});

describe('against the compatible schema’s definer rights', () => {
  it('needs no membership, and says why', async () => {
    const other = await freshDatabase({ lakets: true });
    const c = await other.connect();
    const plan = await planGrants(c, `jobs_${suffix}`);
    expect(plan.callerRights).toBe(false);
    expect(plan.rightsReason).toMatch(/is SECURITY DEFINER/);
    expect(plan.statements.some((s) => /WITH INHERIT TRUE/.test(s.sql))).toBe(false);
  });
});
