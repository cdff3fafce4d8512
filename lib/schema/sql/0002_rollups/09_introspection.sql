CREATE FUNCTION lakets.show_rollups()
RETURNS TABLE (
  name text, rollup_table text, bucket_interval interval, refresh_lag interval, watermark timestamptz,
  last_refreshed_at timestamptz, source_table text, bucket_column text, depends_on text[],
  invalidation_enabled boolean, pending_invalidations bigint
)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT x.name, x.rollup_table, x.bucket_interval, x.refresh_lag, x.watermark, x.last_refreshed_at,
         CASE WHEN c.id IS NOT NULL THEN format('%I.%I', c.schema_name, c.table_name) END,
         x.bucket_column,
         ARRAY(SELECT d.name FROM unnest(x.depends_on) WITH ORDINALITY u(id, n)
                JOIN lakets._rollup_registry d ON d.id = u.id ORDER BY u.n),
         x.invalidation_enabled,
         (SELECT count(*) FROM lakets._rollup_invalidation_log l WHERE l.rollup_id = x.id)
    FROM lakets._rollup_registry x LEFT JOIN lakets._chronotable_registry c ON c.id = x.source_chronotable_id
   ORDER BY x.name
$$;

CREATE FUNCTION lakets.show_rollup_dag()
RETURNS TABLE (rollup_name text, depends_on_names text[], refresh_order int, bucket_interval interval, last_refreshed timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT o.rollup_name,
         ARRAY(SELECT d.name FROM unnest(o.depends_on) u(id) JOIN lakets._rollup_registry d ON d.id = u.id ORDER BY d.name),
         o.refresh_order, x.bucket_interval, x.last_refreshed_at
    FROM lakets._rollup_order() o JOIN lakets._rollup_registry x ON x.id = o.rollup_id
   ORDER BY o.refresh_order
$$;

