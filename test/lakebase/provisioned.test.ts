// Lakebase Provisioned: connecting to a database instance (LAKETS_LAKEBASE_INSTANCE) the way the jobs
// do, through the real SDK client and the fake workspace, against the harness's real PostgreSQL 17:
// the instance's read_write_dns while it is AVAILABLE, a credential per instance whose token is the
// role's real password, verified TLS. Stopped and deleting instances fail with their own codes and
// change nothing; transient states are waited out within the time the invocation has. No token or
// secret reaches a log line, an error or stdout/stderr.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest';
import { freePort } from '../../dev/local-postgres.ts';
import { ConfigError, parseConfig } from '../../lib/config.ts';
import {
  type Connector,
  type ConnectorDeps,
  createConnector,
  type InstanceWait,
  LakebaseError,
  type LakebaseErrorCode,
} from '../../lib/lakebase/index.ts';
import { INSTANCE, recordWrites, startWorld, type World } from './world.ts';

let world: World;
const messages: string[] = [];
const written: string[] = [];
const opened: pg.Client[] = [];

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** Short waits for the tests: the default waits up to 2 minutes. */
const QUICK: InstanceWait = { budgetMs: 3_000, baseDelayMs: 20, maxDelayMs: 100, reserveMs: 0 };

beforeAll(async () => {
  world = await startWorld();
  world.fake.instances.halted = { state: 'STOPPED', host: 'localhost' };
  world.fake.instances.leaving = { state: 'DELETING', host: 'localhost' };
});
afterAll(async () => {
  await Promise.allSettled(opened.map((c) => c.end()));
  await world.close();
  // Everything this file produced, once more, now that every token of the run is known.
  expect(leaks([...messages, ...written, ...world.log.lines])).toEqual([]);
});
// Anything the library or the SDKs print goes through here.
beforeEach(() => recordWrites(written));
afterEach(() => {
  vi.restoreAllMocks();
  world.fake.resetCalls();
  world.fake.clearFaults();
  world.fake.setCredentialTtl(3_600_000);
  expect(leaks([...messages, ...written, ...world.log.lines])).toEqual([]);
});

function leaks(texts: string[]): string[] {
  return world.secrets().filter((secret) => secret.length >= 8 && texts.some((t) => t.includes(secret)));
}

/** The environment of a function configured with an instance instead of a project. */
const instanceEnv = (instance = INSTANCE, extra: Record<string, string | undefined> = {}) => ({
  LAKETS_PROJECT: undefined,
  LAKETS_LAKEBASE_INSTANCE: instance,
  ...extra,
});

function connector(
  instance = INSTANCE,
  deps: Partial<ConnectorDeps> = {},
  env: Record<string, string | undefined> = {},
): Connector {
  return createConnector(
    world.config(instanceEnv(instance, env)),
    world.deps({ instanceWait: QUICK, ...deps }),
  );
}

async function connect(c: Connector, remainingMs?: () => number): Promise<pg.Client> {
  const client = await c.connect({ applicationName: 'lakets-test', ...(remainingMs ? { remainingMs } : {}) });
  opened.push(client);
  return client;
}

/** Connects and expects a LakebaseError with `code`; checks it is one line; returns it. */
async function failure(
  c: Connector,
  code: LakebaseErrorCode,
  remainingMs?: () => number,
): Promise<LakebaseError> {
  let caught: unknown;
  try {
    await connect(c, remainingMs);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(LakebaseError);
  const error = caught as LakebaseError;
  messages.push(error.message, error.stack ?? '', JSON.stringify(error));
  expect({ code: error.code, message: error.message }).toMatchObject({ code });
  expect(error.message).not.toMatch(/[\r\n]/);
  return error;
}

/** Whether any session of `role` is open on the server (a login that happened and was kept). */
async function sessionsOf(role: string): Promise<number> {
  const { rows } = await world.admin.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1',
    [role],
  );
  return rows[0]?.n ?? 0;
}

