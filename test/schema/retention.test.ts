// lakets.execute_retention: drops expired partitions (DROP TABLE, status dropped), gated on proven
// durability for synced tables and tiered_retention policies, forceable, per-chunk error isolation,
// stamps last_run_at and touches nothing else.
import type pg from 'pg';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { dropWal2delta, installWal2delta, syncCaughtUp } from '../../dev/fake-lakehouse-sync.ts';
import { freshDatabase } from '../support/db.ts';
import { captureNotices } from '../support/pg-assert.ts';
import { DAY_MS, serverNow } from '../support/time.ts';
import { chunks, makeChronotable, relationExists } from './helpers.ts';

let client: pg.Client;
let now: number;

beforeAll(async () => {
  const db = await freshDatabase({ lakets: true });
  client = await db.connect();
  now = await serverNow(client);
});

// Each test starts from an empty Lakehouse Sync fixture and sets what it needs.
beforeEach(async () => {
  await dropWal2delta(client);
  await installWal2delta(client);
});

const DAYS = [-10, -8, -6, -4, -1];

/** Chunk name of the day `day` days from now. */
function chunkOf(table: string, day: number): string {
  const d = new Date(now + day * DAY_MS).toISOString();
  return `public.${table}_${d.slice(0, 4)}${d.slice(5, 7)}${d.slice(8, 10)}_000000`;
}

/** A 1-day ChronoTable with rows on days -10, -8, -6, -4, -1: partitions -10..-4 and -1..+3. */
async function table(name: string): Promise<void> {
  await makeChronotable(client, name, {
    interval: '1 day',
    rows: DAYS.map((d) => new Date(now + d * DAY_MS)),
  });
}

async function retention(name: string, force?: boolean): Promise<number> {
  const { rows } =
    force === undefined
      ? await client.query('SELECT lakets.execute_retention($1) AS n', [name])
      : await client.query('SELECT lakets.execute_retention($1, p_force => $2) AS n', [name, force]);
  return rows[0].n;
}

/** Chunk names by status. */
async function byStatus(name: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const m of await chunks(client, name)) out[m.status] = [...(out[m.status] ?? []), m.chunk_name];
  return out;
}

/** Day offsets of the rows still in the table. */
async function rowDays(name: string): Promise<number[]> {
  const { rows } = await client.query(`SELECT ts FROM ${name} ORDER BY ts`);
  return rows.map((r) => Math.round(((r.ts as Date).getTime() - now) / DAY_MS));
}

async function partitionExists(chunk: string): Promise<boolean> {
  return relationExists(client, 'public', chunk.slice('public.'.length));
}

/** Drops are expected for days -10..-6 with drop_after 5 days (range_end <= now() - 5 days). */
const EXPIRED = [-10, -9, -8, -7, -6];

describe('execute_retention without the gate', () => {
  it('drops expired chunks of an unsynced table: DROP TABLE, status dropped, rows gone; returns the count', async () => {
    await table('rt_a');
    await client.query("SELECT lakets.add_retention_policy('rt_a', '5 days')");
    const before = await chunks(client, 'rt_a');
    const { rows } = await client.query("SELECT lakets.execute_retention('rt_a') AS n, now() AS now");
    expect(rows[0].n).toBe(5);
    const status = await byStatus('rt_a');
    expect(status['dropped']).toEqual(EXPIRED.map((d) => chunkOf('rt_a', d)));
    expect(status['active']).toEqual(
      before.filter((m) => !status['dropped']!.includes(m.chunk_name)).map((m) => m.chunk_name),
    );
    for (const d of EXPIRED) expect(await partitionExists(chunkOf('rt_a', d))).toBe(false);
    for (const c of status['active']!) expect(await partitionExists(c)).toBe(true);
    expect(await rowDays('rt_a')).toEqual([-4, -1]);
    const policy = await client.query(
      "SELECT last_run_at FROM lakets._policy_registry p JOIN lakets._chronotable_registry r ON r.id = p.chronotable_id WHERE r.table_name = 'rt_a'",
    );
    expect(policy.rows[0].last_run_at).toEqual(rows[0].now);
    // Nothing left to drop; the registry keeps the dropped rows.
    expect(await retention('rt_a')).toBe(0);
    expect((await chunks(client, 'rt_a')).length).toBe(before.length);
  });

  it('returns 0 and drops nothing without an (enabled) retention policy', async () => {
    await table('rt_b');
    expect(await retention('rt_b')).toBe(0);
    await client.query("SELECT lakets.add_tiering_policy('rt_b', '1 day')");
    expect(await retention('rt_b')).toBe(0);
    await client.query("SELECT lakets.add_retention_policy('rt_b', '5 days')");
    await client.query(
      "UPDATE lakets._policy_registry SET enabled = false WHERE policy_type = 'retention' AND chronotable_id = (SELECT id FROM lakets._chronotable_registry WHERE table_name = 'rt_b')",
    );
    expect(await retention('rt_b')).toBe(0);
    expect(Object.keys(await byStatus('rt_b'))).toEqual(['active']);
    expect(await rowDays('rt_b')).toEqual(DAYS);
  });
});

