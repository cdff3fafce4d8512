// Round trips only for work, counted on the wire: the job's session goes through dev/latency-proxy.ts,
// which counts every Query and Parse message the client sends (what log_statement = all logs, one
// line each). Against the compatible schema and the public LakeTS 0.1.3 behaviour (wording, NULL
// refresh_lag, origin read in the session's time zone and cached per session):
//  - a run with nothing to do sends as many statements at 30 tables (and 30 RollUps) as at 3;
//  - each unit of work costs one statement more (the marginal cost from 3 to 30 items is exactly 1);
//  - tables on an offset chunk grid cost no more, however many share the grid: the session's zone
//    changes once into the grid and once back per run.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addChains, addTables, type FleetJob, installFleet, setScenario, unitsOf } from '../../dev/fleet.ts';
import { type LatencyProxy, startLatencyProxy } from '../../dev/latency-proxy.ts';
import { unlimited } from '../../lib/jobs/budget.ts';
import { JOBS } from '../../lib/jobs/catalog.ts';
import { runJob } from '../../lib/jobs/runner.ts';
import type { JobOptions, JobReport } from '../../lib/jobs/types.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { applyPublicBehaviour } from '../support/public-lakets.ts';
import { sessionGrid } from '../support/public-rights-grid.ts';

const scheduled: JobOptions = { dryRun: false, force: false, trigger: 'schedule' };
const JOB_NAMES: FleetJob[] = ['partition-manager', 'tiering', 'retention', 'rollup-refresh'];

const MODES = [
  { name: 'the compatible schema', publicMode: false },
  { name: 'the public LakeTS 0.1.3 behaviour', publicMode: true },
];

interface Counted {
  statements: number;
  report: JobReport;
}

/** The statements a run sent, and its report. */
async function counted(
  proxy: LatencyProxy,
  client: pg.Client,
  job: FleetJob,
  options = scheduled,
): Promise<Counted> {
  proxy.reset();
  const report = await runJob(JOBS[job], client, options, unlimited);
  return { statements: proxy.counts().statements, report };
}

describe.each(MODES)('against $name', ({ publicMode }) => {
  let db: TestDatabase;
  let admin: pg.Client;
  let berlin: pg.Client;
  let proxy: LatencyProxy;
  let client: pg.Client;
  /** Per size (3, 30): per job, [nothing-to-do, one-unit-each] counts and units. */
  const seen = new Map<
    number,
    Record<string, { nothing: number; one: number; units: number; offsetTables: number }>
  >();

  beforeAll(async () => {
    db = await freshDatabase({ lakets: true });
    admin = await db.connect();
    if (publicMode) {
      await applyPublicBehaviour(admin, { wording: true, nullableRefreshLag: true });
      await sessionGrid(admin);
    }
    await installFleet(admin);
    berlin = await db.connect({ timeZone: 'Europe/Berlin' });
    proxy = await startLatencyProxy({ target: { host: db.info.host, port: db.info.port }, delayMs: 0 });
    client = new pg.Client({
      host: proxy.host,
      port: proxy.port,
      user: db.info.user,
      password: db.info.password,
      database: db.name,
      options: '-c TimeZone=UTC',
    });
    await client.connect();
  });

  afterAll(async () => {
    await client?.end();
    await proxy?.close();
  });

  /** Tables `from`..`to`, those from `offsetFrom` on laid out from a Berlin session (23:00 UTC grid). */
  async function grow(from: number, to: number, offsetFrom: number): Promise<void> {
    await addTables(admin, from, offsetFrom - 1);
    // The compatible schema continues any grid but lays new tables out in UTC: lay these out as a
    // Berlin session of the public LakeTS does, then put the compatible behaviour back.
    const restore = publicMode ? undefined : await sessionGrid(admin);
    await addTables(berlin, offsetFrom, to);
    await restore?.();
  }

  async function measure(size: number, chains: number): Promise<void> {
    const result: Record<string, { nothing: number; one: number; units: number; offsetTables: number }> = {};
    const offsetTables = Number(
      (
        await admin.query<{ n: number }>(
          `SELECT count(DISTINCT chronotable_id)::int AS n FROM lakets._chunk_metadata
            WHERE status <> 'dropped' AND extract(hour FROM range_start AT TIME ZONE 'UTC') <> 0`,
        )
      ).rows[0]?.n,
    );
    // RollUps refreshed once, so "nothing to do" finds every RollUp within its refresh_lag.
    await setScenario(admin, 'rollup-refresh', 'one');
    expect((await counted(proxy, client, 'rollup-refresh')).report.status).toBe('ok');
    for (const job of JOB_NAMES) {
      await setScenario(admin, job, 'nothing', berlin);
      const nothing = await counted(proxy, client, job);
      expect(
        nothing.report.status,
        JSON.stringify(nothing.report.items.filter((i) => i.outcome === 'failed')),
      ).toBe('ok');
      expect(unitsOf(job, nothing.report)).toBe(0);
      await setScenario(admin, job, 'one');
      const one = await counted(proxy, client, job);
      expect(one.report.status, JSON.stringify(one.report.items.filter((i) => i.outcome === 'failed'))).toBe(
        'ok',
      );
      const n = unitsOf(job, one.report);
      expect(n).toBe(job === 'rollup-refresh' ? chains * 3 : size);
      result[job] = { nothing: nothing.statements, one: one.statements, units: n, offsetTables };
      await setScenario(admin, job, 'nothing', berlin);
      if (job === 'partition-manager') {
        // The job's session is back in its own zone.
        expect((await client.query('SHOW TimeZone')).rows[0].TimeZone).toBe('UTC');
      }
    }
    seen.set(size, result);
    if (process.env['ROUND_TRIPS_PRINT']) process.stderr.write(`${size}: ${JSON.stringify(result)}\n`);
  }

  it('3 tables (1 on an offset grid) and a chain of 3 RollUps: counted', async () => {
    await grow(1, 3, 3);
    await addChains(admin, 1, 1, 3);
    await measure(3, 1);
  });

  it('30 tables (11 on an offset grid) and 10 chains: nothing to do costs the same; each unit costs one statement', async () => {
    await grow(4, 30, 21);
    await addChains(admin, 2, 10, 3);
    await measure(30, 10);
    const small = seen.get(3);
    const large = seen.get(30);
    if (!small || !large) throw new Error('the 3-table measurement did not run');
    for (const job of JOB_NAMES) {
      const s = small[job];
      const l = large[job];
      if (!s || !l) throw new Error(job);
      // Constant in N: one set-based read decides, and the stamps of the skipped calls take one statement.
      expect(l.nothing, `${job}: nothing to do at 30 vs 3 (${JSON.stringify({ s, l })})`).toBe(s.nothing);
      // One statement per unit of work: the marginal cost from 3 to 30 items.
      expect(l.one - s.one, `${job}: one unit each at 30 vs 3 (${JSON.stringify({ s, l })})`).toBe(
        l.units - s.units,
      );
      // And the fixed part of a run with work is small.
      expect(l.one - l.units, job).toBeLessThanOrEqual(10);
    }
    // Offset grids: 1 table at 3, 11 tables at 30, the same fixed part (one zone change in, one back).
    expect(large['partition-manager']?.offsetTables).toBe(11);
    expect(small['partition-manager']?.offsetTables).toBe(1);
    expect(large['partition-manager']?.one).toBe((small['partition-manager']?.one ?? 0) + 27);
  });
});
