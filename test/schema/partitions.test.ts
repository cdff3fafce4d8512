// lakets._ensure_partitions: bucket-aligned partitions (origin 2000-01-01 UTC), UTC names, the default
// window, explicit ranges, idempotence, gaps, time-zone independence and concurrent callers.
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { expectError } from '../support/pg-assert.ts';
import { bucketStart, DAY_MS, HOUR_MS } from '../support/time.ts';
import { chunks, makeChronotable, qname, suffix } from './helpers.ts';

let db: TestDatabase;
let client: pg.Client;

beforeAll(async () => {
  db = await freshDatabase({ lakets: true });
  client = await db.connect();
});

async function ensure(
  c: pg.Client,
  id: number,
  range?: { start: string; end: string },
): Promise<{ created: number; now: number }> {
  const { rows } = range
    ? await c.query(
        'SELECT lakets._ensure_partitions($1, p_range_start => $2::timestamptz, p_range_end => $3::timestamptz) AS n, now() AS now',
        [id, range.start, range.end],
      )
    : await c.query('SELECT lakets._ensure_partitions($1) AS n, now() AS now', [id]);
  return { created: rows[0].n, now: (rows[0].now as Date).getTime() };
}

/** Buckets [from, to) of `interval`, as (name suffix, start, end). */
function buckets(fromMs: number, toMs: number, intervalMs: number): Array<[string, number, number]> {
  const out: Array<[string, number, number]> = [];
  for (let s = bucketStart(fromMs, intervalMs); s < toMs; s += intervalMs)
    out.push([suffix(s), s, s + intervalMs]);
  return out;
}

async function partitionView(table: string): Promise<Array<[string, number, number]>> {
  const meta = await chunks(client, table);
  return meta.map((m) => [
    m.chunk_name.slice(`public.${table}_`.length),
    m.range_start.getTime(),
    m.range_end.getTime(),
  ]);
}

/** The child tables really attached to `table`, by name. */
async function attached(table: string): Promise<string[]> {
  const { rows } = await client.query(
    'SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass ORDER BY 1',
    [qname('public', table)],
  );
  return rows.map((r) => r.relname);
}

