// The durability proof and tiering: _cdf_committed_lsn (fail-closed), _get_chunks_to_tier, tier_chunk,
// untier_chunk, show_tiering_status, and a write into a tiered chunk deferring retention.
import type pg from 'pg';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { dropWal2delta, installWal2delta, setSync, syncCaughtUp } from '../../dev/fake-lakehouse-sync.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { captureNotices } from '../support/pg-assert.ts';
import { DAY_MS, serverNow } from '../support/time.ts';
import { chunks, lsnCompare, makeChronotable, relationExists } from './helpers.ts';

let db: TestDatabase;
let client: pg.Client;
let now: number;
/** A non-superuser login role with the job's LakeTS grants but nothing on wal2delta unless a test grants it. */
let probeRole: string;
let probe: pg.Client;

beforeAll(async () => {
  db = await freshDatabase({ lakets: true });
  client = await db.connect();
  now = await serverNow(client);
  probeRole = `probe_${db.name}`;
  await client.query(`CREATE ROLE ${probeRole} LOGIN PASSWORD 'probe-pw';
    GRANT USAGE ON SCHEMA lakets TO ${probeRole};
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA lakets TO ${probeRole};
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lakets TO ${probeRole};`);
  probe = await db.connect({ user: probeRole, password: 'probe-pw' });
});

// Each test starts from an empty Lakehouse Sync fixture and sets what it needs.
beforeEach(async () => {
  await dropWal2delta(client);
  await installWal2delta(client);
});

/** Chunk name of the day `day` days from now. */
function chunkOf(table: string, day: number): string {
  const d = new Date(now + day * DAY_MS).toISOString();
  return `public.${table}_${d.slice(0, 4)}${d.slice(5, 7)}${d.slice(8, 10)}_000000`;
}

/**
 * A synced ChronoTable (1-day chunks) with rows 10, 8 and 6 days ago — partitions for days -10..-6 and
 * the default window -1..+3 — and a tiering policy after 2 days. Lakehouse Sync is caught up.
 */
async function tieredTable(table: string, policy = "lakets.add_tiering_policy($1, '2 days')"): Promise<void> {
  await makeChronotable(client, table, {
    interval: '1 day',
    rows: [-10, -8, -6].map((d) => new Date(now + d * DAY_MS)),
  });
  await client.query(`SELECT ${policy}`, [table]);
  await client.query('SELECT lakets.enable_sync($1)', [table]);
  await syncCaughtUp(client, table);
}

async function committed(c: pg.Client, shadow: string): Promise<string | null> {
  return (await c.query('SELECT lakets._cdf_committed_lsn($1)::text AS l', [shadow])).rows[0].l;
}

async function candidates(c: pg.Client, table: string): Promise<string[]> {
  const { rows } = await c.query('SELECT chunk_name FROM lakets._get_chunks_to_tier($1)', [table]);
  return rows.map((r) => r.chunk_name);
}

async function tier(c: pg.Client, chunk: string): Promise<boolean> {
  return (await c.query('SELECT lakets.tier_chunk($1) AS ok', [chunk])).rows[0].ok;
}

async function statusOf(table: string, chunk: string): Promise<string | undefined> {
  return (await chunks(client, table)).find((m) => m.chunk_name === chunk)?.status;
}

