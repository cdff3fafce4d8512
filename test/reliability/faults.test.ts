// Faults in the middle of a run, and what the next run makes of them. Each test builds the same
// estate (test/reliability/support/scenario.ts) in the Databricks world's database, where the
// deployed handler runs as the job role (fake Databricks mints its real password), and in a
// control database where the job runs once, uninterrupted. The faulted run must end as a Lambda
// error (or a report saying failed/partial) with one-line reasons; the next clean run must converge
// to the control's state (chunks, partitions, RollUp contents and watermarks, invalidation log),
// and a further clean run must change nothing.
import { isDeepStrictEqual } from 'node:util';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { installWal2delta } from '../../dev/fake-lakehouse-sync.ts';
import { JobFailed } from '../../lib/job-handler.ts';
import { unlimited } from '../../lib/jobs/budget.ts';
import { jobNamed } from '../../lib/jobs/catalog.ts';
import { runJob } from '../../lib/jobs/runner.ts';
import type { JobName, JobReport } from '../../lib/jobs/types.ts';
import { clearWorkspaceClients, createConnector, LakebaseError } from '../../lib/lakebase/index.ts';
import type { World } from '../lakebase/world.ts';
import { freshDatabase } from '../support/db.ts';
import { quote, stateFingerprint } from '../support/lakets-fixtures.ts';
import { captureOutput, label } from './support/capture.ts';
import { figures } from './support/figures.ts';
import {
  coldHandler,
  type Handler,
  handlerDeps,
  invoke,
  isOneLine,
  logicalState,
  noteServer,
  type Outcome,
  registryMismatches,
  scheduled,
  setFunctionEnv,
  startJobWorld,
} from './support/jobs.ts';
import { buildEstate, chunkWhere, dropEstate, type Estate } from './support/scenario.ts';

const fig = figures(
  import.meta.url,
  'backend killed, lock/statement timeouts, expiring credentials, Databricks and Secrets Manager failures',
);
const capture = captureOutput();

let world: World;
let control: pg.Client;
let locker: pg.Client;
let warm: Record<JobName, Handler>;
let n = 0;
let estate: { world: Estate; control: Estate } | undefined;

const JOBS: JobName[] = ['partition-manager', 'tiering', 'retention', 'rollup-refresh'];

beforeAll(async () => {
  world = await startJobWorld();
  setFunctionEnv(world.env());
  const db = await freshDatabase({ lakets: true });
  control = await db.connect();
  await installWal2delta(control);
  locker = await world.db.connect();
  await noteServer(fig, control);
  const deps = handlerDeps(world);
  warm = Object.fromEntries(JOBS.map((j) => [j, coldHandler(j, deps)])) as Record<JobName, Handler>;
});

afterEach(async () => {
  world.fake.clearFaults();
  world.sm.setFault(undefined);
  world.fake.setCredentialTtl(3_600_000);
  await locker.query('ROLLBACK').catch(() => {});
  if (estate) {
    await dropEstate(world.admin, estate.world);
    await dropEstate(control, estate.control);
    estate = undefined;
  }
});

afterAll(async () => {
  await locker?.end().catch(() => {});
  await world.close();
  fig.extra('log lines and messages scanned for secrets', capture.texts.length);
  fig.extra(
    'secret values checked (client secrets, OAuth tokens, minted credentials, DB password)',
    world.secrets().length,
  );
  expect(capture.leaks(world.secrets()).map(label)).toEqual([]);
});

/** The same estate in both databases; the control runs `job` once, uninterrupted. */
async function prepare(
  job: JobName,
): Promise<{ e: Estate; expected: Record<string, unknown>; before: string }> {
  const tag = `f${++n}`;
  fig.count('scenarios');
  const e = await buildEstate(world.admin, tag);
  estate = { world: e, control: await buildEstate(control, tag) };
  const report = await runJob(jobNamed(job), control, scheduled, unlimited);
  expect(report.status).toBe('ok');
  return { e, expected: await logicalState(control), before: await stateFingerprint(world.admin) };
}

