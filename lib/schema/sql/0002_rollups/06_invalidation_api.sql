CREATE FUNCTION lakets.enable_rollup_invalidation(p_rollup_name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r lakets._rollup_registry := lakets._rollup(p_rollup_name);
BEGIN
  IF r.source_chronotable_id IS NULL THEN
    RAISE EXCEPTION 'lakets: RollUp % has no source ChronoTable', quote_literal(r.name)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'RollUps over RollUps are invalidated by the refreshes of the RollUps they depend on';
  END IF;
  UPDATE lakets._rollup_registry SET invalidation_enabled = true WHERE id = r.id;
  PERFORM lakets._apply_triggers(r.source_chronotable_id);
END;
$$;

CREATE FUNCTION lakets.disable_rollup_invalidation(p_rollup_name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r lakets._rollup_registry := lakets._rollup(p_rollup_name);
BEGIN
  UPDATE lakets._rollup_registry SET invalidation_enabled = false WHERE id = r.id;
  IF r.source_chronotable_id IS NOT NULL THEN
    PERFORM lakets._apply_triggers(r.source_chronotable_id);
  END IF;
END;
$$;

-- Logs every bucket of [p_from, p_to) for a refresh, except those over a dropped source chunk
-- (their last value is kept). Returns the number of buckets logged.
CREATE FUNCTION lakets.invalidate_rollup_range(p_name text, p_from timestamptz, p_to timestamptz) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
  r lakets._rollup_registry := lakets._rollup(p_name);
BEGIN
  IF p_from IS NULL OR p_to IS NULL OR p_to <= p_from THEN
    RAISE EXCEPTION 'lakets: invalidate_rollup_range needs p_from < p_to (got %, %)', p_from, p_to
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN lakets._invalidate(r.id, ARRAY(
    SELECT b FROM generate_series(date_bin(r.bucket_interval, p_from, lakets._origin()), p_to - interval '1 microsecond',
                                  r.bucket_interval) b
     WHERE r.source_chronotable_id IS NULL OR NOT EXISTS (
       SELECT 1 FROM lakets._chunk_metadata m
        WHERE m.chronotable_id = r.source_chronotable_id AND m.status = 'dropped'
          AND m.range_start < b + r.bucket_interval AND m.range_end > b)));
END;
$$;

