// 3. Job overhead at scale: each job's real handler (direct mode, LAKETS_DATABASE_URL) over 1 .. 1,000
// ChronoTables (RollUp Refresh over 1 .. 100 RollUps), with nothing to do and with one item per table
// to do, against the same LakeTS calls made from one psql session (`psql -X -q -f`, a generated
// script: the floor for "call the SQL functions, nothing else"). Handler and psql runs alternate in
// order, each from the same state (reset, untimed, before every run).
//
// Every ChronoTable t#### has daily chunks: one 10 days old, yesterday, today and 3 ahead; a tiering
// and a retention policy, sync to a shadow with Lakehouse Sync (its fake) caught up, and
// 48 rows. "One item each" means: one missing future partition (Partition Manager), the old chunk
// past `after` (Tiering) or past `drop_after` (Retention), one new row in each RollUp's source.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { LSN_ALWAYS_CAUGHT_UP, setSyncOfAll } from '../dev/fake-lakehouse-sync.ts';
import { installFleet } from '../dev/fleet.ts';
import { lambdaContext, schedulerEvent } from '../dev/lambda-context.ts';
import { jobNamed } from '../lib/jobs/catalog.ts';
import type { JobName, JobReport } from '../lib/jobs/types.ts';
import {
  type BenchContext,
  benchDatabase,
  dbUrl,
  fmtMs,
  fmtRatio,
  median,
  quoteLiteral,
  type Row,
  runPsql,
  type SectionResult,
  say,
  section,
  timed,
} from './lib.ts';

type Scenario = 'nothing' | 'one';
const SCENARIO_LABEL: Record<Scenario, string> = { nothing: 'nothing to do', one: 'one item each' };

// Lakehouse Sync's table comes with the fleet's builder (installFleet).
const SETUP_SQL = `
CREATE SCHEMA bench;

CREATE FUNCTION bench.tname(i int) RETURNS text LANGUAGE sql IMMUTABLE RETURN fleet.tname(i, 't', 4);
CREATE FUNCTION bench.old_day() RETURNS timestamptz LANGUAGE sql STABLE
  RETURN lakets.time_bucket('1 day', now()) - interval '10 days';

CREATE FUNCTION bench.add_rollups(p_from int, p_to int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN p_from..p_to LOOP
    PERFORM lakets.create_rollup('r' || lpad(i::text, 4, '0'),
      format('SELECT lakets.time_bucket(''1 hour'', ts) AS bucket, device, count(*) AS n, avg(value) AS v FROM public.%I GROUP BY 1, 2', bench.tname(i)),
      interval '1 hour', bench.tname(i));
  END LOOP;
  UPDATE lakets._rollup_registry SET refresh_lag = interval '0';
END $$;

-- Retention, after a run that dropped the old chunks: bring them back.
CREATE FUNCTION bench.restore_old(p_from int, p_to int) RETURNS int LANGUAGE sql AS $$
  SELECT coalesce(sum(lakets._ensure_partitions(id, p_range_start => bench.old_day(),
                                                 p_range_end => bench.old_day() + interval '1 day')), 0)::int
    FROM lakets._chronotable_registry WHERE id BETWEEN p_from AND p_to
$$;

-- RollUp Refresh, one item each: a new row in each RollUp's source.
CREATE FUNCTION bench.touch(p_from int, p_to int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN p_from..p_to LOOP
    EXECUTE format('INSERT INTO public.%I VALUES (now(), 1, 1)', bench.tname(i));
  END LOOP;
END $$;
`;

// The fleet's table builder (dev/fleet.ts) with this section's shape: tables t0001.., the old chunk
// the day 10 days back, tiering and retention at 30 days, 24 hourly readings of 2 devices.
const ADD_TABLES = `SELECT fleet.add_tables($1, $2, p_prefix => 't', p_width => 4,
  p_old_start => bench.old_day(), p_old_end => bench.old_day() + interval '1 day',
  p_tier_after => '30 days', p_drop_after => '30 days', p_rows_back => '23 hours')`;

