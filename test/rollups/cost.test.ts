// Cost proportional to change: after the initial load, a refresh reads the recent partitions only
// (through the lakets_window view, pruned at executor start-up), and a RollUp over a RollUp reads
// the lower RollUp through its window too. Ingest stays cheap: one trigger firing per statement.
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { DAY_MS, MINUTE_MS } from '../support/time.ts';
import {
  composeQuery,
  createRollups,
  insertRows,
  perDeviceQuery,
  refresh,
  rollupFixture,
  rollupTable,
} from './helpers.ts';
import { diff, registry } from './support/read.ts';

let client: pg.Client;
let day0: number;
const SRC = 'cost_src';
const DAYS = 8;
const ROWS = DAYS * 24 * 60; // one row a minute
let partitions: number;

beforeAll(async () => {
  ({ client, day0 } = await rollupFixture({
    daysAgo: 10,
    source: { name: SRC, chunk: '6 hours', coverDays: DAYS },
  }));
  await client.query(
    `INSERT INTO ${SRC} (ts, device, v) SELECT $1::timestamptz + g * interval '1 minute', g % 4, g % 97 FROM generate_series(0, $2 - 1) g`,
    [new Date(day0), ROWS],
  );
  await client.query(`ANALYZE ${SRC}`);
  partitions = (
    await client.query('SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = $1::regclass', [SRC])
  ).rows[0].n;
  await createRollups(client, {
    cost_h: { query: perDeviceQuery(SRC), source: SRC },
    cost_d: { query: composeQuery('_rollup_cost_h', '1 day'), interval: '1 day', dependsOn: ['cost_h'] },
  });
});

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Subplans Removed'?: number;
  Plans?: PlanNode[];
}

function walk(node: PlanNode, visit: (n: PlanNode) => void): void {
  visit(node);
  for (const child of node.Plans ?? []) walk(child, visit);
}

/**
 * Runs a RollUp's stored refresh_query under EXPLAIN ANALYZE with the window _refresh_range would set
 * for a watermark refresh ([watermark - bucket, infinity) widened by one bucket each side).
 */
