// The preflight check's built-in steps, in the order preflight() runs them: each reads the catalogs
// (pg_namespace, pg_class, pg_proc), never probing through to_regclass, which raises without schema
// USAGE, and adds its items with the fix for what fails. A job's own checks (JobNeeds.checks) run after.
import { quoteIdentifier as q } from '../identifier.ts';
import type { CheckedJob, JobNeeds, PreflightContext, PreflightStep } from './needs.ts';
import { OWNED_RELATIONS_SQL, PRIVILEGED_OWNER_SQL } from './owners.ts';
import { neededSchemas } from './schemas.ts';

/** What the built-in steps get besides a job check's context: who is connected, and what is needed. */
export interface CheckContext extends PreflightContext {
  role: string;
  database: string;
  /** The connection is encrypted, with this protocol version. */
  ssl: { on: boolean; version: string | null };
  tlsRequired: boolean;
  jobs: readonly CheckedJob[];
  /** Whether any of the jobs has this need. */
  needs: (flag: 'chronoTables' | 'createsPartitions' | 'partitionDdl' | 'syncState' | 'rollups') => boolean;
  /** The usual fix: what an admin runs so this role gets what the jobs need. */
  grants: string;
}

type Step = PreflightStep<CheckContext>;

const tls: Step = {
  name: 'tls',
  run: async ({ add, ssl, tlsRequired }) => {
    if (ssl.on)
      add(
        'tls',
        'pass',
        tlsRequired
          ? `encrypted (${ssl.version ?? 'TLS'}), server certificate verified by the client`
          : `encrypted (${ssl.version ?? 'TLS'}); how the certificate is checked depends on the connection string`,
      );
    else
      add(
        'tls',
        tlsRequired ? 'fail' : 'warn',
        'the connection is not encrypted',
        'connect to the Lakebase endpoint host: it requires TLS, and the jobs verify its certificate',
      );
  },
};

/** LakeTS itself: the schema and USAGE on it; without either nothing else can be checked. */
const laketsSchema: Step = {
  name: 'schema usage: lakets',
  run: async ({ db, add, database, grants }) => {
    const { rows } = await db.query<{ exists: boolean; usage: boolean | null }>(
      `SELECT count(*) > 0 AS exists, bool_or(has_schema_privilege(n.oid, 'USAGE')) AS usage
         FROM pg_namespace n WHERE n.nspname = 'lakets'`,
    );
    if (!rows[0]?.exists) {
      add(
        'lakets version',
        'fail',
        `database ${q(database)} has no schema lakets`,
        'install LakeTS, or point the jobs at the database holding it (LAKETS_DATABASE)',
      );
      return 'stop';
    }
    if (!rows[0].usage) {
      add(
        'schema usage: lakets',
        'fail',
        'no USAGE on schema lakets: no registry or function can be reached',
        grants,
      );
      return 'stop';
    }
    add('schema usage: lakets', 'pass', 'USAGE on schema lakets');
  },
};

/** Which build of LakeTS: this project's compatible schema records its migrations (with a flavor column). */
const laketsVersion: Step = {
  name: 'lakets version',
  run: async ({ db, add }) => {
    const v = await db.query<{ readable: boolean | null; table: boolean }>(
      `SELECT c.oid IS NOT NULL AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'flavor') AS table,
              has_table_privilege(c.oid, 'SELECT') AS readable
         FROM (SELECT 1) one LEFT JOIN pg_class c ON c.relname = '_version' AND c.relnamespace = 'lakets'::regnamespace`,
    );
    const row = v.rows[0];
    if (!row?.table || !row.readable) {
      add(
        'lakets version',
        'pass',
        row?.table
          ? 'the LakeTS-compatible schema (lakets._version not readable by this role); its functions are checked below'
          : "a LakeTS other than this project's compatible schema (the public LakeTS 0.1.x, say); its functions are checked below",
      );
      return;
    }
    const { rows } = await db.query<{ lakets_version: string; migrations: string }>(
      `SELECT max(lakets_version) AS lakets_version, string_agg(version, ', ' ORDER BY version) AS migrations FROM lakets._version`,
    );
    const r = rows[0];
    add(
      'lakets version',
      r?.migrations.includes('0003_chunk_grid') ? 'pass' : 'warn',
      `LakeTS-compatible schema ${r?.lakets_version ?? '?'} (${r?.migrations ?? ''})`,
      "run npm run lakets:install to apply 0003_chunk_grid (keeps a ChronoTable's existing chunk grid)",
    );
  },
};

