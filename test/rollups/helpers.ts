// Shared fixtures for the RollUp tests: a source ChronoTable (ts, device, v, id), RollUp creation,
// NOTICE/WARNING capture, and "from scratch" comparisons of a RollUp's table with its query.
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createChronotable, qname, type Rows } from '../../dev/chronotable.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { bucketStart, DAY_MS, HOUR_MS, MINUTE_MS, serverNow } from '../support/time.ts';

export { qname };

/** The table of RollUp `name`, as the contract names it: `public._rollup_<name>`. */
export function rollupTable(name: string): string {
  return qname('public', `_rollup_${name}`);
}

/** One source row: time, device, value (and an id the tests use to update or delete it). */
export interface SourceRow {
  ts: Date;
  device: number;
  v: number;
  id?: number;
}

/** Inserts rows into `table` in one statement (one trigger firing per statement). */
/** Source rows as one SELECT over arrays (one statement: one trigger firing per statement). */
function unnestRows(rows: SourceRow[]): Rows {
  return {
    sql: 'SELECT * FROM unnest($1::timestamptz[], $2::int[], $3::int[], $4::int[])',
    values: [
      rows.map((r) => r.ts),
      rows.map((r) => r.device),
      rows.map((r) => r.v),
      rows.map((r) => r.id ?? null),
    ],
  };
}

/** Inserts rows into `table` in one statement (one trigger firing per statement). */
export async function insertRows(client: pg.Client, table: string, rows: SourceRow[]): Promise<void> {
  if (rows.length === 0) return;
  const { sql, values } = unnestRows(rows);
  await client.query(`INSERT INTO ${qname('public', table)} (ts, device, v, id) ${sql}`, values);
}

/**
 * Creates `public.<table> (ts timestamptz, device int, v int, id int)` with `rows`, makes it a
 * ChronoTable with `chunk` partitions, and makes sure partitions cover [from, to) when given.
 * Returns the ChronoTable id.
 */
export async function makeSource(
  client: pg.Client,
  table: string,
  options: { chunk?: string; rows?: SourceRow[]; cover?: { from: Date; to: Date } } = {},
): Promise<number> {
  const rows = options.rows ?? [];
  return createChronotable(client, {
    name: table,
    columns: 'device int NOT NULL, v int NOT NULL, id int',
    chunk: options.chunk ?? '1 day',
    ...(rows.length > 0 && { existingRows: unnestRows(rows) }),
    ...(options.cover && { partitions: options.cover }),
  });
}

/** Per-device hourly (or other `bucket`) aggregates over `from`: they compose exactly. */
export function perDeviceQuery(from: string, bucket = '1 hour', timeColumn = 'ts'): string {
  return `SELECT lakets.time_bucket('${bucket}', ${timeColumn}) AS bucket, device, sum(v)::bigint AS total,
                 count(*)::bigint AS n, min(v) AS lo, max(v) AS hi
            FROM ${from} GROUP BY 1, 2`;
}

/** Re-buckets a perDeviceQuery-shaped RollUp table (per device, or across devices). */
export function composeQuery(from: string, bucket: string, perDevice = true): string {
  const device = perDevice ? 'device, ' : '';
  return `SELECT lakets.time_bucket('${bucket}', bucket) AS bucket, ${device}sum(total)::bigint AS total,
                 sum(n)::bigint AS n, min(lo) AS lo, max(hi) AS hi
            FROM ${from} GROUP BY ${perDevice ? '1, 2' : '1'}`;
}

/** lakets.create_rollup with named arguments; returns the RollUp id. */
export async function createRollup(
  client: pg.Client,
  name: string,
  query: string,
  options: { interval?: string; source?: string; dependsOn?: string[] } = {},
): Promise<number> {
  const { rows } = await client.query<{ id: number }>(
    `SELECT lakets.create_rollup(p_name => $1, p_query => $2, p_bucket_interval => $3::interval,
                                 p_source_table => $4, p_depends_on => $5::text[]) AS id`,
    [name, query, options.interval ?? '1 hour', options.source ?? null, options.dependsOn ?? []],
  );
  return rows[0]!.id;
}

export async function setLag(client: pg.Client, lag: string, names?: string[]): Promise<void> {
  await client.query(
    'UPDATE lakets._rollup_registry SET refresh_lag = $1::interval WHERE $2::text[] IS NULL OR name = ANY ($2)',
    [lag, names ?? null],
  );
}

export async function refresh(client: pg.Client, name: string): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>('SELECT lakets.refresh_rollup($1) AS ok', [name]);
  return rows[0]!.ok;
}

export interface CascadeRow {
  rollup_name: string;
  refreshed: boolean;
  refresh_ms: number;
}

