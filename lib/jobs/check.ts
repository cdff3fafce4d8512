// The preflight check (`{"check": true}` to any handler, `npm run check`): runs no job. On the
// connection the job would use, it checks item by item what the job needs and says how to fix what
// is missing: login and TLS, the LakeTS version, EXECUTE on each function the job calls, ownership for
// partition DDL, USAGE on each schema, read access to Lakehouse Sync's state and each shadow's
// status, and each job's own checks (chunk grids, RollUp DAG cycles). What a job needs comes from its
// definition (JobNeeds), so a handler's check holds no other job. Privileges are read from the catalogs
// (pg_namespace, pg_class, pg_proc), never probed through to_regclass, which raises without schema USAGE.
import { errorLine } from './errors.ts';
import { OWNED_RELATIONS_SQL, PRIVILEGED_OWNER_SQL } from './owners.ts';
import type { JobName, Queryable } from './types.ts';

export type CheckStatus = 'pass' | 'warn' | 'fail';

export interface CheckItem {
  check: string;
  status: CheckStatus;
  detail: string;
  /** What to do about a `fail` or `warn`, in one line. */
  fix?: string;
}

export interface CheckReport {
  check: true;
  jobs: JobName[];
  /** `fail` when any item failed; warnings do not fail the check. */
  status: 'pass' | 'fail';
  role?: string;
  database?: string;
  checkedAt: string;
  items: CheckItem[];
  totals: { pass: number; warn: number; fail: number };
}

export interface CheckOptions {
  /** The Databricks path must be TLS; a direct URL (local runs) may not be. */
  tlsRequired: boolean;
}

/** What a job needs, for the preflight check; each job definition says it of itself. */
export interface JobNeeds {
  /** The LakeTS functions the job calls, with the contract's argument types. */
  readonly functions: ReadonlyArray<readonly [name: string, args: string]>;
  /** Registry privileges it uses (directly, or through LakeTS functions with the caller's rights). */
  readonly tables: ReadonlyArray<readonly [table: string, privileges: readonly string[]]>;
  /** It works on ChronoTables: USAGE on their schemas. */
  readonly chronoTables?: boolean;
  /** It creates partitions in the ChronoTables' schemas (CREATE there, with the caller's rights). */
  readonly createsPartitions?: boolean;
  /** It creates or drops partitions (ownership, with the caller's rights). */
  readonly partitionDdl?: boolean;
  /** It reads Lakehouse Sync's state for the shadows (the durability gate). */
  readonly syncState?: boolean;
  /** It refreshes RollUps (the schemas of their tables and sources). */
  readonly rollups?: boolean;
  /** Its own checks, run last, each under its name (a failure to run one fails that check). */
  readonly checks?: ReadonlyArray<{
    readonly name: string;
    readonly run: (ctx: PreflightContext) => Promise<void>;
  }>;
}

/** What a job's own check gets: the connection, a way to add an item, and how LakeTS runs DDL. */
export interface PreflightContext {
  db: Queryable;
  add: (check: string, status: CheckStatus, detail: string, fix?: string) => void;
  /** LakeTS runs partition DDL with the caller's rights (_ensure_partitions is not SECURITY DEFINER). */
  callerRights: boolean;
}

/** The jobs a check covers: their names and what they need. */
export type CheckedJob = { readonly name: JobName; readonly needs: JobNeeds };

/** A name as a quoted identifier, for messages. */
export const q = (name: string) => `"${name.replaceAll('"', '""')}"`;

