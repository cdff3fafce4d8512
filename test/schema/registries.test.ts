// The registries the jobs read and write: columns, types, defaults, uniques, checks and cascades
// as the contract states them.

import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase } from '../support/db.ts';
import { expectError } from '../support/pg-assert.ts';

let client: pg.Client;

beforeAll(async () => {
  const db = await freshDatabase({ lakets: true });
  client = await db.connect();
});

async function columns(table: string): Promise<Record<string, string>> {
  const { rows } = await client.query<{ attname: string; type: string }>(
    `SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`,
    [`lakets.${table}`],
  );
  return Object.fromEntries(rows.map((r) => [r.attname, r.type]));
}

async function newChronotableRow(
  name: string,
): Promise<{ id: number; chunk_interval: string; sync_enabled: boolean }> {
  const { rows } = await client.query(
    `INSERT INTO lakets._chronotable_registry (schema_name, table_name, time_column) VALUES ('public', $1, 'ts')
     RETURNING id, chunk_interval::text, sync_enabled, shadow_table_name, created_at`,
    [name],
  );
  expect(rows[0].shadow_table_name).toBeNull();
  expect(rows[0].created_at).toBeInstanceOf(Date);
  return rows[0];
}

describe('lakets._chronotable_registry', () => {
  it('has the contract columns and types', async () => {
    expect(await columns('_chronotable_registry')).toMatchObject({
      id: 'integer',
      schema_name: 'text',
      table_name: 'text',
      time_column: 'text',
      chunk_interval: 'interval',
      shadow_table_name: 'text',
      sync_enabled: 'boolean',
      created_at: 'timestamp with time zone',
    });
  });

  it('generates ids, defaults chunk_interval to 7 days and sync off, and is unique per (schema, table)', async () => {
    const a = await newChronotableRow('reg_a');
    const b = await newChronotableRow('reg_b');
    expect(b.id).toBeGreaterThan(a.id);
    expect(a.chunk_interval).toBe('7 days');
    expect(a.sync_enabled).toBe(false);
    const dup = await expectError(() => newChronotableRow('reg_a'), 'duplicate key');
    expect(dup.code).toBe('23505');
    // Same table name in another schema is a different ChronoTable.
    await client.query(
      "INSERT INTO lakets._chronotable_registry (schema_name, table_name, time_column) VALUES ('other', 'reg_a', 'ts')",
    );
  });
});

describe('lakets._chunk_metadata', () => {
  it('has the contract columns and types', async () => {
    expect(await columns('_chunk_metadata')).toMatchObject({
      id: 'integer',
      chronotable_id: 'integer',
      chunk_name: 'text',
      range_start: 'timestamp with time zone',
      range_end: 'timestamp with time zone',
      status: 'text',
      tiered_at: 'timestamp with time zone',
      last_write_lsn: 'pg_lsn',
      created_at: 'timestamp with time zone',
      last_modified_at: 'timestamp with time zone',
    });
  });

  it('accepts only active/tiered/dropped, keeps chunk_name and (chronotable_id, range_start) unique, cascades', async () => {
    const ct = await newChronotableRow('reg_chunks');
    const insert = (name: string, start: string, status = 'active') =>
      client.query(
        `INSERT INTO lakets._chunk_metadata (chronotable_id, chunk_name, range_start, range_end, status)
         VALUES ($1, $2, $3::timestamptz, $3::timestamptz + interval '1 day', $4) RETURNING status, last_write_lsn, tiered_at`,
        [ct.id, name, start, status],
      );
    const first = await insert('public.reg_chunks_20260101_000000', '2026-01-01T00:00:00Z');
    expect(first.rows[0]).toEqual({ status: 'active', last_write_lsn: null, tiered_at: null });
    await insert('public.reg_chunks_20260102_000000', '2026-01-02T00:00:00Z', 'tiered');
    await insert('public.reg_chunks_20260103_000000', '2026-01-03T00:00:00Z', 'dropped');
    expect(
      (await expectError(() => insert('public.x_1', '2026-01-04T00:00:00Z', 'frozen'), 'check constraint'))
        .code,
    ).toBe('23514');
    expect(
      (
        await expectError(
          () => insert('public.reg_chunks_20260101_000000', '2026-01-05T00:00:00Z'),
          'duplicate key',
        )
      ).code,
    ).toBe('23505');
    expect(
      (await expectError(() => insert('public.other_name', '2026-01-01T00:00:00Z'), 'duplicate key')).code,
    ).toBe('23505');
    // A missing ChronoTable is refused (FK) and deleting one removes its chunks and policies.
    await expectError(
      () =>
        client.query(
          "INSERT INTO lakets._chunk_metadata (chronotable_id, chunk_name, range_start, range_end) VALUES (-1, 'public.nope', now(), now() + interval '1 day')",
        ),
      'foreign key',
    );
    await client.query(
      `INSERT INTO lakets._policy_registry (chronotable_id, policy_type, config) VALUES ($1, 'retention', '{"drop_after": "1 day"}')`,
      [ct.id],
    );
    await client.query('DELETE FROM lakets._chronotable_registry WHERE id = $1', [ct.id]);
    const left = await client.query(
      `SELECT (SELECT count(*) FROM lakets._chunk_metadata WHERE chronotable_id = $1)::int AS chunks,
              (SELECT count(*) FROM lakets._policy_registry WHERE chronotable_id = $1)::int AS policies`,
      [ct.id],
    );
    expect(left.rows[0]).toEqual({ chunks: 0, policies: 0 });
  });
});

describe('lakets._policy_registry', () => {
  it('has the contract columns, policy_type check and enabled default true', async () => {
    expect(await columns('_policy_registry')).toMatchObject({
      id: 'integer',
      chronotable_id: 'integer',
      policy_type: 'text',
      config: 'jsonb',
      enabled: 'boolean',
      last_run_at: 'timestamp with time zone',
      created_at: 'timestamp with time zone',
    });
    const ct = await newChronotableRow('reg_policies');
    const { rows } = await client.query(
      `INSERT INTO lakets._policy_registry (chronotable_id, policy_type, config) VALUES ($1, 'tiering', '{"after": "1 day"}')
       RETURNING enabled, last_run_at`,
      [ct.id],
    );
    expect(rows[0]).toEqual({ enabled: true, last_run_at: null });
    for (const ok of ['retention', 'tiered_retention']) {
      await client.query(
        `INSERT INTO lakets._policy_registry (chronotable_id, policy_type, config) VALUES ($1, $2, '{}')`,
        [ct.id, ok],
      );
    }
    const bad = await expectError(
      () =>
        client.query(
          `INSERT INTO lakets._policy_registry (chronotable_id, policy_type, config) VALUES ($1, 'compression', '{}')`,
          [ct.id],
        ),
      'check constraint',
    );
    expect(bad.code).toBe('23514');
  });
});

describe('lakets._version', () => {
  it('records version, LakeTS version, flavor and checksum of each migration', async () => {
    expect(await columns('_version')).toMatchObject({
      version: 'text',
      lakets_version: 'text',
      flavor: 'text',
      checksum: 'text',
    });
    const { rows } = await client.query(
      "SELECT lakets_version, flavor FROM lakets._version WHERE version = '0001_core'",
    );
    expect(rows).toEqual([{ lakets_version: '0.1.3', flavor: 'lakets-jobs-aws' }]);
  });
});
