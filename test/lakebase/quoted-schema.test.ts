// The schemas the job role needs, when a schema's name needs quoting ("Sensor Data": mixed case and a
// space): a ChronoTable there, its shadow (enable_sync), and a RollUp over it whose table is there too. `npm run grants` reading
// the database (applyGrants) and the preflight check read the same list (lib/jobs/schemas.ts), so after
// the grants the check passes, and all four jobs end `ok` as that role, with the caller's rights (the
// public LakeTS's behaviour: the role itself creates partitions in that schema and drops them).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { beforeAll, expect, it } from 'vitest';
import { installWal2delta, syncCaughtUp } from '../../dev/fake-lakehouse-sync.ts';
import { applyGrants } from '../../lib/grants.ts';
import { unlimited } from '../../lib/jobs/budget.ts';
import { JOB_LIST } from '../../lib/jobs/catalog.ts';
import { preflight } from '../../lib/jobs/check.ts';
import { runJob } from '../../lib/jobs/runner.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { callerRights } from '../support/public-rights-grid.ts';

const SCHEMA = 'Sensor Data';
const suffix = randomBytes(3).toString('hex');
let db: TestDatabase;
let admin: pg.Client;

beforeAll(async () => {
  db = await freshDatabase({ lakets: true });
  admin = await db.connect();
  await installWal2delta(admin);
  const s = pg.escapeIdentifier(SCHEMA);
  const owner = `sensor_owner_${suffix}`;
  await admin.query(`CREATE ROLE ${owner} NOLOGIN; CREATE SCHEMA ${s}`);
  await admin.query(`CREATE TABLE ${s}.probe (ts timestamptz NOT NULL, device text, value float8)`);
  await admin.query(`SELECT lakets.create_chronotable('probe', 'ts', interval '1 day', $1)`, [SCHEMA]);
  await admin.query(
    `SELECT lakets._ensure_partitions(r.id, p_range_start => now() - interval '6 days')
       FROM lakets._chronotable_registry r WHERE r.schema_name = $1 AND r.table_name = 'probe'`,
    [SCHEMA],
  );
  await admin.query(
    `INSERT INTO ${s}.probe SELECT t, 'd1', 1 FROM generate_series(now() - interval '5 days', now(), interval '1 hour') t`,
  );
  await admin.query(
    `SELECT lakets.add_tiered_retention_policy('probe', interval '2 days', interval '4 days', $1)`,
    [SCHEMA],
  );
  await admin.query(`SELECT lakets.enable_sync('probe', $1)`, [SCHEMA]);
  await syncCaughtUp(admin, 'probe', SCHEMA);
  await admin.query(
    `SELECT lakets.create_rollup('probe_hourly',
       'SELECT lakets.time_bucket(''1 hour'', ts) AS bucket, count(*) AS n FROM "Sensor Data".probe GROUP BY 1',
       interval '1 hour', 'probe', $1)`,
    [SCHEMA],
  );
  // A LakeTS that keeps a RollUp's table beside its source: the registry names it quoted.
  await admin.query(`ALTER TABLE public._rollup_probe_hourly SET SCHEMA ${s}`);
  await admin.query(
    `UPDATE lakets._rollup_registry SET rollup_table = format('%I.%I', $1::text, '_rollup_probe_hourly') WHERE name = 'probe_hourly'`,
    [SCHEMA],
  );
  // The ChronoTable and its partitions belong to an ordinary role, as in production.
  const { rows } = await admin.query<{ rel: string }>(
    `SELECT c.oid::regclass::text AS rel FROM pg_class c
      WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p')`,
    [pg.escapeIdentifier(SCHEMA)],
  );
  for (const { rel } of rows) await admin.query(`ALTER TABLE ${rel} OWNER TO ${owner}`);
  await callerRights(admin);
});

it('npm run grants from the database, then the check passes and every job ends ok as that role', async () => {
  const role = `quoted_${suffix}`;
  const password = randomBytes(12).toString('hex');
  await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD ${pg.escapeLiteral(password)}`);
  const applied = await applyGrants(admin, role);
  const sql = applied.plan.statements.map((s) => s.sql);
  expect(sql).toContain(`GRANT USAGE, CREATE ON SCHEMA "Sensor Data" TO "${role}";`);
  expect(sql).toContain(
    `GRANT SELECT, INSERT, UPDATE, DELETE ON "Sensor Data"._rollup_probe_hourly TO "${role}";`,
  );
  expect(applied.plan.manual).toEqual([]);

  const client = await db.connect({ user: role, password });
  try {
    const report = await preflight(client, JOB_LIST, { tlsRequired: false });
    const failed = report.items.filter((i) => i.status === 'fail');
    expect(failed, JSON.stringify(failed)).toEqual([]);
    expect(report.items.find((i) => i.check === `schema usage: ${SCHEMA}`)).toMatchObject({
      status: 'pass',
      detail: expect.stringMatching(
        /"Sensor Data".*ChronoTable "Sensor Data".probe, RollUp probe_hourly source, RollUp probe_hourly table/,
      ),
    });
    expect(report.items.find((i) => i.check === 'schema usage: lakets_cdf')).toMatchObject({
      status: 'pass',
    });
    // The schemas the check requires beyond the generic three are the ones the grants named.
    const checked = report.items
      .map((i) => /^schema usage: (.+)$/.exec(i.check)?.[1])
      .filter((n): n is string => n !== undefined && !['public', 'lakets', 'lakets_cdf'].includes(n));
    const granted = sql.flatMap(
      (q) => /^GRANT USAGE(?:, CREATE)? ON SCHEMA "((?:[^"]|"")+)" TO/.exec(q)?.[1] ?? [],
    );
    expect(checked).toEqual([SCHEMA]);
    expect(granted).toEqual([SCHEMA]);
    expect(report.items.find((i) => i.check.startsWith('shadow: '))).toMatchObject({ status: 'pass' });

    for (const job of JOB_LIST) {
      const run = await runJob(job, client, { dryRun: false, force: false, trigger: 'schedule' }, unlimited);
      expect(run.status, `${job.name}: ${JSON.stringify(run.items)}`).toBe('ok');
    }
  } finally {
    await client.end();
  }
  // The work really happened in that schema, as that role.
  const chunks = await admin.query<{ status: string; n: number }>(
    `SELECT m.status, count(*)::int AS n FROM lakets._chunk_metadata m
       JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
      WHERE r.schema_name = $1 GROUP BY 1 ORDER BY 1`,
    [SCHEMA],
  );
  expect(Object.fromEntries(chunks.rows.map((r) => [r.status, r.n]))).toMatchObject({
    dropped: expect.any(Number),
    tiered: expect.any(Number),
  });
});
