-- ---------------------------------------------------------------------------------------------
-- Tiering
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION lakets._get_chunks_to_tier(p_table_name text, p_schema_name text DEFAULT 'public')
RETURNS TABLE (chunk_id int, chunk_name text, range_start timestamptz, range_end timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
  r lakets._chronotable_registry := lakets._chronotable(p_table_name, p_schema_name);
  v_after interval;
BEGIN
  -- The most conservative (longest) of the enabled tiering-kind policies.
  SELECT max(coalesce(p.config ->> 'after', p.config ->> 'tier_after')::interval) INTO v_after
    FROM lakets._policy_registry p
   WHERE p.chronotable_id = r.id AND p.enabled AND p.policy_type IN ('tiering', 'tiered_retention');
  IF v_after IS NULL OR r.shadow_table_name IS NULL OR lakets._cdf_committed_lsn(r.shadow_table_name) IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY
    SELECT m.id, m.chunk_name, m.range_start, m.range_end
      FROM lakets._chunk_metadata m
     WHERE m.chronotable_id = r.id AND m.status = 'active' AND m.range_end <= now() - v_after
     ORDER BY m.range_start;
END;
$$;

CREATE FUNCTION lakets._find_chunk(p_chunk_name text) RETURNS lakets._chunk_metadata
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT m.* FROM lakets._chunk_metadata m
   WHERE m.chunk_name = p_chunk_name
      OR (position('.' IN p_chunk_name) = 0 AND m.chunk_name = 'public.' || p_chunk_name)
   LIMIT 1
$$;

CREATE FUNCTION lakets.tier_chunk(p_chunk_name text) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  c lakets._chunk_metadata := lakets._find_chunk(p_chunk_name);
  v_shadow text;
  v_committed pg_lsn;
  v_probe_reason text;
  v_reason text;
BEGIN
  IF c.id IS NULL THEN
    RAISE NOTICE 'lakets: tiering skipped chunk %: unknown chunk', p_chunk_name;
    RETURN false;
  END IF;
  -- Lock the row: a concurrent writer's stamp (or a concurrent tier/retention) is seen, not raced.
  SELECT * INTO c FROM lakets._chunk_metadata WHERE id = c.id FOR UPDATE;
  IF c.status <> 'active' THEN
    RAISE NOTICE 'lakets: tiering skipped chunk %: status is %, only active chunks are tiered', c.chunk_name, c.status;
    RETURN false;
  END IF;
  SELECT shadow_table_name INTO v_shadow FROM lakets._chronotable_registry WHERE id = c.chronotable_id;
  SELECT p.committed_lsn, p.reason INTO v_committed, v_probe_reason FROM lakets._cdf_probe(v_shadow) p;
  v_reason := lakets._not_durable_reason(v_committed, v_probe_reason, c.last_write_lsn);
  IF v_reason IS NOT NULL THEN
    RAISE NOTICE 'lakets: tiering deferred chunk %: %', c.chunk_name, v_reason;
    RETURN false;
  END IF;
  UPDATE lakets._chunk_metadata SET status = 'tiered', tiered_at = now(), last_modified_at = now() WHERE id = c.id;
  RETURN true;
END;
$$;

CREATE FUNCTION lakets.untier_chunk(p_chunk_name text) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  c lakets._chunk_metadata := lakets._find_chunk(p_chunk_name);
BEGIN
  UPDATE lakets._chunk_metadata SET status = 'active', tiered_at = NULL, last_modified_at = now()
   WHERE id = c.id AND status = 'tiered';
  IF NOT FOUND THEN
    RAISE NOTICE 'lakets: untier skipped chunk %: %', p_chunk_name,
      CASE WHEN c.id IS NULL THEN 'unknown chunk' ELSE format('status is %s, not tiered', c.status) END;
    RETURN false;
  END IF;
  RETURN true;
END;
$$;

CREATE FUNCTION lakets.show_tiering_status(p_table_name text DEFAULT NULL, p_schema_name text DEFAULT 'public')
RETURNS TABLE (
  schema_name text, table_name text, chunk_name text, range_start timestamptz, range_end timestamptz,
  status text, tiered_at timestamptz, last_write_lsn pg_lsn, committed_lsn pg_lsn, durable boolean, reason text
)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT r.schema_name, r.table_name, m.chunk_name, m.range_start, m.range_end, m.status, m.tiered_at,
         m.last_write_lsn, p.committed_lsn,
         lakets._not_durable_reason(p.committed_lsn, p.reason, m.last_write_lsn) IS NULL,
         lakets._not_durable_reason(p.committed_lsn, p.reason, m.last_write_lsn)
    FROM lakets._chronotable_registry r
    CROSS JOIN LATERAL lakets._cdf_probe(r.shadow_table_name) p
    JOIN lakets._chunk_metadata m ON m.chronotable_id = r.id
   WHERE p_table_name IS NULL OR (r.table_name = p_table_name AND r.schema_name = coalesce(p_schema_name, 'public'))
   ORDER BY r.schema_name, r.table_name, m.range_start
$$;

