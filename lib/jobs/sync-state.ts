// What Lakehouse Sync reports for a ChronoTable's shadow, read by the job with its own rights, and
// whether a chunk is proven durable in Unity Catalog by it. This is how Tiering and Retention decide
// and explain an outcome: from state, never from the wording of LakeTS's NOTICEs (which differs
// between LakeTS releases and is no contract).
//
// Durable <=> the shadow's wal2delta.tables row is STREAMING with committed_lsn >= the chunk's
// last_write_lsn (docs/lakets-contract.md, "The durability proof"). The access check reads pg_namespace/pg_class only:
// naming wal2delta in a query (or to_regclass) raises when the role lacks USAGE on it.
import { displayIdentifier } from '../identifier.ts';
import type { Queryable } from '../queryable.ts';
import { formatTable } from './payload.ts';
import type { ItemResult } from './types.ts';

/** Whether this role can read wal2delta.tables; when not, why (one line, with the fix's subject). */
export type SyncAccess = { readable: true } | { readable: false; reason: string };

export async function syncAccess(db: Queryable): Promise<SyncAccess> {
  const { rows } = await db.query<{
    has_schema: boolean;
    has_table: boolean;
    usage: boolean | null;
    can_select: boolean | null;
    role: string;
  }>(
    `SELECT n.oid IS NOT NULL AS has_schema, c.oid IS NOT NULL AS has_table,
            CASE WHEN n.oid IS NOT NULL THEN has_schema_privilege(n.oid, 'USAGE') END AS usage,
            CASE WHEN c.oid IS NOT NULL THEN has_table_privilege(c.oid, 'SELECT') END AS can_select,
            current_user::text AS role
       FROM (SELECT 1) one
       LEFT JOIN pg_namespace n ON n.nspname = 'wal2delta'
       LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = 'tables'`,
  );
  const r = rows[0];
  const role = displayIdentifier(r?.role ?? 'current_user');
  if (!r?.has_schema || !r.has_table)
    return {
      readable: false,
      reason: 'wal2delta.tables does not exist (Lakehouse Sync is not set up on this database)',
    };
  if (!r.usage) return { readable: false, reason: `role ${role} lacks USAGE on schema wal2delta` };
  if (!r.can_select) return { readable: false, reason: `role ${role} lacks SELECT on wal2delta.tables` };
  return { readable: true };
}

/**
 * SQL pieces that add a shadow's state to a query over `lakets._chronotable_registry r`: a FROM-list
 * tail (joins) and select-list columns (shadow_schema, shadow_relname, sync_row, sync_status,
 * committed). wal2delta is named only when it is readable.
 */
export function shadowSql(access: SyncAccess): { joins: string; columns: string } {
  // The registry holds the bare shadow name (in lakets_cdf); a "schema.name" is read as such only
  // when lakets_cdf has no table of that exact name.
  const joins = `
    LEFT JOIN LATERAL (
      SELECT c.oid, n.nspname::text AS nspname, c.relname::text AS relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE (n.nspname = 'lakets_cdf' AND c.relname = r.shadow_table_name)
          OR (position('.' IN r.shadow_table_name) > 0
              AND n.nspname = split_part(r.shadow_table_name, '.', 1)
              AND c.relname = substr(r.shadow_table_name, length(split_part(r.shadow_table_name, '.', 1)) + 2))
       ORDER BY n.nspname = 'lakets_cdf' DESC
       LIMIT 1) sh ON true
    ${access.readable ? 'LEFT JOIN wal2delta.tables w ON w.table_oid = sh.oid' : ''}`;
  const columns = access.readable
    ? `sh.nspname AS shadow_schema, sh.relname AS shadow_relname, w.table_oid IS NOT NULL AS sync_row,
       w.status::text AS sync_status, w.committed_lsn::text AS committed`
    : `sh.nspname AS shadow_schema, sh.relname AS shadow_relname, false AS sync_row,
       NULL::text AS sync_status, NULL::text AS committed`;
  return { joins, columns };
}