describe('an AVAILABLE instance', () => {
  test('reads the instance once, mints a credential for it with a new request id, and logs in as the service principal over verified TLS', async () => {
    const c = connector();
    const client = await connect(c);
    const row = await client.query<{ user: string; ssl: boolean }>(
      'SELECT current_user AS user, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS ssl',
    );
    expect(row.rows[0]).toEqual({ user: world.appId, ssl: true });

    expect(world.fake.calls.map((call) => call.route)).toEqual([
      'oidc',
      'token',
      'getInstance',
      'me',
      'instanceCredentials',
    ]);
    const [read, mint] = [
      world.fake.calls.find((call) => call.route === 'getInstance'),
      world.fake.calls.find((call) => call.route === 'instanceCredentials'),
    ];
    expect(read).toMatchObject({
      method: 'GET',
      path: `/api/2.0/database/instances/${INSTANCE}`,
      status: 200,
    });
    expect(mint).toMatchObject({ method: 'POST', path: '/api/2.0/database/credentials', status: 200 });
    expect(mint?.contentType).toMatch(/^application\/json/);
    expect(mint?.accept).toBe('application/json');
    const minted = world.fake.minted.at(-1);
    expect(minted).toMatchObject({ instances: [INSTANCE], identity: world.appId, role: world.appId });
    expect(minted?.requestId).toMatch(UUID_V4);
    expect(c.lastConnection).toEqual({
      mode: 'databricks',
      user: world.appId,
      database: world.db.name,
      host: 'localhost',
      instance: INSTANCE,
    });
    expect(c.stats()).toMatchObject({
      connections: 1,
      resolutions: 1,
      credentialsMinted: 1,
      databricksCalls: {
        getInstance: 1,
        generateInstanceCredential: 1,
        me: 1,
        listBranches: 0,
        listEndpoints: 0,
        getEndpoint: 0,
        generateCredential: 0,
      },
    });
  });

  test('warm: the host is kept while connections through it work (no read), and read again 25 hours after the last', async () => {
    let now = Date.now();
    const c = connector(INSTANCE, { now: () => now });
    await connect(c);
    now += 6 * 60 * 60_000;
    await connect(c);
    expect(world.fake.count('getInstance')).toBe(1);
    now += 25 * 60 * 60_000 + 1;
    await connect(c);
    expect(world.fake.count('getInstance')).toBe(2);
  });

  test('an unreachable host is forgotten at once: the next connection reads the instance again, and finds it stopped', async () => {
    world.fake.instances.moving = { state: 'AVAILABLE', host: 'localhost' };
    const c = connector('moving', { port: await freePort() });
    await failure(c, 'PG_UNREACHABLE');
    world.fake.instances.moving.state = 'STOPPED';
    const error = await failure(c, 'INSTANCE_STOPPED');
    expect(error.message).toContain('moving');
    expect(world.fake.count('getInstance')).toBe(2);
  });
});

describe('credentials', () => {
  test('each cold container mints its own credential with its own request id; every token is the password at login', async () => {
    const before = world.fake.minted.length;
    for (let i = 0; i < 2; i++) {
      const client = await connect(connector());
      expect((await client.query('SELECT current_user AS u')).rows[0].u).toBe(world.appId);
    }
    const minted = world.fake.minted.slice(before);
    expect(minted).toHaveLength(2);
    expect(new Set(minted.map((m) => m.requestId)).size).toBe(2);
    expect(new Set(minted.map((m) => m.token)).size).toBe(2);
  });

  test('a credential with 5 minutes or less left is never reused: a new one, with a new request id, per connection', async () => {
    world.fake.setCredentialTtl(4 * 60_000);
    const c = connector();
    const before = world.fake.minted.length;
    for (let i = 0; i < 3; i++) await connect(c);
    const minted = world.fake.minted.slice(before);
    expect(minted).toHaveLength(3);
    expect(new Set(minted.map((m) => m.requestId)).size).toBe(3);
    expect(c.stats()).toMatchObject({ credentialsMinted: 3, credentialsReused: 0, connections: 3 });
  });

  test('LAKETS_PG_ROLE names a group the service principal belongs to: login as the group, the request names no group', async () => {
    const group = `lakets_jobs_${randomBytes(4).toString('hex')}`;
    await world.createRole(group);
    await world.admin.query(`GRANT ${pg.escapeIdentifier(group)} TO ${pg.escapeIdentifier(world.appId)}`);
    const client = await connect(connector(INSTANCE, {}, { LAKETS_PG_ROLE: group }));
    expect((await client.query('SELECT current_user AS u')).rows[0].u).toBe(group);
    expect(world.fake.count('me')).toBe(0);
    expect(world.fake.minted.at(-1)?.roles).toContain(group);
    expect(world.fake.minted.at(-1)?.groupName).toBeUndefined();
    await world.admin.query(`REVOKE ${pg.escapeIdentifier(group)} FROM ${pg.escapeIdentifier(world.appId)}`);
  });

  test('LAKETS_PG_ROLE naming a group the service principal is not a member of fails at login (28P01), as for a project', async () => {
    const group = `strangers_${randomBytes(4).toString('hex')}`;
    await world.createRole(group);
    const error = await failure(connector(INSTANCE, {}, { LAKETS_PG_ROLE: group }), 'PG_AUTH_FAILED');
    expect(error.pgCode).toBe('28P01');
    expect(error.message).toContain(`role "${group}"`);
    expect(error.message).toMatch(/LAKETS_PG_ROLE must name such a group/);
    // Minted, but it is not that role's password.
    expect(world.fake.count('instanceCredentials')).toBe(1);
    expect(world.fake.minted.at(-1)?.roles).not.toContain(group);
  });
});

