-- ---------------------------------------------------------------------------------------------
-- Internal helpers
-- ---------------------------------------------------------------------------------------------

-- Origin of every bucket: date_bin(chunk_interval, ts, origin).
CREATE FUNCTION lakets._origin() RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN timestamptz '2000-01-01 00:00:00+00';

-- The registry row of a ChronoTable by name, or a clear error.
CREATE FUNCTION lakets._chronotable(p_table_name text, p_schema_name text)
RETURNS lakets._chronotable_registry
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r lakets._chronotable_registry;
BEGIN
  SELECT * INTO r FROM lakets._chronotable_registry
   WHERE schema_name = coalesce(p_schema_name, 'public') AND table_name = p_table_name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'lakets: %.% is not a ChronoTable', quote_ident(coalesce(p_schema_name, 'public')), quote_ident(p_table_name)
      USING ERRCODE = 'undefined_table',
            HINT = 'create it with lakets.create_chronotable(table, time_column)';
  END IF;
  RETURN r;
END;
$$;