/** The next clean run (a warm container), then one more: converged to the control, then stable. */
async function converges(
  job: JobName,
  expected: Record<string, unknown>,
  handler: Handler = warm[job],
): Promise<void> {
  const next = await invoke(handler, job, capture);
  fig.count('jobRuns');
  expect(next.error?.message).toBeUndefined();
  expect(next.report?.status).toBe('ok');
  const state = await logicalState(world.admin);
  const mismatches = await registryMismatches(world.admin);
  const have = state['rowCounts'] as Record<string, number>;
  const want = expected['rowCounts'] as Record<string, number>;
  fig.count(
    'rowsChecked',
    Object.values(have).reduce((a, b) => a + b, 0),
  );
  fig.count(
    'rowsLost',
    Object.entries(want).reduce((a, [part, n]) => a + Math.max(0, n - (have[part] ?? 0)), 0),
  );
  const again = await invoke(handler, job, capture);
  fig.count('jobRuns');
  // Run stamps (last_run_at, last_refreshed_at with refresh_lag 0) move on every run, by design.
  const stable = isDeepStrictEqual(await logicalState(world.admin), state);
  const ok =
    isDeepStrictEqual(state, expected) && mismatches.length === 0 && stable && again.report?.status === 'ok';
  if (!ok) fig.count('inconsistentRuns');
  expect(mismatches).toEqual([]);
  expect(state).toEqual(expected);
  expect(again.report?.status).toBe('ok');
  expect(stable).toBe(true);
}

/** The Lambda error of a faulted run: one line, and every failed item of its report one line too. */
function expectLambdaError(out: Outcome, pattern: RegExp): void {
  fig.count('jobRuns');
  expect(out.error, 'the handler must throw').toBeInstanceOf(Error);
  expect(isOneLine(out.error?.message)).toBe(true);
  expect(out.error?.message).toMatch(pattern);
  if (out.report) expectReasons(out.report);
}

function expectReasons(report: JobReport): void {
  expect(['failed', 'partial']).toContain(report.status);
  if (report.status === 'failed' && report.items.length === 0) expect(isOneLine(report.reason)).toBe(true);
  for (const item of report.items.filter((i) => i.outcome === 'failed'))
    expect(isOneLine(item.reason)).toBe(true);
}

/** Waits until a backend of `where` is blocked on a lock; returns its pid. */
async function blocked(where: string, params: unknown[]): Promise<number> {
  for (let i = 0; i < 400; i++) {
    const { rows } = await world.admin.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND ${where} LIMIT 1`,
      params,
    );
    if (rows[0]) return rows[0].pid;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no backend blocked where ${where}`);
}

/** What to hold so that `job` blocks on it, in the locker session (a transaction left open). */
async function holdLock(job: JobName, e: Estate): Promise<string> {
  await locker.query('BEGIN');
  switch (job) {
    case 'partition-manager':
      // CREATE TABLE ... PARTITION OF waits for the parent: table a is done first, b blocks.
      await locker.query(`LOCK TABLE public.${quote(e.b)} IN ACCESS EXCLUSIVE MODE`);
      return e.b;
    case 'tiering': {
      // tier_chunk locks the chunk's registry row.
      const chunk = await chunkWhere(
        world.admin,
        e.a,
        "m.status = 'active' AND m.range_end <= now() - interval '2 days'",
      );
      await locker.query('SELECT 1 FROM lakets._chunk_metadata WHERE chunk_name = $1 FOR UPDATE', [chunk]);
      return chunk;
    }
    case 'retention': {
      // _drop_chunk locks the partition (its oldest expired chunk) before dropping it.
      const chunk = await chunkWhere(
        world.admin,
        e.a,
        "m.status <> 'dropped' AND m.range_end <= now() - interval '5 days'",
      );
      await locker.query(
        `LOCK TABLE public.${quote(chunk.slice('public.'.length))} IN ACCESS EXCLUSIVE MODE`,
      );
      return chunk;
    }
    case 'rollup-refresh':
      // refresh_rollup rewrites the RollUp's table.
      await locker.query(`LOCK TABLE public.${quote(`_rollup_${e.hourly}`)} IN ACCESS EXCLUSIVE MODE`);
      return e.hourly;
  }
}