describe('_cdf_committed_lsn (fail-closed)', () => {
  it('returns committed_lsn while STREAMING, NULL otherwise, and never raises', async () => {
    await tieredTable('cdf_a');
    const lsn = await setSync(client, 'cdf_a', 'STREAMING', '0/3000060');
    expect(lsn).toBe('0/3000060');
    expect(await committed(client, '_shadow_cdf_a')).toBe('0/3000060');
    expect(await committed(client, 'lakets_cdf._shadow_cdf_a')).toBe('0/3000060');
    for (const status of ['SNAPSHOTTING', 'SKIPPED'] as const) {
      await setSync(client, 'cdf_a', status, '0/3000060');
      expect(await committed(client, '_shadow_cdf_a'), status).toBeNull();
    }
    // No row for the shadow.
    await client.query('DELETE FROM wal2delta.tables');
    expect(await committed(client, '_shadow_cdf_a')).toBeNull();
    // An unknown shadow or none at all.
    expect(await committed(client, '_shadow_nope')).toBeNull();
    expect((await client.query('SELECT lakets._cdf_committed_lsn(NULL) AS l')).rows[0].l).toBeNull();
    // wal2delta.tables missing, then the whole schema missing.
    await client.query('DROP TABLE wal2delta.tables');
    expect(await committed(client, '_shadow_cdf_a')).toBeNull();
    await dropWal2delta(client);
    expect(await committed(client, '_shadow_cdf_a')).toBeNull();
  });

  it('is NULL, not an error, when wal2delta.tables has an unexpected shape', async () => {
    await tieredTable('cdf_shape');
    await dropWal2delta(client);
    await client.query('CREATE SCHEMA wal2delta; CREATE TABLE wal2delta.tables (table_oid oid, state text)');
    await client.query(
      "INSERT INTO wal2delta.tables VALUES ('lakets_cdf._shadow_cdf_shape'::regclass, 'STREAMING')",
    );
    expect(await committed(client, '_shadow_cdf_shape')).toBeNull();
    const notices = captureNotices(client);
    expect(await tier(client, chunkOf('cdf_shape', -8))).toBe(false);
    expect(notices.take()[0]!.message).toContain('wal2delta.tables could not be read');
  });

  it('is NULL for a role without USAGE on wal2delta or SELECT on wal2delta.tables, the LSN with both', async () => {
    await tieredTable('cdf_b');
    await setSync(client, 'cdf_b', 'STREAMING', '0/4000000');
    expect(await committed(probe, '_shadow_cdf_b')).toBeNull();
    await client.query(`GRANT USAGE ON SCHEMA wal2delta TO ${probeRole}`);
    expect(await committed(probe, '_shadow_cdf_b')).toBeNull();
    await client.query(`GRANT SELECT ON wal2delta.tables TO ${probeRole}`);
    expect(await committed(probe, '_shadow_cdf_b')).toBe('0/4000000');
    await client.query(`REVOKE USAGE ON SCHEMA wal2delta FROM ${probeRole}`);
    expect(await committed(probe, '_shadow_cdf_b')).toBeNull();
  });
});

describe('_get_chunks_to_tier', () => {
  it('lists active chunks with range_end <= now() - after, oldest first', async () => {
    await tieredTable('gct_a');
    const expected = [-10, -9, -8, -7, -6].map((d) => chunkOf('gct_a', d));
    const { rows } = await client.query('SELECT * FROM lakets._get_chunks_to_tier($1)', ['gct_a']);
    expect(rows.map((r) => r.chunk_name)).toEqual(expected);
    const meta = await chunks(client, 'gct_a');
    for (const r of rows) {
      const m = meta.find((x) => x.chunk_name === r.chunk_name)!;
      expect(r).toEqual({
        chunk_id: m.id,
        chunk_name: m.chunk_name,
        range_start: m.range_start,
        range_end: m.range_end,
      });
    }
    // Tiered chunks are no longer candidates.
    expect(await tier(client, expected[1]!)).toBe(true);
    expect(await candidates(client, 'gct_a')).toEqual([expected[0], ...expected.slice(2)]);
  });

  it('includes a chunk ending exactly at now() - after and not the next one', async () => {
    await tieredTable('gct_b');
    await client.query('BEGIN');
    try {
      // In one transaction now() is fixed: make `after` end exactly at day -8's range_end.
      await client.query(
        `SELECT lakets.add_tiering_policy('gct_b', now() - range_end) FROM lakets._chunk_metadata WHERE chunk_name = $1`,
        [chunkOf('gct_b', -8)],
      );
      expect(await candidates(client, 'gct_b')).toEqual([-10, -9, -8].map((d) => chunkOf('gct_b', d)));
    } finally {
      await client.query('ROLLBACK');
    }
  });

  it('uses tier_after of a tiered_retention policy', async () => {
    await tieredTable('gct_c', "lakets.add_tiered_retention_policy($1, '7 days', '30 days')");
    expect(await candidates(client, 'gct_c')).toEqual([-10, -9, -8].map((d) => chunkOf('gct_c', d)));
  });

  it('is empty without an enabled tiering-kind policy, without a shadow, or unless STREAMING', async () => {
    await tieredTable('gct_d');
    expect(await candidates(client, 'gct_d')).toHaveLength(5);
    await client.query(
      "UPDATE lakets._policy_registry SET enabled = false WHERE chronotable_id = (SELECT id FROM lakets._chronotable_registry WHERE table_name = 'gct_d')",
    );
    expect(await candidates(client, 'gct_d')).toEqual([]);
    await client.query("SELECT lakets.add_tiering_policy('gct_d', '2 days')"); // re-enables
    expect(await candidates(client, 'gct_d')).toHaveLength(5);
    for (const status of ['SNAPSHOTTING', 'SKIPPED'] as const) {
      await setSync(client, 'gct_d', status, 'current');
      expect(await candidates(client, 'gct_d'), status).toEqual([]);
    }
    await client.query('DELETE FROM wal2delta.tables');
    expect(await candidates(client, 'gct_d')).toEqual([]);
    await syncCaughtUp(client, 'gct_d');
    expect(await candidates(client, 'gct_d')).toHaveLength(5);
    await dropWal2delta(client);
    expect(await candidates(client, 'gct_d')).toEqual([]);
    await installWal2delta(client);
    // A retention-only policy is not a tiering policy.
    await client.query(
      "SELECT lakets.remove_tiering_policy('gct_d'); SELECT lakets.add_retention_policy('gct_d', '3 days')",
    );
    await syncCaughtUp(client, 'gct_d');
    expect(await candidates(client, 'gct_d')).toEqual([]);
    // No shadow: a tiering policy on an unsynced table.
    await makeChronotable(client, 'gct_e', { interval: '1 day', rows: [new Date(now - 10 * DAY_MS)] });
    await client.query("SELECT lakets.add_tiering_policy('gct_e', '2 days')");
    expect(await candidates(client, 'gct_e')).toEqual([]);
  });
});

