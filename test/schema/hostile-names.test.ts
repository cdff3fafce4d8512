// Identifiers that need quoting (quotes, semicolons, dots, spaces, capitals) go through the whole
// lifecycle: create_chronotable, _ensure_partitions, policies, sync, tiering, retention, drop.
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { installWal2delta, shadowOf, syncCaughtUp } from '../../dev/fake-lakehouse-sync.ts';
import { freshDatabase } from '../support/db.ts';
import { DAY_MS, serverNow } from '../support/time.ts';
import { chunks, qname, relationExists } from './helpers.ts';

let client: pg.Client;
let now: number;

beforeAll(async () => {
  const db = await freshDatabase({ lakets: true });
  client = await db.connect();
  now = await serverNow(client);
  await installWal2delta(client);
  await client.query('CREATE TABLE y (id int); INSERT INTO y VALUES (1)');
});

function day(d: number): string {
  const iso = new Date(now + d * DAY_MS).toISOString();
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}_000000`;
}

const cases: Array<{ schema: string; table: string }> = [
  { schema: 'public', table: 'x"; drop table y; --' },
  { schema: 'public', table: "my.table name's" },
  { schema: 'odd schema.x', table: 'Mixed.Case "T"' },
];

describe('hostile identifiers', () => {
  for (const { schema, table } of cases) {
    it(`${schema} / ${table}: full lifecycle, and table y survives`, async () => {
      const rel = qname(schema, table);
      if (schema !== 'public') await client.query(`CREATE SCHEMA ${pg.escapeIdentifier(schema)}`);
      await client.query(`CREATE TABLE ${rel} ("time stamp" timestamptz NOT NULL, "v;al" int)`);
      await client.query(`INSERT INTO ${rel} SELECT t, 1 FROM unnest($1::timestamptz[]) t`, [
        [-10, -8, -6].map((d) => new Date(now + d * DAY_MS)),
      ]);
      const id = (
        await client.query("SELECT lakets.create_chronotable($1, 'time stamp', '1 day', $2) AS id", [
          table,
          schema,
        ])
      ).rows[0].id as number;
      const meta = await chunks(client, table, schema);
      expect(meta.map((m) => m.chunk_name)).toContain(`${schema}.${table}_${day(-10)}`);
      for (const m of meta)
        expect(await relationExists(client, schema, m.chunk_name.slice(schema.length + 1))).toBe(true);

      const created = await client.query(
        "SELECT lakets._ensure_partitions($1, p_range_start => '2025-01-01', p_range_end => '2025-01-03') AS n",
        [id],
      );
      expect(created.rows[0].n).toBe(2);
      expect(await relationExists(client, schema, `${table}_20250101_000000`)).toBe(true);

      await client.query("SELECT lakets.add_tiered_retention_policy($1, '2 days', '5 days', $2)", [
        table,
        schema,
      ]);
      await client.query('SELECT lakets.enable_sync($1, $2)', [table, schema]);
      const shadow = await shadowOf(client, table, schema);
      await client.query(`INSERT INTO ${rel} VALUES ($1, 2)`, [new Date(now - 9 * DAY_MS)]);
      expect((await client.query(`SELECT count(*)::int AS n FROM ${shadow}`)).rows[0].n).toBe(4);
      const replident = await client.query(
        'SELECT relreplident::text AS r FROM pg_class WHERE oid = $1::regclass',
        [shadow],
      );
      expect(replident.rows[0].r).toBe('f');

      await syncCaughtUp(client, table, schema);
      const candidates = await client.query('SELECT chunk_name FROM lakets._get_chunks_to_tier($1, $2)', [
        table,
        schema,
      ]);
      const expected = [-10, -9, -8, -7, -6].map((d) => `${schema}.${table}_${day(d)}`);
      expect(candidates.rows.map((r) => r.chunk_name)).toEqual([
        `${schema}.${table}_20250101_000000`,
        `${schema}.${table}_20250102_000000`,
        ...expected,
      ]);
      for (const c of expected) {
        expect((await client.query('SELECT lakets.tier_chunk($1) AS ok', [c])).rows[0].ok, c).toBe(true);
      }
      const status = await client.query(
        'SELECT DISTINCT status, durable FROM lakets.show_tiering_status($1, $2) WHERE chunk_name = ANY ($3)',
        [table, schema, expected],
      );
      expect(status.rows).toEqual([{ status: 'tiered', durable: true }]);

      const dropped = await client.query('SELECT lakets.execute_retention($1, $2) AS n', [table, schema]);
      expect(dropped.rows[0].n).toBe(7);
      for (const c of expected)
        expect(await relationExists(client, schema, c.slice(schema.length + 1))).toBe(false);
      expect((await client.query(`SELECT count(*)::int AS n FROM ${rel}`)).rows[0].n).toBe(0);

      await client.query('SELECT lakets.disable_sync($1, $2)', [table, schema]);
      expect((await client.query('SELECT to_regclass($1) AS r', [shadow])).rows[0].r).toBeNull();
      await client.query('SELECT lakets.remove_retention_policy($1, $2)', [table, schema]);
      await client.query('SELECT lakets.drop_chronotable($1, $2)', [table, schema]);
      expect(await relationExists(client, schema, table)).toBe(false);

      expect((await client.query('SELECT id FROM y')).rows).toEqual([{ id: 1 }]);
    });
  }
});
