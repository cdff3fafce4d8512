// A Databricks service principal in the local fakes, as the tests and the bench run the jobs: its
// application id and OAuth secret, its Postgres login role, the fake workspace that knows it (a
// minted credential becomes the real password of that role, until it expires), and the fake Secrets
// Manager holding its secret as the handlers read it.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import {
  type FakeDatabricks,
  type FakeInstance,
  type FakeProject,
  newApplicationId,
  startFakeDatabricks,
} from './fake-databricks.ts';
import { type FakeSecretsManager, startFakeSecretsManager } from './fake-secrets-manager.ts';

export interface FakeWorkspaceOptions {
  /** Superuser on the endpoints' database (the cluster the credentials log in to). */
  admin: pg.ClientBase;
  projects: Record<string, FakeProject>;
  /** Lakebase Provisioned database instances by name. */
  instances?: Record<string, FakeInstance>;
  pageSize?: number;
  /** Prefix of the generated OAuth secrets, so a leak check can tell them apart. */
  secretPrefix?: string;
}

export interface FakeWorkspace {
  /** The service principal's application id: its SCIM userName and its Postgres role. */
  appId: string;
  clientSecret: string;
  /** The Secrets Manager secret holding `{client_id, client_secret}`. */
  secretId: string;
  fake: FakeDatabricks;
  sm: FakeSecretsManager;
  /** Rotates the secret in the workspace and in Secrets Manager; returns the new one. */
  rotateSecret(): string;
  /** Stops both fakes (the role is the caller's to drop). */
  close(): Promise<void>;
}

export async function startFakeWorkspace(options: FakeWorkspaceOptions): Promise<FakeWorkspace> {
  const prefix = options.secretPrefix ?? 'fake';
  const newSecret = () => `${prefix}${randomBytes(20).toString('hex')}`;
  const appId = newApplicationId();
  const clientSecret = newSecret();
  const secretId = `lakets/sp-${randomBytes(4).toString('hex')}`;
  const secretValue = (secret: string) => JSON.stringify({ client_id: appId, client_secret: secret });
  await options.admin.query(`CREATE ROLE ${pg.escapeIdentifier(appId)} LOGIN`);
  const fake = await startFakeDatabricks({
    clientId: appId,
    clientSecret,
    projects: options.projects,
    ...(options.instances === undefined ? {} : { instances: options.instances }),
    ...(options.pageSize === undefined ? {} : { pageSize: options.pageSize }),
    postgres: options.admin,
  });
  const sm = await startFakeSecretsManager({ secrets: { [secretId]: secretValue(clientSecret) } });
  return {
    appId,
    clientSecret,
    secretId,
    fake,
    sm,
    rotateSecret() {
      const next = newSecret();
      fake.setClientSecret(next);
      sm.setSecret(secretId, secretValue(next));
      return next;
    },
    async close() {
      await fake.close();
      await sm.close();
    },
  };
}
