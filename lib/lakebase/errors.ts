// One error class for everything that can go wrong between a handler and a Lakebase session, with a
// stable `code` for handlers and alarms, and a one-line message that says what to do. Messages pass
// through redact(): tokens, client secrets and passwords never reach a log line through an error.
import { oneLine } from '../one-line.ts';

export type LakebaseErrorCode =
  // Secrets Manager
  | 'SECRET_NOT_FOUND'
  | 'SECRET_ACCESS_DENIED'
  | 'SECRET_INVALID'
  | 'SECRET_UNAVAILABLE'
  // Any HTTPS request (Databricks, OAuth, Secrets Manager): the server certificate failed verification
  | 'TLS_UNTRUSTED'
  // Databricks OAuth and REST
  | 'OAUTH_INVALID_CLIENT'
  | 'OAUTH_FAILED'
  | 'DATABRICKS_UNAUTHENTICATED'
  | 'DATABRICKS_PERMISSION_DENIED'
  | 'DATABRICKS_REQUEST_FAILED'
  | 'DATABRICKS_UNAVAILABLE'
  | 'DATABRICKS_UNREACHABLE'
  // Endpoint resolution
  | 'PROJECT_NOT_FOUND'
  | 'BRANCH_NOT_FOUND'
  | 'ENDPOINT_NOT_FOUND'
  | 'NO_DEFAULT_BRANCH'
  | 'NO_READ_WRITE_ENDPOINT'
  | 'ENDPOINT_NOT_READY'
  // Lakebase Provisioned instance (LAKETS_LAKEBASE_INSTANCE)
  | 'INSTANCE_NOT_FOUND'
  | 'INSTANCE_STOPPED'
  | 'INSTANCE_DELETING'
  | 'INSTANCE_NOT_READY'
  // Postgres
  | 'PG_AUTH_FAILED'
  | 'PG_LOGIN_REJECTED'
  | 'PG_DATABASE_MISSING'
  | 'PG_PRIVILEGE_MISSING'
  | 'PG_UNREACHABLE'
  | 'PG_CONNECT_TIMEOUT'
  | 'PG_TLS'
  | 'PG_CONNECT_FAILED';

export interface LakebaseErrorDetails {
  /** HTTP status of the Databricks answer that caused it. */
  status?: number;
  /** SQLSTATE of the Postgres error that caused it. */
  pgCode?: string;
}

export class LakebaseError extends Error {
  override name = 'LakebaseError';
  readonly code: LakebaseErrorCode;
  readonly status?: number;
  readonly pgCode?: string;
  // No `cause`: upstream errors can carry request headers or response bodies; what matters from
  // them is copied, redacted, into the message and the fields above.
  constructor(code: LakebaseErrorCode, message: string, details: LakebaseErrorDetails = {}) {
    super(oneLine(redact(message)));
    this.code = code;
    if (details.status !== undefined) this.status = details.status;
    if (details.pgCode !== undefined) this.pgCode = details.pgCode;
  }
}

// Values this process knows to be secret, replaced wherever they appear: the client secret for the
// container's life, minted Postgres tokens bounded (a warm container mints about one an hour).
const pinned = new Set<string>();
const known = new Set<string>();
const MAX_KNOWN = 64;
const MIN_SECRET_LENGTH = 8; // shorter strings would blank out ordinary words

/** Registers a secret value so that redact() removes it from any text; `pin` keeps it for good. */
export function registerSecret(value: string, { pin = false }: { pin?: boolean } = {}): void {
  if (value.length < MIN_SECRET_LENGTH || pinned.has(value)) return;
  if (pin) {
    known.delete(value);
    pinned.add(value);
    return;
  }
  if (known.has(value)) return;
  known.add(value);
  if (known.size > MAX_KNOWN) {
    const oldest = known.values().next().value;
    if (oldest !== undefined) known.delete(oldest);
  }
}

// Shapes of credentials even when we never saw the value (e.g. an OAuth token inside the SDK).
const PATTERNS: Array<[RegExp, string]> = [
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, '$1 ***'],
  [/\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g, '***'], // JWT
  [/\b(dapi|dose|dkea)[0-9a-f]{16,}(-\d+)?/gi, '***'], // Databricks PATs and OAuth secrets
  [/(postgres(?:ql)?:\/\/[^:/@\s]*:)[^@\s]*@/gi, '$1***@'], // password in a connection URL
  // JSON-ish "client_secret": "value" (a "<placeholder>" in a hint is left alone)
  [/("?(?:client_secret|access_token|password|token)"?\s*[:=]\s*)"(?!<[^">]*>")[^"]*"/gi, '$1"***"'],
];

/** Removes known secrets and anything shaped like a credential from `text`. */
export function redact(text: string): string {
  let out = text;
  for (const secret of [...pinned, ...known]) {
    if (out.includes(secret)) out = out.split(secret).join('***');
  }
  for (const [pattern, replacement] of PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

/** The message of any thrown value, redacted and on one line. */
export function describeError(error: unknown): string {
  const text = error instanceof Error ? error.message || error.name : String(error);
  return oneLine(redact(text));
}

export const GRANTS_FIX = (role: string) =>
  `an admin runs \`npm run grants -- ${role}\` and the docs/operations.md "Service principal, secret and Postgres role" steps`;

/** A Postgres error from a query, explained when it is a missing privilege (42501); anything else as it was. */
export function explainPostgresError(error: unknown, role: string): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === '42501') {
    // The server message names the object, e.g. `permission denied for table metrics`.
    return new LakebaseError(
      'PG_PRIVILEGE_MISSING',
      // "(SQLSTATE 42501)" as every other Postgres error line has it: what an operator searches for.
      `role "${role}" lacks a privilege: ${describeError(error)} (SQLSTATE 42501): ${GRANTS_FIX(role)}`,
      { pgCode: '42501' },
    );
  }
  return error;
}
