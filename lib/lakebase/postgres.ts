// Opening one Postgres session the way every job needs it: verified TLS, bounded waits, UTC, a
// recognisable application_name, autocommit, server NOTICE/WARNING handed to the caller, and
// failures explained in one line.
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import pg from 'pg';
import { describeError, GRANTS_FIX, LakebaseError } from './errors.ts';
import type { Log } from './log.ts';
import { tlsFailureCode } from './tls.ts';

export const STATEMENT_TIMEOUT_MS = 10 * 60_000;
export const LOCK_TIMEOUT_MS = 30_000;
export const CONNECT_TIMEOUT_MS = 30_000;

/** Called with each server NOTICE or WARNING (severity as the server sends it, e.g. "NOTICE"). */
export type NoticeHandler = (severity: string, message: string) => void;

export interface SessionOptions {
  /** Shown in pg_stat_activity: name the job, e.g. `lakets-retention`. */
  applicationName: string;
  onNotice?: NoticeHandler;
}

// Set through the startup `options` so they hold from the first statement; the session time zone is
// pinned because date_bin origins and partition names must not depend on the server default.
export function sessionSettings(): string {
  return `-c statement_timeout=${STATEMENT_TIMEOUT_MS} -c lock_timeout=${LOCK_TIMEOUT_MS} -c TimeZone=UTC`;
}

function checkApplicationName(name: string): string {
  // Postgres keeps 63 bytes of printable ASCII; anything else is a caller bug worth failing loudly on.
  if (!/^[\x20-\x7e]{1,63}$/.test(name)) {
    throw new RangeError(`applicationName ${JSON.stringify(name)} must be 1-63 printable ASCII characters`);
  }
  return name;
}

export interface LakebaseTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** Extra PEM CA trusted in addition to the system roots (tests with a self-signed server). */
  extraCa?: string;
  connectTimeoutMs: number;
}

export function lakebaseClientConfig(target: LakebaseTarget, applicationName: string): pg.ClientConfig {
  return {
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database: target.database,
    ssl: {
      rejectUnauthorized: true,
      // SNI and the certificate check use the DNS name; an IP literal is checked against IP SANs.
      ...(isIP(target.host) ? {} : { servername: target.host }),
      // Giving `ca` replaces Node's trust store, so an extra CA is added to the bundled roots rather than
      // instead (NODE_EXTRA_CA_CERTS is then not consulted: the option is for tests and local clusters).
      ...(target.extraCa ? { ca: [...rootCertificates, target.extraCa] } : {}),
    },
    connectionTimeoutMillis: target.connectTimeoutMs,
    keepAlive: true,
    application_name: checkApplicationName(applicationName),
    options: sessionSettings(),
  };
}

/**
 * The direct (LAKETS_DATABASE_URL) configuration: the URL as given, except that our session settings
 * and application_name win over any in its query (pg lets URL parameters override the config).
 */
export function directClientConfig(
  databaseUrl: string,
  applicationName: string,
  connectTimeoutMs: number,
): pg.ClientConfig {
  const url = new URL(databaseUrl);
  const theirOptions = url.searchParams.get('options');
  for (const key of ['options', 'application_name', 'statement_timeout', 'lock_timeout'])
    url.searchParams.delete(key);
  return {
    connectionString: url.toString(),
    connectionTimeoutMillis: connectTimeoutMs,
    keepAlive: true,
    application_name: checkApplicationName(applicationName),
    // Later -c settings win, so theirs go first.
    options: theirOptions ? `${theirOptions} ${sessionSettings()}` : sessionSettings(),
  };
}

export interface ConnectContext {
  host: string;
  port: number | string;
  user: string;
  database: string;
  log: Log;
}

