// The preflight check (`{"check": true}` to any handler, `npm run check`): runs no job. On the
// connection the job would use, it checks item by item what the job needs and says how to fix what
// is missing: login and TLS, the LakeTS version, EXECUTE on each function the job calls, ownership for
// partition DDL, USAGE on each schema, read access to Lakehouse Sync's state and each shadow's
// status, and each job's own checks (chunk grids, RollUp DAG cycles). What a job needs comes from its
// definition (JobNeeds, lib/jobs/needs.ts), so a handler's check holds no other job. preflight() is the
// sequencer; the built-in steps are in check-steps.ts.
import { quoteIdentifier } from '../identifier.ts';
import type { Queryable } from '../queryable.ts';
import { BUILT_IN_STEPS, type CheckContext } from './check-steps.ts';
import { errorLine } from './errors.ts';
import type { CheckedJob, CheckStatus, PreflightStep } from './needs.ts';
import type { JobName } from './spec.ts';

export interface CheckItem {
  check: string;
  status: CheckStatus;
  detail: string;
  /** What to do about a `fail` or `warn`, in one line. */
  fix?: string;
}

export interface CheckReport {
  check: true;
  /** The target checked; set by the handler. */
  target?: string;
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
  /** Where the connection went, for the login line (e.g. `on Lakebase instance x (host)`). */
  via?: string;
}

export async function preflight(
  db: Queryable,
  checked: readonly CheckedJob[],
  options: CheckOptions,
): Promise<CheckReport> {
  const items: CheckItem[] = [];
  const ctx = await connected(db, checked, options, items);
  ctx.add(
    'login',
    'pass',
    `logged in as role ${quoteIdentifier(ctx.role)} to database ${quoteIdentifier(ctx.database)}${options.via ? ` ${options.via}` : ''}`,
  );
  const steps: PreflightStep<CheckContext>[] = [
    ...BUILT_IN_STEPS,
    ...checked.flatMap((j) => j.needs.checks ?? []),
  ];
  for (const step of steps) {
    const outcome = await step.run(ctx).catch((error: unknown) => {
      ctx.add(step.name, 'fail', `could not be checked: ${errorLine(error)}`, ctx.grants);
    });
    if (outcome === 'stop') break;
  }
  return finish(
    checked.map((j) => j.name),
    ctx.role,
    ctx.database,
    items,
  );
}

/** Who is connected, over what, and how LakeTS runs partition DDL: what every step may need. */
async function connected(
  db: Queryable,
  checked: readonly CheckedJob[],
  options: CheckOptions,
  items: CheckItem[],
): Promise<CheckContext> {
  const { rows } = await db.query<{
    role: string;
    database: string;
    ssl: boolean | null;
    version: string | null;
    definer: boolean | null;
  }>(
    `SELECT current_user AS role, current_database() AS database,
            (SELECT s.ssl FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()) AS ssl,
            (SELECT s.version FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()) AS version,
            -- LakeTS runs partition DDL (Partition Manager and Retention alike) with the caller's
            -- rights unless _ensure_partitions is SECURITY DEFINER (the compatible schema).
            (SELECT bool_or(p.prosecdef) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'lakets' AND p.proname = '_ensure_partitions') AS definer`,
  );
  const who = rows[0];
  if (!who) throw new Error('the check could not read the session');
  return {
    db,
    add: (check, status, detail, fix) =>
      items.push({ check, status, detail, ...(fix && status !== 'pass' ? { fix } : {}) }),
    callerRights: who.definer !== true,
    role: who.role,
    database: who.database,
    ssl: { on: who.ssl === true, version: who.version },
    tlsRequired: options.tlsRequired,
    jobs: checked,
    needs: (flag) => checked.some((j) => j.needs[flag] === true),
    grants: `an admin runs \`npm run grants -- ${who.role}\` (with LAKETS_DATABASE_URL, it reads the database)`,
  };
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
      fix:
        typeof code === 'string' && code.startsWith('INSTANCE_')
          ? 'see the error: docs/provisioned.md says what each INSTANCE_ code means and what to do'
          : 'see the error: its code names the setup step (docs/operations.md "Service principal, secret and Postgres role")',
    },
  ]);
}
