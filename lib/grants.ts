// The SQL an admin runs so that the jobs' Postgres role can do what the four jobs do, as data (tests
// apply it) and as a printable script (`npm run grants -- <role>`). Role names are validated and
// quoted as identifiers, so a hostile name is just a name that does not exist.
import { identifierProblem, quoteIdentifier } from './identifier.ts';
import { OWNED_RELATIONS_SQL, PRIVILEGED_OWNER_SQL } from './jobs/owners.ts';
import { neededSchemas } from './jobs/schemas.ts';
import type { SqlClient } from './queryable.ts';

export class GrantsError extends Error {
  override name = 'GrantsError';
}

export interface GrantStatement {
  /** Why the jobs need it (printed as a comment). */
  purpose: string;
  sql: string;
}

/** Checks a role name before it goes into SQL; returns it unchanged. */
export function validateRole(role: string, what = 'role'): string {
  if (role.trim() === '')
    throw new GrantsError(
      `the ${what} name is empty: pass the Postgres role, e.g. the service principal's application id`,
    );
  const problem = identifierProblem(role);
  if (problem === 'too long')
    throw new GrantsError(
      `the ${what} name is longer than 63 bytes: Postgres would truncate it; pass the exact role name`,
    );
  if (problem === 'control characters')
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
      sql: `GRANT ${quoteIdentifier(validateRole(options.owner, 'owner'))} TO ${r} WITH INHERIT TRUE, SET FALSE;`,
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
      `--   GRANT "<owner role>" TO ${quoteIdentifier(role)} WITH INHERIT TRUE, SET FALSE;`,
      '',
    );
  }
  return `${lines.join('\n')}\n`.replace(/\n{3,}/g, '\n\n');
}

function sqlLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

// ---------------------------------------------------------------------------------------------
// Reading the database: what the installed LakeTS and its objects need beyond the seed's list.
// ---------------------------------------------------------------------------------------------

/** The part of pg.Client the grants need (an admin connection). */
export type AdminClient = SqlClient;

export interface GrantPlan {
  role: string;
  database: string;
  /** True when the installed LakeTS creates and drops partitions with the caller's rights. */
  callerRights: boolean;
  /** How that was decided, in one line. */
  rightsReason: string;
  /** Statements to run, each with why. */
  statements: GrantStatement[];
  /** What this admin cannot or should not grant, each with exactly what to run instead. */
  manual: GrantStatement[];
}

// Partition DDL happens in _ensure_partitions (Partition Manager) and behind execute_retention:
// with definer rights (the compatible schema) the function's owner needs the ownership; with the
// caller's (the public LakeTS 0.1.3) the job role does.
const DDL_FUNCTIONS = ['_ensure_partitions', 'execute_retention'];

type OwnerRow = {
  owner: string;
  super: boolean;
  is_role: boolean;
  inherits: boolean;
  can_grant: boolean;
  tables: string[];
};

/**
 * Reads the database as an admin and plans the grants `role` needs there: the seed's list, CONNECT
 * on this database, USAGE on every schema holding a ChronoTable, a RollUp, a RollUp source or a
 * shadow, SELECT on RollUp sources and writes on RollUp tables, and — when the installed LakeTS runs
 * partition DDL with the caller's rights — membership in each role owning the ChronoTables or their
 * live partitions.
 */
