// 4. RollUp refresh: a ChronoTable of 5 million rows (50 devices, a reading every 10 s, ~11.6 days in
// daily chunks; 500k in --quick) under a three-level RollUp DAG (1 minute per device -> 1 hour per
// device -> 1 day), invalidation on level 1, refresh_lag 0. After appending 0.1% new rows at the end,
// and separately after late updates of 0.1% of the rows spread over old buckets, the time of
// `SELECT * FROM lakets.refresh_rollup_cascade()` as a ratio to a full REFRESH MATERIALIZED VIEW of
// three materialized views with the same queries (and the same bucket index), refreshed in order.
// A third case (0.1% late updates packed into a few old minutes) shows where the invalidation path
// works as designed. Each case: several rounds (a new change, then the refresh), median.
import type pg from 'pg';
import { createChronotable } from '../dev/chronotable.ts';
import {
  type BenchContext,
  benchDatabase,
  fmtInt,
  fmtMs,
  fmtPct,
  median,
  type Row,
  type SectionResult,
  say,
  section,
  timed,
} from './lib.ts';

const DEVICES = 50;
const STEP_S = 10;
const TARGET = 0.02;

const L1 = `SELECT lakets.time_bucket('1 minute', ts) AS bucket, device, count(*) AS samples, sum(value) AS total,
       min(value) AS lo, max(value) AS hi
  FROM public.metrics GROUP BY 1, 2`;
const L2 = (
  src: string,
) => `SELECT lakets.time_bucket('1 hour', bucket) AS bucket, device, sum(samples) AS samples,
       sum(total) AS total, min(lo) AS lo, max(hi) AS hi
  FROM public.${src} GROUP BY 1, 2`;
const L3 = (
  src: string,
) => `SELECT lakets.time_bucket('1 day', bucket) AS bucket, sum(samples) AS samples, sum(total) AS total,
       min(lo) AS lo, max(hi) AS hi
  FROM public.${src} GROUP BY 1`;

/** A pseudo-random 0.1% of the readings (a hash of time and device), different for each seed. */
const SPREAD = (seed: string) =>
  `(hashint8(extract(epoch FROM ts)::bigint * 64 + device + ${seed}::bigint * 1000003)::bigint + 2147483648) % 1000 = 0`;

interface CascadeRow {
  rollup_name: string;
  refreshed: boolean;
  refresh_ms: number;
}