/** Runs `sql` with ($1, $2) over [first, last] in slices (keeps each transaction's lock count modest). */
async function inBatches(
  db: pg.Client,
  sql: string,
  first: number,
  last: number,
  batch: number,
): Promise<void> {
  for (let from = first; from <= last; from += batch) {
    await db.query(sql, [from, Math.min(last, from + batch - 1)]);
  }
}

interface Measured {
  job: JobName;
  scenario: Scenario;
  size: number;
  handler: number[];
  psql: number[];
}

async function main(ctx: BenchContext): Promise<SectionResult> {
  const sizes = ctx.quick ? [1, 10, 100] : [1, 10, 100, 1000];
  const rollupSizes = ctx.quick ? [1, 10] : [1, 10, 100];
  const reps = (size: number) => (size <= 10 ? (ctx.quick ? 3 : 5) : size <= 100 ? 3 : 3);

  const { info, database, db } = await benchDatabase(ctx, 'bench_scale');
  const notes: string[] = [];
  const measured: Measured[] = [];
  try {
    await installFleet(db);
    await db.query(SETUP_SQL);
    await db.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    // psql's fixed cost (process start, connect with SCRAM, exit), for reading the small sizes.
    const empty = join(ctx.tmp, 'scale-empty.sql');
    writeFileSync(empty, 'SELECT 1;\n');
    const emptyRuns: number[] = [];
    for (let i = 0; i < 5; i++) emptyRuns.push(await runPsql(info, database, empty));
    notes.push(
      `psql with a one-statement script (start, connect, exit): ${fmtMs(median(emptyRuns))}; the handler's own connect is included in its times`,
    );

    // The handlers, as one warm container per job would hold them.
    process.env['LAKETS_DATABASE_URL'] = dbUrl(info, database);
    process.env['POWERTOOLS_LOG_LEVEL'] = 'INFO';
    process.env['POWERTOOLS_METRICS_NAMESPACE'] = 'LakeTS';
    const { makeHandler, JobFailed, jobReport } = await import('../lib/job-handler.ts');
    const jobs: JobName[] = ['partition-manager', 'tiering', 'retention', 'rollup-refresh'];
    const handlers = new Map(jobs.map((j) => [j, makeHandler(jobNamed(j))]));
    const invoke = async (job: JobName): Promise<JobReport> => {
      try {
        return jobReport(
          await (handlers.get(job) as ReturnType<typeof makeHandler>)(
            schedulerEvent(job),
            lambdaContext(job),
          ),
        );
      } catch (error) {
        if (error instanceof JobFailed) return error.report;
        throw error;
      }
    };

    let tables = 0;
    let rollups = 0;
    for (const size of sizes) {
      const t0 = Date.now();
      await inBatches(db, ADD_TABLES, tables + 1, size, 20);
      await setSyncOfAll(db, 'STREAMING', LSN_ALWAYS_CAUGHT_UP);
      tables = size;
      const wantRollups = rollupSizes.includes(size) ? size : rollups;
      if (wantRollups > rollups) {
        await db.query('SELECT bench.add_rollups($1, $2)', [rollups + 1, wantRollups]);
        rollups = wantRollups;
      }
      await db.query(
        'ANALYZE lakets._chunk_metadata, lakets._chronotable_registry, lakets._policy_registry, lakets._rollup_registry, wal2delta.tables',
      );
      say(`${tables} ChronoTables, ${rollups} RollUps (setup ${fmtMs(Date.now() - t0)})`);

      for (const job of jobs) {
        if (job === 'rollup-refresh' && !rollupSizes.includes(size)) continue;
        const items = job === 'rollup-refresh' ? rollups : tables;
        for (const scenario of ['nothing', 'one'] as Scenario[]) {
          await setScenario(db, job, scenario);
          const script = join(ctx.tmp, `scale-${job}-${scenario}-${size}.sql`);
          writeFileSync(script, psqlScript(job, items));
          const reset = () => resetFor(db, job, scenario, items);
          const check = (what: string, since: Date) => verify(db, job, scenario, items, what, since, notes);

          // Warm-up (untimed, once per job and size): JIT of the handler code, the server's file cache.
          if (scenario === 'nothing') {
            await invoke(job);
            await runPsql(info, database, script);
          }

          const m: Measured = { job, scenario, size, handler: [], psql: [] };
          for (let r = 0; r < reps(size); r++) {
            const order = r % 2 === 0 ? (['handler', 'psql'] as const) : (['psql', 'handler'] as const);
            for (const who of order) {
              await reset();
              const since = new Date();
              if (who === 'handler') {
                const { ms, value: report } = await timed(() => invoke(job));
                if (report.status !== 'ok')
                  notes.push(
                    `${job} ${scenario} x${items}: handler run ended ${report.status}: ${report.reason ?? ''}`,
                  );
                m.handler.push(ms);
                await check('handler', since);
              } else {
                m.psql.push(await runPsql(info, database, script));
                await check('psql', since);
              }
            }
          }
          measured.push(m);
          if (size === sizes.at(-1) && median(m.handler) / median(m.psql) >= 1.5) {
            // Evidence: where the server spends its time for each side (one more run each, untimed).
            for (const who of ['handler', 'psql'] as const) {
              await reset();
              await db.query('SELECT pg_stat_statements_reset()');
              const { ms } = await timed<unknown>(() =>
                who === 'handler' ? invoke(job) : runPsql(info, database, script),
              );
              notes.push(
                ...(await statementProfile(
                  db,
                  `${job} ${SCENARIO_LABEL[scenario]} x${items}, ${who} (wall ${fmtMs(ms)})`,
                )),
              );
              if (who === 'handler' && job === 'tiering' && scenario === 'one') {
                // The candidates query, from the state the run started from.
                await reset();
                notes.push(
                  ...(await explainStatement(db, 'SELECT c.chunk_name', ['t0001', 'public', false])),
                );
              }
            }
          }
          say(
            `${job} ${SCENARIO_LABEL[scenario]} x${items}: handler ${fmtMs(median(m.handler))}, psql ${fmtMs(median(m.psql))}`,
          );
        }
        await setScenario(db, job, 'nothing');
        // Back to the baseline every other job and the next size start from.
        if (job === 'tiering') await resetFor(db, 'tiering', 'one', tables);
        if (job === 'retention') await resetFor(db, 'retention', 'one', tables);
      }
    }
  } finally {
    await db.end();
  }
  return { rows: rows(measured, notes), notes };
}

