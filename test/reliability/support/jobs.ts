// Running the deployed handlers and the job logic the way production does, against the harness's
// real PostgreSQL 17: the Databricks world of the connection tests (fake workspace whose minted
// credential is the job role's real password, fake Secrets Manager) with the LakeTS-compatible
// schema installed and the job role holding exactly the documented grants.
import type { Context } from 'aws-lambda';
import pg from 'pg';
import { installWal2delta } from '../../../dev/fake-lakehouse-sync.ts';
import { lambdaContext, schedulerEvent } from '../../../dev/lambda-context.ts';
import { grantStatements } from '../../../lib/grants.ts';
import { JobFailed, makeHandler } from '../../../lib/job-handler.ts';
import { jobNamed } from '../../../lib/jobs/catalog.ts';
import type { JobName, JobOptions, JobReport } from '../../../lib/jobs/types.ts';
import type { ConnectorDeps } from '../../../lib/lakebase/index.ts';
import { installLakets } from '../../../lib/schema/installer.ts';
import { startWorld, type World } from '../../lakebase/world.ts';
import type { Capture } from './capture.ts';
import type { Figures } from './figures.ts';

export const scheduled: JobOptions = { dryRun: false, force: false, trigger: 'schedule' };

/** The job role gets exactly the statements of lib/grants.ts (what `npm run grants` prints). */
export async function applyGrants(admin: pg.Client, role: string): Promise<void> {
  for (const statement of grantStatements(role)) await admin.query(statement.sql);
}

/** The Databricks world with LakeTS installed, wal2delta present and the documented grants applied. */
export async function startJobWorld(): Promise<World> {
  const world = await startWorld();
  await installLakets(world.admin);
  await installWal2delta(world.admin);
  await applyGrants(world.admin, world.appId);
  const { rows } = await world.admin.query<{ super: boolean; member: boolean }>(
    `SELECT rolsuper AS super, EXISTS (SELECT 1 FROM pg_auth_members WHERE member = r.oid) AS member
       FROM pg_roles r WHERE rolname = $1`,
    [world.appId],
  );
  if (rows[0]?.super || rows[0]?.member) throw new Error('the job role must be a plain role');
  return world;
}

/**
 * The process environment of a deployed function (getConfig() reads it once per process, like a
 * Lambda container), with Powertools printing through the global console at DEBUG.
 */
export function setFunctionEnv(env: Record<string, string>): void {
  for (const key of Object.keys(process.env)) {
    if (/^(LAKETS_|DATABRICKS_)/.test(key)) delete process.env[key];
  }
  Object.assign(process.env, env, {
    POWERTOOLS_DEV: 'true',
    POWERTOOLS_LOG_LEVEL: 'DEBUG',
    POWERTOOLS_METRICS_NAMESPACE: 'LakeTS',
  });
}

/**
 * Connection-library deps wired to the world, without the world's own log: the handler then logs
 * through its Powertools logger (to the console), which is what the leak checks read.
 */
export function handlerDeps(world: World, overrides: Partial<ConnectorDeps> = {}): ConnectorDeps {
  const { log: _log, ...deps } = world.deps({
    retry: { budgetMs: 1_500, baseDelayMs: 20, maxDelayMs: 200 },
    httpTimeoutSeconds: 2,
    ...overrides,
  });
  return deps;
}

export type Handler = (event: unknown, context: Context) => Promise<JobReport>;

/** A new container's handler: its own connector (secret, token, endpoint and credential caches). */
export function coldHandler(job: JobName, deps: ConnectorDeps): Handler {
  return makeHandler(jobNamed(job), { connector: deps }) as unknown as Handler;
}

export interface Outcome {
  report?: JobReport;
  error?: Error;
}

/** Invokes a handler as Lambda would; a thrown error is the Lambda error. Notes both for leak checks. */
export async function invoke(
  handler: Handler,
  job: JobName,
  capture: Capture,
  event: unknown = schedulerEvent(job),
): Promise<Outcome> {
  try {
    const report = await handler(event, lambdaContext(job));
    capture.note(JSON.stringify(report));
    return { report };
  } catch (error) {
    const e = error instanceof Error ? error : new Error(String(error));
    capture.note(`${e.name}: ${e.message}\n${e.stack ?? ''}`);
    if (e instanceof JobFailed) {
      capture.note(JSON.stringify(e.report));
      return { error: e, report: e.report };
    }
    return { error: e };
  }
}

/** A Postgres error's or report's one-line reason: no line break, not empty. */
export function isOneLine(text: string | undefined): boolean {
  return typeof text === 'string' && text.trim().length > 0 && !/[\r\n]/.test(text);
}