export async function planGrants(
  admin: AdminClient,
  role: string,
  options: GrantOptions = {},
): Promise<GrantPlan> {
  const r = quoteIdentifier(validateRole(role));
  const head = await admin.query<{ database: string; exists: boolean; lakets: boolean }>(
    `SELECT current_database() AS database,
            EXISTS (SELECT FROM pg_roles WHERE rolname = $1) AS exists,
            EXISTS (SELECT FROM pg_namespace WHERE nspname = 'lakets') AS lakets`,
    [role],
  );
  const { database, exists, lakets } = head.rows[0] as { database: string; exists: boolean; lakets: boolean };
  if (!exists) {
    throw new GrantsError(
      `role ${quoteIdentifier(role)} does not exist in this cluster: create it first (SELECT databricks_create_role(${sqlLiteral(role)}, 'SERVICE_PRINCIPAL');), then run this again`,
    );
  }
  if (!lakets)
    throw new GrantsError(`database ${quoteIdentifier(database)} has no schema lakets: install LakeTS first`);

  const statements: GrantStatement[] = [
    {
      purpose: 'log in to the database holding LakeTS',
      sql: `GRANT CONNECT ON DATABASE ${quoteIdentifier(database)} TO ${r};`,
    },
    // --owner belongs to the printed list only: here the owners are read from the database below,
    // where a privileged owner is refused rather than granted.
    ...grantStatements(role, { ...options, owner: undefined }),
  ];
  const manual: GrantStatement[] = [];

  const rights = await admin.query<{ proname: string; definer: boolean }>(
    `SELECT p.proname, bool_or(p.prosecdef) AS definer FROM pg_proc p
      WHERE p.pronamespace = 'lakets'::regnamespace AND p.proname = ANY ($1::text[]) GROUP BY p.proname`,
    [DDL_FUNCTIONS],
  );
  const partitionFn = rights.rows.find((x) => x.proname === '_ensure_partitions');
  const callerRights = partitionFn !== undefined && !partitionFn.definer;
  const rightsReason =
    partitionFn === undefined
      ? 'lakets._ensure_partitions is missing: cannot tell how LakeTS runs partition DDL'
      : callerRights
        ? "lakets._ensure_partitions is not SECURITY DEFINER: LakeTS creates and drops partitions with the caller's rights, so the job role must own the ChronoTables (membership of their owner role)"
        : "lakets._ensure_partitions is SECURITY DEFINER: partitions are created and dropped with its owner's rights, so no ownership is needed";

  // Schemas holding ChronoTables, RollUp tables, RollUp sources and shadows: the same list the
  // preflight check reads (public, lakets and lakets_cdf are in the generic statements above).
  for (const s of await neededSchemas(admin)) {
    if (!s.exists || ['public', 'lakets', 'lakets_cdf'].includes(s.name)) continue;
    // With the caller's rights the job role creates the partitions, in the ChronoTable's schema.
    const create = callerRights && s.chronoTables;
    statements.push({
      purpose: `schema ${quoteIdentifier(s.name)} holds ${truncateList(s.holds)}${create ? "; CREATE: partitions are created there with the caller's rights" : ''}`,
      sql: `GRANT USAGE${create ? ', CREATE' : ''} ON SCHEMA ${quoteIdentifier(s.name)} TO ${r};`,
    });
  }
  const rollups = await admin.query<{ name: string; rollup_table: string | null; source: string | null }>(
    `SELECT rr.name, CASE WHEN c.oid IS NOT NULL THEN format('%I.%I', n.nspname, c.relname) END AS rollup_table,
            (SELECT format('%I.%I', ct.schema_name, ct.table_name) FROM lakets._chronotable_registry ct
              WHERE ct.id = rr.source_chronotable_id) AS source
       FROM lakets._rollup_registry rr LEFT JOIN pg_class c ON c.oid = to_regclass(rr.rollup_table)
       LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
      ORDER BY rr.name`,
  );
  for (const x of rollups.rows) {
    if (x.source && !/^public\./.test(x.source)) {
      statements.push({
        purpose: `RollUp ${x.name} reads its source`,
        sql: `GRANT SELECT ON ${x.source} TO ${r};`,
      });
    }
    if (x.rollup_table && !/^(public|lakets)\./.test(x.rollup_table)) {
      statements.push({
        purpose: `RollUp ${x.name} rewrites its buckets`,
        sql: `GRANT SELECT, INSERT, UPDATE, DELETE ON ${x.rollup_table} TO ${r};`,
      });
    }
  }

  if (callerRights) {
    const owners = await admin.query<OwnerRow>(
      `WITH rels AS (${OWNED_RELATIONS_SQL})
       SELECT a.rolname AS owner, ${PRIVILEGED_OWNER_SQL} AS super, a.rolname = $1 AS is_role,
              pg_has_role($1, a.oid, 'USAGE') AS inherits,
              pg_has_role(current_user, a.oid, 'MEMBER WITH ADMIN OPTION') AS can_grant,
              array_agg(DISTINCT rels.name ORDER BY rels.name) AS tables
         FROM rels JOIN pg_roles a ON a.oid = rels.relowner
        GROUP BY a.rolname, a.rolsuper, a.oid ORDER BY a.rolname`,
      [role],
    );
    for (const o of owners.rows) {
      const owner = quoteIdentifier(o.owner);
      const owned = truncateList(o.tables.join(', '));
      const purpose = `partition DDL runs with the caller's rights: ${owner} owns ${owned}`;
      if (o.is_role) continue;
      if (o.super) {
        manual.push({
          purpose: `${purpose}; ${owner} is a superuser or a member of one (or of databricks_superuser), and membership of it would pass those privileges on to ${r}, so it is not granted. Move the ownership to a dedicated role instead, then run npm run grants again`,
          sql: [
            'CREATE ROLE lakets_owner NOLOGIN;',
            ...o.tables.map((t) => `ALTER TABLE ${t} OWNER TO lakets_owner;`),
            `GRANT lakets_owner TO ${r} WITH INHERIT TRUE, SET FALSE;`,
          ].join('\n'),
        });
      } else if (o.inherits) {
        statements.push({
          purpose: `${purpose}; ${r} already has its privileges (granted again, harmlessly)`,
          sql: `GRANT ${owner} TO ${r} WITH INHERIT TRUE, SET FALSE;`,
        });
      } else if (!o.can_grant) {
        manual.push({
          purpose: `${purpose}; this admin (current_user) has no ADMIN OPTION on ${owner}, so it cannot grant it. A superuser, or a role with ADMIN OPTION on ${owner}, runs`,
          sql: `GRANT ${owner} TO ${r} WITH INHERIT TRUE, SET FALSE;`,
        });
      } else {
        statements.push({
          purpose: `${purpose}; membership (inherited, no SET ROLE) gives that ownership`,
          sql: `GRANT ${owner} TO ${r} WITH INHERIT TRUE, SET FALSE;`,
        });
      }
    }
  }
  return { role, database, callerRights, rightsReason, statements, manual };
}