describe('the backend is terminated mid-run (pg_terminate_backend from an admin session)', () => {
  it.each(JOBS)('%s: the run fails with a one-line reason, the next run converges', async (job) => {
    const { e, expected } = await prepare(job);
    await holdLock(job, e);
    const running = invoke(warm[job], job, capture);
    const pid = await blocked('application_name = $1 AND usename = $2', [`lakets-${job}`, world.appId]);
    await world.admin.query('SELECT pg_terminate_backend($1)', [pid]);
    fig.fault(`pg_terminate_backend during ${job}`);
    const out = await running;
    await locker.query('ROLLBACK');
    expectLambdaError(out, new RegExp(`^${job} (failed|partial): `));
    expect(out.error).toBeInstanceOf(JobFailed);
    const failed = out.report?.items.filter((i) => i.outcome === 'failed') ?? [];
    expect(failed.length).toBeGreaterThan(0);
    expect(failed[0]?.reason).toMatch(
      /terminating connection due to administrator command \(SQLSTATE 57P01\)/,
    );
    await converges(job, expected);
  });
});

describe('lock_timeout and statement_timeout hit while a job waits for a lock an admin holds', () => {
  const cases = JOBS.flatMap((job) => [
    [job, 'lock_timeout', /canceling statement due to lock timeout \(SQLSTATE 55P03\)/],
    [job, 'statement_timeout', /canceling statement due to statement timeout \(SQLSTATE 57014\)/],
  ]) as Array<[JobName, 'lock_timeout' | 'statement_timeout', RegExp]>;

  it.each(cases)(
    '%s, %s: reported as failed items with the reason, the next run converges',
    async (job, setting, reason) => {
      const { e, expected } = await prepare(job);
      await holdLock(job, e);
      // The job role's own session, opened by the connection library; the short timeout is set on it.
      const connector = createConnector(world.config(), handlerDeps(world));
      const client = await connector.connect({ applicationName: `lakets-${job}` });
      try {
        if (setting === 'lock_timeout') await client.query("SET lock_timeout = '300ms'");
        else await client.query("SET lock_timeout = 0; SET statement_timeout = '300ms'");
        fig.fault(`${setting} during ${job}`);
        const report = await runJob(jobNamed(job), client, scheduled, unlimited);
        fig.count('jobRuns');
        expectReasons(report);
        const failed = report.items.filter((i) => i.outcome === 'failed');
        expect(failed.length).toBeGreaterThan(0);
        expect(failed.map((i) => i.reason).join(' | ')).toMatch(reason);
        // Lambda would end in an error with the first failure in one line.
        const lambdaError = new JobFailed(report);
        expect(isOneLine(lambdaError.message)).toBe(true);
        capture.note(JSON.stringify(report));
      } finally {
        await client.end();
        await locker.query('ROLLBACK');
      }
      await converges(job, expected);
    },
  );
});

describe('a short lock_timeout set on the role', () => {
  it('does not shorten the sessions the jobs open: the library pins lock_timeout and statement_timeout at login', async () => {
    const r = pg.escapeIdentifier(world.appId);
    await world.admin.query(
      `ALTER ROLE ${r} SET lock_timeout = '200ms'; ALTER ROLE ${r} SET statement_timeout = '300ms'`,
    );
    fig.fault('ALTER ROLE ... SET lock_timeout / statement_timeout');
    try {
      const client = await createConnector(world.config(), handlerDeps(world)).connect({
        applicationName: 'lakets-tiering',
      });
      try {
        const { rows } = await client.query<{ lock: string; statement: string; tz: string }>(
          "SELECT current_setting('lock_timeout') AS lock, current_setting('statement_timeout') AS statement, current_setting('TimeZone') AS tz",
        );
        expect(rows[0]).toEqual({ lock: '30s', statement: '10min', tz: 'UTC' });
      } finally {
        await client.end();
      }
      // And a run blocked for longer than the role's timeouts still completes.
      const { e, expected } = await prepare('retention');
      await holdLock('retention', e);
      const running = invoke(warm.retention, 'retention', capture);
      await blocked('application_name = $1 AND usename = $2', ['lakets-retention', world.appId]);
      await new Promise((resolve) => setTimeout(resolve, 500));
      await locker.query('ROLLBACK');
      const out = await running;
      fig.count('jobRuns');
      expect(out.report?.status).toBe('ok');
      expect(await logicalState(world.admin)).toEqual(expected);
    } finally {
      await world.admin.query(`ALTER ROLE ${r} RESET lock_timeout; ALTER ROLE ${r} RESET statement_timeout`);
    }
  });
});

