// The Postgres password of a Lakebase session: a short-lived OAuth credential minted per endpoint.
// Lakebase checks it only at login, so one may be reused for a new connection while it still has a
// comfortable margin (5 minutes) left; a credential the server rejects is dropped.
import type { DatabricksSession } from './api.ts';
import { LakebaseError, registerSecret } from './errors.ts';
import type { Log } from './log.ts';

export const MIN_CREDENTIAL_REMAINING_MS = 5 * 60_000;

export interface DatabaseCredential {
  endpoint: string;
  token: string;
  /** Epoch ms; NaN-safe: an unparseable expire_time counts as already expiring (never reused). */
  expiresAt: number;
}

export interface CredentialCacheOptions {
  project: string;
  /** LAKETS_PG_ROLE: the role to log in as, when not the service principal's own. */
  role?: string;
  now: () => number;
  log: Log;
  onMint?: () => void;
  onReuse?: () => void;
}

export class CredentialCache {
  readonly #session: DatabricksSession;
  readonly #options: CredentialCacheOptions;
  readonly #cached = new Map<string, DatabaseCredential>();
  readonly #pending = new Map<string, Promise<DatabaseCredential>>();

  constructor(session: DatabricksSession, options: CredentialCacheOptions) {
    this.#session = session;
    this.#options = options;
  }

  /** A credential for `endpoint`: the cached one if it has > 5 minutes left, else a new one. */
  async get(endpoint: string, pinned: boolean): Promise<{ credential: DatabaseCredential; reused: boolean }> {
    const cached = this.#cached.get(endpoint);
    if (cached && cached.expiresAt - this.#options.now() > MIN_CREDENTIAL_REMAINING_MS) {
      this.#options.onReuse?.();
      return { credential: cached, reused: true };
    }
    let pending = this.#pending.get(endpoint);
    if (!pending) {
      pending = this.#mint(endpoint, pinned).finally(() => this.#pending.delete(endpoint));
      this.#pending.set(endpoint, pending);
    }
    const credential = await pending;
    this.#cached.set(endpoint, credential);
    return { credential, reused: false };
  }

  /** Forgets the cached credential of `endpoint` (the server rejected it). */
  drop(endpoint: string): void {
    this.#cached.delete(endpoint);
  }

  clear(): void {
    this.#cached.clear();
  }

  /**
   * A credential logs in as the caller's own role (named after its application id), or as a group
   * role the caller belongs to when the request names it in group_name.
   */
  async #groupName(): Promise<string | undefined> {
    const { role } = this.#options;
    if (role === undefined) return undefined;
    return role === (await this.#session.applicationId()) ? undefined : role;
  }

  async #mint(endpoint: string, pinned: boolean): Promise<DatabaseCredential> {
    const { project, log, now } = this.#options;
    const groupName = await this.#groupName();
    const body = (await this.#session.request(
      'generateCredential',
      { project, endpoint, pinned, ...(groupName === undefined ? {} : { group: groupName }) },
      'POST',
      '/api/2.0/postgres/credentials',
      { body: { endpoint, ...(groupName === undefined ? {} : { group_name: groupName }) } },
    )) as Record<string, unknown>;
    const token = body.token;
    if (typeof token !== 'string' || token === '') {
      throw new LakebaseError(
        'DATABRICKS_REQUEST_FAILED',
        `generating a Postgres credential for ${endpoint} returned no token: retry, and check the Lakebase API status`,
      );
    }
    registerSecret(token);
    this.#options.onMint?.();
    const expiresAt = typeof body.expire_time === 'string' ? Date.parse(body.expire_time) : Number.NaN;
    const credential = { endpoint, token, expiresAt: Number.isNaN(expiresAt) ? now() : expiresAt };
    log.debug('minted a Postgres credential', {
      endpoint,
      expiresAt: Number.isNaN(expiresAt) ? 'unknown' : new Date(expiresAt).toISOString(),
    });
    return credential;
  }
}

/** The Postgres role of the running identity: SCIM Me userName (a service principal's application id). */
export class IdentityCache {
  readonly #session: DatabricksSession;
  readonly #project: string;
  #cached: { clientId: string | undefined; userName: string } | undefined;

  constructor(session: DatabricksSession, project: string) {
    this.#session = session;
    this.#project = project;
  }

  async userName(): Promise<string> {
    // Keyed by client id: a secret rotated to another service principal means another identity.
    if (this.#cached && this.#cached.clientId === this.#session.clientId) return this.#cached.userName;
    const me = await this.#session.call(
      'me',
      { project: this.#project },
      (w) =>
        // What the SDK's currentUser.me() sends.
        w.apiClient.request({
          path: '/api/2.0/preview/scim/v2/Me',
          method: 'GET',
          headers: new Headers({ Accept: 'application/json' }),
          raw: false,
        }) as Promise<{ userName?: string }>,
    );
    const userName = me.userName;
    if (typeof userName !== 'string' || userName === '') {
      throw new LakebaseError(
        'DATABRICKS_REQUEST_FAILED',
        'SCIM Me returned no userName for the service principal: set LAKETS_PG_ROLE to its Postgres role',
      );
    }
    this.#cached = { clientId: this.#session.clientId, userName };
    return userName;
  }
}
