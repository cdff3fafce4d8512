// Shared fixtures for the schema tests: ChronoTables `(ts, v)`, their chunks, relation checks,
// partition suffixes and LSN order. Lakehouse Sync (wal2delta) is played by dev/fake-lakehouse-sync.ts:
// the schema never creates it.
import type pg from 'pg';
import { createChronotable } from '../../dev/chronotable.ts';

/** The `YYYYMMDD_HH24MISS` suffix of a partition starting at `ms`, in UTC. */
export function suffix(ms: number): string {
  const iso = new Date(ms).toISOString(); // 2026-03-08T06:00:00.000Z
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}_${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}`;
}

export interface ChunkRow {
  id: number;
  chunk_name: string;
  range_start: Date;
  range_end: Date;
  status: string;
  tiered_at: Date | null;
  last_write_lsn: string | null;
}

/** The chunks of a ChronoTable, oldest first. */
export async function chunks(client: pg.Client, table: string, schema = 'public'): Promise<ChunkRow[]> {
  const { rows } = await client.query<ChunkRow>(
    `SELECT m.id, m.chunk_name, m.range_start, m.range_end, m.status, m.tiered_at, m.last_write_lsn::text
       FROM lakets._chunk_metadata m JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
      WHERE r.schema_name = $1 AND r.table_name = $2
      ORDER BY m.range_start`,
    [schema, table],
  );
  return rows;
}

/** Whether a relation exists (by schema and name, no quoting needed). */
export async function relationExists(client: pg.Client, schema: string, name: string): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = $1 AND c.relname = $2) AS ok`,
    [schema, name],
  );
  return rows[0]!.ok;
}

export { qname } from '../../dev/chronotable.ts';

/** pg_lsn text ordering: compares two LSNs like 0/16B3748. */
export function lsnCompare(a: string, b: string): number {
  const value = (l: string) => {
    const [hi, lo] = l.split('/');
    return BigInt(`0x${hi}`) * 2n ** 32n + BigInt(`0x${lo}`);
  };
  const d = value(a) - value(b);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

/** A LakeTS ChronoTable (`ts timestamptz, v int`) with rows at the given times, plus its registry id. */
export async function makeChronotable(
  client: pg.Client,
  table: string,
  options: { interval?: string; rows?: Date[]; schema?: string } = {},
): Promise<number> {
  const rows = options.rows ?? [];
  return createChronotable(client, {
    name: table,
    schema: options.schema ?? 'public',
    columns: 'v int',
    chunk: options.interval ?? '1 day',
    ...(rows.length > 0 && {
      existingRows: {
        sql: 'SELECT t, ord::int FROM unnest($1::timestamptz[]) WITH ORDINALITY u(t, ord)',
        values: [rows],
      },
    }),
  });
}
