// Security: the job role works with exactly the documented grants (lib/grants.ts, applied to a new
// LOGIN role that owns nothing and is a member of nothing), through the real handlers on the
// Databricks path; a missing grant gives a fail-closed deferral (Sync progress unreadable) or a
// clear one-line error naming the object (schema, function, table), and re-running the grants
// heals it. Throughout, every log line (Powertools through the console at DEBUG, raw stdout and
// stderr), every report and every error message is kept and checked against every secret the fakes
// saw: client secrets (also rotated ones), OAuth access tokens, minted Postgres credentials, and
// database passwords.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { schedulerEvent } from '../../dev/lambda-context.ts';
import { Secret } from '../../lib/config.ts';
import { JobFailed } from '../../lib/job-handler.ts';
import type { JobName, JobReport } from '../../lib/jobs/types.ts';
import { createConnector, LakebaseError } from '../../lib/lakebase/index.ts';
import type { World } from '../lakebase/world.ts';
import { captureOutput, label } from './support/capture.ts';
import { figures } from './support/figures.ts';
import {
  applyGrants,
  coldHandler,
  type Handler,
  handlerDeps,
  invoke,
  isOneLine,
  warmJobWorld,
} from './support/jobs.ts';
import { buildEstate, dropEstate, type Estate } from './support/scenario.ts';

const fig = figures(
  import.meta.url,
  'exact grants, missing grants, no secret in any log line, report or error',
);
const capture = captureOutput();

const JOBS: JobName[] = ['partition-manager', 'tiering', 'retention', 'rollup-refresh'];
let world: World;
let warm: Record<JobName, Handler>;
let estate: Estate | undefined;
let n = 0;
const extraSecrets: string[] = [];

beforeAll(async () => {
  ({ world, warm } = await warmJobWorld(fig, JOBS));
});

afterEach(async () => {
  await applyGrants(world.admin, world.appId);
  if (estate) await dropEstate(world.admin, estate);
  estate = undefined;
});

afterAll(async () => {
  await world.close();
  const secrets = [...world.secrets(), ...extraSecrets];
  fig.extra('log lines, reports and error messages scanned', capture.texts.length);
  fig.extra('secret values checked against them', secrets.length);
  fig.extra('minted Postgres credentials among them', world.fake.minted.length);
  fig.extra('OAuth access tokens among them', world.fake.accessTokens.length);
  // Not vacuous: the fakes did mint, and the log did hold Powertools output at DEBUG.
  expect(world.fake.minted.length).toBeGreaterThan(5);
  expect(world.fake.accessTokens.length).toBeGreaterThan(0);
  expect(
    capture.texts.some((t) => /"level":\s*"DEBUG"/.test(t) && t.includes('minted a Postgres credential')),
  ).toBe(true);
  expect(capture.leaks(secrets).map(label)).toEqual([]);
});

async function fresh(): Promise<Estate> {
  estate = await buildEstate(world.admin, `s${++n}`);
  return estate;
}

async function run(job: JobName, handler: Handler = warm[job]) {
  const out = await invoke(handler, job, capture, schedulerEvent(job));
  fig.count('jobRuns');
  return out;
}

const count = (r: JobReport | undefined, key: string) => r?.totals[key] ?? 0;