/** EXECUTE on each function the jobs call, with the contract's signature. */
const functions: Step = {
  name: 'execute',
  run: async ({ db, add, jobs, grants }) => {
    const wanted = [...new Map(jobs.flatMap((j) => j.needs.functions).map((f) => [f.join('|'), f])).values()];
    const fns = await db.query<{ proname: string; args: string; execute: boolean }>(
      `SELECT p.proname, oidvectortypes(p.proargtypes) AS args, has_function_privilege(p.oid, 'EXECUTE') AS execute
         FROM pg_proc p WHERE p.pronamespace = 'lakets'::regnamespace AND p.proname = ANY ($1::text[])`,
      [wanted.map(([name]) => name)],
    );
    for (const [name, args] of wanted) {
      const fn = fns.rows.find((f) => f.proname === name && f.args === args);
      const check = `execute: lakets.${name}(${args})`;
      if (!fn) {
        const other = fns.rows.find((f) => f.proname === name);
        add(
          check,
          'fail',
          other
            ? `lakets.${name} takes (${other.args}), not the contract's arguments`
            : `lakets.${name} does not exist`,
          'install a LakeTS 0.1.x (npm run lakets:install for the compatible schema)',
        );
      } else
        add(
          check,
          fn.execute ? 'pass' : 'fail',
          fn.execute ? 'EXECUTE granted' : `no EXECUTE on lakets.${name}`,
          grants,
        );
    }
  },
};

/** Registry privileges; without reading the ChronoTable registry nothing below can be known. */
const registries: Step = {
  name: 'registry',
  run: async ({ db, add, jobs, grants }) => {
    const tables = new Map<string, Set<string>>();
    for (const [t, privs] of jobs.flatMap((j): JobNeeds['tables'] => j.needs.tables))
      for (const p of privs) (tables.get(t) ?? tables.set(t, new Set()).get(t))?.add(p);
    let blind = false;
    for (const [table, privs] of tables) {
      const { rows } = await db.query<{ missing: string[] | null; exists: boolean }>(
        `SELECT c.oid IS NOT NULL AS exists,
                (SELECT array_agg(p ORDER BY p) FROM unnest($2::text[]) p WHERE NOT has_table_privilege(c.oid, p)) AS missing
           FROM (SELECT 1) one LEFT JOIN pg_class c ON c.relname = $1 AND c.relnamespace = 'lakets'::regnamespace`,
        [table, [...privs]],
      );
      const r = rows[0];
      const check = `registry: lakets.${table}`;
      if (!r?.exists) add(check, 'fail', `lakets.${table} does not exist`, 'install a LakeTS 0.1.x');
      else if (r.missing?.length)
        add(check, 'fail', `missing ${r.missing.join(', ')} on lakets.${table}`, grants);
      else add(check, 'pass', `${[...privs].join(', ')} on lakets.${table}`);
      if (table === '_chronotable_registry' && !(r?.exists && !r.missing?.length)) blind = true;
    }
    return blind ? 'stop' : undefined;
  },
};

/**
 * USAGE on each schema holding ChronoTables (and, for RollUp Refresh, RollUp tables and sources; for
 * the durability gate, the shadows); CREATE where LakeTS creates partitions with the caller's rights.
 */
const schemaUsage: Step = {
  name: 'schema usage',
  run: async ({ db, add, needs, callerRights, role, grants }) => {
    const schemas = await neededSchemas(db, {
      chronoTables: needs('chronoTables'),
      shadows: needs('syncState'),
      rollups: needs('rollups'),
    });
    for (const s of schemas) {
      const check = `schema usage: ${s.name}`;
      const holds = s.holds.length > 160 ? `${s.holds.slice(0, 157)}...` : s.holds;
      if (!s.exists)
        add(
          check,
          'fail',
          `schema ${q(s.name)} is registered (${holds}) but does not exist`,
          'fix the LakeTS registries',
        );
      else if (!s.usage)
        add(
          check,
          'fail',
          `no USAGE on schema ${q(s.name)}, which holds ${holds}`,
          `${grants}; or GRANT USAGE ON SCHEMA ${q(s.name)} TO ${q(role)};`,
        );
      else if (callerRights && needs('createsPartitions') && s.chronoTables && !s.create)
        add(
          check,
          'fail',
          `no CREATE on schema ${q(s.name)}: LakeTS creates partitions there with the caller's rights`,
          `${grants}; or GRANT CREATE ON SCHEMA ${q(s.name)} TO ${q(role)};`,
        );
      else add(check, 'pass', `USAGE on schema ${q(s.name)} (${holds})`);
    }
  },
};