export async function preflight(
  db: Queryable,
  checked: readonly CheckedJob[],
  options: CheckOptions,
): Promise<CheckReport> {
  const jobs = checked.map((j) => j.name);
  const items: CheckItem[] = [];
  const add = (check: string, status: CheckStatus, detail: string, fix?: string) =>
    items.push({ check, status, detail, ...(fix && status !== 'pass' ? { fix } : {}) });
  const needs = (flag: 'chronoTables' | 'createsPartitions' | 'partitionDdl' | 'syncState' | 'rollups') =>
    checked.some((j) => j.needs[flag] === true);

  // Login and TLS: the connection exists, so the login worked.
  const who = await db.query<{ role: string; database: string; ssl: boolean | null; version: string | null }>(
    `SELECT current_user AS role, current_database() AS database,
            (SELECT s.ssl FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()) AS ssl,
            (SELECT s.version FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()) AS version`,
  );
  const { role, database, ssl, version } = who.rows[0] as {
    role: string;
    database: string;
    ssl: boolean | null;
    version: string | null;
  };
  const grants = `an admin runs \`npm run grants -- ${role}\` (with LAKETS_DATABASE_URL, it reads the database)`;
  add('login', 'pass', `logged in as role ${q(role)} to database ${q(database)}`);
  if (ssl)
    add(
      'tls',
      'pass',
      options.tlsRequired
        ? `encrypted (${version ?? 'TLS'}), server certificate verified by the client`
        : `encrypted (${version ?? 'TLS'}); how the certificate is checked depends on the connection string`,
    );
  else
    add(
      'tls',
      options.tlsRequired ? 'fail' : 'warn',
      'the connection is not encrypted',
      'connect to the Lakebase endpoint host: it requires TLS, and the jobs verify its certificate',
    );

  const step = async (check: string, run: () => Promise<void>) => {
    try {
      await run();
    } catch (error) {
      add(check, 'fail', `could not be checked: ${errorLine(error)}`, grants);
    }
  };

  // LakeTS itself: the schema, USAGE on it, and which build.
  const schema = await db.query<{ exists: boolean; usage: boolean | null }>(
    `SELECT count(*) > 0 AS exists, bool_or(has_schema_privilege(n.oid, 'USAGE')) AS usage
       FROM pg_namespace n WHERE n.nspname = 'lakets'`,
  );
  const lakets = schema.rows[0];
  if (!lakets?.exists) {
    add(
      'lakets version',
      'fail',
      `database ${q(database)} has no schema lakets`,
      'install LakeTS, or point the jobs at the database holding it (LAKETS_DATABASE)',
    );
    return finish(jobs, role, database, items);
  }
  if (!lakets.usage) {
    add(
      'schema usage: lakets',
      'fail',
      'no USAGE on schema lakets: no registry or function can be reached',
      grants,
    );
    return finish(jobs, role, database, items);
  }
  add('schema usage: lakets', 'pass', 'USAGE on schema lakets');
  await step('lakets version', async () => {
    const v = await db.query<{ readable: boolean | null; table: boolean }>(
      // This project's schema records its migrations with a flavor column (as the installer checks).
      `SELECT c.oid IS NOT NULL AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'flavor') AS table,
              has_table_privilege(c.oid, 'SELECT') AS readable
         FROM (SELECT 1) one LEFT JOIN pg_class c ON c.relname = '_version' AND c.relnamespace = 'lakets'::regnamespace`,
    );
    const row = v.rows[0];
    if (row?.table && row.readable) {
      const { rows } = await db.query<{ lakets_version: string; migrations: string }>(
        `SELECT max(lakets_version) AS lakets_version, string_agg(version, ', ' ORDER BY version) AS migrations FROM lakets._version`,
      );
      const r = rows[0];
      const gridKept = r?.migrations.includes('0003_chunk_grid') ?? false;
      add(
        'lakets version',
        gridKept ? 'pass' : 'warn',
        `LakeTS-compatible schema ${r?.lakets_version ?? '?'} (${r?.migrations ?? ''})`,
        "run npm run lakets:install to apply 0003_chunk_grid (keeps a ChronoTable's existing chunk grid)",
      );
    } else {
      add(
        'lakets version',
        'pass',
        row?.table
          ? 'the LakeTS-compatible schema (lakets._version not readable by this role); its functions are checked below'
          : "a LakeTS other than this project's compatible schema (the public LakeTS 0.1.x, say); its functions are checked below",
      );
    }
  });

  // EXECUTE on each function the jobs call, with the contract's signature.
  const wanted = [
    ...new Map(checked.flatMap((j) => j.needs.functions).map((f) => [f.join('|'), f])).values(),
  ];
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
    } else {
      add(
        check,
        fn.execute ? 'pass' : 'fail',
        fn.execute ? 'EXECUTE granted' : `no EXECUTE on lakets.${name}`,
        grants,
      );
    }
  }
  // How LakeTS runs partition DDL (for Partition Manager and Retention alike): with the caller's
  // rights unless _ensure_partitions is SECURITY DEFINER (the compatible schema).
  const rights = await db.query<{ definer: boolean | null }>(
    `SELECT bool_or(p.prosecdef) AS definer FROM pg_proc p
      WHERE p.pronamespace = 'lakets'::regnamespace AND p.proname = '_ensure_partitions'`,
  );
  const callerRights = rights.rows[0]?.definer !== true;

  // Registry privileges.
  const tables = new Map<string, Set<string>>();
  for (const job of checked)
    for (const [t, privs] of job.needs.tables)
      for (const p of privs) (tables.get(t) ?? tables.set(t, new Set()).get(t))?.add(p);
  for (const [table, privs] of tables) {
    const { rows } = await db.query<{ missing: string[] | null; exists: boolean }>(
      `SELECT c.oid IS NOT NULL AS exists,
              (SELECT array_agg(p ORDER BY p) FROM unnest($2::text[]) p WHERE NOT has_table_privilege(c.oid, p)) AS missing
         FROM (SELECT 1) one LEFT JOIN pg_class c ON c.relname = $1 AND c.relnamespace = 'lakets'::regnamespace`,
      [table, [...privs]],
    );
    const r = rows[0];
    if (!r?.exists)
      add(`registry: lakets.${table}`, 'fail', `lakets.${table} does not exist`, 'install a LakeTS 0.1.x');
    else if (r.missing?.length)
      add(`registry: lakets.${table}`, 'fail', `missing ${r.missing.join(', ')} on lakets.${table}`, grants);
    else add(`registry: lakets.${table}`, 'pass', `${[...privs].join(', ')} on lakets.${table}`);
  }
  // Without reading the registries, nothing below can be known.
  if (items.some((i) => i.check === 'registry: lakets._chronotable_registry' && i.status === 'fail')) {
    return finish(jobs, role, database, items);
  }

  await step('schema usage', async () => {
    // Schemas holding ChronoTables (and, for RollUp Refresh, RollUp tables and sources; for the
    // durability gate, the shadows), with what each holds.
    const { rows } = await db.query<{
      nspname: string;
      exists: boolean;
      usage: boolean;
      can_create: boolean;
      what: string;
      chronotables: boolean;
    }>(
      `WITH objects AS (
         SELECT schema_name AS nspname, format('ChronoTable %I.%I', schema_name, table_name) AS what, true AS ct
           FROM lakets._chronotable_registry WHERE $1
         UNION ALL
         SELECT 'lakets_cdf', format('shadow lakets_cdf.%I', shadow_table_name), false
           FROM lakets._chronotable_registry WHERE shadow_table_name IS NOT NULL AND $2
         UNION ALL
         SELECT (parse_ident(rr.rollup_table))[1], format('RollUp %I table', rr.name), false
           FROM lakets._rollup_registry rr WHERE $3 AND rr.rollup_table LIKE '%.%'
         UNION ALL
         SELECT ct.schema_name, format('RollUp %I source', rr.name), false
           FROM lakets._rollup_registry rr JOIN lakets._chronotable_registry ct ON ct.id = rr.source_chronotable_id WHERE $3)
       SELECT o.nspname, n.oid IS NOT NULL AS exists,
              coalesce(has_schema_privilege(n.oid, 'USAGE'), false) AS usage,
              coalesce(has_schema_privilege(n.oid, 'CREATE'), false) AS can_create,
              string_agg(DISTINCT o.what, ', ') AS what, bool_or(o.ct) AS chronotables
         FROM objects o LEFT JOIN pg_namespace n ON n.nspname = o.nspname
        GROUP BY o.nspname, n.oid ORDER BY o.nspname`,
      [needs('chronoTables'), needs('syncState'), needs('rollups')],
    );
    for (const s of rows) {
      const what = s.what.length > 160 ? `${s.what.slice(0, 157)}...` : s.what;
      if (!s.exists)
        add(
          `schema usage: ${s.nspname}`,
          'fail',
          `schema ${q(s.nspname)} is registered (${what}) but does not exist`,
          'fix the LakeTS registries',
        );
      else if (!s.usage)
        add(
          `schema usage: ${s.nspname}`,
          'fail',
          `no USAGE on schema ${q(s.nspname)}, which holds ${what}`,
          `${grants}; or GRANT USAGE ON SCHEMA ${q(s.nspname)} TO ${q(role)};`,
        );
      else if (callerRights && needs('createsPartitions') && s.chronotables && !s.can_create)
        add(
          `schema usage: ${s.nspname}`,
          'fail',
          `no CREATE on schema ${q(s.nspname)}: LakeTS creates partitions there with the caller's rights`,
          `${grants}; or GRANT CREATE ON SCHEMA ${q(s.nspname)} TO ${q(role)};`,
        );
      else add(`schema usage: ${s.nspname}`, 'pass', `USAGE on schema ${q(s.nspname)} (${what})`);
    }
  });

  if (needs('partitionDdl')) {
    await step('partition ownership', async () => {
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
      if (rows.length === 0) {
        add(
          'partition ownership',
          'pass',
          "LakeTS runs partition DDL with the caller's rights, and this role has the privileges of every ChronoTable's owner",
        );
      }
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
    });
  }

  if (needs('syncState')) {
    await step('lakehouse sync state', () => syncState(db, add, grants, role));
  }

  for (const job of checked)
    for (const own of job.needs.checks ?? []) await step(own.name, () => own.run({ db, add, callerRights }));
  return finish(jobs, role, database, items);
}

