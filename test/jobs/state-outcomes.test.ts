// Tiering, Retention and RollUp Refresh decide each item's outcome from state (registries and
// Lakehouse Sync's wal2delta.tables, read before and after each call), never from LakeTS's wording:
// the same outcomes, reasons, totals and metrics against the compatible schema and against one
// that speaks like the public LakeTS 0.1.3. LakeTS's own text is kept, verbatim, as evidence.
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { installWal2delta, setSync, syncCaughtUp } from '../../dev/fake-lakehouse-sync.ts';
import { unlimited } from '../../lib/jobs/budget.ts';
import { JOBS } from '../../lib/jobs/catalog.ts';
import { runJob } from '../../lib/jobs/runner.ts';
import type { ItemResult, JobOptions, JobReport } from '../../lib/jobs/types.ts';
import { reportMetrics } from '../../lib/observability.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { chunkStatuses, lateWrite, metricsTable, quote } from '../support/lakets-fixtures.ts';
import { applyPublicBehaviour, BEHAVIOURS, type PublicBehaviour } from '../support/public-lakets.ts';

const forTable = (table: string, o: Partial<JobOptions> = {}): JobOptions => ({
  dryRun: false,
  force: false,
  trigger: 'manual',
  tables: [{ schema: 'public', table }],
  ...o,
});
const forRollup = (rollup: string, o: Partial<JobOptions> = {}): JobOptions => ({
  dryRun: false,
  force: false,
  trigger: 'manual',
  rollup,
  ...o,
});

function item(report: JobReport, name: string): ItemResult {
  const found = report.items.find((i) => i.name === name);
  if (!found) throw new Error(`no item ${name} in ${JSON.stringify(report.items)}`);
  return found;
}

/** An exact text, or one matching a pattern. */
function text(expected: string | RegExp): unknown {
  return typeof expected === 'string' ? expected : expect.stringMatching(expected);
}

/** What each LakeTS says (evidence only: the jobs must not depend on it). */
function wording(b: PublicBehaviour) {
  const behind = (committed: string, lastWrite: string) =>
    `committed_lsn ${committed} is behind the chunk's last_write_lsn ${lastWrite} (Lakehouse Sync has not caught up)`;
  return b.wording
    ? {
        tierDeferred: (chunk: string, committed: string, lastWrite: string) =>
          `tier_chunk: ${chunk} deferred — CDF has not flushed the chunk yet (committed=${committed}, chunk_last_write=${lastWrite})`,
        retentionDeferred: (chunk: string) =>
          `execute_retention: ${chunk} deferred — not yet durable in UC (pass p_force => TRUE to drop anyway)`,
        dropFailed: (chunk: string) =>
          new RegExp(`^WARNING: Failed to drop chunk ${chunk}: cannot drop table`),
        lagSkip: (): string[] | undefined => undefined,
        busy: (name: string) =>
          `refresh_rollup: ${name} is already being refreshed by another session, skipping`,
      }
    : {
        tierDeferred: (chunk: string, committed: string, lastWrite: string) =>
          `lakets: tiering deferred chunk ${chunk}: ${behind(committed, lastWrite)}`,
        retentionDeferred: (chunk: string) => new RegExp(`^lakets: retention deferred chunk ${chunk}: `),
        dropFailed: (chunk: string) =>
          new RegExp(`^WARNING: lakets: retention could not drop chunk ${chunk}: cannot drop table`),
        lagSkip: (): string[] | undefined => [
          expect.stringMatching(/^lakets: RollUp st_ru skipped: /) as never,
        ],
        busy: (name: string) => `lakets: RollUp ${name} skipped: another session is refreshing it`,
      };
}