describe('an expiring Postgres credential', () => {
  it('expires between connections of a warm container: Postgres refuses the reused one, a new one is minted, the run is ok', async () => {
    const { expected } = await prepare('retention');
    world.fake.setCredentialTtl(1_500);
    // The container's clock runs 10 minutes behind, so a 1.5 s credential looks fresh enough to reuse.
    const handler = coldHandler('retention', handlerDeps(world, { now: () => Date.now() - 10 * 60_000 }));
    const first = await invoke(handler, 'retention', capture);
    expect(first.report?.status).toBe('ok');
    const minted = world.fake.minted.length;
    await new Promise((r) => setTimeout(r, 1_800)); // VALID UNTIL has passed on the server
    fig.fault('Postgres credential expired between connections');
    const second = await invoke(handler, 'retention', capture);
    fig.count('jobRuns', 2);
    expect(second.error?.message).toBeUndefined();
    expect(second.report?.status).toBe('ok');
    expect(world.fake.minted.length).toBe(minted + 1);
    expect(
      capture.texts.some((t) => t.includes('Postgres refused a reused credential; minting a new one')),
    ).toBe(true);
    expect(await logicalState(world.admin)).toEqual(expected);
    await converges('retention', expected, handler);
  });

  it('expires during a long run: the open session goes on (Lakebase checks it only at login)', async () => {
    const { e, expected } = await prepare('rollup-refresh');
    world.fake.setCredentialTtl(1_000);
    const handler = coldHandler('rollup-refresh', handlerDeps(world));
    await holdLock('rollup-refresh', e);
    const running = invoke(handler, 'rollup-refresh', capture);
    await blocked('application_name = $1 AND usename = $2', ['lakets-rollup-refresh', world.appId]);
    await new Promise((r) => setTimeout(r, 1_300));
    fig.fault('Postgres credential expired during a run');
    await locker.query('ROLLBACK');
    const out = await running;
    fig.count('jobRuns');
    expect(out.error?.message).toBeUndefined();
    expect(out.report?.status).toBe('ok');
    expect(await logicalState(world.admin)).toEqual(expected);
    await converges('rollup-refresh', expected, handler);
  });
});

interface ServiceFault {
  name: string;
  job: JobName;
  inject(): void;
  /** Expected Lambda error, or null when retries absorb the fault and the run is ok. */
  error: RegExp | null;
  /** For absorbed faults: the log line showing the fault was met and retried. */
  retried?: RegExp;
  deps?: Parameters<typeof handlerDeps>[1];
}

