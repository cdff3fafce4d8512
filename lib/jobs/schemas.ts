// The schemas the job role needs USAGE on, read from the LakeTS registries: one query for the
// preflight check (what is missing) and for `npm run grants` (what to grant), so the two agree by
// construction. Schema names come from the registries and pg_namespace only: a RollUp table's name is
// split with parse_ident (it is stored quoted where needed), never resolved through to_regclass,
// which raises without USAGE on the schema it names.
import type { SqlClient } from '../queryable.ts';

/** Which objects' schemas to read (a check of one job reads only what that job touches). */
export interface SchemaUses {
  /** The ChronoTables' schemas. */
  chronoTables: boolean;
  /** lakets_cdf, where enable_sync puts the shadows. */
  shadows: boolean;
  /** The schemas of RollUp tables and of RollUp sources. */
  rollups: boolean;
}

export const EVERY_USE: SchemaUses = { chronoTables: true, shadows: true, rollups: true };

export type NeededSchema = {
  name: string;
  /** False: registered, but no such schema (the registries are out of date). */
  exists: boolean;
  /** The connected role's privileges on it (the job role's, when the check runs as it). */
  usage: boolean;
  create: boolean;
  /** What it holds, for a message: `ChronoTable "Sensor Data".probe, RollUp probe_hourly source`. */
  holds: string;
  /** It holds a ChronoTable: its partitions are created there. */
  chronoTables: boolean;
};

const SQL = `
  WITH objects AS (
    SELECT schema_name AS nspname, format('ChronoTable %I.%I', schema_name, table_name) AS what, true AS ct
      FROM lakets._chronotable_registry WHERE $1
    UNION ALL
    SELECT 'lakets_cdf', format('shadow lakets_cdf.%I', shadow_table_name), false
      FROM lakets._chronotable_registry WHERE shadow_table_name IS NOT NULL AND $2
    UNION ALL
    -- An unqualified name resolves in public (the jobs' search_path).
    SELECT CASE WHEN cardinality(p.parts) > 1 THEN p.parts[cardinality(p.parts) - 1] ELSE 'public' END,
           format('RollUp %I table', rr.name), false
      FROM lakets._rollup_registry rr CROSS JOIN LATERAL (SELECT parse_ident(rr.rollup_table) AS parts) p
     WHERE $3
    UNION ALL
    SELECT ct.schema_name, format('RollUp %I source', rr.name), false
      FROM lakets._rollup_registry rr JOIN lakets._chronotable_registry ct ON ct.id = rr.source_chronotable_id
     WHERE $3)
  SELECT o.nspname AS name, n.oid IS NOT NULL AS exists,
         coalesce(has_schema_privilege(n.oid, 'USAGE'), false) AS usage,
         coalesce(has_schema_privilege(n.oid, 'CREATE'), false) AS create,
         string_agg(DISTINCT o.what, ', ') AS holds, bool_or(o.ct) AS "chronoTables"
    FROM objects o LEFT JOIN pg_namespace n ON n.nspname = o.nspname
   GROUP BY o.nspname, n.oid ORDER BY o.nspname`;

/** The schemas holding what the jobs work on, with what each holds and the connected role's rights. */
export async function neededSchemas(db: SqlClient, uses: SchemaUses = EVERY_USE): Promise<NeededSchema[]> {
  const { rows } = await db.query<NeededSchema>(SQL, [uses.chronoTables, uses.shadows, uses.rollups]);
  return rows;
}