describe('the job role with exactly the documented grants', () => {
  it('is a plain LOGIN role that owns nothing, and runs all four jobs through the handlers, each doing its work', async () => {
    await fresh();
    const owned = async () =>
      (
        await world.admin.query<{ n: number }>(
          `SELECT ((SELECT count(*) FROM pg_class WHERE relowner = r.oid) + (SELECT count(*) FROM pg_proc WHERE proowner = r.oid)
                   + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid))::int AS n
             FROM pg_roles r WHERE rolname = $1`,
          [world.appId],
        )
      ).rows[0]?.n;
    const attrs = await world.admin.query(
      `SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolcanlogin,
              (SELECT count(*)::int FROM pg_auth_members WHERE member = r.oid) AS memberships
         FROM pg_roles r WHERE rolname = $1`,
      [world.appId],
    );
    expect(attrs.rows[0]).toEqual({
      rolsuper: false,
      rolcreaterole: false,
      rolcreatedb: false,
      rolbypassrls: false,
      rolcanlogin: true,
      memberships: 0,
    });
    expect(await owned()).toBe(0);
    const reports: Partial<Record<JobName, JobReport>> = {};
    for (const job of JOBS) {
      const out = await run(job);
      expect(out.error?.message).toBeUndefined();
      expect(out.report?.status).toBe('ok');
      reports[job] = out.report;
    }
    expect(count(reports['partition-manager'], 'partitionsCreated')).toBe(6);
    expect(count(reports.tiering, 'chunksTiered')).toBeGreaterThan(3);
    expect(count(reports.tiering, 'chunksDeferred')).toBe(2); // the late write and the late row Sync has not committed
    expect(count(reports.retention, 'chunksDropped')).toBeGreaterThanOrEqual(4);
    expect(count(reports['rollup-refresh'], 'rollupsRefreshed')).toBe(3);
    // It logged in as itself, with a minted credential, and still owns nothing.
    const who = await world.admin.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1 AND application_name LIKE 'lakets-%'",
      [world.appId],
    );
    expect(who.rows[0]?.n).toBe(0); // every handler closed its connection
    expect(await owned()).toBe(0);
    fig.count('scenarios');
  });
});

describe('a missing grant', () => {
  it.each([
    [
      'SELECT on wal2delta.tables',
      'REVOKE SELECT ON wal2delta.tables FROM',
      /lacks SELECT on wal2delta\.tables/,
    ],
    ['USAGE on schema wal2delta', 'REVOKE USAGE ON SCHEMA wal2delta FROM', /lacks USAGE on schema wal2delta/],
  ])(
    '%s: Tiering and Retention defer, fail-closed, and warn without an error; the grants script heals it',
    async (_what, revoke, reason) => {
      const e = await fresh();
      await world.admin.query(`${revoke} ${pg.escapeIdentifier(world.appId)}`);
      fig.fault(`job role lacks ${_what}`);
      const tiering = await run('tiering');
      expect(tiering.error?.message).toBeUndefined();
      // Not a bare ok: the report warns, and SyncStateUnreadable counts the tables.
      expect(tiering.report?.status).toBe('warning');
      expect(tiering.report?.warnings).toEqual([expect.stringMatching(reason)]);
      expect(count(tiering.report, 'chunksTiered')).toBe(0);
      expect(count(tiering.report, 'syncStateUnreadable')).toBeGreaterThanOrEqual(1);
      const why = tiering.report?.items.find((i) => i.name === `public.${e.a}`)?.reason ?? '';
      expect(why).toMatch(new RegExp(`${reason.source}: nothing can be proven durable \\(fail-closed\\)$`));
      expect(isOneLine(why)).toBe(true);
      const retention = await run('retention');
      expect(retention.error?.message).toBeUndefined();
      expect(retention.report?.status).toBe('warning');
      expect(count(retention.report, 'chunksDropped')).toBe(0);
      expect(count(retention.report, 'syncStateUnreadable')).toBeGreaterThanOrEqual(1);
      const deferred = retention.report?.items.filter((i) => i.outcome === 'deferred') ?? [];
      expect(deferred.length).toBeGreaterThanOrEqual(5);
      for (const d of deferred) expect(d.reason).toMatch(reason);
      // `npm run grants` again: the next runs do the work.
      await applyGrants(world.admin, world.appId);
      expect(count((await run('tiering')).report, 'chunksTiered')).toBeGreaterThan(3);
      expect(count((await run('retention')).report, 'chunksDropped')).toBeGreaterThanOrEqual(4);
      fig.count('scenarios');
    },
  );

  const errors: Array<[string, string, JobName[], RegExp]> = [
    [
      'USAGE on schema lakets',
      'REVOKE USAGE ON SCHEMA lakets FROM',
      JOBS,
      /permission denied for schema lakets \(SQLSTATE 42501\)/,
    ],
    [
      'EXECUTE on every LakeTS function',
      'REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA lakets FROM',
      JOBS,
      /permission denied for function (_ensure_partitions|_get_chunks_to_tier|execute_retention|refresh_rollup) \(SQLSTATE 42501\)/,
    ],
    [
      'EXECUTE on tier_chunk',
      'REVOKE EXECUTE ON FUNCTION lakets.tier_chunk(text) FROM',
      ['tiering'],
      /permission denied for function tier_chunk \(SQLSTATE 42501\)/,
    ],
    [
      'SELECT on the RollUp registry',
      'REVOKE SELECT ON lakets._rollup_registry FROM',
      ['rollup-refresh'],
      /permission denied for table _rollup_registry \(SQLSTATE 42501\)/,
    ],
    [
      'UPDATE on the chunk registry',
      'REVOKE UPDATE ON lakets._chunk_metadata FROM',
      ['tiering'],
      /permission denied for table _chunk_metadata \(SQLSTATE 42501\)/,
    ],
  ];
  it.each(errors)(
    '%s: each affected job fails with a one-line Lambda error naming the object; the grants script heals it',
    async (what, revoke, jobs, reason) => {
      await fresh();
      await world.admin.query(`${revoke} ${pg.escapeIdentifier(world.appId)}`);
      fig.fault(`job role lacks ${what}`);
      for (const job of jobs) {
        const out = await run(job);
        expect(out.error, job).toBeInstanceOf(JobFailed);
        expect(isOneLine(out.error?.message)).toBe(true);
        expect(out.error?.message).toMatch(reason);
        expect(['failed', 'partial']).toContain(out.report?.status);
      }
      await applyGrants(world.admin, world.appId);
      for (const job of jobs) {
        const out = await run(job);
        expect(out.report?.status, job).toBe('ok');
      }
      fig.count('scenarios');
    },
  );
});