describe('_ensure_partitions', () => {
  it('default window: the bucket of now() minus 1 up to plus 3, five active partitions, end exclusive', async () => {
    const id = await makeChronotable(client, 'win', { interval: '1 day' });
    // create_chronotable made the window already; drop it to watch _ensure_partitions make it.
    for (const name of await attached('win')) await client.query(`DROP TABLE ${qname('public', name)}`);
    await client.query('DELETE FROM lakets._chunk_metadata WHERE chronotable_id = $1', [id]);

    const { created, now } = await ensure(client, id);
    expect(created).toBe(5);
    const today = bucketStart(now, DAY_MS);
    expect(await partitionView('win')).toEqual(buckets(today - DAY_MS, today + 4 * DAY_MS, DAY_MS));
    expect(await attached('win')).toEqual(
      buckets(today - DAY_MS, today + 4 * DAY_MS, DAY_MS).map(([s]) => `win_${s}`),
    );
    expect(new Set((await chunks(client, 'win')).map((m) => m.status))).toEqual(new Set(['active']));

    // past/future counts move the window edges.
    const more = await client.query('SELECT lakets._ensure_partitions($1, 3, 5) AS n, now() AS now', [id]);
    expect(more.rows[0].n).toBe(4);
    const t = bucketStart((more.rows[0].now as Date).getTime(), DAY_MS);
    expect(await partitionView('win')).toEqual(buckets(t - 3 * DAY_MS, t + 6 * DAY_MS, DAY_MS));
    await expectError(
      () => client.query('SELECT lakets._ensure_partitions($1, -1, 3)', [id]),
      'must be >= 0',
    );
  });

  it('explicit range: start aligned down to its bucket, end exclusive; a second call creates nothing', async () => {
    const id = await makeChronotable(client, 'expl', { interval: '1 day' });
    const before = await partitionView('expl');
    const range = { start: '2025-01-01T05:00:00Z', end: '2025-01-04T00:00:00Z' };
    expect((await ensure(client, id, range)).created).toBe(3);
    const made = (await partitionView('expl')).filter(([s]) => s.startsWith('2025'));
    expect(made).toEqual(
      buckets(Date.parse('2025-01-01T00:00:00Z'), Date.parse('2025-01-04T00:00:00Z'), DAY_MS),
    );
    expect(made.map(([s]) => s)).toEqual(['20250101_000000', '20250102_000000', '20250103_000000']);
    expect((await ensure(client, id, range)).created).toBe(0);
    expect((await ensure(client, id)).created).toBe(0);
    // One microsecond past the end needs the next bucket.
    expect(
      (await ensure(client, id, { start: '2025-01-01T00:00:00Z', end: '2025-01-04T00:00:00.000001Z' }))
        .created,
    ).toBe(1);
    expect((await partitionView('expl')).length).toBe(before.length + 4);
    // Rows of each range land in the matching partition.
    await client.query(
      "INSERT INTO expl (ts, v) VALUES ('2025-01-03T23:59:59.999999Z', 1), ('2025-01-04T00:00:00Z', 2)",
    );
    const placed = await client.query('SELECT tableoid::regclass::text AS p FROM expl ORDER BY ts');
    expect(placed.rows.map((r) => r.p)).toEqual(['expl_20250103_000000', 'expl_20250104_000000']);
  });

  it('creates only what is missing: gaps between ranges and a partition removed by hand', async () => {
    const id = await makeChronotable(client, 'gaps', { interval: '6 hours' });
    expect(
      (await ensure(client, id, { start: '2025-02-01T00:00:00Z', end: '2025-02-01T12:00:00Z' })).created,
    ).toBe(2);
    expect(
      (await ensure(client, id, { start: '2025-02-02T00:00:00Z', end: '2025-02-02T12:00:00Z' })).created,
    ).toBe(2);
    expect(
      (await ensure(client, id, { start: '2025-02-01T00:00:00Z', end: '2025-02-02T12:00:00Z' })).created,
    ).toBe(2);
    const feb = (await partitionView('gaps')).filter(([s]) => s.startsWith('202502'));
    expect(feb).toEqual(
      buckets(Date.parse('2025-02-01T00:00:00Z'), Date.parse('2025-02-02T12:00:00Z'), 6 * HOUR_MS),
    );

    // Remove one in the middle (table and row), as an operator might; the next run puts it back.
    await client.query('DROP TABLE gaps_20250201_120000');
    await client.query("DELETE FROM lakets._chunk_metadata WHERE chunk_name = 'public.gaps_20250201_120000'");
    expect(
      (await ensure(client, id, { start: '2025-02-01T00:00:00Z', end: '2025-02-02T12:00:00Z' })).created,
    ).toBe(1);
    expect((await partitionView('gaps')).filter(([s]) => s.startsWith('202502'))).toEqual(feb);
    expect(await attached('gaps')).toContain('gaps_20250201_120000');
  });

  it('re-creates a range whose chunk is recorded as dropped, back to active', async () => {
    const id = await makeChronotable(client, 'redo', { interval: '1 day' });
    await ensure(client, id, { start: '2025-03-01T00:00:00Z', end: '2025-03-02T00:00:00Z' });
    await client.query('DROP TABLE redo_20250301_000000');
    await client.query(
      "UPDATE lakets._chunk_metadata SET status = 'dropped' WHERE chunk_name = 'public.redo_20250301_000000'",
    );
    expect(
      (await ensure(client, id, { start: '2025-03-01T00:00:00Z', end: '2025-03-02T00:00:00Z' })).created,
    ).toBe(1);
    const meta = (await chunks(client, 'redo')).filter((m) => m.chunk_name === 'public.redo_20250301_000000');
    expect(meta.map((m) => m.status)).toEqual(['active']);
    expect(await attached('redo')).toContain('redo_20250301_000000');
    // A recorded, non-dropped range is skipped even when its table is gone (the contract's rule).
    await client.query('DROP TABLE redo_20250301_000000');
    expect(
      (await ensure(client, id, { start: '2025-03-01T00:00:00Z', end: '2025-03-02T00:00:00Z' })).created,
    ).toBe(0);
  });

  it('raises for an unknown ChronoTable id', async () => {
    const error = await expectError(
      () => client.query('SELECT lakets._ensure_partitions(987654)'),
      'no ChronoTable with id 987654',
    );
    expect(error.code).toBe('42P01');
  });
});

