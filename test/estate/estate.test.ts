import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { giveEveryJobWork } from '../../dev/chronotable.ts';
import type { FakeProject } from '../../dev/fake-databricks.ts';
import { installWal2delta } from '../../dev/fake-lakehouse-sync.ts';
import { type FakeWorkspace, startFakeWorkspace } from '../../dev/fake-workspace.ts';
import { lambdaContext } from '../../dev/lambda-context.ts';
import type { TargetEntry } from '../../lib/estate.ts';
import { applyGrants } from '../../lib/grants.ts';
import { makeHandler } from '../../lib/job-handler.ts';
import { JOB_NAMES, jobNamed } from '../../lib/jobs/catalog.ts';
import type { CheckReport } from '../../lib/jobs/check.ts';
import type { JobName, JobReport } from '../../lib/jobs/types.ts';
import type { ConnectorDeps } from '../../lib/lakebase/index.ts';
import { installLakets } from '../../lib/schema/installer.ts';
import { captureConsole } from '../support/console.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { metricsTable, stateFingerprint } from '../support/lakets-fixtures.ts';
import { runScript } from '../support/scripts.ts';

const QUICK = { budgetMs: 2_000, baseDelayMs: 20, maxDelayMs: 100, reserveMs: 15_000 };
const project = (id: string): Record<string, FakeProject> => ({
  [id]: {
    branches: [
      {
        id: 'production',
        default: true,
        endpoints: [{ id: 'primary', type: 'ENDPOINT_TYPE_READ_WRITE', host: 'localhost' }],
      },
    ],
  },
});

let dbs: Record<'alpha' | 'beta' | 'gamma', TestDatabase>;
let wsA: FakeWorkspace; // alpha (project) and gamma (instance), one service principal
let wsB: FakeWorkspace; // beta (project), another service principal on another host
let targets: TargetEntry[];
const output: string[] = [];
const roles: string[] = [];
let admin: Awaited<ReturnType<TestDatabase['connect']>>;

async function lakeTsDatabase(db: TestDatabase): Promise<void> {
  const c = await db.connect();
  await installLakets(c);
  await installWal2delta(c);
  await metricsTable(c, 'turbines', 10);
  await giveEveryJobWork(c, 'turbines');
}

beforeAll(async () => {
  dbs = { alpha: await freshDatabase(), beta: await freshDatabase(), gamma: await freshDatabase() };
  admin = await dbs.alpha.connect();
  await Promise.all(Object.values(dbs).map(lakeTsDatabase));
  wsA = await startFakeWorkspace({
    admin,
    projects: project('alpha'),
    instances: { gamma: { state: 'AVAILABLE', host: 'localhost' } },
    secretPrefix: 'esta',
  });
  wsB = await startFakeWorkspace({ admin, projects: project('beta'), secretPrefix: 'estb' });
  roles.push(wsA.appId, wsB.appId);
  // One Secrets Manager (the account's) holds both service principals' secrets.
  wsA.sm.setSecret(wsB.secretId, JSON.stringify({ client_id: wsB.appId, client_secret: wsB.clientSecret }));
  for (const [name, db] of Object.entries(dbs)) {
    const c = await db.connect();
    await applyGrants(c, name === 'beta' ? wsB.appId : wsA.appId);
  }
  targets = [
    {
      name: 'alpha',
      databricksHost: wsA.fake.url,
      spSecretName: wsA.secretId,
      lakebaseProject: 'alpha',
      database: dbs.alpha.name,
    },
    {
      name: 'beta',
      databricksHost: wsB.fake.url,
      spSecretName: wsB.secretId,
      lakebaseProject: 'beta',
      database: dbs.beta.name,
    },
    {
      name: 'gamma',
      databricksHost: wsA.fake.url,
      spSecretArn: wsA.sm.arn(wsA.secretId),
      lakebaseInstance: 'gamma',
      database: dbs.gamma.name,
    },
  ];
  expect(new URL(wsA.fake.url).host).not.toBe(new URL(wsB.fake.url).host);
  Object.assign(process.env, { POWERTOOLS_DEV: 'true', POWERTOOLS_METRICS_DISABLED: 'false' });
  captureConsole(output);
});