async function main(ctx: BenchContext): Promise<SectionResult> {
  const rowsTotal = ctx.quick ? 500_000 : 5_000_000;
  const rounds = ctx.quick ? 2 : 3;
  const perDevice = rowsTotal / DEVICES;
  const spanS = perDevice * STEP_S;
  const { db } = await benchDatabase(ctx, 'bench_rollups');
  const notes: string[] = [];
  const out: Row[] = [];
  try {
    await db.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    // The series ends a little before now, so appended rows land in existing (future) partitions.
    const { rows: t } = await db.query<{ start: Date; end: Date }>(
      `SELECT date_trunc('minute', now()) - interval '1 hour' - make_interval(secs => $1) AS start,
              date_trunc('minute', now()) - interval '1 hour' AS end`,
      [spanS],
    );
    const start = t[0]?.start as Date;
    let end = t[0]?.end as Date; // exclusive: the next reading's time
    await createChronotable(db, {
      name: 'metrics',
      columns: 'device int NOT NULL, value float8 NOT NULL',
      partitions: { from: start },
    });
    let t0 = Date.now();
    await db.query(
      `INSERT INTO metrics
       SELECT $1::timestamptz + make_interval(secs => s * ${STEP_S}), d, 20 + 5 * sin(s / 500.0) + d * 0.1 + (s % 7) * 0.01
         FROM generate_series(0, $2::int - 1) s, generate_series(1, ${DEVICES}) d`,
      [start, perDevice],
    );
    await db.query('VACUUM ANALYZE metrics');
    say(`${fmtInt(rowsTotal)} rows loaded (${fmtMs(Date.now() - t0)})`);

    t0 = Date.now();
    await db.query(`SELECT lakets.create_rollup('m1', $1, interval '1 minute', 'metrics')`, [L1]);
    await db.query(`SELECT lakets.create_rollup('h1', $1, interval '1 hour', NULL, 'public', ARRAY['m1'])`, [
      L2('_rollup_m1'),
    ]);
    await db.query(`SELECT lakets.create_rollup('d1', $1, interval '1 day', NULL, 'public', ARRAY['h1'])`, [
      L3('_rollup_h1'),
    ]);
    await db.query(`SELECT lakets.enable_rollup_invalidation('m1')`);
    await db.query(`UPDATE lakets._rollup_registry SET refresh_lag = interval '0'`);
    // The baseline: the same three queries as materialized views, with the same index on bucket.
    await db.query(`CREATE MATERIALIZED VIEW mv_m1 AS ${L1}`);
    await db.query(`CREATE MATERIALIZED VIEW mv_h1 AS ${L2('mv_m1')}`);
    await db.query(`CREATE MATERIALIZED VIEW mv_d1 AS ${L3('mv_h1')}`);
    for (const mv of ['mv_m1', 'mv_h1', 'mv_d1']) await db.query(`CREATE INDEX ON ${mv} (bucket)`);
    await db.query('VACUUM ANALYZE');
    const sizes = await db.query<{ m1: string; h1: string; d1: string }>(
      `SELECT (SELECT count(*) FROM _rollup_m1) AS m1, (SELECT count(*) FROM _rollup_h1) AS h1, (SELECT count(*) FROM _rollup_d1) AS d1`,
    );
    const s = sizes.rows[0];
    say(
      `RollUps m1 ${fmtInt(Number(s?.m1))}, h1 ${fmtInt(Number(s?.h1))}, d1 ${fmtInt(Number(s?.d1))} rows; MVs built (${fmtMs(Date.now() - t0)})`,
    );
    notes.push(
      `${fmtInt(rowsTotal)} rows (${DEVICES} devices, every ${STEP_S} s, ${(spanS / 86400).toFixed(1)} days); RollUps m1 (1 min x device) ${fmtInt(Number(s?.m1))} rows, h1 (1 h x device) ${fmtInt(Number(s?.h1))}, d1 (1 day) ${fmtInt(Number(s?.d1))}`,
    );

    // Full refresh of the three MVs, in order (median of a few; it is the expensive side).
    const fullRefresh = async (): Promise<number> => {
      await db.query('CHECKPOINT');
      let ms = 0;
      for (const mv of ['mv_m1', 'mv_h1', 'mv_d1'])
        ms += (await timed(() => db.query(`REFRESH MATERIALIZED VIEW ${mv}`))).ms;
      return ms;
    };
    const full: number[] = [];
    for (let i = 0; i < (ctx.quick ? 2 : 3); i++) full.push(await fullRefresh());
    const fullMs = median(full);
    say(`full REFRESH MATERIALIZED VIEW x3: ${fmtMs(fullMs)} [${full.map((v) => Math.round(v)).join(', ')}]`);

    const cascade = async (label: string, round: number): Promise<number> => {
      const pending = await db.query<{ name: string; n: string }>(
        `SELECT r.name, count(l.*) AS n FROM lakets._rollup_registry r LEFT JOIN lakets._rollup_invalidation_log l ON l.rollup_id = r.id GROUP BY r.name ORDER BY r.name`,
      );
      // Autovacuum is off: clear the dead rows earlier rounds left in the RollUps, then time.
      await db.query(
        'VACUUM _rollup_m1, _rollup_h1, _rollup_d1, lakets._rollup_registry, lakets._rollup_invalidation_log, lakets._chunk_metadata',
      );
      await db.query('CHECKPOINT');
      const { ms, value } = await timed(() =>
        db.query<CascadeRow>('SELECT * FROM lakets.refresh_rollup_cascade()'),
      );
      if (round === 0) {
        notes.push(
          `${label}: cascade ${fmtMs(ms)} = ${value.rows.map((r) => `${r.rollup_name} ${fmtMs(r.refresh_ms)}${r.refreshed ? '' : ' (NOT refreshed)'}`).join(' + ')}; pending invalidations before: ${pending.rows.map((r) => `${r.name} ${r.n}`).join(', ')}`,
        );
      }
      if (value.rows.some((r) => !r.refreshed))
        notes.push(`${label}: a RollUp was not refreshed (round ${round})`);
      return ms;
    };

    // a) 0.1% new rows at the end of the series (every device keeps reporting).
    const appendN = Math.round(rowsTotal / 1000 / DEVICES);
    const appendMs: number[] = [];
    await db.query('SELECT * FROM lakets.refresh_rollup_cascade()'); // start from a settled state
    for (let r = 0; r < rounds; r++) {
      await db.query(
        `INSERT INTO metrics SELECT $1::timestamptz + make_interval(secs => s * ${STEP_S}), d, 21.5
           FROM generate_series(0, $2::int - 1) s, generate_series(1, ${DEVICES}) d`,
        [end, appendN],
      );
      end = new Date(end.getTime() + appendN * STEP_S * 1000);
      appendMs.push(await cascade(`append ${fmtInt(appendN * DEVICES)} rows`, r));
    }

    // b) 0.1% late updates spread over old buckets (a pseudo-random 0.1% of the readings).
    const spreadMs: number[] = [];
    const spreadBuckets: number[] = [];
    // (Fewer rounds: each costs about a full recompute, and the replay below adds one more.)
    for (let r = 0; r < Math.min(rounds, 2); r++) {
      const u = await db.query(`UPDATE metrics SET value = value + 0.5 WHERE ts < $1 AND ${SPREAD('$2')}`, [
        new Date(start.getTime() + spanS * 980),
        r + 1,
      ]);
      const b = await db.query<{ n: string }>(
        `SELECT count(*) AS n FROM lakets._rollup_invalidation_log l JOIN lakets._rollup_registry r ON r.id = l.rollup_id WHERE r.name = 'm1'`,
      );
      spreadBuckets.push(Number(b.rows[0]?.n));
      if (r === 0) {
        const m1Buckets = Number(s?.m1) / DEVICES;
        notes.push(
          `spread late updates: ${fmtInt(u.rowCount ?? 0)} rows per round touch ${fmtInt(Number(b.rows[0]?.n))} of ${fmtInt(m1Buckets)} 1-minute buckets (${fmtPct(Number(b.rows[0]?.n) / m1Buckets)}): the floor for a refresh by bucket, since the log keys buckets, not (bucket, device)`,
        );
      }
      spreadMs.push(await cascade(`spread late updates (${fmtInt(u.rowCount ?? 0)} rows)`, r));
    }

    // c) 0.1% late updates packed into a few old minutes (every reading of those minutes).
    const packedMs: number[] = [];
    const minutes = Math.max(1, Math.round(rowsTotal / 1000 / (DEVICES * (60 / STEP_S))));
    for (let r = 0; r < rounds; r++) {
      const from = new Date(start.getTime() + (r + 1) * 86_400_000 * 0.25);
      const u = await db.query(
        `UPDATE metrics SET value = value + 0.5 WHERE ts >= $1 AND ts < $1::timestamptz + make_interval(mins => $2)`,
        [from, minutes],
      );
      packedMs.push(
        await cascade(`packed late updates (${fmtInt(u.rowCount ?? 0)} rows in ${minutes} minutes)`, r),
      );
    }

    // The RollUps must equal the MVs after all that (float sums compared with a relative tolerance:
    // the incremental path adds in another order).
    await fullRefresh();
    const differing: string[] = [];
    for (const [level, mv, keys] of [
      ['m1', 'mv_m1', ['bucket', 'device']],
      ['h1', 'mv_h1', ['bucket', 'device']],
      ['d1', 'mv_d1', ['bucket']],
    ] as const) {
      const d = await db.query<{ line: string }>(
        `SELECT format('%s: %s rollup (samples %s, total %s, lo %s, hi %s) vs view (samples %s, total %s, lo %s, hi %s)',
                       '${level}', ${keys.map((k) => `coalesce(r.${k}, m.${k})`).join(" || ' ' || ")},
                       r.samples, r.total, r.lo, r.hi, m.samples, m.total, m.lo, m.hi) AS line
           FROM _rollup_${level} r FULL JOIN ${mv} m USING (${keys.join(', ')})
          WHERE r.samples IS DISTINCT FROM m.samples OR r.lo IS DISTINCT FROM m.lo OR r.hi IS DISTINCT FROM m.hi
             OR abs(r.total - m.total) > 1e-9 * greatest(1, abs(m.total)) OR r.total IS NULL OR m.total IS NULL
          ORDER BY 1`,
      );
      differing.push(...d.rows.map((x) => x.line));
    }
    const same = differing.length === 0;
    notes.push(
      `RollUps equal the materialized views after all rounds: ${same ? 'yes' : `NO, ${differing.length} rows differ:`}`,
    );
    for (const line of differing.slice(0, 8)) notes.push(`  ${line}`);
    const diff = { rows: [{ n: String(differing.length) }] };

    const row = (measurement: string, ms: number[], target: boolean): Row => ({
      section: 'rollups',
      measurement,
      figure: `${fmtPct(median(ms) / fullMs)} (${fmtMs(median(ms))} vs ${fmtMs(fullMs)})`,
      target: target ? '< 2%' : '(contrast)',
      met: target ? median(ms) / fullMs < TARGET : null,
    });
    out.push(
      row(
        `cascade refresh after appending 0.1% rows / full MV refresh (${fmtInt(rowsTotal)} rows)`,
        appendMs,
        true,
      ),
    );
    out.push(row(`cascade refresh after 0.1% late updates, spread / full MV refresh`, spreadMs, true));
    out.push(
      row(
        `cascade refresh after 0.1% late updates in ${minutes} old minutes / full MV refresh`,
        packedMs,
        false,
      ),
    );
    out.push({
      section: 'rollups',
      measurement: 'RollUps equal the materialized views afterwards',
      figure: same ? 'yes' : `no: ${diff.rows[0]?.n} rows differ`,
      target: 'yes',
      met: same,
    });
    notes.push(
      `rounds: full MV refresh [${full.map((v) => Math.round(v)).join(', ')}] ms; append [${appendMs.map((v) => Math.round(v)).join(', ')}]; spread [${spreadMs.map((v) => Math.round(v)).join(', ')}] (m1 buckets invalidated ${spreadBuckets.join(', ')}); packed [${packedMs.map((v) => Math.round(v)).join(', ')}]`,
    );
    if (median(spreadMs) / fullMs >= TARGET) notes.push(...(await explainSpread(db)));
  } finally {
    await db.end();
  }
  return { rows: out, notes };
}

