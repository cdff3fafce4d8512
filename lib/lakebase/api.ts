// Calls to the Databricks REST API as the service principal: authentication retried once with a
// re-read secret, transient failures retried with bounded backoff, and every failure turned into a
// one-line LakebaseError that names what the service principal is missing.
import { ApiError, HttpError } from '@databricks/sdk-experimental/dist/apierr.js';
import { quoteIdentifier } from '../identifier.ts';
import { describeError, LakebaseError, type LakebaseErrorCode } from './errors.ts';
import type { Log } from './log.ts';
import { backoffDelay, type RetryPolicy } from './retry.ts';
import type { CredentialSource } from './secret.ts';
import { type TlsFailure, tlsFailureCode, untrustedMessage } from './tls.ts';
import { evictWorkspaceClient, type WorkspaceClient, workspaceClient } from './workspace.ts';

export type DatabricksOp =
  | 'listBranches'
  | 'listEndpoints'
  | 'getEndpoint'
  | 'generateCredential'
  | 'getInstance'
  | 'generateInstanceCredential'
  | 'me';

/** What a call is about, so that errors can name it: an Autoscaling project, or a Provisioned instance. */
export type CallTarget = ProjectTarget | InstanceTarget;

export interface InstanceTarget {
  /** A Lakebase Provisioned database instance (LAKETS_LAKEBASE_INSTANCE). */
  instance: string;
  project?: never;
}

export interface ProjectTarget {
  instance?: never;
  project: string;
  branch?: string;
  endpoint?: string;
  /** The endpoint was pinned by LAKETS_LAKEBASE_ENDPOINT (rather than resolved). */
  pinned?: boolean;
  /** The group role a credential is asked for (group_name, from LAKETS_PG_ROLE). */
  group?: string;
}

export interface SessionOptions {
  host: string;
  credentials: CredentialSource;
  retry: RetryPolicy;
  httpTimeoutSeconds: number;
  log: Log;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  random?: () => number;
  /** Counters (see ConnectorStats). */
  onCall?: (op: DatabricksOp) => void;
  onRetry?: (kind: 'auth' | 'transient') => void;
  onClientCreated?: () => void;
}

type Failure =
  | { kind: 'invalid-client'; detail: string }
  | { kind: 'unauthenticated'; status: number; detail: string }
  | { kind: 'transient'; status?: number; detail: string; network: boolean }
  | { kind: 'rate-limit-exhausted'; detail: string }
  | { kind: 'http'; status: number; errorCode: string; detail: string }
  | { kind: 'oidc'; detail: string }
  | { kind: 'oauth'; detail: string }
  | { kind: 'tls'; host: string; code: string }
  | { kind: 'other'; detail: string };

const NETWORK =
  /\b(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EAI_AGAIN|ENOTFOUND|EPIPE|EHOSTUNREACH|ENETUNREACH|socket hang up)\b/;

/**
 * `error_code` and `message` of a Databricks error body, read by us: the SDK gives up on bodies whose
 * `details` entries have no `metadata` (a RequestInfo has none) and keeps the raw text instead.
 */
export function databricksErrorBody(response: unknown): { errorCode?: string; message?: string } {
  let body = response;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      return {};
    }
  }
  if (typeof body !== 'object' || body === null) return {};
  const { error_code: errorCode, message } = body as Record<string, unknown>;
  return {
    ...(typeof errorCode === 'string' && errorCode ? { errorCode } : {}),
    ...(typeof message === 'string' && message ? { message } : {}),
  };
}

function classify(error: unknown, host: string, tls: TlsFailure | undefined): Failure {
  // A certificate failure first: the agent saw which host failed (the token endpoint can be on
  // another host), and the SDK may have rewrapped the error as text (OIDC discovery).
  if (tls) return { kind: 'tls', host: tls.host, code: tls.code };
  const code = tlsFailureCode(error);
  if (code) return { kind: 'tls', host: new URL(host).host, code };
  // The SDK appends its whole configuration ("... Config: host=..., client_id=..."): noise here.
  let detail = describeError(error).replace(/\. Config: .*$/, '');
  if (error instanceof ApiError) {
    const status = error.statusCode;
    const body = databricksErrorBody(error.response);
    if (body.message) detail = describeError(body.message);
    else if (typeof error.response === 'string')
      detail = `HTTP ${status} with a body that is not a Databricks error`;
    if (status === 401) return { kind: 'unauthenticated', status, detail };
    if (status === 429 || status >= 500) return { kind: 'transient', status, detail, network: false };
    return { kind: 'http', status, errorCode: body.errorCode ?? 'UNKNOWN', detail };
  }
  if (error instanceof HttpError) return { kind: 'transient', detail, network: true }; // "Can't connect to"
  const message = error instanceof Error ? error.message : String(error);
  // The SDK's own 429 retry loop ran out of time: it throws "Timeout: ..." without the status.
  if (error instanceof Error && error.constructor.name === 'TimeoutError') {
    return { kind: 'rate-limit-exhausted', detail };
  }
  // The SDK's OAuth client throws plain Errors: "Failed to retrieve token: <error> <description>".
  if (message.startsWith('Failed to retrieve token')) {
    if (/invalid_client|unauthorized_client|invalid_grant|access_denied|\b40[13]\b/.test(message)) {
      return { kind: 'invalid-client', detail };
    }
    if (/\b(429|5\d\d)\b|temporarily_unavailable|server_error/.test(message) || NETWORK.test(message)) {
      return { kind: 'transient', detail, network: false };
    }
    return { kind: 'oauth', detail };
  }
  const errno = (error as { code?: unknown }).code;
  if ((typeof errno === 'string' && NETWORK.test(errno)) || NETWORK.test(message)) {
    return { kind: 'transient', detail, network: true };
  }
  if (message.includes('oidc:')) return { kind: 'oidc', detail };
  return { kind: 'other', detail };
}

