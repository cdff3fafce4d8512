// The world the connection tests run in: the harness's real PostgreSQL 17 (TLS, scram-sha-256), a
// fake Databricks workspace (HTTPS, trusted through NODE_EXTRA_CA_CERTS) whose minted credentials
// become the real password of the role they log in as (the identity's own, or a group it really is
// a member of), and a fake Secrets Manager (HTTPS) holding the service principal's secret. Nothing
// about the database is mocked.
import pg from 'pg';
import { vi } from 'vitest';
import type { EndpointType, FakeDatabricks, FakeInstance, FakeProject } from '../../dev/fake-databricks.ts';
import type { FakeSecretsManager } from '../../dev/fake-secrets-manager.ts';
import { startFakeWorkspace } from '../../dev/fake-workspace.ts';
import { type DatabricksConfig, parseConfig } from '../../lib/config.ts';
import type { ConnectorDeps, Log } from '../../lib/lakebase/index.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';

export const RW: EndpointType = 'ENDPOINT_TYPE_READ_WRITE';
export const RO: EndpointType = 'ENDPOINT_TYPE_READ_ONLY';
export const PROJECT = 'lakets-prod';
export const PRIMARY = `projects/${PROJECT}/branches/production/endpoints/primary`;
/** A Lakebase Provisioned instance of the world, available on the harness's server. */
export const INSTANCE = 'lakets-provisioned';

export function defaultInstances(host = 'localhost'): Record<string, FakeInstance> {
  return { [INSTANCE]: { state: 'AVAILABLE', host } };
}

/** Three branches (default last) and three endpoints (read-write last): with pages of 2, both lists paginate. */
export function defaultProjects(host = 'localhost'): Record<string, FakeProject> {
  return {
    [PROJECT]: {
      branches: [
        { id: 'dev', endpoints: [{ id: 'dev-rw', type: RW, host }] },
        { id: 'staging', endpoints: [{ id: 'staging-rw', type: RW, host }] },
        {
          id: 'production',
          default: true,
          endpoints: [
            { id: 'replica-a', type: RO, host },
            { id: 'replica-b', type: RO, host },
            { id: 'primary', type: RW, host },
          ],
        },
      ],
    },
  };
}

export interface CapturedLog extends Log {
  lines: string[];
}

export function captureLog(): CapturedLog {
  const lines: string[] = [];
  const write =
    (level: string) =>
    (message: string, ...attributes: Record<string, unknown>[]) => {
      lines.push(JSON.stringify({ level, message, ...Object.assign({}, ...attributes) }));
    };
  return { lines, debug: write('debug'), info: write('info'), warn: write('warn') };
}

export interface World {
  db: TestDatabase;
  admin: pg.Client;
  fake: FakeDatabricks;
  sm: FakeSecretsManager;
  /** The service principal's application id: its SCIM userName and its Postgres role. */
  appId: string;
  clientSecret: string;
  secretId: string;
  log: CapturedLog;
  /** The environment of a deployed function, plus overrides (undefined removes a variable). */
  env(overrides?: Record<string, string | undefined>): Record<string, string>;
  config(overrides?: Record<string, string | undefined>): DatabricksConfig;
  /** A new deps object (so a new connector cache) wired to this world. */
  deps(overrides?: Partial<ConnectorDeps>): ConnectorDeps;
  createRole(name: string, attributes?: string): Promise<void>;
  /** Rotates the service principal's secret in the workspace and in Secrets Manager; returns it. */
  rotateSecret(): string;
  /** Every secret value the world knows of, to check that none leaks. */
  secrets(): string[];
  close(): Promise<void>;
}

export async function startWorld(options: { pageSize?: number } = {}): Promise<World> {
  const db = await freshDatabase();
  const admin = await db.connect();
  // The minted token really is the password of the role it logs in as, and it really expires.
  const workspace = await startFakeWorkspace({
    admin,
    projects: defaultProjects(),
    instances: defaultInstances(),
    pageSize: options.pageSize ?? 2,
    secretPrefix: 'dose',
  });
  const { appId, clientSecret, secretId, fake, sm } = workspace;
  const roles: string[] = [appId];
  const rotatedSecrets: string[] = [clientSecret];

  const world = {} as World;
  const log = captureLog();

  Object.assign(world, {
    db,
    admin,
    fake,
    sm,
    appId,
    clientSecret,
    secretId,
    log,
    env(overrides: Record<string, string | undefined> = {}) {
      const base: Record<string, string | undefined> = {
        LAKETS_PROJECT: PROJECT,
        DATABRICKS_HOST: fake.url,
        LAKETS_SP_SECRET_ID: secretId,
        LAKETS_DATABASE: db.name,
        ...overrides,
      };
      return Object.fromEntries(
        Object.entries(base).filter((e): e is [string, string] => e[1] !== undefined),
      );
    },
    config(overrides: Record<string, string | undefined> = {}) {
      const config = parseConfig(world.env(overrides));
      if (config.kind !== 'databricks') throw new Error('expected a databricks config');
      return config;
    },
    deps(overrides: Partial<ConnectorDeps> = {}): ConnectorDeps {
      return {
        secretsManager: sm.client(),
        port: db.info.port,
        extraCa: db.info.caPem,
        log,
        retry: { budgetMs: 3_000, baseDelayMs: 20, maxDelayMs: 200 },
        ...overrides,
      };
    },
    async createRole(name: string, attributes = 'LOGIN') {
      await admin.query(`CREATE ROLE ${pg.escapeIdentifier(name)} ${attributes}`);
      roles.push(name);
    },
    rotateSecret() {
      const next = workspace.rotateSecret();
      rotatedSecrets.push(next);
      return next;
    },
    secrets() {
      return [...rotatedSecrets, db.info.password, ...fake.minted.map((m) => m.token), ...fake.accessTokens];
    },
    async close() {
      await workspace.close();
      for (const role of roles.reverse()) {
        // Roles are cluster-wide: leave none behind for other test files.
        await admin.query(`DROP OWNED BY ${pg.escapeIdentifier(role)}`).catch(() => {});
        await admin.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(role)}`).catch(() => {});
      }
    },
  });
  return world;
}

/** The known secrets that appear in any of `texts` (expected: none). */
export function leakedSecrets(world: World, texts: string[]): string[] {
  return world
    .secrets()
    .filter((secret) => secret.length >= 8 && texts.some((text) => text.includes(secret)));
}

/**
 * Keeps in `written` everything written to stdout and stderr (still shown), until vi.restoreAllMocks():
 * call it in beforeEach, so a file can scan all it printed for secrets.
 */
export function recordWrites(written: string[]): void {
  for (const stream of [process.stdout, process.stderr]) {
    const original = stream.write.bind(stream);
    vi.spyOn(stream, 'write').mockImplementation(((chunk: unknown, ...rest: unknown[]) => {
      written.push(String(chunk));
      return (original as (...a: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof stream.write);
  }
}
