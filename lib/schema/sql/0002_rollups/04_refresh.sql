-- Re-aggregates buckets [p_lo, p_hi) of one RollUp: one statement deletes the old rows and inserts
-- the new ones (buckets overlapping a dropped source chunk are left as they are), and the buckets
-- it rewrote are logged for the RollUps built on this one.
CREATE FUNCTION lakets._refresh_range(p_rollup_id int, p_lo timestamptz, p_hi timestamptz) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
  r lakets._rollup_registry;
  v_frozen text := 'true';
  v_buckets timestamptz[];
  v_dep record;
BEGIN
  SELECT * INTO r FROM lakets._rollup_registry WHERE id = p_rollup_id;
  IF r.source_chronotable_id IS NOT NULL THEN
    v_frozen := format('NOT EXISTS (SELECT 1 FROM lakets._chunk_metadata m WHERE m.chronotable_id = %s '
                       'AND m.status = ''dropped'' AND m.range_start < %%1$s + %L::interval AND m.range_end > %%1$s)',
                       r.source_chronotable_id, r.bucket_interval);
  END IF;
  PERFORM set_config('lakets.window_lo', (p_lo - r.bucket_interval)::text, true);
  PERFORM set_config('lakets.window_hi', (p_hi + r.bucket_interval)::text, true);
  EXECUTE format(
    'WITH del AS (DELETE FROM %1$s t WHERE t.%2$I >= $1 AND t.%2$I < $2 AND %3$s RETURNING t.%2$I AS b), '
    'ins AS (INSERT INTO %1$s SELECT q.* FROM (%4$s) q WHERE q.%2$I >= $1 AND q.%2$I < $2 AND %5$s RETURNING %2$I AS b) '
    'SELECT array_agg(DISTINCT b) FROM (SELECT b FROM del UNION ALL SELECT b FROM ins) s',
    r.rollup_table, r.bucket_column, format(v_frozen, 't.' || quote_ident(r.bucket_column)),
    coalesce(r.refresh_query, r.query_text), format(v_frozen, 'q.' || quote_ident(r.bucket_column)))
    INTO v_buckets USING p_lo, p_hi;
  IF v_buckets IS NOT NULL THEN
    FOR v_dep IN SELECT id, bucket_interval FROM lakets._rollup_registry WHERE r.id = ANY (depends_on) LOOP
      PERFORM lakets._invalidate(v_dep.id,
        ARRAY(SELECT DISTINCT date_bin(v_dep.bucket_interval, b, lakets._origin()) FROM unnest(v_buckets) b));
    END LOOP;
  END IF;
  RETURN coalesce(array_length(v_buckets, 1), 0);
END;
$$;

CREATE FUNCTION lakets.refresh_rollup(p_name text) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
  r lakets._rollup_registry := lakets._rollup(p_name);
  v_lock_timeout text;
  v_lo timestamptz;
  v_log record;
  v_starts timestamptz[];
  v_gens int[];
  v_range_lo timestamptz;
  v_range_hi timestamptz;
  v_gap interval;
  v_ranges int;
  b timestamptz;
BEGIN
  IF NOT pg_try_advisory_xact_lock(74170010, r.id) THEN
    RAISE NOTICE 'lakets: RollUp % skipped: another session is refreshing it', r.name;
    RETURN false;
  END IF;
  IF r.last_refreshed_at IS NOT NULL AND r.last_refreshed_at + r.refresh_lag > now() THEN
    RAISE NOTICE 'lakets: RollUp % skipped: refreshed at % and refresh_lag is %', r.name, r.last_refreshed_at, r.refresh_lag;
    RETURN false;
  END IF;
  IF r.invalidation_enabled AND r.source_chronotable_id IS NOT NULL THEN
    -- Wait (briefly) for writers in flight on the source to commit; see _rollup_invalidate.
    v_lock_timeout := current_setting('lock_timeout');
    PERFORM set_config('lock_timeout', '5s', true);
    BEGIN
      PERFORM pg_advisory_xact_lock(74170011, r.id);
    EXCEPTION WHEN lock_not_available THEN
      PERFORM set_config('lock_timeout', v_lock_timeout, true);
      RAISE NOTICE 'lakets: RollUp % skipped: writes on its source stayed open for 5 s; next run will catch up', r.name;
      RETURN false;
    END;
    PERFORM set_config('lock_timeout', v_lock_timeout, true);
  END IF;
  SELECT * INTO r FROM lakets._rollup_registry WHERE id = r.id;
  v_lo := coalesce(r.watermark - r.bucket_interval, '-infinity');

  SELECT array_agg(l.bucket_start ORDER BY l.bucket_start), array_agg(l.generation ORDER BY l.bucket_start)
    INTO v_starts, v_gens
    FROM lakets._rollup_invalidation_log l WHERE l.rollup_id = r.id;

  -- Invalidated buckets below the overlap window, merged into at most ~64 ranges (a range may
  -- then recompute a few valid buckets between invalid ones: same values, fewer statements).
  IF v_starts IS NOT NULL THEN
    v_gap := r.bucket_interval;
    LOOP
      SELECT count(*) INTO v_ranges FROM (
        SELECT s, lag(s) OVER (ORDER BY s) AS prev FROM unnest(v_starts) s WHERE s < v_lo) x
       WHERE prev IS NULL OR s - prev > v_gap;
      EXIT WHEN v_ranges <= 64;
      v_gap := v_gap * 2;
    END LOOP;
    v_range_lo := NULL;
    FOREACH b IN ARRAY v_starts LOOP
      CONTINUE WHEN b >= v_lo;
      IF v_range_lo IS NOT NULL AND b - (v_range_hi - r.bucket_interval) > v_gap THEN
        PERFORM lakets._refresh_range(r.id, v_range_lo, v_range_hi);
        v_range_lo := NULL;
      END IF;
      IF v_range_lo IS NULL THEN
        v_range_lo := b;
      END IF;
      v_range_hi := b + r.bucket_interval;
    END LOOP;
    IF v_range_lo IS NOT NULL THEN
      PERFORM lakets._refresh_range(r.id, v_range_lo, least(v_range_hi, v_lo));
    END IF;
  END IF;

  PERFORM lakets._refresh_range(r.id, v_lo, 'infinity');

  IF v_starts IS NOT NULL THEN
    -- SKIP LOCKED: an entry locked by a writer is being re-invalidated (its generation will not
    -- match) and stays; waiting for that writer could deadlock with it, as a writer that finds the
    -- fence taken may in turn wait for entries this refresh has deleted.
    DELETE FROM lakets._rollup_invalidation_log l
     WHERE l.id IN (SELECT x.id FROM lakets._rollup_invalidation_log x
                      JOIN unnest(v_starts, v_gens) AS seen(bucket_start, generation)
                        ON x.bucket_start = seen.bucket_start AND x.generation = seen.generation
                     WHERE x.rollup_id = r.id
                       FOR UPDATE OF x SKIP LOCKED);
  END IF;
  EXECUTE format('SELECT max(%I) FROM %s', r.bucket_column, r.rollup_table) INTO v_lo;
  -- The max materialized bucket, NULL once nothing is: an old watermark kept over an emptied table
  -- would hide rows written again below it from every later refresh.
  UPDATE lakets._rollup_registry
     SET watermark = v_lo, last_refreshed_at = now()
   WHERE id = r.id;
  RETURN true;
END;
$$;

