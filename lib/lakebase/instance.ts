// Which Postgres host a Lakebase Provisioned database instance has: `GET /api/2.0/database/instances/
// {name}` gives `read_write_dns` and `state`, and the host is used only while the instance is AVAILABLE.
// A stopped or deleting instance is an error that says what to do: the jobs never start an instance
// (that is its owner's decision, and it bills). A transient state (starting, updating, failing over)
// is read again with backoff while the invocation's time allows. Cached like an Autoscaling endpoint.
import type { CallTarget } from './api.ts';
import { CachedResolver, type CacheOptions } from './cached-resolver.ts';
import type { ResolvedEndpoint } from './endpoint.ts';
import { LakebaseError } from './errors.ts';
import type { Log } from './log.ts';
import { backoffDelay, type RetryPolicy } from './retry.ts';

const API = '/api/2.0/database/instances';

/** What the jobs do in each state the API documents. */
const STATES: Record<string, 'connect' | 'wait' | 'stopped' | 'deleting'> = {
  AVAILABLE: 'connect',
  STARTING: 'wait',
  UPDATING: 'wait',
  FAILING_OVER: 'wait',
  STOPPED: 'stopped',
  DELETING: 'deleting',
};

/** How long a connection waits for an instance in a transient state. */
export interface InstanceWait extends RetryPolicy {
  /**
   * Time the invocation keeps for the job itself: the wait ends this long before the invocation's
   * deadline (when the caller gives one), or after `budgetMs`, whichever comes first.
   */
  reserveMs: number;
}

export const DEFAULT_INSTANCE_WAIT: InstanceWait = {
  budgetMs: 120_000,
  baseDelayMs: 1_000,
  maxDelayMs: 10_000,
  reserveMs: 60_000,
};

export interface InstanceResolverOptions extends CacheOptions {
  instance: string;
  wait: InstanceWait;
  sleep: (ms: number) => Promise<void>;
  random?: () => number;
  log: Log;
}

/**
 * The instance's read-write host: cached for `ttlMs` from the last connection that worked through it,
 * else read (and waited for) again, within the invocation's time left (`remainingMs` of `resolve`).
 */
export class InstanceResolver extends CachedResolver<InstanceResolverOptions, ResolvedEndpoint> {
  protected async load(remainingMs?: () => number): Promise<ResolvedEndpoint> {
    const { instance, wait, now, sleep, log } = this.options;
    const started = now();
    const allowed = Math.min(wait.budgetMs, remainingMs ? remainingMs() - wait.reserveMs : wait.budgetMs);
    const target: CallTarget = { instance };
    const path = `${API}/${encodeURIComponent(instance)}`;
    for (let reads = 1; ; reads += 1) {
      const body = (await this.session.request('getInstance', target, 'GET', path)) as
        | Record<string, unknown>
        | undefined;
      const state = typeof body?.state === 'string' ? body.state : undefined;
      const dns = body?.read_write_dns;
      const host = typeof dns === 'string' && dns !== '' ? dns : undefined;
      const action = state === undefined ? undefined : STATES[state];
      if (action === 'connect' && host) {
        log.info('resolved the Lakebase instance', { instance, host, state });
        return { name: instance, host, pinned: false, resolvedAt: now() };
      }
      if (action === 'stopped') {
        throw new LakebaseError(
          'INSTANCE_STOPPED',
          `Lakebase database instance ${instance} is stopped (state STOPPED), and the jobs never start an instance: start it in the Lakebase app (or update it with stopped: false) and the next run connects, or point LAKETS_LAKEBASE_INSTANCE at a running instance`,
        );
      }
      if (action === 'deleting') {
        throw new LakebaseError(
          'INSTANCE_DELETING',
          `Lakebase database instance ${instance} is being deleted (state DELETING): there is nothing left to maintain; point LAKETS_LAKEBASE_INSTANCE at another instance, or remove this deployment`,
        );
      }
      const shown = state ?? 'none';
      if (action === undefined) {
        // A state this version does not know: never connect on a guess.
        throw new LakebaseError(
          'INSTANCE_NOT_READY',
          `Lakebase database instance ${instance} reports state ${shown}, which the jobs do not connect in (they connect while it is AVAILABLE): check the instance in the Lakebase app; the next run reads it again`,
        );
      }
      // Starting, updating, failing over, or AVAILABLE without its host yet: read it again later.
      const delay = backoffDelay(reads, wait, this.options.random);
      const elapsed = now() - started;
      if (elapsed + delay > allowed) {
        const what = action === 'connect' ? `${shown} without a read_write_dns` : `still ${shown}`;
        throw new LakebaseError(
          'INSTANCE_NOT_READY',
          `Lakebase database instance ${instance} is ${what} after ${reads} reads in ${(elapsed / 1000).toFixed(1)} s: the run stopped waiting within its time budget (the jobs wait out STARTING, UPDATING and FAILING_OVER, and never start an instance); the next scheduled run tries again, and if it stays so, check the instance in the Lakebase app`,
        );
      }
      log.info('waiting for the Lakebase instance', { instance, state: shown, read: reads, delayMs: delay });
      await sleep(delay);
    }
  }
}
