// lakets.create_chronotable: converts an existing table into a range-partitioned ChronoTable, keeping
// its rows, sequences, grants and owner; refuses clearly, leaving the table untouched on any failure.
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { captureNotices, expectError } from '../support/pg-assert.ts';
import { bucketStart, DAY_MS, HOUR_MS, serverNow } from '../support/time.ts';
import { chunks, suffix } from './helpers.ts';

let db: TestDatabase;
let client: pg.Client;
let now: number;

beforeAll(async () => {
  db = await freshDatabase({ lakets: true });
  client = await db.connect();
  now = await serverNow(client);
});

/** Rows of a table as comparable JSON, in a stable order. */
async function content(rel: string, order = 'ts, v'): Promise<string> {
  const { rows } = await client.query(`SELECT * FROM ${rel} ORDER BY ${order}`);
  return JSON.stringify(rows);
}

/** What a failed conversion must leave: the same table (oid, kind, rows), no registry row, no leftovers. */
async function expectUntouched(table: string, oid: string, rows: string, order?: string): Promise<void> {
  const { rows: state } = await client.query(
    `SELECT c.oid::text AS oid, c.relkind::text AS kind FROM pg_class c WHERE c.oid = to_regclass($1)`,
    [`public.${table}`],
  );
  expect(state).toEqual([{ oid, kind: 'r' }]);
  expect(await content(table, order)).toBe(rows);
  const registered = await client.query('SELECT 1 FROM lakets._chronotable_registry WHERE table_name = $1', [
    table,
  ]);
  expect(registered.rowCount).toBe(0);
  // Neither the renamed original nor a half-made partitioned table or partition is left.
  const leftovers = await client.query(
    "SELECT relname FROM pg_class WHERE relname LIKE $1 || '\\_lakets\\_%' OR relname ~ ('^' || $1 || '_\\d{8}_\\d{6}$')",
    [table],
  );
  expect(leftovers.rows).toEqual([]);
}

async function oidOf(table: string): Promise<string> {
  return (await client.query('SELECT $1::regclass::oid::text AS oid', [table])).rows[0].oid;
}