/** Top statements by server time (execution + planning) since the last reset, as note lines. */
async function statementProfile(db: pg.Client, title: string): Promise<string[]> {
  const { rows } = await db.query<{ query: string; calls: string; exec: number; plan: number }>(
    `SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, calls::text, total_exec_time AS exec, total_plan_time AS plan
       FROM pg_stat_statements
      WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND query NOT ILIKE '%pg_stat_statements%'
      ORDER BY total_exec_time + total_plan_time DESC`,
  );
  const total = rows.reduce((a, r) => a + r.exec + r.plan, 0);
  const lines = [
    `${title}: server time of its statements ${fmtMs(total)} over ${rows.reduce((a, r) => a + Number(r.calls), 0)} statements:`,
  ];
  for (const r of rows.slice(0, 6)) {
    lines.push(
      `    ${r.calls.padStart(6)} x  exec ${fmtMs(r.exec).padStart(8)}  plan ${fmtMs(r.plan).padStart(8)}  ${r.query.slice(0, 150)}`,
    );
  }
  return lines;
}

/**
 * EXPLAIN ANALYZE of a statement the handler ran, as pg_stat_statements recorded it (constants
 * normalised to $n, so `values` gives the job's parameters and those constants).
 */
async function explainStatement(db: pg.Client, prefix: string, values: unknown[]): Promise<string[]> {
  const { rows } = await db.query<{ query: string }>(
    "SELECT query FROM pg_stat_statements WHERE query LIKE $1 || '%' ORDER BY calls DESC LIMIT 1",
    [prefix],
  );
  const query = rows[0]?.query;
  if (!query) return [`(no statement starting with ${JSON.stringify(prefix)} recorded to explain)`];
  await db.query('DEALLOCATE ALL');
  await db.query(`PREPARE bench_explain AS ${query}`);
  const literals = values.map((v) => (typeof v === 'string' ? quoteLiteral(v) : String(v))).join(', ');
  const plan = await db.query<{ 'QUERY PLAN': string }>(
    `EXPLAIN (ANALYZE, SUMMARY) EXECUTE bench_explain(${literals})`,
  );
  await db.query('DEALLOCATE bench_explain');
  return [
    `EXPLAIN ANALYZE of the handler's statement ${JSON.stringify(`${query.replace(/\s+/g, ' ').slice(0, 90)}...`)} (${values.map((v) => JSON.stringify(v)).join(', ')}):`,
    ...plan.rows.map((r) => `    ${r['QUERY PLAN']}`),
  ];
}