describe('tier_chunk', () => {
  it('TRUE: flags the chunk tiered with tiered_at, drops nothing', async () => {
    await tieredTable('tc_a');
    const chunk = chunkOf('tc_a', -8);
    const partition = chunk.slice('public.'.length);
    const rowsBefore = (await client.query(`SELECT count(*)::int AS n FROM ${partition}`)).rows[0].n;
    expect(rowsBefore).toBe(1);
    const { rows } = await client.query('SELECT lakets.tier_chunk($1) AS ok, now() AS now', [chunk]);
    expect(rows[0].ok).toBe(true);
    const meta = (await chunks(client, 'tc_a')).find((m) => m.chunk_name === chunk)!;
    expect(meta.status).toBe('tiered');
    expect(meta.tiered_at).toEqual(rows[0].now);
    expect(await relationExists(client, 'public', partition)).toBe(true);
    expect((await client.query(`SELECT count(*)::int AS n FROM ${partition}`)).rows[0].n).toBe(rowsBefore);
    expect((await client.query('SELECT count(*)::int AS n FROM tc_a')).rows[0].n).toBe(3);
    // Other chunks are untouched.
    expect(
      (await chunks(client, 'tc_a')).filter((m) => m.status !== 'active').map((m) => m.chunk_name),
    ).toEqual([chunk]);
  });

  it('an idle shadow still proves old chunks: the proof compares with the chunk’s last write, not the WAL head', async () => {
    await tieredTable('tc_idle');
    await client.query('CREATE TABLE busy (x int); INSERT INTO busy SELECT generate_series(1, 2000)');
    expect(await tier(client, chunkOf('tc_idle', -10))).toBe(true);
  });

  it('TRUE when committed_lsn equals the chunk’s last write exactly (>=), FALSE one byte before', async () => {
    await tieredTable('tc_eq');
    await client.query('INSERT INTO tc_eq (ts, v) VALUES ($1, 1), ($2, 2)', [
      new Date(now - 7 * DAY_MS),
      new Date(now - 6 * DAY_MS),
    ]);
    const meta = await chunks(client, 'tc_eq');
    const stampOf = (day: number) =>
      meta.find((m) => m.chunk_name === chunkOf('tc_eq', day))!.last_write_lsn!;
    await setSync(client, 'tc_eq', 'STREAMING', stampOf(-7));
    expect(await tier(client, chunkOf('tc_eq', -7))).toBe(true);
    const justBefore = (await client.query('SELECT ($1::pg_lsn - 1::numeric)::text AS l', [stampOf(-6)]))
      .rows[0].l;
    await setSync(client, 'tc_eq', 'STREAMING', justBefore);
    expect(await tier(client, chunkOf('tc_eq', -6))).toBe(false);
    await setSync(client, 'tc_eq', 'STREAMING', stampOf(-6));
    expect(await tier(client, chunkOf('tc_eq', -6))).toBe(true);
  });

  it('FALSE with a NOTICE when Lakehouse Sync is missing, unreadable, not STREAMING or behind', async () => {
    await tieredTable('tc_b');
    const chunk = chunkOf('tc_b', -9);
    const notices = captureNotices(client);
    const probeNotices = captureNotices(probe);
    const expectDeferred = async (c: pg.Client, n: typeof notices, reason: string) => {
      expect(await tier(c, chunk)).toBe(false);
      expect(n.take().map((x) => x.message)).toEqual([`lakets: tiering deferred chunk ${chunk}: ${reason}`]);
      expect(await statusOf('tc_b', chunk)).toBe('active');
    };

    await setSync(client, 'tc_b', 'SNAPSHOTTING', 'current');
    await expectDeferred(client, notices, 'shadow lakets_cdf._shadow_tc_b is SNAPSHOTTING, not STREAMING');
    await client.query('DELETE FROM wal2delta.tables');
    await expectDeferred(
      client,
      notices,
      'shadow lakets_cdf._shadow_tc_b has no row in wal2delta.tables (Lakehouse Sync has not picked it up)',
    );
    await syncCaughtUp(client, 'tc_b');
    await expectDeferred(probe, probeNotices, `role ${probeRole} lacks USAGE on schema wal2delta`);
    await client.query(`GRANT USAGE ON SCHEMA wal2delta TO ${probeRole}`);
    await expectDeferred(probe, probeNotices, `role ${probeRole} lacks SELECT on wal2delta.tables`);

    // Behind: a write after the committed position.
    const lsn = await syncCaughtUp(client, 'tc_b');
    await client.query('INSERT INTO tc_b (ts, v) VALUES ($1, 1)', [new Date(now - 9 * DAY_MS)]);
    const stamp = (await chunks(client, 'tc_b')).find((m) => m.chunk_name === chunk)!.last_write_lsn!;
    expect(lsnCompare(stamp, lsn!)).toBe(1);
    await expectDeferred(
      client,
      notices,
      `committed_lsn ${lsn} is behind the chunk's last_write_lsn ${stamp} (Lakehouse Sync has not caught up)`,
    );
    // A chunk not written since is still provable at the same committed_lsn.
    expect(await tier(client, chunkOf('tc_b', -10))).toBe(true);
    // No stamp at all proves nothing.
    await syncCaughtUp(client, 'tc_b');
    await client.query('UPDATE lakets._chunk_metadata SET last_write_lsn = NULL WHERE chunk_name = $1', [
      chunk,
    ]);
    await expectDeferred(client, notices, 'the chunk has no last_write_lsn');

    await dropWal2delta(client);
    notices.take(); // DROP SCHEMA's own "drop cascades to" notice
    await expectDeferred(
      client,
      notices,
      'wal2delta.tables does not exist (Lakehouse Sync is not set up on this database)',
    );
  });

  it('FALSE for an unknown chunk or one that is not active', async () => {
    await tieredTable('tc_c');
    const notices = captureNotices(client);
    expect(await tier(client, 'public.tc_c_19990101_000000')).toBe(false);
    expect(notices.take().map((n) => n.message)).toEqual([
      'lakets: tiering skipped chunk public.tc_c_19990101_000000: unknown chunk',
    ]);
    const chunk = chunkOf('tc_c', -7);
    expect(await tier(client, chunk)).toBe(true);
    notices.take();
    expect(await tier(client, chunk)).toBe(false);
    expect(notices.take().map((n) => n.message)).toEqual([
      `lakets: tiering skipped chunk ${chunk}: status is tiered, only active chunks are tiered`,
    ]);
    await client.query("UPDATE lakets._chunk_metadata SET status = 'dropped' WHERE chunk_name = $1", [
      chunkOf('tc_c', -6),
    ]);
    expect(await tier(client, chunkOf('tc_c', -6))).toBe(false);
    expect(notices.take()[0]!.message).toContain('status is dropped');
  });
});

