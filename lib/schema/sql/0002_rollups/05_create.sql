CREATE FUNCTION lakets.create_rollup(
  p_name text,
  p_query text,
  p_bucket_interval interval DEFAULT interval '1 hour',
  p_source_table text DEFAULT NULL,
  p_source_schema text DEFAULT 'public',
  p_depends_on text[] DEFAULT '{}'
) RETURNS int
LANGUAGE plpgsql
-- No pinned search_path: p_query is resolved with the caller's, as they wrote it. Every LakeTS
-- object below is schema-qualified.
SET TimeZone = 'UTC'
AS $$
DECLARE
  v_table text;
  v_source int;
  v_depends int[] := '{}';
  v_missing text;
  v_bucket text;
  v_type regtype;
  v_id int;
  v_probe regclass;
BEGIN
  IF p_name IS NULL OR p_name = '' OR octet_length('_rollup_' || p_name) > 63 THEN
    RAISE EXCEPTION 'lakets: RollUp name % is not usable', coalesce(quote_literal(p_name), 'NULL')
      USING ERRCODE = 'invalid_name', HINT = 'use a non-empty name of at most 55 bytes';
  END IF;
  IF EXISTS (SELECT 1 FROM lakets._rollup_registry WHERE name = p_name) THEN
    RAISE EXCEPTION 'lakets: RollUp % already exists', quote_literal(p_name) USING ERRCODE = 'duplicate_object';
  END IF;
  IF p_bucket_interval IS NULL OR p_bucket_interval <= interval '0'
     OR extract(month FROM p_bucket_interval) <> 0 OR extract(year FROM p_bucket_interval) <> 0 THEN
    RAISE EXCEPTION 'lakets: bucket interval % is not usable', p_bucket_interval
      USING ERRCODE = 'invalid_parameter_value', HINT = 'use a positive interval in days, hours or minutes';
  END IF;
  IF p_source_table IS NOT NULL THEN
    v_source := (lakets._chronotable(p_source_table, p_source_schema)).id;
  END IF;
  SELECT array_agg(d.id ORDER BY o.n) INTO v_depends
    FROM unnest(coalesce(p_depends_on, '{}')) WITH ORDINALITY o(name, n)
    JOIN lakets._rollup_registry d ON d.name = o.name;
  SELECT string_agg(quote_literal(o.name), ', ') INTO v_missing
    FROM unnest(coalesce(p_depends_on, '{}')) o(name)
   WHERE NOT EXISTS (SELECT 1 FROM lakets._rollup_registry d WHERE d.name = o.name);
  IF v_missing IS NOT NULL THEN
    RAISE EXCEPTION 'lakets: RollUp % depends on unknown RollUps: %', quote_literal(p_name), v_missing
      USING ERRCODE = 'undefined_object';
  END IF;

  v_table := format('public.%I', '_rollup_' || p_name);
  BEGIN
    EXECUTE format('CREATE TABLE %s AS SELECT * FROM (%s) q WITH NO DATA', v_table, p_query);
  EXCEPTION WHEN duplicate_table THEN
    RAISE EXCEPTION 'lakets: table % already exists', v_table USING ERRCODE = 'duplicate_table';
  WHEN OTHERS THEN
    RAISE EXCEPTION 'lakets: the query of RollUp % does not run: %', quote_literal(p_name), SQLERRM
      USING ERRCODE = 'invalid_parameter_value';
  END;
  v_probe := v_table::regclass;
  SELECT attname, atttypid::regtype INTO v_bucket, v_type FROM pg_attribute
   WHERE attrelid = v_probe AND attnum > 0 AND NOT attisdropped
   ORDER BY (attname = 'bucket') DESC, (atttypid IN ('timestamptz'::regtype, 'timestamp'::regtype)) DESC, attnum
   LIMIT 1;
  IF v_type <> 'timestamptz'::regtype THEN
    RAISE EXCEPTION 'lakets: the query of RollUp % has no timestamptz bucket column', quote_literal(p_name)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'select lakets.time_bucket(interval, time_column) AS bucket';
  END IF;
  EXECUTE format('CREATE INDEX ON %s (%I)', v_table, v_bucket);

  INSERT INTO lakets._rollup_registry (name, source_chronotable_id, rollup_table, bucket_interval, bucket_column,
                                       query_text, depends_on)
  VALUES (p_name, v_source, v_table, p_bucket_interval, v_bucket, p_query, coalesce(v_depends, '{}'))
  RETURNING id INTO v_id;
  UPDATE lakets._rollup_registry SET refresh_query = lakets._build_refresh_query(v_id) WHERE id = v_id;

  PERFORM lakets._refresh_range(v_id, '-infinity', 'infinity');
  EXECUTE format('UPDATE lakets._rollup_registry SET watermark = (SELECT max(%I) FROM %s), last_refreshed_at = now() WHERE id = $1',
                 v_bucket, v_table) USING v_id;
  RETURN v_id;
END;
$$;

