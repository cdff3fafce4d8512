// Partition Manager keeps each ChronoTable's chunk grid (a table laid out from a session in another
// time zone has daily chunks starting 23:00 UTC) against both behaviours of _ensure_partitions:
// the compatible schema's (UTC pinned, migration 0003 continues the existing grid) and the public
// LakeTS 0.1.3's (origin read in the session's time zone, cached in PL/pgSQL plans for the session).
// And it attempts the most urgent table first, so a budget-limited run does not starve the tail.
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { unlimited } from '../../lib/jobs/budget.ts';
import { JOBS } from '../../lib/jobs/catalog.ts';
import { chunkGrid, fixedOffsetZone } from '../../lib/jobs/chunk-grid.ts';
import { runJob } from '../../lib/jobs/runner.ts';
import type { Budget, JobOptions } from '../../lib/jobs/types.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { quote } from '../support/lakets-fixtures.ts';
import { sessionGrid } from '../support/public-rights-grid.ts';

const scheduled: JobOptions = { dryRun: false, force: false, trigger: 'schedule' };

/** A daily ChronoTable created (and its first partitions laid out) from `session`. */
async function dailyTable(session: pg.Client, name: string): Promise<number> {
  await session.query(`CREATE TABLE public.${quote(name)} (ts timestamptz NOT NULL, v float8)`);
  const { rows } = await session.query<{ id: number }>(
    `SELECT lakets.create_chronotable($1, 'ts', interval '1 day') AS id`,
    [name],
  );
  return rows[0]?.id as number;
}

/** Drops the `n` newest chunks of a table (partition and metadata), as if time had passed. */
async function dropNewest(admin: pg.Client, id: number, n: number): Promise<void> {
  const { rows } = await admin.query<{ chunk_name: string }>(
    'SELECT chunk_name FROM lakets._chunk_metadata WHERE chronotable_id = $1 ORDER BY range_start DESC LIMIT $2',
    [id, n],
  );
  for (const r of rows) {
    const [schema, table] = r.chunk_name.split('.');
    await admin.query(`DROP TABLE ${quote(schema ?? '')}.${quote(table ?? '')}`);
    await admin.query('DELETE FROM lakets._chunk_metadata WHERE chunk_name = $1', [r.chunk_name]);
  }
}

/** The UTC times of day at which the table's non-dropped chunks start, and how many there are. */
async function startTimes(admin: pg.Client, id: number): Promise<{ times: string[]; count: number }> {
  const { rows } = await admin.query<{ times: string[]; count: number }>(
    `SELECT array_agg(DISTINCT to_char(range_start AT TIME ZONE 'UTC', 'HH24:MI')) AS times, count(*)::int AS count
       FROM lakets._chunk_metadata WHERE chronotable_id = $1 AND status <> 'dropped'`,
    [id],
  );
  return rows[0] as { times: string[]; count: number };
}

describe('chunk grids (unit)', () => {
  it('maps a grid offset to the fixed-offset time zone that reproduces it', () => {
    expect(chunkGrid(86_400, 0).timeZone).toBeUndefined();
    expect(chunkGrid(86_400, null)).toMatchObject({
      offsetSeconds: 0,
      description: expect.stringMatching(/^UTC grid/),
    });
    // Daily chunks from 23:00 UTC: a session one hour east of UTC (Europe/Berlin in winter).
    expect(chunkGrid(86_400, 23 * 3600)).toMatchObject({ timeZone: '<+01:00>-01:00' });
    // Chunks from 05:30 UTC: 5.5 h west.
    expect(chunkGrid(86_400, 5.5 * 3600)).toMatchObject({ timeZone: '<-05:30>+05:30' });
    // Weekly chunks from Monday 00:00 UTC (2000-01-01 was a Saturday): 2 days later, or 5 days east.
    expect(chunkGrid(7 * 86_400, 2 * 86_400).timeZone).toBe('<-48:00>+48:00');
    // 30-day chunks 10 days off cannot be expressed by a time zone (at most 167:59:59).
    const far = chunkGrid(30 * 86_400, 10 * 86_400);
    expect(far.timeZone).toBeUndefined();
    expect(far.description).toMatch(/no session time zone can express it/);
    expect(fixedOffsetZone(3600 + 15 * 60 + 7)).toBe('<+01:15:07>-01:15:07');
  });
});

