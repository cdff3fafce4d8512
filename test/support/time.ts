// Time arithmetic of the LakeTS tests: bucket and chunk boundaries as LakeTS computes them, and the
// server's clock (the tests place rows relative to the server's now(), never the test process's).
import type pg from 'pg';

export const MINUTE_MS = 60_000;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;

/** `lakets._origin()`: every bucket is date_bin(interval, ts, this). */
export const ORIGIN_MS = Date.UTC(2000, 0, 1);

/** Start of the bucket holding `ms` (date_bin with the LakeTS origin). */
export function bucketStart(ms: number, intervalMs: number): number {
  return ORIGIN_MS + Math.floor((ms - ORIGIN_MS) / intervalMs) * intervalMs;
}

/** now() on the server, in ms. */
export async function serverNow(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ now: Date }>('SELECT now() AS now');
  return rows[0]!.now.getTime();
}
