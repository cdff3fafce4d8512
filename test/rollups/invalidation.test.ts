// Invalidation below the watermark: statement-level triggers with transition tables on the ChronoTable
// and on every partition (including partitions made later), capturing late INSERT, UPDATE (in place and
// across buckets and partitions), DELETE and COPY; invalidate_rollup_range; enable/disable.
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectError } from '../support/pg-assert.ts';
import { bucketStart, DAY_MS, HOUR_MS, MINUTE_MS } from '../support/time.ts';
import {
  composeQuery,
  copyRows,
  createRollup,
  insertRows,
  perDeviceQuery,
  qname,
  refresh,
  rollupFixture,
  rollupTable,
  setLag,
} from './helpers.ts';
import { count, diff, pendingBuckets, registry } from './support/read.ts';

let client: pg.Client;
let day0: number;
let sourceId: number;
/** Watermark of inv_h after the setup: day0 + 71 h. */
let w: number;

const SRC = 'inv_src';
const iso = (ms: number) => new Date(ms).toISOString();
const hourOf = (ms: number) => iso(bucketStart(ms, HOUR_MS));

beforeAll(async () => {
  ({ client, day0, sourceId } = await rollupFixture({
    source: { name: SRC, hours: 72, coverDays: 4 },
    rollups: { inv_h: { query: perDeviceQuery(SRC), source: SRC, invalidation: true } },
  }));
  w = (await registry(client, 'inv_h')).watermark!.getTime();
});

/** Refreshes inv_h and checks it against its query from scratch; the log is then empty. */
async function refreshedExactly(name = 'inv_h'): Promise<void> {
  expect(await refresh(client, name)).toBe(true);
  expect(await diff(client, rollupTable(name), perDeviceQuery(SRC))).toEqual([]);
  expect(await pendingBuckets(client, name)).toEqual([]);
}

interface TriggerRow {
  rel: string;
  tgname: string;
  tgtype: number;
  tgoldtable: string | null;
  tgnewtable: string | null;
  tgenabled: string;
}

/** The RollUp invalidation triggers on the ChronoTable and each of its attached partitions. */
async function rollupTriggers(): Promise<{ relations: string[]; triggers: TriggerRow[] }> {
  const { rows: rels } = await client.query<{ rel: string }>(
    `SELECT $1::regclass::text AS rel
     UNION ALL SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = $1::regclass ORDER BY 1`,
    [qname('public', SRC)],
  );
  const { rows } = await client.query<TriggerRow>(
    `SELECT t.tgrelid::regclass::text AS rel, t.tgname, t.tgtype, t.tgoldtable, t.tgnewtable, t.tgenabled
       FROM pg_trigger t WHERE t.tgrelid::regclass::text = ANY ($1) AND t.tgname LIKE 'lakets_rollup%'
      ORDER BY 1, 2`,
    [rels.map((r) => r.rel)],
  );
  return { relations: rels.map((r) => r.rel), triggers: rows };
}

// pg_trigger.tgtype bits (src/include/catalog/pg_trigger.h).
const ROW = 1;
const BEFORE = 2;
const INSERT = 4;
const DELETE = 8;
const UPDATE = 16;
const INSTEAD = 64;

function expectStatementTriggers(relations: string[], triggers: TriggerRow[]): void {
  expect(relations.length).toBeGreaterThan(1);
  for (const rel of relations) {
    const mine = triggers.filter((t) => t.rel === rel);
    expect(
      mine.map((t) => t.tgname),
      rel,
    ).toEqual(['lakets_rollup_del', 'lakets_rollup_ins', 'lakets_rollup_upd']);
    for (const t of mine) {
      // AFTER ... FOR EACH STATEMENT: one firing per statement, whatever the number of rows.
      expect(t.tgtype & (ROW | BEFORE | INSTEAD), `${rel} ${t.tgname}`).toBe(0);
      expect(t.tgenabled).toBe('O');
    }
    const byName = Object.fromEntries(mine.map((t) => [t.tgname, t]));
    expect(byName['lakets_rollup_ins']!.tgtype & (INSERT | UPDATE | DELETE)).toBe(INSERT);
    expect(byName['lakets_rollup_upd']!.tgtype & (INSERT | UPDATE | DELETE)).toBe(UPDATE);
    expect(byName['lakets_rollup_del']!.tgtype & (INSERT | UPDATE | DELETE)).toBe(DELETE);
    // Transition tables carry the rows the statement wrote.
    expect([byName['lakets_rollup_ins']!.tgnewtable, byName['lakets_rollup_ins']!.tgoldtable]).toEqual([
      'lakets_new',
      null,
    ]);
    expect([byName['lakets_rollup_upd']!.tgnewtable, byName['lakets_rollup_upd']!.tgoldtable]).toEqual([
      'lakets_new',
      'lakets_old',
    ]);
    expect([byName['lakets_rollup_del']!.tgnewtable, byName['lakets_rollup_del']!.tgoldtable]).toEqual([
      null,
      'lakets_old',
    ]);
  }
}