describe.each(BEHAVIOURS)('against $name', ({ behaviour }) => {
  let db: TestDatabase;
  let admin: pg.Client;
  const says = wording(behaviour);

  beforeAll(async () => {
    db = await freshDatabase({ lakets: true });
    admin = await db.connect();
    await installWal2delta(admin);
    await applyPublicBehaviour(admin, behaviour);
  });

  async function committedLsn(table: string): Promise<string> {
    const { rows } = await admin.query<{ lsn: string }>(
      `SELECT w.committed_lsn::text AS lsn FROM wal2delta.tables w
        WHERE w.table_oid = (SELECT format('lakets_cdf.%I', shadow_table_name)::regclass
                               FROM lakets._chronotable_registry WHERE table_name = $1)`,
      [table],
    );
    return rows[0]?.lsn as string;
  }
  async function lastWriteLsn(chunk: string): Promise<string> {
    const { rows } = await admin.query<{ lsn: string }>(
      'SELECT last_write_lsn::text AS lsn FROM lakets._chunk_metadata WHERE chunk_name = $1',
      [chunk],
    );
    return rows[0]?.lsn as string;
  }
  async function countWithStatus(table: string, status: string): Promise<number> {
    return Object.values(await chunkStatuses(admin, table)).filter((s) => s === status).length;
  }
  async function syncedTable(name: string, days: number, tierAfter: string, dropAfter: string) {
    await metricsTable(admin, name, days);
    await admin.query(`SELECT lakets.add_tiered_retention_policy($1, $2::interval, $3::interval)`, [
      name,
      tierAfter,
      dropAfter,
    ]);
    await admin.query(`SELECT lakets.enable_sync($1)`, [name]);
    await syncCaughtUp(admin, name);
  }

  it('Tiering: a chunk Sync has not caught up with is deferred, its reason computed from the LSNs', async () => {
    await syncedTable('st_tier', 12, '3 days', '20 days');
    const late = await lateWrite(admin, 'st_tier', 6);
    const [committed, lastWrite] = [await committedLsn('st_tier'), await lastWriteLsn(late)];

    const dry = await runJob(JOBS.tiering, admin, forTable('st_tier', { dryRun: true }), unlimited);
    const report = await runJob(JOBS.tiering, admin, forTable('st_tier'), unlimited);
    expect(report.status).toBe('ok');
    const deferred = item(report, late);
    expect(deferred).toMatchObject({
      outcome: 'deferred',
      reason: `committed_lsn ${committed} is behind the chunk's last_write_lsn ${lastWrite} (Lakehouse Sync has not caught up)`,
      notices: [says.tierDeferred(late, committed, lastWrite)],
    });
    expect(item(dry, late)).toMatchObject({ outcome: 'deferred', reason: deferred.reason });
    const tiered = await countWithStatus('st_tier', 'tiered');
    expect(tiered).toBeGreaterThanOrEqual(7);
    expect(report.totals).toMatchObject({ chunksTiered: tiered, chunksDeferred: 1, syncStateUnreadable: 0 });
    expect(reportMetrics(JOBS[report.job], report)).toMatchObject({
      ChunksTiered: tiered,
      ChunksTieringDeferred: 1,
      SyncStateUnreadable: 0,
    });
  });

  it('Retention: an expired chunk left in place for want of proof is deferred, counted and measured', async () => {
    await syncedTable('st_ret', 12, '3 days', '8 days');
    const late = await lateWrite(admin, 'st_ret', 10);
    const [committed, lastWrite] = [await committedLsn('st_ret'), await lastWriteLsn(late)];

    const dry = await runJob(JOBS.retention, admin, forTable('st_ret', { dryRun: true }), unlimited);
    const report = await runJob(JOBS.retention, admin, forTable('st_ret'), unlimited);
    expect(report.status).toBe('ok');
    expect((await chunkStatuses(admin, 'st_ret'))[late]).toBe('active');
    const deferred = item(report, late);
    expect(deferred).toMatchObject({
      outcome: 'deferred',
      reason: `committed_lsn ${committed} is behind the chunk's last_write_lsn ${lastWrite} (Lakehouse Sync has not caught up)`,
      notices: [text(says.retentionDeferred(late))],
    });
    expect(item(dry, late)).toMatchObject({ outcome: 'deferred', reason: deferred.reason });
    const dropped = await countWithStatus('st_ret', 'dropped');
    expect(dropped).toBeGreaterThanOrEqual(2);
    expect(item(report, 'public.st_ret')).toMatchObject({ outcome: 'dropped', count: dropped });
    expect(report.totals).toMatchObject({
      chunksDropped: dropped,
      chunksDeferred: 1,
      syncStateUnreadable: 0,
    });
    // What the retention-deferrals-persist alarm reads.
    expect(reportMetrics(JOBS[report.job], report)).toMatchObject({
      ChunksDropped: dropped,
      ChunksRetentionDeferred: 1,
      SyncStateUnreadable: 0,
    });

    // Once Sync catches up, the next run drops it.
    await syncCaughtUp(admin, 'st_ret');
    const next = await runJob(JOBS.retention, admin, forTable('st_ret'), unlimited);
    expect(item(next, late).outcome).toBe('dropped');
    expect(next.totals).toMatchObject({ chunksDropped: 1, chunksDeferred: 0 });
  });

  it('a shadow that is not STREAMING: every expired chunk deferred, and Tiering says why it found nothing', async () => {
    await syncedTable('st_snap', 8, '2 days', '4 days');
    await setSync(admin, 'st_snap', 'SNAPSHOTTING', 'current');
    const why = 'shadow lakets_cdf._shadow_st_snap is SNAPSHOTTING, not STREAMING';
    const expired = (
      await admin.query<{ chunk_name: string }>(
        `SELECT chunk_name FROM lakets._chunk_metadata m JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
          WHERE r.table_name = 'st_snap' AND m.range_end <= now() - interval '4 days' ORDER BY m.range_start`,
      )
    ).rows.map((r) => r.chunk_name);
    expect(expired.length).toBeGreaterThanOrEqual(3);

    const report = await runJob(JOBS.retention, admin, forTable('st_snap'), unlimited);
    expect(report.status).toBe('ok');
    expect(report.items.filter((i) => i.kind === 'chunk')).toEqual(
      expired.map((name) => ({
        kind: 'chunk',
        name,
        outcome: 'deferred',
        reason: why,
        notices: [text(says.retentionDeferred(name))],
      })),
    );
    expect(report.totals).toMatchObject({ chunksDropped: 0, chunksDeferred: expired.length });
    expect(reportMetrics(JOBS[report.job], report)).toMatchObject({
      ChunksRetentionDeferred: expired.length,
    });

    const tiering = await runJob(JOBS.tiering, admin, forTable('st_snap'), unlimited);
    expect(tiering.items).toEqual([
      expect.objectContaining({
        kind: 'table',
        name: 'public.st_snap',
        outcome: 'unchanged',
        reason: `${why}: nothing can be proven durable (fail-closed)`,
      }),
    ]);
    expect(tiering.status).toBe('ok');
  });

  it('Retention: a drop that fails is a failed item, with LakeTS WARNING kept verbatim', async () => {
    await metricsTable(admin, 'st_fail', 6);
    await admin.query(`SELECT lakets.add_retention_policy('st_fail', interval '3 days')`);
    const { rows } = await admin.query<{ chunk_name: string }>(
      `SELECT chunk_name FROM lakets._chunk_metadata m JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
        WHERE r.table_name = 'st_fail' AND m.range_end <= now() - interval '3 days' ORDER BY m.range_start LIMIT 1`,
    );
    const stuck = rows[0]?.chunk_name as string;
    // A view on the partition: DROP TABLE fails (2BP01), execute_retention goes on with the others.
    await admin.query(
      `CREATE VIEW st_fail_view AS SELECT * FROM public.${quote(stuck.slice('public.'.length))}`,
    );
    const report = await runJob(JOBS.retention, admin, forTable('st_fail'), unlimited);
    expect(report.status).toBe('partial');
    const failed = item(report, stuck);
    expect(failed.outcome).toBe('failed');
    expect(failed.reason).toMatch(
      /^execute_retention left it in place although it is past drop_after and not gated on durability; LakeTS said: WARNING: /,
    );
    expect(failed.notices).toEqual([expect.stringMatching(says.dropFailed(stuck))]);
    const dropped = await countWithStatus('st_fail', 'dropped');
    expect(dropped).toBeGreaterThanOrEqual(2);
    expect(report.totals).toMatchObject({ chunksDropped: dropped, chunksDeferred: 0, failed: 1 });
    expect(reportMetrics(JOBS[report.job], report)).toMatchObject({ ChunksDropped: dropped, ItemsFailed: 1 });
    await admin.query('DROP VIEW st_fail_view');
  });

  it("Tiering and Retention warn, and count it, when the role cannot read Lakehouse Sync's state", async () => {
    await syncedTable('st_priv', 8, '2 days', '5 days');
    const role = `st_job_${db.name}`;
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'job-secret';
      GRANT USAGE, CREATE ON SCHEMA public, lakets TO ${role};
      GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, lakets TO ${role};
      GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lakets TO ${role};`);
    const job = await db.connect({ user: role, password: 'job-secret' });
    const expired = (
      await admin.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM lakets._chunk_metadata m JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
          WHERE r.table_name = 'st_priv' AND m.range_end <= now() - interval '5 days'`,
      )
    ).rows[0]?.n as number;
    expect(expired).toBeGreaterThanOrEqual(2);

    for (const [missing, grant] of [
      [`role ${role} lacks USAGE on schema wal2delta`, `GRANT USAGE ON SCHEMA wal2delta TO ${role}`],
      [`role ${role} lacks SELECT on wal2delta.tables`, `GRANT SELECT ON wal2delta.tables TO ${role}`],
    ] as const) {
      const tiering = await runJob(JOBS.tiering, job, forTable('st_priv'), unlimited);
      expect(tiering.status).toBe('warning');
      expect(tiering.warnings).toEqual([
        `${missing}: Tiering cannot prove any chunk durable (run npm run grants, or grant it)`,
      ]);
      expect(item(tiering, 'public.st_priv')).toMatchObject({
        outcome: 'unchanged',
        reason: `${missing}: nothing can be proven durable (fail-closed)`,
        warning: { code: 'SyncStateUnreadable' },
      });
      expect(tiering.totals).toMatchObject({ chunksTiered: 0, syncStateUnreadable: 1 });
      expect(reportMetrics(JOBS[tiering.job], tiering)).toMatchObject({
        ChunksTiered: 0,
        SyncStateUnreadable: 1,
      });

      const dry = await runJob(JOBS.retention, job, forTable('st_priv', { dryRun: true }), unlimited);
      expect(dry.status).toBe('dry-run');
      expect(dry.warnings).toHaveLength(1);
      expect(reportMetrics(JOBS[dry.job], dry)).toMatchObject({ SyncStateUnreadable: 1 });

      const retention = await runJob(JOBS.retention, job, forTable('st_priv'), unlimited);
      expect(retention.status).toBe('warning');
      expect(retention.warnings).toEqual([
        `${missing}: Retention cannot prove any chunk durable, so expired chunks stay (run npm run grants, or grant it)`,
      ]);
      const deferred = retention.items.filter((i) => i.outcome === 'deferred');
      expect(deferred).toHaveLength(expired);
      for (const d of deferred) expect(d.reason).toBe(missing);
      expect(retention.totals).toMatchObject({
        chunksDropped: 0,
        chunksDeferred: expired,
        syncStateUnreadable: 1,
      });
      expect(reportMetrics(JOBS[retention.job], retention)).toMatchObject({
        ChunksRetentionDeferred: expired,
        SyncStateUnreadable: 1,
      });
      await admin.query(grant);
    }

    // With both privileges, the same runs prove and do the work, with no warning.
    const tiering = await runJob(JOBS.tiering, job, forTable('st_priv'), unlimited);
    expect(tiering.status).toBe('ok');
    expect(tiering.warnings).toBeUndefined();
    expect(tiering.totals['chunksTiered']).toBeGreaterThanOrEqual(expired);
    expect(reportMetrics(JOBS[tiering.job], tiering)).toMatchObject({ SyncStateUnreadable: 0 });
    const retention = await runJob(JOBS.retention, job, forTable('st_priv'), unlimited);
    expect(retention.status).toBe('ok');
    expect(retention.totals).toMatchObject({ chunksDropped: expired, syncStateUnreadable: 0 });
  });

  describe('RollUp Refresh', () => {
    let id: number;
    beforeAll(async () => {
      await metricsTable(admin, 'st_src', 2);
      const { rows } = await admin.query<{ id: number }>(
        `SELECT lakets.create_rollup('st_ru',
           'SELECT lakets.time_bucket(''1 hour'', ts) AS bucket, count(*) AS n FROM st_src GROUP BY 1',
           interval '1 hour', 'st_src') AS id`,
      );
      id = rows[0]?.id as number;
    });

    it('a RollUp skipped for refresh_lag gets its reason from the registry, whatever LakeTS says', async () => {
      await admin.query(`UPDATE lakets._rollup_registry SET refresh_lag = interval '0' WHERE id = $1`, [id]);
      const first = await runJob(JOBS['rollup-refresh'], admin, forRollup('st_ru'), unlimited);
      expect(item(first, 'st_ru').outcome).toBe('refreshed');
      await admin.query(`UPDATE lakets._rollup_registry SET refresh_lag = interval '1 hour' WHERE id = $1`, [
        id,
      ]);
      const { rows } = await admin.query<{ last: string; due: string }>(
        `SELECT last_refreshed_at::text AS last, (last_refreshed_at + refresh_lag)::text AS due
           FROM lakets._rollup_registry WHERE id = $1`,
        [id],
      );
      const reason = `refresh_lag 01:00:00 has not passed since its last refresh at ${rows[0]?.last} (due at ${rows[0]?.due})`;

      const dry = await runJob(
        JOBS['rollup-refresh'],
        admin,
        forRollup('st_ru', { dryRun: true }),
        unlimited,
      );
      expect(dry.items).toEqual([{ kind: 'rollup', name: 'st_ru', outcome: 'skipped', reason }]);
      const report = await runJob(JOBS['rollup-refresh'], admin, forRollup('st_ru'), unlimited);
      expect(report.status).toBe('ok');
      const skipped = item(report, 'st_ru');
      expect(skipped).toMatchObject({ outcome: 'skipped', reason });
      expect(skipped.notices).toEqual(says.lagSkip());
      expect(report.totals).toMatchObject({ rollupsRefreshed: 0, rollupsSkipped: 1 });
      expect(reportMetrics(JOBS[report.job], report)).toMatchObject({
        RollupsRefreshed: 0,
        RollupsSkipped: 1,
      });
    });

    it('a RollUp another session is refreshing is skipped, LakeTS words kept as evidence', async () => {
      await admin.query(`UPDATE lakets._rollup_registry SET refresh_lag = interval '0' WHERE id = $1`, [id]);
      const other = await db.connect();
      // The compatible refresh_rollup's own lock (the public one's key is its business: only the
      // evidence differs, the outcome is read from last_refreshed_at).
      await other.query('SELECT pg_advisory_lock(74170010, $1)', [id]);
      try {
        const report = await runJob(JOBS['rollup-refresh'], admin, forRollup('st_ru'), unlimited);
        expect(item(report, 'st_ru')).toMatchObject({
          outcome: 'skipped',
          reason:
            'not refreshed although refresh_lag had passed: refresh_rollup declined (another session was refreshing it, for one); the next run retries',
          notices: [says.busy('st_ru')],
        });
        expect(report.totals).toMatchObject({ rollupsRefreshed: 0, rollupsSkipped: 1 });
      } finally {
        await other.query('SELECT pg_advisory_unlock(74170010, $1)', [id]);
      }
      const after = await runJob(JOBS['rollup-refresh'], admin, forRollup('st_ru'), unlimited);
      expect(item(after, 'st_ru').outcome).toBe('refreshed');
    });
  });
});

