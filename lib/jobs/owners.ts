// The relations partition DDL touches, for the preflight check and for npm run grants alike: every
// ChronoTable and its live partitions, with their owner (relowner) and quoted name. With the caller's
// rights, the job role needs the privileges of each of their owners.
export const OWNED_RELATIONS_SQL = `
  SELECT c.relowner, format('%I.%I', n.nspname, c.relname) AS name
    FROM lakets._chronotable_registry ct
    JOIN pg_namespace n ON n.nspname = ct.schema_name
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = ct.table_name
  UNION ALL
  SELECT c.relowner, format('%I.%I', n.nspname, c.relname)
    FROM lakets._chunk_metadata m
    JOIN lakets._chronotable_registry ct ON ct.id = m.chronotable_id
    JOIN pg_namespace n ON n.nspname = ct.schema_name
    JOIN pg_class c ON c.relnamespace = n.oid AND format('%s.%s', n.nspname, c.relname) = m.chunk_name
   WHERE m.status <> 'dropped'`;

// Whether an owner role `a` (a pg_roles row) is one whose membership must never be granted to the job
// role: a superuser, a member of one, or a member of Lakebase's databricks_superuser. Inherited
// membership of such a role would pass its privileges on; the fix is to move the ownership instead.
export const PRIVILEGED_OWNER_SQL = `(a.rolsuper OR EXISTS (
    SELECT FROM pg_roles s
     WHERE (s.rolsuper OR s.rolname = 'databricks_superuser') AND s.oid <> a.oid
       AND pg_has_role(a.oid, s.oid, 'MEMBER')))`;