const SERVICE_FAULTS: ServiceFault[] = [
  {
    name: 'Databricks 429 twice on credentials (retried)',
    job: 'partition-manager',
    inject: () => world.fake.setFault('credentials', { status: 429, times: 2 }),
    error: null,
    retried: /./, // the SDK retries 429 itself, silently: the fake's call log shows them
    // The SDK itself waits about 1 s between 429 retries: a budget like the default (20 s) absorbs two.
    deps: { httpTimeoutSeconds: 10, retry: { budgetMs: 8_000, baseDelayMs: 20, maxDelayMs: 200 } },
  },
  {
    name: 'Databricks 429 on every credentials call',
    job: 'tiering',
    inject: () => world.fake.setFault('credentials', { status: 429 }),
    error: /^Databricks kept answering 429 \(rate limited\) while generating a Postgres credential/,
    // As in production (20 s budget, 30 s per attempt), the SDK's own 429 loop ends before the deadline.
    deps: { httpTimeoutSeconds: 6, retry: { budgetMs: 1_500, baseDelayMs: 20, maxDelayMs: 200 } },
  },
  {
    name: 'Databricks 500 twice on listBranches (retried)',
    job: 'retention',
    inject: () => world.fake.setFault('listBranches', { status: 500, times: 2 }),
    error: null,
    retried: /transient Databricks failure; retrying/,
  },
  {
    name: 'Databricks 500 on every listEndpoints call',
    job: 'rollup-refresh',
    inject: () => world.fake.setFault('listEndpoints', { status: 500 }),
    error: /^Databricks at .* still failing while listing endpoints of .* after \d+ attempts/,
  },
  {
    name: 'Databricks 503 on every getEndpoint call',
    job: 'partition-manager',
    inject: () => world.fake.setFault('getEndpoint', { status: 503 }),
    error: /still failing while reading endpoint/,
  },
  {
    name: 'Databricks 401 once on SCIM Me (re-authenticated)',
    job: 'tiering',
    inject: () => world.fake.setFault('me', { status: 401, times: 1 }),
    error: null,
    retried: /Databricks rejected the service principal credentials; re-reading the secret and retrying once/,
  },
  {
    name: 'Databricks 401 on every SCIM Me call',
    job: 'retention',
    inject: () => world.fake.setFault('me', { status: 401 }),
    error:
      /^Databricks at .* rejected the OAuth token .* while reading the current identity \(SCIM Me\) \(401/,
  },
  {
    name: 'Databricks 401: every OAuth access token revoked (re-authenticated)',
    job: 'partition-manager',
    inject: () => world.fake.revokeAccessTokens(),
    error: null,
    retried: /Databricks rejected the service principal credentials; re-reading the secret and retrying once/,
  },
  {
    name: 'OAuth token endpoint 401 invalid_client',
    job: 'rollup-refresh',
    inject: () => {
      // The process keeps a workspace client (and its token) per credentials: a cold start here.
      clearWorkspaceClients();
      world.fake.setFault('token', {
        status: 401,
        body: { error: 'invalid_client', error_description: 'Client authentication failed' },
      });
    },
    error: /^OAuth token request to .* was refused/,
  },
  {
    name: 'Databricks timeout once on credentials (retried)',
    job: 'partition-manager',
    inject: () => world.fake.setFault('credentials', { delayMs: 1_500, times: 1 }),
    error: null,
    retried: /transient Databricks failure; retrying/,
    deps: { httpTimeoutSeconds: 1, retry: { budgetMs: 4_000, baseDelayMs: 20, maxDelayMs: 200 } },
  },
  {
    name: 'Databricks timeout on every getEndpoint call',
    job: 'tiering',
    inject: () => world.fake.setFault('getEndpoint', { delayMs: 1_500 }),
    error: /^cannot reach Databricks at .* while reading endpoint .* \(no answer within 1 s\)/,
    deps: { httpTimeoutSeconds: 1, retry: { budgetMs: 1_500, baseDelayMs: 20, maxDelayMs: 200 } },
  },
  {
    name: 'Secrets Manager InternalServiceError',
    job: 'retention',
    inject: () => world.sm.setFault({ type: 'InternalServiceError' }),
    error: /^reading secret .* from Secrets Manager failed \(InternalServiceError/,
  },
  {
    name: 'Secrets Manager ThrottlingException',
    job: 'rollup-refresh',
    inject: () => world.sm.setFault({ type: 'ThrottlingException' }),
    error: /^reading secret .* failed \(ThrottlingException/,
  },
  {
    name: 'Secrets Manager AccessDeniedException',
    job: 'partition-manager',
    inject: () => world.sm.setFault({ type: 'AccessDeniedException' }),
    error:
      /^reading secret .* was denied \(AccessDeniedException\): allow the function's role secretsmanager:GetSecretValue/,
  },
];

describe('Databricks and Secrets Manager fail (a cold container each)', () => {
  it.each(SERVICE_FAULTS.map((f) => [f.name, f] as const))('%s', async (_name, f) => {
    const { expected, before } = await prepare(f.job);
    const handler = coldHandler(f.job, handlerDeps(world, f.deps));
    world.fake.resetCalls();
    f.inject();
    fig.fault(f.name);
    const seen = capture.texts.length;
    const out = await invoke(handler, f.job, capture);
    if (f.retried) {
      // The fault was met, not missed: a failed answer, and the library's retry in the log.
      if (!f.name.includes('timeout')) expect(world.fake.calls.some((c) => c.status >= 400)).toBe(true);
      expect(capture.texts.slice(seen).some((t) => f.retried?.test(t))).toBe(true);
    }
    world.fake.clearFaults();
    world.sm.setFault(undefined);
    if (f.error === null) {
      fig.count('jobRuns');
      expect(out.error?.message).toBeUndefined();
      expect(out.report?.status).toBe('ok');
      expect(await logicalState(world.admin)).toEqual(expected);
    } else {
      expectLambdaError(out, f.error);
      expect(out.error).toBeInstanceOf(LakebaseError);
      // The job never started: nothing changed.
      expect(await stateFingerprint(world.admin)).toBe(before);
    }
    await converges(f.job, expected, handler);
  });
});
