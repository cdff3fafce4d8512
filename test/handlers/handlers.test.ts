// The deployed handlers end to end: makeHandler() (middy + Powertools) with the Databricks path —
// Secrets Manager and the workspace faked on loopback, the real SDK clients, and the real
// PostgreSQL 17 where each minted credential is the job role's password. The role holds exactly the
// grants `npm run grants` prints.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { installWal2delta, syncCaughtUp } from '../../dev/fake-lakehouse-sync.ts';
import { lambdaContext, schedulerEvent } from '../../dev/lambda-context.ts';
import { grantStatements } from '../../lib/grants.ts';
import { JobFailed, makeHandler } from '../../lib/job-handler.ts';
import { jobNamed } from '../../lib/jobs/catalog.ts';
import { PayloadError } from '../../lib/jobs/payload.ts';
import type { JobName, JobReport } from '../../lib/jobs/types.ts';
import type { ConnectorDeps } from '../../lib/lakebase/index.ts';
import { installLakets } from '../../lib/schema/installer.ts';
import { leakedSecrets, startWorld, type World } from '../lakebase/world.ts';
import { captureConsole } from '../support/console.ts';
import { chunkStatuses, lateWrite, metricsTable, stateFingerprint } from '../support/lakets-fixtures.ts';

let world: World;
let deps: ConnectorDeps;
const output: string[] = [];
const handlers = new Map<JobName, ReturnType<typeof makeHandler>>();

// One handler per job for the whole file, as one warm Lambda container would keep it.
function handler(job: JobName) {
  let h = handlers.get(job);
  if (!h) {
    h = makeHandler(jobNamed(job), { connector: deps });
    handlers.set(job, h);
  }
  return h;
}

const invoke = (job: JobName, event: unknown = schedulerEvent(job), timeoutMs?: number) =>
  handler(job)(event, lambdaContext(job, timeoutMs)) as Promise<JobReport>;

/** The EMF metrics the handler printed for its last run, by name. */
function lastMetrics(job: JobName): Record<string, number> {
  for (const line of [...output].reverse()) {
    if (!line.includes('"_aws"') || !line.includes(`"service":"${job}"`)) continue;
    const emf = JSON.parse(line) as Record<string, unknown>;
    return Object.fromEntries(
      Object.entries(emf).filter((e): e is [string, number] => typeof e[1] === 'number'),
    );
  }
  throw new Error(`no metrics printed for ${job}`);
}

beforeAll(async () => {
  world = await startWorld();
  await installLakets(world.admin);
  await installWal2delta(world.admin);
  for (const s of grantStatements(world.appId)) await world.admin.query(s.sql);
  deps = world.deps();
  // The deployed functions' environment; Powertools through the global console, captured here.
  Object.assign(process.env, world.env(), {
    POWERTOOLS_DEV: 'true',
    POWERTOOLS_METRICS_DISABLED: 'false',
    POWERTOOLS_LOG_LEVEL: 'INFO',
  });
  captureConsole(output);
  await metricsTable(world.admin, 'fleet', 12);
  await world.admin.query(
    `SELECT lakets.add_tiered_retention_policy('fleet', interval '3 days', interval '9 days')`,
  );
  await world.admin.query(`SELECT lakets.enable_sync('fleet')`);
  await syncCaughtUp(world.admin, 'fleet');
  await world.admin.query(`SELECT lakets.create_rollup('fleet_hourly',
    $$SELECT lakets.time_bucket('1 hour', ts) AS bucket, device, sum(value) AS total, count(*) AS n FROM fleet GROUP BY 1, 2$$,
    interval '1 hour', 'fleet')`);
  await world.admin.query(`SELECT lakets.create_rollup('fleet_daily',
    $$SELECT lakets.time_bucket('1 day', bucket) AS bucket, sum(total) AS total, sum(n) AS n FROM _rollup_fleet_hourly GROUP BY 1$$,
    interval '1 day', NULL, 'public', ARRAY['fleet_hourly'])`);
  await world.admin.query(`SELECT lakets.enable_rollup_invalidation('fleet_hourly')`);
  await world.admin.query(`UPDATE lakets._rollup_registry SET refresh_lag = interval '0'`);
});

afterAll(async () => {
  vi.restoreAllMocks();
  await world?.close();
});