describe('create_chronotable converts an existing table', () => {
  it('keeps every row and creates active, UTC-named partitions covering the data plus the default window', async () => {
    await client.query(`CREATE TABLE conv (
      id bigserial, ts timestamptz NOT NULL, device text NOT NULL, reading double precision,
      PRIMARY KEY (id, ts))`);
    // Rows 20 days ago up to 10 days ahead, with gaps, at odd times of day.
    const times = [-20, -19.5, -13.25, -2, 0, 10.75].map((d) => new Date(now + d * DAY_MS));
    await client.query(
      `INSERT INTO conv (ts, device, reading)
       SELECT t, 'dev-' || ord, ord * 1.5 FROM unnest($1::timestamptz[]) WITH ORDINALITY u(t, ord)`,
      [times],
    );
    const before = await content('conv', 'id');
    const { rows } = await client.query("SELECT lakets.create_chronotable('conv', 'ts', '1 day') AS id");
    const id = rows[0].id as number;
    expect(id).toBeGreaterThan(0);

    expect(
      (await client.query("SELECT relkind::text AS k FROM pg_class WHERE oid = 'conv'::regclass")).rows[0].k,
    ).toBe('p');
    expect(await content('conv', 'id')).toBe(before);
    expect((await client.query('SELECT count(*)::int AS n FROM conv')).rows[0].n).toBe(times.length);

    const registry = await client.query(
      'SELECT schema_name, table_name, time_column, chunk_interval::text, sync_enabled FROM lakets._chronotable_registry WHERE id = $1',
      [id],
    );
    expect(registry.rows).toEqual([
      {
        schema_name: 'public',
        table_name: 'conv',
        time_column: 'ts',
        chunk_interval: '1 day',
        sync_enabled: false,
      },
    ]);

    // Expected buckets: every day from the oldest row's to the newest row's, plus 1 before and
    // 3 after today's bucket (all contiguous here because the data spans today).
    const meta = await chunks(client, 'conv');
    const created = meta[0]!;
    const createdNow = (
      await client.query('SELECT created_at FROM lakets._chunk_metadata WHERE id = $1', [created.id])
    ).rows[0].created_at as Date;
    const today = bucketStart(createdNow.getTime(), DAY_MS);
    const first = Math.min(bucketStart(times[0]!.getTime(), DAY_MS), today - DAY_MS);
    const last = Math.max(bucketStart(times.at(-1)!.getTime(), DAY_MS), today + 3 * DAY_MS);
    const expected: number[] = [];
    for (let s = first; s <= last; s += DAY_MS) expected.push(s);
    expect(meta.map((m) => m.range_start.getTime())).toEqual(expected);
    expect(meta.map((m) => m.range_end.getTime())).toEqual(expected.map((s) => s + DAY_MS));
    expect(meta.map((m) => m.chunk_name)).toEqual(expected.map((s) => `public.conv_${suffix(s)}`));
    expect(new Set(meta.map((m) => m.status))).toEqual(new Set(['active']));

    // They are the real partitions, with exactly these bounds, and each row sits in its bucket.
    const parts = await client.query(
      `SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'conv'::regclass ORDER BY c.relname`,
    );
    const iso = (ms: number) => new Date(ms).toISOString().replace('T', ' ').replace('.000Z', '+00');
    expect(parts.rows).toEqual(
      expected.map((s) => ({
        relname: `conv_${suffix(s)}`,
        bound: `FOR VALUES FROM ('${iso(s)}') TO ('${iso(s + DAY_MS)}')`,
      })),
    );
    const placed = await client.query('SELECT tableoid::regclass::text AS part, ts FROM conv ORDER BY ts');
    for (const r of placed.rows) {
      expect(r.part).toBe(`conv_${suffix(bucketStart((r.ts as Date).getTime(), DAY_MS))}`);
    }
  });

  it('keeps serial and identity columns working: the next insert gets a fresh id', async () => {
    await client.query(`CREATE TABLE ser (id serial, ts timestamptz NOT NULL, PRIMARY KEY (id, ts));
      INSERT INTO ser (ts) SELECT now() - g * interval '1 hour' FROM generate_series(1, 5) g;
      CREATE TABLE idn (id int GENERATED ALWAYS AS IDENTITY, ts timestamptz NOT NULL, PRIMARY KEY (id, ts));
      INSERT INTO idn (ts) SELECT now() - g * interval '1 hour' FROM generate_series(1, 7) g;
      CREATE TABLE idd (id bigint GENERATED BY DEFAULT AS IDENTITY, ts timestamptz NOT NULL);
      INSERT INTO idd (id, ts) VALUES (100, now()), (250, now());`);
    await client.query("SELECT lakets.create_chronotable('ser', 'ts', '1 day')");
    await client.query("SELECT lakets.create_chronotable('idn', 'ts', '1 day')");
    await client.query("SELECT lakets.create_chronotable('idd', 'ts', '1 day')");

    const ser = await client.query('INSERT INTO ser (ts) VALUES (now()) RETURNING id');
    expect(ser.rows[0].id).toBe(6);
    const idn = await client.query('INSERT INTO idn (ts) VALUES (now()) RETURNING id');
    expect(idn.rows[0].id).toBe(8);
    const idd = await client.query('INSERT INTO idd (ts) VALUES (now()) RETURNING id');
    expect(Number(idd.rows[0].id)).toBe(251);
    // The serial sequence now belongs to the new table (dropping the old one did not take it along).
    const owned = await client.query("SELECT pg_get_serial_sequence('ser', 'id') AS s");
    expect(owned.rows[0].s).toBe('public.ser_id_seq');
    const idCol = await client.query(
      "SELECT attidentity::text AS a FROM pg_attribute WHERE attrelid = 'idn'::regclass AND attname = 'id'",
    );
    expect(idCol.rows[0].a).toBe('a');
  });

  it('keeps grants (also to roles whose names need quoting) and the owner', async () => {
    const suffixName = db.name.slice(-10);
    const reader = `reader_${suffixName}`;
    const writer = `Writer-Role ${suffixName}`;
    const owner = `owner_${suffixName}`;
    await client.query(`CREATE ROLE ${reader}; CREATE ROLE "${writer}"; CREATE ROLE ${owner};
      CREATE TABLE granted (ts timestamptz NOT NULL, v int);
      INSERT INTO granted VALUES (now(), 1);
      ALTER TABLE granted OWNER TO ${owner};
      GRANT SELECT ON granted TO ${reader};
      GRANT INSERT, UPDATE ON granted TO "${writer}" WITH GRANT OPTION;`);
    await client.query("SELECT lakets.create_chronotable('granted', 'ts', '1 day')");
    const privileges = await client.query(
      `SELECT r.rolname, p.privilege, has_table_privilege(r.oid, 'granted', p.privilege) AS has,
              has_table_privilege(r.oid, 'granted', p.privilege || ' WITH GRANT OPTION') AS grantable
         FROM pg_roles r CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) p(privilege)
        WHERE r.rolname IN ($1, $2) ORDER BY 1, 2`,
      [reader, writer],
    );
    expect(privileges.rows).toEqual([
      { rolname: writer, privilege: 'DELETE', has: false, grantable: false },
      { rolname: writer, privilege: 'INSERT', has: true, grantable: true },
      { rolname: writer, privilege: 'SELECT', has: false, grantable: false },
      { rolname: writer, privilege: 'UPDATE', has: true, grantable: true },
      { rolname: reader, privilege: 'DELETE', has: false, grantable: false },
      { rolname: reader, privilege: 'INSERT', has: false, grantable: false },
      { rolname: reader, privilege: 'SELECT', has: true, grantable: false },
      { rolname: reader, privilege: 'UPDATE', has: false, grantable: false },
    ]);
    const own = await client.query(
      "SELECT relowner::regrole::text AS o FROM pg_class WHERE oid = 'granted'::regclass",
    );
    expect(own.rows[0].o).toBe(owner);
  });

  it('with p_if_not_exists returns the existing id with a NOTICE, without it refuses', async () => {
    await client.query('CREATE TABLE twice (ts timestamptz NOT NULL)');
    const first = (await client.query("SELECT lakets.create_chronotable('twice', 'ts', '1 day') AS id"))
      .rows[0].id;
    const notices = captureNotices(client);
    const again = await client.query(
      "SELECT lakets.create_chronotable('twice', 'ts', '1 day', p_if_not_exists => true) AS id",
    );
    expect(again.rows[0].id).toBe(first);
    expect(notices.take().map((n) => n.message)).toEqual([
      `lakets: public.twice is already a ChronoTable (id ${first}), nothing to do`,
    ]);
    await expectError(
      () => client.query("SELECT lakets.create_chronotable('twice', 'ts', '1 day')"),
      'is already a ChronoTable',
    );
    const count = await client.query(
      "SELECT count(*)::int AS n FROM lakets._chronotable_registry WHERE table_name = 'twice'",
    );
    expect(count.rows[0].n).toBe(1);
  });

  it('converts an empty table into just the default window', async () => {
    await client.query('CREATE TABLE empty_ct (ts timestamptz NOT NULL, v int)');
    await client.query("SELECT lakets.create_chronotable('empty_ct', 'ts', '6 hours')");
    const meta = await chunks(client, 'empty_ct');
    expect(meta).toHaveLength(5);
    expect(meta.at(-1)!.range_end.getTime() - meta[0]!.range_start.getTime()).toBe(5 * 6 * HOUR_MS);
  });
});

