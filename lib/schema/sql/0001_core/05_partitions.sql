-- ---------------------------------------------------------------------------------------------
-- Partitions
-- ---------------------------------------------------------------------------------------------

-- The worker behind _ensure_partitions, run with the caller's rights (create_chronotable calls it
-- as the table's owner). Creates bucket-aligned partitions for [from, to); see _ensure_partitions.
CREATE FUNCTION lakets._create_partitions(
  p_chronotable_id int,
  p_past_count int DEFAULT 1,
  p_future_count int DEFAULT 3,
  p_range_start timestamptz DEFAULT NULL,
  p_range_end timestamptz DEFAULT NULL
) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
  r lakets._chronotable_registry;
  v_base timestamptz;
  v_from timestamptz;
  v_to timestamptz;
  v_start timestamptz;
  v_end timestamptz;
  v_name text;
  v_rel regclass;
  v_parent regclass;
  v_existing lakets._chunk_metadata;
  v_created int := 0;
  v_new regclass[] := '{}';
  v_tracking boolean;
BEGIN
  IF p_past_count < 0 OR p_future_count < 0 THEN
    RAISE EXCEPTION 'lakets: p_past_count and p_future_count must be >= 0 (got %, %)', p_past_count, p_future_count
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT * INTO r FROM lakets._chronotable_registry WHERE id = p_chronotable_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'lakets: no ChronoTable with id %', p_chronotable_id
      USING ERRCODE = 'undefined_table', HINT = 'see lakets._chronotable_registry for the ids';
  END IF;
  v_tracking := lakets._write_tracking_enabled(r.id);
  v_parent := to_regclass(format('%I.%I', r.schema_name, r.table_name));
  IF v_parent IS NULL THEN
    RAISE EXCEPTION 'lakets: ChronoTable %.% is registered but the table is missing',
      quote_ident(r.schema_name), quote_ident(r.table_name) USING ERRCODE = 'undefined_table';
  END IF;
  -- Concurrent callers for the same table queue here, so a range is never created twice.
  PERFORM pg_advisory_xact_lock(74170001, p_chronotable_id);

  v_base := date_bin(r.chunk_interval, now(), lakets._origin());
  v_from := date_bin(r.chunk_interval, coalesce(p_range_start, v_base - p_past_count * r.chunk_interval), lakets._origin());
  v_to := coalesce(p_range_end, v_base + (p_future_count + 1) * r.chunk_interval);

  v_start := v_from;
  WHILE v_start < v_to LOOP
    v_end := v_start + r.chunk_interval;
    SELECT * INTO v_existing FROM lakets._chunk_metadata
     WHERE chronotable_id = r.id AND range_start = v_start;
    IF NOT FOUND OR v_existing.status = 'dropped' THEN
      v_name := r.table_name || '_' || to_char(v_start, 'YYYYMMDD_HH24MISS');
      IF octet_length(v_name) > 63 THEN
        RAISE EXCEPTION 'lakets: partition name "%" would exceed 63 bytes', v_name
          USING ERRCODE = 'name_too_long', HINT = 'use a shorter table name';
      END IF;
      v_rel := to_regclass(format('%I.%I', r.schema_name, v_name));
      IF v_rel IS NULL THEN
        EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                       r.schema_name, v_name, v_parent, v_start, v_end);
        v_rel := format('%I.%I', r.schema_name, v_name)::regclass;
      ELSIF NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = v_rel AND inhparent = v_parent) THEN
        RAISE EXCEPTION 'lakets: table % exists but is not a partition of %', v_rel, v_parent
          USING ERRCODE = 'duplicate_table', HINT = 'rename or drop it, then run again';
      END IF;
      INSERT INTO lakets._chunk_metadata AS m (chronotable_id, chunk_name, range_start, range_end, status, last_write_lsn)
      VALUES (r.id, r.schema_name || '.' || v_name, v_start, v_end, 'active',
              CASE WHEN v_tracking THEN pg_current_wal_insert_lsn() END)
      ON CONFLICT (chronotable_id, range_start) DO UPDATE
         SET status = 'active', tiered_at = NULL, range_end = excluded.range_end,
             chunk_name = excluded.chunk_name, last_write_lsn = excluded.last_write_lsn,
             created_at = now(), last_modified_at = now();
      v_created := v_created + 1;
      v_new := v_new || v_rel;
    END IF;
    v_start := v_end;
  END LOOP;

  IF v_created > 0 THEN
    PERFORM lakets._apply_triggers(r.id, v_new);
  END IF;
  RETURN v_created;
END;
$$;

-- Contract entry point (the Partition Manager job): definer rights, so the job role needs no
-- ownership of the ChronoTable. The schema's owner must own the ChronoTables (or be a member of
-- their owner role).
CREATE FUNCTION lakets._ensure_partitions(
  p_chronotable_id int,
  p_past_count int DEFAULT 1,
  p_future_count int DEFAULT 3,
  p_range_start timestamptz DEFAULT NULL,
  p_range_end timestamptz DEFAULT NULL
) RETURNS int
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
RETURN lakets._create_partitions(p_chronotable_id, p_past_count, p_future_count, p_range_start, p_range_end);

