// Which Postgres host to connect to: project → its default branch → that branch's read-write endpoint
// → the endpoint's host (or a pinned endpoint → its host). Cached for a bounded time, because a
// branch can be reset or an endpoint replaced while a container stays warm.
import { ConfigError } from '../config.ts';
import type { CallTarget, DatabricksOp, DatabricksSession } from './api.ts';
import { CachedResolver, type CacheOptions } from './cached-resolver.ts';
import { LakebaseError } from './errors.ts';
import type { Log } from './log.ts';

const API = '/api/2.0/postgres';
export const READ_WRITE = 'ENDPOINT_TYPE_READ_WRITE';

export interface ResolvedEndpoint {
  /** `projects/<p>/branches/<b>/endpoints/<e>`. */
  name: string;
  host: string;
  pinned: boolean;
  resolvedAt: number;
}

// The service returns `status` only (`spec` is input-only), so everything is read from there.
interface Resource {
  name?: unknown;
  status?: Record<string, unknown>;
}

function nameOf(item: Resource): string | undefined {
  return typeof item.name === 'string' ? item.name : undefined;
}

/** Every item of a paginated list, following next_page_token; stops early once `stop` matches. */
async function findInPages(
  session: DatabricksSession,
  op: DatabricksOp,
  target: CallTarget,
  path: string,
  key: 'branches' | 'endpoints',
  stop: (item: Resource) => boolean,
): Promise<{ match?: Resource; seen: Resource[] }> {
  const seen: Resource[] = [];
  let pageToken: string | undefined;
  const tokens = new Set<string>();
  do {
    const page = (await session.request(
      op,
      target,
      'GET',
      path,
      pageToken ? { query: { page_token: pageToken } } : {},
    )) as Record<string, unknown> | undefined;
    const items = Array.isArray(page?.[key]) ? (page[key] as Resource[]) : [];
    for (const item of items) {
      seen.push(item);
      if (stop(item)) return { match: item, seen };
    }
    const next = page?.next_page_token;
    pageToken = typeof next === 'string' && next !== '' ? next : undefined;
    // A server that repeats a token would loop forever; treat it as the end.
    if (pageToken && tokens.has(pageToken)) pageToken = undefined;
    if (pageToken) tokens.add(pageToken);
  } while (pageToken);
  return { seen };
}

function endpointType(item: Resource): string | undefined {
  const value = item.status?.endpoint_type;
  return typeof value === 'string' ? value : undefined;
}

function list(values: Array<string | undefined>): string {
  return values.length === 0 ? 'none' : values.map((v) => v ?? '(unnamed)').join(', ');
}

export interface ResolverOptions extends CacheOptions {
  project: string;
  pinned?: string;
  log: Log;
}

export class EndpointResolver extends CachedResolver<ResolverOptions, ResolvedEndpoint> {
  protected async load(): Promise<ResolvedEndpoint> {
    const { project, pinned, log } = this.options;
    const name = pinned ?? (await this.#readWriteEndpointOf(await this.#defaultBranch(project), project));
    const target: CallTarget = { project, endpoint: name, pinned: pinned !== undefined };
    const endpoint = (await this.session.request('getEndpoint', target, 'GET', `${API}/${name}`)) as Resource;
    const hosts = endpoint.status?.hosts as Record<string, unknown> | undefined;
    const host = hosts?.host;
    if (typeof host !== 'string' || host === '') {
      const state = endpoint.status?.current_state;
      throw new LakebaseError(
        'ENDPOINT_NOT_READY',
        `Lakebase endpoint ${name} reports no host (state: ${typeof state === 'string' ? state : 'unknown'}): wait until it is provisioned, or pin another with LAKETS_LAKEBASE_ENDPOINT`,
      );
    }
    if (pinned !== undefined && endpointType(endpoint) !== READ_WRITE) {
      // Every job writes: a read-only endpoint would fail each run at its first write (25006).
      throw new ConfigError(
        'LAKETS_LAKEBASE_ENDPOINT',
        `LAKETS_LAKEBASE_ENDPOINT=${JSON.stringify(name)} is a ${endpointType(endpoint) ?? 'untyped'} endpoint, and the jobs write: pin the branch's read-write endpoint (${READ_WRITE}), or unset it to use the project's default branch read-write endpoint`,
      );
    }
    log.info('resolved the Lakebase endpoint', {
      project,
      endpoint: name,
      host,
      pinned: pinned !== undefined,
    });
    return { name, host, pinned: pinned !== undefined, resolvedAt: this.options.now() };
  }

  async #defaultBranch(project: string): Promise<string> {
    const { match, seen } = await findInPages(
      this.session,
      'listBranches',
      { project },
      `${API}/${project}/branches`,
      'branches',
      (b) => b.status?.default === true,
    );
    const name = match && nameOf(match);
    if (!name) {
      throw new LakebaseError(
        'NO_DEFAULT_BRANCH',
        `Lakebase project ${project} has no default branch (branches found: ${list(seen.map(nameOf))}): mark one as default, or pin an endpoint with LAKETS_LAKEBASE_ENDPOINT`,
      );
    }
    return name;
  }

  async #readWriteEndpointOf(branch: string, project: string): Promise<string> {
    const { match, seen } = await findInPages(
      this.session,
      'listEndpoints',
      { project, branch },
      `${API}/${branch}/endpoints`,
      'endpoints',
      (e) => endpointType(e) === READ_WRITE,
    );
    const name = match && nameOf(match);
    if (!name) {
      const found = seen.map((e) => `${nameOf(e) ?? '(unnamed)'} (${endpointType(e) ?? 'no type'})`);
      throw new LakebaseError(
        'NO_READ_WRITE_ENDPOINT',
        `default branch ${branch} has no read-write endpoint (endpoints found: ${list(found)}): add a read-write compute to the branch, or pin an endpoint with LAKETS_LAKEBASE_ENDPOINT`,
      );
    }
    return name;
  }
}