/** The partition (schema-qualified, quoted) holding `ms`. */
async function partitionOf(ms: number): Promise<string> {
  const { rows } = await client.query<{ chunk_name: string }>(
    `SELECT chunk_name FROM lakets._chunk_metadata WHERE chronotable_id = $1 AND range_start <= $2 AND range_end > $2
       AND status <> 'dropped'`,
    [sourceId, new Date(ms)],
  );
  const [schema, name] = rows[0]!.chunk_name.split('.');
  return qname(schema!, name!);
}

describe('invalidation triggers', () => {
  it('are statement-level AFTER triggers with transition tables on the ChronoTable and each partition', async () => {
    const { relations, triggers } = await rollupTriggers();
    expectStatementTriggers(relations, triggers);
  });

  it('are installed on partitions created later by _ensure_partitions', async () => {
    const before = (await rollupTriggers()).relations.length;
    const { rows } = await client.query(
      'SELECT lakets._ensure_partitions($1, p_range_start => $2, p_range_end => $3) AS n',
      [sourceId, new Date(day0 + 10 * DAY_MS), new Date(day0 + 12 * DAY_MS)],
    );
    expect(rows[0].n).toBe(2);
    const { relations, triggers } = await rollupTriggers();
    expect(relations.length).toBe(before + 2);
    expectStatementTriggers(relations, triggers);
  });

  it('fire once per statement, however many rows and partitions it writes', async () => {
    await client.query('BEGIN');
    try {
      await client.query(`SET LOCAL track_functions = 'all'`);
      await client.query(
        `INSERT INTO ${SRC} (ts, device, v) SELECT $1::timestamptz + g * interval '7 minutes', g % 3, g FROM generate_series(0, 599) g`,
        [new Date(day0 + 2 * HOUR_MS)],
      );
      await client.query(`UPDATE ${SRC} SET v = v + 1 WHERE ts < $1`, [new Date(day0 + 2 * DAY_MS)]);
      const { rows } = await client.query<{ calls: string }>(
        `SELECT calls FROM pg_stat_xact_user_functions WHERE schemaname = 'lakets' AND funcname = '_rollup_invalidate'`,
      );
      // 600 rows over 3 partitions, then an UPDATE of ~750 rows: two firings.
      expect(rows.map((r) => Number(r.calls))).toEqual([2]);
    } finally {
      await client.query('ROLLBACK');
    }
  });
});

