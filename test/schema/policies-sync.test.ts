// Policies (add/remove, config jsonb with interval text) and sync (the REPLICA IDENTITY FULL shadow in
// lakets_cdf that Lakehouse Sync streams, mirroring every write to the ChronoTable).
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { captureNotices, expectError } from '../support/pg-assert.ts';
import { serverNow } from '../support/time.ts';
import { makeChronotable } from './helpers.ts';

let db: TestDatabase;
let client: pg.Client;
let now: number;

beforeAll(async () => {
  db = await freshDatabase({ lakets: true });
  client = await db.connect();
  now = await serverNow(client);
});

async function policies(
  table: string,
): Promise<Array<{ policy_type: string; config: unknown; enabled: boolean }>> {
  const { rows } = await client.query(
    `SELECT p.policy_type, p.config, p.enabled FROM lakets._policy_registry p
       JOIN lakets._chronotable_registry r ON r.id = p.chronotable_id
      WHERE r.table_name = $1 ORDER BY p.policy_type`,
    [table],
  );
  return rows;
}

/** Parent and shadow as multisets of rows (NULLs and duplicates included). */
async function parentAndShadow(table: string): Promise<{ parent: string; shadow: string }> {
  const read = async (rel: string) =>
    JSON.stringify(
      (await client.query(`SELECT ts, v, note FROM ${rel} ORDER BY ts, v NULLS FIRST, note NULLS FIRST`))
        .rows,
    );
  return {
    parent: await read(pg.escapeIdentifier(table)),
    shadow: await read(`lakets_cdf.${pg.escapeIdentifier(`_shadow_${table}`)}`),
  };
}

async function expectMirrored(table: string, rows: number): Promise<void> {
  const both = await parentAndShadow(table);
  expect(both.shadow).toBe(both.parent);
  expect(JSON.parse(both.parent)).toHaveLength(rows);
}

async function syncedTable(table: string): Promise<void> {
  await client.query(`CREATE TABLE ${table} (ts timestamptz NOT NULL, v int, note text)`);
  await client.query(
    `INSERT INTO ${table} SELECT $1::timestamptz - g * interval '7 hours', g, CASE WHEN g % 2 = 0 THEN 'even' END
       FROM generate_series(1, 10) g`,
    [new Date(now)],
  );
  await client.query("SELECT lakets.create_chronotable($1, 'ts', '1 day')", [table]);
}

describe('policies', () => {
  it('add_tiering_policy stores {"after"} as interval text, and re-adding replaces it', async () => {
    await makeChronotable(client, 'pol_t');
    const id = (await client.query("SELECT lakets.add_tiering_policy('pol_t', '3 days') AS id")).rows[0].id;
    expect(id).toBeGreaterThan(0);
    expect(await policies('pol_t')).toEqual([
      { policy_type: 'tiering', config: { after: '3 days' }, enabled: true },
    ]);
    await client.query('UPDATE lakets._policy_registry SET enabled = false WHERE id = $1', [id]);
    const again = (await client.query("SELECT lakets.add_tiering_policy('pol_t', '36 hours') AS id")).rows[0]
      .id;
    expect(again).toBe(id);
    const [row] = await policies('pol_t');
    expect(row).toMatchObject({ policy_type: 'tiering', enabled: true });
    const back = await client.query(
      "SELECT ($1::jsonb ->> 'after')::interval = interval '36 hours' AS same",
      [row!.config],
    );
    expect(back.rows[0].same).toBe(true);
    await expectError(
      () => client.query("SELECT lakets.add_tiering_policy('pol_t', '0 days')"),
      'must be a positive interval',
    );
  });

  it('add_retention_policy stores {"drop_after"}', async () => {
    await makeChronotable(client, 'pol_r');
    await client.query("SELECT lakets.add_retention_policy('pol_r', '30 days')");
    expect(await policies('pol_r')).toEqual([
      { policy_type: 'retention', config: { drop_after: '30 days' }, enabled: true },
    ]);
  });

  it('add_tiered_retention_policy stores {"tier_after","drop_after"} and requires tier_after < drop_after', async () => {
    await makeChronotable(client, 'pol_tr');
    await expectError(
      () => client.query("SELECT lakets.add_tiered_retention_policy('pol_tr', '90 days', '7 days')"),
      'tier_after (90 days) must be shorter than drop_after (7 days)',
    );
    await expectError(
      () => client.query("SELECT lakets.add_tiered_retention_policy('pol_tr', '7 days', '168 hours')"),
      'must be shorter than drop_after',
    );
    expect(await policies('pol_tr')).toEqual([]);
    await client.query("SELECT lakets.add_tiered_retention_policy('pol_tr', '7 days', '90 days')");
    expect(await policies('pol_tr')).toEqual([
      {
        policy_type: 'tiered_retention',
        config: { tier_after: '7 days', drop_after: '90 days' },
        enabled: true,
      },
    ]);
  });

  it('refuses policies for a table that is not a ChronoTable', async () => {
    await client.query('CREATE TABLE plain_tbl (ts timestamptz)');
    for (const sql of [
      "SELECT lakets.add_tiering_policy('plain_tbl', '1 day')",
      "SELECT lakets.add_retention_policy('plain_tbl', '1 day')",
      "SELECT lakets.add_tiered_retention_policy('plain_tbl', '1 day', '2 days')",
      "SELECT lakets.enable_sync('plain_tbl')",
    ]) {
      await expectError(() => client.query(sql), 'public.plain_tbl is not a ChronoTable');
    }
  });

  it('remove_tiering_policy / remove_retention_policy remove their kinds only', async () => {
    await makeChronotable(client, 'pol_rm');
    await client.query(`SELECT lakets.add_tiering_policy('pol_rm', '1 day');
      SELECT lakets.add_retention_policy('pol_rm', '10 days');
      SELECT lakets.add_tiered_retention_policy('pol_rm', '2 days', '20 days');`);
    expect((await policies('pol_rm')).map((p) => p.policy_type)).toEqual([
      'retention',
      'tiered_retention',
      'tiering',
    ]);
    expect((await client.query("SELECT lakets.remove_retention_policy('pol_rm') AS r")).rows[0].r).toBe(true);
    expect((await policies('pol_rm')).map((p) => p.policy_type)).toEqual(['tiering']);
    expect((await client.query("SELECT lakets.remove_retention_policy('pol_rm') AS r")).rows[0].r).toBe(
      false,
    );
    expect((await client.query("SELECT lakets.remove_tiering_policy('pol_rm') AS r")).rows[0].r).toBe(true);
    expect(await policies('pol_rm')).toEqual([]);
    expect((await client.query("SELECT lakets.remove_tiering_policy('pol_rm') AS r")).rows[0].r).toBe(false);
  });
});

