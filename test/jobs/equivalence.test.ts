// The skip path changes nothing but the round trips: Partition Manager, Retention and RollUp Refresh
// run both ways on two copies of one database (CREATE DATABASE ... TEMPLATE), calling LakeTS for
// every item as the jobs did before (each job's exported reference run: the same code with its skip
// decision off) and with the skip path, against the compatible schema and the public LakeTS 0.1.3
// behaviour. A dry run, a run cut by its time budget, a run with work and a run with nothing left
// must give the same reports (outcomes, items, reasons, totals, what is left; timing aside) and leave
// the same databases (registries with their stamps, chunks, partitions, RollUp tables).
//
// NOTICE text is evidence, not an outcome: a call the skip path does not make raises none, so an item
// it decided carries no notices; an item both runs called carries the same.
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { setSync } from '../../dev/fake-lakehouse-sync.ts';
import { addChains, addTables, installFleet } from '../../dev/fleet.ts';
import { unlimited } from '../../lib/jobs/budget.ts';
import { JOBS } from '../../lib/jobs/catalog.ts';
import { runCallingEveryTable as everyPartition } from '../../lib/jobs/partition-manager.ts';
import { runCallingEveryTable as everyRetention } from '../../lib/jobs/retention.ts';
import { runCallingEveryRollup } from '../../lib/jobs/rollup-refresh.ts';
import { runJob } from '../../lib/jobs/runner.ts';
import type { Budget, ItemResult, JobLogic, JobOptions, JobReport } from '../../lib/jobs/types.ts';
import type { Queryable } from '../../lib/queryable.ts';
import { freshDatabase } from '../support/db.ts';
import { applyPublicBehaviour } from '../support/public-lakets.ts';
import { sessionGrid } from '../support/public-rights-grid.ts';

const scheduled: JobOptions = { dryRun: false, force: false, trigger: 'schedule' };

const JOBS_BOTH_WAYS: Array<[keyof typeof JOBS, JobLogic]> = [
  ['partition-manager', everyPartition],
  ['retention', everyRetention],
  ['rollup-refresh', runCallingEveryRollup],
];

const MODES = [
  { name: 'the compatible schema', publicMode: false },
  { name: 'the public LakeTS 0.1.3 behaviour', publicMode: true },
];

/**
 * The client with at least 2 ms between statements, as over any network: the reference's calls then
 * stamp last_run_at at distinct milliseconds (the precision the next run orders by), so the order it
 * leaves is its call order and not, for calls within one millisecond on loopback, a tie.
 */
function paced(client: pg.Client): Queryable {
  return {
    query: async (text: string, values?: unknown[]) => {
      await new Promise((resolve) => setTimeout(resolve, 2));
      return client.query(text, values);
    },
    on: (event, listener) => client.on(event, listener),
    off: (event, listener) => client.off(event, listener),
  } as Queryable;
}

/** Lets `n` items start, as a run cut by its deadline. */
function budgetOf(n: number): Budget {
  let started = 0;
  return { canStart: () => started++ < n, spent: () => {} };
}

/** A report without its timing, and its items without the NOTICE evidence (compared apart). */
function comparable(report: JobReport) {
  const { startedAt, finishedAt, durationMs, items, ...rest } = report;
  return {
    ...rest,
    items: items.map(({ durationMs: _d, notices: _n, ...item }: ItemResult) => item),
  };
}

/** Everything the jobs may change, with each timestamp as null / before the copies / since. */
async function snapshot(db: pg.Client, since: Date): Promise<unknown> {
  const when = (col: string) =>
    `CASE WHEN ${col} IS NULL THEN 'null' WHEN ${col} < $1 THEN 'before' ELSE 'since' END`;
  const q = async (sql: string) => (await db.query(sql, sql.includes('$1') ? [since] : [])).rows;
  const rollupTables = (
    await db.query<{ t: string }>('SELECT rollup_table AS t FROM lakets._rollup_registry ORDER BY 1')
  ).rows;
  const contents: Record<string, unknown> = {};
  for (const { t } of rollupTables) {
    contents[t] = (
      await db.query(`SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) AS h FROM ${t} x`)
    ).rows[0];
  }
  return {
    chunks: await q(
      `SELECT chunk_name, range_start, range_end, status, ${when('tiered_at')} AS tiered_at,
              last_write_lsn IS NULL AS no_lsn, ${when('created_at')} AS created_at, ${when('last_modified_at')} AS modified
         FROM lakets._chunk_metadata ORDER BY chunk_name`,
    ),
    policies: await q(
      `SELECT id, chronotable_id, policy_type, config, enabled, ${when('last_run_at')} AS last_run_at
         FROM lakets._policy_registry ORDER BY id`,
    ),
    rollups: await q(
      `SELECT name, watermark, ${when('last_refreshed_at')} AS last_refreshed_at, refresh_lag::text, depends_on
         FROM lakets._rollup_registry ORDER BY name`,
    ),
    invalidations: await q(
      'SELECT rollup_id, bucket_start FROM lakets._rollup_invalidation_log ORDER BY rollup_id, bucket_start',
    ),
    partitions: await q(
      `SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
         FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
        WHERE c.relnamespace = 'public'::regnamespace ORDER BY c.relname`,
    ),
    contents,
  };
}

/** Forgets the newest `n` partitions of a table (partition and metadata), as if time had passed. */
async function dropNewest(db: pg.Client, table: string, n: number): Promise<void> {
  const { rows } = await db.query<{ chunk_name: string }>(
    `SELECT m.chunk_name FROM lakets._chunk_metadata m JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
      WHERE r.table_name = $1 ORDER BY m.range_start DESC LIMIT $2`,
    [table, n],
  );
  for (const r of rows) {
    await db.query(`DROP TABLE ${r.chunk_name}`);
    await db.query('DELETE FROM lakets._chunk_metadata WHERE chunk_name = $1', [r.chunk_name]);
  }
}