describe('late writes below the watermark are logged and re-aggregated', () => {
  it('INSERT: only the buckets below the watermark are logged (appends are the refresh window’s job)', async () => {
    const late = day0 + 10 * HOUR_MS + 33 * MINUTE_MS;
    await insertRows(client, SRC, [
      { ts: new Date(late), device: 0, v: 500 },
      { ts: new Date(late + 2 * MINUTE_MS), device: 1, v: 501 },
      { ts: new Date(w + 30 * MINUTE_MS), device: 2, v: 502 },
    ]);
    expect(await pendingBuckets(client, 'inv_h')).toEqual([hourOf(late)]);
    // A statement with only rows at or above the watermark logs nothing.
    await insertRows(client, SRC, [{ ts: new Date(w + 2 * HOUR_MS), device: 2, v: 503 }]);
    expect(await pendingBuckets(client, 'inv_h')).toEqual([hourOf(late)]);
    await refreshedExactly();
  });

  it('UPDATE in place logs the row’s bucket', async () => {
    const t = day0 + 30 * HOUR_MS;
    const { rowCount } = await client.query(
      `UPDATE ${SRC} SET v = v * 3 WHERE ts >= $1 AND ts < $2 AND device = 1`,
      [new Date(t), new Date(t + HOUR_MS)],
    );
    expect(rowCount).toBe(1);
    expect(await pendingBuckets(client, 'inv_h')).toEqual([iso(t)]);
    await refreshedExactly();
  });

  it('UPDATE that moves a row to another bucket and partition logs both buckets', async () => {
    const from = day0 + 5 * HOUR_MS; // day 0
    const to = day0 + DAY_MS + 17 * HOUR_MS + 45 * MINUTE_MS; // day 1
    const { rowCount } = await client.query(
      `UPDATE ${SRC} SET ts = $3 WHERE ts >= $1 AND ts < $2 AND device = 2`,
      [new Date(from), new Date(from + HOUR_MS), new Date(to)],
    );
    expect(rowCount).toBe(1);
    expect(await pendingBuckets(client, 'inv_h')).toEqual([iso(from), hourOf(to)].sort());
    await refreshedExactly();
    // The old bucket lost the device's only row: its RollUp row is gone.
    expect(await count(client, `${rollupTable('inv_h')} WHERE bucket = '${iso(from)}' AND device = 2`)).toBe(
      0,
    );
  });

  it('DELETE logs the deleted rows’ buckets, and an emptied bucket disappears', async () => {
    const t = day0 + 40 * HOUR_MS;
    const { rowCount } = await client.query(`DELETE FROM ${SRC} WHERE ts >= $1 AND ts < $2`, [
      new Date(t),
      new Date(t + HOUR_MS),
    ]);
    expect(rowCount).toBeGreaterThanOrEqual(3);
    expect(await pendingBuckets(client, 'inv_h')).toEqual([iso(t)]);
    await refreshedExactly();
    expect(await count(client, `${rollupTable('inv_h')} WHERE bucket = '${iso(t)}'`)).toBe(0);
  });

  it('COPY logs the buckets of the copied rows below the watermark', async () => {
    const top = (await registry(client, 'inv_h')).watermark!.getTime();
    const times = [
      day0 + 3 * HOUR_MS + MINUTE_MS,
      day0 + 3 * HOUR_MS + 59 * MINUTE_MS,
      day0 + 50 * HOUR_MS,
      top + HOUR_MS,
    ];
    await copyRows(
      client,
      SRC,
      times.map((t, i) => ({ ts: new Date(t), device: i % 3, v: 900 + i })),
    );
    expect(await pendingBuckets(client, 'inv_h')).toEqual([hourOf(times[0]!), hourOf(times[2]!)]);
    await refreshedExactly();
  });

  it('writes straight into a partition are logged too, also into a partition made later', async () => {
    const t = day0 + 20 * HOUR_MS + 10 * MINUTE_MS;
    await client.query(`INSERT INTO ${await partitionOf(t)} (ts, device, v) VALUES ($1, 0, 77)`, [
      new Date(t),
    ]);
    expect(await pendingBuckets(client, 'inv_h')).toEqual([hourOf(t)]);
    await refreshedExactly();

    // Move the watermark past a later partition, then write into that partition directly.
    const later = day0 + 10 * DAY_MS + 5 * HOUR_MS;
    await insertRows(client, SRC, [{ ts: new Date(day0 + 11 * DAY_MS + HOUR_MS), device: 0, v: 1 }]);
    await refreshedExactly();
    await client.query(`DELETE FROM ${await partitionOf(later)} WHERE false`); // a statement with no rows logs nothing
    await client.query(`INSERT INTO ${await partitionOf(later)} (ts, device, v) VALUES ($1, 1, 5)`, [
      new Date(later),
    ]);
    expect(await pendingBuckets(client, 'inv_h')).toEqual([hourOf(later)]);
    await refreshedExactly();
  });
});

describe('invalidate_rollup_range', () => {
  it('logs every bucket of [from, to), starting at the bucket holding from, and returns their count', async () => {
    const from = day0 + 2 * HOUR_MS + 30 * MINUTE_MS;
    const { rows } = await client.query(`SELECT lakets.invalidate_rollup_range('inv_h', $1, $2) AS n`, [
      new Date(from),
      new Date(day0 + 7 * HOUR_MS),
    ]);
    expect(rows[0].n).toBe(5);
    expect(await pendingBuckets(client, 'inv_h')).toEqual(
      [2, 3, 4, 5, 6].map((h) => iso(day0 + h * HOUR_MS)),
    );
    // Logging a bucket again counts it again (and keeps one entry per bucket).
    const again = await client.query(`SELECT lakets.invalidate_rollup_range('inv_h', $1, $2) AS n`, [
      new Date(day0 + 6 * HOUR_MS),
      new Date(day0 + 8 * HOUR_MS),
    ]);
    expect(again.rows[0].n).toBe(2);
    expect((await pendingBuckets(client, 'inv_h')).length).toBe(6);
    await refreshedExactly();
  });

  it('rejects an empty or reversed range and unknown RollUps', async () => {
    await expectError(
      () => client.query(`SELECT lakets.invalidate_rollup_range('inv_h', $1, $1)`, [new Date(day0)]),
      'invalidate_rollup_range needs p_from < p_to',
    );
    await expectError(
      () =>
        client.query(`SELECT lakets.invalidate_rollup_range('inv_nope', $1, $2)`, [
          new Date(day0),
          new Date(w),
        ]),
      `RollUp 'inv_nope' does not exist`,
    );
  });
});

