// 7. Round trips over a network delay, at scale. The jobs reach Lakebase over a network: 1-5 ms one
// way in one region, more from another; what decides whether a run fits its timeout is the number of
// round trips. Each job runs (runJob, on a connected session, as a warm Lambda holds it) through
// dev/latency-proxy.ts at 0, 1, 5 and 20 ms one way, with nothing to do and with one unit of work per
// item, over a fleet built set-based through the public API (dev/fleet.ts): the job's wall time, the
// statements it sent (counted by the proxy: Query and Parse messages), statements per unit of work and
// the process's peak memory; against the psql-style baseline: one session sending exactly one
// statement per unit of work (the LakeTS calls, nothing else), through the same proxy.
//
// Full mode: 1,000 ChronoTables and 1,000 RollUps (250 chains of 4) for both scenarios at every delay,
// and Partition Manager's one-unit pass at 20 ms under its timeout scaled by 1,000/10,000 (the time per
// table of 10,000 tables in 5 minutes: how many runs a full pass takes, the time budget resuming it);
// then the fleet grown to 10,000 ChronoTables for the nothing-to-do runs at every delay, each job's
// one-unit pass at 20 ms under its own timeout (run after run until done), and the one-unit runs at 0 ms.
import type pg from 'pg';
import { addChains, addTables, type FleetJob, installFleet, setScenario, unitsOf } from '../dev/fleet.ts';
import { type LatencyProxy, startLatencyProxy } from '../dev/latency-proxy.ts';
import { timeBudget, unlimited } from '../lib/jobs/budget.ts';
import { JOBS } from '../lib/jobs/catalog.ts';
import { runJob } from '../lib/jobs/runner.ts';
import type { Budget, JobOptions } from '../lib/jobs/types.ts';
import {
  type BenchContext,
  benchDatabase,
  connect,
  fmtInt,
  fmtMs,
  fmtRatio,
  type Row,
  type SectionResult,
  say,
  section,
  writeResult,
} from './lib.ts';

const scheduled: JobOptions = { dryRun: false, force: false, trigger: 'schedule' };
const JOB_NAMES: FleetJob[] = ['partition-manager', 'tiering', 'retention', 'rollup-refresh'];
type Scenario = 'nothing' | 'one';

interface Measure {
  job: FleetJob;
  scenario: Scenario;
  items: number;
  delayMs: number;
  wallMs: number;
  statements: number;
  units: number;
  peakRssMb: number;
  baseline?: { wallMs: number; statements: number };
  status: string;
}

/** Samples the process's resident set while `fn` runs; returns its peak in MB with the result. */
async function peakRss<T>(fn: () => Promise<T>): Promise<{ value: T; mb: number }> {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  try {
    const value = await fn();
    peak = Math.max(peak, process.memoryUsage().rss);
    return { value, mb: peak / 2 ** 20 };
  } finally {
    clearInterval(timer);
  }
}

/** The LakeTS calls one unit of work per item takes, read (untimed) before the baseline runs them. */
async function baselineCalls(admin: pg.Client, job: FleetJob): Promise<Array<[string, unknown[]]>> {
  switch (job) {
    case 'partition-manager': {
      const { rows } = await admin.query<{ id: number }>(
        'SELECT id FROM lakets._chronotable_registry ORDER BY id',
      );
      return rows.map((r) => ['SELECT lakets._ensure_partitions(p_chronotable_id => $1)', [r.id]]);
    }
    case 'tiering': {
      const { rows } = await admin.query<{ c: string }>(
        `SELECT c.chunk_name AS c FROM lakets._chronotable_registry r, lakets._get_chunks_to_tier(r.table_name, r.schema_name) c ORDER BY 1`,
      );
      return rows.map((r) => ['SELECT lakets.tier_chunk($1)', [r.c]]);
    }
    case 'retention': {
      const { rows } = await admin.query<{ t: string }>(
        'SELECT table_name AS t FROM lakets._chronotable_registry ORDER BY id',
      );
      return rows.map((r) => ['SELECT lakets.execute_retention($1)', [r.t]]);
    }
    case 'rollup-refresh': {
      // Dependencies first: every chain's k-th RollUp after its (k-1)-th.
      const { rows } = await admin.query<{ name: string }>(
        `SELECT name FROM lakets._rollup_registry ORDER BY split_part(name, '_', 2)::int, name`,
      );
      return rows.map((r) => ['SELECT lakets.refresh_rollup($1)', [r.name]]);
    }
  }
}