describe('create_chronotable refuses clearly and leaves the table untouched', () => {
  it('rejects a time column that is not timestamptz', async () => {
    await client.query(`CREATE TABLE naive (ts timestamp NOT NULL, d date, v int);
      INSERT INTO naive VALUES ('2026-01-01 10:00', '2026-01-01', 1);`);
    const oid = await oidOf('naive');
    const rows = await content('naive');
    await expectError(
      () => client.query("SELECT lakets.create_chronotable('naive', 'ts', '1 day')"),
      'time column public.naive.ts is timestamp without time zone, not timestamptz',
    );
    await expectError(
      () => client.query("SELECT lakets.create_chronotable('naive', 'd', '1 day')"),
      'is date, not timestamptz',
    );
    await expectUntouched('naive', oid, rows);
  });

  it('rejects a missing table and a missing column', async () => {
    await expectError(
      () => client.query("SELECT lakets.create_chronotable('no_such_table', 'ts')"),
      'table public.no_such_table does not exist',
    );
    await client.query('CREATE TABLE nocol (at timestamptz NOT NULL)');
    const oid = await oidOf('nocol');
    await expectError(
      () => client.query("SELECT lakets.create_chronotable('nocol', 'ts')"),
      'has no column ts',
    );
    await expectUntouched('nocol', oid, '[]', 'at');
  });

  it('rejects month/year intervals and non-positive ones', async () => {
    await client.query('CREATE TABLE monthly (ts timestamptz NOT NULL, v int)');
    const oid = await oidOf('monthly');
    for (const interval of ['1 month', '1 year', '1 mon 2 days', '0 days', '-1 day']) {
      const error = await expectError(
        () => client.query("SELECT lakets.create_chronotable('monthly', 'ts', $1::interval)", [interval]),
        'is not usable',
      );
      expect(error.hint).toContain('months vary in length');
    }
    await expectUntouched('monthly', oid, '[]');
  });

  it('rejects rows with a NULL time', async () => {
    await client.query(`CREATE TABLE nulltime (ts timestamptz, v int);
      INSERT INTO nulltime VALUES (now(), 1), (NULL, 2), (NULL, 3);`);
    const oid = await oidOf('nulltime');
    const rows = await content('nulltime');
    await expectError(
      () => client.query("SELECT lakets.create_chronotable('nulltime', 'ts', '1 day')"),
      'public.nulltime has 2 rows with a NULL ts',
    );
    await expectUntouched('nulltime', oid, rows);
  });

  it('rejects a primary key without the time column, naming the fix', async () => {
    await client.query(`CREATE TABLE pkonly (id int PRIMARY KEY, ts timestamptz NOT NULL);
      INSERT INTO pkonly VALUES (1, now()), (2, now() - interval '3 days');`);
    const oid = await oidOf('pkonly');
    const rows = await content('pkonly', 'id');
    const error = await expectError(
      () => client.query("SELECT lakets.create_chronotable('pkonly', 'ts', '1 day')"),
      'public.pkonly cannot become a ChronoTable',
    );
    expect(error.hint).toBe('a primary key or unique constraint must include the time column ts');
    await expectUntouched('pkonly', oid, rows, 'id');
  });

  it('rejects a table other objects depend on (a view), keeping table and view', async () => {
    await client.query(`CREATE TABLE viewed (ts timestamptz NOT NULL, v int);
      INSERT INTO viewed VALUES (now(), 7);
      CREATE VIEW viewed_v AS SELECT v FROM viewed;`);
    const oid = await oidOf('viewed');
    const rows = await content('viewed');
    await expectError(
      () => client.query("SELECT lakets.create_chronotable('viewed', 'ts', '1 day')"),
      'other objects depend on it',
    );
    await expectUntouched('viewed', oid, rows);
    expect((await client.query('SELECT v FROM viewed_v')).rows).toEqual([{ v: 7 }]);
  });
});