describe('_ensure_partitions does not depend on the session time zone', () => {
  const zones = ['UTC', 'America/Los_Angeles', 'Asia/Kolkata'];
  const ranges = [
    // US DST starts 2026-03-08, ends 2026-11-01; India has no DST but a +05:30 offset.
    { start: '2026-03-07T00:00:00Z', end: '2026-03-10T00:00:00Z' },
    { start: '2026-10-31T00:00:00Z', end: '2026-11-03T00:00:00Z' },
  ];
  // Only the explicit ranges are compared (the default window may overlap them, depending on today).
  const inRanges = (startMs: number) =>
    ranges.some((r) => startMs >= Date.parse(r.start) && startMs < Date.parse(r.end));
  const intervals: Array<[string, number]> = [
    ['1 day', DAY_MS],
    ['6 hours', 6 * HOUR_MS],
  ];

  for (const [interval, ms] of intervals) {
    it(`names and ranges are the same in ${zones.join(', ')} with ${interval} chunks, across DST changes`, async () => {
      const views: Record<string, Array<[string, number, number]>> = {};
      for (const zone of zones) {
        const session = await db.connect({ timeZone: zone });
        expect((await session.query('SHOW TimeZone')).rows[0].TimeZone).toBe(zone);
        const table = `tz_${ms / HOUR_MS}h_${zone.replace(/\W/g, '_').toLowerCase()}`;
        await session.query(`CREATE TABLE ${table} (ts timestamptz NOT NULL, v int)`);
        const created = await session.query('SELECT lakets.create_chronotable($1, $2, $3::interval) AS id', [
          table,
          'ts',
          interval,
        ]);
        const id = created.rows[0].id as number;
        const window = await chunks(client, table);
        const createdAt = (
          await client.query('SELECT created_at FROM lakets._chunk_metadata WHERE id = $1', [window[0]!.id])
        ).rows[0].created_at as Date;
        const b = bucketStart(createdAt.getTime(), ms);
        expect(await partitionView(table)).toEqual(buckets(b - ms, b + 4 * ms, ms));
        for (const range of ranges) await ensure(session, id, range);
        views[zone] = (await partitionView(table)).filter(([, s]) => inRanges(s));
        // Every partition spans exactly the interval in absolute time (no 23 h or 25 h days).
        for (const [, s, e] of views[zone]!) expect(e - s).toBe(ms);
      }
      const expected = ranges.flatMap((r) => buckets(Date.parse(r.start), Date.parse(r.end), ms));
      for (const zone of zones) expect(views[zone], zone).toEqual(expected);
      if (ms === DAY_MS) {
        expect(expected.map(([s]) => s)).toEqual([
          '20260307_000000',
          '20260308_000000',
          '20260309_000000',
          '20261031_000000',
          '20261101_000000',
          '20261102_000000',
        ]);
      } else {
        expect(expected.slice(0, 5).map(([s]) => s)).toEqual([
          '20260307_000000',
          '20260307_060000',
          '20260307_120000',
          '20260307_180000',
          '20260308_000000',
        ]);
      }
    });
  }
});

describe('concurrent _ensure_partitions', () => {
  it('two sessions asking for the same ranges create each one once', async () => {
    const id = await makeChronotable(client, 'conc', { interval: '1 hour' });
    const [a, b] = [await db.connect(), await db.connect()];
    const range = { start: '2025-06-01T00:00:00Z', end: '2025-06-03T00:00:00Z' }; // 48 partitions
    await a.query('BEGIN');
    const first = await ensure(a, id, range);
    expect(first.created).toBe(48);
    // b runs while a's partitions are uncommitted: it must wait for a, then find everything there.
    const second = ensure(b, id, range);
    let waiting = false;
    for (let i = 0; i < 200 && !waiting; i++) {
      const { rows } = await client.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%_ensure_partitions%'`,
      );
      waiting = rows[0].n === 1;
      if (!waiting) await new Promise((r) => setTimeout(r, 10));
    }
    expect(waiting).toBe(true);
    await a.query('COMMIT');
    expect((await second).created).toBe(0);
    const feb = (await partitionView('conc')).filter(([s]) => s.startsWith('202506'));
    expect(feb).toEqual(buckets(Date.parse(range.start), Date.parse(range.end), HOUR_MS));
    expect((await attached('conc')).filter((n) => n.startsWith('conc_202506'))).toHaveLength(48);
  });

  it('two sessions racing from the start end with each range once and a total of one set', async () => {
    const id = await makeChronotable(client, 'race', { interval: '1 hour' });
    const [a, b] = [await db.connect(), await db.connect()];
    const range = { start: '2025-07-01T00:00:00Z', end: '2025-07-05T00:00:00Z' }; // 96 partitions
    const results = await Promise.all([ensure(a, id, range), ensure(b, id, range)]);
    expect(results[0]!.created + results[1]!.created).toBe(96);
    expect((await partitionView('race')).filter(([s]) => s.startsWith('202507'))).toHaveLength(96);
  });
});
