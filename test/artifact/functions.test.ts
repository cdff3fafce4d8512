// The deployed artifact, run as Lambda runs it: each function's synthesized asset folder with the
// template's Handler and Environment, under AWS's runtime interface client, against our Runtime API
// stand-in, the Databricks and Secrets Manager fakes and the test cluster. What the TypeScript tests
// cannot see: the bundle loads (its `require` banner, its ESM), init succeeds, every line it writes is
// a JSON record CloudWatch can parse, and warm invocations reuse what the container resolved.
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installWal2delta, syncCaughtUp } from '../../dev/fake-lakehouse-sync.ts';
import { schedulerEvent } from '../../dev/lambda-context.ts';
import {
  REQUIRE_RUNTIME_CLIENT,
  ROLE_CREDENTIALS,
  type RunningFunction,
  runtimeClientMissing,
  runtimeClientRequired,
  type Synthesized,
  startFunction,
  synthFunctions,
} from '../../dev/lambda-runner.ts';
import { grantStatements } from '../../lib/grants.ts';
import { JOB_NAMES, type JobName } from '../../lib/jobs/catalog.ts';
import { installLakets } from '../../lib/schema/installer.ts';
import { leakedSecrets, startWorld, type World } from '../lakebase/world.ts';
import { metricsTable } from '../support/lakets-fixtures.ts';
import { type FunctionWorld, functionWorld } from './lambda.ts';

let world: World;
let fakes: FunctionWorld;
let synthesized: Synthesized;
const RESOLUTION = ['listBranches', 'listEndpoints', 'getEndpoint'];

// biome-ignore lint/suspicious/noExplicitAny: log records and EMF documents are untyped JSON
type Json = Record<string, any>;

