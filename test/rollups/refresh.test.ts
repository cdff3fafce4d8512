// refresh_rollup: the watermark and its one-bucket overlap, late rows with and without invalidation,
// refresh_lag, the per-RollUp advisory lock (FALSE at once, never a wait), unknown names, and queries
// that cannot be windowed.
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../support/db.ts';
import { captureNotices, expectError } from '../support/pg-assert.ts';
import { DAY_MS, HOUR_MS, MINUTE_MS } from '../support/time.ts';
import {
  cascade,
  createRollup,
  hourlyRows,
  insertRows,
  makeSource,
  perDeviceQuery,
  refresh,
  rollupFixture,
  rollupTable,
  setLag,
} from './helpers.ts';
import { diff, pendingBuckets, registry } from './support/read.ts';

let db: TestDatabase;
let client: pg.Client;
let day0: number;

beforeAll(async () => {
  ({ db, client, day0 } = await rollupFixture());
});

/** A ChronoTable with 3 days of hourly rows (partitions for 4 days) and an hourly RollUp over it. */
async function hourly(
  name: string,
  options: { lag?: string } = {},
): Promise<{ table: string; watermark: number }> {
  await makeSource(client, name, {
    rows: hourlyRows(day0, 72),
    cover: { from: new Date(day0), to: new Date(day0 + 4 * DAY_MS) },
  });
  await createRollup(client, name, perDeviceQuery(name), { source: name });
  if (options.lag !== undefined) await setLag(client, options.lag, [name]);
  const r = await registry(client, name);
  return { table: rollupTable(name), watermark: r.watermark!.getTime() };
}

const iso = (ms: number) => new Date(ms).toISOString();

async function diffBuckets(table: string, source: string): Promise<string[]> {
  const rows = await diff(client, table, perDeviceQuery(source));
  return [...new Set(rows.map((r) => r.bucket.toISOString()))];
}

describe('watermark and one-bucket overlap', () => {
  it('picks up rows in the watermark bucket, the one before and above; a late row further down only with invalidation', async () => {
    const { table, watermark: w } = await hourly('rf_wm', { lag: '0' });
    expect(w).toBe(day0 + 71 * HOUR_MS);
    await insertRows(client, 'rf_wm', [
      { ts: new Date(w + 20 * MINUTE_MS), device: 0, v: 1000 }, // the watermark bucket
      { ts: new Date(w - HOUR_MS + 50 * MINUTE_MS), device: 1, v: 2000 }, // the bucket before it
      { ts: new Date(w - 5 * HOUR_MS + MINUTE_MS), device: 2, v: 3000 }, // late: 5 buckets below
      { ts: new Date(w + 3 * HOUR_MS), device: 0, v: 4000 }, // a new bucket above
    ]);
    expect(await refresh(client, 'rf_wm')).toBe(true);
    // Everything is exact except the late row's bucket, which a watermark refresh does not revisit.
    expect(await diffBuckets(table, 'rf_wm')).toEqual([iso(w - 5 * HOUR_MS)]);
    expect((await registry(client, 'rf_wm')).watermark?.getTime()).toBe(w + 3 * HOUR_MS);

    // With invalidation on, a late row is logged and re-aggregated by the next refresh.
    await client.query(`SELECT lakets.enable_rollup_invalidation('rf_wm')`);
    await insertRows(client, 'rf_wm', [
      { ts: new Date(w - 8 * HOUR_MS + 59 * MINUTE_MS), device: 1, v: 5000 },
    ]);
    expect(await pendingBuckets(client, 'rf_wm')).toEqual([iso(w - 8 * HOUR_MS)]);
    expect(await refresh(client, 'rf_wm')).toBe(true);
    expect(await pendingBuckets(client, 'rf_wm')).toEqual([]);
    // The row missed before invalidation was enabled is still missed (nothing logged it)...
    expect(await diffBuckets(table, 'rf_wm')).toEqual([iso(w - 5 * HOUR_MS)]);
    // ...until its bucket is invalidated by hand.
    const { rows } = await client.query(`SELECT lakets.invalidate_rollup_range('rf_wm', $1, $2) AS n`, [
      new Date(w - 5 * HOUR_MS + 30 * MINUTE_MS),
      new Date(w - 4 * HOUR_MS),
    ]);
    expect(rows[0].n).toBe(1);
    expect(await refresh(client, 'rf_wm')).toBe(true);
    expect(await diffBuckets(table, 'rf_wm')).toEqual([]);
  });

  it('is exact whatever the caller search_path and time zone', async () => {
    const { table, watermark: w } = await hourly('rf_path', { lag: '0' });
    const other = await db.connect({ timeZone: 'Pacific/Chatham' });
    await other.query('SET search_path = pg_catalog');
    await insertRows(client, 'rf_path', [{ ts: new Date(w + 30 * MINUTE_MS), device: 2, v: 7 }]);
    expect(await refresh(other, 'rf_path')).toBe(true);
    expect(await diffBuckets(table, 'rf_path')).toEqual([]);
  });
});

