// RollUp registries and create_rollup / drop_rollup, per the contract: columns and defaults, the
// initial full load and watermark, RollUps over RollUps, and clear errors that leave nothing behind.
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectError } from '../support/pg-assert.ts';
import { DAY_MS, HOUR_MS, serverNow } from '../support/time.ts';
import {
  composeQuery,
  createRollup,
  hourlyRows,
  makeSource,
  perDeviceQuery,
  refresh,
  rollupFixture,
  rollupTable,
  setLag,
} from './helpers.ts';
import { count, diff, maxBucket, registry } from './support/read.ts';

let client: pg.Client;
let day0: number;

beforeAll(async () => {
  // 3 days of hourly rows for 3 devices.
  ({ client, day0 } = await rollupFixture({ source: { name: 'reg_src', hours: 72, coverDays: 4 } }));
});

async function columns(table: string): Promise<Record<string, { type: string; default: string | null }>> {
  const { rows } = await client.query<{
    column_name: string;
    udt_name: string;
    column_default: string | null;
  }>(
    `SELECT column_name, udt_name, column_default FROM information_schema.columns
      WHERE table_schema = 'lakets' AND table_name = $1`,
    [table],
  );
  return Object.fromEntries(
    rows.map((r) => [r.column_name, { type: r.udt_name, default: r.column_default }]),
  );
}

/** Objects a failed create_rollup must not leave behind. */
async function leftovers(name: string): Promise<{ registry: number; table: boolean }> {
  const { rows } = await client.query<{ n: number; t: boolean }>(
    `SELECT (SELECT count(*)::int FROM lakets._rollup_registry WHERE name = $1) AS n,
            to_regclass($2) IS NOT NULL AS t`,
    [name, rollupTable(name)],
  );
  return { registry: rows[0]!.n, table: rows[0]!.t };
}

describe('registries', () => {
  it('_rollup_registry has the contract columns, types and defaults', async () => {
    const cols = await columns('_rollup_registry');
    const expected: Record<string, string> = {
      id: 'int4',
      name: 'text',
      source_chronotable_id: 'int4',
      rollup_table: 'text',
      bucket_interval: 'interval',
      bucket_column: 'text',
      refresh_lag: 'interval',
      watermark: 'timestamptz',
      query_text: 'text',
      depends_on: '_int4',
      last_refreshed_at: 'timestamptz',
      created_at: 'timestamptz',
    };
    for (const [name, type] of Object.entries(expected)) expect(cols[name]?.type, name).toBe(type);
    expect(cols['bucket_column']!.default).toBe(`'bucket'::text`);
    expect(cols['refresh_lag']!.default).toBe(`'01:00:00'::interval`);

    // name is unique.
    const { rows } = await client.query<{ def: string }>(
      `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint
        WHERE conrelid = 'lakets._rollup_registry'::regclass AND contype = 'u'`,
    );
    expect(rows.map((r) => r.def)).toContain('UNIQUE (name)');
  });

  it('_rollup_invalidation_log: contract columns, unique (rollup_id, bucket_start), cascades with its RollUp', async () => {
    const cols = await columns('_rollup_invalidation_log');
    expect(cols['rollup_id']?.type).toBe('int4');
    expect(cols['bucket_start']?.type).toBe('timestamptz');
    expect(cols['invalidated_at']?.type).toBe('timestamptz');
    expect(cols['id']).toBeDefined();

    const id = await createRollup(client, 'reg_log', perDeviceQuery('reg_src'), { source: 'reg_src' });
    const at = new Date(day0 + 3 * HOUR_MS);
    await client.query(
      'INSERT INTO lakets._rollup_invalidation_log (rollup_id, bucket_start) VALUES ($1, $2)',
      [id, at],
    );
    const dup = await expectError(
      () =>
        client.query(
          'INSERT INTO lakets._rollup_invalidation_log (rollup_id, bucket_start) VALUES ($1, $2)',
          [id, at],
        ),
      'duplicate key',
    );
    expect(dup.code).toBe('23505');
    await client.query('SELECT lakets.drop_rollup($1)', ['reg_log']);
    expect(await count(client, `lakets._rollup_invalidation_log WHERE rollup_id = ${id}`)).toBe(0);
  });
});

