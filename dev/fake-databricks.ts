// A small local stand-in for a Databricks workspace, on 127.0.0.1, for tests, the demo and the
// benchmarks. It answers what the connection library uses, in the documented JSON shapes, and is
// driven by the real SDK WorkspaceClient. It is at least as strict as the real service: HTTPS only
// (a certificate from the fakes' CA, dev/fake-tls.ts), 415 for a JSON body without
// `Content-Type: application/json`, error bodies with a google.rpc.RequestInfo `details` entry,
// opaque page tokens (an unknown one is a 400), resources with `status` only (`spec` is input-only),
// OAuth tokens that expire, and Postgres credentials that log in only as the caller's own role or
// as a group role (named in `group_name`) the caller really is a member of (else 403, or a token that logs in as nothing: setNonMemberGroup).
//   GET  /oidc/.well-known/oauth-authorization-server   OIDC discovery
//   POST /oidc/v1/token                                  client_credentials (Basic auth or form)
//   GET  /api/2.0/preview/scim/v2/Me                     the service principal
//   GET  /api/2.0/postgres/projects/{p}/branches         paginated (page_size / page_token)
//   GET  /api/2.0/postgres/projects/{p}/branches/{b}/endpoints   paginated
//   GET  /api/2.0/postgres/projects/{p}/branches/{b}/endpoints/{e}
//   POST /api/2.0/postgres/credentials                   {"endpoint"} -> {"token","expire_time"}
//   GET  /api/2.0/database/instances/{name}              a Provisioned instance: state, read_write_dns
//   POST /api/2.0/database/credentials                   {"request_id","instance_names"} -> {"token","expiration_time"}
// A Provisioned instance's state is the tests' to set, and can change over reads (`upcoming`).
// It counts requests per route and can inject faults (status codes, delays) per route.
import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { fakeTls, type ServerCertificate } from './fake-tls.ts';

export type FakeRoute =
  | 'oidc'
  | 'token'
  | 'me'
  | 'listBranches'
  | 'listEndpoints'
  | 'getEndpoint'
  | 'credentials'
  | 'getInstance'
  | 'instanceCredentials'
  | 'unknown';

export type EndpointType = 'ENDPOINT_TYPE_READ_WRITE' | 'ENDPOINT_TYPE_READ_ONLY';

export interface FakeEndpoint {
  id: string;
  type: EndpointType;
  /** Postgres host in status.hosts.host; omit to simulate an endpoint still being provisioned. */
  host?: string;
}

export interface FakeBranch {
  id: string;
  default?: boolean;
  endpoints: FakeEndpoint[];
}

export interface FakeProject {
  branches: FakeBranch[];
}

/** The states a Lakebase Provisioned database instance reports. */
export type InstanceState = 'AVAILABLE' | 'STARTING' | 'UPDATING' | 'FAILING_OVER' | 'STOPPED' | 'DELETING';

/** A Lakebase Provisioned database instance (mutable: tests change its state between calls). */
export interface FakeInstance {
  state: InstanceState;
  /** Its read_write_dns; omit for an instance that has none yet. */
  host?: string;
  /**
   * States the next reads report before `state`, one read each: `['STARTING', 'STARTING']` with
   * state AVAILABLE is an instance that becomes available on the third read.
   */
  upcoming?: InstanceState[];
}

export interface MintedCredential {
  token: string;
  /** The Autoscaling endpoint it was minted for. */
  endpoint?: string;
  /** The Provisioned instances it was minted for (`instance_names`), and the request's id. */
  instances?: string[];
  requestId?: string;
  /** SCIM userName of the identity that asked (the service principal's application id). */
  identity: string;
  /** The request's group_name, if any. */
  groupName?: string;
  /**
   * The role the credential logs in as: the identity's own, or the group when the identity is a
   * member of it (real Postgres membership); undefined when it logs in as nothing.
   */
  role?: string;
  /**
   * Provisioned: every role it logs in as. The request names no group, so the token is the password
   * of the identity's own role and of each login group role it really is a member of.
   */
  roles?: string[];
  expireTime: Date;
}

