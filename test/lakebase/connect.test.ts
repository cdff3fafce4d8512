// Connecting the way the jobs do, against the real PostgreSQL 17 of the harness: the minted credential
// is the role's real password (scram-sha-256) and TLS is verified against the harness CA.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { startFakeDatabricks } from '../../dev/fake-databricks.ts';
import { parseConfig } from '../../lib/config.ts';
import { createConnector, getConnector } from '../../lib/lakebase/index.ts';
import { defaultProjects, leakedSecrets, PRIMARY, PROJECT, startWorld, type World } from './world.ts';

let world: World;
const opened: pg.Client[] = [];

beforeAll(async () => {
  world = await startWorld();
});
afterAll(async () => {
  await Promise.allSettled(opened.map((c) => c.end()));
  await world.close();
});
afterEach(() => {
  world.fake.resetCalls();
  world.fake.clearFaults();
  expect(leakedSecrets(world, world.log.lines)).toEqual([]);
});

function keep(client: pg.Client): pg.Client {
  opened.push(client);
  return client;
}

async function routes(): Promise<string[]> {
  return world.fake.calls.map((c) => c.route);
}

describe('cold connection', () => {
  test('resolves project → default branch → read-write endpoint across pages, and logs in with the minted credential', async () => {
    const connector = createConnector(world.config(), world.deps());
    const client = keep(await connector.connect({ applicationName: 'lakets-partition-manager' }));

    const row = await client.query<{ user: string; ssl: boolean }>(
      'SELECT current_user AS user, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS ssl',
    );
    expect(row.rows[0]).toEqual({ user: world.appId, ssl: true });

    expect(await routes()).toEqual([
      'oidc',
      'token',
      'listBranches',
      'listBranches',
      'listEndpoints',
      'listEndpoints',
      'getEndpoint',
      'me',
      'credentials',
    ]);
    const lists = world.fake.calls.filter((c) => c.route === 'listBranches' || c.route === 'listEndpoints');
    expect(lists.map((c) => c.query === '')).toEqual([true, false, true, false]); // 2nd page asked with page_token
    expect(lists[1]?.query).toMatch(/^page_token=/);
    expect(world.fake.calls.find((c) => c.route === 'listEndpoints')?.path).toBe(
      `/api/2.0/postgres/projects/${PROJECT}/branches/production/endpoints`,
    );
    expect(world.fake.calls.find((c) => c.route === 'getEndpoint')?.path).toBe(
      `/api/2.0/postgres/${PRIMARY}`,
    );
    expect(world.fake.minted.at(-1)?.endpoint).toBe(PRIMARY);
    expect(connector.lastConnection).toEqual({
      mode: 'databricks',
      user: world.appId,
      database: world.db.name,
      host: 'localhost',
      endpoint: PRIMARY,
    });
    expect(connector.stats()).toMatchObject({
      connections: 1,
      secretReads: 1,
      resolutions: 1,
      credentialsMinted: 1,
      credentialsReused: 0,
      databricksCalls: { listBranches: 2, listEndpoints: 2, getEndpoint: 1, generateCredential: 1, me: 1 },
    });
  });

  test('the default role is the SCIM userName of the identity, not its client id', async () => {
    const userName = `sp-${randomBytes(4).toString('hex')}`;
    await world.createRole(userName);
    const fake = await startFakeDatabricks({
      clientId: world.appId,
      clientSecret: world.clientSecret,
      userName,
      projects: defaultProjects(),
      postgres: world.admin,
    });
    try {
      const connector = createConnector(world.config({ DATABRICKS_HOST: fake.url }), world.deps());
      const client = keep(await connector.connect({ applicationName: 'lakets-tiering' }));
      expect((await client.query('SELECT current_user AS u')).rows[0].u).toBe(userName);
      expect(fake.count('me')).toBe(1);
    } finally {
      await fake.close();
    }
  });

  test('LAKETS_PG_ROLE names a group the service principal belongs to: the credential asks for it in group_name, login as that role, no SCIM Me call', async () => {
    const role = `lakets_jobs_${randomBytes(4).toString('hex')}`;
    await world.createRole(role);
    await world.admin.query(`GRANT ${pg.escapeIdentifier(role)} TO ${pg.escapeIdentifier(world.appId)}`);
    const connector = createConnector(world.config({ LAKETS_PG_ROLE: role }), world.deps());
    const client = keep(await connector.connect({ applicationName: 'lakets-retention' }));
    expect((await client.query('SELECT current_user AS u')).rows[0].u).toBe(role);
    expect(world.fake.count('me')).toBe(0);
    expect(world.fake.minted.at(-1)).toMatchObject({ groupName: role, role, identity: world.appId });
  });

  test('the service principal leaves the group while warm: the reused credential is refused at login, a fresh one too, and the error says why', async () => {
    const role = `lakets_jobs_${randomBytes(4).toString('hex')}`;
    await world.createRole(role);
    await world.admin.query(`GRANT ${pg.escapeIdentifier(role)} TO ${pg.escapeIdentifier(world.appId)}`);
    const connector = createConnector(world.config({ LAKETS_PG_ROLE: role }), world.deps());
    keep(await connector.connect({ applicationName: 'lakets-retention' }));
    await world.admin.query(`REVOKE ${pg.escapeIdentifier(role)} FROM ${pg.escapeIdentifier(world.appId)}`);
    const logged = world.log.lines.length;
    const error = await connector.connect({ applicationName: 'lakets-retention' }).catch((e: unknown) => e);
    // The reused credential is refused at login (28P01); the fresh one is refused by Databricks (403).
    expect(world.log.lines.slice(logged).join('\n')).toContain('Postgres refused a reused credential');
    expect(error).toMatchObject({ code: 'DATABRICKS_PERMISSION_DENIED', status: 403 });
    expect((error as Error).message).toContain(`GRANT "${role}" TO "${world.appId}";`);
    expect(world.fake.count('credentials')).toBe(2); // the reused one refused, a fresh one refused too
  });

  test('LAKETS_PG_ROLE set to the identity itself: no group_name, login as its own role', async () => {
    const connector = createConnector(world.config({ LAKETS_PG_ROLE: world.appId }), world.deps());
    const client = keep(await connector.connect({ applicationName: 'lakets-retention' }));
    expect((await client.query('SELECT current_user AS u')).rows[0].u).toBe(world.appId);
    const minted = world.fake.minted.at(-1);
    expect(minted?.role).toBe(world.appId);
    expect(minted && 'groupName' in minted).toBe(false);
    expect(world.fake.count('me')).toBe(0);
  });

  test('a credential does not log in as a role the service principal is not a member of', async () => {
    const role = `lakets_other_${randomBytes(4).toString('hex')}`;
    await world.createRole(role);
    const connector = createConnector(world.config({ LAKETS_PG_ROLE: role }), world.deps());
    const minted = world.fake.minted.length;
    const error = await connector.connect({ applicationName: 'lakets-retention' }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'DATABRICKS_PERMISSION_DENIED', status: 403 });
    expect((error as Error).message).toContain(`GRANT "${role}" TO "${world.appId}";`);
    expect((error as Error).message).toContain('unset LAKETS_PG_ROLE');
    expect(world.fake.minted.length).toBe(minted); // no credential for a role it is not a member of
  });

  test('a pinned endpoint skips the lists but still reads the endpoint for its host', async () => {
    const pinned = `projects/${PROJECT}/branches/dev/endpoints/dev-rw`;
    const connector = createConnector(world.config({ LAKETS_LAKEBASE_ENDPOINT: pinned }), world.deps());
    keep(await connector.connect({ applicationName: 'lakets-rollup-refresh' }));
    expect(world.fake.count('listBranches') + world.fake.count('listEndpoints')).toBe(0);
    expect(world.fake.calls.filter((c) => c.route === 'getEndpoint').map((c) => c.path)).toEqual([
      `/api/2.0/postgres/${pinned}`,
    ]);
    expect(world.fake.minted.at(-1)?.endpoint).toBe(pinned);
  });

  test('concurrent cold connections share one resolution and one credential', async () => {
    const connector = createConnector(world.config(), world.deps());
    const clients = await Promise.all(
      [1, 2, 3].map(() => connector.connect({ applicationName: 'lakets-rollup-refresh' })),
    );
    clients.forEach(keep);
    expect(world.fake.count('listBranches')).toBe(2);
    expect(world.fake.count('credentials')).toBe(1);
    expect(connector.stats()).toMatchObject({ connections: 3, secretReads: 1 });
  });
});

