// Every way connecting can fail, each a one-line LakebaseError with a stable code that says what to do,
// and never a secret: messages, the library's log lines and anything written to stdout/stderr are
// checked against every client secret, OAuth token, minted credential and password of the run.
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest';
import { freePort } from '../../dev/local-postgres.ts';
import { ConfigError } from '../../lib/config.ts';
import {
  type Connector,
  type ConnectorDeps,
  createConnector,
  explainPostgresError,
  LakebaseError,
  type LakebaseErrorCode,
} from '../../lib/lakebase/index.ts';
import { PROJECT, RO, RW, recordWrites, startWorld, type World } from './world.ts';

let world: World;
const messages: string[] = [];
const written: string[] = [];
const opened: pg.Client[] = [];

beforeAll(async () => {
  world = await startWorld();
  world.fake.projects['no-default'] = {
    branches: [
      { id: 'main', endpoints: [{ id: 'rw', type: RW, host: 'localhost' }] },
      { id: 'feature-x', endpoints: [] },
      { id: 'feature-y', endpoints: [] },
    ],
  };
  world.fake.projects['read-only'] = {
    branches: [
      {
        id: 'main',
        default: true,
        endpoints: [
          { id: 'replica-1', type: RO, host: 'localhost' },
          { id: 'replica-2', type: RO, host: 'localhost' },
          { id: 'replica-3', type: RO, host: 'localhost' },
        ],
      },
    ],
  };
  world.fake.projects.provisioning = {
    branches: [{ id: 'main', default: true, endpoints: [{ id: 'primary', type: RW }] }],
  };
});
afterAll(async () => {
  await Promise.allSettled(opened.map((c) => c.end()));
  await world.close();
  // Everything this file produced, once more, now that every secret of the run is known.
  expect(leaks([...messages, ...written, ...world.log.lines])).toEqual([]);
});

// Anything the library or the SDKs print goes through here.
beforeEach(() => recordWrites(written));
afterEach(() => {
  vi.restoreAllMocks();
  world.fake.resetCalls();
  world.fake.clearFaults();
  world.sm.setFault(undefined);
  expect(leaks([...messages, ...written, ...world.log.lines])).toEqual([]);
});

function leaks(texts: string[]): string[] {
  return world.secrets().filter((secret) => secret.length >= 8 && texts.some((t) => t.includes(secret)));
}

