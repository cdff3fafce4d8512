-- ---------------------------------------------------------------------------------------------
-- Policies
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION lakets._check_interval(p_name text, p_value interval) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_value IS NULL OR p_value <= interval '0' THEN
    RAISE EXCEPTION 'lakets: % must be a positive interval (got %)', p_name, coalesce(p_value::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
END;
$$;

CREATE FUNCTION lakets._upsert_policy(p_chronotable_id int, p_type text, p_config jsonb) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_id int;
  v_tracking boolean := lakets._write_tracking_enabled(p_chronotable_id);
BEGIN
  INSERT INTO lakets._policy_registry AS p (chronotable_id, policy_type, config)
  VALUES (p_chronotable_id, p_type, p_config)
  ON CONFLICT (chronotable_id, policy_type) DO UPDATE SET config = excluded.config, enabled = true
  RETURNING id INTO v_id;
  IF NOT v_tracking AND lakets._write_tracking_enabled(p_chronotable_id) THEN
    PERFORM lakets._backfill_write_lsn(p_chronotable_id);
    PERFORM lakets._apply_triggers(p_chronotable_id);
  END IF;
  RETURN v_id;
END;
$$;

CREATE FUNCTION lakets.add_tiering_policy(p_table_name text, p_after interval, p_schema_name text DEFAULT 'public')
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM lakets._check_interval('tiering after', p_after);
  RETURN lakets._upsert_policy((lakets._chronotable(p_table_name, p_schema_name)).id, 'tiering',
                               jsonb_build_object('after', p_after::text));
END;
$$;

CREATE FUNCTION lakets.add_retention_policy(p_table_name text, p_drop_after interval, p_schema_name text DEFAULT 'public')
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM lakets._check_interval('retention drop_after', p_drop_after);
  RETURN lakets._upsert_policy((lakets._chronotable(p_table_name, p_schema_name)).id, 'retention',
                               jsonb_build_object('drop_after', p_drop_after::text));
END;
$$;

CREATE FUNCTION lakets.add_tiered_retention_policy(
  p_table_name text, p_tier_after interval, p_drop_after interval, p_schema_name text DEFAULT 'public'
) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM lakets._check_interval('tier_after', p_tier_after);
  PERFORM lakets._check_interval('drop_after', p_drop_after);
  IF NOT p_tier_after < p_drop_after THEN
    RAISE EXCEPTION 'lakets: tier_after (%) must be shorter than drop_after (%)', p_tier_after, p_drop_after
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN lakets._upsert_policy((lakets._chronotable(p_table_name, p_schema_name)).id, 'tiered_retention',
                               jsonb_build_object('tier_after', p_tier_after::text, 'drop_after', p_drop_after::text));
END;
$$;

CREATE FUNCTION lakets._remove_policies(p_table_name text, p_schema_name text, p_types text[]) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_id int := (lakets._chronotable(p_table_name, p_schema_name)).id;
  v_removed int;
BEGIN
  DELETE FROM lakets._policy_registry WHERE chronotable_id = v_id AND policy_type = ANY (p_types);
  GET DIAGNOSTICS v_removed = ROW_COUNT;
  IF v_removed > 0 AND NOT lakets._write_tracking_enabled(v_id) THEN
    PERFORM lakets._apply_triggers(v_id);
  END IF;
  RETURN v_removed > 0;
END;
$$;

CREATE FUNCTION lakets.remove_tiering_policy(p_table_name text, p_schema_name text DEFAULT 'public') RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
RETURN lakets._remove_policies(p_table_name, p_schema_name, ARRAY['tiering']);

-- Removes both retention kinds ('retention' and 'tiered_retention').
CREATE FUNCTION lakets.remove_retention_policy(p_table_name text, p_schema_name text DEFAULT 'public') RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
RETURN lakets._remove_policies(p_table_name, p_schema_name, ARRAY['retention', 'tiered_retention']);

