// What both resolvers (Autoscaling endpoint, Provisioned instance) share: where Postgres is, once
// resolved, is reused for `ttlMs` from its resolution or its last confirmed connection; concurrent
// callers share one resolution in flight; a host that stopped answering is forgotten.
import type { DatabricksSession } from './api.ts';

export interface CacheOptions {
  ttlMs: number;
  now: () => number;
  /** Called as each resolution (not each cache hit) starts. */
  onResolve?: () => void;
}

export abstract class CachedResolver<O extends CacheOptions, T extends { resolvedAt: number }> {
  protected readonly session: DatabricksSession;
  // Read on every call, not copied.
  protected readonly options: O;
  #cached: T | undefined;
  #pending: Promise<T> | undefined;

  constructor(session: DatabricksSession, options: O) {
    this.session = session;
    this.options = options;
  }

  /** Asks the service where Postgres is (only when the cache has nothing fresh). */
  protected abstract load(remainingMs?: () => number): Promise<T>;

  /** `remainingMs`: the invocation's time left, for a resolution that may wait. */
  async resolve(remainingMs?: () => number): Promise<T> {
    const { now, ttlMs } = this.options;
    if (this.#cached && now() - this.#cached.resolvedAt < ttlMs) return this.#cached;
    this.#pending ??= this.#load(remainingMs).finally(() => {
      this.#pending = undefined;
    });
    this.#cached = await this.#pending;
    return this.#cached;
  }

  /** A connection through the cached host just worked: it stays trusted for another TTL. */
  confirm(resolved: T): void {
    if (this.#cached === resolved) this.#cached = { ...resolved, resolvedAt: this.options.now() };
  }

  /** Forgets the cached host (e.g. it stopped answering). */
  invalidate(): void {
    this.#cached = undefined;
  }

  #load(remainingMs: (() => number) | undefined): Promise<T> {
    this.options.onResolve?.();
    return this.load(remainingMs);
  }
}
