// The Databricks API client (M2M OAuth as the service principal), kept per process so that warm
// invocations reuse its discovered OIDC endpoints and its OAuth token (valid about an hour).
// Built from the SDK's Config and ApiClient, which is what WorkspaceClient wraps: importing
// WorkspaceClient would pull every typed service of the SDK (over 1 MB) into each Lambda bundle,
// and we call REST paths only.
import { createHash } from 'node:crypto';
import { ApiClient } from '@databricks/sdk-experimental/dist/api-client.js';
import { Config } from '@databricks/sdk-experimental/dist/config/Config.js';
import type { ClientCredentials } from './secret.ts';

export interface WorkspaceOptions {
  /**
   * How long the SDK itself keeps retrying a 429 before giving up (it retries those internally,
   * whatever we do); we set it to our own retry budget so the total stays bounded.
   */
  retryTimeoutSeconds: number;
  /** Socket inactivity timeout of the SDK's HTTP agent. */
  httpTimeoutSeconds: number;
}

/** The part of the SDK's WorkspaceClient we use. */
export interface WorkspaceClient {
  readonly apiClient: ApiClient;
}

const clients = new Map<string, WorkspaceClient>();

// The key includes a digest of the secret, so a rotated secret gets a fresh client (and token).
function keyOf(host: string, credentials: ClientCredentials, options: WorkspaceOptions): string {
  const digest = createHash('sha256').update(credentials.clientSecret).digest('hex').slice(0, 16);
  return `${host}|${credentials.clientId}|${digest}|${options.retryTimeoutSeconds}|${options.httpTimeoutSeconds}`;
}

function create(host: string, credentials: ClientCredentials, options: WorkspaceOptions): WorkspaceClient {
  const config = new Config({
    host,
    authType: 'oauth-m2m',
    clientId: credentials.clientId,
    clientSecret: credentials.clientSecret,
    retryTimeoutSeconds: options.retryTimeoutSeconds,
    httpTimeoutSeconds: options.httpTimeoutSeconds,
    // Configuration is parsed once by lib/config.ts: keep the SDK from also reading DATABRICKS_*
    // variables or ~/.databrickscfg, which could silently change who we authenticate as.
    loaders: [],
  });
  return { apiClient: new ApiClient(config, { product: 'lakets-jobs-aws', productVersion: '0.1.0' }) };
}

/** The cached client for these credentials, created on first use. Returns whether it was new. */
export function workspaceClient(
  host: string,
  credentials: ClientCredentials,
  options: WorkspaceOptions,
): { client: WorkspaceClient; key: string; created: boolean } {
  const key = keyOf(host, credentials, options);
  const existing = clients.get(key);
  if (existing) return { client: existing, key, created: false };
  const client = create(host, credentials, options);
  clients.set(key, client);
  return { client, key, created: true };
}

/** Drops a client (after its credentials were rejected) and closes its idle keep-alive sockets. */
export function evictWorkspaceClient(key: string): void {
  const client = clients.get(key);
  clients.delete(key);
  client?.apiClient
    .getAgent()
    .then((agent) => agent.destroy())
    .catch(() => {});
}

/** Drops every cached client (tests). */
export function clearWorkspaceClients(): void {
  for (const key of [...clients.keys()]) evictWorkspaceClient(key);
}