describe('an instance that is not AVAILABLE', () => {
  test('STOPPED: INSTANCE_STOPPED, read once, no credential, no login; the jobs never start it', async () => {
    const c = connector('halted');
    const sessions = await sessionsOf(world.appId);
    const error = await failure(c, 'INSTANCE_STOPPED');
    expect(await sessionsOf(world.appId)).toBe(sessions);
    expect(error.message).toMatch(/^Lakebase database instance halted is stopped \(state STOPPED\)/);
    expect(error.message).toMatch(/never start an instance: start it/);
    expect(world.fake.count('getInstance')).toBe(1);
    expect(world.fake.count('instanceCredentials')).toBe(0);
    // Nothing but reads: no request could have started, changed or deleted it.
    expect(world.fake.calls.filter((call) => call.route !== 'token' && call.method !== 'GET')).toEqual([]);
    expect(world.fake.instances.halted?.state).toBe('STOPPED');
    expect(c.stats()).toMatchObject({ connections: 0, credentialsMinted: 0 });
  });

  test('DELETING: INSTANCE_DELETING, read once, no credential, no login', async () => {
    const c = connector('leaving');
    const error = await failure(c, 'INSTANCE_DELETING');
    expect(error.message).toMatch(/^Lakebase database instance leaving is being deleted/);
    expect(error.message).toContain('LAKETS_LAKEBASE_INSTANCE');
    expect(world.fake.count('getInstance')).toBe(1);
    expect(world.fake.count('instanceCredentials')).toBe(0);
    expect(world.fake.instances.leaving?.state).toBe('DELETING');
  });

  test('STARTING, then UPDATING, then AVAILABLE: read again with backoff, and connected within the budget', async () => {
    world.fake.instances.waking = {
      state: 'AVAILABLE',
      host: 'localhost',
      upcoming: ['STARTING', 'STARTING', 'UPDATING'],
    };
    const c = connector('waking');
    const started = Date.now();
    const client = await connect(c, () => 60_000);
    expect(Date.now() - started).toBeLessThan(QUICK.budgetMs);
    expect((await client.query('SELECT current_user AS u')).rows[0].u).toBe(world.appId);
    expect(world.fake.count('getInstance')).toBe(4);
    expect(world.fake.count('instanceCredentials')).toBe(1); // only once it is AVAILABLE
    const waits = world.log.lines.filter(
      (l) => l.includes('waiting for the Lakebase instance') && l.includes('waking'),
    );
    expect(waits.map((l) => JSON.parse(l).state)).toEqual(['STARTING', 'STARTING', 'UPDATING']);
    expect(c.stats().resolutions).toBe(1);
  });

  test('FAILING_OVER for longer than the wait budget: INSTANCE_NOT_READY within the budget, no credential', async () => {
    world.fake.instances.flapping = { state: 'FAILING_OVER', host: 'localhost' };
    const wait: InstanceWait = { budgetMs: 400, baseDelayMs: 20, maxDelayMs: 80, reserveMs: 0 };
    const started = Date.now();
    const error = await failure(connector('flapping', { instanceWait: wait }), 'INSTANCE_NOT_READY');
    const elapsed = Date.now() - started;
    expect(elapsed).toBeLessThan(wait.budgetMs + 1_000);
    expect(error.message).toMatch(
      /^Lakebase database instance flapping is still FAILING_OVER after \d+ reads in/,
    );
    expect(error.message).toMatch(/the next scheduled run tries again/);
    expect(world.fake.count('getInstance')).toBeGreaterThan(2);
    expect(world.fake.count('instanceCredentials')).toBe(0);
  });

  test("the wait ends before the invocation's own deadline, keeping its reserve for the job", async () => {
    world.fake.instances.slow = { state: 'STARTING', host: 'localhost' };
    const wait: InstanceWait = { budgetMs: 60_000, baseDelayMs: 20, maxDelayMs: 50, reserveMs: 10_000 };
    const deadline = Date.now() + 10_300; // 300 ms beyond the reserve
    const started = Date.now();
    await failure(
      connector('slow', { instanceWait: wait }),
      'INSTANCE_NOT_READY',
      () => deadline - Date.now(),
    );
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(world.fake.count('getInstance')).toBeGreaterThan(1);
  });

  test('an unknown instance: INSTANCE_NOT_FOUND naming LAKETS_LAKEBASE_INSTANCE, and nothing else asked', async () => {
    const error = await failure(connector('no-such-instance'), 'INSTANCE_NOT_FOUND');
    expect(error.status).toBe(404);
    expect(error.message).toMatch(
      /^Lakebase database instance no-such-instance was not found \(404 NOT_FOUND: /,
    );
    expect(error.message).toContain('check LAKETS_LAKEBASE_INSTANCE');
    expect(world.fake.count('instanceCredentials')).toBe(0);
  });

  test('403 on the instance: names the service principal, the instance and CAN USE on it', async () => {
    world.fake.setFault('getInstance', { status: 403, message: 'User does not have permission.' });
    const error = await failure(connector(), 'DATABRICKS_PERMISSION_DENIED');
    expect(error.message).toContain(
      `service principal ${world.appId} may not read database instance ${INSTANCE}`,
    );
    expect(error.message).toContain(`CAN USE (or CAN MANAGE) on the Lakebase database instance ${INSTANCE}`);
  });

  test('503 while reading the instance is retried like any Databricks call', async () => {
    world.fake.setFault('getInstance', { status: 503, times: 2 });
    await connect(connector());
    expect(world.fake.count('getInstance')).toBe(3);
  });
});

describe('configuration', () => {
  const base = () => world.env(instanceEnv());
  const refused = (env: Record<string, string | undefined>): ConfigError => {
    const defined = Object.fromEntries(
      Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined),
    );
    try {
      parseConfig(defined);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      const e = error as ConfigError;
      expect(e.code).toBe('CONFIG_INVALID');
      expect(e.message).not.toMatch(/[\r\n]/);
      return e;
    }
    throw new Error('expected a ConfigError');
  };

  test('an instance instead of a project', () => {
    expect(parseConfig(base())).toEqual({
      kind: 'databricks',
      instance: INSTANCE,
      host: world.fake.url,
      secretId: world.secretId,
      database: world.db.name,
    });
  });

  test('both a project and an instance: one line naming both, and nothing asked of Databricks', () => {
    const e = refused({ ...base(), LAKETS_PROJECT: 'lakets-prod' });
    expect(e.variable).toBe('LAKETS_PROJECT');
    expect(e.message).toBe(
      'LAKETS_PROJECT and LAKETS_LAKEBASE_INSTANCE are both set: set exactly one, LAKETS_PROJECT for a Lakebase Autoscaling project or LAKETS_LAKEBASE_INSTANCE for a Provisioned instance',
    );
    expect(world.fake.calls).toEqual([]);
  });

  test('neither: names LAKETS_PROJECT and offers LAKETS_LAKEBASE_INSTANCE', () => {
    const e = refused({ ...base(), LAKETS_LAKEBASE_INSTANCE: undefined });
    expect(e.variable).toBe('LAKETS_PROJECT');
    expect(e.message).toMatch(
      /LAKETS_PROJECT is not set: .*or set LAKETS_LAKEBASE_INSTANCE to a Lakebase Provisioned instance/,
    );
  });

  test('a pinned endpoint is for a project only', () => {
    const e = refused({ ...base(), LAKETS_LAKEBASE_ENDPOINT: 'projects/p/branches/b/endpoints/e' });
    expect(e.variable).toBe('LAKETS_LAKEBASE_ENDPOINT');
    expect(e.message).toMatch(/unset LAKETS_LAKEBASE_ENDPOINT/);
  });

  test.each(['has/slash', 'under_score', 'x'.repeat(64), '-leading', 'spa ce'])(
    'a malformed instance name %j',
    (name) => {
      const e = refused({ ...base(), LAKETS_LAKEBASE_INSTANCE: name });
      expect(e.variable).toBe('LAKETS_LAKEBASE_INSTANCE');
      expect(e.message).toMatch(/is not a Lakebase Provisioned instance name/);
    },
  );
});
