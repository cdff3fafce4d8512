// A write is stamped again when its transaction commits: a transaction that stays open while
// Lakehouse Sync passes its statement-time stamp must not let its chunk count as durable.
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { installWal2delta, syncCaughtUp } from '../../dev/fake-lakehouse-sync.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { chunkStatuses, metricsTable } from '../support/lakets-fixtures.ts';

let db: TestDatabase;
let admin: pg.Client;

beforeAll(async () => {
  db = await freshDatabase({ lakets: true });
  admin = await db.connect();
  await installWal2delta(admin);
});

/** The chunk holding the hour `daysAgo` days back, and a late write into it left open in `writer`. */
async function openLateWrite(writer: pg.Client, table: string, daysAgo: number): Promise<string> {
  const { rows } = await admin.query<{ chunk_name: string }>(
    `SELECT m.chunk_name FROM lakets._chunk_metadata m JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
      WHERE r.table_name = $1 AND m.range_start = date_trunc('day', now()) - make_interval(days => $2)`,
    [table, daysAgo],
  );
  await writer.query('BEGIN');
  await writer.query(
    `UPDATE public.${table} SET value = value + 1
      WHERE ts >= date_trunc('day', now()) - make_interval(days => $1)
        AND ts < date_trunc('day', now()) - make_interval(days => $1) + interval '1 hour'`,
    [daysAgo],
  );
  return rows[0]?.chunk_name as string;
}

describe('commit-time stamp', () => {
  it('keeps retention from dropping a chunk whose writer committed after Sync passed its statement', async () => {
    await metricsTable(admin, 'cs_ret', 8);
    await admin.query(
      `SELECT lakets.add_tiered_retention_policy('cs_ret', interval '1 day', interval '4 days')`,
    );
    await admin.query(`SELECT lakets.enable_sync('cs_ret')`);
    const writer = await db.connect();
    const chunk = await openLateWrite(writer, 'cs_ret', 6);
    const statementStamp = (
      await admin.query<{ lsn: string }>(
        `SELECT last_write_lsn::text AS lsn FROM lakets._chunk_metadata WHERE chunk_name = $1`,
        [chunk],
      )
    ).rows[0]?.lsn;
    // Other work commits and Sync reports everything up to the WAL head, past the open statement's stamp.
    await admin.query(`INSERT INTO cs_ret VALUES (now(), 'other', 1)`);
    await syncCaughtUp(admin, 'cs_ret');
    await writer.query('COMMIT');

    const { rows } = await admin.query<{ committed: string; stamp: string; ahead: boolean }>(
      `SELECT t.committed_lsn::text AS committed, m.last_write_lsn::text AS stamp, m.last_write_lsn > t.committed_lsn AS ahead
         FROM lakets._chunk_metadata m, wal2delta.tables t
        WHERE m.chunk_name = $1 AND t.table_oid = 'lakets_cdf._shadow_cs_ret'::regclass`,
      [chunk],
    );
    expect(rows[0]?.stamp).not.toBe(statementStamp);
    expect(rows[0]?.ahead).toBe(true);
    await admin.query(`SELECT lakets.execute_retention('cs_ret')`);
    expect((await chunkStatuses(admin, 'cs_ret'))[chunk]).toBe('active');

    // Once Sync has the commit too, the chunk goes.
    await syncCaughtUp(admin, 'cs_ret');
    await admin.query(`SELECT lakets.execute_retention('cs_ret')`);
    expect((await chunkStatuses(admin, 'cs_ret'))[chunk]).toBe('dropped');
  });

  it('keeps tiering from flagging such a chunk, and leaves no bookkeeping behind', async () => {
    await metricsTable(admin, 'cs_tier', 6);
    await admin.query(`SELECT lakets.add_tiering_policy('cs_tier', interval '2 days')`);
    await admin.query(`SELECT lakets.enable_sync('cs_tier')`);
    const writer = await db.connect();
    const chunk = await openLateWrite(writer, 'cs_tier', 4);
    await admin.query(`INSERT INTO cs_tier VALUES (now(), 'other', 1)`);
    await syncCaughtUp(admin, 'cs_tier');
    await writer.query('COMMIT');
    const tiered = await admin.query<{ ok: boolean }>(`SELECT lakets.tier_chunk($1) AS ok`, [chunk]);
    expect(tiered.rows[0]?.ok).toBe(false);
    await syncCaughtUp(admin, 'cs_tier');
    expect(
      (await admin.query<{ ok: boolean }>(`SELECT lakets.tier_chunk($1) AS ok`, [chunk])).rows[0]?.ok,
    ).toBe(true);
    const pending = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM lakets._pending_write`);
    expect(pending.rows[0]?.n).toBe(0);
  });

  it('leaves an aborted write harmless', async () => {
    await metricsTable(admin, 'cs_abort', 3);
    await admin.query(`SELECT lakets.add_tiering_policy('cs_abort', interval '1 day')`);
    const writer = await db.connect();
    await openLateWrite(writer, 'cs_abort', 2);
    await writer.query('ROLLBACK');
    const pending = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM lakets._pending_write`);
    expect(pending.rows[0]?.n).toBe(0);
  });
});