const OP_LABEL: Record<DatabricksOp, string> = {
  listBranches: 'listing branches',
  listEndpoints: 'listing endpoints',
  getEndpoint: 'reading endpoint',
  generateCredential: 'generating a Postgres credential',
  getInstance: 'reading database instance',
  generateInstanceCredential: 'generating a Postgres credential',
  me: 'reading the current identity (SCIM Me)',
};

const OP_VERB: Record<DatabricksOp, string> = {
  listBranches: 'list the branches of',
  listEndpoints: 'list the endpoints of',
  getEndpoint: 'read endpoint',
  generateCredential: 'generate a Postgres credential for',
  getInstance: 'read database instance',
  generateInstanceCredential: 'generate a Postgres credential for database instance',
  me: 'read its own identity (SCIM Me)',
};

function subjectOf(op: DatabricksOp, target: CallTarget): string {
  if (op === 'me') return '';
  if (target.instance !== undefined) return target.instance;
  if (op === 'listBranches') return target.project;
  if (op === 'listEndpoints') return target.branch ?? target.project;
  return target.endpoint ?? '';
}

/** "listing branches of projects/p" */
function label(op: DatabricksOp, target: CallTarget): string {
  const subject = subjectOf(op, target);
  return subject ? `${OP_LABEL[op]} of ${subject}` : OP_LABEL[op];
}

/** "list the branches of projects/p" */
function action(op: DatabricksOp, target: CallTarget): string {
  const subject = subjectOf(op, target);
  return subject ? `${OP_VERB[op]} ${subject}` : OP_VERB[op];
}

/**
 * Bounds one attempt. The SDK gives its HTTP agent a socket timeout, but that only emits an event:
 * nothing aborts the request, so a workspace that accepts the connection and never answers held the
 * invocation until the Lambda timeout. A late answer of an abandoned attempt is ignored; the timeout
 * is a network failure (ETIMEDOUT), retried within the retry budget like any other.
 */
function deadline<T>(attempt: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(Object.assign(new Error(`no answer within ${ms / 1000} s`), { code: 'ETIMEDOUT' })),
      ms,
    );
  });
  attempt.catch(() => {});
  return Promise.race([attempt, expired]).finally(() => clearTimeout(timer));
}

export class DatabricksSession {
  readonly host: string;
  readonly #options: SessionOptions;
  #clientKey: string | undefined;
  #clientId: string | undefined;

  constructor(options: SessionOptions) {
    this.host = options.host;
    this.#options = options;
  }

  /** The service principal's application id, once credentials have been read. */
  get clientId(): string | undefined {
    return this.#clientId;
  }

