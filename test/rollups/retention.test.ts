// The retention rule: once execute_retention has dropped a source chunk, the RollUp buckets over it
// keep their last value (whatever is logged or refreshed later), while buckets over active and tiered
// chunks are still re-aggregated. Retention itself never touches RollUp tables or the log.
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { DAY_MS, HOUR_MS, MINUTE_MS } from '../support/time.ts';
import { cascade, composeQuery, insertRows, perDeviceQuery, rollupFixture, rollupTable } from './helpers.ts';
import { diff, pendingBuckets, registry } from './support/read.ts';

let client: pg.Client;
let day0: number;
let sourceId: number;
const SRC = 'ret_src';
const H = rollupTable('ret_h');
const D = rollupTable('ret_d');
const iso = (ms: number) => new Date(ms).toISOString();

beforeAll(async () => {
  // Day 0 ends between 6 and 5 days ago: a 5-day retention drops exactly day 0.
  ({ client, day0, sourceId } = await rollupFixture({
    daysAgo: 6,
    source: { name: SRC, hours: 96, coverDays: 5 },
    rollups: {
      ret_h: { query: perDeviceQuery(SRC), source: SRC, invalidation: true },
      ret_d: { query: composeQuery('_rollup_ret_h', '1 day'), interval: '1 day', dependsOn: ['ret_h'] },
    },
  }));
});

/** ret_h's rows over day 0 (the chunk retention drops), as comparable JSON. */
async function dayZeroRows(): Promise<unknown[]> {
  const { rows } = await client.query(
    `SELECT * FROM ${H} WHERE bucket >= $1 AND bucket < $2 ORDER BY bucket, device`,
    [new Date(day0), new Date(day0 + DAY_MS)],
  );
  return rows;
}

/** ret_h is exact over resident data, and ret_d is exact over ret_h (frozen buckets included). */
async function expectExactOutsideDayZero(): Promise<void> {
  expect(await diff(client, H, perDeviceQuery(SRC), 'bucket >= $1', [new Date(day0 + DAY_MS)])).toEqual([]);
  expect(await diff(client, D, composeQuery('_rollup_ret_h', '1 day'))).toEqual([]);
}

let frozen: unknown[];

