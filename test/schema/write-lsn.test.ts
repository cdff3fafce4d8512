// Write-LSN stamping: statement-level AFTER triggers with transition tables on the ChronoTable and on
// each partition move last_write_lsn of exactly the chunks a statement touched. They exist while the
// table is synced or has a tiering-kind policy; existing chunks are backfilled when tracking starts.
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase } from '../support/db.ts';
import { DAY_MS, serverNow } from '../support/time.ts';
import { chunks, lsnCompare, makeChronotable } from './helpers.ts';

let client: pg.Client;
let now: number;

beforeAll(async () => {
  const db = await freshDatabase({ lakets: true });
  client = await db.connect();
  now = await serverNow(client);
});

interface TriggerRow {
  rel: string;
  tgname: string;
  tgtype: number;
  old_table: string | null;
  new_table: string | null;
}

/** LakeTS write-LSN triggers on the parent and its partitions. */
async function lsnTriggers(table: string): Promise<TriggerRow[]> {
  const { rows } = await client.query<TriggerRow>(
    `SELECT t.tgrelid::regclass::text AS rel, t.tgname, t.tgtype::int AS tgtype, t.tgoldtable AS old_table, t.tgnewtable AS new_table
       FROM pg_trigger t
      WHERE t.tgname LIKE 'lakets\\_lsn\\_%'
        AND (t.tgrelid = $1::regclass OR t.tgrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = $1::regclass))
      ORDER BY 1, 2`,
    [pg.escapeIdentifier(table)],
  );
  return rows;
}

async function relations(table: string): Promise<string[]> {
  const { rows } = await client.query(
    `SELECT $1::regclass::text AS r UNION ALL
     SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = $1::regclass ORDER BY 1`,
    [pg.escapeIdentifier(table)],
  );
  return rows.map((r) => r.r);
}

function expectTrackingTriggers(triggers: TriggerRow[], rels: string[]): void {
  const ROW = 1;
  const BEFORE = 2;
  const INSERT = 4;
  const DELETE = 8;
  const UPDATE = 16;
  expect(triggers.map((t) => `${t.rel} ${t.tgname}`)).toEqual(
    rels.flatMap((r) => [`${r} lakets_lsn_del`, `${r} lakets_lsn_ins`, `${r} lakets_lsn_upd`]),
  );
  for (const t of triggers) {
    expect(t.tgtype & ROW, `${t.rel} ${t.tgname} is statement-level`).toBe(0);
    expect(t.tgtype & BEFORE, `${t.rel} ${t.tgname} is AFTER`).toBe(0);
    const event = t.tgtype & (INSERT | DELETE | UPDATE);
    if (t.tgname === 'lakets_lsn_ins') {
      expect(event).toBe(INSERT);
      expect(t.new_table).not.toBeNull();
    } else if (t.tgname === 'lakets_lsn_upd') {
      expect(event).toBe(UPDATE);
      expect(t.new_table).not.toBeNull();
      expect(t.old_table).not.toBeNull();
    } else {
      expect(event).toBe(DELETE);
      expect(t.old_table).not.toBeNull();
    }
  }
}