/** Connects and expects a LakebaseError with `code`; checks it is one line; returns it. */
async function failure(connector: Connector, code: LakebaseErrorCode): Promise<LakebaseError> {
  let caught: unknown;
  try {
    opened.push(await connector.connect({ applicationName: 'lakets-test' }));
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

function connector(
  env: Record<string, string | undefined> = {},
  deps: Partial<ConnectorDeps> = {},
): Connector {
  return createConnector(world.config(env), world.deps(deps));
}

describe('OAuth and Databricks permissions', () => {
  test('invalid client id/secret: the secret is re-read once, then a one-line error naming the secret', async () => {
    const secretId = `lakets/wrong-${randomBytes(3).toString('hex')}`;
    world.sm.setSecret(
      secretId,
      JSON.stringify({ client_id: world.appId, client_secret: 'dose-not-the-right-secret-at-all' }),
    );
    const c = connector({ LAKETS_SP_SECRET_ID: secretId });
    const error = await failure(c, 'OAUTH_INVALID_CLIENT');
    expect(error.message).toContain(`secret ${secretId}`);
    expect(error.message).toMatch(/invalid_client/);
    expect(error.message).not.toContain('dose-not-the-right-secret-at-all');
    expect(world.fake.count('token')).toBe(2);
    expect(c.stats()).toMatchObject({ secretReads: 2, authRetries: 1, connections: 0 });
  });

  test('one 401 invalid_client (a rotation in flight): re-read the secret, retry once, connect', async () => {
    world.fake.setFault('token', {
      status: 401,
      times: 1,
      body: { error: 'invalid_client', error_description: 'Client authentication failed' },
    });
    const c = connector();
    opened.push(await c.connect({ applicationName: 'lakets-test' }));
    expect(c.stats()).toMatchObject({ secretReads: 2, authRetries: 1, connections: 1 });
  });

  test('secret rotated while warm: the API answers 401, the new secret is read and used', async () => {
    const c = connector();
    opened.push(await c.connect({ applicationName: 'lakets-test' }));
    const clientsBefore = c.stats().workspaceClients;
    world.rotateSecret();
    world.fake.revokeAccessTokens(); // the old secret's token stops working too
    c.invalidate(); // so that the next connect needs Databricks
    opened.push(await c.connect({ applicationName: 'lakets-test' }));
    expect(c.stats()).toMatchObject({ secretReads: 2, authRetries: 1, connections: 2 });
    expect(c.stats().workspaceClients).toBe(clientsBefore + 1); // a client for the new secret
    expect(world.fake.calls.filter((x) => x.route === 'listBranches').map((x) => x.status)).toContain(401);
  });

  test('403 on the project: names the service principal, the project and CAN USE', async () => {
    world.fake.setFault('listBranches', { status: 403, message: 'User does not have CAN_USE on project.' });
    const error = await failure(connector(), 'DATABRICKS_PERMISSION_DENIED');
    expect(error.status).toBe(403);
    expect(error.message).toContain(world.appId);
    expect(error.message).toContain(`projects/${PROJECT}`);
    expect(error.message).toMatch(/CAN USE \(or CAN MANAGE\) on the Lakebase project/);
    // Read from the body ourselves: code and message, not the raw JSON the SDK falls back to.
    expect(error.message).toContain('(403 PERMISSION_DENIED: User does not have CAN_USE on project.)');
  });

  test('403 when minting the credential: says so, with the same fix', async () => {
    world.fake.setFault('credentials', { status: 403 });
    const error = await failure(connector(), 'DATABRICKS_PERMISSION_DENIED');
    expect(error.message).toMatch(
      /may not generate a Postgres credential for projects\/lakets-prod\/branches\/production\/endpoints\/primary/,
    );
    expect(error.message).toMatch(/CAN USE/);
  });

  test('404 project: names it and LAKETS_PROJECT', async () => {
    const error = await failure(connector({ LAKETS_PROJECT: 'no-such-project' }), 'PROJECT_NOT_FOUND');
    expect(error.message).toContain('projects/no-such-project');
    expect(error.message).toContain('LAKETS_PROJECT');
    expect(error.message).toContain("(404 NOT_FOUND: Project 'projects/no-such-project' does not exist.)");
    expect(error.message).not.toMatch(/Response from server|request_id|RequestInfo|[{}]/);
  });

  test('an error body that is not a Databricks error (a proxy page): a short line, not the page', async () => {
    world.fake.setFault('listBranches', {
      status: 404,
      body: '<html><body>Not here</body></html>',
    });
    const error = await failure(connector(), 'PROJECT_NOT_FOUND');
    expect(error.message).toContain('404 UNKNOWN: HTTP 404 with a body that is not a Databricks error');
    expect(error.message).not.toContain('<html>');
  });

  test('a pinned read-only endpoint: a one-line config error naming LAKETS_LAKEBASE_ENDPOINT, from one read of it, before any credential', async () => {
    const pinned = `projects/${PROJECT}/branches/production/endpoints/replica-a`;
    let caught: unknown;
    try {
      await connector({ LAKETS_LAKEBASE_ENDPOINT: pinned }).connect({ applicationName: 'lakets-test' });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const error = caught as ConfigError;
    messages.push(error.message);
    expect(error.variable).toBe('LAKETS_LAKEBASE_ENDPOINT');
    expect(error.code).toBe('CONFIG_INVALID');
    expect(error.message).toContain(
      `LAKETS_LAKEBASE_ENDPOINT="${pinned}" is a ENDPOINT_TYPE_READ_ONLY endpoint`,
    );
    expect(error.message).toMatch(/pin the branch's read-write endpoint/);
    expect(error.message).not.toMatch(/[\r\n]/);
    expect(world.fake.calls.filter((c) => c.route.startsWith('list'))).toEqual([]);
    expect(world.fake.count('getEndpoint')).toBe(1);
    expect(world.fake.count('credentials')).toBe(0);
  });

  test('the credential request is JSON with Content-Type and Accept, as every official client sends it', async () => {
    opened.push(await connector().connect({ applicationName: 'lakets-test' }));
    const post = world.fake.calls.find((c) => c.route === 'credentials');
    expect(post).toMatchObject({
      method: 'POST',
      contentType: 'application/json',
      accept: 'application/json',
      status: 200,
    });
    for (const get of world.fake.calls.filter((c) => c.method === 'GET' && c.route !== 'oidc')) {
      expect(get.accept, get.route).toBe('application/json');
    }
  });

  test('404 pinned endpoint: names it and LAKETS_LAKEBASE_ENDPOINT', async () => {
    const pinned = `projects/${PROJECT}/branches/production/endpoints/gone`;
    const error = await failure(connector({ LAKETS_LAKEBASE_ENDPOINT: pinned }), 'ENDPOINT_NOT_FOUND');
    expect(error.message).toContain(pinned);
    expect(error.message).toContain('LAKETS_LAKEBASE_ENDPOINT');
  });

  test('no default branch: lists the branches found, across pages', async () => {
    const error = await failure(connector({ LAKETS_PROJECT: 'no-default' }), 'NO_DEFAULT_BRANCH');
    expect(error.message).toContain(
      'projects/no-default/branches/main, projects/no-default/branches/feature-x, projects/no-default/branches/feature-y',
    );
    expect(world.fake.count('listBranches')).toBe(2);
  });

  test('no read-write endpoint: lists the endpoints and their types', async () => {
    const error = await failure(connector({ LAKETS_PROJECT: 'read-only' }), 'NO_READ_WRITE_ENDPOINT');
    expect(error.message).toContain(
      'projects/read-only/branches/main/endpoints/replica-3 (ENDPOINT_TYPE_READ_ONLY)',
    );
    expect(error.message).toContain(
      'projects/read-only/branches/main/endpoints/replica-1 (ENDPOINT_TYPE_READ_ONLY)',
    );
  });

  test('an endpoint without a host yet', async () => {
    const error = await failure(connector({ LAKETS_PROJECT: 'provisioning' }), 'ENDPOINT_NOT_READY');
    expect(error.message).toMatch(/reports no host \(state: INIT\)/);
  });
});

describe('transient Databricks failures', () => {
  test('429 once, then success', async () => {
    world.fake.setFault('listBranches', { status: 429, times: 1 });
    const c = connector();
    opened.push(await c.connect({ applicationName: 'lakets-test' }));
    expect(world.fake.calls.filter((x) => x.route === 'listBranches').map((x) => x.status)).toEqual([
      429, 200, 200,
    ]);
  });

  test('429 for longer than the budget: DATABRICKS_UNAVAILABLE saying rate limited', async () => {
    world.fake.setFault('listBranches', { status: 429 });
    const c = connector({}, { retry: { budgetMs: 500, baseDelayMs: 20, maxDelayMs: 80 } });
    const started = Date.now();
    const error = await failure(c, 'DATABRICKS_UNAVAILABLE');
    expect(error.status).toBe(429);
    expect(error.message).toMatch(
      /kept answering 429 \(rate limited\) while listing branches of projects\/lakets-prod/,
    );
    // The SDK retries 429 itself (first wait 1-1.75 s) and gives up once our budget has passed.
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(world.fake.calls.filter((x) => x.route === 'listBranches').every((x) => x.status === 429)).toBe(
      true,
    );
  });

  test('503 twice, then success: retried with backoff', async () => {
    world.fake.setFault('credentials', { status: 503, times: 2 });
    const c = connector();
    opened.push(await c.connect({ applicationName: 'lakets-test' }));
    expect(c.stats().transientRetries).toBe(2);
    expect(world.fake.count('credentials')).toBe(3);
  });

  test('500 until the bounded retry budget is spent: DATABRICKS_UNAVAILABLE, within the budget', async () => {
    world.fake.setFault('getEndpoint', { status: 500, message: 'Internal error.' });
    const c = connector({}, { retry: { budgetMs: 800, baseDelayMs: 20, maxDelayMs: 160 } });
    const started = Date.now();
    const error = await failure(c, 'DATABRICKS_UNAVAILABLE');
    const elapsed = Date.now() - started;
    const attempts = world.fake.count('getEndpoint');
    expect(attempts).toBeGreaterThanOrEqual(4);
    expect(error.message).toContain(`after ${attempts} attempts`);
    expect(error.message).toMatch(/last: 500/);
    expect(error.status).toBe(500);
    expect(elapsed).toBeLessThan(800 + 1_000); // the budget, plus setup (secret, token, lists)
  });

  test('backoff delays grow exponentially with jitter and stay under the cap', async () => {
    const delays: number[] = [];
    world.fake.setFault('getEndpoint', { status: 500 });
    const c = connector(
      {},
      {
        retry: { budgetMs: 10_000, baseDelayMs: 100, maxDelayMs: 800 },
        random: () => 0.5,
        sleep: async (ms) => {
          delays.push(ms);
          if (delays.length === 6) world.fake.clearFaults();
        },
      },
    );
    opened.push(await c.connect({ applicationName: 'lakets-test' }));
    expect(delays).toEqual([75, 150, 300, 600, 600, 600]); // cap/2 + 0.5 * cap/2, cap = 100·2^n ≤ 800
  });

  test('Databricks unreachable: DATABRICKS_UNREACHABLE naming the host', async () => {
    const host = `https://127.0.0.1:${await freePort()}`;
    const c = connector(
      { DATABRICKS_HOST: host },
      { retry: { budgetMs: 300, baseDelayMs: 20, maxDelayMs: 80 } },
    );
    const error = await failure(c, 'DATABRICKS_UNREACHABLE');
    expect(error.message).toContain(host);
    expect(error.message).toContain('DATABRICKS_HOST');
  });
});

describe('Postgres login and privileges', () => {
  test("28P01 wrong password (the service principal's own role is missing on the branch): names the role and points at npm run grants", async () => {
    // databricks_create_role was not run on this branch: the credential is minted for the identity,
    // and Postgres has no such role to log in as.
    const away = `away_${randomBytes(4).toString('hex')}`;
    await world.admin.query(`ALTER ROLE ${pg.escapeIdentifier(world.appId)} RENAME TO ${away}`);
    try {
      const error = await failure(connector(), 'PG_AUTH_FAILED');
      expect(error.pgCode).toBe('28P01');
      expect(error.message).toContain(`"${world.appId}"`);
      expect(error.message).toContain(`npm run grants -- ${world.appId}`);
      expect(error.message).toContain('docs/operations.md "Service principal, secret and Postgres role"');
      expect(error.message).toMatch(
        /the role does not exist, or is neither this identity's own Databricks OAuth role nor a group role it is a member of/,
      );
      expect(world.fake.count('credentials')).toBe(1); // a fresh credential is not retried
    } finally {
      await world.admin.query(`ALTER ROLE ${away} RENAME TO ${pg.escapeIdentifier(world.appId)}`);
    }
  });

  test('LAKETS_PG_ROLE names a role the service principal is not a member of: Databricks answers 403, and the hint is the membership, not project access', async () => {
    for (const role of [`jobs_${randomBytes(4).toString('hex')}`, 'no_such_role_here']) {
      if (role !== 'no_such_role_here') await world.createRole(role);
      const before = world.fake.count('credentials');
      const error = await failure(connector({ LAKETS_PG_ROLE: role }), 'DATABRICKS_PERMISSION_DENIED');
      expect(error.status).toBe(403);
      expect(error.message).toContain(`group role "${role}" (group_name)`);
      expect(error.message).toContain(
        `on branch production an admin runs GRANT "${role}" TO "${world.appId}";`,
      );
      expect(error.message).toContain('or unset LAKETS_PG_ROLE');
      expect(error.message).not.toMatch(/CAN USE/);
      expect(world.fake.count('credentials') - before).toBe(1); // a refusal is not retried
    }
  });

  test('LAKETS_PG_ROLE names a role the service principal is not a member of, and Databricks mints anyway: the login fails (28P01) and the hint is the membership', async () => {
    // What Databricks does here is undocumented: the other behaviour a job must explain.
    world.fake.setNonMemberGroup('mint');
    try {
      const role = `jobs_${randomBytes(4).toString('hex')}`;
      await world.createRole(role);
      const before = world.fake.count('credentials');
      const error = await failure(connector({ LAKETS_PG_ROLE: role }), 'PG_AUTH_FAILED');
      expect(error.pgCode).toBe('28P01');
      expect(error.message).toContain(`"${role}"`);
      expect(error.message).toMatch(
        /neither this identity's own Databricks OAuth role nor a group role it is a member of \(LAKETS_PG_ROLE must name such a group\)/,
      );
      expect(error.message).toContain(`npm run grants -- ${role}`);
      expect(world.fake.count('credentials') - before).toBe(1); // a fresh credential is not retried
    } finally {
      world.fake.setNonMemberGroup('refuse');
    }
  });

  test('28000 a role that may not log in', async () => {
    const role = `nologin_${randomBytes(4).toString('hex')}`;
    await world.createRole(role, 'NOLOGIN');
    await world.admin.query(`GRANT ${pg.escapeIdentifier(role)} TO ${pg.escapeIdentifier(world.appId)}`);
    const error = await failure(connector({ LAKETS_PG_ROLE: role }), 'PG_LOGIN_REJECTED');
    expect(error.pgCode).toBe('28000');
    expect(error.message).toMatch(/not permitted to log in/);
    expect(error.message).toContain(`npm run grants -- ${role}`);
  });

  test('42501 on a query: explainPostgresError names the object and the grants command', async () => {
    await world.admin.query(
      'CREATE SCHEMA IF NOT EXISTS private_stuff; CREATE TABLE IF NOT EXISTS private_stuff.ledger (v int)',
    );
    await world.admin.query('CREATE TABLE IF NOT EXISTS public.ledger_public (v int)');
    const client = await connector().connect({ applicationName: 'lakets-test' });
    opened.push(client);
    for (const [sql, object] of [
      ['SELECT * FROM private_stuff.ledger', 'schema private_stuff'],
      ['SELECT * FROM public.ledger_public', 'table ledger_public'],
    ] as const) {
      const raw = await client.query(sql).then(
        () => undefined,
        (e: unknown) => e,
      );
      const explained = explainPostgresError(raw, world.appId);
      expect(explained).toBeInstanceOf(LakebaseError);
      const error = explained as LakebaseError;
      messages.push(error.message);
      expect(error.code).toBe('PG_PRIVILEGE_MISSING');
      expect(error.message).toContain(`permission denied for ${object}`);
      expect(error.message).toContain(`npm run grants -- ${world.appId}`);
    }
    // Anything else is returned as it was.
    const other = await client.query('SELECT 1/0').catch((e: unknown) => e);
    expect(explainPostgresError(other, world.appId)).toBe(other);
  });

  test('3D000 unknown database: names it and LAKETS_DATABASE', async () => {
    const error = await failure(connector({ LAKETS_DATABASE: 'no_such_db' }), 'PG_DATABASE_MISSING');
    expect(error.message).toContain('"no_such_db"');
    expect(error.message).toContain('LAKETS_DATABASE');
  });
});

describe('reaching Postgres', () => {
  let silent: Server;
  const sockets: Socket[] = [];
  beforeAll(async () => {
    // Accepts TCP connections and never answers: a black-holed endpoint.
    silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => silent.close(resolve));
  });

  test('connection refused: names host:port; the endpoint is resolved again next time', async () => {
    const port = await freePort();
    const c = connector({}, { port });
    const error = await failure(c, 'PG_UNREACHABLE');
    expect(error.message).toContain(`localhost:${port}`);
    await failure(c, 'PG_UNREACHABLE');
    expect(c.stats().resolutions).toBe(2);
  });

  test('no answer within the connect timeout: names host:port and the timeout', async () => {
    const port = (silent.address() as { port: number }).port;
    const c = connector({}, { port, connectTimeoutMs: 300 });
    const started = Date.now();
    const error = await failure(c, 'PG_CONNECT_TIMEOUT');
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(error.message).toContain(`localhost:${port} within 300 ms`);
  });

  test('TLS is verified: a server certificate from an unknown CA is refused', async () => {
    const deps = world.deps();
    delete deps.extraCa;
    const error = await failure(createConnector(world.config(), deps), 'PG_TLS');
    expect(error.message).toMatch(/SELF_SIGNED|self-signed/i);
    expect(error.message).toContain('localhost');
  });
});