describe('an emptied RollUp', () => {
  it('has no watermark, so rows loaded again below the old one are picked up', async () => {
    // A RollUp over a few first rows (one bucket), without invalidation.
    const top = day0 + 3 * DAY_MS + 5 * HOUR_MS;
    await makeSource(client, 'rf_empty', {
      rows: [0, 1, 2].map((d) => ({ ts: new Date(top + d * MINUTE_MS), device: d, v: d })),
      cover: { from: new Date(day0), to: new Date(day0 + 4 * DAY_MS) },
    });
    await createRollup(client, 'rf_empty', perDeviceQuery('rf_empty'), { source: 'rf_empty' });
    await setLag(client, '0', ['rf_empty']);
    expect((await registry(client, 'rf_empty')).watermark?.getTime()).toBe(top);
    // They are deleted: the refresh empties the RollUp, and nothing is materialized any more.
    await client.query('DELETE FROM rf_empty');
    expect(await refresh(client, 'rf_empty')).toBe(true);
    expect(await diffBuckets(rollupTable('rf_empty'), 'rf_empty')).toEqual([]);
    expect((await registry(client, 'rf_empty')).watermark).toBeNull();
    // The real history is loaded, all of it older than the first rows were.
    await insertRows(client, 'rf_empty', hourlyRows(day0, 48));
    expect(await refresh(client, 'rf_empty')).toBe(true);
    expect(await diffBuckets(rollupTable('rf_empty'), 'rf_empty')).toEqual([]);
    expect((await registry(client, 'rf_empty')).watermark?.getTime()).toBe(day0 + 47 * HOUR_MS);
  });
});

describe('refresh_lag', () => {
  it('skips with FALSE and a NOTICE until refresh_lag has passed since the last refresh', async () => {
    const { table, watermark: w } = await hourly('rf_lag');
    const notices = captureNotices(client);
    const created = (await registry(client, 'rf_lag')).last_refreshed_at!;
    await insertRows(client, 'rf_lag', [{ ts: new Date(w + 10 * MINUTE_MS), device: 0, v: 99 }]);

    // Just created (a full load) with the default lag of 1 hour: skipped, nothing read.
    notices.take();
    expect(await refresh(client, 'rf_lag')).toBe(false);
    expect(notices.take()).toEqual([
      {
        severity: 'NOTICE',
        message: expect.stringMatching(
          /^lakets: RollUp rf_lag skipped: refreshed at .+ and refresh_lag is 01:00:00$/,
        ),
      },
    ]);
    expect((await registry(client, 'rf_lag')).last_refreshed_at).toEqual(created);
    expect(await diffBuckets(table, 'rf_lag')).toEqual([iso(w)]);

    // Once the lag has passed: refreshed.
    await client.query(
      `UPDATE lakets._rollup_registry SET last_refreshed_at = now() - interval '61 minutes' WHERE name = 'rf_lag'`,
    );
    expect(await refresh(client, 'rf_lag')).toBe(true);
    expect(notices.take()).toEqual([]);
    expect(await diffBuckets(table, 'rf_lag')).toEqual([]);
    const refreshed = (await registry(client, 'rf_lag')).last_refreshed_at!;
    expect(refreshed.getTime()).toBeGreaterThan(created.getTime());

    // And right after, skipped again; with refresh_lag 0 never skipped.
    expect(await refresh(client, 'rf_lag')).toBe(false);
    await setLag(client, '0', ['rf_lag']);
    expect(await refresh(client, 'rf_lag')).toBe(true);
    expect(await refresh(client, 'rf_lag')).toBe(true);
  });
});

