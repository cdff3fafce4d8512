// The service principal's OAuth client id and secret: read from Secrets Manager once per container and
// kept, until an authentication failure says they may have been rotated (invalidate(), then re-read).
// Locally they can come from DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET instead.
import {
  GetSecretValueCommand,
  SecretsManagerClient,
  type SecretsManagerClientConfig,
} from '@aws-sdk/client-secrets-manager';
import { describeError, LakebaseError, registerSecret } from './errors.ts';
import type { Log } from './log.ts';
import { tlsFailureCode, untrustedMessage, VerifiedAgent } from './tls.ts';

const agents = new WeakMap<SecretsManagerClient, VerifiedAgent>();

/**
 * The Secrets Manager client of the jobs: region and credentials from the Lambda environment, every
 * request through a VerifiedAgent (the SDK's default agent verifies too, but only by default:
 * NODE_TLS_REJECT_UNAUTHORIZED=0 would turn it off). `config` is for tests pointing it elsewhere.
 */
export function createSecretsManagerClient(
  config: Omit<SecretsManagerClientConfig, 'requestHandler'> = {},
): SecretsManagerClient {
  if (typeof config.endpoint === 'string' && !config.endpoint.startsWith('https://')) {
    throw new TypeError(`Secrets Manager endpoint ${config.endpoint} is not https`);
  }
  // The SDK's own defaults for its agent (keep-alive, 50 sockets), verifying.
  const agent = new VerifiedAgent({ keepAlive: true, maxSockets: 50 });
  const client = new SecretsManagerClient({ ...config, requestHandler: { httpsAgent: agent } });
  agents.set(client, agent);
  return client;
}

/** The host a Secrets Manager client talks to, for messages. */
async function hostOf(client: SecretsManagerClient): Promise<string> {
  try {
    const endpoint = await client.config.endpoint?.();
    if (endpoint) return `${endpoint.hostname}${endpoint.port ? `:${endpoint.port}` : ''}`;
    return `secretsmanager.${await client.config.region()}.amazonaws.com`;
  } catch {
    return 'Secrets Manager';
  }
}

export interface ClientCredentials {
  clientId: string;
  clientSecret: string;
}

export interface CredentialSource {
  /** Where the credentials come from, for messages: never the values. */
  readonly description: string;
  get(): Promise<ClientCredentials>;
  /** Forgets the cached value so the next get() reads it again (after a rotation). */
  invalidate(): void;
}

/** Credentials given directly (DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET); nothing to re-read. */
export function staticCredentials(clientId: string, clientSecret: string): CredentialSource {
  registerSecret(clientSecret, { pin: true });
  const value = { clientId, clientSecret };
  return {
    description: 'DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET',
    get: async () => value,
    invalidate() {},
  };
}

/**
 * Validates the secret's JSON: {"client_id": string, "client_secret": string}. Errors name the key at
 * fault and never quote the text (a JSON parse error would show part of it).
 */
export function parseClientSecret(raw: string, secretId: string): ClientCredentials {
  const fix = `store {"client_id": "<application id>", "client_secret": "<OAuth secret>"} in secret ${secretId}`;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new LakebaseError('SECRET_INVALID', `secret ${secretId} is not JSON: ${fix}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new LakebaseError('SECRET_INVALID', `secret ${secretId} is not a JSON object: ${fix}`);
  }
  const record = value as Record<string, unknown>;
  for (const key of ['client_id', 'client_secret']) {
    const field = record[key];
    if (field === undefined) {
      throw new LakebaseError('SECRET_INVALID', `secret ${secretId} has no "${key}" key: ${fix}`);
    }
    if (typeof field !== 'string' || field.trim() === '') {
      throw new LakebaseError(
        'SECRET_INVALID',
        `secret ${secretId} has "${key}" that is not a non-empty string: ${fix}`,
      );
    }
  }
  return { clientId: (record.client_id as string).trim(), clientSecret: record.client_secret as string };
}

function awsErrorName(error: unknown): string {
  return error instanceof Error ? error.name : 'Error';
}

function secretReadError(error: unknown, secretId: string): LakebaseError {
  const name = awsErrorName(error);
  switch (name) {
    case 'ResourceNotFoundException':
      return new LakebaseError(
        'SECRET_NOT_FOUND',
        `Secrets Manager has no secret ${secretId} (ResourceNotFoundException): create it or fix LAKETS_SP_SECRET_ID`,
      );
    case 'AccessDeniedException':
    case 'AccessDenied':
    case 'DecryptionFailure':
      return new LakebaseError(
        'SECRET_ACCESS_DENIED',
        `reading secret ${secretId} was denied (${name}): allow the function's role secretsmanager:GetSecretValue on it (and kms:Decrypt on its KMS key if it uses a customer-managed key)`,
      );
    case 'InvalidRequestException':
      return new LakebaseError(
        'SECRET_NOT_FOUND',
        `secret ${secretId} cannot be read (InvalidRequestException: ${describeError(error)}): it may be scheduled for deletion; restore it or point LAKETS_SP_SECRET_ID at another`,
      );
    default:
      return new LakebaseError(
        'SECRET_UNAVAILABLE',
        `reading secret ${secretId} from Secrets Manager failed (${name}: ${describeError(error)}); the next run retries`,
      );
  }
}

export interface SecretsManagerSourceOptions {
  client: SecretsManagerClient;
  log: Log;
  /** Called after each read from Secrets Manager (tests and stats count them). */
  onRead?: () => void;
}

/** Credentials from a Secrets Manager secret, cached until invalidate(). */
export function secretsManagerCredentials(
  secretId: string,
  options: SecretsManagerSourceOptions,
): CredentialSource {
  let cached: ClientCredentials | undefined;
  let pending: Promise<ClientCredentials> | undefined;

  async function read(): Promise<ClientCredentials> {
    let raw: string | undefined;
    let version: string | undefined;
    const agent = agents.get(options.client);
    const tlsFailuresBefore = agent?.failures ?? 0;
    try {
      const out = await options.client.send(new GetSecretValueCommand({ SecretId: secretId }));
      raw = out.SecretString;
      version = out.VersionId;
    } catch (error) {
      const seen = agent && agent.failures > tlsFailuresBefore ? agent.lastFailure : undefined;
      const code = tlsFailureCode(error) ?? seen?.code;
      if (code) {
        const host = seen?.host ?? (await hostOf(options.client));
        throw new LakebaseError('TLS_UNTRUSTED', untrustedMessage(`reading secret ${secretId}`, host, code));
      }
      throw secretReadError(error, secretId);
    } finally {
      options.onRead?.();
    }
    if (raw === undefined) {
      throw new LakebaseError(
        'SECRET_INVALID',
        `secret ${secretId} has no SecretString (binary secrets are not supported): store {"client_id","client_secret"} as text`,
      );
    }
    const credentials = parseClientSecret(raw, secretId);
    registerSecret(credentials.clientSecret, { pin: true });
    options.log.info('read the service principal secret', {
      secretId,
      versionId: version,
      clientId: credentials.clientId,
    });
    return credentials;
  }

  return {
    description: `secret ${secretId}`,
    async get() {
      if (cached) return cached;
      // Concurrent callers on a cold container share one read.
      pending ??= read().finally(() => {
        pending = undefined;
      });
      cached = await pending;
      return cached;
    },
    invalidate() {
      cached = undefined;
    },
  };
}