describe('secrets stay out of logs, reports and errors', () => {
  it('on the error paths too: a rotated secret, a refused credential, a revoked token, a bad database URL', async () => {
    await fresh();
    // Postgres refuses the minted credential: the service principal's role is missing on this
    // branch (renamed away for the run), so the credential logs in as nothing.
    const role = pg.escapeIdentifier(world.appId);
    const away = pg.escapeIdentifier(`${world.appId}-away`);
    await world.admin.query(`ALTER ROLE ${role} RENAME TO ${away}`);
    let refused: Awaited<ReturnType<typeof run>>;
    try {
      refused = await run('partition-manager', coldHandler('partition-manager', handlerDeps(world)));
    } finally {
      await world.admin.query(`ALTER ROLE ${away} RENAME TO ${role}`);
    }
    expect(refused.error).toBeInstanceOf(LakebaseError);
    expect(refused.error?.message).toMatch(/refused login as role/);
    fig.fault('Postgres refused the minted credential');
    // The secret is rotated in Secrets Manager only: the workspace refuses it.
    const good = JSON.stringify({ client_id: world.appId, client_secret: world.clientSecret });
    const rotated = `dose${randomBytes(20).toString('hex')}`;
    extraSecrets.push(rotated);
    world.sm.setSecret(world.secretId, JSON.stringify({ client_id: world.appId, client_secret: rotated }));
    const oauth = await run('tiering', coldHandler('tiering', handlerDeps(world)));
    expect(oauth.error).toBeInstanceOf(LakebaseError);
    fig.fault('OAuth client secret refused');
    world.sm.setSecret(world.secretId, good);
    // Every OAuth token revoked mid-life: re-authenticated.
    world.fake.revokeAccessTokens();
    world.fake.setCredentialTtl(60_000); // < 5 minutes: every connection mints, so Databricks is called
    const revoked = await run('retention', coldHandler('retention', handlerDeps(world)));
    expect(revoked.report?.status).toBe('ok');
    fig.fault('OAuth access tokens revoked');
    // A direct database URL with a wrong password: the error names host and role, never the password.
    const password = randomBytes(16).toString('hex');
    extraSecrets.push(password);
    const direct = createConnector({
      kind: 'direct',
      databaseUrl: new Secret(world.db.urlFor(world.appId, password)),
    });
    const error = await direct.connect({ applicationName: 'lakets-security' }).then(
      (c) => c.end().then(() => undefined),
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(LakebaseError);
    capture.note(`${error?.name}: ${error?.message}`);
    fig.fault('Postgres refused a direct database URL');
    // A full day of runs through warm containers, with fresh credentials each time.
    for (const job of JOBS) {
      const out = await run(job);
      expect(out.report?.status).toBe('ok');
    }
    world.fake.setCredentialTtl(3_600_000);
    expect(capture.leaks([...world.secrets(), ...extraSecrets]).map(label)).toEqual([]);
    fig.count('scenarios');
  });
});