describe('create_rollup', () => {
  it('over a ChronoTable: registers it with the contract defaults, loads every bucket, watermark = max bucket', async () => {
    const before = await serverNow(client);
    const id = await createRollup(client, 'reg_h', perDeviceQuery('reg_src'), { source: 'reg_src' });
    const r = await registry(client, 'reg_h');
    expect(r.id).toBe(id);
    expect(r.rollup_table).toBe('public._rollup_reg_h');
    expect(r.bucket_column).toBe('bucket');
    expect(r.depends_on).toEqual([]);
    const { rows } = await client.query(
      `SELECT r.refresh_lag = interval '1 hour' AS lag, r.bucket_interval = interval '1 hour' AS width,
              c.table_name, r.query_text = $2 AS query_kept
         FROM lakets._rollup_registry r JOIN lakets._chronotable_registry c ON c.id = r.source_chronotable_id
        WHERE r.name = $1`,
      ['reg_h', perDeviceQuery('reg_src')],
    );
    expect(rows[0]).toEqual({ lag: true, width: true, table_name: 'reg_src', query_kept: true });
    expect(r.last_refreshed_at!.getTime()).toBeGreaterThanOrEqual(before);

    // The initial load is complete: 72 hours x 3 devices, equal to the query run from scratch.
    expect(await count(client, rollupTable('reg_h'))).toBe(72 * 3);
    expect(await diff(client, rollupTable('reg_h'), perDeviceQuery('reg_src'))).toEqual([]);
    expect(r.watermark?.toISOString()).toBe(new Date(day0 + 71 * HOUR_MS).toISOString());
    expect(r.watermark?.toISOString()).toBe((await maxBucket(client, rollupTable('reg_h')))?.toISOString());
  });

  it('over another RollUp (p_depends_on): depends_on holds its id, the load reads the RollUp table', async () => {
    const hourly = await registry(client, 'reg_h');
    const query = composeQuery('_rollup_reg_h', '1 day');
    await createRollup(client, 'reg_d', query, { interval: '1 day', dependsOn: ['reg_h'] });
    const r = await registry(client, 'reg_d');
    expect(r.depends_on).toEqual([hourly.id]);
    expect(r.source_chronotable_id).toBeNull();
    expect(r.rollup_table).toBe('public._rollup_reg_d');
    expect(await count(client, rollupTable('reg_d'))).toBe(3 * 3);
    expect(await diff(client, rollupTable('reg_d'), query)).toEqual([]);
    expect(r.watermark?.toISOString()).toBe(new Date(day0 + 2 * DAY_MS).toISOString());

    // Several dependencies keep their order.
    const other = await createRollup(client, 'reg_h2', perDeviceQuery('reg_src', '2 hours'), {
      interval: '2 hours',
      source: 'reg_src',
    });
    await createRollup(
      client,
      'reg_both',
      `SELECT bucket, sum(total)::bigint AS total FROM (SELECT bucket, total FROM _rollup_reg_h2
        UNION ALL SELECT bucket, total FROM _rollup_reg_h) s GROUP BY 1`,
      { interval: '1 hour', dependsOn: ['reg_h2', 'reg_h'] },
    );
    expect((await registry(client, 'reg_both')).depends_on).toEqual([other, hourly.id]);
  });

  it('finds a bucket column named otherwise (the first timestamptz column)', async () => {
    await createRollup(
      client,
      'reg_named',
      `SELECT device, lakets.time_bucket('1 hour', ts) AS hour, count(*)::bigint AS n FROM reg_src GROUP BY 1, 2`,
      { source: 'reg_src' },
    );
    const r = await registry(client, 'reg_named');
    expect(r.bucket_column).toBe('hour');
    expect(r.watermark?.toISOString()).toBe(new Date(day0 + 71 * HOUR_MS).toISOString());
    // Refreshes work on that column too.
    await setLag(client, '0', ['reg_named']);
    await client.query(`INSERT INTO reg_src (ts, device, v) VALUES ($1, 9, 1)`, [
      new Date(day0 + 72 * HOUR_MS),
    ]);
    expect(await refresh(client, 'reg_named')).toBe(true);
    expect((await registry(client, 'reg_named')).watermark?.toISOString()).toBe(
      new Date(day0 + 72 * HOUR_MS).toISOString(),
    );
    await client.query(`DELETE FROM reg_src WHERE device = 9`);
  });

  describe('errors are clear and leave nothing behind', () => {
    const q = perDeviceQuery('reg_src');
    const cases: Array<[string, string, (name: string) => Promise<unknown>, RegExp]> = [
      [
        'unknown source ChronoTable',
        'bad_src',
        (n) => createRollup(client, n, q, { source: 'no_such_table' }),
        /public\.no_such_table is not a ChronoTable/,
      ],
      [
        'unknown dependency',
        'bad_dep',
        (n) =>
          createRollup(client, n, composeQuery('_rollup_reg_h', '1 day'), { dependsOn: ['reg_h', 'nope'] }),
        /RollUp 'bad_dep' depends on unknown RollUps: 'nope'/,
      ],
      [
        'a query that does not run',
        'bad_query',
        (n) =>
          createRollup(client, n, `SELECT lakets.time_bucket('1 hour', ts) AS bucket, nope FROM reg_src`, {
            source: 'reg_src',
          }),
        /the query of RollUp 'bad_query' does not run: column "nope" does not exist/,
      ],
      [
        'no bucket column at all',
        'bad_nobucket',
        (n) =>
          createRollup(client, n, 'SELECT device, count(*) AS n FROM reg_src GROUP BY 1', {
            source: 'reg_src',
          }),
        /the query of RollUp 'bad_nobucket' has no timestamptz bucket column/,
      ],
      [
        'a bucket column without time zone',
        'bad_tz',
        (n) =>
          createRollup(
            client,
            n,
            `SELECT (lakets.time_bucket('1 hour', ts) AT TIME ZONE 'UTC') AS bucket, count(*) AS n FROM reg_src GROUP BY 1`,
            { source: 'reg_src' },
          ),
        /the query of RollUp 'bad_tz' has no timestamptz bucket column/,
      ],
      [
        'a month bucket interval',
        'bad_month',
        (n) => createRollup(client, n, q, { interval: '1 month', source: 'reg_src' }),
        /bucket interval 1 mon is not usable/,
      ],
      [
        'a year bucket interval',
        'bad_year',
        (n) => createRollup(client, n, q, { interval: '1 year', source: 'reg_src' }),
        /bucket interval 1 year is not usable/,
      ],
      [
        'a zero bucket interval',
        'bad_zero',
        (n) => createRollup(client, n, q, { interval: '0', source: 'reg_src' }),
        /bucket interval 00:00:00 is not usable/,
      ],
    ];
    it.each(cases)('%s', async (_label, name, run, message) => {
      await expectError(() => run(name), message);
      expect(await leftovers(name)).toEqual({ registry: 0, table: false });
    });

    it('a duplicate name, and the existing RollUp is untouched', async () => {
      const before = await registry(client, 'reg_h');
      const rows = await count(client, rollupTable('reg_h'));
      await expectError(
        () =>
          createRollup(client, 'reg_h', perDeviceQuery('reg_src', '1 day'), {
            interval: '1 day',
            source: 'reg_src',
          }),
        /RollUp 'reg_h' already exists/,
      );
      expect(await registry(client, 'reg_h')).toEqual(before);
      expect(await count(client, rollupTable('reg_h'))).toBe(rows);
    });
  });
});

