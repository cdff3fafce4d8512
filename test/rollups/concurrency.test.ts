// Concurrency: two cascades at once end as one would; writers committing late rows while a refresh
// runs (or waits for them) lose nothing, and nobody deadlocks.
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../support/db.ts';
import { captureNotices } from '../support/pg-assert.ts';
import { DAY_MS, HOUR_MS, MINUTE_MS } from '../support/time.ts';
import {
  backendPid,
  type CascadeRow,
  cascade,
  composeQuery,
  createRollup,
  hourlyRows,
  insertRows,
  makeSource,
  perDeviceQuery,
  rollupFixture,
  rollupTable,
  waitUntilBlocked,
} from './helpers.ts';
import { diff, pendingBuckets, registry } from './support/read.ts';

let db: TestDatabase;
let client: pg.Client;
let day0: number;
const SRC = 'cc_src';

// cc_h (source, invalidation on) <- cc_d <- cc_slow (200 ms per refresh); cc_other (source).
const QUERIES: Record<string, string> = {
  cc_h: perDeviceQuery(SRC),
  cc_d: composeQuery('_rollup_cc_h', '1 day'),
  cc_slow: `SELECT lakets.time_bucket('1 day', bucket) AS bucket, sum(total)::bigint AS total, sum(n)::bigint AS n
              FROM _rollup_cc_d WHERE (SELECT true FROM pg_sleep(0.2)) GROUP BY 1`,
  cc_other: `SELECT lakets.time_bucket('3 hours', ts) AS bucket, count(*)::bigint AS n FROM ${SRC} GROUP BY 1`,
};
const NAMES = Object.keys(QUERIES);

beforeAll(async () => {
  ({ db, client, day0 } = await rollupFixture({
    source: { name: SRC, hours: 48, coverDays: 4 },
    rollups: {
      cc_h: { query: QUERIES['cc_h']!, source: SRC, invalidation: true },
      cc_d: { query: QUERIES['cc_d']!, interval: '1 day', dependsOn: ['cc_h'] },
      cc_slow: { query: QUERIES['cc_slow']!, interval: '1 day', dependsOn: ['cc_d'] },
      cc_other: { query: QUERIES['cc_other']!, interval: '3 hours', source: SRC, invalidation: true },
    },
  }));
});

async function expectAllExact(c: pg.Client = client): Promise<void> {
  for (const name of NAMES) expect(await diff(c, rollupTable(name), QUERIES[name]!), name).toEqual([]);
}

let nextId = 100_000;
/** A mixed batch of writes: appends, late inserts, an update and a delete in old buckets. */
async function writeSome(c: pg.Client, round: number): Promise<void> {
  const top = (await registry(c, 'cc_h')).watermark!.getTime();
  await insertRows(c, SRC, [
    { ts: new Date(top + 10 * MINUTE_MS), device: round % 3, v: 10 + round, id: nextId++ },
    { ts: new Date(top + HOUR_MS + 5 * MINUTE_MS), device: 1, v: 20 + round, id: nextId++ },
    {
      ts: new Date(day0 + (round * 5 + 3) * HOUR_MS + 7 * MINUTE_MS),
      device: 2,
      v: 1000 * round,
      id: nextId++,
    },
  ]);
  await c.query(`UPDATE ${SRC} SET v = v + 7 WHERE ts >= $1 AND ts < $2`, [
    new Date(day0 + (round * 3 + 20) * HOUR_MS),
    new Date(day0 + (round * 3 + 21) * HOUR_MS),
  ]);
  await c.query(`DELETE FROM ${SRC} WHERE ts >= $1 AND ts < $2 AND device = 0`, [
    new Date(day0 + (round * 4 + 2) * HOUR_MS),
    new Date(day0 + (round * 4 + 3) * HOUR_MS),
  ]);
}

