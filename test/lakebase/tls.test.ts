// Every HTTPS request the jobs make is verified: Databricks REST, OIDC discovery, the OAuth token
// exchange and Secrets Manager. The fakes present certificates from the run's throwaway CA, which
// the test workers trust only through NODE_EXTRA_CA_CERTS (set by the global setup before they
// start), the mechanism a deployed function uses for a private CA. A server with a certificate from
// any other CA, or for another name, is refused with TLS_UNTRUSTED naming the host, and no request
// reaches its handler — whatever the environment says.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { getCACertificates } from 'node:tls';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { startFakeDatabricks } from '../../dev/fake-databricks.ts';
import { startFakeSecretsManager } from '../../dev/fake-secrets-manager.ts';
import { fakeTls, type ServerCertificate, untrustedCertificate } from '../../dev/fake-tls.ts';
import { type Connector, createConnector, LakebaseError } from '../../lib/lakebase/index.ts';
import { VerifiedAgent } from '../../lib/lakebase/tls.ts';
import { workspaceClient } from '../../lib/lakebase/workspace.ts';
import { defaultProjects, leakedSecrets, startWorld, type World } from './world.ts';

let world: World;
const opened: pg.Client[] = [];
const messages: string[] = [];
const servers: Server[] = [];

// Everything that could plausibly turn certificate checks off, set for the tests that say so.
const INSECURE_ENV: Record<string, string> = {
  NODE_TLS_REJECT_UNAUTHORIZED: '0',
  DATABRICKS_SDK_PROXY_STRICT_SSL: 'false',
  DATABRICKS_SKIP_VERIFY: 'true',
  DATABRICKS_INSECURE_SKIP_VERIFY: 'true',
  AWS_CA_BUNDLE: '/dev/null',
};

beforeAll(async () => {
  world = await startWorld();
});
afterAll(async () => {
  await Promise.allSettled(opened.map((c) => c.end()));
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  await world.close();
});
afterEach(() => {
  world.fake.resetCalls();
  world.fake.setCertificate(fakeTls());
  world.sm.setCertificate(fakeTls());
  expect(leakedSecrets(world, [...messages, ...world.log.lines])).toEqual([]);
});

async function withEnv<T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