describe('NULL refresh_lag, allowed by the public LakeTS 0.1.3: never wait', () => {
  let admin: pg.Client;
  beforeAll(async () => {
    const db = await freshDatabase({ lakets: true });
    admin = await db.connect();
    await applyPublicBehaviour(admin, { wording: true, nullableRefreshLag: true });
    await metricsTable(admin, 'nl_src', 2);
    await admin.query(
      `SELECT lakets.create_rollup('nl_ru',
         'SELECT lakets.time_bucket(''1 hour'', ts) AS bucket, count(*) AS n FROM nl_src GROUP BY 1',
         interval '1 hour', 'nl_src')`,
    );
  });

  it('keeps the default of 1 hour for a new RollUp', async () => {
    const { rows } = await admin.query(`SELECT refresh_lag::text AS lag FROM lakets._rollup_registry`);
    expect(rows).toEqual([{ lag: '01:00:00' }]);
  });

  it('a dry run and a real run both refresh it right after a refresh', async () => {
    await admin.query(`UPDATE lakets._rollup_registry SET refresh_lag = NULL`);
    for (let run = 0; run < 2; run++) {
      const dry = await runJob(
        JOBS['rollup-refresh'],
        admin,
        forRollup('nl_ru', { dryRun: true }),
        unlimited,
      );
      expect(dry.items).toEqual([{ kind: 'rollup', name: 'nl_ru', outcome: 'would-refresh' }]);
      const report = await runJob(JOBS['rollup-refresh'], admin, forRollup('nl_ru'), unlimited);
      expect(report.status).toBe('ok');
      expect(item(report, 'nl_ru').outcome).toBe('refreshed');
      expect(reportMetrics(JOBS[report.job], report)).toMatchObject({
        RollupsRefreshed: 1,
        RollupsSkipped: 0,
      });
    }
  });
});
