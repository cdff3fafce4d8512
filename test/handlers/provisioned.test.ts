import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { installWal2delta, syncCaughtUp } from '../../dev/fake-lakehouse-sync.ts';
import { lambdaContext, schedulerEvent } from '../../dev/lambda-context.ts';
import { applyGrants } from '../../lib/grants.ts';
import { makeHandler } from '../../lib/job-handler.ts';
import { JOB_NAMES, jobNamed } from '../../lib/jobs/catalog.ts';
import type { CheckReport } from '../../lib/jobs/check.ts';
import type { JobName, JobReport } from '../../lib/jobs/types.ts';
import type { ConnectorDeps } from '../../lib/lakebase/index.ts';
import { installLakets } from '../../lib/schema/installer.ts';
import { INSTANCE, leakedSecrets, startWorld, type World } from '../lakebase/world.ts';
import { captureConsole } from '../support/console.ts';
import { metricsTable, stateFingerprint } from '../support/lakets-fixtures.ts';
import { runScript } from '../support/scripts.ts';

let world: World;
const output: string[] = [];
const QUICK = { budgetMs: 2_000, baseDelayMs: 20, maxDelayMs: 100, reserveMs: 15_000 };

const invoke = (deps: ConnectorDeps, job: JobName, event: unknown = schedulerEvent(job)) =>
  makeHandler(jobNamed(job), { connector: deps })(event, lambdaContext(job)) as Promise<
    JobReport | CheckReport
  >;

beforeAll(async () => {
  world = await startWorld();
  await installLakets(world.admin);
  await installWal2delta(world.admin);
  await metricsTable(world.admin, 'turbines', 10);
  await world.admin.query(
    `SELECT lakets.add_tiered_retention_policy('turbines', interval '3 days', interval '8 days')`,
  );
  await world.admin.query(`SELECT lakets.enable_sync('turbines')`);
  await syncCaughtUp(world.admin, 'turbines');
  await world.admin.query(`SELECT lakets.create_rollup('turbines_hourly',
    $$SELECT lakets.time_bucket('1 hour', ts) AS bucket, device, sum(value) AS total FROM turbines GROUP BY 1, 2$$,
    interval '1 hour', 'turbines')`);
  await world.admin.query(`UPDATE lakets._rollup_registry SET refresh_lag = interval '0'`);
  await applyGrants(world.admin, world.appId);
  // A deployed function's environment for an instance: no LAKETS_PROJECT at all.
  const env = world.env({ LAKETS_PROJECT: undefined, LAKETS_LAKEBASE_INSTANCE: INSTANCE });
  delete process.env.LAKETS_PROJECT;
  Object.assign(process.env, env, { POWERTOOLS_DEV: 'true', POWERTOOLS_METRICS_DISABLED: 'false' });
  captureConsole(output);
});

afterAll(async () => {
  vi.restoreAllMocks();
  await world?.close();
});

describe('an AVAILABLE instance', () => {
  const deps = () => world.deps({ instanceWait: QUICK });

  it('passes the preflight check of every job; its login line names the instance', async () => {
    const shared = deps();
    for (const job of JOB_NAMES) {
      const report = (await invoke(shared, job, { check: true })) as CheckReport;
      expect(report.status, JSON.stringify(report.items)).toBe('pass');
      expect(report.items[0]).toMatchObject({
        check: 'login',
        status: 'pass',
        detail: `logged in as role "${world.appId}" to database "${world.db.name}" on Lakebase instance ${INSTANCE} (localhost)`,
      });
      expect(report.items.find((i) => i.check === 'tls')).toMatchObject({ status: 'pass' });
    }
  });

  it('runs all four jobs as the service principal; a warm container reads the instance no more', async () => {
    // One handler per function, as four warm Lambda containers keep them.
    const handlers = new Map(
      JOB_NAMES.map((job) => [job, makeHandler(jobNamed(job), { connector: deps() })] as const),
    );
    const round = async () => {
      const reports: JobReport[] = [];
      for (const job of ['partition-manager', 'tiering', 'retention', 'rollup-refresh'] as const) {
        const handler = handlers.get(job);
        if (!handler) throw new Error(job);
        reports.push((await handler(schedulerEvent(job), lambdaContext(job))) as JobReport);
      }
      return reports;
    };
    world.fake.resetCalls();
    const reports = await round();
    expect(reports.map((r) => [r.job, r.status])).toEqual([
      ['partition-manager', 'ok'],
      ['tiering', 'ok'],
      ['retention', 'ok'],
      ['rollup-refresh', 'ok'],
    ]);
    expect(reports[1]?.totals['chunksTiered']).toBeGreaterThan(0);
    expect(reports[2]?.totals['chunksDropped']).toBeGreaterThan(0);
    expect(reports[3]?.items).toMatchObject([{ name: 'turbines_hourly', outcome: 'refreshed' }]);
    const count = (route: string) => world.fake.calls.filter((c) => c.route === route).length;
    expect([count('getInstance'), count('instanceCredentials')]).toEqual([4, 4]); // one per function
    expect(world.fake.calls.filter((c) => /Branches|Endpoint|^credentials$/.test(c.route))).toEqual([]);

    world.fake.resetCalls();
    expect((await round()).map((r) => r.status)).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(count('getInstance')).toBe(0); // the host is kept
    // The four functions share one Postgres role, whose password the fake sets at each mint: a
    // function's kept token was replaced by the next one's, so it is refused once and minted anew.
    expect(count('instanceCredentials')).toBeLessThanOrEqual(4);
    // One function invoked again at once: its kept credential logs in, nothing is asked.
    world.fake.resetCalls();
    const rollups = handlers.get('rollup-refresh');
    await rollups?.(schedulerEvent('rollup-refresh'), lambdaContext('rollup-refresh'));
    expect(world.fake.calls.filter((c) => c.route !== 'token')).toEqual([]);
    expect(leakedSecrets(world, [...output, ...world.log.lines])).toEqual([]);
  });
});