export async function cascade(client: pg.Client, name?: string): Promise<CascadeRow[]> {
  const { rows } = await client.query<CascadeRow>(
    name === undefined
      ? 'SELECT * FROM lakets.refresh_rollup_cascade()'
      : 'SELECT * FROM lakets.refresh_rollup_cascade($1)',
    name === undefined ? [] : [name],
  );
  return rows;
}

/**
 * Loads rows with a real server-side `COPY ... FROM 'file'` (COPY fires the statement triggers with
 * transition tables, like an INSERT). The file is world-readable: the server may run as another OS user.
 */
export async function copyRows(client: pg.Client, table: string, rows: SourceRow[]): Promise<void> {
  const file = join(
    tmpdir(),
    `lakets-rollups-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.csv`,
  );
  const csv = rows.map((r) => `${r.ts.toISOString()},${r.device},${r.v},${r.id ?? ''}`).join('\n');
  writeFileSync(file, `${csv}\n`, { mode: 0o644 });
  chmodSync(file, 0o644);
  try {
    await client.query(
      `COPY ${qname('public', table)} (ts, device, v, id) FROM ${pg.escapeLiteral(file)} WITH (FORMAT csv)`,
    );
  } finally {
    rmSync(file, { force: true });
  }
}

/** Waits until `pid` waits for a lock (of `locktype`, default advisory), or fails after `ms`. */
export async function waitUntilBlocked(
  client: pg.Client,
  pid: number,
  locktype = 'advisory',
  ms = 10_000,
): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const { rows } = await client.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pg_locks WHERE pid = $1 AND NOT granted AND locktype = $2',
      [pid, locktype],
    );
    if (rows[0]!.n > 0) return;
    if (Date.now() > until) throw new Error(`backend ${pid} never waited for a ${locktype} lock`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function backendPid(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return rows[0]!.pid;
}

/** Deterministic rows: `hours` hours from `startMs`, one row per device (0..devices-1) per hour. */
export function hourlyRows(startMs: number, hours: number, devices = 3, firstId = 1): SourceRow[] {
  const out: SourceRow[] = [];
  let id = firstId;
  for (let h = 0; h < hours; h++) {
    for (let d = 0; d < devices; d++) {
      out.push({
        ts: new Date(startMs + h * HOUR_MS + (5 + d * 7) * MINUTE_MS),
        device: d,
        v: ((h * 7 + d * 13) % 50) - 10,
        id: id++,
      });
    }
  }
  return out;
}

export interface RollupSpec {
  query: string;
  /** Bucket interval (default 1 hour). */
  interval?: string;
  source?: string;
  dependsOn?: string[];
  /** enable_rollup_invalidation once every RollUp exists. */
  invalidation?: boolean;
}

/** Creates `rollups` in order, enables invalidation where asked, then sets every refresh_lag to 0. */
export async function createRollups(client: pg.Client, rollups: Record<string, RollupSpec>): Promise<void> {
  for (const [name, spec] of Object.entries(rollups)) await createRollup(client, name, spec.query, spec);
  for (const [name, spec] of Object.entries(rollups)) {
    if (spec.invalidation) await client.query('SELECT lakets.enable_rollup_invalidation($1)', [name]);
  }
  await setLag(client, '0');
}

export interface RollupFixture {
  db: TestDatabase;
  client: pg.Client;
  /** now() on the server when the fixture was built, in ms. */
  now: number;
  /** Start of the UTC day `daysAgo` days back: the first day of the source's rows. */
  day0: number;
  /** The source ChronoTable's id (0 without a source). */
  sourceId: number;
}

/**
 * The world of a RollUp test file: a fresh database with LakeTS; when `source` is given, a source
 * ChronoTable with `hours` hourly rows from day0 (hourlyRows) and partitions over `coverDays` days
 * from day0; then `rollups` (createRollups).
 */
export async function rollupFixture(
  options: {
    daysAgo?: number;
    source?: { name: string; hours?: number; coverDays: number; chunk?: string };
    rollups?: Record<string, RollupSpec>;
  } = {},
): Promise<RollupFixture> {
  const db = await freshDatabase({ lakets: true });
  const client = await db.connect();
  const now = await serverNow(client);
  const day0 = bucketStart(now - (options.daysAgo ?? 5) * DAY_MS, DAY_MS);
  const { source } = options;
  const sourceId = source
    ? await makeSource(client, source.name, {
        ...(source.chunk === undefined ? {} : { chunk: source.chunk }),
        rows: hourlyRows(day0, source.hours ?? 0),
        cover: { from: new Date(day0), to: new Date(day0 + source.coverDays * DAY_MS) },
      })
    : 0;
  if (options.rollups) await createRollups(client, options.rollups);
  return { db, client, now, day0, sourceId };
}