async function main(ctx: BenchContext): Promise<SectionResult> {
  const delays = ctx.quick ? [0, 5] : [0, 1, 5, 20];
  const small = ctx.quick ? { tables: 40, chains: 10, length: 4 } : { tables: 1_000, chains: 250, length: 4 };
  const large = ctx.quick ? undefined : 10_000;
  const { info, database, db: admin } = await benchDatabase(ctx, 'bench_latency');
  const proxy: LatencyProxy = await startLatencyProxy({
    target: { host: info.host, port: info.port },
    delayMs: 0,
  });
  const session = () =>
    connect(info, database, {
      host: proxy.host,
      port: proxy.port,
      options: '-c TimeZone=UTC -c statement_timeout=600000 -c lock_timeout=30000',
    });
  const measures: Measure[] = [];
  const notes: string[] = [];
  const passes: string[] = [];
  const result = (): SectionResult => ({
    rows: rows(measures, passes, ctx.quick),
    notes: [...table(measures), '', ...passes, '', ...notes],
  });
  // Figures so far, should the section be stopped before its end (it is long at 10,000 tables).
  const checkpoint = () => writeResult(ctx, result());
  let job: pg.Client | undefined;
  let baseline: pg.Client | undefined;
  try {
    await installFleet(admin);
    // Builds and scenario changes each in a session of their own (dev/fleet.ts: a backend that has
    // created thousands of relations slows down at every further DDL).
    const fresh = () => connect(info, database);
    const scenarioOf = async (name: FleetJob, scenario: Scenario): Promise<void> => {
      const s = await fresh();
      try {
        await setScenario(s, name, scenario);
      } finally {
        await s.end();
      }
    };
    let t0 = Date.now();
    await addTables(fresh, 1, small.tables);
    await addChains(admin, 1, small.chains, small.length);
    await admin.query('ANALYZE');
    const rollups = small.chains * small.length;
    const built = `${fmtInt(small.tables)} ChronoTables and ${fmtInt(rollups)} RollUps (${small.chains} chains of ${small.length}) built in ${fmtMs(Date.now() - t0)}`;
    say(built);
    notes.push(`build: ${built}`);
    // Sessions through the proxy, connected at 0 ms (a warm Lambda's connection is already open).
    job = await session();
    baseline = await session();

    const run = async (
      name: FleetJob,
      scenario: Scenario,
      items: number,
      delayMs: number,
      withBaseline: boolean,
    ): Promise<Measure> => {
      await scenarioOf(name, scenario);
      proxy.setDelay(delayMs);
      proxy.reset();
      const t = performance.now();
      const { value: report, mb } = await peakRss(() =>
        runJob(JOBS[name], job as pg.Client, scheduled, unlimited),
      );
      const wallMs = performance.now() - t;
      const statements = proxy.counts().statements;
      proxy.setDelay(0);
      const m: Measure = {
        job: name,
        scenario,
        items,
        delayMs,
        wallMs,
        statements,
        units: unitsOf(name, report),
        peakRssMb: mb,
        status: report.status,
      };
      if (withBaseline && scenario === 'one') {
        await scenarioOf(name, 'nothing');
        await scenarioOf(name, 'one');
        const calls = await baselineCalls(admin, name);
        proxy.setDelay(delayMs);
        proxy.reset();
        const b = performance.now();
        for (const [sql, values] of calls) await (baseline as pg.Client).query(sql, values);
        m.baseline = { wallMs: performance.now() - b, statements: proxy.counts().statements };
        proxy.setDelay(0);
      }
      await scenarioOf(name, 'nothing');
      say(
        `${name} ${scenario} x${fmtInt(items)} at ${delayMs} ms: ${report.status}, ${fmtMs(wallMs)}, ${fmtInt(statements)} statements, ${m.units} units${m.baseline ? `; baseline ${fmtMs(m.baseline.wallMs)}, ${fmtInt(m.baseline.statements)} statements` : ''}`,
      );
      measures.push(m);
      checkpoint();
      return m;
    };

    /**
     * `name` with one unit on each of `items` items at 20 ms, run after run on the time budget of an
     * invocation of its timeout times `scale` (reserve scaled too), until nothing is left.
     */
    const pass = async (name: FleetJob, items: number, scale: number): Promise<void> => {
      await scenarioOf(name, 'one');
      proxy.setDelay(20);
      const timeoutMs = JOBS[name].timeoutMinutes * 60_000 * scale;
      const runs: string[] = [];
      let statements = 0;
      const t = performance.now();
      for (let i = 0; i < 10; i++) {
        const deadline = Date.now() + timeoutMs;
        const budget: Budget = timeBudget(() => deadline - Date.now(), 15_000 * scale);
        proxy.reset();
        const report = await runJob(JOBS[name], job as pg.Client, scheduled, budget);
        statements += proxy.counts().statements;
        runs.push(`${report.status} (${fmtInt(unitsOf(name, report))} units, ${fmtMs(report.durationMs)})`);
        say(`${name} pass at 20 ms over ${fmtInt(items)} items, run ${i + 1}: ${runs.at(-1)}`);
        if (report.status !== 'incomplete') break;
      }
      proxy.setDelay(0);
      await scenarioOf(name, 'nothing');
      const limit =
        scale === 1
          ? `timeout ${JOBS[name].timeoutMinutes} min`
          : `timeout scaled to ${fmtMs(timeoutMs)} (${fmtInt(items)}/10,000 of ${JOBS[name].timeoutMinutes} min, reserve likewise)`;
      passes.push(
        `${name} (${limit}), one unit on each of ${fmtInt(items)} items at 20 ms: ${runs.length} run(s) for the full pass${runs.at(-1)?.startsWith('incomplete') ? ' (unfinished: stopped after 10)' : ''}, ${fmtInt(statements)} statements, ${fmtMs(performance.now() - t)} in all: ${runs.join('; ')}`,
      );
      checkpoint();
    };

    // RollUps refreshed once, so "nothing to do" finds each within its refresh_lag.
    await scenarioOf('rollup-refresh', 'one');
    await runJob(JOBS['rollup-refresh'], job, scheduled, unlimited);
    for (const delayMs of delays) {
      for (const name of JOB_NAMES) {
        const items = name === 'rollup-refresh' ? rollups : small.tables;
        await run(name, 'nothing', items, delayMs, false);
        await run(name, 'one', items, delayMs, true);
      }
    }

    // The same pass over the small fleet, its timeout (and the budget's reserve) scaled by N / 10,000:
    // the time per table of 10,000 tables in 5 minutes.
    await pass('partition-manager', small.tables, small.tables / 10_000);

    if (large) {
      t0 = Date.now();
      await addTables(fresh, small.tables + 1, large, 100);
      await admin.query('ANALYZE');
      say(`grown to ${fmtInt(large)} ChronoTables in ${fmtMs(Date.now() - t0)}`);
      notes.push(
        `build: grown to ${fmtInt(large)} ChronoTables in ${fmtMs(Date.now() - t0)} (set-based, 100 tables a statement)`,
      );
      await scenarioOf('rollup-refresh', 'one');
      await runJob(JOBS['rollup-refresh'], job, scheduled, unlimited);
      for (const delayMs of delays) {
        for (const name of JOB_NAMES) {
          await run(name, 'nothing', name === 'rollup-refresh' ? rollups : large, delayMs, false);
        }
      }
      // One unit on every item at 20 ms, run after run under each job's own timeout until done:
      // Partition Manager's 5 minutes do not hold 10,000 calls at 40 ms a round trip, so the time
      // budget stops it and the next runs resume; the others' timeouts hold their whole fleet.
      for (const name of JOB_NAMES) await pass(name, name === 'rollup-refresh' ? rollups : large, 1);
      for (const name of JOB_NAMES) {
        await run(name, 'one', name === 'rollup-refresh' ? rollups : large, 0, false);
      }
    }
  } finally {
    await job?.end().catch(() => {});
    await baseline?.end().catch(() => {});
    await proxy.close();
    await admin.end();
  }
  return result();
}

