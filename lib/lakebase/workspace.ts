// The Databricks API client (M2M OAuth as the service principal), kept per process so that warm
// invocations reuse its discovered OIDC endpoints and its OAuth token (valid about an hour).
// Built from the SDK's Config and ApiClient, which is what WorkspaceClient wraps: importing
// WorkspaceClient would pull every typed service of the SDK (over 1 MB) into each Lambda bundle,
// and we call REST paths only.
//
// Every request goes through one VerifiedAgent per client: the REST calls (the SDK builds its own
// agent with `rejectUnauthorized: skipVerify === false`, i.e. unverified unless skipVerify is set,
// so we hand it ours), and OIDC discovery and the token exchange (which the SDK sends without an
// agent, verified unless DATABRICKS_SDK_PROXY_STRICT_SSL=false: ours wins over that too).
import { createHash } from 'node:crypto';
import { ApiClient } from '@databricks/sdk-experimental/dist/api-client.js';
import { Config } from '@databricks/sdk-experimental/dist/config/Config.js';
import type { ClientOptions } from '@databricks/sdk-experimental/dist/config/oauth/Client.js';
import { OidcEndpoints } from '@databricks/sdk-experimental/dist/config/oauth/OidcEndpoints.js';
import { fetch as sdkFetch } from '@databricks/sdk-experimental/dist/fetch.js';
import type { ClientCredentials } from './secret.ts';
import { VerifiedAgent } from './tls.ts';

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
  /** The agent of every request of this client (and its record of certificate failures). */
  readonly agent: VerifiedAgent;
}

type FetchOptions = Parameters<typeof sdkFetch>[1];

/** The OIDC endpoints, whose OAuth client sends the token request through our agent. */
class VerifiedOidcEndpoints extends OidcEndpoints {
  readonly #agent: VerifiedAgent;
  constructor(config: Config, authorization: URL, token: URL, agent: VerifiedAgent) {
    super(config, authorization, token);
    this.#agent = agent;
  }
  override getClient(options: ClientOptions) {
    const client = super.getClient(options);
    // Client.fetch is private in the SDK's types: replaced on the instance.
    Object.defineProperty(client, 'fetch', {
      value: (url: string, init: FetchOptions) => sdkFetch(url, { ...init, agent: this.#agent }),
    });
    return client;
  }
}

/** The SDK's Config with OIDC discovery and the OAuth client on our agent. */
class VerifiedConfig extends Config {
  readonly #agent: VerifiedAgent;
  constructor(options: ConstructorParameters<typeof Config>[0], agent: VerifiedAgent) {
    super(options);
    this.#agent = agent;
  }
  override fetch(url: string, options: FetchOptions) {
    return super.fetch(url, { ...options, agent: this.#agent });
  }
  override async getOidcEndpoints() {
    const found = await super.getOidcEndpoints();
    return (
      found && new VerifiedOidcEndpoints(this, found.authorizationEndpoint, found.tokenEndpoint, this.#agent)
    );
  }
}

const clients = new Map<string, WorkspaceClient>();

// The key includes a digest of the secret, so a rotated secret gets a fresh client (and token).
function keyOf(host: string, credentials: ClientCredentials, options: WorkspaceOptions): string {
  const digest = createHash('sha256').update(credentials.clientSecret).digest('hex').slice(0, 16);
  return `${host}|${credentials.clientId}|${digest}|${options.retryTimeoutSeconds}|${options.httpTimeoutSeconds}`;
}

function create(host: string, credentials: ClientCredentials, options: WorkspaceOptions): WorkspaceClient {
  // lib/config.ts accepts only https hosts; an http URL here would bypass TLS altogether.
  if (new URL(host).protocol !== 'https:') throw new TypeError(`Databricks host ${host} is not https`);
  // What the SDK's own agent would be, but verifying.
  const agent = new VerifiedAgent({
    keepAlive: true,
    keepAliveMsecs: 15_000,
    timeout: options.httpTimeoutSeconds * 1000,
  });
  const config = new VerifiedConfig(
    {
      host,
      authType: 'oauth-m2m',
      clientId: credentials.clientId,
      clientSecret: credentials.clientSecret,
      retryTimeoutSeconds: options.retryTimeoutSeconds,
      httpTimeoutSeconds: options.httpTimeoutSeconds,
      // Configuration is parsed once by lib/config.ts: keep the SDK from also reading DATABRICKS_*
      // variables or ~/.databrickscfg, which could silently change who we authenticate as.
      loaders: [],
      // Only in case some SDK path builds its own agent: left undefined, it would not verify.
      skipVerify: false,
    },
    agent,
  );
  return {
    apiClient: new ApiClient(config, { product: 'lakets-jobs-aws', productVersion: '0.1.0', agent }),
    agent,
  };
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
  client?.agent.destroy();
}

/** Drops every cached client (tests). */
export function clearWorkspaceClients(): void {
  for (const key of [...clients.keys()]) evictWorkspaceClient(key);
}
