// The connection configuration, parsed once from the environment at the edge of each handler.
// Every problem is a ConfigError whose one-line message names the variable and says how to fix it;
// values that may be secret (client secrets, database URLs) are never echoed.
import { inspect } from 'node:util';
import {
  ConfigError,
  endpointProject,
  isDatabaseUrl,
  isInstanceName,
  isLoginName,
  isSecretId,
  projectId,
  SETTINGS,
  workspaceOrigin,
} from './settings.ts';

export { ConfigError } from './settings.ts';

/**
 * A secret value that does not print itself: a config object that ends up in a log line, an error or
 * JSON.stringify shows `***` instead. Call `reveal()` where the value is really needed.
 */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return '***';
  }
  toJSON(): string {
    return '***';
  }
  [inspect.custom](): string {
    return 'Secret(***)';
  }
}

export interface DirectConfig {
  kind: 'direct';
  /** A postgres:// URL used as given (local runs and tests): no Databricks, no Secrets Manager. */
  databaseUrl: Secret;
}

interface DatabricksCommon {
  kind: 'databricks';
  /** Workspace URL origin, e.g. `https://dbc-123.cloud.databricks.com`. */
  host: string;
  /** Secrets Manager secret id or ARN holding {"client_id", "client_secret"}. */
  secretId?: string;
  /** Set (with clientSecret) only when credentials come from DATABRICKS_CLIENT_ID/SECRET instead. */
  clientId?: string;
  clientSecret?: Secret;
  /** Postgres role to log in as; default: the service principal's own user name (application id). */
  pgRole?: string;
  database: string;
}

/** A Lakebase Autoscaling project: its default branch's read-write endpoint, or a pinned one. */
export interface AutoscalingTarget {
  /** `projects/<name>`. */
  project: string;
  /** Pinned `projects/<p>/branches/<b>/endpoints/<e>`: skips branch/endpoint resolution. */
  endpoint?: string;
  instance?: never;
}

/** A Lakebase Provisioned database instance, by name. */
export interface ProvisionedTarget {
  instance: string;
  project?: never;
  endpoint?: never;
}

/** The Databricks path: exactly one of a project (Autoscaling) or an instance (Provisioned). */
export type DatabricksConfig = DatabricksCommon & (AutoscalingTarget | ProvisionedTarget);

export type LakebaseConfig = DirectConfig | DatabricksConfig;

export const DEFAULT_DATABASE = SETTINGS.database.default;

type Env = Record<string, string | undefined>;

// The variable names, from the one list of settings.
const PROJECT = SETTINGS.project.env;
const INSTANCE = SETTINGS.instance.env;
const HOST = SETTINGS.host.env;
const SECRET_ID = SETTINGS.secretId.env;
const ENDPOINT = SETTINGS.endpoint.env;
const PG_ROLE = SETTINGS.pgRole.env;
const DATABASE = SETTINGS.database.env;
const DATABASE_URL = SETTINGS.databaseUrl.env;
const CLIENT_ID = SETTINGS.clientId.env;
const CLIENT_SECRET = SETTINGS.clientSecret.env;

function read(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined; // an empty variable (e.g. set blank by a template) counts as unset
}

function show(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
}

function parseProject(raw: string): string {
  const id = projectId(raw);
  if (id === undefined) {
    throw new ConfigError(
      PROJECT,
      `${PROJECT}=${show(raw)} is not a Lakebase project name: set it to the project id (1-63 lowercase letters, digits, hyphens) or projects/<id>`,
    );
  }
  return `projects/${id}`;
}

function parseInstance(raw: string): string {
  if (!isInstanceName(raw)) {
    throw new ConfigError(
      INSTANCE,
      `${INSTANCE}=${show(raw)} is not a Lakebase Provisioned instance name: set it to the instance's name (1-63 letters, digits, hyphens), as the Lakebase app shows it`,
    );
  }
  return raw;
}

function parseEndpoint(raw: string): string {
  if (endpointProject(raw) === undefined) {
    throw new ConfigError(
      ENDPOINT,
      `${ENDPOINT}=${show(raw)} is not an endpoint path: set it to projects/<project>/branches/<branch>/endpoints/<endpoint>, or unset it to resolve the project's read-write endpoint`,
    );
  }
  return raw;
}

function parseHost(raw: string): string {
  const url = workspaceOrigin(raw, true);
  if ('origin' in url) return url.origin;
  switch (url.problem) {
    case 'not a URL':
      throw new ConfigError(
        HOST,
        `${HOST}=${show(raw)} is not a URL: set it to the workspace URL, e.g. https://dbc-1234.cloud.databricks.com`,
      );
    case 'not https':
      // Verified TLS only: the OAuth secret and tokens go there (the local test fakes speak https too).
      throw new ConfigError(HOST, `${HOST}=${show(raw)} must use https: set it to https://<workspace-host>`);
    default:
      throw new ConfigError(
        HOST,
        `${HOST} must be just the workspace URL (no path, query or credentials): set it like https://dbc-1234.cloud.databricks.com`,
      );
  }
}

function parseIdentifier(variable: string, raw: string, what: string): string {
  if (!isLoginName(raw)) {
    throw new ConfigError(
      variable,
      `${variable} is not a valid Postgres ${what} name (at most 63 bytes, no NUL or other control characters): set it to the ${what} name as Postgres knows it`,
    );
  }
  return raw;
}