async function setScenario(db: pg.Client, job: JobName, scenario: Scenario): Promise<void> {
  const days = scenario === 'one' ? '5 days' : '30 days';
  if (job === 'tiering') {
    await db.query(
      `UPDATE lakets._policy_registry SET config = jsonb_build_object('after', $1::text) WHERE policy_type = 'tiering'`,
      [days],
    );
  }
  if (job === 'retention') {
    await db.query(
      `UPDATE lakets._policy_registry SET config = jsonb_build_object('drop_after', $1::text) WHERE policy_type = 'retention'`,
      [days],
    );
  }
}

/** Puts the database back in the state the scenario starts from (untimed). */
async function resetFor(db: pg.Client, job: JobName, scenario: Scenario, items: number): Promise<void> {
  if (scenario === 'nothing') {
    await vacuum(db);
    return;
  }
  switch (job) {
    case 'partition-manager':
      await inBatches(db, "SELECT fleet.drop_newest(p_from => $1, p_to => $2, p_like => '%')", 1, items, 100);
      break;
    case 'tiering':
      await db.query(
        `UPDATE lakets._chunk_metadata SET status = 'active', tiered_at = NULL WHERE status = 'tiered'`,
      );
      break;
    case 'retention':
      await inBatches(db, 'SELECT bench.restore_old($1, $2)', 1, items, 100);
      break;
    case 'rollup-refresh':
      await db.query('SELECT bench.touch(1, $1)', [items]);
      break;
  }
  await vacuum(db);
  await db.query('CHECKPOINT');
}

// Autovacuum is off in the bench cluster: every run and reset leaves dead rows in the registries
// (and, creating or dropping partitions, in the catalogs), which would slow each later run a bit
// more. Vacuumed before every run, so each starts from the same clean state.
async function vacuum(db: pg.Client): Promise<void> {
  await db.query(
    `VACUUM lakets._chunk_metadata, lakets._chronotable_registry, lakets._policy_registry, lakets._rollup_registry,
            lakets._rollup_invalidation_log, pg_catalog.pg_class, pg_catalog.pg_attribute, pg_catalog.pg_depend,
            pg_catalog.pg_inherits, pg_catalog.pg_index, pg_catalog.pg_trigger, pg_catalog.pg_type, pg_catalog.pg_constraint`,
  );
}