function perUnit(m: Measure): number {
  return m.units > 0 ? m.statements / m.units : Number.NaN;
}

/** The whole table, as note lines. */
function table(measures: Measure[]): string[] {
  const head = [
    'job',
    'scenario',
    'items',
    'delay',
    'wall',
    'statements',
    'per unit',
    'baseline wall',
    'baseline stmts',
    'wall / baseline',
    'peak RSS',
  ];
  const lines = measures.map((m) => [
    m.job,
    m.scenario === 'one' ? 'one unit each' : 'nothing to do',
    fmtInt(m.items),
    `${m.delayMs} ms`,
    fmtMs(m.wallMs),
    fmtInt(m.statements),
    m.units > 0 ? fmtRatio(perUnit(m), 3) : '-',
    m.baseline ? fmtMs(m.baseline.wallMs) : '-',
    m.baseline ? fmtInt(m.baseline.statements) : '-',
    m.baseline ? fmtRatio(m.wallMs / m.baseline.wallMs) : '-',
    `${Math.round(m.peakRssMb)} MB`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const fmt = (l: string[]) => l.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ');
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('-|-'), ...lines.map(fmt)];
}

function rows(measures: Measure[], passes: string[], quick: boolean): Row[] {
  const out: Row[] = [];
  for (const job of JOB_NAMES) {
    const mine = measures.filter((m) => m.job === job);
    const nothing = mine.filter((m) => m.scenario === 'nothing');
    const sizes = [...new Set(nothing.map((m) => m.items))].sort((a, b) => a - b);
    const counts = [...new Set(nothing.map((m) => m.statements))];
    if (nothing.length > 0)
      out.push({
        section: 'latency',
        measurement: `${job}, nothing to do: statements at ${sizes.map(fmtInt).join(' / ')} items (every delay)`,
        figure: counts.join(' / '),
        target: 'constant in N',
        met: counts.length === 1,
      });
    const slowest = Math.max(...nothing.map((m) => m.delayMs));
    const worst = nothing.filter((m) => m.delayMs === slowest).sort((a, b) => b.items - a.items)[0];
    if (worst)
      out.push({
        section: 'latency',
        measurement: `${job}, nothing to do at ${fmtInt(worst.items)} items and ${slowest} ms: wall time`,
        figure: fmtMs(worst.wallMs),
        target: '< 10 s',
        met: worst.wallMs < 10_000 && worst.status === 'ok',
      });
    const one = mine.filter((m) => m.scenario === 'one');
    if (one.length > 0) {
      const maxPerUnit = Math.max(...one.map(perUnit));
      out.push({
        section: 'latency',
        measurement: `${job}, one unit each: statements per unit (worst of ${one.length} runs at ${[...new Set(one.map((m) => fmtInt(m.items)))].join(' / ')} items)`,
        figure: fmtRatio(maxPerUnit, 3),
        target: quick ? '<= 1.1 (full mode; too few items here)' : '<= 1.1',
        met: quick ? null : maxPerUnit <= 1.1,
      });
    }
    const at5 = one.find((m) => m.delayMs === 5 && m.baseline);
    if (at5?.baseline)
      out.push({
        section: 'latency',
        measurement: `${job}, one unit each at ${fmtInt(at5.items)} items and 5 ms: wall / baseline`,
        figure: `${fmtRatio(at5.wallMs / at5.baseline.wallMs)}x (${fmtMs(at5.wallMs)} vs ${fmtMs(at5.baseline.wallMs)})`,
        target: quick ? '<= 1.2 (full mode)' : '<= 1.2',
        met: quick ? null : at5.wallMs / at5.baseline.wallMs <= 1.2,
      });
  }
  for (const p of passes)
    out.push({
      section: 'latency',
      measurement: `full pass at 20 ms: ${p.replace(/: \d+ run\(s\).*$/, '')}`,
      figure: /(\d+ run\(s\))/.exec(p)?.[1] ?? '?',
      target: 'resumed by the next runs',
      met: null,
    });
  return out;
}

await section('latency', main);
