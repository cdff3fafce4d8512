// The job role holds exactly the documented grants (docs/lakets-contract.md, "The grants the original
// jobs document") plus read access to wal2delta, and does everything the four jobs do against tables
// and LakeTS owned by the superuser. EXECUTE is not granted to PUBLIC, yet plain writers still fire
// LakeTS triggers.
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { installWal2delta, syncCaughtUp } from '../../dev/fake-lakehouse-sync.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { expectError } from '../support/pg-assert.ts';
import { DAY_MS, serverNow } from '../support/time.ts';
import { chunks, lsnCompare, makeChronotable, relationExists } from './helpers.ts';

let db: TestDatabase;
let admin: pg.Client;
let now: number;
let job: string;

/** The seed's statements, verbatim but for the role name. */
function seedGrants(role: string): string {
  return `
    GRANT USAGE, CREATE ON SCHEMA public, lakets TO "${role}";
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, lakets TO "${role}";
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lakets TO "${role}";
    ALTER DEFAULT PRIVILEGES IN SCHEMA public, lakets
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "${role}";`;
}

function chunkOf(table: string, day: number): string {
  const d = new Date(now + day * DAY_MS).toISOString();
  return `public.${table}_${d.slice(0, 4)}${d.slice(5, 7)}${d.slice(8, 10)}_000000`;
}

beforeAll(async () => {
  db = await freshDatabase({ lakets: true });
  admin = await db.connect();
  now = await serverNow(admin);
  job = `lakets_job_${db.name}`;
  await installWal2delta(admin);
  // Superuser-owned ChronoTable, synced, with a tiered_retention policy: what the jobs maintain.
  await makeChronotable(admin, 'job_t', {
    interval: '1 day',
    rows: [-10, -8, -6].map((d) => new Date(now + d * DAY_MS)),
  });
  await admin.query(`SELECT lakets.add_tiered_retention_policy('job_t', '2 days', '5 days');
    SELECT lakets.enable_sync('job_t');`);
  await admin.query(`CREATE ROLE "${job}" LOGIN PASSWORD 'job-secret'`);
  await admin.query(seedGrants(job));
  await admin.query(
    `GRANT USAGE ON SCHEMA wal2delta TO "${job}"; GRANT SELECT ON wal2delta.tables TO "${job}";`,
  );
});

describe('the job role with the documented grants', () => {
  it('is not a superuser and owns nothing it works on', async () => {
    const { rows } = await admin.query(
      `SELECT r.rolsuper, (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'job_t'::regclass) AS table_owner,
              (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'lakets') AS lakets_owner
         FROM pg_roles r WHERE r.rolname = $1`,
      [job],
    );
    expect(rows).toEqual([{ rolsuper: false, table_owner: db.info.user, lakets_owner: db.info.user }]);
  });

  it('runs the Partition Manager, Tiering and Retention jobs end to end', async () => {
    const c = await db.connect({ user: job, password: 'job-secret' });
    expect((await c.query('SELECT current_user AS u')).rows[0].u).toBe(job);

    // Partition Manager: a future partition is missing; the job's call puts it back.
    const newest = (await chunks(admin, 'job_t')).at(-1)!;
    await admin.query(`DROP TABLE ${newest.chunk_name}`);
    await admin.query('DELETE FROM lakets._chunk_metadata WHERE id = $1', [newest.id]);
    const tables = await c.query(
      'SELECT id, schema_name, table_name FROM lakets._chronotable_registry ORDER BY id',
    );
    let created = 0;
    for (const t of tables.rows) {
      created += (await c.query('SELECT lakets._ensure_partitions(p_chronotable_id := $1) AS n', [t.id]))
        .rows[0].n;
    }
    expect(created).toBe(1);
    const remade = (await chunks(admin, 'job_t')).at(-1)!;
    expect(remade.chunk_name).toBe(newest.chunk_name);
    expect(remade.last_write_lsn).not.toBeNull();
    expect(await relationExists(admin, 'public', newest.chunk_name.slice('public.'.length))).toBe(true);
    // The job can write to the new partition directly (default privileges) and through the parent.
    await c.query(`INSERT INTO ${newest.chunk_name} (ts, v) VALUES ($1, 1)`, [newest.range_start]);
    await c.query('INSERT INTO job_t (ts, v) VALUES ($1, 2)', [newest.range_start]);
    expect((await c.query(`SELECT count(*)::int AS n FROM ${newest.chunk_name}`)).rows[0].n).toBe(2);

    // Tiering: candidates, then tier_chunk each, then the last_run_at stamp.
    await syncCaughtUp(admin, 'job_t');
    const candidates = await c.query("SELECT chunk_name FROM lakets._get_chunks_to_tier('job_t', 'public')");
    const expected = [-10, -9, -8, -7, -6].map((d) => chunkOf('job_t', d));
    expect(candidates.rows.map((r) => r.chunk_name)).toEqual(expected);
    for (const chunk of expected) {
      expect((await c.query('SELECT lakets.tier_chunk($1) AS ok', [chunk])).rows[0].ok, chunk).toBe(true);
    }
    const stamped = await c.query(
      `UPDATE lakets._policy_registry SET last_run_at = now()
        WHERE chronotable_id = (SELECT id FROM lakets._chronotable_registry WHERE table_name = 'job_t')
          AND policy_type IN ('tiering', 'tiered_retention')`,
    );
    expect(stamped.rowCount).toBe(1);

    // Retention: drops the proven expired chunks, i.e. DROP TABLE of superuser-owned partitions.
    expect((await c.query("SELECT lakets.execute_retention('job_t', 'public') AS n")).rows[0].n).toBe(5);
    for (const chunk of expected) {
      expect(await relationExists(admin, 'public', chunk.slice('public.'.length)), chunk).toBe(false);
    }
    expect(
      (await chunks(admin, 'job_t')).filter((m) => m.status === 'dropped').map((m) => m.chunk_name),
    ).toEqual(expected);
  });
});