describe('scheduled runs through the Databricks path', () => {
  it('runs Partition Manager as the service principal and emits its metrics', async () => {
    const { rowCount: forgotten } = await world.admin.query(
      `DELETE FROM lakets._chunk_metadata WHERE range_start > now() + interval '1 day'`,
    );
    expect(forgotten).toBeGreaterThan(0);
    const cold = world.fake.calls.length;
    const report = await invoke('partition-manager');
    expect(report).toMatchObject({ job: 'partition-manager', status: 'ok', trigger: 'schedule' });
    expect(report.totals['partitionsCreated']).toBe(forgotten);
    expect(world.fake.calls.length).toBeGreaterThan(cold);
    expect(world.fake.minted.length).toBeGreaterThanOrEqual(1);
    expect(lastMetrics('partition-manager')).toMatchObject({
      PartitionsCreated: forgotten,
      ItemsFailed: 0,
      RunSkipped: 0,
    });
    // It really ran as the service principal's role (the partitions it created are owned by the schema owner).
    const who = await world.admin.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1`,
      [world.appId],
    );
    expect(who.rows[0].n).toBe(0); // and closed its connection at the end of the invocation
  });

  it('keeps warm invocations free of resolution calls and reuses a fresh credential', async () => {
    world.fake.resetCalls();
    const minted = world.fake.minted.length;
    const report = await invoke('partition-manager');
    expect(report.status).toBe('ok');
    expect(report.totals['partitionsCreated']).toBe(0);
    const routes = world.fake.calls.map((c) => c.route);
    expect(
      routes.filter((r) => r === 'listBranches' || r === 'listEndpoints' || r === 'getEndpoint'),
    ).toEqual([]);
    expect(world.fake.minted.length - minted).toBeLessThanOrEqual(1);
  });

  it('tiers and retains with reasons from LakeTS, then a re-run changes nothing', async () => {
    const late = await lateWrite(world.admin, 'fleet', 11);
    const tiering = await invoke('tiering');
    expect(tiering.status).toBe('ok');
    expect(tiering.totals['chunksTiered']).toBeGreaterThanOrEqual(7);
    const deferred = tiering.items.find((i) => i.name === late);
    expect(deferred).toMatchObject({ outcome: 'deferred' });
    expect(deferred?.reason).toMatch(/behind the chunk's last_write_lsn/);
    // LakeTS's deferral NOTICE is filed with its item, and logged with it.
    expect(deferred?.notices).toEqual([expect.stringContaining(`tiering deferred chunk ${late}`)]);
    expect(output.filter((line) => line.includes(`tiering deferred chunk ${late}`)).length).toBeGreaterThan(
      0,
    );
    expect(lastMetrics('tiering')).toMatchObject({
      ChunksTiered: tiering.totals['chunksTiered'],
      ChunksTieringDeferred: 1,
    });
    // The deferral reason reached the structured log too.
    expect(output.some((l) => l.includes(`chunk ${late}: deferred`) && /"level":\s*"INFO"/.test(l))).toBe(
      true,
    );

    const retention = await invoke('retention');
    expect(retention.status).toBe('ok');
    expect((await chunkStatuses(world.admin, 'fleet'))[late]).not.toBe('dropped');
    expect(retention.items.find((i) => i.name === late)?.outcome).toBe('deferred');
    expect(retention.totals['chunksDropped']).toBeGreaterThanOrEqual(2);
    expect(lastMetrics('retention')).toMatchObject({
      ChunksDropped: retention.totals['chunksDropped'],
      ChunksRetentionDeferred: 1,
    });

    const settled = await stateFingerprint(world.admin, { ignoreRunStamps: true });
    expect((await invoke('tiering')).totals['chunksTiered']).toBe(0);
    expect((await invoke('retention')).totals['chunksDropped']).toBe(0);
    expect(await stateFingerprint(world.admin, { ignoreRunStamps: true })).toBe(settled);
  });

  it('refreshes RollUps in order, including a late write below the watermark', async () => {
    await world.admin.query(`INSERT INTO fleet VALUES (now() - interval '2 days', 'd1', 1000)`);
    const report = await invoke('rollup-refresh');
    expect(report.status).toBe('ok');
    expect(report.items.map((i) => [i.name, i.outcome])).toEqual([
      ['fleet_hourly', 'refreshed'],
      ['fleet_daily', 'refreshed'],
    ]);
    const check = await world.admin.query(`
      SELECT (SELECT sum(total) FROM _rollup_fleet_daily WHERE bucket >= date_trunc('day', now()) - interval '3 days')
           = (SELECT sum(value) FROM fleet WHERE ts >= date_trunc('day', now()) - interval '3 days') AS same`);
    expect(check.rows[0].same).toBe(true);
    expect(lastMetrics('rollup-refresh')).toMatchObject({ RollupsRefreshed: 2, RollupsFailed: 0 });
  });
});

describe('manual invocations', () => {
  it('changes nothing on a dry run', async () => {
    await world.admin.query(
      `DELETE FROM lakets._chunk_metadata WHERE range_start > now() + interval '2 days'`,
    );
    await world.admin.query(`INSERT INTO fleet VALUES (now(), 'd2', 5)`);
    const before = await stateFingerprint(world.admin);
    for (const job of ['partition-manager', 'tiering', 'retention', 'rollup-refresh'] as const) {
      const report = await invoke(job, { dryRun: true });
      expect(report.status).toBe('dry-run');
      expect(report.trigger).toBe('manual');
    }
    expect(await stateFingerprint(world.admin)).toBe(before);
    await invoke('partition-manager');
  });

  it('rejects a bad payload with a one-line error before touching Databricks or the database', async () => {
    world.fake.resetCalls();
    const before = await stateFingerprint(world.admin);
    await expect(invoke('retention', { force: true })).rejects.toThrow(PayloadError);
    await expect(invoke('tiering', { tables: ['public.fleet'], extra: 1 })).rejects.toThrow(
      /unknown field "extra"/,
    );
    expect(world.fake.calls).toEqual([]);
    expect(await stateFingerprint(world.admin)).toBe(before);
  });

  it('limits a run to the named tables and cascades from one RollUp', async () => {
    await metricsTable(world.admin, 'other', 1);
    await world.admin.query(
      `DELETE FROM lakets._chunk_metadata WHERE range_start > now() + interval '2 days'`,
    );
    const report = await invoke('partition-manager', { tables: ['public.other'] });
    expect(report.items.map((i) => i.name)).toEqual(['public.other']);
    const rollups = await invoke('rollup-refresh', { rollup: 'fleet_hourly' });
    expect(rollups.items.map((i) => i.name)).toEqual(['fleet_hourly']);
  });
});

describe('failures, overlap and the clock', () => {
  it('ends a run with a failed item as a Lambda error, after logging the report', async () => {
    await world.admin.query(
      `ALTER TABLE public._rollup_fleet_hourly ADD CONSTRAINT broken CHECK (total < 0) NOT VALID`,
    );
    await world.admin.query(`INSERT INTO fleet VALUES (now(), 'd3', 5)`);
    try {
      const error = await invoke('rollup-refresh').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(JobFailed);
      const report = (error as JobFailed).report;
      expect(report.status).toBe('partial');
      expect((error as Error).message).toMatch(
        /^rollup-refresh partial: 1 of 2 items failed; first: fleet_hourly: .*violates check constraint "broken"/,
      );
      expect(report.items.find((i) => i.name === 'fleet_daily')).toMatchObject({ outcome: 'skipped' });
      const logged = output.filter(
        (l) => /"message":\s*"rollup-refresh partial"/.test(l) && /"level":\s*"ERROR"/.test(l),
      );
      expect(logged.length).toBeGreaterThan(0);
      expect(lastMetrics('rollup-refresh')).toMatchObject({ RollupsFailed: 1, ItemsFailed: 1 });
      // One coded record (the report's), and RunFailed by code in its own EMF record: the report's
      // metrics keep the {service, target} dimensions the alarms read (a single-target deployment's
      // target is `default`).
      expect(logged.map((l) => JSON.parse(l).errorCode)).toEqual(['JOB_PARTIAL']);
      const emf = output.filter((l) => l.includes('"_aws"')).map((l) => JSON.parse(l));
      const failed = emf.filter((e) => e.RunFailed !== undefined && e.service === 'rollup-refresh');
      expect(failed).toMatchObject([{ RunFailed: 1, code: 'JOB_PARTIAL', target: 'default' }]);
      expect(failed[0]._aws.CloudWatchMetrics[0].Dimensions).toEqual([['service', 'target', 'code']]);
      const reportMetrics = emf.filter((e) => e.ItemsFailed !== undefined && e.service === 'rollup-refresh');
      expect(reportMetrics.at(-1)?._aws.CloudWatchMetrics[0].Dimensions).toEqual([['service', 'target']]);
      expect(emf.filter((e) => e.ItemsFailed !== undefined && e.code !== undefined)).toEqual([]);
    } finally {
      await world.admin.query(`ALTER TABLE public._rollup_fleet_hourly DROP CONSTRAINT broken`);
    }
  });

  it('lets only one of two concurrent invocations run; the other is skipped and changes nothing', async () => {
    // Hold the Retention job lock from another session, as a run in progress would.
    const other = await world.db.connect();
    await other.query('SELECT pg_advisory_lock(74170100, 3)');
    const before = await stateFingerprint(world.admin);
    const report = await invoke('retention');
    expect(report.status).toBe('skipped');
    expect(lastMetrics('retention')).toMatchObject({ RunSkipped: 1 });
    expect(await stateFingerprint(world.admin)).toBe(before);
    await other.query('SELECT pg_advisory_unlock(74170100, 3)');
    const [a, b] = await Promise.all([invoke('retention'), invoke('retention')]);
    expect([a.status, b.status].sort()).toEqual(expect.arrayContaining(['ok']));
    for (const r of [a, b]) expect(['ok', 'skipped']).toContain(r.status);
  });

  it('starts nothing when the invocation is almost out of time, and reports incomplete', async () => {
    await world.admin.query(
      `DELETE FROM lakets._chunk_metadata WHERE range_start > now() + interval '2 days'`,
    );
    const before = await stateFingerprint(world.admin);
    const report = await invoke('partition-manager', undefined, 5_000);
    expect(report.status).toBe('incomplete');
    expect(report.leftForNextRun).toEqual(expect.arrayContaining(['public.fleet', 'public.other']));
    expect(lastMetrics('partition-manager')).toMatchObject({ RunIncomplete: 1 });
    expect(await stateFingerprint(world.admin)).toBe(before);
  });

  it('never writes a secret or token into any log line, report or error', () => {
    expect(world.fake.minted.length).toBeGreaterThan(0);
    expect(leakedSecrets(world, output)).toEqual([]);
    expect(leakedSecrets(world, world.log.lines)).toEqual([]);
  });
});