export interface FakeDatabricksOptions {
  /** The one service principal the workspace knows. */
  clientId: string;
  clientSecret: string;
  /** Its SCIM userName; defaults to clientId (a service principal's application id). */
  userName?: string;
  /** Projects by id (mutable: tests may change them between calls). */
  projects: Record<string, FakeProject>;
  /** Provisioned database instances by name (mutable: tests may change them between calls). */
  instances?: Record<string, FakeInstance>;
  /** Largest page the lists return, whatever page_size asks: small values force pagination. */
  pageSize?: number;
  /** Lifetime of minted Postgres credentials. Default 1 hour (Lakebase's). */
  credentialTtlMs?: number;
  /** Lifetime (expires_in) of OAuth access tokens. Default 3600 s. */
  accessTokenTtlSeconds?: number;
  /**
   * The Postgres cluster of the endpoints, as a superuser: a minted credential becomes the password
   * of the role it logs in as (until it expires), so logins are checked by the real server, and a
   * login event trigger in this connection's database checks the group membership again at login.
   */
  postgres?: pg.ClientBase;
  /** Runs before a minted credential is returned (observation). */
  onCredential?: (credential: MintedCredential) => void | Promise<void>;
  /** Certificate the server presents. Default: the fakes' CA's localhost certificate. */
  certificate?: ServerCertificate;
}

export interface FakeFault {
  /** Answer with this status instead of the real response (omit for a delay only). */
  status?: number;
  /** Databricks error_code of the body; a default per status otherwise. */
  errorCode?: string;
  message?: string;
  /** Whole JSON body instead of {error_code, message} (e.g. OAuth's {error, error_description}). */
  body?: unknown;
  /** Wait before answering. */
  delayMs?: number;
  /** How many requests it applies to; default: all until cleared. */
  times?: number;
}

export interface FakeCall {
  route: FakeRoute;
  method: string;
  path: string;
  /** The query string, e.g. `page_token=...` (empty when none). */
  query: string;
  /** The request's Content-Type and Accept headers ('' when absent). */
  contentType: string;
  accept: string;
  status: number;
}

export interface FakeDatabricks {
  url: string;
  /** Every request, in order. */
  calls: FakeCall[];
  count(route?: FakeRoute): number;
  resetCalls(): void;
  setFault(route: FakeRoute, fault: FakeFault | undefined): void;
  clearFaults(): void;
  /** Rotates the service principal's secret: the old one stops working for new tokens. */
  setClientSecret(secret: string): void;
  /** Invalidates every issued OAuth access token (API calls then answer 401). */
  revokeAccessTokens(): void;
  /** Lifetime (expires_in) of OAuth access tokens issued from now on. */
  setAccessTokenTtl(seconds: number): void;
  setCredentialTtl(ms: number): void;
  /**
   * What a credential request naming a group the caller is not a member of gets. Databricks does not
   * document it: `refuse` (the default) answers 403 PERMISSION_DENIED; `mint` hands out a token that
   * is no role's password, so the login fails with 28P01. The jobs must say what to fix either way.
   */
  setNonMemberGroup(behaviour: 'refuse' | 'mint'): void;
  /** Presents another certificate from now on; open connections are closed (clients reconnect). */
  setCertificate(certificate: ServerCertificate): void;
  /** Every Postgres credential minted, and every OAuth token issued (tests check none leaks). */
  minted: MintedCredential[];
  accessTokens: string[];
  projects: Record<string, FakeProject>;
  instances: Record<string, FakeInstance>;
  close(): Promise<void>;
}

const DEFAULT_ERROR_CODE: Record<number, string> = {
  400: 'INVALID_PARAMETER_VALUE',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL_ERROR',
  503: 'TEMPORARILY_UNAVAILABLE',
};

const ID = '[a-z0-9][a-z0-9-]*';
const ROUTES: Array<[string, RegExp, FakeRoute]> = [
  ['GET', /^\/oidc\/\.well-known\/oauth-authorization-server$/, 'oidc'],
  ['POST', /^\/oidc\/v1\/token$/, 'token'],
  ['GET', /^\/api\/2\.0\/preview\/scim\/v2\/Me$/, 'me'],
  ['GET', new RegExp(`^/api/2\\.0/postgres/projects/(${ID})/branches$`), 'listBranches'],
  ['GET', new RegExp(`^/api/2\\.0/postgres/projects/(${ID})/branches/(${ID})/endpoints$`), 'listEndpoints'],
  [
    'GET',
    new RegExp(`^/api/2\\.0/postgres/projects/(${ID})/branches/(${ID})/endpoints/(${ID})$`),
    'getEndpoint',
  ],
  ['POST', /^\/api\/2\.0\/postgres\/credentials$/, 'credentials'],
  ['GET', /^\/api\/2\.0\/database\/instances\/([^/]+)$/, 'getInstance'],
  ['POST', /^\/api\/2\.0\/database\/credentials$/, 'instanceCredentials'],
];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