// A type, not an interface: pg's row type needs an index signature.
export type ShadowRow = {
  shadow_table_name: string | null;
  shadow_schema: string | null;
  shadow_relname: string | null;
  sync_row: boolean;
  sync_status: string | null;
  committed: string | null;
};

/** What Lakehouse Sync reports now for these ChronoTables' shadows (one round trip). */
export async function readShadows(
  db: Queryable,
  access: SyncAccess,
  ids: number[],
): Promise<Map<number, ShadowState>> {
  const { joins, columns } = shadowSql(access);
  const { rows } = await db.query<ShadowRow & { id: number }>(
    `SELECT r.id, r.shadow_table_name, ${columns} FROM lakets._chronotable_registry r ${joins} WHERE r.id = ANY ($1::int[])`,
    [ids],
  );
  return new Map(rows.map((r) => [r.id, shadowState(r, access)]));
}

/** The chunks' status and last_write_lsn now, by id (one round trip). */
export async function readChunks(
  db: Queryable,
  ids: number[],
): Promise<Map<number, { status: string; last_write_lsn: string | null }>> {
  const { rows } = await db.query<{ id: number; status: string; last_write_lsn: string | null }>(
    'SELECT id, status, last_write_lsn::text FROM lakets._chunk_metadata WHERE id = ANY ($1::int[])',
    [ids],
  );
  return new Map(rows.map((r) => [r.id, r]));
}

/** What Lakehouse Sync proves for one table's shadow. */
export interface ShadowState {
  /** committed_lsn while STREAMING; NULL when nothing can be proven. */
  committed: string | null;
  /** Why nothing can be proven (NULL when `committed` is set). */
  reason: string | null;
  /** Nothing can be proven because this role cannot read Lakehouse Sync's state. */
  unreadable: boolean;
}

export function shadowState(row: ShadowRow, access: SyncAccess): ShadowState {
  const none = (reason: string, unreadable = false): ShadowState => ({ committed: null, reason, unreadable });
  if (row.shadow_table_name === null) return none('sync is not enabled (no shadow table)');
  if (row.shadow_schema === null || row.shadow_relname === null)
    return none(`shadow table lakets_cdf.${displayIdentifier(row.shadow_table_name)} does not exist`);
  const shadow = formatTable({ schema: row.shadow_schema, table: row.shadow_relname });
  if (!access.readable) return none(access.reason, true);
  if (!row.sync_row)
    return none(`shadow ${shadow} has no row in wal2delta.tables (Lakehouse Sync has not picked it up)`);
  if (row.sync_status !== 'STREAMING') return none(`shadow ${shadow} is ${row.sync_status}, not STREAMING`);
  if (row.committed === null) return none(`shadow ${shadow} is STREAMING but has no committed_lsn yet`);
  return { committed: row.committed, reason: null, unreadable: false };
}

/** Why a chunk is not proven durable in Unity Catalog, or NULL when it is. */
export function notDurableReason(shadow: ShadowState, lastWriteLsn: string | null): string | null {
  if (shadow.committed === null) return shadow.reason ?? 'committed_lsn is unknown';
  if (lastWriteLsn === null) return 'the chunk has no last_write_lsn (no recorded write position)';
  if (compareLsn(shadow.committed, lastWriteLsn) < 0)
    return `committed_lsn ${shadow.committed} is behind the chunk's last_write_lsn ${lastWriteLsn} (Lakehouse Sync has not caught up)`;
  return null;
}

/** Orders two pg_lsn texts (`16/B374D848`). */
export function compareLsn(a: string, b: string): number {
  const x = lsn(a);
  const y = lsn(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

function lsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!m) throw new Error(`not a pg_lsn: ${JSON.stringify(text)}`);
  return (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`);
}

/** How many items say nothing could be proven because this role cannot read Sync's state. */
export function unreadableItems(items: ItemResult[]): number {
  return items.filter((i) => i.warning?.code === 'SyncStateUnreadable').length;
}