describe('retention and RollUps', () => {
  it('execute_retention drops the chunk and leaves RollUp tables and the invalidation log alone', async () => {
    // Late writes logged before the drop: one in day 0, one in day 2.
    const lateZero = day0 + 4 * HOUR_MS + 10 * MINUTE_MS;
    const lateTwo = day0 + 2 * DAY_MS + 6 * HOUR_MS + 10 * MINUTE_MS;
    await insertRows(client, SRC, [
      { ts: new Date(lateZero), device: 0, v: 10_000 },
      { ts: new Date(lateTwo), device: 0, v: 20_000 },
    ]);
    const pending = await pendingBuckets(client, 'ret_h');
    expect(pending).toEqual([iso(day0 + 4 * HOUR_MS), iso(day0 + 2 * DAY_MS + 6 * HOUR_MS)]);
    frozen = await dayZeroRows();
    expect(frozen.length).toBe(24 * 3);
    const rollupRows = (await client.query(`SELECT count(*)::int AS n FROM ${H}`)).rows[0].n;

    await client.query(`SELECT lakets.add_retention_policy($1, interval '5 days')`, [SRC]);
    const { rows } = await client.query(`SELECT lakets.execute_retention($1) AS n`, [SRC]);
    expect(rows[0].n).toBe(1);
    const { rows: chunks } = await client.query(
      `SELECT range_start, status FROM lakets._chunk_metadata WHERE chronotable_id = $1 AND range_start < $2 ORDER BY 1`,
      [sourceId, new Date(day0 + 4 * DAY_MS)],
    );
    expect(chunks.map((c) => [c.range_start.toISOString(), c.status])).toEqual([
      [iso(day0), 'dropped'],
      [iso(day0 + DAY_MS), 'active'],
      [iso(day0 + 2 * DAY_MS), 'active'],
      [iso(day0 + 3 * DAY_MS), 'active'],
    ]);
    expect(await pendingBuckets(client, 'ret_h')).toEqual(pending);
    expect((await client.query(`SELECT count(*)::int AS n FROM ${H}`)).rows[0].n).toBe(rollupRows);
    expect(await dayZeroRows()).toEqual(frozen);
  });

  it('a refresh keeps the last value of buckets over the dropped chunk and re-aggregates the rest', async () => {
    const rows = await cascade(client);
    expect(rows.every((r) => r.refreshed)).toBe(true);
    // Not emptied although the source rows are gone, and not re-aggregated although a write was logged.
    expect(await dayZeroRows()).toEqual(frozen);
    await expectExactOutsideDayZero();
    expect(await pendingBuckets(client, 'ret_h')).toEqual([]);
    // The day-0 total of the level above is the sum of the kept buckets.
    const { rows: d } = await client.query(`SELECT sum(total)::bigint AS t FROM ${D} WHERE bucket = $1`, [
      new Date(day0),
    ]);
    const kept = (frozen as Array<{ total: string }>).reduce((s, r) => s + Number(r.total), 0);
    expect(Number(d[0].t)).toBe(kept);
  });

  it('invalidate_rollup_range skips buckets in the dropped chunk and counts the others', async () => {
    const { rows } = await client.query(`SELECT lakets.invalidate_rollup_range('ret_h', $1, $2) AS n`, [
      new Date(day0),
      new Date(day0 + 4 * DAY_MS),
    ]);
    expect(rows[0].n).toBe(3 * 24);
    const pending = await pendingBuckets(client, 'ret_h');
    expect(pending.length).toBe(3 * 24);
    expect(pending[0]).toBe(iso(day0 + DAY_MS));
    // A range wholly inside the dropped chunk logs nothing.
    const none = await client.query(`SELECT lakets.invalidate_rollup_range('ret_h', $1, $2) AS n`, [
      new Date(day0 + HOUR_MS),
      new Date(day0 + 5 * HOUR_MS),
    ]);
    expect(none.rows[0].n).toBe(0);
    await cascade(client);
    expect(await dayZeroRows()).toEqual(frozen);
    await expectExactOutsideDayZero();
  });

  it('a refresh never rewrites a frozen bucket, even one put in the log by hand or in its window', async () => {
    const h = await registry(client, 'ret_h');
    await client.query(
      `INSERT INTO lakets._rollup_invalidation_log (rollup_id, bucket_start)
       SELECT $1, g FROM generate_series($2::timestamptz, $3::timestamptz, interval '1 hour') g`,
      [h.id, new Date(day0), new Date(day0 + 23 * HOUR_MS)],
    );
    await cascade(client);
    expect(await dayZeroRows()).toEqual(frozen);
    expect(await pendingBuckets(client, 'ret_h')).toEqual([]);
    // A refresh over everything (watermark unset: the window starts at -infinity) keeps them as well.
    await client.query(`UPDATE lakets._rollup_registry SET watermark = NULL WHERE name = 'ret_h'`);
    await cascade(client);
    expect(await dayZeroRows()).toEqual(frozen);
    await expectExactOutsideDayZero();
  });

  it('buckets over tiered and active chunks are still re-aggregated', async () => {
    await client.query(
      `UPDATE lakets._chunk_metadata SET status = 'tiered', tiered_at = now() WHERE chronotable_id = $1 AND range_start = $2`,
      [sourceId, new Date(day0 + DAY_MS)],
    );
    const tiered = day0 + DAY_MS + 8 * HOUR_MS;
    const active = day0 + 2 * DAY_MS + 20 * HOUR_MS;
    await client.query(`UPDATE ${SRC} SET v = v - 333 WHERE ts >= $1 AND ts < $2`, [
      new Date(tiered),
      new Date(tiered + HOUR_MS),
    ]);
    await insertRows(client, SRC, [
      { ts: new Date(tiered + 30 * MINUTE_MS), device: 7, v: 1 },
      { ts: new Date(active + 30 * MINUTE_MS), device: 7, v: 2 },
    ]);
    expect(await pendingBuckets(client, 'ret_h')).toEqual([iso(tiered), iso(active)]);
    await cascade(client);
    await expectExactOutsideDayZero();
    expect((await client.query(`SELECT count(*)::int AS n FROM ${H} WHERE device = 7`)).rows[0].n).toBe(2);
    expect(await dayZeroRows()).toEqual(frozen);
  });
});