/** 'X/Y' pg_lsn text as a number. */
export function lsn(text: string): bigint {
  const [hi = '0', lo = '0'] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

/**
 * What the jobs are responsible for, in a form two databases can be compared by: chunks and their
 * statuses, the partitions that exist and how many rows each holds, policies, RollUp contents,
 * watermarks and invalidation log. No LSNs, ids or timestamps of runs (they differ between databases by nature).
 */
export async function logicalState(client: pg.Client): Promise<Record<string, unknown>> {
  const q = async (sql: string) => (await client.query<{ v: unknown }>(sql)).rows[0]?.v ?? null;
  const rollups = await client.query<{ name: string; rollup_table: string; bucket_column: string }>(
    'SELECT name, rollup_table, bucket_column FROM lakets._rollup_registry ORDER BY name',
  );
  const rowCounts: Record<string, number> = {};
  const tables = await client.query<{ rel: string }>(
    `SELECT format('%I.%I', schema_name, table_name) AS rel FROM lakets._chronotable_registry
      WHERE to_regclass(format('%I.%I', schema_name, table_name)) IS NOT NULL ORDER BY 1`,
  );
  for (const t of tables.rows) {
    const { rows } = await client.query<{ part: string; n: number }>(
      `SELECT tableoid::regclass::text AS part, count(*)::int AS n FROM ${t.rel} GROUP BY 1 ORDER BY 1`,
    );
    for (const r of rows) rowCounts[r.part] = r.n;
  }
  const contents: Record<string, unknown> = {};
  for (const r of rollups.rows) {
    contents[r.name] = await q(
      `SELECT coalesce(json_agg(t ORDER BY t::text), '[]') AS v FROM ${r.rollup_table} t`,
    );
  }
  return {
    chunks: await q(
      `SELECT json_agg(json_build_array(r.schema_name, r.table_name, m.chunk_name, m.status, m.range_start, m.range_end)
                       ORDER BY m.chunk_name) AS v
         FROM lakets._chunk_metadata m JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id`,
    ),
    partitions: await q(
      `SELECT json_agg(format('%s.%s', n.nspname, c.relname) ORDER BY n.nspname, c.relname) AS v
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'lakets')`,
    ),
    policies: await q(
      `SELECT json_agg(json_build_array(r.table_name, p.policy_type, p.config, p.enabled) ORDER BY r.table_name, p.policy_type) AS v
         FROM lakets._policy_registry p JOIN lakets._chronotable_registry r ON r.id = p.chronotable_id`,
    ),
    rollups: await q(
      `SELECT json_agg(json_build_array(name, watermark, last_refreshed_at IS NOT NULL) ORDER BY name) AS v
         FROM lakets._rollup_registry`,
    ),
    invalidations: await q(
      `SELECT json_agg(json_build_array(x.name, l.bucket_start) ORDER BY x.name, l.bucket_start) AS v
         FROM lakets._rollup_invalidation_log l JOIN lakets._rollup_registry x ON x.id = l.rollup_id`,
    ),
    rollupRows: contents,
    rowCounts,
  };
}

/** Registry and catalog agree: dropped chunks have no partition, the others have an attached one. */
export async function registryMismatches(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ problem: string }>(
    `SELECT format('%s is %s but its partition %s', m.chunk_name, m.status,
                   CASE WHEN c.oid IS NULL THEN 'is missing' WHEN i.inhrelid IS NULL THEN 'is not attached' ELSE 'exists' END) AS problem
       FROM lakets._chunk_metadata m
       JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
       LEFT JOIN pg_namespace n ON n.nspname = r.schema_name
       LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = substr(m.chunk_name, length(r.schema_name) + 2)
       LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
                              AND i.inhparent = to_regclass(format('%I.%I', r.schema_name, r.table_name))
      WHERE (m.status = 'dropped') <> (c.oid IS NULL) OR (m.status <> 'dropped' AND i.inhrelid IS NULL)`,
  );
  return rows.map((r) => r.problem);
}

export { schedulerEvent };

/** Notes the server's version in a suite's figures. */
export async function noteServer(fig: Figures, client: pg.Client): Promise<void> {
  const { rows } = await client.query<{ v: string }>("SELECT current_setting('server_version') AS v");
  fig.meta('postgres', rows[0]?.v ?? '?');
}

/**
 * The setup of the suites that run the deployed handlers on the Databricks path: the job world, its
 * function environment, and one warm handler (container) per job.
 */
export async function warmJobWorld(
  fig: Figures,
  jobs: JobName[],
): Promise<{ world: World; warm: Record<JobName, Handler> }> {
  const world = await startJobWorld();
  setFunctionEnv(world.env());
  const deps = handlerDeps(world);
  const warm = Object.fromEntries(jobs.map((j) => [j, coldHandler(j, deps)])) as Record<JobName, Handler>;
  await noteServer(fig, world.admin);
  return { world, warm };
}

/** A plain client for another login role of the harness database (closed by the caller). */
export async function clientFor(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, options: '-c TimeZone=UTC' });
  client.on('error', () => {}); // tests terminate backends on purpose
  await client.connect();
  return client;
}