describe('two cascades at the same time', () => {
  it('end with every RollUp as exact as one cascade leaves it (several rounds)', async () => {
    const a = await db.connect();
    const b = await db.connect();
    for (let round = 1; round <= 4; round++) {
      await writeSome(client, round);
      const [ra, rb] = await Promise.all([cascade(a), cascade(b)]);
      for (const rows of [ra, rb])
        expect(rows.map((r: CascadeRow) => r.rollup_name).sort()).toEqual([...NAMES].sort());
      // Each RollUp was refreshed by at least one of them...
      for (const name of NAMES) {
        const done = [...ra, ...rb].filter((r) => r.rollup_name === name && r.refreshed);
        expect(done.length, `${name} in round ${round}`).toBeGreaterThan(0);
      }
      // ...and the result is the one cascade's: exact, nothing left pending.
      await expectAllExact();
      for (const name of NAMES)
        expect(await pendingBuckets(client, name), `${name} in round ${round}`).toEqual([]);
    }
  });
});

describe('a cascade meeting another one', () => {
  it('waits for it; under a lock_timeout it reports every RollUp as skipped, with a NOTICE', async () => {
    const a = await db.connect();
    const b = await db.connect();
    const bPid = await backendPid(b);
    const notices = captureNotices(b);
    await a.query('BEGIN');
    let open = true;
    try {
      expect((await cascade(a)).every((r) => r.refreshed)).toBe(true);
      await b.query(`SET lock_timeout = '300ms'`);
      const rows = await cascade(b);
      expect(rows.map((r) => r.refreshed)).toEqual(NAMES.map(() => false));
      expect(notices.take().map((n) => n.message)).toEqual(
        rows.map((r) => `lakets: RollUp ${r.rollup_name} skipped: another cascade is refreshing it`),
      );
      await b.query('RESET lock_timeout');
      // Without a lock_timeout it waits for A, then refreshes what was written meanwhile.
      const waiting = cascade(b);
      await waitUntilBlocked(client, bPid);
      await writeSome(client, 9);
      await a.query('COMMIT');
      open = false;
      expect((await waiting).every((r) => r.refreshed)).toBe(true);
    } finally {
      if (open) await a.query('ROLLBACK');
    }
    await expectAllExact();
  });
});

describe('a writer and a refresh', () => {
  it('a late row committed while the cascade waits on the fence is in the result', async () => {
    await cascade(client);
    const writer = await db.connect();
    const refresher = await db.connect();
    const refresherPid = await backendPid(refresher);
    const late = day0 + 13 * HOUR_MS + 20 * MINUTE_MS;
    await writer.query('BEGIN');
    let running: Promise<CascadeRow[]> | undefined;
    try {
      await insertRows(writer, SRC, [{ ts: new Date(late), device: 0, v: 31_337, id: nextId++ }]);
      running = cascade(refresher);
      // The refresh of cc_h waits for the writer's open transaction (shared fence) rather than miss its row.
      await waitUntilBlocked(client, refresherPid);
    } finally {
      await writer.query('COMMIT');
    }
    const rows = await running;
    expect(rows.every((r) => r.refreshed)).toBe(true);
    // Exact after that one cascade already, and after another.
    await expectAllExact();
    await cascade(client);
    await expectAllExact();
  });

  it('a late row written while a refresh holds the fence is logged, waits for it, and is not lost', async () => {
    const bucket = day0 + 17 * HOUR_MS;
    // A pending entry for the bucket that the refresh will read and clear...
    await insertRows(client, SRC, [{ ts: new Date(bucket + 5 * MINUTE_MS), device: 1, v: 1, id: nextId++ }]);
    expect(await pendingBuckets(client, 'cc_h')).toEqual([new Date(bucket).toISOString()]);

    const refresher = await db.connect();
    const writer = await db.connect();
    const writerPid = await backendPid(writer);
    await refresher.query('BEGIN');
    try {
      const rows = await cascade(refresher);
      expect(rows.every((r) => r.refreshed)).toBe(true);
      // ...while it is still open, a writer logs the same bucket again (and another one).
      const writing = insertRows(writer, SRC, [
        { ts: new Date(bucket + 40 * MINUTE_MS), device: 2, v: 77_777, id: nextId++ },
        { ts: new Date(bucket + 3 * HOUR_MS), device: 2, v: 88_888, id: nextId++ },
      ]);
      // Its log entry for the bucket waits for the refresh's commit (the refresh deleted that entry)...
      await waitUntilBlocked(client, writerPid, 'transactionid');
      await refresher.query('COMMIT');
      await writing;
    } catch (error) {
      await refresher.query('ROLLBACK');
      throw error;
    }
    // ...so both buckets are pending after the refresh, and the next cascade takes them in.
    expect(await pendingBuckets(client, 'cc_h')).toEqual(
      [bucket, bucket + 3 * HOUR_MS].map((t) => new Date(t).toISOString()),
    );
    await cascade(client);
    await expectAllExact();
  });

  it('writers and cascades interleaving freely: no error, no deadlock, exact at the end', async () => {
    const sessions = await Promise.all([db.connect(), db.connect(), db.connect(), db.connect()]);
    const [w1, w2, r1, r2] = sessions as [pg.Client, pg.Client, pg.Client, pg.Client];
    const errors: unknown[] = [];
    const loop = async (fn: (i: number) => Promise<unknown>) => {
      for (let i = 0; i < 6; i++) await fn(i).catch((e: unknown) => errors.push(e));
    };
    const lateBatch = (i: number, shift: number) =>
      Array.from({ length: 12 }, (_, k) => ({
        ts: new Date(day0 + ((k * 7 + i * 3 + shift) % 46) * HOUR_MS + (k + 1) * MINUTE_MS),
        device: k % 3,
        v: k + i,
        id: nextId++,
      }));
    await Promise.all([
      loop((i) => insertRows(w1, SRC, lateBatch(i, 0))),
      loop((i) => insertRows(w2, SRC, lateBatch(i, 5).reverse())),
      loop(() => cascade(r1)),
      loop(() => cascade(r2)),
    ]);
    expect(errors).toEqual([]);
    await cascade(client);
    await expectAllExact();
  });
});

