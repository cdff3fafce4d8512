// The SQL an admin runs so that the jobs' Postgres role can do what the four jobs do, as data (tests
// apply it) and as a printable script (`npm run grants -- <role>`). Role names are validated and
// quoted as identifiers, so a hostile name is just a name that does not exist.

export class GrantsError extends Error {
  override name = 'GrantsError';
}

export interface GrantStatement {
  /** Why the jobs need it (printed as a comment). */
  purpose: string;
  sql: string;
}

/** Postgres identifier quoting: wrap in double quotes, double any inside. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Checks a role name before it goes into SQL; returns it unchanged. */
export function validateRole(role: string, what = 'role'): string {
  if (role.trim() === '')
    throw new GrantsError(
      `the ${what} name is empty: pass the Postgres role, e.g. the service principal's application id`,
    );
  if (Buffer.byteLength(role, 'utf8') > 63)
    throw new GrantsError(
      `the ${what} name is longer than 63 bytes: Postgres would truncate it; pass the exact role name`,
    );
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(role))
    throw new GrantsError(`the ${what} name contains control characters: pass the exact role name`);
  if (/^(public|current_user|session_user|current_role|none)$/i.test(role) || /^pg_/i.test(role)) {
    throw new GrantsError(`"${role}" is a reserved role name: pass the role the jobs log in as`);
  }
  return role;
}

/** A dollar-quote tag that does not occur in `body` (a role name may contain `$$`). */
function dollarTag(body: string): string {
  let tag = '$grants$';
  for (let i = 1; body.includes(tag); i += 1) tag = `$grants${i}$`;
  return tag;
}

function doBlock(body: string): string {
  const tag = dollarTag(body);
  return `DO ${tag}\nBEGIN\n${body}\nEND\n${tag};`;
}

export interface GrantOptions {
  /** Role owning the LakeTS tables: granting it lets the jobs create and drop partitions. */
  owner?: string;
}

export function grantStatements(role: string, options: GrantOptions = {}): GrantStatement[] {
  const r = quoteIdentifier(validateRole(role));
  const statements: GrantStatement[] = [
    {
      purpose: 'use the LakeTS schemas; CREATE lets the Partition Manager add partitions',
      sql: `GRANT USAGE, CREATE ON SCHEMA public, lakets TO ${r};`,
    },
    {
      purpose: 'read and maintain the registries and ChronoTables',
      sql: `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, lakets TO ${r};`,
    },
    {
      purpose: 'serial ids of registry rows (e.g. new chunks in _chunk_metadata)',
      sql: `GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public, lakets TO ${r};`,
    },
    {
      purpose: '_ensure_partitions, tier_chunk, execute_retention, refresh_rollup_cascade and friends',
      sql: `GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lakets TO ${r};`,
    },
    {
      purpose: 'tables and sequences created later by the role running this (new partitions, RollUp tables)',
      sql: `ALTER DEFAULT PRIVILEGES IN SCHEMA public, lakets GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${r};\nALTER DEFAULT PRIVILEGES IN SCHEMA public, lakets GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO ${r};`,
    },
    {
      purpose: 'shadow tables of synced ChronoTables (schema made by enable_sync; skipped until it exists)',
      sql: doBlock(
        [
          "  IF EXISTS (SELECT FROM pg_namespace WHERE nspname = 'lakets_cdf') THEN",
          `    GRANT USAGE ON SCHEMA lakets_cdf TO ${r};`,
          '  ELSE',
          "    RAISE NOTICE 'schema lakets_cdf does not exist yet: skipped; run npm run grants again after enable_sync';",
          '  END IF;',
        ].join('\n'),
      ),
    },
    {
      purpose:
        'Lakehouse Sync progress for the durability gate of Tiering and Retention (skipped until sync exists)',
      sql: doBlock(
        [
          "  IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'wal2delta') THEN",
          "    RAISE NOTICE 'schema wal2delta does not exist yet (Lakehouse Sync creates it): skipped; run npm run grants again after enabling sync';",
          "  ELSIF to_regclass('wal2delta.tables') IS NULL THEN",
          `    GRANT USAGE ON SCHEMA wal2delta TO ${r};`,
          "    RAISE NOTICE 'table wal2delta.tables does not exist yet: granted USAGE on the schema only; run npm run grants again later';",
          '  ELSE',
          `    GRANT USAGE ON SCHEMA wal2delta TO ${r};`,
          `    GRANT SELECT ON wal2delta.tables TO ${r};`,
          '  END IF;',
        ].join('\n'),
      ),
    },
  ];
  if (options.owner !== undefined) {
    statements.push({
      purpose:
        'creating and dropping partitions needs ownership of the ChronoTables: membership of their owner',
      sql: `GRANT ${quoteIdentifier(validateRole(options.owner, 'owner'))} TO ${r};`,
    });
  }
  return statements;
}

/** The printable script: a header on what to run first, then each statement with its purpose. */
export function grantsScript(role: string, options: GrantOptions = {}): string {
  const statements = grantStatements(role, options);
  const lines = [
    `-- LakeTS Jobs for AWS: privileges of Postgres role ${quoteIdentifier(role)} (from npm run grants).`,
    '-- Run as a Lakebase admin (the project owner, or a member of databricks_superuser), connected to the',
    '-- database holding LakeTS (LAKETS_DATABASE, default databricks_postgres). Safe to run again.',
    '--',
    '-- The role must exist first. For a service principal logging in with OAuth credentials:',
    '--   CREATE EXTENSION IF NOT EXISTS databricks_auth;',
    `--   SELECT databricks_create_role(${sqlLiteral(role)}, 'SERVICE_PRINCIPAL');`,
    '-- (or Lakebase app: Roles & Databases > Add role > OAuth, pick the service principal).',
    '',
  ];
  for (const s of statements) lines.push(`-- ${s.purpose}`, s.sql, '');
  if (options.owner === undefined) {
    lines.push(
      '-- Creating a partition (CREATE TABLE ... PARTITION OF) and dropping one need ownership of the',
      "-- tables, which no GRANT gives. This project's LakeTS-compatible schema does both in SECURITY",
      '-- DEFINER functions owned by its installer, so nothing more is needed with it. With a LakeTS whose',
      '-- functions run as the caller, also make this role a member of the role owning the ChronoTables',
      '-- (npm run grants -- <role> --owner <owner role>):',
      `--   GRANT "<owner role>" TO ${quoteIdentifier(role)};`,
      '',
    );
  }
  return `${lines.join('\n')}\n`.replace(/\n{3,}/g, '\n\n');
}

function sqlLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
