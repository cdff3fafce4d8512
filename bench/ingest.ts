// 5. Ingest overhead of the LakeTS triggers: write-LSN stamping (a tiering policy) and RollUp
// invalidation (three RollUps with invalidation enabled) on a ChronoTable, against a plain
// partitioned table with the same columns, index and partitions. Loads of 1 million rows (200k in
// --quick) at recent times (at/after the RollUp watermarks: the common case), as multi-row INSERTs
// of 1,000 rows (one statement and transaction each, SQL text prepared before timing) and as one
// server-side COPY FROM a CSV file. Loads alternate between the two tables, each into an emptied
// table (TRUNCATE, then CHECKPOINT); medians.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { createChronotable } from '../dev/chronotable.ts';
import {
  type BenchContext,
  benchDatabase,
  fmtInt,
  fmtMs,
  fmtRatio,
  median,
  type Row,
  type SectionResult,
  say,
  section,
  timed,
} from './lib.ts';

const BATCH = 1000;
const DEVICES = 1000;
const TARGET = 1.15;

async function main(ctx: BenchContext): Promise<SectionResult> {
  const total = ctx.quick ? 200_000 : 1_000_000;
  const reps = ctx.quick ? 2 : 4;
  const { db } = await benchDatabase(ctx, 'bench_ingest');
  const notes: string[] = [];
  try {
    await db.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await createChronotable(db, { name: 'readings', columns: 'device int NOT NULL, value float8 NOT NULL' });
    await db.query(`SELECT lakets.add_tiering_policy('readings', interval '7 days')`);
    // An hour of history, so the RollUps have watermarks; the loads then go after it.
    await db.query(
      `INSERT INTO readings SELECT date_trunc('minute', now()) - interval '1 hour' + make_interval(secs => s), d, 1
         FROM generate_series(0, 3599, 10) s, generate_series(1, 50) d`,
    );
    await db.query(`SELECT lakets.create_rollup('r_1m', $$SELECT lakets.time_bucket('1 minute', ts) AS bucket, device, count(*) AS n, avg(value) AS v
        FROM public.readings GROUP BY 1, 2$$, interval '1 minute', 'readings')`);
    await db.query(`SELECT lakets.create_rollup('r_1h', $$SELECT lakets.time_bucket('1 hour', ts) AS bucket, device, count(*) AS n, avg(value) AS v
        FROM public.readings GROUP BY 1, 2$$, interval '1 hour', 'readings')`);
    await db.query(`SELECT lakets.create_rollup('r_1d', $$SELECT lakets.time_bucket('1 day', ts) AS bucket, count(*) AS n, avg(value) AS v
        FROM public.readings GROUP BY 1$$, interval '1 day', 'readings')`);
    for (const r of ['r_1m', 'r_1h', 'r_1d'])
      await db.query(`SELECT lakets.enable_rollup_invalidation($1)`, [r]);

    // The plain twin: same columns and index, same partition bounds, no triggers. And for the
    // evidence behind a miss, a third twin with one no-op statement trigger with a transition table.
    for (const twin of ['plain', 'plain_tt']) {
      await db.query(
        `CREATE TABLE ${twin} (ts timestamptz NOT NULL, device int NOT NULL, value float8 NOT NULL) PARTITION BY RANGE (ts)`,
      );
      await db.query(`CREATE INDEX ON ${twin} (ts)`);
      await db.query(`
        DO $$
        DECLARE p record;
        BEGIN
          FOR p IN SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                    WHERE i.inhparent = 'public.readings'::regclass LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF ${twin} %s', '${twin}_' || p.relname, p.bound);
          END LOOP;
        END $$`);
    }
    await db.query(
      `CREATE FUNCTION noop_trigger() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$`,
    );
    await db.query(
      `CREATE TRIGGER noop AFTER INSERT ON plain_tt REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION noop_trigger()`,
    );
    const triggers = await db.query<{ t: string }>(
      `SELECT string_agg(DISTINCT tgname, ', ' ORDER BY tgname) AS t FROM pg_trigger WHERE tgrelid = 'public.readings'::regclass AND NOT tgisinternal`,
    );
    const watermarks = await db.query<{ w: string }>(
      `SELECT string_agg(name || ' ' || to_char(watermark, 'HH24:MI'), ', ' ORDER BY name) AS w FROM lakets._rollup_registry`,
    );
    notes.push(
      `ChronoTable triggers: ${triggers.rows[0]?.t}; RollUp watermarks (UTC) ${watermarks.rows[0]?.w}`,
    );

    // The rows: every device each second, from the next minute on (after every watermark).
    // (Kept within one UTC day, so that one chunk holds them all: see the COPY-into-the-chunk case.)
    const seconds = total / DEVICES;
    const { rows: s } = await db.query<{ start: Date; chunk: string }>(
      `SELECT x.start, m.chunk_name AS chunk FROM (
         SELECT CASE WHEN lakets.time_bucket('1 day', n) = lakets.time_bucket('1 day', n + make_interval(secs => $1))
                     THEN n ELSE lakets.time_bucket('1 day', n) + interval '1 day' END AS start
           FROM (SELECT date_trunc('minute', now()) + interval '1 minute' AS n) y) x
         JOIN lakets._chunk_metadata m ON m.range_start <= x.start AND x.start < m.range_end`,
      [seconds],
    );
    const first = s[0];
    if (!first) throw new Error('no chunk holds the load window');
    const start = first.start.getTime();
    const chunk = first.chunk.replace(/^public\./, '');
    const values: string[] = [];
    const csv: string[] = [];
    let batch: string[] = [];
    for (let sec = 0; sec < seconds; sec++) {
      const ts = new Date(start + sec * 1000).toISOString();
      for (let d = 1; d <= DEVICES; d++) {
        const v = ((sec * 31 + d * 17) % 1000) / 10;
        batch.push(`('${ts}',${d},${v})`);
        csv.push(`${ts},${d},${v}`);
        if (batch.length === BATCH) {
          values.push(batch.join(','));
          batch = [];
        }
      }
    }
    if (batch.length > 0) values.push(batch.join(','));
    const file = join(ctx.tmp, 'ingest.csv');
    writeFileSync(file, `${csv.join('\n')}\n`, { mode: 0o644 });
    say(`${fmtInt(total)} rows prepared: ${values.length} INSERTs of ${BATCH} rows and ${file}`);

    const loadInserts = async (table: string): Promise<number> => {
      const texts = values.map((v) => `INSERT INTO ${table} (ts, device, value) VALUES ${v}`);
      const t0 = performance.now();
      for (const text of texts) await db.query(text);
      return performance.now() - t0;
    };
    const loadCopy = async (table: string): Promise<number> =>
      (await timed(() => db.query(`COPY ${table} (ts, device, value) FROM '${file}' WITH (FORMAT csv)`))).ms;
    const empty = async (table: string) => {
      await db.query(`TRUNCATE ${table}`);
      await db.query('CHECKPOINT');
    };

    /** Alternating loads into each of `tables` (emptied first), after one untimed load each. */
    const compare = async (
      method: string,
      load: (t: string) => Promise<number>,
      tables: string[],
      empties = tables,
    ) => {
      const times = new Map<string, number[]>(tables.map((t) => [t, []]));
      for (const [i, table] of tables.entries()) {
        await empty(empties[i] as string);
        await load(table);
      }
      for (let r = 0; r < reps; r++) {
        const order = r % 2 === 0 ? tables : [...tables].reverse();
        for (const table of order) {
          await empty(empties[tables.indexOf(table)] as string);
          times.get(table)?.push(await load(table));
        }
      }
      say(`${method}: ${tables.map((t) => `${t} ${fmtMs(median(times.get(t) ?? []))}`).join(', ')}`);
      return times;
    };
    const results: Record<string, Map<string, number[]>> = {
      insert: await compare('INSERT batches', loadInserts, ['readings', 'plain']),
      copy: await compare('COPY', loadCopy, ['readings', 'plain']),
    };

    // Sanity: the triggers did their job and logged nothing (all rows at/after the watermarks).
    const check = await db.query<{ stamped: boolean; logged: string; n: string }>(
      `SELECT bool_and(last_write_lsn IS NOT NULL) AS stamped,
              (SELECT count(*) FROM lakets._rollup_invalidation_log)::text AS logged,
              (SELECT count(*) FROM readings)::text AS n
         FROM lakets._chunk_metadata WHERE range_end > now()`,
    );
    notes.push(
      `after the loads: ${fmtInt(Number(check.rows[0]?.n))} rows in the ChronoTable, write LSN stamped ${check.rows[0]?.stamped ? 'yes' : 'NO'}, invalidation log entries ${check.rows[0]?.logged}`,
    );

    const rows: Row[] = [];
    for (const [method, label] of [
      ['insert', `${fmtInt(total)} rows as INSERTs of ${fmtInt(BATCH)} rows`],
      ['copy', `${fmtInt(total)} rows in one COPY`],
    ] as const) {
      const c = median(results[method]?.get('readings') ?? []);
      const p = median(results[method]?.get('plain') ?? []);
      rows.push({
        section: 'ingest',
        measurement: `ingest, ${label}: ChronoTable (tiering + 3 RollUps) / plain partitioned table`,
        figure: `${fmtRatio(c / p)}x (${fmtMs(c)} vs ${fmtMs(p)})`,
        target: `< ${TARGET}`,
        met: c / p < TARGET,
      });
      notes.push(
        `${method}: ChronoTable [${(results[method]?.get('readings') ?? []).map((v) => Math.round(v)).join(', ')}] ms, plain [${(results[method]?.get('plain') ?? []).map((v) => Math.round(v)).join(', ')}] ms`,
      );
    }
    if (rows[0]?.met === false) {
      // How much of it is the trigger machinery (transition table capture, two AFTER triggers fired)?
      const tt = await compare('INSERT batches, no-op transition-table trigger', loadInserts, [
        'plain_tt',
        'plain',
      ]);
      const r = median(tt.get('plain_tt') ?? []) / median(tt.get('plain') ?? []);
      const c = median(results['insert']?.get('readings') ?? []);
      const p = median(results['insert']?.get('plain') ?? []);
      notes.push(
        `INSERT batches into a plain partitioned table with one no-op transition-table statement trigger / without: ${fmtRatio(r)}x;`,
        `  the ChronoTable costs ${fmtMs((c - p) / values.length)} more per ${fmtInt(BATCH)}-row statement than the plain table; the triggers' own`,
        '  statements account for the part shown below, the rest is firing two PL/pgSQL SECURITY DEFINER triggers (SET search_path, SPI, dynamic SQL)',
      );
    }
    const copyMissed = rows[1]?.met === false;
    if (copyMissed) {
      // Is it the triggers' work, or what a transition table does to COPY into a partitioned table?
      const tt = await compare('COPY, no-op transition-table trigger', loadCopy, ['plain_tt', 'plain']);
      const leaf = await compare(
        'COPY into the chunk',
        loadCopy,
        [chunk, `plain_${chunk}`],
        ['readings', 'plain'],
      );
      const ratio = (m: Map<string, number[]>, a: string, b: string) =>
        median(m.get(a) ?? []) / median(m.get(b) ?? []);
      notes.push(
        `COPY into a plain partitioned table with one no-op AFTER INSERT ... REFERENCING NEW TABLE statement trigger / without: ${fmtRatio(ratio(tt, 'plain_tt', 'plain'))}x`,
        '  (PostgreSQL copyfrom.c turns multi-insert off for a partitioned target with an insert transition table: CIM_SINGLE)',
        `COPY straight into the chunk (partition ${chunk}, same LakeTS triggers, multi-insert kept) / into the plain twin's partition: ${fmtRatio(ratio(leaf, chunk, `plain_${chunk}`))}x`,
      );
    }
    if (rows.some((r) => r.met === false)) notes.push(...(await triggerProfile(db, values[0] ?? '', file)));
    return { rows, notes };
  } finally {
    await db.end();
  }
}