// The real shape: a RequestInfo detail without `metadata` (which @databricks/sdk-experimental
// 0.17 fails to parse, so clients must read the body themselves).
const apiError = (status: number, message: string, errorCode = DEFAULT_ERROR_CODE[status] ?? 'UNKNOWN') => ({
  error_code: errorCode,
  message,
  details: [
    { '@type': 'type.googleapis.com/google.rpc.RequestInfo', request_id: randomUUID(), serving_data: '' },
  ],
});

const isJson = (req: IncomingMessage) =>
  /^application\/json\s*(;|$)/i.test(String(req.headers['content-type'] ?? ''));

export async function startFakeDatabricks(options: FakeDatabricksOptions): Promise<FakeDatabricks> {
  let clientSecret = options.clientSecret;
  let credentialTtlMs = options.credentialTtlMs ?? 3_600_000;
  let nonMemberGroup: 'refuse' | 'mint' = 'refuse';
  const userName = options.userName ?? options.clientId;
  const maxPage = options.pageSize ?? 2;
  const tokenTtl = options.accessTokenTtlSeconds ?? 3600;
  const issued = new Map<string, number>(); // access token -> expiry (epoch ms)
  const faults = new Map<FakeRoute, FakeFault>();
  const calls: FakeCall[] = [];
  const minted: MintedCredential[] = [];
  const accessTokens: string[] = [];
  const instances = options.instances ?? {};
  // Provisioned credential requests by request_id: the id makes a request idempotent, so a repeated
  // one answers the credential it answered before (a client reusing ids gets an old token back).
  const byRequestId = new Map<string, MintedCredential>();
  const spId = String(Math.floor(Math.random() * 1e15));
  let accessTokenTtl = tokenTtl;
  let url = '';
  // Opaque page tokens: random strings the server remembers; a client cannot make or decode one.
  const pageTokens = new Map<string, number>();

  function page<T>(items: T[], query: URLSearchParams): { items: T[]; next?: string } | undefined {
    const token = query.get('page_token');
    const offset = token ? pageTokens.get(token) : 0;
    if (offset === undefined) return undefined;
    const asked = Number(query.get('page_size') ?? maxPage);
    const size = Math.max(1, Math.min(maxPage, Number.isFinite(asked) && asked > 0 ? asked : maxPage));
    const slice = items.slice(offset, offset + size);
    if (offset + size >= items.length) return { items: slice };
    const next = randomBytes(18).toString('base64url');
    pageTokens.set(next, offset + size);
    return { items: slice, next };
  }

  const branchJson = (project: string, b: FakeBranch) => ({
    name: `projects/${project}/branches/${b.id}`,
    uid: `br-${b.id}`,
    parent: `projects/${project}`,
    branch_id: b.id,
    create_time: '2026-01-05T10:00:00Z',
    update_time: '2026-01-05T10:00:00Z',
    status: { default: b.default === true, current_state: 'READY', is_protected: false, branch_id: b.id },
  });

  const endpointJson = (project: string, branch: string, e: FakeEndpoint) => ({
    name: `projects/${project}/branches/${branch}/endpoints/${e.id}`,
    uid: `ep-${e.id}`,
    parent: `projects/${project}/branches/${branch}`,
    endpoint_id: e.id,
    create_time: '2026-01-05T10:00:00Z',
    update_time: '2026-01-05T10:00:00Z',
    status: {
      endpoint_type: e.type,
      current_state: e.host ? 'ACTIVE' : 'INIT',
      autoscaling_limit_min_cu: 0.5,
      autoscaling_limit_max_cu: 2,
      hosts: e.host ? { host: e.host } : {},
      endpoint_id: e.id,
    },
  });

  const instanceJson = (name: string, instance: FakeInstance, state: InstanceState) => ({
    name,
    uid: `di-${Buffer.from(name).toString('hex').slice(0, 12)}`,
    creator: 'admin@example.com',
    state,
    ...(instance.host ? { read_write_dns: instance.host } : {}),
    pg_version: 'PG_VERSION_17',
    capacity: 'CU_1',
    creation_time: '2025-09-01T10:00:00Z',
    effective_stopped: state === 'STOPPED',
    effective_capacity: 'CU_1',
    effective_node_count: 1,
    effective_enable_readable_secondaries: false,
    effective_retention_window_in_days: 7,
  });

  /** The JSON body of a POST, or the error answer already sent. */
  async function jsonBody(
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<Record<string, unknown> | undefined> {
    if (!isJson(req)) {
      send(
        res,
        415,
        apiError(
          415,
          "Content-Type 'application/json' is required for this request.",
          'UNSUPPORTED_MEDIA_TYPE',
        ),
      );
      return undefined;
    }
    try {
      const body = JSON.parse(await readBody(req)) as unknown;
      if (typeof body === 'object' && body !== null && !Array.isArray(body))
        return body as Record<string, unknown>;
    } catch {
      // answered below
    }
    send(res, 400, apiError(400, 'Request body is not a JSON object.', 'MALFORMED_REQUEST'));
    return undefined;
  }

  function findEndpoint(
    name: string,
  ): { project: string; branch: string; endpoint: FakeEndpoint } | undefined {
    const m = new RegExp(`^projects/(${ID})/branches/(${ID})/endpoints/(${ID})$`).exec(name);
    if (!m) return undefined;
    const [, p = '', b = '', e = ''] = m;
    const endpoint = options.projects[p]?.branches.find((x) => x.id === b)?.endpoints.find((x) => x.id === e);
    return endpoint ? { project: p, branch: b, endpoint } : undefined;
  }

  function authenticatedApi(req: IncomingMessage): boolean {
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    const expiry = m?.[1] ? issued.get(m[1]) : undefined;
    return expiry !== undefined && expiry > Date.now();
  }

  function tokenClient(req: IncomingMessage, form: URLSearchParams): { id?: string; secret?: string } {
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '');
    if (basic?.[1]) {
      const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      return { id: decoded.slice(0, colon), secret: decoded.slice(colon + 1) };
    }
    return { id: form.get('client_id') ?? undefined, secret: form.get('client_secret') ?? undefined };
  }

  async function handle(route: FakeRoute, match: RegExpExecArray, req: IncomingMessage, res: ServerResponse) {
    const query = new URL(req.url ?? '/', url).searchParams;
    switch (route) {
      case 'oidc':
        return send(res, 200, {
          issuer: `${url}/oidc`,
          authorization_endpoint: `${url}/oidc/v1/authorize`,
          token_endpoint: `${url}/oidc/v1/token`,
          grant_types_supported: ['client_credentials', 'authorization_code', 'refresh_token'],
          token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
          scopes_supported: ['all-apis', 'offline_access'],
        });
      case 'token': {
        if (!/^application\/x-www-form-urlencoded\s*(;|$)/i.test(String(req.headers['content-type'] ?? ''))) {
          return send(res, 400, {
            error: 'invalid_request',
            error_description: 'Content-Type must be application/x-www-form-urlencoded',
          });
        }
        const form = new URLSearchParams(await readBody(req));
        const client = tokenClient(req, form);
        const valid =
          form.get('grant_type') === 'client_credentials' &&
          client.id === options.clientId &&
          client.secret !== undefined &&
          sameSecret(client.secret, clientSecret);
        if (!valid)
          return send(res, 401, {
            error: 'invalid_client',
            error_description: 'Client authentication failed',
          });
        const token = `fake-at-${randomBytes(24).toString('base64url')}`;
        issued.set(token, Date.now() + accessTokenTtl * 1000);
        accessTokens.push(token);
        return send(res, 200, {
          access_token: token,
          token_type: 'Bearer',
          expires_in: accessTokenTtl,
          scope: form.get('scope') ?? 'all-apis',
        });
      }
      default:
        break;
    }
    if (!authenticatedApi(req)) {
      return send(
        res,
        401,
        apiError(401, 'Credential was not sent or was of an unsupported type for this API.'),
      );
    }
    switch (route) {
      case 'me':
        return send(res, 200, {
          schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
          id: spId,
          userName,
          displayName: 'lakets-jobs',
          active: true,
        });
      case 'listBranches': {
        const project = options.projects[match[1] ?? ''];
        if (!project) return send(res, 404, apiError(404, `Project 'projects/${match[1]}' does not exist.`));
        const p = page(project.branches, query);
        if (!p) return send(res, 400, apiError(400, 'Invalid page_token.'));
        return send(res, 200, {
          branches: p.items.map((b) => branchJson(match[1] ?? '', b)),
          ...(p.next ? { next_page_token: p.next } : {}),
        });
      }
      case 'listEndpoints': {
        const branch = options.projects[match[1] ?? '']?.branches.find((b) => b.id === match[2]);
        if (!branch) {
          return send(
            res,
            404,
            apiError(404, `Branch 'projects/${match[1]}/branches/${match[2]}' does not exist.`),
          );
        }
        const p = page(branch.endpoints, query);
        if (!p) return send(res, 400, apiError(400, 'Invalid page_token.'));
        return send(res, 200, {
          endpoints: p.items.map((e) => endpointJson(match[1] ?? '', match[2] ?? '', e)),
          ...(p.next ? { next_page_token: p.next } : {}),
        });
      }
      case 'getEndpoint': {
        const name = `projects/${match[1]}/branches/${match[2]}/endpoints/${match[3]}`;
        const found = findEndpoint(name);
        if (!found) return send(res, 404, apiError(404, `Endpoint '${name}' does not exist.`));
        return send(res, 200, endpointJson(found.project, found.branch, found.endpoint));
      }
      case 'credentials': {
        const body = await jsonBody(req, res);
        if (!body) return;
        if (typeof body.endpoint !== 'string')
          return send(res, 400, apiError(400, "Field 'endpoint' is required."));
        if (
          body.group_name !== undefined &&
          (typeof body.group_name !== 'string' || body.group_name === '')
        ) {
          return send(res, 400, apiError(400, "Field 'group_name' must be a non-empty string."));
        }
        if (!findEndpoint(body.endpoint)) {
          return send(res, 404, apiError(404, `Endpoint '${body.endpoint}' does not exist.`));
        }
        const groupName = body.group_name as string | undefined;
        // A credential for a group role is given only to a member of it (or, with setNonMemberGroup('mint'),
        // a token that is no role's password).
        const role = options.postgres ? await loginRole(options.postgres, userName, groupName) : undefined;
        if (
          options.postgres &&
          groupName !== undefined &&
          role === undefined &&
          nonMemberGroup === 'refuse'
        ) {
          return send(
            res,
            403,
            apiError(403, `Identity '${userName}' is not a member of the Postgres role '${groupName}'.`),
          );
        }
        const credential: MintedCredential = {
          token: `fake-pg-${randomBytes(24).toString('base64url')}`,
          endpoint: body.endpoint,
          identity: userName,
          ...(groupName === undefined ? {} : { groupName }),
          expireTime: new Date(Date.now() + credentialTtlMs),
        };
        if (options.postgres && role) {
          credential.role = role;
          await setPassword(options.postgres, role, credential.token, credential.expireTime, userName);
        }
        await options.onCredential?.(credential);
        minted.push(credential);
        return send(res, 200, { token: credential.token, expire_time: credential.expireTime.toISOString() });
      }
      case 'getInstance': {
        const name = decodeURIComponent(match[1] ?? '');
        const instance = instances[name];
        if (!instance) return send(res, 404, apiError(404, `Database instance '${name}' does not exist.`));
        const state = instance.upcoming?.shift() ?? instance.state;
        return send(res, 200, instanceJson(name, instance, state));
      }
      case 'instanceCredentials': {
        const body = await jsonBody(req, res);
        if (!body) return;
        const requestId = body.request_id;
        if (typeof requestId !== 'string' || !UUID.test(requestId)) {
          return send(res, 400, apiError(400, "Field 'request_id' must be a UUID."));
        }
        const names = body.instance_names;
        if (
          !Array.isArray(names) ||
          names.length === 0 ||
          names.some((n) => typeof n !== 'string' || n === '')
        ) {
          return send(
            res,
            400,
            apiError(400, "Field 'instance_names' must be a non-empty list of instance names."),
          );
        }
        if (body.claims !== undefined && !Array.isArray(body.claims)) {
          return send(res, 400, apiError(400, "Field 'claims' must be a list."));
        }
        const unknown = (names as string[]).find((n) => !instances[n]);
        if (unknown !== undefined) {
          return send(res, 404, apiError(404, `Database instance '${unknown}' does not exist.`));
        }
        const earlier = byRequestId.get(requestId);
        const credential: MintedCredential = earlier ?? {
          token: `fake-pg-${randomBytes(24).toString('base64url')}`,
          instances: names as string[],
          requestId,
          identity: userName,
          expireTime: new Date(Date.now() + credentialTtlMs),
        };
        if (!earlier) {
          if (options.postgres) {
            const roles = await instanceLoginRoles(options.postgres, userName);
            if (roles.includes(userName)) credential.role = userName;
            credential.roles = roles;
            for (const role of roles) {
              await setPassword(options.postgres, role, credential.token, credential.expireTime, userName);
            }
          }
          await options.onCredential?.(credential);
          byRequestId.set(requestId, credential);
          minted.push(credential);
        }
        return send(res, 200, {
          token: credential.token,
          expiration_time: credential.expireTime.toISOString(),
        });
      }
      default:
        return send(
          res,
          404,
          apiError(404, `No API found for '${req.method} ${req.url}'.`, 'ENDPOINT_NOT_FOUND'),
        );
    }
  }

  const certificate = options.certificate ?? fakeTls();
  const server = createServer({ cert: certificate.cert, key: certificate.key }, (req, res) => {
    const { pathname: path, search } = new URL(req.url ?? '/', 'http://x');
    let route: FakeRoute = 'unknown';
    let match: RegExpExecArray = Object.assign([path], { index: 0, input: path }) as RegExpExecArray;
    for (const [method, pattern, name] of ROUTES) {
      const m = pattern.exec(path);
      if (m && method === req.method) {
        route = name;
        match = m;
        break;
      }
    }
    const call: FakeCall = {
      route,
      method: req.method ?? '',
      path,
      query: search.replace(/^\?/, ''),
      contentType: String(req.headers['content-type'] ?? ''),
      accept: String(req.headers.accept ?? ''),
      status: 0,
    };
    calls.push(call);
    res.on('finish', () => {
      call.status = res.statusCode;
    });
    const run = async () => {
      const fault = faults.get(route);
      if (fault) {
        if (fault.times !== undefined) {
          fault.times -= 1;
          if (fault.times <= 0) faults.delete(route);
        }
        if (fault.delayMs) await new Promise((r) => setTimeout(r, fault.delayMs));
        if (fault.status !== undefined) {
          return send(
            res,
            fault.status,
            fault.body ??
              apiError(fault.status, fault.message ?? `Injected ${fault.status}.`, fault.errorCode),
          );
        }
      }
      await handle(route, match, req, res);
    };
    run().catch((error: unknown) => {
      if (!res.headersSent) send(res, 500, apiError(500, `fake workspace failed: ${String(error)}`));
    });
  });
  if (options.postgres) await installLoginCheck(options.postgres);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    calls,
    count: (route) => (route ? calls.filter((c) => c.route === route).length : calls.length),
    resetCalls: () => {
      calls.length = 0;
    },
    setFault: (route, fault) => {
      if (fault) faults.set(route, { ...fault });
      else faults.delete(route);
    },
    clearFaults: () => faults.clear(),
    setClientSecret: (secret) => {
      clientSecret = secret;
    },
    revokeAccessTokens: () => issued.clear(),
    setAccessTokenTtl: (seconds) => {
      accessTokenTtl = seconds;
    },
    setCredentialTtl: (ms) => {
      credentialTtlMs = ms;
    },
    setNonMemberGroup(behaviour) {
      nonMemberGroup = behaviour;
    },
    minted,
    accessTokens,
    projects: options.projects,
    instances,
    setCertificate: (next) => {
      server.setSecureContext({ cert: next.cert, key: next.key });
      server.closeAllConnections();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * The role a credential of `identity` logs in as: its own role, or `group` if `identity` is a
 * member of it (directly or through other groups); undefined if that role, or the membership, does
 * not exist. Checked against the real cluster, as Lakebase checks it against its own roles.
 */
async function loginRole(
  postgres: pg.ClientBase,
  identity: string,
  group: string | undefined,
): Promise<string | undefined> {
  const { rows } = await postgres.query<{ ok: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_roles m JOIN pg_roles g ON g.rolname = $2
                     WHERE m.rolname = $1 AND pg_has_role(m.oid, g.oid, 'MEMBER')) AS ok`,
    [identity, group ?? identity],
  );
  return rows[0]?.ok ? (group ?? identity) : undefined;
}

/**
 * The roles a Provisioned credential of `identity` logs in as (its request names no group): the
 * identity's own role, and every group role it is a member of (directly or through other groups)
 * that may log in and is not a superuser; none when the identity has no role. Only a group that can
 * log in is a group the jobs could log in as, and a superuser's password is never the fake's to set.
 */
async function instanceLoginRoles(postgres: pg.ClientBase, identity: string): Promise<string[]> {
  const { rows } = await postgres.query<{ rolname: string }>(
    `SELECT g.rolname FROM pg_roles m JOIN pg_roles g
         ON g.oid = m.oid OR (g.rolcanlogin AND NOT g.rolsuper AND pg_has_role(m.oid, g.oid, 'MEMBER'))
      WHERE m.rolname = $1
      ORDER BY g.oid = m.oid DESC, g.rolname`,
    [identity],
  );
  return rows.map((r) => r.rolname);
}

/**
 * The token becomes the role's password until the credential expires, and the role is noted (in
 * this database) as minted for `identity`, so that the login check below can see whose it is.
 */
async function setPassword(
  postgres: pg.ClientBase,
  role: string,
  token: string,
  expires: Date,
  identity: string,
): Promise<void> {
  const { rows } = await postgres.query<{ sql: string }>(
    `SELECT format('ALTER ROLE %I PASSWORD %L VALID UNTIL %L', $1::text, $2::text, $3::text) AS sql`,
    [role, token, expires.toISOString()],
  );
  await postgres.query(rows[0]?.sql ?? '');
  // A per-database role setting rather than a table: the endpoints' database keeps no extra
  // relations that tests comparing its catalog would see.
  const noted = await postgres.query<{ sql: string }>(
    `SELECT format('ALTER ROLE %I IN DATABASE %I SET fake_lakebase.minted_for = %L', $1::text, current_database(), $2::text) AS sql`,
    [role, identity],
  );
  await postgres.query(noted.rows[0]?.sql ?? '');
}

/**
 * Membership is checked again at login, as Lakebase checks it (a credential is only checked at
 * login): a PostgreSQL 17 login event trigger in the endpoints' database refuses (28P01) a login as
 * a role whose current password was minted for an identity that is no longer a member of it
 * (the per-database role setting fake_lakebase.minted_for, applied before the trigger runs).
 * Roles whose password did not come from the fake (the admin, test roles) are left alone.
 */
async function installLoginCheck(postgres: pg.ClientBase): Promise<void> {
  await postgres.query(`
    CREATE SCHEMA IF NOT EXISTS fake_lakebase;
    REVOKE ALL ON SCHEMA fake_lakebase FROM PUBLIC;
    CREATE OR REPLACE FUNCTION fake_lakebase.check_login() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
    DECLARE
      minted_for text := current_setting('fake_lakebase.minted_for', true);
    BEGIN
      IF coalesce(minted_for, '') <> '' AND NOT EXISTS (
        SELECT 1 FROM pg_roles m JOIN pg_roles g ON g.rolname = session_user
         WHERE m.rolname = minted_for AND pg_has_role(m.oid, g.oid, 'MEMBER')
      ) THEN
        RAISE EXCEPTION 'password authentication failed for user "%"', session_user USING ERRCODE = '28P01';
      END IF;
    END
    $fn$;
    DO $do$
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'fake_lakebase_login') THEN
        CREATE EVENT TRIGGER fake_lakebase_login ON login EXECUTE FUNCTION fake_lakebase.check_login();
      END IF;
    END
    $do$;
  `);
}

/** A random service-principal application id (UUID), as Databricks assigns them. */
export const newApplicationId = (): string => randomUUID();