async function currentLsn(): Promise<string> {
  return (await client.query('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0].l;
}

/** last_write_lsn per chunk name. */
async function stamps(table: string): Promise<Map<string, string | null>> {
  return new Map((await chunks(client, table)).map((c) => [c.chunk_name, c.last_write_lsn]));
}

/** Runs `sql` and returns the chunks whose stamp moved (each must have moved forwards). */
async function moved(table: string, sql: string, params: unknown[] = []): Promise<string[]> {
  const before = await stamps(table);
  await client.query(sql, params);
  const after = await stamps(table);
  const changed: string[] = [];
  for (const [name, lsn] of after) {
    const old = before.get(name);
    if (lsn !== old) {
      expect(lsn).not.toBeNull();
      if (old) expect(lsnCompare(lsn!, old), name).toBe(1);
      changed.push(name);
    }
  }
  return changed.sort();
}

/** A 1-day ChronoTable with one row per day from 4 days ago to today; returns chunk names by day offset. */
async function dailyTable(table: string): Promise<(day: number) => string> {
  const days = [-4, -3, -2, -1, 0].map((d) => new Date(now + d * DAY_MS));
  await makeChronotable(client, table, { interval: '1 day', rows: days });
  return (day: number) => {
    const d = new Date(now + day * DAY_MS).toISOString();
    return `public.${table}_${d.slice(0, 4)}${d.slice(5, 7)}${d.slice(8, 10)}_000000`;
  };
}

describe('write-LSN triggers', () => {
  it('a tiering policy installs statement-level transition-table triggers on the parent and every partition, and backfills', async () => {
    await dailyTable('wl_a');
    expect(await lsnTriggers('wl_a')).toEqual([]);
    expect(new Set((await stamps('wl_a')).values())).toEqual(new Set([null]));

    const before = await currentLsn();
    await client.query("SELECT lakets.add_tiering_policy('wl_a', '2 days')");
    expectTrackingTriggers(await lsnTriggers('wl_a'), await relations('wl_a'));
    for (const [name, lsn] of await stamps('wl_a')) {
      expect(lsn, name).not.toBeNull();
      expect(lsnCompare(lsn!, before), name).toBeGreaterThanOrEqual(0);
    }

    // Partitions made later carry the triggers too, and start stamped.
    await client.query(
      "SELECT lakets._ensure_partitions(id, p_range_start => '2024-05-01', p_range_end => '2024-05-03') FROM lakets._chronotable_registry WHERE table_name = 'wl_a'",
    );
    expectTrackingTriggers(await lsnTriggers('wl_a'), await relations('wl_a'));
    expect((await stamps('wl_a')).get('public.wl_a_20240501_000000')).not.toBeNull();

    // Removing the policy of an unsynced table removes them everywhere.
    await client.query("SELECT lakets.remove_tiering_policy('wl_a')");
    expect(await lsnTriggers('wl_a')).toEqual([]);
  });

  it('a tiered_retention policy and enable_sync install them as well; they stay while either needs them', async () => {
    await dailyTable('wl_b');
    await client.query("SELECT lakets.add_tiered_retention_policy('wl_b', '1 day', '3 days')");
    expectTrackingTriggers(await lsnTriggers('wl_b'), await relations('wl_b'));
    await client.query("SELECT lakets.remove_retention_policy('wl_b')");
    expect(await lsnTriggers('wl_b')).toEqual([]);

    await dailyTable('wl_c');
    await client.query("SELECT lakets.enable_sync('wl_c')");
    expectTrackingTriggers(await lsnTriggers('wl_c'), await relations('wl_c'));
    expect([...(await stamps('wl_c')).values()].every((l) => l !== null)).toBe(true);
    await client.query("SELECT lakets.add_tiering_policy('wl_c', '1 day')");
    await client.query("SELECT lakets.disable_sync('wl_c')");
    expectTrackingTriggers(await lsnTriggers('wl_c'), await relations('wl_c'));
    await client.query("SELECT lakets.enable_sync('wl_c')");
    await client.query("SELECT lakets.remove_tiering_policy('wl_c')");
    expectTrackingTriggers(await lsnTriggers('wl_c'), await relations('wl_c'));
    await client.query("SELECT lakets.disable_sync('wl_c')");
    expect(await lsnTriggers('wl_c')).toEqual([]);
    // A retention-only policy does not track writes.
    await client.query("SELECT lakets.add_retention_policy('wl_c', '3 days')");
    expect(await lsnTriggers('wl_c')).toEqual([]);
  });

  it('INSERT, UPDATE and DELETE move the stamp of exactly the chunks they touched', async () => {
    const chunk = await dailyTable('wl_d');
    await client.query("SELECT lakets.add_tiering_policy('wl_d', '2 days')");
    const at = (day: number) => new Date(now + day * DAY_MS);

    expect(
      await moved('wl_d', 'INSERT INTO wl_d (ts, v) VALUES ($1, 10), ($2, 11)', [at(-4), at(-2)]),
    ).toEqual([chunk(-4), chunk(-2)].sort());
    expect(await moved('wl_d', 'UPDATE wl_d SET v = v + 1 WHERE ts = $1', [at(-3)])).toEqual([chunk(-3)]);
    expect(await moved('wl_d', 'DELETE FROM wl_d WHERE ts = $1', [at(-1)])).toEqual([chunk(-1)]);
    // Statements that touch no row stamp nothing.
    expect(await moved('wl_d', 'UPDATE wl_d SET v = 0 WHERE false')).toEqual([]);
    expect(await moved('wl_d', 'DELETE FROM wl_d WHERE v = -12345')).toEqual([]);
    // An UPDATE moving a row to another chunk stamps both.
    expect(
      await moved('wl_d', "UPDATE wl_d SET ts = ts + interval '2 days' WHERE ts = $1", [at(-3)]),
    ).toEqual([chunk(-3), chunk(-1)].sort());
  });

  it('a write straight into a partition (and COPY) stamps its chunk', async () => {
    const chunk = await dailyTable('wl_e');
    await client.query("SELECT lakets.enable_sync('wl_e')");
    const partition = (name: string) => pg.escapeIdentifier(name.slice('public.'.length));
    expect(
      await moved('wl_e', `INSERT INTO ${partition(chunk(-2))} (ts, v) VALUES ($1, 99)`, [
        new Date(now - 2 * DAY_MS),
      ]),
    ).toEqual([chunk(-2)]);
    expect(await moved('wl_e', `UPDATE ${partition(chunk(-4))} SET v = 7`)).toEqual([chunk(-4)]);
    expect(await moved('wl_e', `DELETE FROM ${partition(chunk(0))}`)).toEqual([chunk(0)]);
    const day = new Date(now - 3 * DAY_MS).toISOString().slice(0, 10);
    const program = `printf '%s\\n' '${day} 04:00:00+00,1' '${day} 05:00:00+00,2'`;
    expect(
      await moved('wl_e', `COPY wl_e (ts, v) FROM PROGRAM ${pg.escapeLiteral(program)} WITH (FORMAT csv)`),
    ).toEqual([chunk(-3)]);
  });
});
