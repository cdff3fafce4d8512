// `{"check": true}` through the deployed handler on the Databricks path: it connects exactly as the
// job does (secret, OAuth, endpoint, minted credential, verified TLS) and runs no job.
import { beforeAll, expect, it, vi } from 'vitest';
import { installWal2delta, syncCaughtUp } from '../../dev/fake-lakehouse-sync.ts';
import { lambdaContext } from '../../dev/lambda-context.ts';
import { applyGrants } from '../../lib/grants.ts';
import { makeHandler } from '../../lib/job-handler.ts';
import { jobNamed } from '../../lib/jobs/catalog.ts';
import type { CheckReport } from '../../lib/jobs/check.ts';
import { installLakets } from '../../lib/schema/installer.ts';
import { leakedSecrets, startWorld, type World } from '../lakebase/world.ts';
import { metricsTable, stateFingerprint } from '../support/lakets-fixtures.ts';

let world: World;
const output: string[] = [];

beforeAll(async () => {
  world = await startWorld();
  await installLakets(world.admin);
  await installWal2delta(world.admin);
  await metricsTable(world.admin, 'plant', 3);
  await world.admin.query(
    `SELECT lakets.add_tiered_retention_policy('plant', interval '1 day', interval '2 days')`,
  );
  await world.admin.query(`SELECT lakets.enable_sync('plant')`);
  await syncCaughtUp(world.admin, 'plant');
  await applyGrants(world.admin, world.appId);
  Object.assign(process.env, world.env(), { POWERTOOLS_DEV: 'true', POWERTOOLS_METRICS_DISABLED: 'true' });
  for (const level of ['log', 'info', 'warn', 'error', 'debug'] as const) {
    vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      output.push(args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '));
    });
  }
});

it('passes for every job over verified TLS as the service principal’s role, and changes nothing', async () => {
  const before = await stateFingerprint(world.admin);
  for (const job of ['partition-manager', 'tiering', 'retention', 'rollup-refresh'] as const) {
    const report = (await makeHandler(jobNamed(job), { connector: world.deps() })(
      { check: true },
      lambdaContext(job),
    )) as CheckReport;
    expect(report.status, JSON.stringify(report.items)).toBe('pass');
    expect(report.role).toBe(world.appId);
    expect(report.items.find((i) => i.check === 'tls')).toMatchObject({ status: 'pass' });
    expect(report.totals.warn).toBe(0);
  }
  expect(await stateFingerprint(world.admin)).toBe(before);
  expect(leakedSecrets(world, output)).toEqual([]);
});