describe('drop_rollup', () => {
  it('removes the RollUp, its table, its log and its window views, so the ChronoTable can be dropped', async () => {
    await makeSource(client, 'reg_gone', { rows: hourlyRows(day0, 5) });
    await createRollup(client, 'gone_h', perDeviceQuery('reg_gone'), { source: 'reg_gone' });
    await createRollup(client, 'gone_d', composeQuery('_rollup_gone_h', '1 day'), {
      interval: '1 day',
      dependsOn: ['gone_h'],
    });
    await expectError(
      () => client.query(`SELECT lakets.drop_rollup('gone_h')`),
      /RollUps 'gone_d' depend on 'gone_h'/,
    );
    await client.query(`SELECT lakets.drop_rollup('gone_d')`);
    await client.query(`SELECT lakets.drop_rollup('gone_h')`);
    expect(await leftovers('gone_h')).toEqual({ registry: 0, table: false });
    expect(await leftovers('gone_d')).toEqual({ registry: 0, table: false });
    // With no RollUp left on it, the ChronoTable drops like any other.
    await client.query(`SELECT lakets.drop_chronotable('reg_gone')`);
    expect(await count(client, `pg_class WHERE relname = 'reg_gone'`)).toBe(0);
    // Other RollUps over other sources keep refreshing.
    await setLag(client, '0', ['reg_h']);
    expect(await refresh(client, 'reg_h')).toBe(true);
  });
});