describe('per-RollUp advisory lock', () => {
  for (const invalidation of [false, true]) {
    it(`another session's refresh returns FALSE at once with a NOTICE (invalidation ${invalidation ? 'on' : 'off'})`, async () => {
      const name = `rf_lock_${invalidation ? 'inv' : 'plain'}`;
      const { table, watermark: w } = await hourly(name, { lag: '0' });
      await hourly(`${name}_2`, { lag: '0' });
      if (invalidation) await client.query('SELECT lakets.enable_rollup_invalidation($1)', [name]);
      const a = await db.connect();
      const b = await db.connect();
      const notices = captureNotices(b);
      // A wait would show: B gives up on any lock after 5 s, and we measure.
      await b.query(`SET lock_timeout = '5s'`);

      await a.query('BEGIN');
      try {
        expect(await refresh(a, name)).toBe(true);
        await insertRows(client, name, [{ ts: new Date(w + 5 * MINUTE_MS), device: 1, v: 1 }]);

        const started = Date.now();
        expect(await refresh(b, name)).toBe(false);
        expect(Date.now() - started).toBeLessThan(1000);
        expect(notices.take()).toEqual([
          { severity: 'NOTICE', message: `lakets: RollUp ${name} skipped: another session is refreshing it` },
        ]);
        // The lock is the RollUp's own: another RollUp refreshes meanwhile.
        expect(await refresh(b, `${name}_2`)).toBe(true);
        // A cascade that meets the held lock reports the RollUp as not refreshed, and goes on.
        const rows = await cascade(b, name);
        expect(rows.map((r) => [r.rollup_name, r.refreshed])).toEqual([[name, false]]);
      } finally {
        await a.query('COMMIT');
      }
      // Released at A's commit: B refreshes, and picks up the row written meanwhile.
      expect(await refresh(b, name)).toBe(true);
      expect(await diffBuckets(table, name)).toEqual([]);
    });
  }
});

describe('unknown RollUps', () => {
  it('refresh_rollup and refresh_rollup_cascade raise for an unknown name', async () => {
    const e = await expectError(() => refresh(client, 'rf_nope'), `lakets: RollUp 'rf_nope' does not exist`);
    expect(e.code).toBe('42704');
    await expectError(() => cascade(client, 'rf_nope'), `lakets: RollUp 'rf_nope' does not exist`);
  });
});

describe('a query that cannot be windowed', () => {
  it('is created and refreshed from its schema-qualified text, under any search_path', async () => {
    await makeSource(client, 'rf_oid', {
      rows: hourlyRows(day0, 30),
      cover: { from: new Date(day0), to: new Date(day0 + 4 * DAY_MS) },
    });
    // tableoid exists on tables but not on the window views: the windowed form does not plan.
    const query = `SELECT lakets.time_bucket('6 hours', ts) AS bucket, tableoid::bigint AS chunk,
                          count(*)::bigint AS n FROM rf_oid GROUP BY 1, 2`;
    const notices = captureNotices(client);
    await createRollup(client, 'rf_oid', query, { interval: '6 hours', source: 'rf_oid' });
    expect(notices.take().map((n) => n.message)).toEqual([
      expect.stringMatching(/^lakets: RollUp rf_oid will refresh with its query as written.*tableoid/),
    ]);
    const table = rollupTable('rf_oid');
    expect(await diff(client, table, query)).toEqual([]);

    await setLag(client, '0', ['rf_oid']);
    const other = await db.connect();
    await other.query('SET search_path = pg_catalog');
    await insertRows(client, 'rf_oid', [{ ts: new Date(day0 + 29 * HOUR_MS), device: 0, v: 1 }]);
    expect(await refresh(other, 'rf_oid')).toBe(true);
    expect(await diff(client, table, query)).toEqual([]);
  });
});
