// The handlers' entry point: `getConnector(config).connect({ applicationName })` gives a connected
// pg.Client. A connector lives for the container (module-level, keyed by config), so warm invocations
// reuse the secret, the OAuth token, the resolved endpoint and a still-fresh Postgres credential.
import { createHash } from 'node:crypto';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type pg from 'pg';
import type { LakebaseConfig } from '../config.ts';
import { type DatabricksOp, DatabricksSession } from './api.ts';
import { CredentialCache, endpointMinter, IdentityCache, instanceMinter } from './credentials.ts';
import { EndpointResolver, type ResolvedEndpoint } from './endpoint.ts';
import { LakebaseError } from './errors.ts';
import { DEFAULT_INSTANCE_WAIT, InstanceResolver, type InstanceWait } from './instance.ts';
import { type Log, silentLog } from './log.ts';
import {
  CONNECT_TIMEOUT_MS,
  directClientConfig,
  lakebaseClientConfig,
  openClient,
  type SessionOptions,
} from './postgres.ts';
import { DEFAULT_RETRY, type RetryPolicy, sleep } from './retry.ts';
import {
  type CredentialSource,
  createSecretsManagerClient,
  secretsManagerCredentials,
  staticCredentials,
} from './secret.ts';

export interface ConnectorDeps {
  /**
   * Secrets Manager client. Default: createSecretsManagerClient() (region and credentials from the
   * Lambda environment); tests point one made by it at a local endpoint.
   */
  secretsManager?: SecretsManagerClient;
  log?: Log;
  /**
   * Credential sources by secret id, shared by the connectors of every target of a handler: a
   * service principal serving several targets is read from Secrets Manager once per container (and
   * re-read once for all of them after an authentication failure). Unset: each connector its own.
   */
  secretSources?: Map<string, CredentialSource>;
  /** Postgres port of the Lakebase endpoint. Default 5432. */
  port?: number;
  /** Extra PEM CA for Postgres TLS, trusted besides the system roots (tests). */
  extraCa?: string;
  retry?: RetryPolicy;
  /** How long a resolved endpoint (or instance host) is trusted. Default 25 hours. */
  endpointTtlMs?: number;
  /** How long a connection waits for a Provisioned instance that is starting, updating or failing over. */
  instanceWait?: InstanceWait;
  connectTimeoutMs?: number;
  /** Timeout of each Databricks API call attempt (socket inactivity, and the attempt as a whole). Default 30 s. */
  httpTimeoutSeconds?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

/** What a connector has done since it was created: for tests, benchmarks and the job report. */
export interface ConnectorStats {
  connections: number;
  secretReads: number;
  workspaceClients: number;
  resolutions: number;
  credentialsMinted: number;
  credentialsReused: number;
  authRetries: number;
  transientRetries: number;
  /** Databricks REST calls made by this library, by operation (OAuth discovery/token not included). */
  databricksCalls: Record<DatabricksOp, number>;
}

export interface ConnectionInfo {
  mode: 'direct' | 'databricks';
  user: string;
  database: string;
  host: string;
  /** The Autoscaling endpoint it went through. */
  endpoint?: string;
  /** The Provisioned instance it went to. */
  instance?: string;
}

export interface ConnectOptions extends SessionOptions {
  /**
   * The invocation's time left (a Lambda context's getRemainingTimeInMillis): bounds how long a
   * connection waits for a Provisioned instance in a transient state.
   */
  remainingMs?: () => number;
}

export interface Connector {
  readonly config: LakebaseConfig;
  /** Opens a new physical connection (caller ends it). Throws LakebaseError. */
  connect(options: ConnectOptions): Promise<pg.Client>;
  /** Where the last connection went (no secrets). */
  readonly lastConnection: ConnectionInfo | undefined;
  /** A snapshot of the counters. */
  stats(): ConnectorStats;
  /** Forgets the resolved endpoint and cached credentials (the next connect resolves again). */
  invalidate(): void;
}

function emptyStats(): ConnectorStats {
  return {
    connections: 0,
    secretReads: 0,
    workspaceClients: 0,
    resolutions: 0,
    credentialsMinted: 0,
    credentialsReused: 0,
    authRetries: 0,
    transientRetries: 0,
    databricksCalls: {
      listBranches: 0,
      listEndpoints: 0,
      getEndpoint: 0,
      generateCredential: 0,
      getInstance: 0,
      generateInstanceCredential: 0,
      me: 0,
    },
  };
}

function snapshot(stats: ConnectorStats): ConnectorStats {
  return { ...stats, databricksCalls: { ...stats.databricksCalls } };
}

export function createConnector(config: LakebaseConfig, deps: ConnectorDeps = {}): Connector {
  return config.kind === 'direct' ? directConnector(config, deps) : databricksConnector(config, deps);
}

function directConnector(
  config: Extract<LakebaseConfig, { kind: 'direct' }>,
  deps: ConnectorDeps,
): Connector {
  const stats = emptyStats();
  const log = deps.log ?? silentLog;
  let lastConnection: ConnectionInfo | undefined;
  return {
    config,
    get lastConnection() {
      return lastConnection;
    },
    async connect(options) {
      const url = new URL(config.databaseUrl.reveal());
      const info: ConnectionInfo = {
        mode: 'direct',
        user: decodeURIComponent(url.username),
        database: decodeURIComponent(url.pathname.slice(1)),
        host: url.hostname,
      };
      const pgConfig = directClientConfig(
        config.databaseUrl.reveal(),
        options.applicationName,
        deps.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
      );
      const client = await openClient(pgConfig, options, { ...info, port: url.port || 5432, log });
      stats.connections += 1;
      lastConnection = info;
      return client;
    },
    stats: () => snapshot(stats),
    invalidate() {},
  };
}

function databricksConnector(
  config: Extract<LakebaseConfig, { kind: 'databricks' }>,
  deps: ConnectorDeps,
): Connector {
  const stats = emptyStats();
  const log = deps.log ?? silentLog;
  const now = deps.now ?? Date.now;
  const retry = deps.retry ?? DEFAULT_RETRY;
  let lastConnection: ConnectionInfo | undefined;

  let credentials: CredentialSource;
  const shared = config.secretId ? deps.secretSources?.get(config.secretId) : undefined;
  if (shared) {
    credentials = shared;
  } else if (config.secretId) {
    // Counted by the connector that made the source (the reads of a shared one are the fake's to count).
    credentials = secretsManagerCredentials(config.secretId, {
      client: deps.secretsManager ?? createSecretsManagerClient(),
      log,
      onRead: () => {
        stats.secretReads += 1;
      },
    });
    deps.secretSources?.set(config.secretId, credentials);
  } else if (config.clientId && config.clientSecret) {
    credentials = staticCredentials(config.clientId, config.clientSecret.reveal());
  } else {
    throw new TypeError(
      'databricks config without LAKETS_SP_SECRET_ID or client id/secret (use parseConfig)',
    );
  }

  const session = new DatabricksSession({
    host: config.host,
    credentials,
    retry,
    httpTimeoutSeconds: deps.httpTimeoutSeconds ?? 30,
    log,
    now,
    sleep: deps.sleep ?? sleep,
    ...(deps.random ? { random: deps.random } : {}),
    onCall: (op) => {
      stats.databricksCalls[op] += 1;
    },
    onRetry: (kind) => {
      if (kind === 'auth') stats.authRetries += 1;
      else stats.transientRetries += 1;
    },
    onClientCreated: () => {
      stats.workspaceClients += 1;
    },
  });
  // Counted from the last connection that worked through it, and longer than the longest schedule
  // period (a day): warm invocations one period apart make no resolution calls. An unreachable host
  // is forgotten at once (below), so a moved one costs one failed run.
  const ttlMs = deps.endpointTtlMs ?? 25 * 60 * 60_000;
  const onResolve = () => {
    stats.resolutions += 1;
  };
  const resolver: HostResolver =
    config.instance !== undefined
      ? new InstanceResolver(session, {
          instance: config.instance,
          ttlMs,
          wait: deps.instanceWait ?? DEFAULT_INSTANCE_WAIT,
          now,
          sleep: deps.sleep ?? sleep,
          ...(deps.random ? { random: deps.random } : {}),
          log,
          onResolve,
        })
      : new EndpointResolver(session, {
          project: config.project,
          ...(config.endpoint ? { pinned: config.endpoint } : {}),
          ttlMs,
          now,
          log,
          onResolve,
        });
  const tokens = new CredentialCache({
    mint:
      config.instance !== undefined
        ? instanceMinter(session)
        : endpointMinter(session, config.project, config.pgRole),
    now,
    log,
    onMint: () => {
      stats.credentialsMinted += 1;
    },
    onReuse: () => {
      stats.credentialsReused += 1;
    },
  });
  const identity = new IdentityCache(
    session,
    config.instance !== undefined ? { instance: config.instance } : { project: config.project },
  );
  // Where a connection goes, for the log and lastConnection.
  const where = (resolved: ResolvedEndpoint) =>
    config.instance !== undefined ? { instance: resolved.name } : { endpoint: resolved.name };
  const port = deps.port ?? 5432;
  const connectTimeoutMs = deps.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;

  function attempt(endpoint: ResolvedEndpoint, user: string, token: string, options: ConnectOptions) {
    const pgConfig = lakebaseClientConfig(
      {
        host: endpoint.host,
        port,
        user,
        password: token,
        database: config.database,
        ...(deps.extraCa ? { extraCa: deps.extraCa } : {}),
        connectTimeoutMs,
      },
      options.applicationName,
    );
    return openClient(pgConfig, options, { host: endpoint.host, port, user, database: config.database, log });
  }

  return {
    config,
    get lastConnection() {
      return lastConnection;
    },
    async connect(options) {
      const endpoint = await resolver.resolve(options.remainingMs);
      const user = config.pgRole ?? (await identity.userName());
      let { credential, reused } = await tokens.get(endpoint.name, endpoint.pinned);
      let client: pg.Client;
      try {
        client = await attempt(endpoint, user, credential.token, options);
      } catch (error) {
        if (!(error instanceof LakebaseError)) throw error;
        if (error.code === 'PG_AUTH_FAILED' && reused) {
          // A reused credential can have been revoked early: mint a new one and try once more.
          log.warn('Postgres refused a reused credential; minting a new one', where(endpoint));
          tokens.drop(endpoint.name);
          ({ credential, reused } = await tokens.get(endpoint.name, endpoint.pinned));
          client = await attempt(endpoint, user, credential.token, options);
        } else {
          // Unreachable or unknown host: the endpoint may have moved; resolve again next time.
          if (error.code === 'PG_UNREACHABLE' || error.code === 'PG_CONNECT_TIMEOUT') resolver.invalidate();
          if (error.code === 'PG_AUTH_FAILED') tokens.drop(endpoint.name);
          throw error;
        }
      }
      stats.connections += 1;
      resolver.confirm(endpoint);
      lastConnection = {
        mode: 'databricks',
        user,
        database: config.database,
        host: endpoint.host,
        ...where(endpoint),
      };
      log.debug('connected to Lakebase', {
        ...where(endpoint),
        host: endpoint.host,
        user,
        database: config.database,
        applicationName: options.applicationName,
        credentialReused: reused,
      });
      return client;
    },
    stats: () => snapshot(stats),
    invalidate() {
      resolver.invalidate();
      tokens.clear();
    },
  };
}

/** Finds the Postgres host: an Autoscaling endpoint, or a Provisioned instance's read-write host. */
interface HostResolver {
  resolve(remainingMs?: () => number): Promise<ResolvedEndpoint>;
  /** A connection through it worked: trust it for another TTL. */
  confirm(resolved: ResolvedEndpoint): void;
  invalidate(): void;
}

// One connector per (deps, config) for the life of the container. Deps are compared by identity so
// that tests passing their own deps object get their own connectors.
const DEFAULT_DEPS: ConnectorDeps = {};
const connectors = new WeakMap<ConnectorDeps, Map<string, Connector>>();

function configKey(config: LakebaseConfig): string {
  // Secret.toJSON prints ***, so secret values are keyed by a digest of them.
  const secret = config.kind === 'direct' ? config.databaseUrl : config.clientSecret;
  const digest = secret ? createHash('sha256').update(secret.reveal()).digest('hex') : '';
  return `${JSON.stringify(config)}|${digest}`;
}

/**
 * The container's connector for `config`, created on first use. Connectors are cached per `deps`
 * object: pass the same one every invocation (e.g. built once at module scope), or none.
 */
export function getConnector(config: LakebaseConfig, deps: ConnectorDeps = DEFAULT_DEPS): Connector {
  let byConfig = connectors.get(deps);
  if (!byConfig) {
    byConfig = new Map();
    connectors.set(deps, byConfig);
  }
  const key = configKey(config);
  let connector = byConfig.get(key);
  if (!connector) {
    connector = createConnector(config, deps);
    byConfig.set(key, connector);
  }
  return connector;
}
