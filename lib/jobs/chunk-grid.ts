// A ChronoTable's chunk grid, read from its existing chunks, and the session time zone that makes
// `_ensure_partitions` continue it. LakeTS bins partitions with date_bin(chunk_interval, ts,
// '2000-01-01'::timestamptz): the public LakeTS reads that origin in the session's time zone, so a
// table laid out from a session in Europe/Berlin has daily chunks starting 23:00 UTC, and a call from
// a UTC session then fails with "would overlap partition" (42P17). A fixed-offset time zone for the
// call moves the origin back onto the table's grid.

/** The UTC origin of LakeTS buckets. */
export const UTC_ORIGIN = '2000-01-01T00:00:00Z';

// Postgres accepts POSIX offsets up to 167:59:59 in a TimeZone setting.
const MAX_ZONE_SECONDS = 168 * 3600 - 1;

export interface ChunkGrid {
  /** How far the table's chunk boundaries sit after the UTC grid, in [0, interval) seconds. */
  offsetSeconds: number;
  /** The origin the table's partitions are binned on (ISO, UTC). */
  origin: string;
  /**
   * The TimeZone setting under which '2000-01-01'::timestamptz is a boundary of this grid: a fixed
   * offset in POSIX form, e.g. `<+01:00>-01:00` for daily chunks starting 23:00 UTC. Undefined for the
   * UTC grid, and when no time zone can express the offset.
   */
  timeZone?: string;
  /** One line for the report: which grid was kept, and how. */
  description: string;
}

function clock(seconds: number): string {
  const s = Math.abs(Math.round(seconds));
  const hh = String(Math.floor(s / 3600)).padStart(2, '0');
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = s % 60;
  return `${seconds < 0 ? '-' : '+'}${hh}:${mm}${ss === 0 ? '' : `:${String(ss).padStart(2, '0')}`}`;
}

/** A fixed-offset POSIX time zone `eastSeconds` east of UTC (POSIX writes the sign inverted). */
export function fixedOffsetZone(eastSeconds: number): string {
  const iso = clock(eastSeconds);
  const posix = clock(-eastSeconds);
  return `<${iso}>${posix}`;
}

/**
 * The grid of a table whose chunks are `intervalSeconds` long and whose boundaries sit
 * `offsetSeconds` after the UTC grid (null: no chunks yet, so the UTC grid).
 */
export function chunkGrid(intervalSeconds: number, offsetSeconds: number | null): ChunkGrid {
  const offset =
    offsetSeconds === null ? 0 : ((offsetSeconds % intervalSeconds) + intervalSeconds) % intervalSeconds;
  const origin = new Date(Date.parse(UTC_ORIGIN) + offset * 1000).toISOString();
  if (offset === 0) {
    return { offsetSeconds: 0, origin, description: 'UTC grid (origin 2000-01-01 00:00 UTC)' };
  }
  // A session time zone z hours east of UTC puts the origin at 2000-01-01 00:00 UTC - z, so the grid
  // shifts by -z: any z with -z ≡ offset (mod interval) reproduces it; the smallest |z| is the clearest.
  const candidates = [-offset, intervalSeconds - offset].filter((z) => Math.abs(z) <= MAX_ZONE_SECONDS);
  const east = candidates.sort((a, b) => Math.abs(a) - Math.abs(b))[0];
  const shifted = `chunks start ${clock(offset).slice(1)} after the UTC grid (origin ${origin.replace('.000Z', 'Z')})`;
  if (east === undefined) {
    return {
      offsetSeconds: offset,
      origin,
      description: `kept the table's grid: ${shifted}; no session time zone can express it, so the call ran in UTC`,
    };
  }
  const timeZone = fixedOffsetZone(east);
  return {
    offsetSeconds: offset,
    origin,
    timeZone,
    description: `kept the table's grid: ${shifted}, created from a session in time zone UTC${clock(east)}`,
  };
}