afterAll(async () => {
  vi.restoreAllMocks();
  await wsA?.close();
  await wsB?.close();
  for (const role of roles) {
    await admin.query(`DROP OWNED BY "${role}"`).catch(() => {});
    await admin.query(`DROP ROLE IF EXISTS "${role}"`).catch(() => {});
  }
});

// Deps of one warm container: the same object for every invocation (as the deployed module keeps it).
function containerDeps(): ConnectorDeps {
  return {
    secretsManager: wsA.sm.client(),
    port: dbs.alpha.info.port,
    extraCa: dbs.alpha.info.caPem,
    retry: { budgetMs: 3_000, baseDelayMs: 20, maxDelayMs: 200 },
    instanceWait: QUICK,
  };
}

/** The four functions of one deployment, each a warm container. */
function functions() {
  const env = { LAKETS_TARGETS: JSON.stringify(targets) };
  return new Map(
    JOB_NAMES.map((job) => [job, makeHandler(jobNamed(job), { connector: containerDeps(), env })] as const),
  );
}

type Outcome = {
  target: string;
  job: JobName;
  status?: string;
  code?: string;
  report?: JobReport;
  ms: number;
};

async function run(
  fns: ReturnType<typeof functions>,
  job: JobName,
  target: string,
  extra: Record<string, unknown> = {},
): Promise<Outcome> {
  const handler = fns.get(job);
  if (!handler) throw new Error(job);
  const started = performance.now();
  const ms = () => performance.now() - started;
  try {
    const report = (await handler({ target, ...extra }, lambdaContext(job))) as JobReport;
    return { target, job, status: report.status, report, ms: ms() };
  } catch (error) {
    return { target, job, code: (error as { code?: string }).code ?? (error as Error).name, ms: ms() };
  }
}

