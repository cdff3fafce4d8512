// Tiering, Retention and RollUp Refresh attempt the most urgent items first, derived from the
// registries (least recently run policy; dependency order, then least recently refreshed RollUp),
// so a run cut short by its deadline resumes where it matters next time: the last table (or
// RollUp) in name order is not starved. No state of the job's own: only what LakeTS records.
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { installWal2delta } from '../../dev/fake-lakehouse-sync.ts';
import { timeBudget } from '../../lib/jobs/budget.ts';
import { jobNamed } from '../../lib/jobs/catalog.ts';
import { refreshOrder } from '../../lib/jobs/rollup-refresh.ts';
import { runJob } from '../../lib/jobs/runner.ts';
import type { JobName, JobOptions, JobReport } from '../../lib/jobs/types.ts';
import { freshDatabase } from '../support/db.ts';
import { metricsTable } from '../support/lakets-fixtures.ts';
import { applyPublicBehaviour, BEHAVIOURS } from '../support/public-lakets.ts';

const scheduled: JobOptions = { dryRun: false, force: false, trigger: 'schedule' };

/** A deadline that lets a run start exactly one item: 16 s left, a 14 s reserve, 1 s per look. */
function oneItemDeadline() {
  let remaining = 16_000;
  return timeBudget(() => (remaining -= 1_000), 14_000);
}

/** The items a run attempted (started), in order. */
function attempted(report: JobReport): string[] {
  return report.items.filter((i) => i.outcome !== 'not-started').map((i) => i.name);
}

describe.each(BEHAVIOURS)('against $name', ({ behaviour }) => {
  let admin: pg.Client;

  beforeAll(async () => {
    const db = await freshDatabase({ lakets: true });
    admin = await db.connect();
    await installWal2delta(admin);
    await applyPublicBehaviour(admin, behaviour);
    for (const t of ['tier_a', 'tier_b', 'tier_z']) {
      await metricsTable(admin, t, 1, 1);
      await admin.query(`SELECT lakets.add_tiering_policy($1, interval '3 days')`, [t]);
    }
    for (const t of ['ret_a', 'ret_b', 'ret_z']) {
      await metricsTable(admin, t, 1, 1);
      await admin.query(`SELECT lakets.add_retention_policy($1, interval '30 days')`, [t]);
    }
    await metricsTable(admin, 'ru_src', 1, 1);
    for (const r of ['ru_a', 'ru_b', 'ru_z']) {
      await admin.query(
        `SELECT lakets.create_rollup($1,
           'SELECT lakets.time_bucket(''1 hour'', ts) AS bucket, count(*) AS n FROM ru_src GROUP BY 1',
           interval '1 hour', 'ru_src')`,
        [r],
      );
    }
    // Always due, and never refreshed yet: only the order decides which one a cut run reaches.
    await admin.query(
      `UPDATE lakets._rollup_registry SET refresh_lag = interval '0', last_refreshed_at = NULL`,
    );
  });

  it.each<[JobName, string[]]>([
    ['tiering', ['public.tier_a', 'public.tier_b', 'public.tier_z']],
    ['retention', ['public.ret_a', 'public.ret_b', 'public.ret_z']],
    ['rollup-refresh', ['ru_a', 'ru_b', 'ru_z']],
  ])('%s: runs cut after one item each reach every item in turn', async (job, names) => {
    const reached: string[] = [];
    for (let run = 0; run < names.length; run++) {
      const report = await runJob(jobNamed(job), admin, scheduled, oneItemDeadline());
      expect(report.status).toBe('incomplete');
      const started = attempted(report);
      expect(started).toHaveLength(1);
      expect(report.leftForNextRun).toHaveLength(names.length - 1);
      reached.push(...started);
    }
    // Never run first, then least recently run: the last name gets its turn on the third run.
    expect(reached).toEqual(names);
    // And the rotation goes on: the fourth run is back at the one that waited longest.
    const fourth = await runJob(jobNamed(job), admin, scheduled, oneItemDeadline());
    expect(attempted(fourth)).toEqual([names[0]]);
  });
});

describe('RollUp order', () => {
  const node = (id: number, name: string, last: string | null, depends_on: number[] = []) => ({
    id,
    name,
    depends_on,
    last_refreshed_at: last,
    refresh_lag: '00:15:00',
    due: true,
    due_at: null,
  });

  it('puts dependencies first, then the least recently refreshed', () => {
    const nodes = [
      node(1, 'a_fresh', '2026-11-27 10:00:00+00'),
      node(2, 'b_child_of_fresh', '2026-11-27 08:00:00+00', [1]),
      node(3, 'c_stale', '2026-11-27 09:00:00+00'),
      node(4, 'd_never', null),
      node(5, 'e_child_of_never', '2026-11-27 07:00:00+00', [4]),
    ];
    const { order, cyclic } = refreshOrder(nodes);
    expect(cyclic).toEqual([]);
    // d (never) first, then e (its child, the stalest that is ready), then c, then a before its child b.
    expect(order.map((n) => n.name)).toEqual([
      'd_never',
      'e_child_of_never',
      'c_stale',
      'a_fresh',
      'b_child_of_fresh',
    ]);
  });
});