describe('warm invocations', () => {
  test('a second invocation reuses the connector: no secret read, no resolution, no new credential', async () => {
    const deps = world.deps();
    const first = getConnector(world.config(), deps);
    keep(await first.connect({ applicationName: 'lakets-retention' }));
    const coldCalls = world.fake.count();
    const coldReads = world.sm.count();

    // The next invocation parses the environment again and asks for its connector.
    const second = getConnector(world.config(), deps);
    expect(second).toBe(first);
    const client = keep(await second.connect({ applicationName: 'lakets-retention' }));
    expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);

    expect(world.fake.count()).toBe(coldCalls); // not one Databricks request
    expect(world.sm.count()).toBe(coldReads);
    expect(second.stats()).toMatchObject({
      connections: 2,
      resolutions: 1,
      credentialsMinted: 1,
      credentialsReused: 1,
    });
  });

  test('another configuration gets another connector', () => {
    const deps = world.deps();
    const a = getConnector(world.config(), deps);
    const b = getConnector(world.config({ LAKETS_PG_ROLE: 'someone_else' }), deps);
    expect(b).not.toBe(a);
  });

  test('the endpoint is kept while connections through it work, and re-resolved 25 hours after the last; a credential is reused only with more than 5 minutes left', async () => {
    let now = Date.now();
    const connector = createConnector(world.config(), world.deps({ now: () => now }));
    keep(await connector.connect({ applicationName: 'lakets-partition-manager' }));
    const firstToken = world.fake.minted.at(-1)?.token ?? '';
    expect(world.fake.count('credentials')).toBe(1);

    now += 4 * 60_000; // 4 min: same endpoint, same credential
    keep(await connector.connect({ applicationName: 'lakets-partition-manager' }));
    expect(world.fake.count('listBranches')).toBe(2);
    expect(world.fake.count('credentials')).toBe(1);

    now += 7 * 60_000; // 11 min: same endpoint, credential (49 min left) still reused
    keep(await connector.connect({ applicationName: 'lakets-partition-manager' }));
    expect(world.fake.count('listBranches')).toBe(2);
    expect(world.fake.count('getEndpoint')).toBe(1);
    expect(world.fake.count('credentials')).toBe(1);

    now += 45 * 60_000; // 56 min: 4 min left, so a fresh credential, which is the password now
    const client = keep(await connector.connect({ applicationName: 'lakets-partition-manager' }));
    expect(world.fake.count('credentials')).toBe(2);
    expect((await client.query('SELECT current_user AS u')).rows[0].u).toBe(world.appId);

    now += 24 * 60 * 60_000 - 56 * 60_000; // a day after the first run: same endpoint, a new credential
    keep(await connector.connect({ applicationName: 'lakets-partition-manager' }));
    expect(world.fake.count('listBranches')).toBe(2);
    expect(world.fake.count('credentials')).toBe(3);

    now += 25 * 60 * 60_000 + 1; // 25 h after the last connection: resolved again, a new credential
    keep(await connector.connect({ applicationName: 'lakets-partition-manager' }));
    expect(world.fake.count('listBranches')).toBe(4);
    expect(world.fake.count('getEndpoint')).toBe(2);
    expect(world.fake.count('credentials')).toBe(4);

    // The old token really stopped being the password.
    const stale = new pg.Client({
      ...world.db.info,
      user: world.appId,
      password: firstToken,
      database: world.db.name,
    });
    await expect(stale.connect()).rejects.toMatchObject({ code: '28P01' });
    await stale.end().catch(() => {});
  });

  test('a credential minted with 5 minutes or less to live is never reused', async () => {
    world.fake.setCredentialTtl(4 * 60_000);
    try {
      const connector = createConnector(world.config(), world.deps());
      keep(await connector.connect({ applicationName: 'lakets-tiering' }));
      keep(await connector.connect({ applicationName: 'lakets-tiering' }));
      expect(world.fake.count('credentials')).toBe(2);
      expect(connector.stats().credentialsReused).toBe(0);
    } finally {
      world.fake.setCredentialTtl(3_600_000);
    }
  });

  test('a reused credential the server no longer accepts is replaced once', async () => {
    const connector = createConnector(world.config(), world.deps());
    keep(await connector.connect({ applicationName: 'lakets-tiering' }));
    // Revoked behind our back: the cached token is no longer the password.
    await world.admin.query(`ALTER ROLE ${pg.escapeIdentifier(world.appId)} PASSWORD 'revoked-by-admin'`);
    const client = keep(await connector.connect({ applicationName: 'lakets-tiering' }));
    expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    expect(world.fake.count('credentials')).toBe(2);
  });
});