const records = () =>
  output.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('an estate of three databases', () => {
  it('the broken target (instance STOPPED) fails alone, with its own code, log record and metric; the others end ok', async () => {
    const fns = functions();
    wsA.fake.instances['gamma'] = { state: 'STOPPED', host: 'localhost' };
    const before = await stateFingerprint(await dbs.gamma.connect());
    output.length = 0;
    const outcomes: Outcome[] = [];
    for (const job of JOB_NAMES) {
      for (const target of ['alpha', 'gamma', 'beta']) outcomes.push(await run(fns, job, target));
    }
    expect(outcomes.map((o) => [o.job, o.target, o.status ?? o.code])).toEqual(
      JOB_NAMES.flatMap((job) => [
        [job, 'alpha', 'ok'],
        [job, 'gamma', 'INSTANCE_STOPPED'],
        [job, 'beta', 'ok'],
      ]),
    );
    // Each report says which target it is for, and did the work of that database.
    for (const o of outcomes.filter((x) => x.report)) expect(o.report?.target).toBe(o.target);
    const tiered = outcomes.filter((o) => o.job === 'tiering').map((o) => o.report?.totals['chunksTiered']);
    expect(tiered[0]).toBeGreaterThan(0);
    expect(tiered[2]).toBe(tiered[0]); // the same fixture in each database, the same work
    // Nothing changed in the broken target's database.
    expect(await stateFingerprint(await dbs.gamma.connect())).toBe(before);

    // Its failure records and RunFailed metrics name it; none of the good targets has any.
    const failures = records().filter((r) => r['errorCode'] !== undefined);
    expect(failures.map((r) => [r['service'], r['target'], r['errorCode']])).toEqual(
      JOB_NAMES.map((job) => [job, 'gamma', 'INSTANCE_STOPPED']),
    );
    const failed = records().filter((r) => r['RunFailed'] !== undefined);
    expect(failed.map((r) => [r['service'], r['target'], r['code']])).toEqual(
      JOB_NAMES.map((job) => [job, 'gamma', 'INSTANCE_STOPPED']),
    );
    for (const r of failed) {
      expect(
        (r['_aws'] as { CloudWatchMetrics: { Dimensions: string[][] }[] }).CloudWatchMetrics[0]?.Dimensions,
      ).toEqual([['service', 'target', 'code']]);
    }
    // Every record of a run names its target; the good targets' report metrics carry theirs.
    const durations = records().filter((r) => r['RunDuration'] !== undefined);
    expect(new Set(durations.map((r) => r['target']))).toEqual(new Set(['alpha', 'beta']));
    for (const r of records().filter((x) => x['service'] !== undefined && x['_aws'] === undefined)) {
      expect(['alpha', 'beta', 'gamma']).toContain(r['target']);
    }
    // The broken target asked nothing of the other workspace, and waited for nothing.
    expect(wsB.fake.calls.some((c) => c.route === 'getInstance')).toBe(false);
    // A stopped instance is not waited for (the jobs never start one): each of its invocations ends
    // at once, so a container handling the good targets next is not held up by it.
    for (const o of outcomes.filter((x) => x.target === 'gamma')) expect(o.ms).toBeLessThan(QUICK.budgetMs);
  });

  it('a target whose role has no grants in its database fails alone, under its own name; the others end ok', async () => {
    // A fourth database, set up like the others but never granted to the service principal.
    const delta = await freshDatabase();
    await lakeTsDatabase(delta);
    wsB.fake.projects['delta'] = project('delta')['delta'] as FakeProject;
    const estate = [
      ...targets.slice(0, 2),
      {
        name: 'delta',
        databricksHost: wsB.fake.url,
        spSecretName: wsB.secretId,
        lakebaseProject: 'delta',
        database: delta.name,
      },
    ];
    const env = { LAKETS_TARGETS: JSON.stringify(estate) };
    const fns = new Map(
      JOB_NAMES.map((job) => [job, makeHandler(jobNamed(job), { connector: containerDeps(), env })] as const),
    );
    const before = await stateFingerprint(await delta.connect());
    output.length = 0;
    const outcomes: Outcome[] = [];
    for (const job of JOB_NAMES) {
      for (const target of ['delta', 'alpha', 'beta']) outcomes.push(await run(fns, job, target));
    }
    const good = outcomes.filter((o) => o.target !== 'delta');
    expect(good.map((o) => o.status ?? o.code)).toEqual(good.map(() => 'ok'));
    const bad = outcomes.filter((o) => o.target === 'delta');
    expect(bad.every((o) => o.status !== 'ok')).toBe(true);
    expect(await stateFingerprint(await delta.connect())).toBe(before);
    const failures = records().filter((r) => r['errorCode'] !== undefined);
    expect(new Set(failures.map((r) => r['target']))).toEqual(new Set(['delta']));
    expect(failures).toHaveLength(bad.filter((o) => o.code).length);
    const failed = records().filter((r) => r['RunFailed'] !== undefined);
    expect(new Set(failed.map((r) => r['target']))).toEqual(new Set(['delta']));
    expect(failed.map((r) => r['code'])).toEqual(failures.map((r) => r['errorCode']));
    // Each job of the broken target is a failed run (its report logged), counted as JOB_FAILED.
    expect(bad.map((o) => o.code)).toEqual(JOB_NAMES.map(() => 'JobFailed'));
    expect(failures.map((r) => [r['service'], r['errorCode']])).toEqual(
      JOB_NAMES.map((j) => [j, 'JOB_FAILED']),
    );
    expect(failures.map((r) => (r['report'] as { target?: string } | undefined)?.target)).toEqual(
      JOB_NAMES.map(() => 'delta'),
    );
  });

  it('a Provisioned target runs all four jobs too, once its instance is available', async () => {
    wsA.fake.instances['gamma'] = { state: 'AVAILABLE', host: 'localhost' };
    const fns = functions();
    const outcomes: Outcome[] = [];
    for (const job of JOB_NAMES) outcomes.push(await run(fns, job, 'gamma'));
    expect(outcomes.map((o) => o.status ?? o.code)).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(outcomes[1]?.report?.totals['chunksTiered']).toBeGreaterThan(0);
  });

  it('a warm container handling alpha, beta, alpha, gamma: a credential per target, a shared secret read once', async () => {
    const fns = functions();
    const fn = 'rollup-refresh';
    wsA.fake.resetCalls();
    wsB.fake.resetCalls();
    const reads = () =>
      wsA.sm.calls.filter((c) => c.target.endsWith('GetSecretValue')).map((c) => c.secretId);
    const readsBefore = reads().length;
    output.length = 0;

    expect((await run(fns, fn, 'alpha')).status).toBe('ok');
    expect([wsA.fake.count('credentials'), wsB.fake.count('credentials')]).toEqual([1, 0]);
    expect((await run(fns, fn, 'beta')).status).toBe('ok');
    // beta's credential is minted by its own workspace for its own service principal: alpha's is never offered.
    expect([wsA.fake.count('credentials'), wsB.fake.count('credentials')]).toEqual([1, 1]);
    expect(wsB.fake.minted.at(-1)?.identity).toBe(wsB.appId);
    expect((await run(fns, fn, 'alpha')).status).toBe('ok');
    // alpha's kept credential logs in again: nothing minted, nothing resolved.
    expect([wsA.fake.count('credentials'), wsB.fake.count('credentials')]).toEqual([1, 1]);
    expect(wsA.fake.count('listBranches')).toBe(1);
    expect((await run(fns, fn, 'gamma')).status).toBe('ok');
    expect(wsA.fake.count('instanceCredentials')).toBe(1);

    // alpha and gamma share workspace A's secret (by name and by ARN: two ids, so two reads at most);
    // beta's is its own. Nothing is read twice under one id.
    const ids = reads().slice(readsBefore);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toContain(wsB.secretId);
    expect(ids.filter((id) => id === wsA.secretId)).toHaveLength(1);

    // Each invocation's records carry its own target only (none leaks into the next).
    const byRequest = new Map<string, Set<unknown>>();
    for (const r of records().filter((x) => x['function_request_id'])) {
      const id = String(r['function_request_id']);
      byRequest.set(id, (byRequest.get(id) ?? new Set()).add(r['target']));
    }
    expect([...byRequest.values()].map((s) => [...s])).toEqual([['alpha'], ['beta'], ['alpha'], ['gamma']]);
  });

  it('two targets naming one secret the same way read it once per container', async () => {
    // gamma by name this time: alpha and gamma then share one id.
    const shared = targets.map((t) =>
      t.name === 'gamma' ? { ...t, spSecretArn: undefined, spSecretName: wsA.secretId } : t,
    );
    const env = { LAKETS_TARGETS: JSON.stringify(shared) };
    const handler = makeHandler(jobNamed('partition-manager'), { connector: containerDeps(), env });
    const before = wsA.sm.calls.length;
    for (const target of ['alpha', 'gamma', 'alpha', 'gamma']) {
      const report = (await handler({ target }, lambdaContext('partition-manager'))) as JobReport;
      expect(report.status).toBe('ok');
    }
    expect(wsA.sm.calls.slice(before).map((c) => c.secretId)).toEqual([wsA.secretId]);
  });

  it('a payload without a target, or with an unknown one, is one line listing the targets; nothing is asked', async () => {
    const fns = functions();
    wsA.fake.resetCalls();
    wsB.fake.resetCalls();
    const smBefore = wsA.sm.calls.length;
    const handler = fns.get('tiering');
    if (!handler) throw new Error('tiering');
    await expect(handler({}, lambdaContext('tiering'))).rejects.toThrow(
      /^this deployment maintains 3 targets: name one, e.g. \{"target": "alpha"\}; targets: alpha, beta, gamma$/,
    );
    await expect(handler({ target: 'delta', dryRun: true }, lambdaContext('tiering'))).rejects.toThrow(
      /^target "delta" is not a target of this deployment; targets: alpha, beta, gamma$/,
    );
    await expect(handler({ target: 'alpha', bogus: 1 }, lambdaContext('tiering'))).rejects.toThrow(
      /unknown field "bogus" in the tiering payload; allowed: .*target/,
    );
    await expect(handler({ target: 5 }, lambdaContext('tiering'))).rejects.toThrow(
      /"target" must be a target's name/,
    );
    expect(wsA.fake.calls.length + wsB.fake.calls.length).toBe(0);
    expect(wsA.sm.calls.length).toBe(smBefore);
    const failed = records().filter((r) => r['RunFailed'] !== undefined && r['service'] === 'tiering');
    expect(failed.slice(-4).map((r) => [r['target'], r['code']])).toEqual([
      ['-', 'PAYLOAD_INVALID'],
      ['-', 'PAYLOAD_INVALID'],
      ['alpha', 'PAYLOAD_INVALID'],
      ['-', 'PAYLOAD_INVALID'],
    ]);
  });

  it('{"target": name, "check": true}: the preflight check of that target', async () => {
    const fns = functions();
    const report = (await fns.get('retention')?.(
      { target: 'beta', check: true },
      lambdaContext('retention'),
    )) as CheckReport & { target: string };
    expect(report).toMatchObject({ status: 'pass', target: 'beta', database: dbs.beta.name });
  });
});