/** Evidence for a miss: what the triggers' own statements cost, per load method. */
async function triggerProfile(db: pg.Client, oneBatch: string, file: string): Promise<string[]> {
  const lines: string[] = [
    'trigger statements (pg_stat_statements, track = all) in one more load of each kind:',
  ];
  await db.query(`SET pg_stat_statements.track = 'all'`);
  for (const [what, sql] of [
    ['one INSERT of 1,000 rows', `INSERT INTO readings (ts, device, value) VALUES ${oneBatch}`],
    ['one COPY', `COPY readings (ts, device, value) FROM '${file}' WITH (FORMAT csv)`],
  ] as const) {
    await db.query('TRUNCATE readings');
    await db.query('SELECT pg_stat_statements_reset()');
    const { ms } = await timed(() => db.query(sql));
    const { rows } = await db.query<{ query: string; calls: string; exec: number; plan: number }>(
      `SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, calls::text, total_exec_time AS exec, total_plan_time AS plan
         FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND toplevel = false
        ORDER BY total_exec_time + total_plan_time DESC`,
    );
    const sum = (k: 'exec' | 'plan') => rows.reduce((a, r) => a + r[k], 0);
    lines.push(
      `  ${what}: ${fmtMs(ms)} in all; the triggers' ${rows.reduce((a, r) => a + Number(r.calls), 0)} nested statements: exec ${fmtMs(sum('exec'))}, plan ${fmtMs(sum('plan'))}:`,
    );
    for (const r of rows.slice(0, 5))
      lines.push(
        `    ${r.calls.padStart(4)} x exec ${fmtMs(r.exec).padStart(8)} plan ${fmtMs(r.plan).padStart(8)}  ${r.query.slice(0, 130)}`,
      );
  }
  await db.query('RESET pg_stat_statements.track');
  return lines;
}

await section('ingest', main);