/** Why the spread case costs what it costs: the ranges refresh_rollup merges the log into. */
async function explainSpread(db: pg.Client): Promise<string[]> {
  // Replays refresh_rollup's merging of invalidated buckets (gap doubles until <= 64 ranges) on a
  // fresh spread of late updates, without refreshing.
  await db.query(
    `UPDATE metrics SET value = value + 0.25
      WHERE ts < (SELECT watermark FROM lakets._rollup_registry WHERE name = 'm1') - interval '1 hour' AND ${SPREAD('99')}`,
  );
  const { rows } = await db.query<{
    buckets: string;
    gap: string;
    ranges: string;
    covered: string;
    span: string;
    pct: string;
  }>(`
    WITH RECURSIVE r AS (SELECT id, bucket_interval, watermark FROM lakets._rollup_registry WHERE name = 'm1'),
    s AS (SELECT l.bucket_start AS b FROM lakets._rollup_invalidation_log l, r WHERE l.rollup_id = r.id AND l.bucket_start < r.watermark - r.bucket_interval),
    g(gap) AS (SELECT bucket_interval FROM r UNION ALL SELECT gap * 2 FROM g
                WHERE (SELECT count(*) FROM (SELECT b, lag(b) OVER (ORDER BY b) AS p FROM s) x WHERE p IS NULL OR b - p > g.gap) > 64),
    chosen AS (SELECT max(gap) AS gap FROM g),
    grp AS (SELECT b, sum(CASE WHEN p IS NULL OR b - p > (SELECT gap FROM chosen) THEN 1 ELSE 0 END) OVER (ORDER BY b) AS k
              FROM (SELECT b, lag(b) OVER (ORDER BY b) AS p FROM s) x),
    ranges AS (SELECT k, min(b) AS lo, max(b) + (SELECT bucket_interval FROM r) AS hi FROM grp GROUP BY k)
    SELECT (SELECT count(*) FROM s)::text AS buckets, (SELECT gap FROM chosen)::text AS gap, count(*)::text AS ranges,
           sum(hi - lo)::text AS covered, (max(hi) - min(lo))::text AS span,
           round(100 * extract(epoch FROM sum(hi - lo)) / extract(epoch FROM (SELECT max(ts) - min(ts) FROM metrics)), 1)::text AS pct
      FROM ranges`);
  const r = rows[0];
  const lines = [
    `spread case, replayed: ${r?.buckets} invalidated 1-minute buckets in m1 -> the merge gap grows to ${r?.gap} -> ${r?.ranges} ranges covering ${r?.covered} (${r?.pct}% of the data's time span):`,
    '  refresh_rollup (migration 0002_rollups) doubles the merge gap until the log fits in <= 64 ranges, so late writes spread over more',
    '  than 64 places make the ranges cover most of the table; m1 is recomputed (DELETE + INSERT, dearer per row than a REFRESH)',
    '  over that, and every m1 bucket it rewrites is logged for h1, so h1 (and d1) are recomputed in full too.',
  ];
  await db.query(`SET pg_stat_statements.track = 'all'`);
  await db.query('SELECT pg_stat_statements_reset()');
  const { ms } = await timed(() => db.query("SELECT lakets.refresh_rollup('m1')"));
  const prof = await db.query<{ query: string; calls: string; exec: number; rows: string }>(
    `SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, calls::text, total_exec_time AS exec, rows::text
       FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND query NOT ILIKE '%pg_stat_statements%' AND query ILIKE ANY (ARRAY['%WITH del AS%', '%_invalidation_log%', '%refresh_rollup%'])
      ORDER BY total_exec_time DESC LIMIT 4`,
  );
  await db.query(`RESET pg_stat_statements.track`);
  lines.push(`  refresh_rollup('m1') alone after it: ${fmtMs(ms)}; its statements by time:`);
  for (const p of prof.rows)
    lines.push(
      `    ${p.calls.padStart(4)} x ${fmtMs(p.exec).padStart(8)}  rows ${p.rows.padStart(9)}  ${p.query.slice(0, 140)}`,
    );
  return lines;
}

await section('rollups', main);