describe('definer-rights helpers stay within LakeTS objects', () => {
  it('_apply_triggers (security definer) ignores relations that are not the ChronoTable or its partitions', async () => {
    await admin.query(`CREATE TABLE not_lakets (ts timestamptz, v int);
      CREATE TABLE untracked_t (ts timestamptz NOT NULL, v int);
      SELECT lakets.create_chronotable('untracked_t', 'ts', '1 day');`);
    const ids = await admin.query(
      "SELECT table_name, id FROM lakets._chronotable_registry WHERE table_name IN ('job_t', 'untracked_t')",
    );
    const id = Object.fromEntries(ids.rows.map((r) => [r.table_name, r.id]));
    const triggersOn = async (rel: string) =>
      (
        await admin.query(
          "SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname LIKE 'lakets\\_lsn\\_%'",
          [rel],
        )
      ).rows[0].n;
    expect(await triggersOn('job_t')).toBe(3);
    const c = await db.connect({ user: job, password: 'job-secret' });
    // Neither adding LakeTS triggers to a foreign table, nor stripping a synced table's tracking.
    await c.query("SELECT lakets._apply_triggers($1, ARRAY['not_lakets'::regclass])", [id['job_t']]);
    await c.query("SELECT lakets._apply_triggers($1, ARRAY['job_t'::regclass])", [id['untracked_t']]);
    expect(await triggersOn('not_lakets')).toBe(0);
    expect(await triggersOn('job_t')).toBe(3);
  });
});

describe('EXECUTE is not granted to PUBLIC', () => {
  it('a role without the EXECUTE grant cannot call any LakeTS function', async () => {
    const role = `lakets_noexec_${db.name}`;
    await admin.query(`CREATE ROLE "${role}" LOGIN PASSWORD 'noexec';
      GRANT USAGE ON SCHEMA lakets TO "${role}";
      GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA lakets TO "${role}";`);
    const { rows } = await admin.query(
      `SELECT p.oid::regprocedure::text AS fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'lakets' AND has_function_privilege($1, p.oid, 'EXECUTE') ORDER BY 1`,
      [role],
    );
    // The one deliberate exception: lakets.time_bucket (0002_rollups), a pure function for queries.
    const publicOnPurpose = ['lakets.time_bucket(interval,timestamp with time zone)'];
    expect(rows.map((r) => r.fn).filter((fn: string) => !publicOnPurpose.includes(fn))).toEqual([]);
    const c = await db.connect({ user: role, password: 'noexec' });
    for (const sql of [
      "SELECT lakets.tier_chunk('public.job_t_20000101_000000')",
      "SELECT lakets.execute_retention('job_t')",
      'SELECT lakets._ensure_partitions(1)',
      "SELECT * FROM lakets._get_chunks_to_tier('job_t')",
    ]) {
      const error = await expectError(() => c.query(sql), 'permission denied for function');
      expect(error.code).toBe('42501');
    }
  });

  it('a plain writer with only INSERT on the ChronoTable still inserts, stamping and mirroring', async () => {
    const role = `lakets_writer_${db.name}`;
    await admin.query(`CREATE ROLE "${role}" LOGIN PASSWORD 'writer'; GRANT INSERT ON job_t TO "${role}";`);
    const today = chunkOf('job_t', 0);
    const before = (await chunks(admin, 'job_t')).find((m) => m.chunk_name === today)!;
    const shadowBefore = (await admin.query('SELECT count(*)::int AS n FROM lakets_cdf._shadow_job_t'))
      .rows[0].n;
    const c = await db.connect({ user: role, password: 'writer' });
    await c.query('INSERT INTO job_t (ts, v) VALUES ($1, 42)', [new Date(now)]);
    const after = (await chunks(admin, 'job_t')).find((m) => m.chunk_name === today)!;
    expect(lsnCompare(after.last_write_lsn!, before.last_write_lsn!)).toBe(1);
    expect((await admin.query('SELECT count(*)::int AS n FROM lakets_cdf._shadow_job_t')).rows[0].n).toBe(
      shadowBefore + 1,
    );
    await expectError(() => c.query('SELECT count(*) FROM job_t'), 'permission denied');
  });
});