async function explainRefresh(name: string): Promise<{ scanned: Map<string, number>; removed: number }> {
  const r = await registry(client, name);
  const { rows: width } = await client.query<{ ms: number }>(
    `SELECT extract(epoch FROM bucket_interval) * 1000 AS ms FROM lakets._rollup_registry WHERE name = $1`,
    [name],
  );
  const bucket = Number(width[0]!.ms);
  await client.query('BEGIN');
  try {
    await client.query(
      `SELECT set_config('lakets.window_lo', $1, true), set_config('lakets.window_hi', 'infinity', true)`,
      [new Date(r.watermark!.getTime() - 2 * bucket).toISOString()],
    );
    const { rows } = await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${r.refresh_query}`);
    const plan = rows[0]['QUERY PLAN'][0].Plan as PlanNode;
    const scanned = new Map<string, number>();
    let removed = 0;
    walk(plan, (n) => {
      removed += n['Subplans Removed'] ?? 0;
      if (n['Relation Name'] && /Scan/.test(n['Node Type'])) {
        scanned.set(
          n['Relation Name'],
          (scanned.get(n['Relation Name']) ?? 0) + (n['Actual Rows'] ?? 0) * (n['Actual Loops'] ?? 1),
        );
      }
    });
    return { scanned, removed };
  } finally {
    await client.query('ROLLBACK');
  }
}

describe('refresh cost', () => {
  it('the stored refresh query reads the source through its lakets_window view', async () => {
    const h = await registry(client, 'cost_h');
    expect(h.refresh_query).toMatch(/FROM lakets_window\.cost_src\b/);
    expect(h.refresh_query).not.toMatch(/public\.cost_src\b/);
    const d = await registry(client, 'cost_d');
    expect(d.refresh_query).toMatch(/FROM lakets_window\._rollup_cost_h\b/);
    expect(d.refresh_query).not.toMatch(/public\._rollup_cost_h\b/);
  });

  it('after one new row, the refresh query prunes to the newest partitions and reads a few hours of rows', async () => {
    const w = (await registry(client, 'cost_h')).watermark!.getTime();
    await insertRows(client, SRC, [{ ts: new Date(w + 30 * MINUTE_MS + 7_000), device: 9, v: 1 }]);
    const { scanned, removed } = await explainRefresh('cost_h');
    expect(partitions).toBeGreaterThanOrEqual(DAYS * 4);
    // Window [w - 2 h, infinity) with 6-hour chunks: at most 2 partitions with data remain, plus the empty
    // future ones; all the older ones are removed at executor start-up.
    expect(removed).toBeGreaterThanOrEqual(DAYS * 4 - 2);
    const read = [...scanned.values()].reduce((a, b) => a + b, 0);
    // Two hours and a bit of the minute rows, not the ~11 500 rows of the table.
    expect(read).toBeGreaterThan(0);
    expect(read).toBeLessThanOrEqual(3 * 60 + 1);
    for (const rel of scanned.keys()) expect(rel.startsWith('cost_src_')).toBe(true);
  });

  it('the refresh itself reads that little, and is exact', async () => {
    // Table statistics not yet flushed (the initial load's) would show in the pg_stat_xact_* views:
    // flush them first, so the views count this transaction only.
    await client.query('SELECT pg_stat_force_next_flush()');
    await client.query('SELECT 1');
    await client.query('BEGIN');
    try {
      expect(await refresh(client, 'cost_h')).toBe(true);
      // This transaction's own table statistics, per partition of the source. The planner probes each
      // partition's time index for its actual min/max (at most a couple of index entries: the window is
      // outside the histogram); only the partitions in the window are read for real.
      const { rows } = await client.query<{ relname: string; read: string }>(
        `SELECT s.relname, s.seq_tup_read + coalesce(s.idx_tup_fetch, 0) AS read
           FROM pg_stat_xact_user_tables s JOIN pg_inherits i ON i.inhrelid = s.relid
          WHERE i.inhparent = $1::regclass`,
        [SRC],
      );
      const read = rows.map((r) => Number(r.read));
      const reallyRead = read.filter((n) => n > 2);
      expect(reallyRead.length).toBeGreaterThan(0);
      expect(reallyRead.length).toBeLessThanOrEqual(2);
      // Two hours and a bit of the minute rows (plus the probes), not the ~11 500 rows of the table.
      expect(read.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(3 * 60 + 1 + 2 * partitions);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    }
    expect(await diff(client, rollupTable('cost_h'), perDeviceQuery(SRC))).toEqual([]);
  });

  it('a RollUp over a RollUp reads the lower RollUp through its window, exactly', async () => {
    expect(await refresh(client, 'cost_d')).toBe(true);
    expect(await diff(client, rollupTable('cost_d'), composeQuery('_rollup_cost_h', '1 day'))).toEqual([]);
    const { scanned } = await explainRefresh('cost_d');
    // The window on the hourly table is [watermark - 2 days, infinity): 3 of its 8 days of rows (4 devices
    // an hour, plus the one row of device 9).
    const read = [...scanned.values()].reduce((a, b) => a + b, 0);
    expect([...scanned.keys()]).toEqual(['_rollup_cost_h']);
    expect(read).toBeGreaterThan(0);
    expect(read).toBeLessThanOrEqual(3 * 24 * 4 + 1);
  });
});

describe('ingest cost', () => {
  it('with invalidation on, a 2 000-row late INSERT fires the invalidation trigger once and logs each bucket once', async () => {
    await client.query(`SELECT lakets.enable_rollup_invalidation('cost_h')`);
    await client.query('BEGIN');
    try {
      await client.query(`SET LOCAL track_functions = 'all'`);
      await client.query(
        `INSERT INTO ${SRC} (ts, device, v) SELECT $1::timestamptz + g * interval '30 seconds', g % 4, 1 FROM generate_series(0, 1999) g`,
        [new Date(day0 + DAY_MS)],
      );
      const { rows } = await client.query<{ calls: string }>(
        `SELECT calls FROM pg_stat_xact_user_functions WHERE schemaname = 'lakets' AND funcname = '_rollup_invalidate'`,
      );
      expect(rows.map((r) => Number(r.calls))).toEqual([1]);
      // 2 000 rows 30 s apart: 1 000 minutes, i.e. 17 hourly buckets, each logged once.
      const { rows: log } = await client.query(
        `SELECT count(*)::int AS n, count(DISTINCT bucket_start)::int AS d FROM lakets._rollup_invalidation_log`,
      );
      expect(log[0]).toEqual({ n: 17, d: 17 });
    } finally {
      await client.query('ROLLBACK');
    }
  });
});