/** Checks that the run did the scenario's work (the timing of a no-op would be worthless). */
async function verify(
  db: pg.Client,
  job: JobName,
  scenario: Scenario,
  items: number,
  who: string,
  since: Date,
  notes: string[],
): Promise<void> {
  const one = scenario === 'one';
  let sql: string;
  let want: number;
  let values: unknown[] = [];
  switch (job) {
    case 'partition-manager':
      // 6 live chunks per table: the old one, yesterday, today, 3 ahead.
      sql = `SELECT count(*)::int AS n FROM lakets._chunk_metadata WHERE status <> 'dropped' AND chronotable_id <= ${items}`;
      want = 6 * items;
      break;
    case 'tiering':
      sql = `SELECT count(*)::int AS n FROM lakets._chunk_metadata WHERE status = 'tiered'`;
      want = one ? items : 0;
      break;
    case 'retention':
      sql = `SELECT count(*)::int AS n FROM lakets._chunk_metadata WHERE status = 'dropped'`;
      want = one ? items : 0;
      break;
    default:
      sql = 'SELECT count(*)::int AS n FROM lakets._rollup_registry WHERE last_refreshed_at >= $1';
      values = [since];
      want = items;
  }
  const n = (await db.query<{ n: number }>(sql, values)).rows[0]?.n;
  if (n !== want) {
    const line = `${job} ${scenario} x${items} (${who}): expected ${want}, found ${n} (a day boundary passed?)`;
    if (!notes.includes(line)) notes.push(line);
  }
}

/** The same LakeTS calls the job makes, as the public jobs make them, for one psql session. */
function psqlScript(job: JobName, items: number): string {
  const lines: string[] = [];
  for (let i = 1; i <= items; i++) {
    const t = `t${String(i).padStart(4, '0')}`;
    switch (job) {
      case 'partition-manager':
        lines.push(`SELECT lakets._ensure_partitions(p_chronotable_id => ${i});`);
        break;
      case 'tiering':
        lines.push(
          `SELECT format('SELECT lakets.tier_chunk(%L)', chunk_name) FROM lakets._get_chunks_to_tier('${t}', 'public') \\gexec`,
        );
        break;
      case 'retention':
        lines.push(`SELECT lakets.execute_retention('${t}', 'public');`);
        break;
      case 'rollup-refresh':
        lines.push(`SELECT lakets.refresh_rollup('r${String(i).padStart(4, '0')}');`);
        break;
    }
  }
  return `${lines.join('\n')}\n`;
}

function rows(measured: Measured[], notes: string[]): Row[] {
  const out: Row[] = [];
  const jobs = [...new Set(measured.map((m) => m.job))];
  for (const job of jobs) {
    const unit = job === 'rollup-refresh' ? 'RollUps' : 'tables';
    for (const scenario of ['nothing', 'one'] as Scenario[]) {
      const ms = measured
        .filter((m) => m.job === job && m.scenario === scenario)
        .sort((a, b) => a.size - b.size);
      const last = ms.at(-1);
      const prev = ms.at(-2);
      if (!last) continue;
      const h = (m: Measured) => median(m.handler);
      const p = (m: Measured) => median(m.psql);
      out.push({
        section: 'scale',
        measurement: `${job}, ${SCENARIO_LABEL[scenario]}: handler / psql at ${last.size} ${unit}`,
        figure: `${fmtRatio(h(last) / p(last))}x (${fmtMs(h(last))} vs ${fmtMs(p(last))})`,
        target: '< 1.5',
        met: h(last) / p(last) < 1.5,
      });
      const perItem = ms.map((m) => fmtMs(h(m) / m.size)).join(' / ');
      const growth = prev ? h(last) / last.size / (h(prev) / prev.size) : Number.NaN;
      out.push({
        section: 'scale',
        measurement: `${job}, ${SCENARIO_LABEL[scenario]}: handler time per item at ${ms.map((m) => m.size).join(' / ')}`,
        figure: perItem,
        target: `linear (per item at ${last.size} <= 1.5x at ${prev?.size ?? '-'})`,
        met: prev ? growth <= 1.5 : null,
      });
      notes.push(
        `${job}, ${SCENARIO_LABEL[scenario]}: ${ms
          .map(
            (m) =>
              `x${m.size}: handler ${fmtMs(h(m))} [${m.handler.map((v) => Math.round(v)).join(', ')}], psql ${fmtMs(p(m))} [${m.psql.map((v) => Math.round(v)).join(', ')}], ratio ${fmtRatio(h(m) / p(m))}, per item ${fmtMs(h(m) / m.size)} vs ${fmtMs(p(m) / m.size)}`,
          )
          .join('; ')}`,
      );
    }
  }
  return out;
}

await section('scale', main);