describe('names that need quoting', () => {
  it('a ChronoTable and RollUps with mixed case, spaces, quotes and dots work end to end', async () => {
    const src = 'Odd "src".v2';
    const level1 = 'Hourly "x".y';
    const level2 = 'daily total';
    const q = (name: string) => `"${name.replaceAll('"', '""')}"`;
    await client.query(
      `CREATE TABLE public.${q(src)} (ts timestamptz NOT NULL, device int NOT NULL, v int NOT NULL, id int)`,
    );
    await client.query(
      `INSERT INTO public.${q(src)} (ts, device, v) SELECT $1::timestamptz + g * interval '20 minutes', g % 2, g FROM generate_series(0, 200) g`,
      [new Date(day0)],
    );
    await client.query(`SELECT lakets.create_chronotable($1, 'ts', '1 day')`, [src]);
    const q1 = perDeviceQuery(`public.${q(src)}`);
    const q2 = composeQuery(rollupTable(level1), '1 day', false);
    await createRollup(client, level1, q1, { source: src });
    await createRollup(client, level2, q2, { interval: '1 day', dependsOn: [level1] });
    expect((await registry(client, level1)).rollup_table).toBe(`public.${q(`_rollup_${level1}`)}`);
    expect((await registry(client, level1)).refresh_query).toContain(`lakets_window.${q(src)}`);
    await client.query('SELECT lakets.enable_rollup_invalidation($1)', [level1]);
    await setLag(client, '0', [level1, level2]);
    await client.query(`INSERT INTO public.${q(src)} (ts, device, v) VALUES ($1, 0, 5000)`, [
      new Date(day0 + HOUR_MS),
    ]);
    const { rows } = await client.query('SELECT * FROM lakets.refresh_rollup_cascade($1)', [level2]);
    expect(rows.map((r) => [r.rollup_name, r.refreshed])).toEqual([
      [level1, true],
      [level2, true],
    ]);
    expect(await diff(client, rollupTable(level1), q1)).toEqual([]);
    expect(await diff(client, rollupTable(level2), q2)).toEqual([]);
    await client.query('SELECT lakets.drop_rollup($1)', [level2]);
    await client.query('SELECT lakets.drop_rollup($1)', [level1]);
    await client.query('SELECT lakets.drop_chronotable($1)', [src]);
    expect(
      await count(
        client,
        `pg_class WHERE relname IN ('${src.replaceAll("'", "''")}', '_rollup_${level1.replaceAll("'", "''")}')`,
      ),
    ).toBe(0);
  });
});