function truncateList(text: string): string {
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}

export interface AppliedGrants {
  plan: GrantPlan;
  /** What happened, one entry per statement, for printing. */
  lines: string[];
  /** Server notices (e.g. a part skipped until Lakehouse Sync exists). */
  notices: string[];
}

/** Plans and runs the grants (each statement is idempotent); returns what was done and why. */
export async function applyGrants(
  admin: AdminClient & {
    on(e: 'notice', l: (n: { message?: string }) => void): unknown;
    off(e: 'notice', l: (n: { message?: string }) => void): unknown;
  },
  role: string,
  options: GrantOptions = {},
): Promise<AppliedGrants> {
  const plan = await planGrants(admin, role, options);
  const notices: string[] = [];
  const listener = (n: { message?: string }) => {
    if (n.message) notices.push(n.message);
  };
  admin.on('notice', listener);
  try {
    for (const s of plan.statements) await admin.query(s.sql);
  } finally {
    admin.off('notice', listener);
  }
  return { plan, lines: describePlan(plan, 'done'), notices };
}

/** The plan as printable lines: what was (or would be) run, why, and what is left to an admin. */
export function describePlan(plan: GrantPlan, verb: 'done' | 'to run'): string[] {
  const lines = [
    `-- Grants for role ${quoteIdentifier(plan.role)} in database ${quoteIdentifier(plan.database)}.`,
    `-- ${plan.rightsReason}.`,
    '',
  ];
  for (const s of plan.statements) lines.push(`-- ${verb}: ${s.purpose}`, s.sql, '');
  if (plan.manual.length > 0) {
    lines.push(`-- NOT DONE (${plan.manual.length}): run these yourself, as explained:`);
    for (const s of plan.manual) lines.push(`-- ${s.purpose}:`, s.sql, '');
  }
  return lines;
}