  async #workspace(): Promise<WorkspaceClient> {
    const credentials = await this.#options.credentials.get();
    const { client, key, created } = workspaceClient(this.host, credentials, {
      retryTimeoutSeconds: this.#options.retry.budgetMs / 1000,
      httpTimeoutSeconds: this.#options.httpTimeoutSeconds,
    });
    if (created) this.#options.onClientCreated?.();
    this.#clientKey = key;
    this.#clientId = credentials.clientId;
    return client;
  }

  /** The service principal's application id (its client id), reading the secret if needed. */
  async applicationId(): Promise<string> {
    return (await this.#options.credentials.get()).clientId;
  }

  /** Forgets the secret and the client built from it: the next call re-reads and re-authenticates. */
  dropAuth(): void {
    this.#options.credentials.invalidate();
    if (this.#clientKey) evictWorkspaceClient(this.#clientKey);
    this.#clientKey = undefined;
  }

  /** A GET or POST on a REST path, e.g. `/api/2.0/postgres/projects/p/branches`. */
  request(
    op: DatabricksOp,
    target: CallTarget,
    method: 'GET' | 'POST',
    path: string,
    options: { query?: Record<string, string>; body?: unknown } = {},
  ): Promise<unknown> {
    // What every official client sends; the service answers 415 to a JSON body without it.
    const headers = new Headers({ Accept: 'application/json' });
    if (options.body !== undefined) headers.set('Content-Type', 'application/json');
    return this.call(op, target, (w) =>
      w.apiClient.request({
        path,
        method,
        headers,
        raw: false,
        ...(options.query ? { query: options.query } : {}),
        ...(options.body === undefined ? {} : { payload: options.body }),
      }),
    );
  }

  /** Runs `fn` with the workspace client under the retry and error-mapping rules above. */
  async call<T>(op: DatabricksOp, target: CallTarget, fn: (w: WorkspaceClient) => Promise<T>): Promise<T> {
    const { retry, now, sleep, log } = this.#options;
    const started = now();
    let authRetried = false;
    let retries = 0;
    let attempts = 0;
    for (;;) {
      attempts += 1;
      let agent: WorkspaceClient['agent'] | undefined;
      let tlsFailuresBefore = 0;
      try {
        const w = await this.#workspace(); // LakebaseErrors from Secrets Manager pass straight through
        agent = w.agent;
        tlsFailuresBefore = agent.failures;
        this.#options.onCall?.(op);
        return await deadline(fn(w), this.#options.httpTimeoutSeconds * 1000);
      } catch (error) {
        if (error instanceof LakebaseError) throw error;
        const tls = agent && agent.failures > tlsFailuresBefore ? agent.lastFailure : undefined;
        const failure = classify(error, this.host, tls);
        if ((failure.kind === 'invalid-client' || failure.kind === 'unauthenticated') && !authRetried) {
          // The secret may have been rotated since we read it: read it again and retry once.
          authRetried = true;
          this.#options.onRetry?.('auth');
          log.warn(
            'Databricks rejected the service principal credentials; re-reading the secret and retrying once',
            {
              op,
              source: this.#options.credentials.description,
            },
          );
          this.dropAuth();
          continue;
        }
        if (failure.kind === 'transient') {
          retries += 1;
          const delay = backoffDelay(retries, retry, this.#options.random);
          if (now() + delay - started <= retry.budgetMs) {
            this.#options.onRetry?.('transient');
            log.warn('transient Databricks failure; retrying', {
              op,
              status: failure.status,
              retry: retries,
              delayMs: delay,
            });
            await sleep(delay);
            continue;
          }
        }
        throw this.#error(op, target, failure, attempts, now() - started);
      }
    }
  }

  #error(
    op: DatabricksOp,
    target: CallTarget,
    failure: Failure,
    attempts: number,
    elapsedMs: number,
  ): LakebaseError {
    const host = this.host;
    const who = this.#clientId ? `service principal ${this.#clientId}` : 'the service principal';
    const source = this.#options.credentials.description;
    const what = label(op, target);
    const seconds = (elapsedMs / 1000).toFixed(1);
    switch (failure.kind) {
      case 'invalid-client':
        return new LakebaseError(
          'OAUTH_INVALID_CLIENT',
          `OAuth token request to ${host} was refused (${failure.detail}) even after re-reading ${source}: the client id/secret are wrong, revoked or of another account; create an OAuth secret for the service principal and store it in ${source}`,
          { status: 401 },
        );
      case 'unauthenticated':
        return new LakebaseError(
          'DATABRICKS_UNAUTHENTICATED',
          `Databricks at ${host} rejected the OAuth token of ${who} while ${what} (401: ${failure.detail}) even after re-authenticating: check that the service principal exists in this workspace and that ${source} holds its current secret`,
          { status: 401 },
        );
      case 'oidc':
        return new LakebaseError(
          'OAUTH_FAILED',
          `could not discover OAuth endpoints at ${host}/oidc/.well-known/oauth-authorization-server (${failure.detail}): check that DATABRICKS_HOST is the workspace URL`,
        );
      case 'oauth':
        return new LakebaseError(
          'OAUTH_FAILED',
          `OAuth token request to ${host} failed while ${what}: ${failure.detail}`,
        );
      case 'rate-limit-exhausted':
        return new LakebaseError(
          'DATABRICKS_UNAVAILABLE',
          `Databricks kept answering 429 (rate limited) while ${what} for ${seconds} s: too many calls on this workspace; the next scheduled run retries`,
          { status: 429 },
        );
      case 'transient':
        if (failure.network) {
          return new LakebaseError(
            'DATABRICKS_UNREACHABLE',
            `cannot reach Databricks at ${host} while ${what} after ${attempts} attempts in ${seconds} s (${failure.detail}): check DATABRICKS_HOST and the function's network egress (NAT or VPC endpoint)`,
          );
        }
        return new LakebaseError(
          'DATABRICKS_UNAVAILABLE',
          `Databricks at ${host} still failing while ${what} after ${attempts} attempts in ${seconds} s (last: ${failure.status ?? 'error'} ${failure.detail}): a Databricks outage or throttling; the next scheduled run retries`,
          failure.status === undefined ? {} : { status: failure.status },
        );
      case 'http':
        return this.#httpError(op, target, failure, who, what);
      case 'tls':
        // Not retried, not re-authenticated: a certificate does not fix itself within a run.
        return new LakebaseError('TLS_UNTRUSTED', untrustedMessage(what, failure.host, failure.code));
      case 'other':
        return new LakebaseError('DATABRICKS_REQUEST_FAILED', `${what} on ${host} failed: ${failure.detail}`);
    }
  }

  #httpError(
    op: DatabricksOp,
    target: CallTarget,
    failure: Extract<Failure, { kind: 'http' }>,
    who: string,
    what: string,
  ): LakebaseError {
    // 403/404 messages say what was refused with a verb; others with the gerund label.
    const { status } = failure;
    const upstream = `${status} ${failure.errorCode}: ${failure.detail}`;
    if (status === 403) {
      const fix =
        op === 'me'
          ? 'set LAKETS_PG_ROLE to the Postgres role so the identity lookup is not needed'
          : target.instance !== undefined
            ? `grant it CAN USE (or CAN MANAGE) on the Lakebase database instance ${target.instance} (the instance's Permissions in the Lakebase app)`
            : op === 'generateCredential' && target.group !== undefined
              ? groupMembershipFix(target.group, target.endpoint, this.#clientId)
              : `grant it CAN USE (or CAN MANAGE) on the Lakebase project ${target.project} (project Permissions in the Lakebase app)`;
      return new LakebaseError(
        'DATABRICKS_PERMISSION_DENIED',
        `${who} may not ${action(op, target)} (${upstream}): ${fix}`,
        {
          status,
        },
      );
    }
    if (status === 404) {
      const found = notFound(op, target, upstream);
      return new LakebaseError(found.code, found.message, { status });
    }
    return new LakebaseError(
      'DATABRICKS_REQUEST_FAILED',
      `Databricks at ${this.host} refused ${what} (${upstream})`,
      {
        status,
      },
    );
  }
}

/**
 * A credential for a group role (group_name) is given only to a member of that role: the listing
 * calls before it passed, so project access is not what is missing.
 */
function groupMembershipFix(group: string, endpoint: string | undefined, appId: string | undefined): string {
  const branch = /\/branches\/([^/]+)\//.exec(endpoint ?? '')?.[1];
  return `LAKETS_PG_ROLE asks for a credential of group role ${quoteIdentifier(group)} (group_name), given only to a member of it: on ${branch ? `branch ${branch}` : 'the branch of the endpoint'} an admin runs GRANT ${quoteIdentifier(group)} TO ${quoteIdentifier(appId ?? '<application id>')}; or unset LAKETS_PG_ROLE to log in as the service principal's own role`;
}

function notFound(
  op: DatabricksOp,
  target: CallTarget,
  upstream: string,
): { code: LakebaseErrorCode; message: string } {
  if (target.instance !== undefined) {
    // Read just before, or named in the credential request: either way it is gone (or never was).
    return {
      code: 'INSTANCE_NOT_FOUND',
      message: `Lakebase database instance ${target.instance} was not found (${upstream}): check LAKETS_LAKEBASE_INSTANCE (the instance name, as the Lakebase app shows it) and that DATABRICKS_HOST is the workspace of the instance`,
    };
  }
  switch (op) {
    case 'listBranches':
      return {
        code: 'PROJECT_NOT_FOUND',
        message: `Lakebase project ${target.project} was not found (${upstream}): check LAKETS_PROJECT and that DATABRICKS_HOST is the workspace of the project`,
      };
    case 'listEndpoints':
      return {
        code: 'BRANCH_NOT_FOUND',
        message: `branch ${target.branch} of ${target.project} was not found (${upstream}): it was deleted since it was listed; the next run resolves again`,
      };
    default: {
      const fix = target.pinned
        ? 'check LAKETS_LAKEBASE_ENDPOINT, or unset it to use the project default branch read-write endpoint'
        : 'it was deleted since it was resolved; the next run resolves again';
      return {
        code: 'ENDPOINT_NOT_FOUND',
        message: `Lakebase endpoint ${target.endpoint} was not found (${upstream}): ${fix}`,
      };
    }
  }
}