describe('execute_retention with the durability gate', () => {
  it('a synced table: unproven chunks are deferred with a NOTICE, proven ones dropped', async () => {
    await table('rt_c');
    await client.query(
      "SELECT lakets.add_retention_policy('rt_c', '5 days'); SELECT lakets.enable_sync('rt_c')",
    );
    const lsn = await syncCaughtUp(client, 'rt_c');
    await client.query('UPDATE rt_c SET v = v + 100 WHERE ts = $1', [new Date(now - 8 * DAY_MS)]);
    const stamp = (await chunks(client, 'rt_c')).find(
      (m) => m.chunk_name === chunkOf('rt_c', -8),
    )!.last_write_lsn;
    const shadowRows = (await client.query('SELECT count(*)::int AS n FROM lakets_cdf._shadow_rt_c')).rows[0]
      .n;

    const notices = captureNotices(client);
    expect(await retention('rt_c')).toBe(4);
    expect(notices.take().map((n) => n.message)).toEqual([
      `lakets: retention deferred chunk ${chunkOf('rt_c', -8)}: committed_lsn ${lsn} is behind the chunk's last_write_lsn ${stamp} (Lakehouse Sync has not caught up)`,
    ]);
    expect((await byStatus('rt_c'))['dropped']).toEqual([-10, -9, -7, -6].map((d) => chunkOf('rt_c', d)));
    expect(await partitionExists(chunkOf('rt_c', -8))).toBe(true);
    expect(await rowDays('rt_c')).toEqual([-8, -4, -1]);
    // Dropping partitions never deletes from the shadow (which would delete downstream in UC).
    expect((await client.query('SELECT count(*)::int AS n FROM lakets_cdf._shadow_rt_c')).rows[0].n).toBe(
      shadowRows,
    );

    await syncCaughtUp(client, 'rt_c');
    expect(await retention('rt_c')).toBe(1);
    expect(await rowDays('rt_c')).toEqual([-4, -1]);
  });

  it('never drops when durability cannot be proven (not STREAMING, no wal2delta), unless forced', async () => {
    await table('rt_d');
    await client.query(
      "SELECT lakets.add_retention_policy('rt_d', '5 days'); SELECT lakets.enable_sync('rt_d')",
    );
    await syncCaughtUp(client, 'rt_d');
    await client.query(
      "UPDATE wal2delta.tables SET status = 'SNAPSHOTTING' WHERE table_oid = 'lakets_cdf._shadow_rt_d'::regclass",
    );
    const notices = captureNotices(client);
    expect(await retention('rt_d')).toBe(0);
    const messages = notices.take().map((n) => n.message);
    expect(messages).toEqual(
      EXPIRED.map(
        (d) =>
          `lakets: retention deferred chunk ${chunkOf('rt_d', d)}: shadow lakets_cdf._shadow_rt_d is SNAPSHOTTING, not STREAMING`,
      ),
    );
    await dropWal2delta(client);
    notices.take();
    expect(await retention('rt_d')).toBe(0);
    expect(notices.take()[0]!.message).toContain('wal2delta.tables does not exist');
    expect(await rowDays('rt_d')).toEqual(DAYS);
    expect(Object.keys(await byStatus('rt_d'))).toEqual(['active']);

    expect(await retention('rt_d', true)).toBe(5);
    expect(await rowDays('rt_d')).toEqual([-4, -1]);
  });

  it('a tiered_retention policy gates an unsynced table (nothing can be proven) until forced', async () => {
    await table('rt_e');
    await client.query("SELECT lakets.add_tiered_retention_policy('rt_e', '2 days', '5 days')");
    const notices = captureNotices(client);
    expect(await retention('rt_e')).toBe(0);
    expect(notices.take().map((n) => n.message)).toEqual(
      EXPIRED.map(
        (d) =>
          `lakets: retention deferred chunk ${chunkOf('rt_e', d)}: sync is not enabled (no shadow table)`,
      ),
    );
    expect(await retention('rt_e', false)).toBe(0);
    expect(await rowDays('rt_e')).toEqual(DAYS);
    expect(await retention('rt_e', true)).toBe(5);
    expect((await byStatus('rt_e'))['dropped']).toEqual(EXPIRED.map((d) => chunkOf('rt_e', d)));
  });

  it('tiered_retention on a synced table drops tiered and active chunks once proven', async () => {
    await table('rt_f');
    await client.query(
      "SELECT lakets.add_tiered_retention_policy('rt_f', '2 days', '5 days'); SELECT lakets.enable_sync('rt_f')",
    );
    await syncCaughtUp(client, 'rt_f');
    expect((await client.query('SELECT lakets.tier_chunk($1) AS ok', [chunkOf('rt_f', -9)])).rows[0].ok).toBe(
      true,
    );
    expect(await retention('rt_f')).toBe(5);
    expect((await byStatus('rt_f'))['dropped']).toEqual(EXPIRED.map((d) => chunkOf('rt_f', d)));
  });
});

