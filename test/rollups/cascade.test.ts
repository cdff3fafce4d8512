// refresh_rollup_cascade: dependencies first (whatever the names), a named RollUp with what it depends
// on only, cycles, changes reaching the top of the DAG in one run, and a failing RollUp that neither
// undoes the others nor loses its pending work.
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../support/db.ts';
import { captureNotices, expectError } from '../support/pg-assert.ts';
import { bucketStart, DAY_MS, HOUR_MS, MINUTE_MS } from '../support/time.ts';
import { cascade, composeQuery, insertRows, perDeviceQuery, rollupFixture, rollupTable } from './helpers.ts';
import { diff, pendingBuckets, registry } from './support/read.ts';

let db: TestDatabase;
let client: pg.Client;
let day0: number;

const SRC = 'cas_src';
// Names sort against the dependency order: an order by name alone would be wrong.
//   z_hour (source) <- y_day <- x_total ; w_other (source) ; v_mix <- z_hour and w_other
const QUERIES: Record<string, string> = {
  z_hour: perDeviceQuery(SRC),
  y_day: composeQuery('_rollup_z_hour', '1 day'),
  x_total: composeQuery('_rollup_y_day', '1 day', false),
  w_other: `SELECT lakets.time_bucket('2 hours', ts) AS bucket, count(*)::bigint AS n, sum(v)::bigint AS total FROM ${SRC} GROUP BY 1`,
  v_mix: `SELECT h.bucket, h.total, o.n FROM
            (SELECT lakets.time_bucket('1 day', bucket) AS bucket, sum(total)::bigint AS total FROM _rollup_z_hour GROUP BY 1) h
            JOIN (SELECT lakets.time_bucket('1 day', bucket) AS bucket, sum(n)::bigint AS n FROM _rollup_w_other GROUP BY 1) o
            USING (bucket)`,
};
const DEPENDS: Record<string, string[]> = {
  z_hour: [],
  y_day: ['z_hour'],
  x_total: ['y_day'],
  w_other: [],
  v_mix: ['z_hour', 'w_other'],
};
const ALL = Object.keys(QUERIES);

beforeAll(async () => {
  ({ db, client, day0 } = await rollupFixture({
    source: { name: SRC, hours: 72, coverDays: 4 },
    rollups: {
      z_hour: { query: QUERIES['z_hour']!, source: SRC, invalidation: true },
      y_day: { query: QUERIES['y_day']!, interval: '1 day', dependsOn: ['z_hour'] },
      x_total: { query: QUERIES['x_total']!, interval: '1 day', dependsOn: ['y_day'] },
      w_other: { query: QUERIES['w_other']!, interval: '2 hours', source: SRC, invalidation: true },
      v_mix: { query: QUERIES['v_mix']!, interval: '1 day', dependsOn: ['z_hour', 'w_other'] },
    },
  }));
});

/** Every RollUp equals its query run from scratch over what it reads. */
async function expectAllExact(names = ALL): Promise<void> {
  for (const name of names) expect(await diff(client, rollupTable(name), QUERIES[name]!), name).toEqual([]);
}

function expectDependenciesFirst(order: string[]): void {
  for (const [name, deps] of Object.entries(DEPENDS)) {
    if (!order.includes(name)) continue;
    for (const dep of deps)
      expect(order.indexOf(dep), `${dep} before ${name}`).toBeLessThan(order.indexOf(name));
  }
}

async function refreshedAt(): Promise<Record<string, number>> {
  const { rows } = await client.query<{ name: string; at: Date }>(
    'SELECT name, last_refreshed_at AS at FROM lakets._rollup_registry',
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.at.getTime()]));
}

describe('refresh order', () => {
  it('refreshes every RollUp, dependencies first, and reports (rollup_name, refreshed, refresh_ms)', async () => {
    const { rows, fields } = await client.query('SELECT * FROM lakets.refresh_rollup_cascade()');
    expect(fields.map((f) => f.name)).toEqual(['rollup_name', 'refreshed', 'refresh_ms']);
    const order = rows.map((r) => r.rollup_name as string);
    expect([...order].sort()).toEqual([...ALL].sort());
    expectDependenciesFirst(order);
    for (const r of rows) {
      expect(r.refreshed).toBe(true);
      expect(typeof r.refresh_ms).toBe('number');
      expect(r.refresh_ms).toBeGreaterThanOrEqual(0);
    }
    await expectAllExact();
  });

  it('a named RollUp refreshes it and what it depends on, nothing else', async () => {
    const before = await refreshedAt();
    await new Promise((r) => setTimeout(r, 5));
    const order = (await cascade(client, 'y_day')).map((r) => r.rollup_name);
    expect(order).toEqual(['z_hour', 'y_day']);
    const after = await refreshedAt();
    for (const name of ALL) {
      if (order.includes(name)) expect(after[name], name).toBeGreaterThan(before[name]!);
      else expect(after[name], name).toBe(before[name]);
    }
    const mix = (await cascade(client, 'v_mix')).map((r) => r.rollup_name);
    expect([...mix].sort()).toEqual(['v_mix', 'w_other', 'z_hour']);
    expectDependenciesFirst(mix);
    expect((await cascade(client, 'w_other')).map((r) => r.rollup_name)).toEqual(['w_other']);
  });

  it('a cycle raises "Circular dependency detected in RollUp DAG"; RollUps outside it still cascade', async () => {
    const x = await registry(client, 'x_total');
    await client.query(
      `UPDATE lakets._rollup_registry SET depends_on = ARRAY[$1::int] WHERE name = 'z_hour'`,
      [x.id],
    );
    try {
      await expectError(() => cascade(client), 'Circular dependency detected in RollUp DAG');
      await expectError(() => cascade(client, 'y_day'), 'Circular dependency detected in RollUp DAG');
      // A self-reference is a cycle too.
      const w = await registry(client, 'w_other');
      await client.query(
        `UPDATE lakets._rollup_registry SET depends_on = ARRAY[$1::int] WHERE name = 'w_other'`,
        [w.id],
      );
      await expectError(() => cascade(client, 'w_other'), 'Circular dependency detected in RollUp DAG');
      await client.query(`UPDATE lakets._rollup_registry SET depends_on = '{}' WHERE name = 'w_other'`);
      expect(await cascade(client, 'w_other')).toEqual([
        { rollup_name: 'w_other', refreshed: true, refresh_ms: expect.any(Number) },
      ]);
    } finally {
      await client.query(`UPDATE lakets._rollup_registry SET depends_on = '{}' WHERE name = 'z_hour'`);
    }
    expectDependenciesFirst((await cascade(client)).map((r) => r.rollup_name));
  });
});