describe('untier_chunk and show_tiering_status', () => {
  it('untier_chunk moves tiered back to active, and only tiered chunks', async () => {
    await tieredTable('ut_a');
    const chunk = chunkOf('ut_a', -8);
    expect(await tier(client, chunk)).toBe(true);
    expect((await client.query('SELECT lakets.untier_chunk($1) AS ok', [chunk])).rows[0].ok).toBe(true);
    const meta = (await chunks(client, 'ut_a')).find((m) => m.chunk_name === chunk)!;
    expect(meta.status).toBe('active');
    expect(meta.tiered_at).toBeNull();
    expect(await candidates(client, 'ut_a')).toContain(chunk);
    const notices = captureNotices(client);
    expect((await client.query('SELECT lakets.untier_chunk($1) AS ok', [chunk])).rows[0].ok).toBe(false);
    expect(notices.take().map((n) => n.message)).toEqual([
      `lakets: untier skipped chunk ${chunk}: status is active, not tiered`,
    ]);
    expect((await client.query("SELECT lakets.untier_chunk('public.ut_a_nope') AS ok")).rows[0].ok).toBe(
      false,
    );
    expect(notices.take()[0]!.message).toContain('unknown chunk');
  });

  it('show_tiering_status reports per chunk its status, LSNs, durability and why not', async () => {
    await tieredTable('sts_a');
    const lsn = await syncCaughtUp(client, 'sts_a');
    await client.query('INSERT INTO sts_a (ts, v) VALUES ($1, 5)', [new Date(now - 6 * DAY_MS)]);
    expect(await tier(client, chunkOf('sts_a', -10))).toBe(true);
    const { rows } = await client.query("SELECT * FROM lakets.show_tiering_status('sts_a')");
    const meta = await chunks(client, 'sts_a');
    expect(rows.map((r) => r.chunk_name)).toEqual(meta.map((m) => m.chunk_name));
    for (const r of rows) {
      const m = meta.find((x) => x.chunk_name === r.chunk_name)!;
      expect(r).toMatchObject({
        schema_name: 'public',
        table_name: 'sts_a',
        status: m.status,
        committed_lsn: lsn,
      });
      expect(r.last_write_lsn).toBe(m.last_write_lsn);
    }
    const byName = new Map(rows.map((r) => [r.chunk_name, r]));
    expect(byName.get(chunkOf('sts_a', -10))).toMatchObject({
      status: 'tiered',
      durable: true,
      reason: null,
    });
    expect(byName.get(chunkOf('sts_a', -9))).toMatchObject({ status: 'active', durable: true, reason: null });
    const behind = byName.get(chunkOf('sts_a', -6))!;
    expect(behind.durable).toBe(false);
    expect(behind.reason).toContain(`committed_lsn ${lsn} is behind the chunk's last_write_lsn`);

    await setSync(client, 'sts_a', 'SNAPSHOTTING', 'current');
    const snap = await client.query(
      "SELECT DISTINCT durable, reason FROM lakets.show_tiering_status('sts_a')",
    );
    expect(snap.rows).toEqual([
      { durable: false, reason: 'shadow lakets_cdf._shadow_sts_a is SNAPSHOTTING, not STREAMING' },
    ]);
    // Without a table name it covers every ChronoTable.
    const all = await client.query('SELECT DISTINCT table_name FROM lakets.show_tiering_status() ORDER BY 1');
    expect(all.rows.map((r) => r.table_name)).toEqual(expect.arrayContaining(['sts_a', 'ut_a']));
  });
});

