// The four jobs' logic (lib/jobs) on the real PostgreSQL 17 with the LakeTS-compatible schema:
// effects, idempotence, isolation of failures, the job lock, the time budget and dry runs.
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { installWal2delta, setSync, syncCaughtUp } from '../../dev/fake-lakehouse-sync.ts';
import { timeBudget, unlimited } from '../../lib/jobs/budget.ts';
import { JOBS } from '../../lib/jobs/catalog.ts';
import { PayloadError } from '../../lib/jobs/payload.ts';
import { runJob } from '../../lib/jobs/runner.ts';
import type { JobOptions, JobReport } from '../../lib/jobs/types.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import {
  chunkStatuses,
  lateWrite,
  metricsTable,
  quote,
  stateFingerprint,
} from '../support/lakets-fixtures.ts';

const scheduled: JobOptions = { dryRun: false, force: false, trigger: 'schedule' };
const manual = (o: Partial<JobOptions>): JobOptions => ({ ...scheduled, trigger: 'manual', ...o });

let db: TestDatabase;
let admin: pg.Client;

beforeAll(async () => {
  db = await freshDatabase({ lakets: true });
  admin = await db.connect();
  await installWal2delta(admin);
});

function outcomes(report: JobReport, kind: string): Record<string, string> {
  return Object.fromEntries(report.items.filter((i) => i.kind === kind).map((i) => [i.name, i.outcome]));
}

describe('Partition Manager', () => {
  it('creates the missing partitions of every ChronoTable, then nothing on a second run', async () => {
    const a = await metricsTable(admin, 'pm_a', 2);
    const b = await metricsTable(admin, 'pm_b', 2);
    // Remove the two newest future partitions of each table, as if time had passed.
    for (const t of [a, b]) {
      const { rows } = await admin.query<{ chunk_name: string }>(
        `SELECT chunk_name FROM lakets._chunk_metadata WHERE chronotable_id = $1 ORDER BY range_start DESC LIMIT 2`,
        [t.id],
      );
      for (const r of rows) {
        await admin.query(`DROP TABLE public.${quote(r.chunk_name.slice('public.'.length))}`);
        await admin.query(`DELETE FROM lakets._chunk_metadata WHERE chunk_name = $1`, [r.chunk_name]);
      }
    }
    const dry = await runJob(
      JOBS['partition-manager'],
      admin,
      manual({ dryRun: true, tables: [{ schema: 'public', table: 'pm_a' }] }),
      unlimited,
    );
    expect(dry.status).toBe('dry-run');
    expect(dry.items).toEqual([
      expect.objectContaining({ name: 'public.pm_a', outcome: 'would-create', count: 2 }),
    ]);

    const before = await stateFingerprint(admin);
    const first = await runJob(JOBS['partition-manager'], admin, scheduled, unlimited);
    expect(first.status).toBe('ok');
    expect(first.trigger).toBe('schedule');
    expect(outcomes(first, 'table')).toMatchObject({ 'public.pm_a': 'created', 'public.pm_b': 'created' });
    expect(first.items.find((i) => i.name === 'public.pm_a')?.count).toBe(2);
    expect(first.totals['partitionsCreated']).toBeGreaterThanOrEqual(4);
    expect(await stateFingerprint(admin)).not.toBe(before);

    const settled = await stateFingerprint(admin);
    const second = await runJob(JOBS['partition-manager'], admin, scheduled, unlimited);
    expect(second.status).toBe('ok');
    expect(second.totals['partitionsCreated']).toBe(0);
    expect(second.items.every((i) => i.outcome === 'unchanged')).toBe(true);
    expect(await stateFingerprint(admin)).toBe(settled);
  });

  it('finishes every other table when one fails, then reports the run as partial', async () => {
    await metricsTable(admin, 'pm_ok', 1);
    const broken = await metricsTable(admin, 'pm_broken', 1);
    // The registry still names it, but the table is gone: _ensure_partitions raises for it.
    await admin.query(`ALTER TABLE public.pm_broken RENAME TO pm_broken_away`);
    await admin.query(
      `DELETE FROM lakets._chunk_metadata WHERE chronotable_id = $1 AND range_start > now() + interval '1 day'`,
      [broken.id],
    );
    await admin.query(
      `DELETE FROM lakets._chunk_metadata WHERE chronotable_id = (SELECT id FROM lakets._chronotable_registry WHERE table_name = 'pm_ok') AND range_start > now() + interval '1 day'`,
    );
    const report = await runJob(JOBS['partition-manager'], admin, scheduled, unlimited);
    expect(report.status).toBe('partial');
    const failed = report.items.find((i) => i.name === 'public.pm_broken');
    expect(failed?.outcome).toBe('failed');
    expect(failed?.reason).toMatch(/registered but the table is missing.*SQLSTATE 42P01/);
    expect(report.items.find((i) => i.name === 'public.pm_ok')?.outcome).toBe('created');
    await admin.query(`ALTER TABLE public.pm_broken_away RENAME TO pm_broken`);
  });

  it('rejects a table that is not a ChronoTable, changing nothing', async () => {
    const before = await stateFingerprint(admin);
    await expect(
      runJob(
        JOBS['partition-manager'],
        admin,
        manual({ tables: [{ schema: 'public', table: 'nope' }] }),
        unlimited,
      ),
    ).rejects.toThrow(
      new PayloadError(
        'public.nope is not a ChronoTable in this database (see lakets._chronotable_registry)',
      ),
    );
    expect(await stateFingerprint(admin)).toBe(before);
  });
});