describe('enable/disable_rollup_invalidation', () => {
  it('install and remove the triggers; a source shared by two RollUps keeps them while one needs them', async () => {
    await createRollup(client, 'inv_2h', perDeviceQuery(SRC, '2 hours'), {
      interval: '2 hours',
      source: SRC,
    });
    await setLag(client, '0', ['inv_2h']);
    await client.query(`SELECT lakets.enable_rollup_invalidation('inv_2h')`);
    expect((await registry(client, 'inv_2h')).invalidation_enabled).toBe(true);

    const late = day0 + 9 * HOUR_MS + 15 * MINUTE_MS;
    await insertRows(client, SRC, [{ ts: new Date(late), device: 0, v: 1 }]);
    expect(await pendingBuckets(client, 'inv_h')).toEqual([hourOf(late)]);
    expect(await pendingBuckets(client, 'inv_2h')).toEqual([iso(bucketStart(late, 2 * HOUR_MS))]);
    await refreshedExactly();
    expect(await refresh(client, 'inv_2h')).toBe(true);

    // inv_h off: the triggers stay for inv_2h, only inv_2h logs.
    await client.query(`SELECT lakets.disable_rollup_invalidation('inv_h')`);
    expect((await registry(client, 'inv_h')).invalidation_enabled).toBe(false);
    let { relations, triggers } = await rollupTriggers();
    expectStatementTriggers(relations, triggers);
    await insertRows(client, SRC, [{ ts: new Date(late + 5 * HOUR_MS), device: 1, v: 2 }]);
    expect(await pendingBuckets(client, 'inv_h')).toEqual([]);
    expect(await pendingBuckets(client, 'inv_2h')).toEqual([
      iso(bucketStart(late + 5 * HOUR_MS, 2 * HOUR_MS)),
    ]);

    // Both off: no trigger left anywhere, and late writes are not logged.
    await client.query(`SELECT lakets.disable_rollup_invalidation('inv_2h')`);
    ({ relations, triggers } = await rollupTriggers());
    expect(triggers).toEqual([]);
    await client.query(`DELETE FROM lakets._rollup_invalidation_log`);
    await insertRows(client, SRC, [{ ts: new Date(late + 7 * HOUR_MS), device: 1, v: 3 }]);
    expect(await pendingBuckets(client, 'inv_2h')).toEqual([]);

    // On again: triggers back on every partition, and the next late write is logged.
    await client.query(`SELECT lakets.enable_rollup_invalidation('inv_h')`);
    ({ relations, triggers } = await rollupTriggers());
    expectStatementTriggers(relations, triggers);
    await insertRows(client, SRC, [{ ts: new Date(late + 8 * HOUR_MS), device: 2, v: 4 }]);
    expect(await pendingBuckets(client, 'inv_h')).toEqual([hourOf(late + 8 * HOUR_MS)]);
    // (the rows written while it was off are the user's to invalidate)
    await client.query(`SELECT lakets.invalidate_rollup_range('inv_h', $1, $2)`, [
      new Date(day0),
      new Date(w),
    ]);
    await refreshedExactly();
  });

  it('refuses a RollUp over RollUps (its dependencies invalidate it) and unknown names', async () => {
    await createRollup(client, 'inv_d', composeQuery('_rollup_inv_h', '1 day'), {
      interval: '1 day',
      dependsOn: ['inv_h'],
    });
    await expectError(
      () => client.query(`SELECT lakets.enable_rollup_invalidation('inv_d')`),
      `lakets: RollUp 'inv_d' has no source ChronoTable`,
    );
    await expectError(
      () => client.query(`SELECT lakets.enable_rollup_invalidation('inv_nope')`),
      'does not exist',
    );
    await expectError(
      () => client.query(`SELECT lakets.disable_rollup_invalidation('inv_nope')`),
      'does not exist',
    );
  });
});