describe('the session the jobs get', () => {
  async function settings(client: pg.Client) {
    const names = ['statement_timeout', 'lock_timeout', 'TimeZone', 'application_name'];
    const out: Record<string, string> = {};
    for (const name of names) {
      const result = await client.query(`SHOW ${name}`);
      out[name] = result.rows[0][result.fields[0]?.name ?? name];
    }
    return out;
  }

  test('statement_timeout 10 min, lock_timeout 30 s, TimeZone UTC and application_name are in effect', async () => {
    const connector = createConnector(world.config(), world.deps());
    const client = keep(await connector.connect({ applicationName: 'lakets-retention' }));
    expect(await settings(client)).toEqual({
      statement_timeout: '10min',
      lock_timeout: '30s',
      TimeZone: 'UTC',
      application_name: 'lakets-retention',
    });
    const seen = await world.admin.query('SELECT application_name FROM pg_stat_activity WHERE usename = $1', [
      world.appId,
    ]);
    expect(seen.rows.map((r) => r.application_name)).toContain('lakets-retention');
  });

  test('autocommit: a write is visible to others at once, without COMMIT', async () => {
    await world.admin.query(
      `CREATE TABLE IF NOT EXISTS autocommit_probe (v int); GRANT ALL ON autocommit_probe TO ${pg.escapeIdentifier(world.appId)}`,
    );
    const client = keep(
      await createConnector(world.config(), world.deps()).connect({ applicationName: 'lakets-tiering' }),
    );
    await client.query('INSERT INTO autocommit_probe VALUES (42)');
    expect(
      (await world.admin.query('SELECT count(*)::int AS n FROM autocommit_probe WHERE v = 42')).rows[0].n,
    ).toBe(1);
  });

  test('server NOTICE and WARNING reach onNotice, and the client notice event still fires', async () => {
    const notices: Array<[string, string]> = [];
    const events: string[] = [];
    const client = keep(
      await createConnector(world.config(), world.deps()).connect({
        applicationName: 'lakets-retention',
        onNotice: (severity, message) => notices.push([severity, message]),
      }),
    );
    client.on('notice', (n) => events.push(n.message ?? ''));
    await client.query(
      "DO $$ BEGIN RAISE NOTICE 'chunk % deferred: not durable yet', 'public.metrics_20261124_000000'; RAISE WARNING 'dropping % failed', 'public.metrics_x'; END $$",
    );
    expect(notices).toEqual([
      ['NOTICE', 'chunk public.metrics_20261124_000000 deferred: not durable yet'],
      ['WARNING', 'dropping public.metrics_x failed'],
    ]);
    expect(events).toHaveLength(2);
  });

  test('without onNotice, notices go to the log rather than nowhere', async () => {
    const before = world.log.lines.length;
    const client = keep(
      await createConnector(world.config(), world.deps()).connect({ applicationName: 'lakets-tiering' }),
    );
    await client.query("DO $$ BEGIN RAISE NOTICE 'tier_chunk: shadow not STREAMING'; END $$");
    expect(world.log.lines.slice(before).some((l) => l.includes('tier_chunk: shadow not STREAMING'))).toBe(
      true,
    );
  });

  test('direct mode (LAKETS_DATABASE_URL): no Databricks, same session settings, ours win over the URL', async () => {
    const url = `${world.db.url}?application_name=from-url&options=${encodeURIComponent('-c TimeZone=Asia/Tokyo -c search_path=public')}`;
    const connector = createConnector(parseConfig({ LAKETS_DATABASE_URL: url }), { log: world.log });
    const client = keep(await connector.connect({ applicationName: 'lakets-partition-manager' }));
    expect(await settings(client)).toEqual({
      statement_timeout: '10min',
      lock_timeout: '30s',
      TimeZone: 'UTC',
      application_name: 'lakets-partition-manager',
    });
    expect((await client.query('SHOW search_path')).rows[0].search_path).toBe('public'); // theirs kept otherwise
    expect(world.fake.count()).toBe(0);
    expect(connector.lastConnection).toMatchObject({
      mode: 'direct',
      database: world.db.name,
      user: world.db.info.user,
    });
  });

  test('an application name Postgres would mangle is refused', async () => {
    const connector = createConnector(world.config(), world.deps());
    await expect(connector.connect({ applicationName: 'x'.repeat(64) })).rejects.toThrow(
      /1-63 printable ASCII/,
    );
  });
});