describe('propagation', () => {
  it('a late write into an old bucket reaches the third level in ONE cascade', async () => {
    const late = day0 + 7 * HOUR_MS + 12 * MINUTE_MS; // day 0, far below every watermark
    await insertRows(client, SRC, [
      { ts: new Date(late), device: 1, v: 100_000 },
      { ts: new Date(late + DAY_MS), device: 2, v: -50_000 },
    ]);
    await client.query(`UPDATE ${SRC} SET v = v + 1000 WHERE ts >= $1 AND ts < $2`, [
      new Date(day0 + DAY_MS + 3 * HOUR_MS),
      new Date(day0 + DAY_MS + 4 * HOUR_MS),
    ]);
    await client.query(`DELETE FROM ${SRC} WHERE ts >= $1 AND ts < $2 AND device = 0`, [
      new Date(day0 + 2 * DAY_MS + 9 * HOUR_MS),
      new Date(day0 + 2 * DAY_MS + 10 * HOUR_MS),
    ]);
    const rows = await cascade(client);
    expect(rows.every((r) => r.refreshed)).toBe(true);
    await expectAllExact();
    // The day totals really moved (the check above is not vacuous).
    const { rows: day } = await client.query(
      `SELECT total FROM ${rollupTable('x_total')} WHERE bucket = $1`,
      [new Date(day0)],
    );
    expect(Number(day[0].total)).toBeGreaterThan(100_000);
    for (const name of ALL) expect(await pendingBuckets(client, name), name).toEqual([]);
  });
});

describe('a failing RollUp', () => {
  it('does not undo the others; what depends on it is skipped with a WARNING naming it; nothing is lost', async () => {
    const notices = captureNotices(client);
    // y_day can no longer take rows: every refresh of it fails on insert.
    await client.query(`ALTER TABLE ${rollupTable('y_day')} ADD CONSTRAINT broken CHECK (n < 0) NOT VALID`);
    try {
      const late = day0 + 30 * HOUR_MS + 5 * MINUTE_MS;
      await insertRows(client, SRC, [{ ts: new Date(late), device: 0, v: 4242 }]);
      const yBefore = await registry(client, 'y_day');
      notices.take();

      const rows = await cascade(client);
      const result = Object.fromEntries(rows.map((r) => [r.rollup_name, r.refreshed]));
      expect(result).toEqual({ z_hour: true, y_day: false, x_total: false, w_other: true, v_mix: true });
      expectDependenciesFirst(rows.map((r) => r.rollup_name));
      const warnings = notices
        .take()
        .filter((n) => n.severity === 'WARNING')
        .map((n) => n.message);
      expect(warnings).toEqual([
        expect.stringMatching(/^lakets: RollUp y_day failed: .*violates check constraint "broken"/),
        'lakets: RollUp x_total skipped: it depends on y_day, which failed',
      ]);

      // The others are committed: another session sees them exact.
      const other = await db.connect();
      for (const name of ['z_hour', 'w_other', 'v_mix']) {
        expect(await diff(other, rollupTable(name), QUERIES[name]!), name).toEqual([]);
      }
      // y_day was left as it was, with its pending buckets still logged.
      expect((await registry(client, 'y_day')).last_refreshed_at).toEqual(yBefore.last_refreshed_at);
      expect(await pendingBuckets(client, 'y_day')).toContain(
        new Date(bucketStart(late, DAY_MS)).toISOString(),
      );
      expect((await diff(client, rollupTable('y_day'), QUERIES['y_day']!)).length).toBeGreaterThan(0);
    } finally {
      await client.query(`ALTER TABLE ${rollupTable('y_day')} DROP CONSTRAINT broken`);
    }
    // Repaired: the next cascade catches up all the way to the top.
    const rows = await cascade(client);
    expect(rows.every((r) => r.refreshed)).toBe(true);
    await expectAllExact();
  });

  it('a RollUp whose table is gone fails alone, the same way', async () => {
    const notices = captureNotices(client);
    await client.query(`ALTER TABLE ${rollupTable('w_other')} RENAME TO _rollup_w_other_moved`);
    try {
      notices.take();
      const result = Object.fromEntries((await cascade(client)).map((r) => [r.rollup_name, r.refreshed]));
      expect(result).toEqual({ z_hour: true, y_day: true, x_total: true, w_other: false, v_mix: false });
      expect(notices.take().map((n) => n.message)).toEqual([
        expect.stringMatching(/^lakets: RollUp w_other failed: .*_rollup_w_other/),
        'lakets: RollUp v_mix skipped: it depends on w_other, which failed',
      ]);
    } finally {
      await client.query('ALTER TABLE public._rollup_w_other_moved RENAME TO _rollup_w_other');
    }
    await cascade(client);
    await expectAllExact();
  });
});