function connectError(error: unknown, ctx: ConnectContext, connectTimeoutMs: number): LakebaseError {
  const code = (error as { code?: unknown } | null)?.code;
  const where = `${ctx.host}:${ctx.port}`;
  const detail = describeError(error);
  switch (code) {
    case '28P01':
      return new LakebaseError(
        'PG_AUTH_FAILED',
        `Postgres at ${where} refused login as role "${ctx.user}" (28P01: ${detail}): the role does not exist, or is neither this identity's own Databricks OAuth role nor a group role it is a member of (LAKETS_PG_ROLE must name such a group); ${GRANTS_FIX(ctx.user)}`,
        { pgCode: code },
      );
    case '28000':
      return new LakebaseError(
        'PG_LOGIN_REJECTED',
        `Postgres at ${where} rejected role "${ctx.user}" (28000: ${detail}): the role may not log in or is not set up for this identity; ${GRANTS_FIX(ctx.user)}`,
        { pgCode: code },
      );
    case '3D000':
      return new LakebaseError(
        'PG_DATABASE_MISSING',
        `database "${ctx.database}" does not exist at ${where} (3D000): set LAKETS_DATABASE to the database holding LakeTS`,
        { pgCode: code },
      );
    case '42501':
      return new LakebaseError(
        'PG_PRIVILEGE_MISSING',
        `role "${ctx.user}" may not connect to database "${ctx.database}" at ${where} (42501: ${detail}): GRANT CONNECT ON DATABASE ${ctx.database} to it; ${GRANTS_FIX(ctx.user)}`,
        { pgCode: code },
      );
  }
  if (tlsFailureCode(error)) {
    return new LakebaseError(
      'PG_TLS',
      `the TLS certificate of Postgres at ${where} failed verification (${code}: ${detail}): check the endpoint host; never disable verification`,
    );
  }
  if (/does not support SSL/i.test(detail)) {
    return new LakebaseError(
      'PG_TLS',
      `Postgres at ${where} does not offer TLS: connect to the Lakebase endpoint host`,
    );
  }
  if (
    code === 'ECONNREFUSED' ||
    code === 'ENOTFOUND' ||
    code === 'EHOSTUNREACH' ||
    code === 'ENETUNREACH' ||
    code === 'EAI_AGAIN'
  ) {
    return new LakebaseError(
      'PG_UNREACHABLE',
      `cannot reach Postgres at ${where} (${code}): check the endpoint is running and the function's network path (VPC, security groups, NAT) to it on that port`,
    );
  }
  if (/timeout/i.test(detail) || code === 'ETIMEDOUT') {
    return new LakebaseError(
      'PG_CONNECT_TIMEOUT',
      `no answer from Postgres at ${where} within ${connectTimeoutMs >= 1000 ? `${Math.round(connectTimeoutMs / 1000)} s` : `${connectTimeoutMs} ms`} (${detail}): check the function's network path to it; a suspended endpoint normally wakes within seconds`,
    );
  }
  return new LakebaseError(
    'PG_CONNECT_FAILED',
    `connecting to Postgres at ${where} as "${ctx.user}" failed: ${detail}`,
    {
      ...(typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? { pgCode: code } : {}),
    },
  );
}

/** Connects a client built from `config`; NOTICE/WARNING go to onNotice (or the log when none). */
export async function openClient(
  config: pg.ClientConfig,
  session: SessionOptions,
  ctx: ConnectContext,
): Promise<pg.Client> {
  const client = new pg.Client(config);
  client.on('notice', (notice) => {
    const severity = notice.severity ?? 'NOTICE';
    const message = notice.message ?? '';
    if (session.onNotice) session.onNotice(severity, message);
    else ctx.log.info('postgres notice', { severity, message });
  });
  // An idle connection dropped by the server emits 'error'; without a listener that would crash the
  // process. The next query on this client fails with the reason anyway.
  client.on('error', (error) => ctx.log.warn('postgres connection error', { error: describeError(error) }));
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    throw connectError(error, ctx, config.connectionTimeoutMillis ?? CONNECT_TIMEOUT_MS);
  }
  return client;
}