/** With the caller's rights, the job role needs the privileges of each ChronoTable's owner. */
const partitionOwnership: Step = {
  name: 'partition ownership',
  run: async ({ db, add, needs, callerRights, role, grants }) => {
    if (!needs('partitionDdl')) return;
    if (!callerRights) {
      add(
        'partition ownership',
        'pass',
        "lakets._ensure_partitions is SECURITY DEFINER: partitions are created and dropped with its owner's rights",
      );
      return;
    }
    // The ChronoTables and their live partitions whose owner's privileges this role lacks.
    const { rows } = await db.query<{ owner: string; super: boolean; tables: string[] }>(
      `WITH rels AS (${OWNED_RELATIONS_SQL})
       SELECT a.rolname AS owner, ${PRIVILEGED_OWNER_SQL} AS super, array_agg(DISTINCT rels.name ORDER BY rels.name) AS tables
         FROM rels JOIN pg_roles a ON a.oid = rels.relowner
        WHERE NOT pg_has_role(rels.relowner, 'USAGE')
        GROUP BY a.rolname, a.rolsuper, a.oid ORDER BY a.rolname`,
    );
    if (rows.length === 0)
      add(
        'partition ownership',
        'pass',
        "LakeTS runs partition DDL with the caller's rights, and this role has the privileges of every ChronoTable's owner",
      );
    for (const r of rows) {
      const list =
        r.tables.slice(0, 5).join(', ') + (r.tables.length > 5 ? ` and ${r.tables.length - 5} more` : '');
      add(
        `partition ownership: ${r.owner}`,
        'fail',
        `LakeTS creates and drops partitions with the caller's rights, and ${q(r.owner)} owns ${list}: this role is not a member of it`,
        r.super
          ? `${q(r.owner)} is a superuser or a member of one (or of databricks_superuser), and membership of it would pass those privileges on to this role: move the ownership of these tables to a dedicated role (npm run grants prints the statements), then grant that role`
          : `${grants}; or GRANT ${q(r.owner)} TO ${q(role)} WITH INHERIT TRUE, SET FALSE;`,
      );
    }
  },
};

const UNPROVEN = 'until then nothing is proven durable, so nothing is tiered or dropped behind the gate';

/** Lakehouse Sync's state (the durability gate of Tiering and Retention): readable, and each shadow's status. */
const syncState: Step = {
  name: 'lakehouse sync state',
  run: async ({ db, add, needs, role, grants }) => {
    if (!needs('syncState')) return;
    const shadows = await db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM lakets._chronotable_registry WHERE shadow_table_name IS NOT NULL',
    );
    if ((shadows.rows[0]?.n ?? 0) === 0) {
      add('lakehouse sync state', 'pass', 'no ChronoTable is synced: nothing to read');
      return;
    }
    const access = await db.query<{
      schema: boolean;
      usage: boolean | null;
      table: boolean;
      readable: boolean | null;
    }>(
      `SELECT n.oid IS NOT NULL AS schema, has_schema_privilege(n.oid, 'USAGE') AS usage,
              c.oid IS NOT NULL AS table, has_table_privilege(c.oid, 'SELECT') AS readable
         FROM (SELECT 1) one
         LEFT JOIN pg_namespace n ON n.nspname = 'wal2delta'
         LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = 'tables'`,
    );
    const a = access.rows[0];
    if (!a?.schema || !a.table) {
      add(
        'lakehouse sync state',
        'warn',
        `wal2delta.tables does not exist: Lakehouse Sync is not set up; ${UNPROVEN}`,
        'enable Lakehouse Sync for the shadows, then run npm run grants again',
      );
      return;
    }
    if (!a.usage || !a.readable) {
      add(
        'lakehouse sync state',
        'fail',
        `${a.usage ? 'no SELECT on wal2delta.tables' : 'no USAGE on schema wal2delta'}: Tiering and Retention cannot read Lakehouse Sync's progress; ${UNPROVEN}`,
        `${grants}; or GRANT USAGE ON SCHEMA wal2delta TO ${q(role)}; GRANT SELECT ON wal2delta.tables TO ${q(role)};`,
      );
      return;
    }
    add('lakehouse sync state', 'pass', 'wal2delta.tables is readable');
    const { rows } = await db.query<{ shadow: string; found: boolean; status: string | null }>(
      `SELECT format('lakets_cdf.%I', r.shadow_table_name) AS shadow, c.oid IS NOT NULL AS found, t.status
         FROM lakets._chronotable_registry r
         LEFT JOIN pg_class c ON c.relname = r.shadow_table_name
                             AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = 'lakets_cdf')
         LEFT JOIN wal2delta.tables t ON t.table_oid = c.oid
        WHERE r.shadow_table_name IS NOT NULL ORDER BY 1`,
    );
    for (const s of rows) {
      const check = `shadow: ${s.shadow}`;
      if (!s.found)
        add(
          check,
          'fail',
          `${s.shadow} is registered but missing`,
          'run lakets.enable_sync() for its ChronoTable again',
        );
      else if (s.status === 'STREAMING') add(check, 'pass', 'Lakehouse Sync is STREAMING it');
      else
        add(
          check,
          'warn',
          s.status
            ? `Lakehouse Sync status ${s.status}, not STREAMING: ${UNPROVEN}`
            : `Lakehouse Sync does not sync it: ${UNPROVEN}`,
          'sync the shadow table with Lakehouse Sync (it must reach STREAMING)',
        );
    }
  },
};

/** The built-in steps, in order (login is the connection itself: preflight adds it). */
export const BUILT_IN_STEPS: readonly Step[] = [
  tls,
  laketsSchema,
  laketsVersion,
  functions,
  registries,
  schemaUsage,
  partitionOwnership,
  syncState,
];