/** The lines written since `from`, each parsed (throws on a line that is not a JSON object). */
function records(fn: RunningFunction, from = 0): Json[] {
  return fn.lines.slice(from).map(({ stream, text }) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error(`${fn.fn.job} wrote a line that is not JSON on ${stream}: ${text.slice(0, 300)}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new Error(`${fn.fn.job} wrote JSON that is not an object on ${stream}: ${text.slice(0, 300)}`);
    }
    return parsed as Json;
  });
}

const isEmf = (r: Json) => typeof r['_aws'] === 'object';
const isLogRecord = (r: Json) =>
  typeof r['level'] === 'string' && typeof r['message'] === 'string' && typeof r['timestamp'] === 'string';

// The runtime client's own record of an invocation that threw (the template asks for JSON logs).
const isRuntimeError = (r: Json) =>
  typeof r['requestId'] === 'string' && r['level'] === 'ERROR' && typeof r['message']?.errorType === 'string';

function runFailed(rs: Json[]): Json[] {
  return rs.filter((r) => isEmf(r) && r['RunFailed'] !== undefined);
}

// aws-lambda-ric is an optional dependency that builds from source on Linux only (Lambda's OS): where
// it is missing this file is one skipped test and one line saying why; CI, which installs the
// toolchain, sets LAKETS_REQUIRE_RUNTIME_CLIENT=1 so that a missing client fails instead.
const missing = runtimeClientMissing();
if (missing === undefined) {
  describe('the synthesized functions under aws-lambda-ric', artifactSuite);
} else if (runtimeClientRequired()) {
  it('has the runtime client it needs', () => {
    throw new Error(`test/artifact cannot run (${REQUIRE_RUNTIME_CLIENT}=1): ${missing}`);
  });
} else {
  console.warn(`test/artifact skipped: ${missing}`);
  it.skip(`test/artifact skipped: ${missing}`);
}

function artifactSuite(): void {
  beforeAll(async () => {
    world = await startWorld();
    await installLakets(world.admin);
    await installWal2delta(world.admin);
    for (const s of grantStatements(world.appId)) await world.admin.query(s.sql);
    await metricsTable(world.admin, 'fleet', 12);
    await world.admin.query(
      `SELECT lakets.add_tiered_retention_policy('fleet', interval '3 days', interval '9 days')`,
    );
    await world.admin.query(`SELECT lakets.enable_sync('fleet')`);
    await syncCaughtUp(world.admin, 'fleet');
    fakes = await functionWorld(world);
    synthesized = synthFunctions(fakes.context);
  }, 180_000);

  afterAll(async () => {
    await fakes?.close();
    await world?.close();
    if (synthesized) rmSync(synthesized.outdir, { recursive: true, force: true });
  });

  describe.each(JOB_NAMES)('%s as deployed', (job: JobName) => {
    let fn: RunningFunction;
    const responses: unknown[] = [];
    const timeoutMs = () => fn.fn.timeoutSeconds * 1000;

    beforeAll(async () => {
      const synthesizedFn = synthesized.functions.get(job);
      if (!synthesizedFn) throw new Error(`no function for ${job} in the template`);
      fn = await startFunction(synthesizedFn, fakes.environment);
    }, 60_000);

    afterAll(async () => {
      await fn?.stop();
    });

    it('loads under the runtime client with the template handler and environment', () => {
      expect(fn.fn.handler).toBe('index.handler');
      expect(fn.fn.environment['POWERTOOLS_SERVICE_NAME']).toBe(job);
      expect(fn.init).toMatchObject({ ok: true });
    });

    it('answers a scheduled event with its report, cold', async () => {
      const secretReads = world.sm.count();
      const result = await fn.invoke(schedulerEvent(job), { timeoutMs: timeoutMs() });
      responses.push(result.body);
      expect(result).toMatchObject({ kind: 'response', body: { job, trigger: 'schedule', status: 'ok' } });
      expect(world.sm.count() - secretReads).toBe(1);
      // The report went to the log as one INFO record, and its metrics as EMF.
      const rs = records(fn);
      expect(rs.filter((r) => isLogRecord(r) && r['message'] === `${job} ok`)).toHaveLength(1);
      expect(rs.some((r) => isEmf(r) && r['service'] === job && r['RunDuration'] !== undefined)).toBe(true);
    });

    it('answers warm invocations without a secret read or endpoint resolution', async () => {
      const secretReads = world.sm.count();
      world.fake.resetCalls();
      const result = await fn.invoke(schedulerEvent(job), { timeoutMs: timeoutMs() });
      responses.push(result.body);
      expect(result).toMatchObject({ kind: 'response', body: { job, status: 'ok' } });
      expect(world.sm.count()).toBe(secretReads);
      expect(world.fake.calls.filter((c) => RESOLUTION.includes(c.route))).toEqual([]);
    });

    it('answers a dry run with a dry-run report', async () => {
      const result = await fn.invoke({ dryRun: true }, { timeoutMs: timeoutMs() });
      responses.push(result.body);
      expect(result).toMatchObject({ kind: 'response', body: { job, dryRun: true, status: 'dry-run' } });
    });

    it('ends a bad payload as a Lambda error, with one coded record and RunFailed', async () => {
      const from = fn.lines.length;
      const result = await fn.invoke({ dryRun: 'yes' }, { timeoutMs: timeoutMs() });
      responses.push(result.body);
      expect(result).toMatchObject({ kind: 'error', body: { errorType: 'PayloadError' } });
      const rs = records(fn, from);
      const coded = rs.filter((r) => isLogRecord(r) && r['errorCode'] !== undefined);
      expect(coded).toHaveLength(1);
      expect(coded[0]).toMatchObject({ level: 'ERROR', errorCode: 'PAYLOAD_INVALID', service: job });
      // A single-target deployment is the estate of one target, `default`: every metric names it.
      expect(runFailed(rs)).toMatchObject([
        { RunFailed: 1, code: 'PAYLOAD_INVALID', service: job, target: 'default' },
      ]);
      expect(runFailed(rs)[0]?.['_aws'].CloudWatchMetrics[0].Dimensions).toEqual([
        ['service', 'target', 'code'],
      ]);
    });

    it('ends a refused login as a Lambda error, with one coded record and RunFailed', async () => {
      await world.admin.query(`ALTER ROLE "${world.appId}" NOLOGIN`);
      try {
        const from = fn.lines.length;
        const result = await fn.invoke(schedulerEvent(job), { timeoutMs: timeoutMs() });
        responses.push(result.body);
        expect(result).toMatchObject({ kind: 'error', body: { errorType: 'LakebaseError' } });
        const rs = records(fn, from);
        const coded = rs.filter((r) => isLogRecord(r) && r['errorCode'] !== undefined);
        expect(coded).toHaveLength(1);
        expect(coded[0]).toMatchObject({ level: 'ERROR', errorCode: 'PG_LOGIN_REJECTED', service: job });
        expect(coded[0]?.['message']).toContain(
          'docs/operations.md "Service principal, secret and Postgres role"',
        );
        expect(runFailed(rs)).toMatchObject([{ RunFailed: 1, code: 'PG_LOGIN_REJECTED', service: job }]);
      } finally {
        await world.admin.query(`ALTER ROLE "${world.appId}" LOGIN`);
      }
    });

    it('answers a failing {"check": true} with an error that lists every failing item with its fix', async () => {
      // No EXECUTE on any LakeTS function and no privilege on its registries: each function the job
      // calls and each registry it reads is a failing item of its own.
      await world.admin.query(`REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA lakets FROM "${world.appId}"`);
      await world.admin.query(`REVOKE ALL ON ALL TABLES IN SCHEMA lakets FROM "${world.appId}"`);
      try {
        const from = fn.lines.length;
        const result = await fn.invoke({ check: true }, { timeoutMs: timeoutMs() });
        responses.push(result.body);
        expect(result).toMatchObject({ kind: 'error', body: { errorType: 'CheckFailed' } });
        const message = String((result.body as { errorMessage?: unknown }).errorMessage);
        const logged = records(fn, from).find((r) => isLogRecord(r) && r['errorCode'] === 'CHECK_FAILED') as
          | { report: { items: { check: string; status: string; fix?: string }[] } }
          | undefined;
        const failing = logged?.report.items.filter((i) => i.status === 'fail') ?? [];
        expect(failing.length).toBeGreaterThan(1);
        // What `aws lambda invoke` writes to out.json: every failing item, numbered, with its fix.
        const lines = message.split('\n');
        expect(lines[0]).toContain(`check failed: ${failing.length} of`);
        failing.forEach((item, n) => {
          expect(lines[n + 1]).toContain(`${n + 1}. ${item.check}: `);
          expect(lines[n + 1]).toContain('; fix: ');
        });
      } finally {
        for (const g of grantStatements(world.appId)) await world.admin.query(g.sql);
      }
    });

    it('wrote only JSON records (Powertools or EMF), no secret, and used only the Runtime API', () => {
      const rs = records(fn);
      for (const r of rs) {
        expect(isEmf(r) || isLogRecord(r) || isRuntimeError(r), JSON.stringify(r).slice(0, 300)).toBe(true);
      }
      // Class names survive minification, so the runtime's records name the error class.
      expect(rs.filter(isRuntimeError).map((r) => r['message'].errorType)).toEqual([
        'PayloadError',
        'LakebaseError',
        'CheckFailed',
      ]);
      // Metrics had something to publish on every invocation, failed ones included.
      expect(rs.filter((r) => /no application metrics/i.test(String(r['message'])))).toEqual([]);
      const texts = [...fn.lines.map((l) => l.text), ...responses.map((r) => JSON.stringify(r))];
      expect(leakedSecrets(world, texts)).toEqual([]);
      const roleSecrets = [ROLE_CREDENTIALS.AWS_SECRET_ACCESS_KEY, ROLE_CREDENTIALS.AWS_SESSION_TOKEN];
      expect(texts.filter((t) => roleSecrets.some((secret) => t.includes(secret)))).toEqual([]);
      expect(fn.api.strays).toEqual([]);
    });
  });
}