describe('a write into a tiered chunk', () => {
  it('moves its last_write_lsn, so retention defers it until Lakehouse Sync catches up, then drops it', async () => {
    await tieredTable('wt_a', "lakets.add_tiered_retention_policy($1, '2 days', '4 days')");
    const old = [-10, -9, -8, -7, -6].map((d) => chunkOf('wt_a', d));
    for (const c of old) expect(await tier(client, c)).toBe(true);
    const written = chunkOf('wt_a', -8);
    const before = (await chunks(client, 'wt_a')).find((m) => m.chunk_name === written)!;
    const lsn = (
      await client.query(
        "SELECT committed_lsn::text AS l FROM wal2delta.tables WHERE table_oid = 'lakets_cdf._shadow_wt_a'::regclass",
      )
    ).rows[0].l as string;
    await client.query('INSERT INTO wt_a (ts, v) VALUES ($1, 77)', [new Date(now - 8 * DAY_MS)]);
    const after = (await chunks(client, 'wt_a')).find((m) => m.chunk_name === written)!;
    expect(after.status).toBe('tiered');
    expect(lsnCompare(after.last_write_lsn!, before.last_write_lsn!)).toBe(1);

    const notices = captureNotices(client);
    expect((await client.query("SELECT lakets.execute_retention('wt_a') AS n")).rows[0].n).toBe(4);
    expect(notices.take().map((n) => n.message)).toEqual([
      `lakets: retention deferred chunk ${written}: committed_lsn ${lsn} is behind the chunk's last_write_lsn ${after.last_write_lsn} (Lakehouse Sync has not caught up)`,
    ]);
    expect(await statusOf('wt_a', written)).toBe('tiered');
    expect(await relationExists(client, 'public', written.slice('public.'.length))).toBe(true);
    expect(
      (await client.query('SELECT v FROM wt_a WHERE ts < $1 ORDER BY v', [new Date(now - 5 * DAY_MS)])).rows,
    ).toEqual([{ v: 2 }, { v: 77 }]);

    await syncCaughtUp(client, 'wt_a');
    expect((await client.query("SELECT lakets.execute_retention('wt_a') AS n")).rows[0].n).toBe(1);
    expect(await statusOf('wt_a', written)).toBe('dropped');
    expect(await relationExists(client, 'public', written.slice('public.'.length))).toBe(false);
    expect(
      (await client.query('SELECT count(*)::int AS n FROM wt_a WHERE ts < $1', [new Date(now - 5 * DAY_MS)]))
        .rows[0].n,
    ).toBe(0);
  });
});