/** Lakehouse Sync's state: readable, and each shadow's status. */
async function syncState(
  db: Queryable,
  add: (check: string, status: CheckStatus, detail: string, fix?: string) => void,
  grants: string,
  role: string,
): Promise<void> {
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
  const unproven = 'until then nothing is proven durable, so nothing is tiered or dropped behind the gate';
  if (!a?.schema || !a.table) {
    add(
      'lakehouse sync state',
      'warn',
      `wal2delta.tables does not exist: Lakehouse Sync is not set up; ${unproven}`,
      'enable Lakehouse Sync for the shadows, then run npm run grants again',
    );
    return;
  }
  if (!a.usage || !a.readable) {
    add(
      'lakehouse sync state',
      'fail',
      `${a.usage ? 'no SELECT on wal2delta.tables' : 'no USAGE on schema wal2delta'}: Tiering and Retention cannot read Lakehouse Sync's progress; ${unproven}`,
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
    if (!s.found)
      add(
        `shadow: ${s.shadow}`,
        'fail',
        `${s.shadow} is registered but missing`,
        'run lakets.enable_sync() for its ChronoTable again',
      );
    else if (s.status === 'STREAMING') add(`shadow: ${s.shadow}`, 'pass', 'Lakehouse Sync is STREAMING it');
    else
      add(
        `shadow: ${s.shadow}`,
        'warn',
        s.status
          ? `Lakehouse Sync status ${s.status}, not STREAMING: ${unproven}`
          : `Lakehouse Sync does not sync it: ${unproven}`,
        'sync the shadow table with Lakehouse Sync (it must reach STREAMING)',
      );
  }
}

function finish(
  jobs: readonly JobName[],
  role: string | undefined,
  database: string | undefined,
  items: CheckItem[],
): CheckReport {
  const count = (s: CheckStatus) => items.filter((i) => i.status === s).length;
  return {
    check: true,
    jobs: [...jobs],
    status: count('fail') > 0 ? 'fail' : 'pass',
    ...(role ? { role } : {}),
    ...(database ? { database } : {}),
    checkedAt: new Date().toISOString(),
    items,
    totals: { pass: count('pass'), warn: count('warn'), fail: count('fail') },
  };
}

/** The report when the job's own login failed: nothing else could be checked. */
export function loginFailed(jobs: readonly JobName[], error: unknown): CheckReport {
  const code = (error as { code?: unknown } | null)?.code;
  return finish(jobs, undefined, undefined, [
    {
      check: 'login',
      status: 'fail',
      detail: `${typeof code === 'string' && !/^[0-9A-Z]{5}$/.test(code) ? `${code}: ` : ''}${errorLine(error)}`,
      fix: 'see the error: its code names the setup step (docs/operations.md "Service principal, secret and Postgres role")',
    },
  ]);
}