describe('an instance that is not AVAILABLE', () => {
  it('STOPPED: every job fails with INSTANCE_STOPPED, logged and counted under that code, and changes nothing', async () => {
    world.fake.instances[INSTANCE] = { state: 'STOPPED', host: 'localhost' };
    try {
      const before = await stateFingerprint(world.admin);
      const minted = world.fake.minted.length;
      output.length = 0;
      for (const job of JOB_NAMES) {
        await expect(invoke(world.deps({ instanceWait: QUICK }), job)).rejects.toMatchObject({
          code: 'INSTANCE_STOPPED',
          message: expect.stringContaining(`instance ${INSTANCE} is stopped`),
        });
      }
      expect(world.fake.minted.length).toBe(minted);
      expect(await stateFingerprint(world.admin)).toBe(before);
      const failures = output.filter((l) => l.includes('"errorCode"')).map((l) => JSON.parse(l).errorCode);
      expect(failures).toEqual(JOB_NAMES.map(() => 'INSTANCE_STOPPED'));
      const counted = output
        .filter((l) => l.includes('"_aws"'))
        .map((l) => JSON.parse(l))
        .filter((e) => e.RunFailed !== undefined);
      expect(counted.map((e) => e.code)).toEqual(JOB_NAMES.map(() => 'INSTANCE_STOPPED'));

      // The check says the same, on its login line.
      const check = (await invoke(world.deps({ instanceWait: QUICK }), 'tiering', { check: true }).then(
        () => undefined,
        (e: { report?: CheckReport }) => e.report,
      )) as CheckReport;
      expect(check.items).toMatchObject([
        {
          check: 'login',
          status: 'fail',
          detail: expect.stringMatching(/^INSTANCE_STOPPED: .*instance lakets-provisioned is stopped/),
          fix: expect.stringContaining('docs/provisioned.md'),
        },
      ]);
      expect(leakedSecrets(world, output)).toEqual([]);
    } finally {
      world.fake.instances[INSTANCE] = { state: 'AVAILABLE', host: 'localhost' };
    }
  });

  it("STARTING: waited for within the invocation's time, then the job runs", async () => {
    world.fake.instances[INSTANCE] = {
      state: 'AVAILABLE',
      host: 'localhost',
      upcoming: ['STARTING', 'STARTING'],
    };
    const report = (await invoke(world.deps({ instanceWait: QUICK }), 'rollup-refresh')) as JobReport;
    expect(report.status).toBe('ok');
    const waits = world.log.lines.filter((l) => l.includes('waiting for the Lakebase instance'));
    expect(waits.map((l) => JSON.parse(l).state)).toEqual(['STARTING', 'STARTING']);
  });
});

describe('npm run check and npm run invoke with LAKETS_LAKEBASE_INSTANCE', () => {
  // A local run: the service principal's client id and secret instead of Secrets Manager.
  const local = (instance: string) => ({
    LAKETS_LAKEBASE_INSTANCE: instance,
    DATABRICKS_HOST: world.fake.url,
    DATABRICKS_CLIENT_ID: world.appId,
    DATABRICKS_CLIENT_SECRET: world.clientSecret,
  });

  it('reach the instance the way the handlers do: a stopped one is the login failure of the check, and the error of the run', async () => {
    world.fake.instances.parked = { state: 'STOPPED', host: 'localhost' };
    world.fake.resetCalls();
    const check = await runScript('check.ts', ['tiering', '--json'], local('parked'));
    expect(check.code).toBe(1);
    expect((JSON.parse(check.stdout) as CheckReport).items).toMatchObject([
      {
        check: 'login',
        status: 'fail',
        detail: expect.stringMatching(/^INSTANCE_STOPPED: Lakebase database instance parked is stopped/),
      },
    ]);
    const invoked = await runScript('invoke.ts', ['retention'], local('parked'));
    expect(invoked.code).toBe(1);
    expect(invoked.stderr).toMatch(
      /^invoke: Lakebase database instance parked is stopped \(state STOPPED\)/m,
    );
    expect(world.fake.calls.filter((c) => c.route === 'getInstance').map((c) => c.path)).toEqual([
      '/api/2.0/database/instances/parked',
      '/api/2.0/database/instances/parked',
    ]);
    expect(world.fake.count('instanceCredentials')).toBe(0);
    expect(leakedSecrets(world, [check.stdout, check.stderr, invoked.stdout, invoked.stderr])).toEqual([]);
  });

  it('refuse a project and an instance together, in one line, asking nothing of Databricks', async () => {
    world.fake.resetCalls();
    const check = await runScript('check.ts', [], { ...local(INSTANCE), LAKETS_PROJECT: 'lakets-prod' });
    expect(check.code).toBe(2);
    expect(check.stderr.trim()).toBe(
      'npm run check: LAKETS_PROJECT and LAKETS_LAKEBASE_INSTANCE are both set: set exactly one, LAKETS_PROJECT for a Lakebase Autoscaling project or LAKETS_LAKEBASE_INSTANCE for a Provisioned instance',
    );
    expect(world.fake.calls).toEqual([]);
  });
});
