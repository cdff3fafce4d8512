// The fake workspace is only worth its strictness: it refuses what the real Databricks REST API refuses
// (HTTPS only, content types, error bodies, page tokens, credentials bound to roles: docs/testing.md),
// so that a client defect shows here rather than in production. Driven with plain HTTPS requests (global fetch), not through the library.
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type FakeDatabricks, newApplicationId, startFakeDatabricks } from '../../dev/fake-databricks.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { defaultProjects, INSTANCE, PRIMARY, PROJECT } from './world.ts';

let fake: FakeDatabricks;
let db: TestDatabase;
let admin: pg.Client;
const appId = newApplicationId();
const clientSecret = `dose${randomBytes(20).toString('hex')}`;
const roles: string[] = [];

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect();
  fake = await startFakeDatabricks({
    clientId: appId,
    clientSecret,
    projects: defaultProjects(),
    instances: { [INSTANCE]: { state: 'AVAILABLE', host: 'localhost' } },
    postgres: admin,
  });
});
afterAll(async () => {
  await fake.close();
  for (const role of roles.reverse()) await admin.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(role)}`);
});

async function role(name: string, attributes = 'LOGIN'): Promise<string> {
  await admin.query(`CREATE ROLE ${pg.escapeIdentifier(name)} ${attributes}`);
  roles.push(name);
  return name;
}

async function accessToken(): Promise<string> {
  const res = await fetch(`${fake.url}/oidc/v1/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${appId}:${clientSecret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: 'grant_type=client_credentials&scope=all-apis',
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

async function api(path: string, init: RequestInit = {}, token?: string) {
  const res = await fetch(`${fake.url}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${token ?? (await accessToken())}`, ...init.headers },
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const credential = (body: unknown, contentType?: string) =>
  api('/api/2.0/postgres/credentials', {
    method: 'POST',
    headers: contentType ? { 'content-type': contentType } : {},
    body: JSON.stringify(body),
  });

/** The real error shape: error_code, message, and one google.rpc.RequestInfo detail. */
function expectRealError(body: Record<string, unknown>, errorCode: string): void {
  expect(body).toEqual({
    error_code: errorCode,
    message: expect.any(String),
    details: [
      {
        '@type': 'type.googleapis.com/google.rpc.RequestInfo',
        request_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        serving_data: '',
      },
    ],
  });
}

describe('requests', () => {
  test('a JSON POST without Content-Type: application/json is 415, in the real error shape', async () => {
    for (const contentType of [undefined, 'text/plain', 'application/x-www-form-urlencoded']) {
      const { status, body } = await credential({ endpoint: PRIMARY }, contentType);
      expect(status, String(contentType)).toBe(415);
      expectRealError(body, 'UNSUPPORTED_MEDIA_TYPE');
    }
    const ok = await credential({ endpoint: PRIMARY }, 'application/json; charset=utf-8');
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({ token: expect.stringMatching(/^fake-pg-/), expire_time: expect.any(String) });
  });

  test('errors carry the details entry (404, 400, 401)', async () => {
    const missing = await api(`/api/2.0/postgres/projects/nope/branches`);
    expect(missing.status).toBe(404);
    expectRealError(missing.body, 'NOT_FOUND');
    const bad = await credential({}, 'application/json');
    expect(bad.status).toBe(400);
    expectRealError(bad.body, 'INVALID_PARAMETER_VALUE');
    const anonymous = await api(`/api/2.0/postgres/projects/${PROJECT}/branches`, {}, 'not-a-token');
    expect(anonymous.status).toBe(401);
    expectRealError(anonymous.body, 'UNAUTHENTICATED');
  });

  test('the token endpoint wants a form body', async () => {
    const res = await fetch(`${fake.url}/oidc/v1/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${appId}:${clientSecret}`).toString('base64')}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ grant_type: 'client_credentials' }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_request' });
  });

  test('access tokens expire', async () => {
    fake.setAccessTokenTtl(1);
    try {
      const token = await accessToken();
      expect((await api(`/api/2.0/postgres/projects/${PROJECT}/branches`, {}, token)).status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const expired = await api(`/api/2.0/postgres/projects/${PROJECT}/branches`, {}, token);
      expect(expired.status).toBe(401);
    } finally {
      fake.setAccessTokenTtl(3600);
    }
  });
});

describe('pages and resources', () => {
  test('page tokens are opaque: the next page works with the token given, a made-up or reused-shape token is a 400', async () => {
    const token = await accessToken();
    const path = `/api/2.0/postgres/projects/${PROJECT}/branches`;
    const first = await api(path, {}, token);
    const next = first.body.next_page_token as string;
    expect(next).toEqual(expect.any(String));
    // Not derived from the position: the same page asked again gets another token.
    expect((await api(path, {}, token)).body.next_page_token).not.toBe(next);
    const second = await api(`${path}?page_token=${encodeURIComponent(next)}`, {}, token);
    expect(second.status).toBe(200);
    expect((second.body.branches as unknown[]).length).toBe(1);
    for (const forged of ['garbage', Buffer.from('offset:2').toString('base64url'), `${next}x`]) {
      const bad = await api(`${path}?page_token=${encodeURIComponent(forged)}`, {}, token);
      expect(bad.status, forged).toBe(400);
      expectRealError(bad.body, 'INVALID_PARAMETER_VALUE');
    }
  });

  test('resources have status only: spec is input-only and never returned', async () => {
    const token = await accessToken();
    const branches = await api(`/api/2.0/postgres/projects/${PROJECT}/branches?page_size=10`, {}, token);
    const endpoints = await api(
      `/api/2.0/postgres/projects/${PROJECT}/branches/production/endpoints`,
      {},
      token,
    );
    const endpoint = await api(`/api/2.0/postgres/${PRIMARY}`, {}, token);
    for (const resource of [
      ...(branches.body.branches as object[]),
      ...(endpoints.body.endpoints as object[]),
      endpoint.body,
    ]) {
      expect(resource).toHaveProperty('status');
      expect(resource).not.toHaveProperty('spec');
    }
    expect(endpoint.body.status).toMatchObject({
      endpoint_type: 'ENDPOINT_TYPE_READ_WRITE',
      current_state: 'ACTIVE',
      hosts: { host: 'localhost' },
    });
  });
});

/** Logs in to the test database as `user`: the role it runs as, or the SQLSTATE of the refusal. */
async function login(user: string, password: string): Promise<string> {
  const client = new pg.Client({ ...db.info, user, password, database: db.name, ssl: { ca: db.info.caPem } });
  try {
    await client.connect();
    return (await client.query<{ u: string }>('SELECT current_user AS u')).rows[0]?.u ?? '';
  } catch (error) {
    return (error as { code?: string }).code ?? 'error';
  } finally {
    await client.end().catch(() => {});
  }
}

describe('credentials log in only as the identity or a group it is a member of', () => {
  test("without group_name: the identity's own role, and no other", async () => {
    await role(appId);
    const other = await role(`other_${randomBytes(3).toString('hex')}`);
    const { body } = await credential({ endpoint: PRIMARY }, 'application/json');
    const token = body.token as string;
    expect(fake.minted.at(-1)).toMatchObject({ identity: appId, role: appId });
    expect(await login(appId, token)).toBe(appId);
    expect(await login(other, token)).toBe('28P01');
  });

  test('with group_name: the group, only while the identity is a member (real role membership)', async () => {
    const group = await role(`jobs_${randomBytes(3).toString('hex')}`);
    const nested = await role(`nested_${randomBytes(3).toString('hex')}`);
    // Not a member: refused (403), nothing minted.
    const minted = fake.minted.length;
    let { status, body } = await credential({ endpoint: PRIMARY, group_name: group }, 'application/json');
    expect(status).toBe(403);
    expectRealError(body, 'PERMISSION_DENIED');
    expect(fake.minted.length).toBe(minted);
    // A member (through another group): logs in as the group.
    await admin.query(`GRANT ${pg.escapeIdentifier(nested)} TO ${pg.escapeIdentifier(appId)}`);
    await admin.query(`GRANT ${pg.escapeIdentifier(group)} TO ${pg.escapeIdentifier(nested)}`);
    ({ status, body } = await credential({ endpoint: PRIMARY, group_name: group }, 'application/json'));
    expect(status).toBe(200);
    expect(fake.minted.at(-1)).toMatchObject({ groupName: group, role: group });
    expect(await login(group, body.token as string)).toBe(group);
    expect(await login(appId, body.token as string)).toBe('28P01'); // not the identity's password now
    await admin.query(`REVOKE ${pg.escapeIdentifier(group)} FROM ${pg.escapeIdentifier(nested)}`);
    await admin.query(`REVOKE ${pg.escapeIdentifier(nested)} FROM ${pg.escapeIdentifier(appId)}`);
  });

  test('membership is checked again at login: revoked after minting, the same token is refused; granted again, accepted', async () => {
    const group = await role(`late_${randomBytes(3).toString('hex')}`);
    await admin.query(`GRANT ${pg.escapeIdentifier(group)} TO ${pg.escapeIdentifier(appId)}`);
    const { body } = await credential({ endpoint: PRIMARY, group_name: group }, 'application/json');
    const token = body.token as string;
    expect(await login(group, token)).toBe(group);
    await admin.query(`REVOKE ${pg.escapeIdentifier(group)} FROM ${pg.escapeIdentifier(appId)}`);
    expect(await login(group, token)).toBe('28P01');
    await admin.query(`GRANT ${pg.escapeIdentifier(group)} TO ${pg.escapeIdentifier(appId)}`);
    expect(await login(group, token)).toBe(group);
    await admin.query(`REVOKE ${pg.escapeIdentifier(group)} FROM ${pg.escapeIdentifier(appId)}`);
  });

  test('a group_name that is not a string is a 400', async () => {
    const { status, body } = await credential({ endpoint: PRIMARY, group_name: 42 }, 'application/json');
    expect(status).toBe(400);
    expectRealError(body, 'INVALID_PARAMETER_VALUE');
  });
});

describe('Provisioned instances', () => {
  // Content-Type application/json unless told otherwise (null: none at all).
  const instanceCredential = (body: unknown, contentType: string | null = 'application/json') =>
    api('/api/2.0/database/credentials', {
      method: 'POST',
      headers: contentType ? { 'content-type': contentType } : {},
      body: JSON.stringify(body),
    });
  const request = () => ({ request_id: randomUUID(), instance_names: [INSTANCE] });

  test('an instance reads as the API returns it: state and read_write_dns, no input-only `stopped`; an unknown one is a 404', async () => {
    const { status, body } = await api(`/api/2.0/database/instances/${INSTANCE}`);
    expect(status).toBe(200);
    expect(body).toMatchObject({
      name: INSTANCE,
      state: 'AVAILABLE',
      read_write_dns: 'localhost',
      effective_stopped: false,
    });
    expect(body).not.toHaveProperty('stopped');
    const missing = await api('/api/2.0/database/instances/nope');
    expect(missing.status).toBe(404);
    expectRealError(missing.body, 'NOT_FOUND');
  });

  test("its state is the tests' to set, and can change over reads", async () => {
    fake.instances.later = { state: 'AVAILABLE', host: 'localhost', upcoming: ['STARTING', 'FAILING_OVER'] };
    const states: unknown[] = [];
    for (let i = 0; i < 4; i++) states.push((await api('/api/2.0/database/instances/later')).body.state);
    expect(states).toEqual(['STARTING', 'FAILING_OVER', 'AVAILABLE', 'AVAILABLE']);
    fake.instances.later.state = 'STOPPED';
    expect((await api('/api/2.0/database/instances/later')).body).toMatchObject({
      state: 'STOPPED',
      effective_stopped: true,
    });
  });

  test('a credential request wants JSON with a UUID request_id and a non-empty instance_names (415, 400), and known instances (404)', async () => {
    for (const contentType of [null, 'text/plain']) {
      const { status, body } = await instanceCredential(request(), contentType);
      expect(status, String(contentType)).toBe(415);
      expectRealError(body, 'UNSUPPORTED_MEDIA_TYPE');
    }
    const bad: unknown[] = [
      { instance_names: [INSTANCE] },
      { request_id: 'not-a-uuid', instance_names: [INSTANCE] },
      { request_id: 42, instance_names: [INSTANCE] },
      { request_id: randomUUID() },
      { request_id: randomUUID(), instance_names: [] },
      { request_id: randomUUID(), instance_names: INSTANCE },
      { request_id: randomUUID(), instance_names: [7] },
      [request()],
    ];
    for (const body of bad) {
      const answer = await instanceCredential(body);
      expect(answer.status, JSON.stringify(body)).toBe(400);
    }
    expectRealError(
      (await instanceCredential({ instance_names: [INSTANCE] })).body,
      'INVALID_PARAMETER_VALUE',
    );
    const unknown = await instanceCredential({ request_id: randomUUID(), instance_names: ['nope'] });
    expect(unknown.status).toBe(404);
    expectRealError(unknown.body, 'NOT_FOUND');
    const ok = await instanceCredential(request());
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({
      token: expect.stringMatching(/^fake-pg-/),
      expiration_time: expect.any(String),
    });
  });

  test('a request_id makes the request idempotent: the same id answers the same credential, minted once', async () => {
    const body = request();
    const minted = fake.minted.length;
    const first = await instanceCredential(body);
    const again = await instanceCredential(body);
    expect(again.body.token).toBe(first.body.token);
    expect(fake.minted.length - minted).toBe(1);
    expect((await instanceCredential(request())).body.token).not.toBe(first.body.token);
  });

  test("the token logs in as the identity's own role and a login group it really is a member of, and no other; membership is checked again at login", async () => {
    await role(appId).catch(() => {}); // created by an earlier test of this file, or here
    const member = await role(`crew_${randomBytes(3).toString('hex')}`);
    const stranger = await role(`stranger_${randomBytes(3).toString('hex')}`);
    const owner = await role(`owner_${randomBytes(3).toString('hex')}`, 'NOLOGIN');
    await admin.query(`GRANT ${pg.escapeIdentifier(member)} TO ${pg.escapeIdentifier(appId)}`);
    await admin.query(`GRANT ${pg.escapeIdentifier(owner)} TO ${pg.escapeIdentifier(appId)}`);
    const { body } = await instanceCredential(request());
    const token = body.token as string;
    expect(fake.minted.at(-1)).toMatchObject({ identity: appId, role: appId, roles: [appId, member] });
    expect(await login(appId, token)).toBe(appId);
    expect(await login(member, token)).toBe(member);
    expect(await login(stranger, token)).toBe('28P01');
    await admin.query(`REVOKE ${pg.escapeIdentifier(member)} FROM ${pg.escapeIdentifier(appId)}`);
    expect(await login(member, token)).toBe('28P01');
    await admin.query(`REVOKE ${pg.escapeIdentifier(owner)} FROM ${pg.escapeIdentifier(appId)}`);
  });
});
