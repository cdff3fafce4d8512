// The service principal's secret: read through the real SecretsManagerClient (against a local
// endpoint), once per container, validated, and never shown.
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { parseConfig } from '../../lib/config.ts';
import {
  type Connector,
  createConnector,
  LakebaseError,
  type LakebaseErrorCode,
} from '../../lib/lakebase/index.ts';
import { parseClientSecret, secretsManagerCredentials } from '../../lib/lakebase/secret.ts';
import { captureLog, leakedSecrets, startWorld, type World } from './world.ts';

let world: World;
const opened: pg.Client[] = [];
const messages: string[] = [];

beforeAll(async () => {
  world = await startWorld();
});
afterAll(async () => {
  await Promise.allSettled(opened.map((c) => c.end()));
  await world.close();
});
afterEach(() => {
  world.sm.setFault(undefined);
  expect(leakedSecrets(world, [...messages, ...world.log.lines])).toEqual([]);
});

async function failure(connector: Connector, code: LakebaseErrorCode): Promise<LakebaseError> {
  const error = await connector.connect({ applicationName: 'lakets-test' }).then(
    (client) => {
      opened.push(client);
      throw new Error('connected, but a failure was expected');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(LakebaseError);
  const e = error as LakebaseError;
  messages.push(e.message);
  expect(e.code).toBe(code);
  expect(e.message).not.toMatch(/[\r\n]/);
  return e;
}

describe('secret JSON', () => {
  const hidden = 'dose-0123456789abcdef-never-show';
  test.each([
    ['not JSON', `{"client_id": "a", "client_secret": "${hidden}"`, /is not JSON/],
    ['an array', JSON.stringify([hidden]), /is not a JSON object/],
    ['no client_id', JSON.stringify({ client_secret: hidden }), /has no "client_id" key/],
    ['no client_secret', JSON.stringify({ client_id: 'app' }), /has no "client_secret" key/],
    [
      'client_secret not a string',
      JSON.stringify({ client_id: 'app', client_secret: 12345678 }),
      /"client_secret" that is not a non-empty string/,
    ],
    [
      'client_id empty',
      JSON.stringify({ client_id: ' ', client_secret: hidden }),
      /"client_id" that is not a non-empty string/,
    ],
  ])('%s: one line naming the key and the expected shape, never the value', (_, raw, expected) => {
    let error: unknown;
    try {
      parseClientSecret(raw, 'lakets/sp');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(LakebaseError);
    const e = error as LakebaseError;
    expect(e.code).toBe('SECRET_INVALID');
    expect(e.message).toMatch(expected);
    expect(e.message).toContain('lakets/sp');
    expect(e.message).toContain('{"client_id": "<application id>", "client_secret": "<OAuth secret>"}');
    expect(e.message).not.toContain(hidden);
    expect(e.message).not.toMatch(/[\r\n]/);
  });

  test('extra keys are fine', () => {
    expect(
      parseClientSecret(JSON.stringify({ client_id: 'app', client_secret: 's3cr3t-value', note: 'x' }), 'id'),
    ).toEqual({
      clientId: 'app',
      clientSecret: 's3cr3t-value',
    });
  });

  test('a bad secret in Secrets Manager fails the connection with SECRET_INVALID', async () => {
    const secretId = `lakets/bad-${randomBytes(3).toString('hex')}`;
    world.sm.setSecret(
      secretId,
      JSON.stringify({ client_id: world.appId, clientSecret: world.clientSecret }),
    );
    const error = await failure(
      createConnector(world.config({ LAKETS_SP_SECRET_ID: secretId }), world.deps()),
      'SECRET_INVALID',
    );
    expect(error.message).toContain('has no "client_secret" key');
    expect(world.fake.count('token')).toBe(0);
  });
});

describe('reading the secret', () => {
  test('once per container: three connections, one read, through the real signed AWS client', async () => {
    const connector = createConnector(world.config(), world.deps());
    for (let i = 0; i < 3; i += 1) opened.push(await connector.connect({ applicationName: 'lakets-test' }));
    const reads = world.sm.calls.filter((c) => c.secretId === world.secretId);
    expect(connector.stats().secretReads).toBe(1);
    expect(reads.at(-1)).toMatchObject({
      target: 'secretsmanager.GetSecretValue',
      status: 200,
      signed: true,
    });
  });

  test('by ARN', async () => {
    const connector = createConnector(
      world.config({ LAKETS_SP_SECRET_ID: world.sm.arn(world.secretId) }),
      world.deps(),
    );
    opened.push(await connector.connect({ applicationName: 'lakets-test' }));
    expect(connector.stats().secretReads).toBe(1);
  });

  test('concurrent first reads share one request', async () => {
    const before = world.sm.count();
    const source = secretsManagerCredentials(world.secretId, { client: world.sm.client(), log: world.log });
    const all = await Promise.all([source.get(), source.get(), source.get()]);
    expect(all.map((c) => c.clientId)).toEqual([world.appId, world.appId, world.appId]);
    expect(world.sm.count() - before).toBe(1);
    source.invalidate();
    await source.get();
    expect(world.sm.count() - before).toBe(2);
  });

  test('the log says which secret and version were read, never the value', async () => {
    const log = captureLog();
    const source = secretsManagerCredentials(world.secretId, { client: world.sm.client(), log });
    await source.get();
    expect(log.lines).toHaveLength(1);
    expect(log.lines[0]).toContain(world.secretId);
    expect(log.lines[0]).toContain('versionId');
    expect(log.lines[0]).not.toContain(world.clientSecret);
  });

  test('DATABRICKS_CLIENT_ID/SECRET instead: no Secrets Manager at all', async () => {
    const before = world.sm.count();
    const env = world.env({
      LAKETS_SP_SECRET_ID: undefined,
      DATABRICKS_CLIENT_ID: world.appId,
      DATABRICKS_CLIENT_SECRET: world.clientSecret,
    });
    const connector = createConnector(parseConfig(env), world.deps());
    opened.push(await connector.connect({ applicationName: 'lakets-test' }));
    expect(world.sm.count()).toBe(before);
  });
});

describe('Secrets Manager failures', () => {
  test('secret not found: names it and LAKETS_SP_SECRET_ID', async () => {
    const error = await failure(
      createConnector(world.config({ LAKETS_SP_SECRET_ID: 'lakets/nope' }), world.deps()),
      'SECRET_NOT_FOUND',
    );
    expect(error.message).toContain('lakets/nope');
    expect(error.message).toContain('LAKETS_SP_SECRET_ID');
  });

  test('access denied: names the IAM action (and KMS)', async () => {
    world.sm.setFault({
      type: 'AccessDeniedException',
      message: 'User: arn:aws:sts::1:assumed-role/x is not authorized',
    });
    const error = await failure(createConnector(world.config(), world.deps()), 'SECRET_ACCESS_DENIED');
    expect(error.message).toContain('secretsmanager:GetSecretValue');
    expect(error.message).toContain('kms:Decrypt');
  });

  test('service error: SECRET_UNAVAILABLE with the AWS error name', async () => {
    world.sm.setFault({ type: 'InternalServiceError', message: 'try again' });
    const error = await failure(createConnector(world.config(), world.deps()), 'SECRET_UNAVAILABLE');
    expect(error.message).toContain('InternalServiceError');
  });
});
