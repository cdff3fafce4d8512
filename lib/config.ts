// The connection configuration, parsed once from the environment at the edge of each handler.
// Every problem is a ConfigError whose one-line message names the variable and says how to fix it;
// values that may be secret (client secrets, database URLs) are never echoed.
import { inspect } from 'node:util';

export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly code = 'CONFIG_INVALID';
  /** The environment variable at fault. */
  readonly variable: string;
  constructor(variable: string, message: string) {
    // Echoed values may hold characters that log viewers break lines on (JSON.stringify keeps
    // U+2028/U+2029 as they are): escaped, so that the error stays one line.
    super(
      message.replace(
        /[\r\n\u0085\u2028\u2029]/g,
        (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
      ),
    );
    this.variable = variable;
  }
}

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

export interface DatabricksConfig {
  kind: 'databricks';
  /** `projects/<name>`. */
  project: string;
  /** Workspace URL origin, e.g. `https://dbc-123.cloud.databricks.com`. */
  host: string;
  /** Secrets Manager secret id or ARN holding {"client_id", "client_secret"}. */
  secretId?: string;
  /** Set (with clientSecret) only when credentials come from DATABRICKS_CLIENT_ID/SECRET instead. */
  clientId?: string;
  clientSecret?: Secret;
  /** Pinned `projects/<p>/branches/<b>/endpoints/<e>`: skips branch/endpoint resolution. */
  endpoint?: string;
  /** Postgres role to log in as; default: the service principal's own user name (application id). */
  pgRole?: string;
  database: string;
}

export type LakebaseConfig = DirectConfig | DatabricksConfig;

export const DEFAULT_DATABASE = 'databricks_postgres';

type Env = Record<string, string | undefined>;

// Lakebase resource ids are 1-63 characters of lowercase letters, digits and hyphens (RFC 1123).
// Checking them also keeps them safe to splice into REST paths.
const RESOURCE_ID = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const ENDPOINT_PATH = /^projects\/([^/]+)\/branches\/([^/]+)\/endpoints\/([^/]+)$/;
// Secret names and ARNs: letters, digits and /_+=.@- (ARNs add ':').
const SECRET_ID = /^[A-Za-z0-9/_+=.@:-]{1,2048}$/;
// Postgres identifiers are at most 63 bytes (NAMEDATALEN - 1).
const MAX_IDENTIFIER_BYTES = 63;

function read(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined; // an empty variable (e.g. set blank by a template) counts as unset
}

function show(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
}

function parseProject(raw: string): string {
  const name = raw.startsWith('projects/') ? raw.slice('projects/'.length) : raw;
  if (!RESOURCE_ID.test(name)) {
    throw new ConfigError(
      'LAKETS_PROJECT',
      `LAKETS_PROJECT=${show(raw)} is not a Lakebase project name: set it to the project id (1-63 lowercase letters, digits, hyphens) or projects/<id>`,
    );
  }
  return `projects/${name}`;
}

function parseEndpoint(raw: string): string {
  const m = ENDPOINT_PATH.exec(raw);
  if (!m?.slice(1).every((part) => RESOURCE_ID.test(part))) {
    throw new ConfigError(
      'LAKETS_LAKEBASE_ENDPOINT',
      `LAKETS_LAKEBASE_ENDPOINT=${show(raw)} is not an endpoint path: set it to projects/<project>/branches/<branch>/endpoints/<endpoint>, or unset it to resolve the project's read-write endpoint`,
    );
  }
  return raw;
}

function parseHost(raw: string): string {
  // The Databricks SDK accepts a bare host name and assumes https; so do we.
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `https://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new ConfigError(
      'DATABRICKS_HOST',
      `DATABRICKS_HOST=${show(raw)} is not a URL: set it to the workspace URL, e.g. https://dbc-1234.cloud.databricks.com`,
    );
  }
  // https only, with a verified certificate (the OAuth secret and tokens go there); the local test
  // fakes speak https too.
  if (url.protocol !== 'https:') {
    throw new ConfigError(
      'DATABRICKS_HOST',
      `DATABRICKS_HOST=${show(raw)} must use https: set it to https://<workspace-host>`,
    );
  }
  if (url.username || url.password || (url.pathname !== '/' && url.pathname !== '') || url.search) {
    throw new ConfigError(
      'DATABRICKS_HOST',
      'DATABRICKS_HOST must be just the workspace URL (no path, query or credentials): set it like https://dbc-1234.cloud.databricks.com',
    );
  }
  return url.origin;
}

// Control characters (a pasted line break, a tab) cannot be in a Lakebase role or database name;
// accepted, they only surfaced later as a login failure that did not name the variable.
// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