function parseDatabaseUrl(raw: string): Secret {
  if (!isDatabaseUrl(raw)) {
    // Not echoed: the URL normally carries a password.
    throw new ConfigError(
      DATABASE_URL,
      `${DATABASE_URL} is not a postgres:// URL: set it like postgres://user:password@host:5432/database, or unset it to connect through Databricks`,
    );
  }
  return new Secret(raw);
}

/** What the jobs connect to: exactly one of a project (and maybe a pinned endpoint) or an instance. */
function parseTarget(env: Env): AutoscalingTarget | ProvisionedTarget {
  const rawInstance = read(env, INSTANCE);
  const rawEndpoint = read(env, ENDPOINT);
  const rawProject = read(env, PROJECT);
  if (rawInstance !== undefined) {
    if (rawProject !== undefined) {
      throw new ConfigError(
        PROJECT,
        `${PROJECT} and ${INSTANCE} are both set: set exactly one, ${PROJECT} for a Lakebase Autoscaling project or ${INSTANCE} for a Provisioned instance`,
      );
    }
    if (rawEndpoint !== undefined) {
      throw new ConfigError(
        ENDPOINT,
        `${ENDPOINT} pins an endpoint of an Autoscaling project, and ${INSTANCE} names a Provisioned instance: unset ${ENDPOINT} (an instance has one read-write host)`,
      );
    }
    return { instance: parseInstance(rawInstance) };
  }

  const endpoint = rawEndpoint === undefined ? undefined : parseEndpoint(rawEndpoint);
  if (rawProject !== undefined) {
    const project = parseProject(rawProject);
    if (endpoint && !endpoint.startsWith(`${project}/`)) {
      throw new ConfigError(
        ENDPOINT,
        `${ENDPOINT}=${show(endpoint)} is not in ${PROJECT}=${show(project)}: pin an endpoint of that project, or fix ${PROJECT}`,
      );
    }
    return { project, ...(endpoint ? { endpoint } : {}) };
  }
  if (endpoint) {
    // A pinned endpoint names its project.
    return { project: endpoint.split('/').slice(0, 2).join('/'), endpoint };
  }
  throw new ConfigError(
    PROJECT,
    `${PROJECT} is not set: set it to the Lakebase project name (or projects/<name>), or set ${INSTANCE} to a Lakebase Provisioned instance instead, or ${DATABASE_URL} for a direct local connection`,
  );
}

/** Parses the connection configuration from `env` (default: process.env). Throws ConfigError. */
export function parseConfig(env: Env = process.env): LakebaseConfig {
  const databaseUrl = read(env, DATABASE_URL);
  if (databaseUrl) return { kind: 'direct', databaseUrl: parseDatabaseUrl(databaseUrl) };

  const target = parseTarget(env);

  const rawHost = read(env, HOST);
  if (!rawHost) {
    throw new ConfigError(
      HOST,
      `${HOST} is not set: set it to the workspace URL, e.g. https://dbc-1234.cloud.databricks.com`,
    );
  }
  const host = parseHost(rawHost);

  const rawSecretId = read(env, SECRET_ID);
  const clientId = read(env, CLIENT_ID);
  const clientSecret = read(env, CLIENT_SECRET);
  let credentials: Pick<DatabricksConfig, 'secretId' | 'clientId' | 'clientSecret'>;
  if (rawSecretId !== undefined) {
    // The deployed functions use Secrets Manager; it wins over any client id/secret left in a shell.
    if (!isSecretId(rawSecretId)) {
      throw new ConfigError(
        SECRET_ID,
        `${SECRET_ID}=${show(rawSecretId)} is not a Secrets Manager secret name or ARN: set it to the secret holding {"client_id","client_secret"}`,
      );
    }
    credentials = { secretId: rawSecretId };
  } else if (clientId && clientSecret) {
    credentials = { clientId, clientSecret: new Secret(clientSecret) };
  } else if (clientId || clientSecret) {
    const missing = clientId ? CLIENT_SECRET : CLIENT_ID;
    throw new ConfigError(
      missing,
      `${missing} is not set: set both ${CLIENT_ID} and ${CLIENT_SECRET} of the service principal, or set ${SECRET_ID} instead`,
    );
  } else {
    throw new ConfigError(
      SECRET_ID,
      `${SECRET_ID} is not set: set it to the Secrets Manager secret holding the service principal's {"client_id","client_secret"} (or, locally, set ${CLIENT_ID} and ${CLIENT_SECRET})`,
    );
  }

  const rawRole = read(env, PG_ROLE);
  const rawDatabase = read(env, DATABASE);
  return {
    kind: 'databricks',
    ...target,
    host,
    ...credentials,
    ...(rawRole ? { pgRole: parseIdentifier(PG_ROLE, rawRole, 'role') } : {}),
    database: rawDatabase ? parseIdentifier(DATABASE, rawDatabase, 'database') : DEFAULT_DATABASE,
  };
}

let cached: LakebaseConfig | undefined;

/** The process's configuration, parsed from process.env on first use and kept (Lambda env is fixed). */
export function getConfig(): LakebaseConfig {
  cached ??= parseConfig(process.env);
  return cached;
}