describe('npm run check and npm run invoke with LAKETS_TARGETS', () => {
  // As processes: the real Secrets Manager client pointed at the fake by the SDK's own variable.
  const run = (script: string, args: string[]) =>
    runScript(script, args, {
      LAKETS_TARGETS: JSON.stringify(targets),
      AWS_ENDPOINT_URL_SECRETS_MANAGER: wsA.sm.url,
      AWS_REGION: wsA.sm.region,
      AWS_ACCESS_KEY_ID: 'AKIDLOCALFAKE',
      AWS_SECRET_ACCESS_KEY: 'local-fake-secret',
    });

  it("act on the named target only: a stopped instance is its check's login failure and its run's error", async () => {
    wsA.fake.instances['gamma'] = { state: 'STOPPED', host: 'localhost' };
    try {
      wsA.fake.resetCalls();
      wsB.fake.resetCalls();
      const check = await run('check.ts', ['tiering', '--target', 'gamma', '--json']);
      expect(check.code).toBe(1);
      expect(JSON.parse(check.stdout)).toMatchObject({
        items: [
          {
            check: 'login',
            status: 'fail',
            detail: expect.stringMatching(/^INSTANCE_STOPPED: .*instance gamma is stopped/),
          },
        ],
      });
      const invoked = await run('invoke.ts', ['retention', '{"target": "gamma"}']);
      expect(invoked.code).toBe(1);
      expect(invoked.stderr).toMatch(/^invoke: Lakebase database instance gamma is stopped/m);
      expect(wsA.fake.calls.filter((c) => c.route === 'getInstance').map((c) => c.path)).toEqual([
        '/api/2.0/database/instances/gamma',
        '/api/2.0/database/instances/gamma',
      ]);
      expect(wsB.fake.calls).toEqual([]);
    } finally {
      wsA.fake.instances['gamma'] = { state: 'AVAILABLE', host: 'localhost' };
    }
  });

  it('without a target, or with an unknown one: one line listing the targets, nothing asked', async () => {
    wsA.fake.resetCalls();
    const check = await run('check.ts', []);
    expect(check.code).toBe(2);
    expect(check.stderr.trim()).toBe(
      'npm run check: this deployment maintains 3 targets: name one, e.g. {"target": "alpha"}; targets: alpha, beta, gamma',
    );
    const unknown = await run('check.ts', ['--target', 'delta']);
    expect(unknown.stderr.trim()).toBe(
      'npm run check: target "delta" is not a target of this deployment; targets: alpha, beta, gamma',
    );
    const invoked = await run('invoke.ts', ['tiering']);
    expect(invoked.code).toBe(1);
    expect(invoked.stderr).toMatch(/^invoke: this deployment maintains 3 targets: name one/m);
    expect(wsA.fake.calls).toEqual([]);
  });
});
