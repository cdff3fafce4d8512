// `{"check": true}` through the deployed handler on the Databricks path: it connects exactly as the
// job does (secret, OAuth, endpoint, minted credential, verified TLS) and runs no job.
import { beforeAll, expect, it } from 'vitest';
import { installWal2delta, syncCaughtUp } from '../../dev/fake-lakehouse-sync.ts';
import { lambdaContext } from '../../dev/lambda-context.ts';
import { applyGrants } from '../../lib/grants.ts';
import {
  CHECK_ERROR_ITEMS,
  CHECK_ERROR_LINE_CHARS,
  CheckFailed,
  makeHandler,
} from '../../lib/job-handler.ts';
import { jobNamed } from '../../lib/jobs/catalog.ts';
import type { CheckReport } from '../../lib/jobs/check.ts';
import { installLakets } from '../../lib/schema/installer.ts';
import { leakedSecrets, startWorld, type World } from '../lakebase/world.ts';
import { captureConsole } from '../support/console.ts';
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
  captureConsole(output);
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

it('a failed check is a Lambda error listing every failing item with its fix, bounded, the whole report in the log record', async () => {
  // Twelve schemas, each with a ChronoTable, created after the grants: twelve items to fix.
  const schemas = Array.from({ length: 12 }, (_, n) => `chk_s${String(n + 1).padStart(2, '0')}`);
  for (const s of schemas) {
    await world.admin.query(
      `CREATE SCHEMA ${s}; CREATE TABLE ${s}.probe (ts timestamptz NOT NULL, v float8)`,
    );
    await world.admin.query(`SELECT lakets.create_chronotable('probe', 'ts', interval '1 day', $1)`, [s]);
  }
  const logged = output.length;
  try {
    const error = await makeHandler(jobNamed('partition-manager'), { connector: world.deps() })(
      { check: true },
      lambdaContext('partition-manager'),
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CheckFailed);
    const { message, report } = error as CheckFailed;
    const failed = report.items.filter((i) => i.status === 'fail');
    expect(failed.map((i) => i.check)).toEqual(schemas.map((s) => `schema usage: ${s}`));
    const lines = message.split('\n');
    expect(lines[0]).toBe(
      `partition-manager check failed: 12 of ${report.items.length} checks failed, each with its fix:`,
    );
    // The first ten, in the report's order, each with its fix: the statement to run is there.
    expect(lines.slice(1, -1)).toEqual(
      failed.slice(0, CHECK_ERROR_ITEMS).map((i, n) => `${n + 1}. ${i.check}: ${i.detail}; fix: ${i.fix}`),
    );
    expect(lines[1]).toContain(`GRANT USAGE ON SCHEMA "chk_s01" TO "${world.appId}";`);
    expect(lines.at(-1)).toBe(
      '… and 2 more: the full report is in the log record "partition-manager check fail" (its report field)',
    );
    expect(lines.every((l) => l.length <= CHECK_ERROR_LINE_CHARS)).toBe(true);
    // The log record holds the whole report: all twelve.
    const record = output.slice(logged).find((l) => l.includes('"partition-manager check fail"'));
    expect(record).toBeDefined();
    const fromLog = JSON.parse(record ?? '{}') as { errorCode: string; report: CheckReport };
    expect(fromLog.errorCode).toBe('CHECK_FAILED');
    expect(fromLog.report.items.filter((i) => i.status === 'fail')).toHaveLength(12);
    expect(leakedSecrets(world, [message, ...output])).toEqual([]);
  } finally {
    for (const s of schemas) {
      await world.admin.query(`SELECT lakets.drop_chronotable('probe', $1)`, [s]).catch(() => {});
      await world.admin.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
    }
  }
});