describe('Tiering and Retention', () => {
  it('tiers proven chunks, defers unproven ones with LakeTS reasons, and stamps both tiering kinds', async () => {
    await metricsTable(admin, 'tr_main', 12);
    await admin.query(
      `SELECT lakets.add_tiered_retention_policy('tr_main', interval '3 days', interval '8 days')`,
    );
    await admin.query(`SELECT lakets.add_tiering_policy('tr_main', interval '4 days')`);
    await admin.query(`SELECT lakets.enable_sync('tr_main')`);
    await syncCaughtUp(admin, 'tr_main');
    const late = await lateWrite(admin, 'tr_main', 6);

    const only = manual({ tables: [{ schema: 'public', table: 'tr_main' }] });
    const dry = await runJob(JOBS.tiering, admin, { ...only, dryRun: true }, unlimited);
    const before = await stateFingerprint(admin);
    const report = await runJob(JOBS.tiering, admin, only, unlimited);
    expect(report.status).toBe('ok');
    const chunks = outcomes(report, 'chunk');
    expect(chunks[late]).toBe('deferred');
    expect(report.items.find((i) => i.name === late)?.reason).toMatch(
      /committed_lsn .* is behind the chunk's last_write_lsn/,
    );
    // The longest tiering interval wins (4 days): chunks older than that, the late one excepted, are tiered.
    expect(Object.values(chunks).filter((o) => o === 'tiered').length).toBe(report.totals['chunksTiered']);
    expect(report.totals['chunksTiered']).toBeGreaterThanOrEqual(7);
    expect(report.totals['chunksDeferred']).toBe(1);
    // The dry run predicted exactly this.
    expect(outcomes(dry, 'chunk')).toEqual(
      Object.fromEntries(Object.entries(chunks).map(([k, v]) => [k, v === 'tiered' ? 'would-tier' : v])),
    );
    expect(await stateFingerprint(admin)).not.toBe(before);
    const stamps = await admin.query(
      `SELECT policy_type, last_run_at IS NOT NULL AS stamped FROM lakets._policy_registry p
         JOIN lakets._chronotable_registry r ON r.id = p.chronotable_id WHERE r.table_name = 'tr_main' ORDER BY 1`,
    );
    expect(stamps.rows).toEqual([
      { policy_type: 'tiered_retention', stamped: true },
      { policy_type: 'tiering', stamped: true },
    ]);
    // Nothing was dropped by tiering.
    const statuses = Object.values(await chunkStatuses(admin, 'tr_main'));
    expect(statuses).not.toContain('dropped');

    // Retention: the late chunk (6 days old) is not past drop_after; move the gate's view with a later write
    // into an old tiered chunk, which must then be deferred until Sync catches up.
    const lateOld = await lateWrite(admin, 'tr_main', 10);
    const ret = await runJob(JOBS.retention, admin, only, unlimited);
    expect(ret.status).toBe('ok');
    const retChunks = outcomes(ret, 'chunk');
    expect(retChunks[lateOld]).toBe('deferred');
    expect(ret.items.find((i) => i.name === lateOld)?.reason).toMatch(/behind the chunk's last_write_lsn/);
    expect(Object.values(retChunks).filter((o) => o === 'dropped').length).toBe(ret.totals['chunksDropped']);
    expect(ret.totals['chunksDropped']).toBeGreaterThanOrEqual(2);
    expect((await chunkStatuses(admin, 'tr_main'))[lateOld]).not.toBe('dropped');
    const rowsLeft = await admin.query(
      `SELECT count(*)::int AS n FROM public.tr_main WHERE ts >= date_trunc('day', now()) - interval '10 days' AND ts < date_trunc('day', now()) - interval '9 days'`,
    );
    expect(rowsLeft.rows[0].n).toBeGreaterThan(0);

    // Once Sync catches up, the next run drops it, and a further run changes nothing.
    await syncCaughtUp(admin, 'tr_main');
    const caughtUp = await runJob(JOBS.retention, admin, only, unlimited);
    expect(outcomes(caughtUp, 'chunk')[lateOld]).toBe('dropped');
    const settled = await stateFingerprint(admin, { ignoreRunStamps: true });
    const again = await runJob(JOBS.retention, admin, only, unlimited);
    expect(again.totals['chunksDropped']).toBe(0);
    expect(await stateFingerprint(admin, { ignoreRunStamps: true })).toBe(settled);
  });

  it('runs retention once per table even with two retention-kind policies', async () => {
    await metricsTable(admin, 'tr_twice', 6);
    await admin.query(`SELECT lakets.add_retention_policy('tr_twice', interval '2 days')`);
    await admin.query(
      `SELECT lakets.add_tiered_retention_policy('tr_twice', interval '1 day', interval '3 days')`,
    );
    await admin.query(`SELECT lakets.enable_sync('tr_twice')`);
    await syncCaughtUp(admin, 'tr_twice');
    const report = await runJob(
      JOBS.retention,
      admin,
      manual({ tables: [{ schema: 'public', table: 'tr_twice' }] }),
      unlimited,
    );
    expect(report.items.filter((i) => i.kind === 'table')).toHaveLength(1);
    // The longer drop_after (3 days) applies: the chunk from 2-3 days ago stays.
    const statuses = await chunkStatuses(admin, 'tr_twice');
    const dropped = Object.entries(statuses)
      .filter(([, s]) => s === 'dropped')
      .map(([n]) => n);
    expect(dropped.length).toBe(report.totals['chunksDropped']);
    expect(dropped.length).toBeGreaterThanOrEqual(2);
    const { rows } = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM public.tr_twice WHERE ts >= now() - interval '3 days'`,
    );
    expect(rows[0]?.n).toBeGreaterThan(0);
  });

  it('forces only the named tables, from a manual payload', async () => {
    await metricsTable(admin, 'tr_force', 6);
    await admin.query(
      `SELECT lakets.add_tiered_retention_policy('tr_force', interval '1 day', interval '3 days')`,
    );
    await admin.query(`SELECT lakets.enable_sync('tr_force')`);
    await setSync(admin, 'tr_force', 'SNAPSHOTTING', 'current');
    const gated = await runJob(
      JOBS.retention,
      admin,
      manual({ tables: [{ schema: 'public', table: 'tr_force' }] }),
      unlimited,
    );
    expect(gated.totals['chunksDropped']).toBe(0);
    expect(gated.totals['chunksDeferred']).toBeGreaterThanOrEqual(2);
    expect(gated.items.find((i) => i.outcome === 'deferred')?.reason).toMatch(/SNAPSHOTTING, not STREAMING/);
    const forced = await runJob(
      JOBS.retention,
      admin,
      manual({ tables: [{ schema: 'public', table: 'tr_force' }], force: true }),
      unlimited,
    );
    expect(forced.totals['chunksDropped']).toBe(gated.totals['chunksDeferred']);
    expect(forced.items[0]?.reason).toMatch(/forced/);
  });
});

describe('RollUp Refresh', () => {
  beforeAll(async () => {
    await metricsTable(admin, 'ru_src', 3);
    const create = (
      name: string,
      query: string,
      interval: string,
      deps: string[] = [],
      source: string | null = null,
    ) =>
      admin.query(`SELECT lakets.create_rollup($1, $2, $3::interval, $4, 'public', $5)`, [
        name,
        query,
        interval,
        source,
        deps,
      ]);
    await create(
      'ru_h',
      `SELECT lakets.time_bucket('1 hour', ts) AS bucket, device, sum(value) AS v, count(*) AS n FROM ru_src GROUP BY 1, 2`,
      '1 hour',
      [],
      'ru_src',
    );
    await create(
      'ru_d',
      `SELECT lakets.time_bucket('1 day', bucket) AS bucket, device, sum(v) AS v, sum(n) AS n FROM _rollup_ru_h GROUP BY 1, 2`,
      '1 day',
      ['ru_h'],
    );
    await create(
      'ru_all',
      `SELECT lakets.time_bucket('1 day', bucket) AS bucket, sum(v) AS v FROM _rollup_ru_d GROUP BY 1`,
      '1 day',
      ['ru_d'],
    );
    await create(
      'ru_other',
      `SELECT lakets.time_bucket('1 hour', ts) AS bucket, count(*) AS n FROM ru_src GROUP BY 1`,
      '1 hour',
      [],
      'ru_src',
    );
    await admin.query(`UPDATE lakets._rollup_registry SET refresh_lag = interval '0'`);
  });

  it('refreshes in dependency order, and skips a RollUp whose refresh_lag has not passed', async () => {
    await admin.query(`INSERT INTO ru_src VALUES (now(), 'd9', 5)`);
    const report = await runJob(JOBS['rollup-refresh'], admin, scheduled, unlimited);
    expect(report.status).toBe('ok');
    const names = report.items.map((i) => i.name);
    expect(names.indexOf('ru_h')).toBeLessThan(names.indexOf('ru_d'));
    expect(names.indexOf('ru_d')).toBeLessThan(names.indexOf('ru_all'));
    expect(report.totals['rollupsRefreshed']).toBe(4);
    const total = await admin.query(
      `SELECT (SELECT sum(v) FROM _rollup_ru_all) = (SELECT sum(value) FROM ru_src) AS same`,
    );
    expect(total.rows[0].same).toBe(true);

    await admin.query(
      `UPDATE lakets._rollup_registry SET refresh_lag = interval '1 hour' WHERE name = 'ru_other'`,
    );
    const lagged = await runJob(JOBS['rollup-refresh'], admin, scheduled, unlimited);
    const other = lagged.items.find((i) => i.name === 'ru_other');
    expect(other?.outcome).toBe('skipped');
    expect(other?.reason).toMatch(/^refresh_lag 01:00:00 has not passed since its last refresh at /);
    await admin.query(`UPDATE lakets._rollup_registry SET refresh_lag = interval '0'`);
  });

  it('isolates a failing RollUp: its dependents are skipped and named, the others refresh', async () => {
    // Existing rows stay valid; every row a refresh inserts violates it.
    await admin.query(`ALTER TABLE public._rollup_ru_d ADD CONSTRAINT broken CHECK (v < 0) NOT VALID`);
    await admin.query(`INSERT INTO ru_src VALUES (now(), 'd8', 7)`);
    const report = await runJob(JOBS['rollup-refresh'], admin, scheduled, unlimited);
    expect(report.status).toBe('partial');
    expect(outcomes(report, 'rollup')).toEqual({
      ru_h: 'refreshed',
      ru_other: 'refreshed',
      ru_d: 'failed',
      ru_all: 'skipped',
    });
    expect(report.items.find((i) => i.name === 'ru_all')?.reason).toBe(
      'depends on ru_d, which failed (or depends on a failure)',
    );
    // ru_h's refresh was kept although ru_d failed after it.
    const h = await admin.query(`SELECT sum(v) = (SELECT sum(value) FROM ru_src) AS same FROM _rollup_ru_h`);
    expect(h.rows[0].same).toBe(true);
    await admin.query(`ALTER TABLE public._rollup_ru_d DROP CONSTRAINT broken`);
    const healed = await runJob(JOBS['rollup-refresh'], admin, scheduled, unlimited);
    expect(healed.status).toBe('ok');
  });

  it('cascades from one RollUp: it and what it depends on', async () => {
    const report = await runJob(JOBS['rollup-refresh'], admin, manual({ rollup: 'ru_d' }), unlimited);
    expect(report.items.map((i) => i.name)).toEqual(['ru_h', 'ru_d']);
    await expect(
      runJob(JOBS['rollup-refresh'], admin, manual({ rollup: 'nope' }), unlimited),
    ).rejects.toThrow(PayloadError);
  });

  it('reports a cycle without refreshing what is in or behind it', async () => {
    await admin.query(
      `UPDATE lakets._rollup_registry SET depends_on = ARRAY[(SELECT id FROM lakets._rollup_registry WHERE name = 'ru_all')] WHERE name = 'ru_h'`,
    );
    try {
      const report = await runJob(JOBS['rollup-refresh'], admin, scheduled, unlimited);
      expect(report.status).toBe('partial');
      const byName = outcomes(report, 'rollup');
      expect(byName).toMatchObject({
        ru_h: 'failed',
        ru_d: 'failed',
        ru_all: 'failed',
        ru_other: 'refreshed',
      });
      expect(report.items.find((i) => i.name === 'ru_h')?.reason).toMatch(
        /^Circular dependency detected in RollUp DAG/,
      );
    } finally {
      await admin.query(`UPDATE lakets._rollup_registry SET depends_on = '{}' WHERE name = 'ru_h'`);
    }
  });

  it('changes nothing in a dry run', async () => {
    await admin.query(`INSERT INTO ru_src VALUES (now(), 'd7', 1)`);
    const before = await stateFingerprint(admin);
    const report = await runJob(JOBS['rollup-refresh'], admin, manual({ dryRun: true }), unlimited);
    expect(report.status).toBe('dry-run');
    expect(report.items.every((i) => i.outcome === 'would-refresh')).toBe(true);
    expect(await stateFingerprint(admin)).toBe(before);
  });
});

describe('runs at once and against the clock', () => {
  it('skips a second concurrent run of the same job, which changes nothing', async () => {
    const other = await db.connect();
    await other.query('SELECT pg_advisory_lock(74170100, 3)');
    const before = await stateFingerprint(admin);
    const report = await runJob(JOBS.retention, admin, scheduled, unlimited);
    expect(report.status).toBe('skipped');
    expect(report.reason).toMatch(/another retention run holds this database's job lock/);
    expect(report.items).toEqual([]);
    expect(await stateFingerprint(admin)).toBe(before);
    await other.query('SELECT pg_advisory_unlock(74170100, 3)');
    // A different job is not blocked by it.
    const tiering = await runJob(JOBS.tiering, admin, scheduled, unlimited);
    expect(tiering.status).not.toBe('skipped');
  });

  it('lets two real runs race: one does the work, the other skips or finds nothing to do', async () => {
    for (const n of [1, 2, 3]) await metricsTable(admin, `race_${n}`, 1);
    await admin.query(`DELETE FROM lakets._chunk_metadata WHERE range_start > now() + interval '2 days'`);
    const [c1, c2] = [await db.connect(), await db.connect()];
    const [r1, r2] = await Promise.all([
      runJob(JOBS['partition-manager'], c1, scheduled, unlimited),
      runJob(JOBS['partition-manager'], c2, scheduled, unlimited),
    ]);
    for (const r of [r1, r2]) expect(['ok', 'skipped']).toContain(r.status);
    // Either they did not overlap (the second found nothing left) or one skipped; no error in any case.
    const created = (r1.totals['partitionsCreated'] ?? 0) + (r2.totals['partitionsCreated'] ?? 0);
    expect(created).toBeGreaterThan(0);
  });

  it('starts no item once the budget is spent, and says what was left', async () => {
    await admin.query(`DELETE FROM lakets._chunk_metadata WHERE range_start > now() + interval '2 days'`);
    let remaining = 16_000;
    // 16 s left at first and a 14 s reserve; each look at the clock costs a second of the deadline.
    const budget = timeBudget(() => (remaining -= 1_000), 14_000);
    const report = await runJob(JOBS['partition-manager'], admin, scheduled, budget);
    expect(report.status).toBe('incomplete');
    const started = report.items.filter((i) => i.outcome !== 'not-started');
    expect(started).toHaveLength(1);
    expect(report.leftForNextRun).toEqual(
      report.items.filter((i) => i.outcome === 'not-started').map((i) => i.name),
    );
    expect(report.leftForNextRun?.length).toBeGreaterThan(0);
    expect(report.totals['notStarted']).toBe(report.leftForNextRun?.length);
    // The next run picks up what was left.
    const next = await runJob(JOBS['partition-manager'], admin, scheduled, unlimited);
    const created = next.items.filter((i) => i.outcome === 'created').map((i) => i.name);
    expect(created.length).toBeGreaterThan(0);
    for (const name of created) expect(report.leftForNextRun).toContain(name);

    const before = await stateFingerprint(admin);
    const none = await runJob(
      JOBS.retention,
      admin,
      scheduled,
      timeBudget(() => 1_000),
    );
    expect(none.status).toBe('incomplete');
    expect(none.items.length).toBeGreaterThan(0);
    expect(none.items.every((i) => i.outcome === 'not-started')).toBe(true);
    expect(await stateFingerprint(admin)).toBe(before);
  });
});

describe('a statement that hangs', () => {
  it('is cancelled before the invocation ends: the item fails, the report exists, the session timeout comes back', async () => {
    await metricsTable(admin, 'hang_pm', 2);
    await admin.query(
      `DELETE FROM lakets._chunk_metadata m USING lakets._chronotable_registry r
        WHERE r.id = m.chronotable_id AND r.table_name = 'hang_pm' AND m.range_start > now() + interval '1 day'`,
    );
    for (const { relname } of (
      await admin.query<{ relname: string }>(
        `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'public.hang_pm'::regclass AND NOT EXISTS (
            SELECT FROM lakets._chunk_metadata m WHERE m.chunk_name = 'public.' || c.relname)`,
      )
    ).rows) {
      await admin.query(`DROP TABLE public.${quote(relname)}`);
    }
    // Another session holds the table: Partition Manager's DDL waits on it (no lock_timeout here).
    const holder = await db.connect();
    await holder.query('BEGIN; LOCK TABLE public.hang_pm IN ACCESS EXCLUSIVE MODE');
    const before = (await admin.query<{ t: string }>('SHOW statement_timeout')).rows[0]?.t;
    // 21 s left, 15 s of them the reserve: the statement may run about 5 s, not forever.
    const deadline = Date.now() + 21_000;
    const started = Date.now();
    try {
      const report = await runJob(
        JOBS['partition-manager'],
        admin,
        manual({ tables: [{ schema: 'public', table: 'hang_pm' }] }),
        timeBudget(() => deadline - Date.now()),
      );
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(report.status).toBe('failed');
      expect(report.items).toEqual([
        expect.objectContaining({
          name: 'public.hang_pm',
          outcome: 'failed',
          reason: expect.stringMatching(/statement timeout/),
        }),
      ]);
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    expect((await admin.query<{ t: string }>('SHOW statement_timeout')).rows[0]?.t).toBe(before);
    const again = await runJob(
      JOBS['partition-manager'],
      admin,
      manual({ tables: [{ schema: 'public', table: 'hang_pm' }] }),
      unlimited,
    );
    expect(again.status).toBe('ok');
    expect(again.totals['partitionsCreated']).toBeGreaterThan(0);
  });
});

describe('a missing privilege', () => {
  it("fails the item with Postgres's message, the role and the grants command (42501)", async () => {
    await metricsTable(admin, 'priv_pm', 2);
    const role = `priv_job_${db.name}`;
    // Everything Partition Manager reads, but no EXECUTE on the function it calls.
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'job-secret';
      GRANT USAGE ON SCHEMA lakets TO ${role};
      GRANT SELECT ON ALL TABLES IN SCHEMA lakets TO ${role};
      REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA lakets FROM PUBLIC;`);
    const job = await db.connect({ user: role, password: 'job-secret' });
    try {
      const report = await runJob(
        JOBS['partition-manager'],
        job,
        manual({ tables: [{ schema: 'public', table: 'priv_pm' }] }),
        unlimited,
      );
      expect(report.status).toBe('failed');
      expect(report.items).toHaveLength(1);
      const reason = report.items[0]?.reason ?? '';
      expect(reason).toContain('permission denied for function _ensure_partitions (SQLSTATE 42501)');
      expect(reason).toContain(`role "${role}" lacks a privilege`);
      expect(reason).toContain(`npm run grants -- ${role}`);
      expect(reason).not.toContain('\n');
    } finally {
      await job.end(); // the database is this file's own: the REVOKE needs no undoing
    }
  });
});