function parseIdentifier(variable: string, raw: string, what: string): string {
  if (CONTROL_CHARACTERS.test(raw) || Buffer.byteLength(raw, 'utf8') > MAX_IDENTIFIER_BYTES) {
    throw new ConfigError(
      variable,
      `${variable} is not a valid Postgres ${what} name (at most 63 bytes, no NUL or other control characters): set it to the ${what} name as Postgres knows it`,
    );
  }
  return raw;
}

function parseDatabaseUrl(raw: string): Secret {
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') || !url.hostname) {
    // Not echoed: the URL normally carries a password.
    throw new ConfigError(
      'LAKETS_DATABASE_URL',
      'LAKETS_DATABASE_URL is not a postgres:// URL: set it like postgres://user:password@host:5432/database, or unset it to connect through Databricks',
    );
  }
  return new Secret(raw);
}

/** Parses the connection configuration from `env` (default: process.env). Throws ConfigError. */
export function parseConfig(env: Env = process.env): LakebaseConfig {
  const databaseUrl = read(env, 'LAKETS_DATABASE_URL');
  if (databaseUrl) return { kind: 'direct', databaseUrl: parseDatabaseUrl(databaseUrl) };

  const rawEndpoint = read(env, 'LAKETS_LAKEBASE_ENDPOINT');
  const endpoint = rawEndpoint === undefined ? undefined : parseEndpoint(rawEndpoint);
  const rawProject = read(env, 'LAKETS_PROJECT');
  let project: string;
  if (rawProject !== undefined) {
    project = parseProject(rawProject);
    if (endpoint && !endpoint.startsWith(`${project}/`)) {
      throw new ConfigError(
        'LAKETS_LAKEBASE_ENDPOINT',
        `LAKETS_LAKEBASE_ENDPOINT=${show(endpoint)} is not in LAKETS_PROJECT=${show(project)}: pin an endpoint of that project, or fix LAKETS_PROJECT`,
      );
    }
  } else if (endpoint) {
    project = endpoint.split('/').slice(0, 2).join('/'); // a pinned endpoint names its project
  } else {
    throw new ConfigError(
      'LAKETS_PROJECT',
      'LAKETS_PROJECT is not set: set it to the Lakebase project name (or projects/<name>), or set LAKETS_DATABASE_URL for a direct local connection',
    );
  }

  const rawHost = read(env, 'DATABRICKS_HOST');
  if (!rawHost) {
    throw new ConfigError(
      'DATABRICKS_HOST',
      'DATABRICKS_HOST is not set: set it to the workspace URL, e.g. https://dbc-1234.cloud.databricks.com',
    );
  }
  const host = parseHost(rawHost);

  const rawSecretId = read(env, 'LAKETS_SP_SECRET_ID');
  const clientId = read(env, 'DATABRICKS_CLIENT_ID');
  const clientSecret = read(env, 'DATABRICKS_CLIENT_SECRET');
  let credentials: Pick<DatabricksConfig, 'secretId' | 'clientId' | 'clientSecret'>;
  if (rawSecretId !== undefined) {
    // The deployed functions use Secrets Manager; it wins over any DATABRICKS_CLIENT_* left in a shell.
    if (!SECRET_ID.test(rawSecretId)) {
      throw new ConfigError(
        'LAKETS_SP_SECRET_ID',
        `LAKETS_SP_SECRET_ID=${show(rawSecretId)} is not a Secrets Manager secret name or ARN: set it to the secret holding {"client_id","client_secret"}`,
      );
    }
    credentials = { secretId: rawSecretId };
  } else if (clientId && clientSecret) {
    credentials = { clientId, clientSecret: new Secret(clientSecret) };
  } else if (clientId || clientSecret) {
    const missing = clientId ? 'DATABRICKS_CLIENT_SECRET' : 'DATABRICKS_CLIENT_ID';
    throw new ConfigError(
      missing,
      `${missing} is not set: set both DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET of the service principal, or set LAKETS_SP_SECRET_ID instead`,
    );
  } else {
    throw new ConfigError(
      'LAKETS_SP_SECRET_ID',
      'LAKETS_SP_SECRET_ID is not set: set it to the Secrets Manager secret holding the service principal\'s {"client_id","client_secret"} (or, locally, set DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET)',
    );
  }

  const rawRole = read(env, 'LAKETS_PG_ROLE');
  const rawDatabase = read(env, 'LAKETS_DATABASE');
  return {
    kind: 'databricks',
    project,
    host,
    ...credentials,
    ...(endpoint ? { endpoint } : {}),
    ...(rawRole ? { pgRole: parseIdentifier('LAKETS_PG_ROLE', rawRole, 'role') } : {}),
    database: rawDatabase ? parseIdentifier('LAKETS_DATABASE', rawDatabase, 'database') : DEFAULT_DATABASE,
  };
}

let cached: LakebaseConfig | undefined;

/** The process's configuration, parsed from process.env on first use and kept (Lambda env is fixed). */
export function getConfig(): LakebaseConfig {
  cached ??= parseConfig(process.env);
  return cached;
}