describe('against the public behaviour: origin in the session time zone, cached per session', () => {
  let db: TestDatabase;
  let admin: pg.Client;
  let berlin: pg.Client;

  beforeAll(async () => {
    db = await freshDatabase({ lakets: true });
    admin = await db.connect();
    await sessionGrid(admin);
    berlin = await db.connect({ timeZone: 'Europe/Berlin' });
  });

  it('reproduces the public failure: a UTC session overlaps a grid laid out from Berlin (42P17)', async () => {
    const id = await dailyTable(berlin, 'grid_probe');
    expect(await startTimes(admin, id)).toMatchObject({ times: ['23:00'] });
    await dropNewest(admin, id, 1);
    const utc = await db.connect();
    await expect(utc.query('SELECT lakets._ensure_partitions($1)', [id])).rejects.toMatchObject({
      code: '42P17',
      message: expect.stringMatching(/would overlap partition/),
    });
    // The origin is cached with the session's first plan: a later SET TimeZone alone does not move it.
    await utc.query(`SET TimeZone = '${fixedOffsetZone(3600)}'`);
    await expect(utc.query('SELECT lakets._ensure_partitions($1)', [id])).rejects.toMatchObject({
      code: '42P17',
    });
    await utc.query('DISCARD PLANS');
    expect((await utc.query('SELECT lakets._ensure_partitions($1) AS n', [id])).rows[0].n).toBe(1);
  });

  it('creates the missing partitions on each table’s own grid, in one session, in either order', async () => {
    const offset = await dailyTable(berlin, 'grid_berlin');
    const utcTable = await dailyTable(admin, 'grid_utc');
    expect(await startTimes(admin, utcTable)).toMatchObject({ times: ['00:00'] });
    const job = await db.connect(); // one session for both runs, as a warm Lambda keeps it

    // The UTC table is more urgent, so its call caches a UTC origin first; then the Berlin table.
    await dropNewest(admin, utcTable, 3);
    await dropNewest(admin, offset, 2);
    const first = await runJob(JOBS['partition-manager'], job, scheduled, unlimited);
    expect(first.status, JSON.stringify(first.items)).toBe('ok');
    const names = first.items.map((i) => i.name);
    expect(names.indexOf('public.grid_utc')).toBeLessThan(names.indexOf('public.grid_berlin'));
    const berlinItem = first.items.find((i) => i.name === 'public.grid_berlin');
    expect(berlinItem).toMatchObject({ outcome: 'created', count: 2 });
    expect(berlinItem?.grid).toMatch(/kept the table's grid: chunks start 23:00 after the UTC grid/);
    expect(berlinItem?.grid).toMatch(/time zone UTC\+01:00/);
    expect(first.items.find((i) => i.name === 'public.grid_utc')).toMatchObject({
      outcome: 'created',
      count: 3,
    });
    expect(first.items.find((i) => i.name === 'public.grid_utc')?.grid).toBeUndefined();

    // Now the Berlin table first: the UTC table after it must not inherit the Berlin origin.
    await dropNewest(admin, offset, 3);
    await dropNewest(admin, utcTable, 2);
    const second = await runJob(JOBS['partition-manager'], job, scheduled, unlimited);
    expect(second.status, JSON.stringify(second.items)).toBe('ok');
    const order = second.items.map((i) => i.name);
    expect(order.indexOf('public.grid_berlin')).toBeLessThan(order.indexOf('public.grid_utc'));
    expect(await startTimes(admin, offset)).toEqual({ times: ['23:00'], count: 5 });
    expect(await startTimes(admin, utcTable)).toEqual({ times: ['00:00'], count: 5 });
    // The job's session is back in UTC.
    expect((await job.query('SHOW TimeZone')).rows[0].TimeZone).toBe('UTC');

    const dry = await runJob(JOBS['partition-manager'], job, { ...scheduled, dryRun: true }, unlimited);
    expect(dry.items.every((i) => i.outcome === 'unchanged')).toBe(true);
  });
});

describe('against the compatible schema (UTC pinned)', () => {
  let admin: pg.Client;
  let id: number;

  beforeAll(async () => {
    const db = await freshDatabase({ lakets: true });
    admin = await db.connect();
    // Lay the table out as a Berlin session of the public LakeTS would, then back to our behaviour.
    const restore = await sessionGrid(admin);
    id = await dailyTable(await db.connect({ timeZone: 'Europe/Berlin' }), 'grid_kept');
    await restore();
  });

  it('keeps an offset grid: the missing partitions continue it, with UTC names', async () => {
    await dropNewest(admin, id, 2);
    const dry = await runJob(JOBS['partition-manager'], admin, { ...scheduled, dryRun: true }, unlimited);
    expect(dry.items).toEqual([expect.objectContaining({ outcome: 'would-create', count: 2 })]);
    const report = await runJob(JOBS['partition-manager'], admin, scheduled, unlimited);
    expect(report.status, JSON.stringify(report.items)).toBe('ok');
    expect(report.items[0]).toMatchObject({ name: 'public.grid_kept', outcome: 'created', count: 2 });
    expect(report.items[0]?.grid).toMatch(/kept the table's grid/);
    expect(await startTimes(admin, id)).toEqual({ times: ['23:00'], count: 5 });
    const { rows } = await admin.query<{ ok: boolean }>(
      `SELECT bool_and(chunk_name = 'public.grid_kept_' || to_char(range_start AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MISS')) AS ok
         FROM lakets._chunk_metadata WHERE chronotable_id = $1`,
      [id],
    );
    expect(rows[0]?.ok).toBe(true);
    // The compatible function keeps the grid by itself too, from any session.
    await dropNewest(admin, id, 1);
    expect((await admin.query('SELECT lakets._ensure_partitions($1) AS n', [id])).rows[0].n).toBe(1);
  });
});

describe('urgency order', () => {
  let admin: pg.Client;

  beforeAll(async () => {
    const db = await freshDatabase({ lakets: true });
    admin = await db.connect();
  });

  it('attempts the table whose partitions end soonest first, so the last in name order is not starved', async () => {
    const ids: Record<string, number> = {};
    for (const name of ['urg_a', 'urg_m', 'urg_z']) ids[name] = await dailyTable(admin, name);
    await dropNewest(admin, ids['urg_z'] as number, 3); // its future runs out first
    await dropNewest(admin, ids['urg_m'] as number, 1);
    // A budget that lets one item start per run, as a run cut by its deadline.
    const oneItem = (): Budget => {
      let started = 0;
      return { canStart: () => started++ < 1, spent: () => {} };
    };
    const first = await runJob(JOBS['partition-manager'], admin, scheduled, oneItem());
    expect(first.status).toBe('incomplete');
    expect(first.items[0]).toMatchObject({ name: 'public.urg_z', outcome: 'created', count: 3 });
    expect(first.leftForNextRun).toEqual(['public.urg_m', 'public.urg_a']);
    const second = await runJob(JOBS['partition-manager'], admin, scheduled, oneItem());
    expect(second.items[0]).toMatchObject({ name: 'public.urg_m', outcome: 'created', count: 1 });

    // A table with no live chunk at all comes before everything.
    await admin.query(`UPDATE lakets._chunk_metadata SET status = 'dropped' WHERE chronotable_id = $1`, [
      ids['urg_z'],
    ]);
    const third = await runJob(JOBS['partition-manager'], admin, scheduled, oneItem());
    expect(third.items[0]).toMatchObject({ name: 'public.urg_z' });
  });
});