describe('execute_retention isolation', () => {
  it('one undroppable chunk: a WARNING names it, the others are dropped, the count excludes it', async () => {
    await table('rt_g');
    await client.query("SELECT lakets.add_retention_policy('rt_g', '5 days')");
    const stuck = chunkOf('rt_g', -8);
    await client.query(`CREATE VIEW rt_g_stuck_view AS SELECT * FROM ${stuck}`);
    const notices = captureNotices(client);
    const { rows } = await client.query("SELECT lakets.execute_retention('rt_g') AS n, now() AS now");
    expect(rows[0].n).toBe(4);
    const warnings = notices.take().filter((n) => n.severity === 'WARNING');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.message).toContain(`lakets: retention could not drop chunk ${stuck}:`);
    expect(warnings[0]!.message).toContain('(SQLSTATE 2BP01)');
    const status = await byStatus('rt_g');
    expect(status['dropped']).toEqual([-10, -9, -7, -6].map((d) => chunkOf('rt_g', d)));
    expect(status['active']).toContain(stuck);
    expect(await partitionExists(stuck)).toBe(true);
    expect(await rowDays('rt_g')).toEqual([-8, -4, -1]);
    expect((await client.query('SELECT count(*)::int AS n FROM rt_g_stuck_view')).rows[0].n).toBe(1);
    const policy = await client.query(
      "SELECT last_run_at FROM lakets._policy_registry p JOIN lakets._chronotable_registry r ON r.id = p.chronotable_id WHERE r.table_name = 'rt_g'",
    );
    expect(policy.rows[0].last_run_at).toEqual(rows[0].now);
  });

  it('never touches other tables: other ChronoTables, look-alike names, RollUp-like tables', async () => {
    await table('rt_h');
    await table('rt_h_other'); // a ChronoTable whose name extends this one's
    await client.query(`CREATE TABLE _rollup_rt_h_daily (bucket timestamptz, n int);
      INSERT INTO _rollup_rt_h_daily SELECT now() - g * interval '1 day', g FROM generate_series(1, 20) g;
      CREATE TABLE ${chunkOf('rt_h', -30).slice('public.'.length)} (x int);
      INSERT INTO ${chunkOf('rt_h', -30).slice('public.'.length)} VALUES (1);`);
    await client.query("SELECT lakets.add_retention_policy('rt_h', '5 days')");
    expect(await retention('rt_h')).toBe(5);
    expect(await rowDays('rt_h_other')).toEqual(DAYS);
    expect(Object.keys(await byStatus('rt_h_other'))).toEqual(['active']);
    expect((await client.query('SELECT count(*)::int AS n FROM _rollup_rt_h_daily')).rows[0].n).toBe(20);
    expect(await partitionExists(chunkOf('rt_h', -30))).toBe(true);
  });
});
