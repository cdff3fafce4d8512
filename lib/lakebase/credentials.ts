// The Postgres password of a Lakebase session: a short-lived OAuth credential minted per endpoint
// (Autoscaling) or per instance (Provisioned). Lakebase checks it only at login, so one may be reused
// for a new connection while it still has a comfortable margin (5 minutes) left; a credential the
// server rejects is dropped.
import { randomUUID } from 'node:crypto';
import type { CallTarget, DatabricksSession } from './api.ts';
import { LakebaseError, registerSecret } from './errors.ts';
import type { Log } from './log.ts';

export const MIN_CREDENTIAL_REMAINING_MS = 5 * 60_000;

export interface DatabaseCredential {
  /** The endpoint path or the instance name it was minted for. */
  target: string;
  token: string;
  /** Epoch ms; NaN-safe: an unparseable expiry counts as already expiring (never reused). */
  expiresAt: number;
}

/** One credential request, as the service answered it (checked by the cache). */
export interface MintAnswer {
  token: unknown;
  /** The expiry as the API words it (`expire_time` or `expiration_time`). */
  expiry: unknown;
}

/** Asks Databricks for a credential for `target` (an endpoint path, or an instance name). */
export type Minter = (target: string, pinned: boolean) => Promise<MintAnswer>;

export interface CredentialCacheOptions {
  mint: Minter;
  now: () => number;
  log: Log;
  onMint?: () => void;
  onReuse?: () => void;
}

export class CredentialCache {
  readonly #options: CredentialCacheOptions;
  readonly #cached = new Map<string, DatabaseCredential>();
  readonly #pending = new Map<string, Promise<DatabaseCredential>>();

  constructor(options: CredentialCacheOptions) {
    this.#options = options;
  }

  /** A credential for `target`: the cached one if it has > 5 minutes left, else a new one. */
  async get(target: string, pinned: boolean): Promise<{ credential: DatabaseCredential; reused: boolean }> {
    const cached = this.#cached.get(target);
    if (cached && cached.expiresAt - this.#options.now() > MIN_CREDENTIAL_REMAINING_MS) {
      this.#options.onReuse?.();
      return { credential: cached, reused: true };
    }
    let pending = this.#pending.get(target);
    if (!pending) {
      pending = this.#mint(target, pinned).finally(() => this.#pending.delete(target));
      this.#pending.set(target, pending);
    }
    const credential = await pending;
    this.#cached.set(target, credential);
    return { credential, reused: false };
  }

  /** Forgets the cached credential of `target` (the server rejected it). */
  drop(target: string): void {
    this.#cached.delete(target);
  }

  clear(): void {
    this.#cached.clear();
  }

  async #mint(target: string, pinned: boolean): Promise<DatabaseCredential> {
    const { log, now } = this.#options;
    const { token, expiry } = await this.#options.mint(target, pinned);
    if (typeof token !== 'string' || token === '') {
      throw new LakebaseError(
        'DATABRICKS_REQUEST_FAILED',
        `generating a Postgres credential for ${target} returned no token: retry, and check the Lakebase API status`,
      );
    }
    registerSecret(token);
    this.#options.onMint?.();
    const expiresAt = typeof expiry === 'string' ? Date.parse(expiry) : Number.NaN;
    const credential = { target, token, expiresAt: Number.isNaN(expiresAt) ? now() : expiresAt };
    log.debug('minted a Postgres credential', {
      target,
      expiresAt: Number.isNaN(expiresAt) ? 'unknown' : new Date(expiresAt).toISOString(),
    });
    return credential;
  }
}

/**
 * Autoscaling: `POST /api/2.0/postgres/credentials` for an endpoint. A credential logs in as the
 * caller's own role (named after its application id), or as a group role the caller belongs to when
 * the request names it in group_name (LAKETS_PG_ROLE, unless it is the caller's own).
 */
export function endpointMinter(session: DatabricksSession, project: string, role?: string): Minter {
  const groupName = async (): Promise<string | undefined> =>
    role === undefined || role === (await session.applicationId()) ? undefined : role;
  return async (endpoint, pinned) => {
    const group = await groupName();
    const body = (await session.request(
      'generateCredential',
      { project, endpoint, pinned, ...(group === undefined ? {} : { group }) },
      'POST',
      '/api/2.0/postgres/credentials',
      { body: { endpoint, ...(group === undefined ? {} : { group_name: group }) } },
    )) as Record<string, unknown> | undefined;
    return { token: body?.token, expiry: body?.expire_time };
  };
}

/**
 * Provisioned: `POST /api/2.0/database/credentials` for an instance, with a new request id (a UUID)
 * per credential: the id makes a request idempotent, so a reused one could answer an old token. The
 * token logs in as the caller's own role, or as a group role it belongs to (no group in the request).
 */
export function instanceMinter(session: DatabricksSession): Minter {
  return async (instance) => {
    const target: CallTarget = { instance };
    const body = (await session.request(
      'generateInstanceCredential',
      target,
      'POST',
      '/api/2.0/database/credentials',
      { body: { request_id: randomUUID(), instance_names: [instance] } },
    )) as Record<string, unknown> | undefined;
    return { token: body?.token, expiry: body?.expiration_time };
  };
}

/** The Postgres role of the running identity: SCIM Me userName (a service principal's application id). */
export class IdentityCache {
  readonly #session: DatabricksSession;
  readonly #target: CallTarget;
  #cached: { clientId: string | undefined; userName: string } | undefined;

  constructor(session: DatabricksSession, target: CallTarget) {
    this.#session = session;
    this.#target = target;
  }

  async userName(): Promise<string> {
    // Keyed by client id: a secret rotated to another service principal means another identity.
    if (this.#cached && this.#cached.clientId === this.#session.clientId) return this.#cached.userName;
    const me = await this.#session.call(
      'me',
      this.#target,
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