describe('no deadlock between a writer and a refresh over the invalidation log', () => {
  // Two RollUps with invalidation on the same source. dl_b is created first (smaller id: writers'
  // triggers visit it first) but refreshed second (cascades go by name within a level).
  const DL = 'dl_src';
  const DLQ = perDeviceQuery(DL);
  const bucketA = () => day0 + 5 * HOUR_MS;
  const bucketB = () => day0 + 9 * HOUR_MS;

  beforeAll(async () => {
    await makeSource(client, DL, {
      rows: hourlyRows(day0, 48),
      cover: { from: new Date(day0), to: new Date(day0 + 4 * DAY_MS) },
    });
    await createRollup(client, 'dl_b', DLQ, { source: DL });
    await createRollup(client, 'dl_a', DLQ, { source: DL });
    await createRollup(
      client,
      'dl_top',
      `SELECT bucket, sum(total)::bigint AS total FROM (SELECT bucket, total FROM _rollup_dl_a
        UNION ALL SELECT bucket, total FROM _rollup_dl_b) s GROUP BY 1`,
      { dependsOn: ['dl_a', 'dl_b'] },
    );
    await client.query(
      `SELECT lakets.enable_rollup_invalidation('dl_a'), lakets.enable_rollup_invalidation('dl_b')`,
    );
    await client.query(
      `UPDATE lakets._rollup_registry SET refresh_lag = interval '0' WHERE name LIKE 'dl\\_%'`,
    );
  });

  const late = (t: number, v: number) => [{ ts: new Date(t + 17 * MINUTE_MS), device: 1, v, id: nextId++ }];

  async function expectDlExact(): Promise<void> {
    for (const name of ['dl_a', 'dl_b']) {
      expect(await diff(client, rollupTable(name), DLQ), name).toEqual([]);
      expect(await pendingBuckets(client, name), name).toEqual([]);
    }
  }

  /** Resolves with `p`'s outcome once settled, or 'blocked' once `pid` waits on a row lock. */
  async function settledOrBlocked(p: Promise<unknown>, pid: number): Promise<unknown> {
    let settled = false;
    const outcome = p.then(
      (v) => {
        settled = true;
        return v;
      },
      (e: unknown) => {
        settled = true;
        return e;
      },
    );
    const blocked = (async () => {
      while (!settled) {
        const { rows } = await client.query(
          `SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted AND locktype = 'transactionid'`,
          [pid],
        );
        if (rows.length > 0) return 'blocked';
        await new Promise((r) => setTimeout(r, 20));
      }
      return outcome;
    })();
    return Promise.race([outcome, blocked]);
  }

  it('a refresh skips log entries a writer is re-invalidating instead of waiting for it', async () => {
    await insertRows(client, DL, [...late(bucketA(), 1), ...late(bucketB(), 2)]);
    expect(await pendingBuckets(client, 'dl_a')).toEqual(
      [bucketA(), bucketB()].map((t) => new Date(t).toISOString()),
    );
    const [holder, refresher, writer] = [await db.connect(), await db.connect(), await db.connect()];
    const refresherPid = await backendPid(refresher);

    // The refresh takes the fence, reads both entries, then waits on its own table...
    await holder.query('BEGIN');
    await holder.query(`LOCK TABLE ${rollupTable('dl_a')} IN ACCESS EXCLUSIVE MODE`);
    const refreshing = refresher.query(`SELECT lakets.refresh_rollup('dl_a') AS ok`);
    await waitUntilBlocked(client, refresherPid, 'relation');
    // ...while a writer (finding the fence taken) re-invalidates the second bucket and keeps it locked.
    await writer.query('BEGIN');
    try {
      await insertRows(writer, DL, late(bucketB(), 3));
      await holder.query('COMMIT');
      // The refresh finishes without waiting for the writer...
      const outcome = await settledOrBlocked(refreshing, refresherPid);
      expect(outcome).not.toBe('blocked');
      // ...so the writer's next late row, in the bucket the refresh cleared, just waits for nothing.
      await insertRows(writer, DL, late(bucketA(), 4));
      await writer.query('COMMIT');
    } catch (error) {
      await writer.query('ROLLBACK');
      await holder.query('ROLLBACK');
      throw error;
    }
    expect((await refreshing).rows[0].ok).toBe(true);
    // Both buckets stay logged for the next refresh (the writer's rows came after the refresh's read).
    expect(await pendingBuckets(client, 'dl_a')).toEqual(
      [bucketA(), bucketB()].map((t) => new Date(t).toISOString()),
    );
    await cascade(client, 'dl_top');
    await expectDlExact();
  });

  it('a cascade takes its fences up front: a writer holding a later fence cannot deadlock with it', async () => {
    await insertRows(client, DL, late(bucketA(), 5));
    const [holder, refresher, writer] = [await db.connect(), await db.connect(), await db.connect()];
    const refresherPid = await backendPid(refresher);
    const writerPid = await backendPid(writer);
    const warnings = captureNotices(refresher);

    // The cascade refreshes dl_a first (clearing its entry for bucket A) and is held just before it
    // records dl_a's new watermark...
    await holder.query('BEGIN');
    await holder.query(`SELECT 1 FROM lakets._rollup_registry WHERE name = 'dl_a' FOR UPDATE`);
    const running = cascade(refresher, 'dl_top');
    await waitUntilBlocked(client, refresherPid, 'transactionid');
    // ...a writer's late row in bucket A: its trigger visits dl_b (fence) then dl_a, whose cleared
    // entry it must wait for...
    await writer.query('BEGIN');
    try {
      const writing = insertRows(writer, DL, late(bucketA(), 6));
      await waitUntilBlocked(client, writerPid, 'transactionid');
      // ...then the cascade goes on to dl_b. Had it not taken dl_b's fence already, it would now wait
      // for the writer, which waits for it.
      await holder.query('COMMIT');
      const rows = await running;
      await writing;
      await writer.query('COMMIT');
      expect(rows.map((r) => [r.rollup_name, r.refreshed])).toEqual([
        ['dl_a', true],
        ['dl_b', true],
        ['dl_top', true],
      ]);
      expect(warnings.take().filter((n) => n.severity === 'WARNING')).toEqual([]);
    } catch (error) {
      await writer.query('ROLLBACK');
      await holder.query('ROLLBACK');
      throw error;
    }
    await cascade(client, 'dl_top');
    await expectDlExact();
  });
});