describe('enable_sync / disable_sync', () => {
  it('creates lakets_cdf._shadow_<table>, unpartitioned, REPLICA IDENTITY FULL, holding the existing rows', async () => {
    await syncedTable('syn_a');
    await client.query("SELECT lakets.enable_sync('syn_a')");
    const shadow = await client.query(
      `SELECT c.relkind::text AS kind, c.relreplident::text AS ident FROM pg_class c
        WHERE c.oid = to_regclass('lakets_cdf._shadow_syn_a')`,
    );
    expect(shadow.rows).toEqual([{ kind: 'r', ident: 'f' }]);
    const registry = await client.query(
      "SELECT shadow_table_name, sync_enabled FROM lakets._chronotable_registry WHERE table_name = 'syn_a'",
    );
    expect(registry.rows).toEqual([{ shadow_table_name: '_shadow_syn_a', sync_enabled: true }]);
    await expectMirrored('syn_a', 10);

    const notices = captureNotices(client);
    await client.query("SELECT lakets.enable_sync('syn_a')");
    expect(notices.take().map((n) => n.message)).toEqual([
      'lakets: sync is already enabled for public.syn_a (shadow lakets_cdf._shadow_syn_a)',
    ]);
    await expectMirrored('syn_a', 10);
  });

  it('mirrors INSERT, UPDATE, DELETE (one row of identical duplicates), cross-partition moves and direct partition writes', async () => {
    await syncedTable('syn_b');
    await client.query("SELECT lakets.enable_sync('syn_b')");
    const t = new Date(now);
    await client.query(
      `INSERT INTO syn_b VALUES ($1, 100, 'x'), ($1, 100, 'x'), ($1::timestamptz - interval '1 day', NULL, NULL)`,
      [t],
    );
    await expectMirrored('syn_b', 13);
    // A row with NULLs, matched in the shadow by value.
    await client.query('UPDATE syn_b SET v = 101 WHERE v IS NULL');
    await expectMirrored('syn_b', 13);
    await client.query("UPDATE syn_b SET note = 'odd' WHERE note IS NULL AND v < 100");
    await expectMirrored('syn_b', 13);
    // Delete one of two identical rows: the shadow keeps the other.
    await client.query(
      'DELETE FROM syn_b WHERE ctid = (SELECT ctid FROM syn_b WHERE v = 100 LIMIT 1) AND v = 100',
    );
    await expectMirrored('syn_b', 12);
    expect(
      (await client.query('SELECT count(*)::int AS n FROM lakets_cdf._shadow_syn_b WHERE v = 100')).rows[0].n,
    ).toBe(1);
    // Moving a row to another day's partition (delete + insert underneath).
    const where = async () =>
      (await client.query('SELECT tableoid::regclass::text AS p FROM syn_b WHERE v = 101')).rows[0].p;
    const from = await where();
    await client.query("UPDATE syn_b SET ts = ts - interval '1 day' WHERE v = 101");
    expect(await where()).not.toBe(from);
    await expectMirrored('syn_b', 12);
    // Straight into a partition.
    const part = (await client.query('SELECT tableoid::regclass::text AS p FROM syn_b WHERE v = 1')).rows[0]
      .p as string;
    await client.query(`INSERT INTO ${part} SELECT ts, 555, 'direct' FROM syn_b WHERE v = 1`);
    await client.query(`UPDATE ${part} SET note = 'direct-upd' WHERE v = 555`);
    await expectMirrored('syn_b', 13);
    await client.query(`DELETE FROM ${part} WHERE v = 1`);
    await expectMirrored('syn_b', 12);
    // A partition created after enable_sync mirrors as well.
    await client.query(
      "SELECT lakets._ensure_partitions(id, p_range_start => '2024-01-01', p_range_end => '2024-01-02') FROM lakets._chronotable_registry WHERE table_name = 'syn_b'",
    );
    await client.query("INSERT INTO syn_b VALUES ('2024-01-01T12:00:00Z', 7, 'late')");
    await expectMirrored('syn_b', 13);
    await client.query('DELETE FROM syn_b WHERE v > 0');
    await expectMirrored('syn_b', 0);
  });

  it('mirrors COPY and multi-row INSERT ... SELECT', async () => {
    await syncedTable('syn_c');
    await client.query("SELECT lakets.enable_sync('syn_c')");
    // Server-side COPY: the same COPY FROM executor path (and triggers) as COPY FROM STDIN.
    const day = new Date(now).toISOString().slice(0, 10);
    const lines = [`${day} 01:00:00+00,201,copied`, `${day} 02:00:00+00,202,`, `${day} 03:00:00+00,,copied`];
    const program = `printf '%s\\n' ${lines.map((l) => `'${l}'`).join(' ')}`;
    const copied = await client.query(
      `COPY syn_c (ts, v, note) FROM PROGRAM ${pg.escapeLiteral(program)} WITH (FORMAT csv)`,
    );
    expect(copied.rowCount).toBe(3);
    await expectMirrored('syn_c', 13);
    await client.query(
      "INSERT INTO syn_c SELECT ts + interval '1 minute', v + 1000, note FROM syn_c WHERE v IS NOT NULL",
    );
    await expectMirrored('syn_c', 25);
  });

  it('a write committed while enable_sync runs reaches the shadow (no gap between copy and trigger)', async () => {
    await syncedTable('syn_race');
    const [writer, enabler] = [await db.connect(), await db.connect()];
    await writer.query('BEGIN');
    await writer.query('INSERT INTO syn_race VALUES (now(), 999, $1)', ['in flight']);
    const enabling = enabler.query("SELECT lakets.enable_sync('syn_race')");
    // enable_sync must now be waiting for the writer's transaction.
    let waiting = false;
    for (let i = 0; i < 200 && !waiting; i++) {
      const { rows } = await client.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%enable_sync%'`,
      );
      waiting = rows[0].n === 1;
      if (!waiting) await new Promise((r) => setTimeout(r, 10));
    }
    expect(waiting).toBe(true);
    await writer.query('COMMIT');
    await enabling;
    await expectMirrored('syn_race', 11);
  });

  it('disable_sync drops the shadow and the mirror trigger; enable_sync again starts afresh', async () => {
    await syncedTable('syn_d');
    await client.query("SELECT lakets.enable_sync('syn_d')");
    await client.query("SELECT lakets.disable_sync('syn_d')");
    expect((await client.query("SELECT to_regclass('lakets_cdf._shadow_syn_d') AS r")).rows[0].r).toBeNull();
    const registry = await client.query(
      "SELECT shadow_table_name, sync_enabled FROM lakets._chronotable_registry WHERE table_name = 'syn_d'",
    );
    expect(registry.rows).toEqual([{ shadow_table_name: null, sync_enabled: false }]);
    const triggers = await client.query(
      `SELECT count(*)::int AS n FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE t.tgname LIKE 'lakets%' AND (c.oid = 'syn_d'::regclass OR c.relname LIKE 'syn_d\\_%')`,
    );
    expect(triggers.rows[0].n).toBe(0);
    // Writes keep working without sync.
    await client.query('INSERT INTO syn_d VALUES (now(), 42, NULL)');
    const notices = captureNotices(client);
    await client.query("SELECT lakets.disable_sync('syn_d')");
    expect(notices.take().map((n) => n.message)).toEqual(['lakets: sync is not enabled for public.syn_d']);

    await client.query("SELECT lakets.enable_sync('syn_d')");
    await expectMirrored('syn_d', 11);
  });
});