async function untrusted(connector: Connector): Promise<LakebaseError> {
  const error = await connector.connect({ applicationName: 'lakets-test' }).then(
    (client) => {
      opened.push(client);
      throw new Error('connected through a server whose certificate should have been refused');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(LakebaseError);
  const e = error as LakebaseError;
  messages.push(e.message);
  expect(e.code).toBe('TLS_UNTRUSTED');
  expect(e.message).not.toMatch(/[\r\n]/);
  expect(e.message).toMatch(/Verification cannot be turned off/);
  return e;
}

/** An HTTPS server counting the requests that reach its handler. */
async function countingServer(
  certificate: ServerCertificate,
  answer: (path: string) => unknown = () => ({}),
): Promise<{ url: string; host: string; requests: string[] }> {
  const requests: string[] = [];
  const server = createServer({ cert: certificate.cert, key: certificate.key }, (req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const body = JSON.stringify(answer(req.url ?? '/'));
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url: `https://${host}`, host, requests };
}

describe('the trust the tests run with', () => {
  test("the fakes' CA is trusted through NODE_EXTRA_CA_CERTS, and nothing else trusts it", () => {
    const tls = fakeTls();
    expect(process.env.NODE_EXTRA_CA_CERTS).toBe(tls.caFile);
    expect(readFileSync(tls.caFile, 'utf8')).toContain(tls.caPem.trim());
    const normal = (pem: string) => pem.replace(/\s+/g, '');
    expect(getCACertificates('extra').map(normal)).toContain(normal(tls.caPem));
    expect(getCACertificates('bundled').map(normal)).not.toContain(normal(tls.caPem));
    expect(world.fake.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(world.sm.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  });

  test('the workspace client verifies on every path: its agent, the SDK config, whatever was asked', async () => {
    const { client } = workspaceClient(
      world.fake.url,
      { clientId: world.appId, clientSecret: world.clientSecret },
      { retryTimeoutSeconds: 1, httpTimeoutSeconds: 1 },
    );
    expect(client.agent.options.rejectUnauthorized).toBe(true);
    expect(await client.apiClient.getAgent()).toBe(client.agent);
    expect(client.apiClient.config.skipVerify).toBe(false);
    // The agent cannot be talked out of it, nor given other roots or another identity check.
    const forced = new VerifiedAgent({
      rejectUnauthorized: false,
      ca: 'not a CA',
      checkServerIdentity: () => undefined,
    } as unknown as ConstructorParameters<typeof VerifiedAgent>[0]);
    expect(forced.options.rejectUnauthorized).toBe(true);
    expect(forced.options).not.toHaveProperty('ca');
    expect(forced.options).not.toHaveProperty('checkServerIdentity');
  });
});

describe('Databricks', () => {
  test('a workspace with a certificate from another CA is refused at OIDC discovery: TLS_UNTRUSTED naming the host; no request reaches it', async () => {
    const fake = await startFakeDatabricks({
      clientId: world.appId,
      clientSecret: world.clientSecret,
      projects: defaultProjects(),
      certificate: untrustedCertificate(),
    });
    try {
      const error = await untrusted(
        createConnector(world.config({ DATABRICKS_HOST: fake.url }), world.deps()),
      );
      expect(error.message).toContain(`the TLS certificate of ${new URL(fake.url).host} failed verification`);
      expect(error.message).toMatch(/self-signed|does not chain/);
      expect(fake.calls).toEqual([]);
    } finally {
      await fake.close();
    }
  });

  test('the REST calls verify too: a certificate swapped under a warm client is refused, and the bearer token is never sent', async () => {
    const connector = createConnector(world.config(), world.deps());
    opened.push(await connector.connect({ applicationName: 'lakets-test' }));
    const before = world.fake.calls.length;
    // Same host, same cached OAuth token: only the REST path is left to verify the new certificate.
    world.fake.setCertificate(untrustedCertificate());
    connector.invalidate();
    const error = await untrusted(connector);
    expect(error.message).toContain(
      `the TLS certificate of ${new URL(world.fake.url).host} failed verification`,
    );
    expect(error.message).toContain('while listing branches of projects/lakets-prod');
    expect(world.fake.calls.length).toBe(before);
  });

  test('a certificate for another host name, even from the trusted CA, is refused (ERR_TLS_CERT_ALTNAME_INVALID)', async () => {
    const fake = await startFakeDatabricks({
      clientId: world.appId,
      clientSecret: world.clientSecret,
      projects: defaultProjects(),
      certificate: fakeTls().issue(['dbc-other.cloud.databricks.com']),
    });
    try {
      const error = await untrusted(
        createConnector(world.config({ DATABRICKS_HOST: fake.url }), world.deps()),
      );
      expect(error.message).toContain('ERR_TLS_CERT_ALTNAME_INVALID');
      expect(error.message).toContain(new URL(fake.url).host);
      expect(fake.calls).toEqual([]);
    } finally {
      await fake.close();
    }
  });

  test('no environment setting turns verification off (REST path)', async () => {
    const connector = createConnector(world.config(), world.deps());
    opened.push(await connector.connect({ applicationName: 'lakets-test' }));
    const before = world.fake.calls.length;
    world.fake.setCertificate(untrustedCertificate());
    connector.invalidate();
    await withEnv(INSECURE_ENV, () => untrusted(connector));
    expect(world.fake.calls.length).toBe(before);
  });

  test('no environment setting turns verification off (OIDC discovery and token exchange): the client secret never reaches an untrusted token endpoint', async () => {
    // Discovery is on a trusted server; the token endpoint it names is not.
    const tokenServer = await countingServer(untrustedCertificate(), () => ({
      access_token: 'stolen',
      token_type: 'Bearer',
      expires_in: 3600,
    }));
    const workspace = await countingServer(fakeTls(), (path) =>
      path.startsWith('/oidc/.well-known')
        ? {
            issuer: 'x',
            authorization_endpoint: `${tokenServer.url}/oidc/v1/authorize`,
            token_endpoint: `${tokenServer.url}/oidc/v1/token`,
          }
        : {},
    );
    const connector = createConnector(world.config({ DATABRICKS_HOST: workspace.url }), world.deps());
    const error = await withEnv(INSECURE_ENV, () => untrusted(connector));
    expect(error.message).toContain(`the TLS certificate of ${tokenServer.host} failed verification`);
    expect(workspace.requests).toEqual(['GET /oidc/.well-known/oauth-authorization-server']);
    expect(tokenServer.requests).toEqual([]);
  });
});

describe('Secrets Manager', () => {
  test('an endpoint with a certificate from another CA is refused: TLS_UNTRUSTED naming the host; no request reaches it, whatever the environment', async () => {
    const secretId = `lakets/tls-${randomBytes(3).toString('hex')}`;
    const sm = await startFakeSecretsManager({
      secrets: { [secretId]: JSON.stringify({ client_id: world.appId, client_secret: world.clientSecret }) },
      certificate: untrustedCertificate(),
    });
    try {
      const connector = createConnector(
        world.config({ LAKETS_SP_SECRET_ID: secretId }),
        world.deps({ secretsManager: sm.client() }),
      );
      for (const env of [{}, INSECURE_ENV]) {
        const error = await withEnv(env, () => untrusted(connector));
        expect(error.message).toContain(`the TLS certificate of ${new URL(sm.url).host} failed verification`);
        expect(error.message).toContain(`while reading secret ${secretId}`);
      }
      expect(sm.calls).toEqual([]);
      expect(world.fake.calls).toEqual([]); // and nothing went on to Databricks
    } finally {
      await sm.close();
    }
  });

  test('the trusted endpoint is read over verified TLS', async () => {
    const connector = createConnector(world.config(), world.deps());
    opened.push(await connector.connect({ applicationName: 'lakets-test' }));
    expect(world.sm.calls.map((c) => c.status)).toContain(200);
  });
});