describe.each(MODES)('against $name', ({ publicMode }) => {
  const copies: Record<'every' | 'skip', pg.Client> = {} as never;
  let copiedAt: Date;

  beforeAll(async () => {
    const template = await freshDatabase({ lakets: true });
    const admin = await template.connect();
    if (publicMode) {
      await applyPublicBehaviour(admin, { wording: true, nullableRefreshLag: true });
      await sessionGrid(admin);
    }
    await installFleet(admin);
    // f00001..f00005 on the UTC grid, f00006..f00008 laid out from a Berlin session (23:00 UTC).
    await addTables(admin, 1, 5);
    const restore = publicMode ? undefined : await sessionGrid(admin);
    const berlin = await template.connect({ timeZone: 'Europe/Berlin' });
    await addTables(berlin, 6, 8);
    await restore?.();
    // Partition Manager: partitions missing on two UTC tables and two Berlin ones.
    await dropNewest(admin, 'f00002', 2);
    await dropNewest(admin, 'f00003', 1);
    await dropNewest(admin, 'f00006', 1);
    await dropNewest(admin, 'f00008', 3);
    // Retention: the old chunk past drop_after on three tables, one of them held back by the gate.
    await admin.query(
      `UPDATE lakets._policy_registry p SET config = '{"drop_after": "30 days"}'
         FROM lakets._chronotable_registry r
        WHERE r.id = p.chronotable_id AND p.policy_type = 'retention' AND r.table_name IN ('f00003', 'f00004', 'f00007')`,
    );
    await setSync(admin, 'f00004', 'SNAPSHOTTING', null);
    // f00005: a second, disabled retention-kind policy; f00001: no retention at all.
    await admin.query(
      `UPDATE lakets._policy_registry p SET enabled = false FROM lakets._chronotable_registry r
        WHERE r.id = p.chronotable_id AND p.policy_type = 'retention' AND r.table_name = 'f00001'`,
    );
    // RollUps: chain 1 due (never refreshed); chain 2 refreshed, then only its middle one due.
    await addChains(admin, 1, 2, 3);
    await admin.query(
      `SELECT lakets.refresh_rollup(name) FROM lakets._rollup_registry WHERE name LIKE 'r00002%' ORDER BY id`,
    );
    await admin.query(
      `UPDATE lakets._rollup_registry SET refresh_lag = CASE WHEN name = 'r00002_2' THEN interval '0' ELSE interval '1 hour' END
        WHERE name LIKE 'r00002%'`,
    );
    // New rows past the RollUps' watermarks.
    await admin.query(`INSERT INTO public.f00002 VALUES (now(), 9, 9)`);
    if (publicMode)
      await admin.query(`UPDATE lakets._rollup_registry SET refresh_lag = NULL WHERE name = 'r00001_3'`);
    await admin.end();
    await berlin.end();

    const server = new pg.Client({ ...connection(template.info), database: 'postgres' });
    await server.connect();
    // The harness keeps its installer's session on the template open: a copy needs it gone.
    await server.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
      [template.name],
    );
    for (const way of ['every', 'skip'] as const) {
      const name = `${template.name}_${way}`;
      await server.query(
        `CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE ${pg.escapeIdentifier(template.name)}`,
      );
      const client = new pg.Client({
        ...connection(template.info),
        database: name,
        options: '-c TimeZone=UTC',
      });
      await client.connect();
      copies[way] = client;
    }
    await server.end();
    copiedAt = new Date(Date.now() - 1);
    return async () => {
      await Promise.allSettled(Object.values(copies).map((c) => c.end()));
    };
  });

  it.each(JOBS_BOTH_WAYS)('%s: the same reports and databases both ways', async (name, every) => {
    const job = JOBS[name];
    const reference = { ...job, run: every };
    const runs: Array<[string, JobOptions, () => Budget]> = [
      ['dry run', { ...scheduled, dryRun: true }, () => unlimited],
      ['run cut after 4 items', scheduled, () => budgetOf(4)],
      ['run', scheduled, () => unlimited],
      ['run with nothing left', scheduled, () => unlimited],
    ];
    const called = { every: 0, skip: 0 };
    for (const [what, options, budget] of runs) {
      const a = await runJob(reference, paced(copies.every), options, budget());
      const b = await runJob(job, copies.skip, options, budget());
      expect(comparable(b), `${name}, ${what}`).toEqual(comparable(a));
      // Evidence: what both runs called carries the same NOTICEs; only an item the skip path decided
      // without a call (its reference item was called, it was not) may lack them.
      b.items.forEach((item, i) => {
        const ref = a.items[i];
        const decided = !options.dryRun && item.durationMs === undefined && ref?.durationMs !== undefined;
        if (item.notices !== undefined || !decided)
          expect(item.notices, `${name}, ${what}: ${item.name}`).toEqual(ref?.notices);
      });
      called.every += a.items.filter((i) => i.durationMs !== undefined).length;
      called.skip += b.items.filter((i) => i.durationMs !== undefined).length;
      expect(await snapshot(copies.skip, copiedAt), `${name}, ${what}`).toEqual(
        await snapshot(copies.every, copiedAt),
      );
    }
    // The states above give the skip path something to skip, and something to call.
    expect(called.skip).toBeGreaterThan(0);
    expect(called.skip).toBeLessThan(called.every);
  });
});

function connection(info: { host: string; port: number; user: string; password: string }) {
  return { host: info.host, port: info.port, user: info.user, password: info.password };
}
