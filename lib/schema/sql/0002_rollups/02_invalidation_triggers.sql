-- Upserts invalidation entries (bumping the generation of existing ones).
CREATE FUNCTION lakets._invalidate(p_rollup_id int, p_buckets timestamptz[]) RETURNS int
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  WITH up AS (
    INSERT INTO lakets._rollup_invalidation_log AS l (rollup_id, bucket_start)
    SELECT p_rollup_id, b FROM (SELECT DISTINCT unnest(p_buckets) AS b) s WHERE b IS NOT NULL
    -- One lock order for every writer: statements logging the same buckets queue, never deadlock.
    ORDER BY b
    ON CONFLICT (rollup_id, bucket_start)
      DO UPDATE SET invalidated_at = now(), generation = l.generation + 1
    RETURNING 1
  )
  SELECT count(*)::int FROM up
$$;

-- Statement-level trigger on a ChronoTable (and its partitions): logs the buckets of every RollUp
-- with invalidation enabled that a late write touched. Writers hold a shared "fence" lock per
-- RollUp until they commit; a refresh takes it exclusively, so it never reads a snapshot that
-- misses a write which then sees the old watermark. A writer that finds a refresh running logs
-- every bucket it touched instead of waiting.
CREATE FUNCTION lakets._rollup_invalidate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_id int := TG_ARGV[0]::int;
  v_col text;
  v_rows text;
  v_min timestamptz;
  r record;
  v_watermark timestamptz;
  v_buckets timestamptz[];
BEGIN
  SELECT time_column INTO v_col FROM lakets._chronotable_registry WHERE id = v_id;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  v_rows := lakets._transition_rows(TG_OP, v_col);
  EXECUTE format('SELECT min(t) FROM (%s) s', v_rows) INTO v_min;
  IF v_min IS NULL THEN
    RETURN NULL;
  END IF;
  FOR r IN SELECT id, bucket_interval FROM lakets._rollup_registry
            WHERE source_chronotable_id = v_id AND invalidation_enabled ORDER BY id LOOP
    IF pg_try_advisory_xact_lock_shared(74170011, r.id) THEN
      SELECT watermark INTO v_watermark FROM lakets._rollup_registry WHERE id = r.id;
      -- Appends at or above the watermark are the refresh window's job, not the log's.
      CONTINUE WHEN v_watermark IS NULL OR v_min >= v_watermark;
    ELSE
      v_watermark := 'infinity';
    END IF;
    EXECUTE format('SELECT array_agg(DISTINCT date_bin($1, t, $2)) FROM (%s) s WHERE t < $3', v_rows)
       INTO v_buckets USING r.bucket_interval, lakets._origin(), v_watermark;
    PERFORM lakets._invalidate(r.id, v_buckets);
  END LOOP;
  RETURN NULL;
END;
$$;

-- Replaces the no-op hook of part 1: the invalidation triggers follow the same targets (parent and
-- partitions) as the write-LSN triggers.
CREATE OR REPLACE FUNCTION lakets._apply_rollup_triggers(p_chronotable_id int, p_rel regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_trigger name;
BEGIN
  IF EXISTS (SELECT 1 FROM lakets._rollup_registry
              WHERE source_chronotable_id = p_chronotable_id AND invalidation_enabled) THEN
    EXECUTE format('CREATE OR REPLACE TRIGGER lakets_rollup_ins AFTER INSERT ON %s REFERENCING NEW TABLE AS lakets_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION lakets._rollup_invalidate(%s)', p_rel, p_chronotable_id);
    EXECUTE format('CREATE OR REPLACE TRIGGER lakets_rollup_upd AFTER UPDATE ON %s REFERENCING OLD TABLE AS lakets_old NEW TABLE AS lakets_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION lakets._rollup_invalidate(%s)', p_rel, p_chronotable_id);
    EXECUTE format('CREATE OR REPLACE TRIGGER lakets_rollup_del AFTER DELETE ON %s REFERENCING OLD TABLE AS lakets_old '
                   'FOR EACH STATEMENT EXECUTE FUNCTION lakets._rollup_invalidate(%s)', p_rel, p_chronotable_id);
  ELSE
    FOR v_trigger IN SELECT tgname FROM pg_trigger
                      WHERE tgrelid = p_rel AND tgname IN ('lakets_rollup_ins', 'lakets_rollup_upd', 'lakets_rollup_del') LOOP
      EXECUTE format('DROP TRIGGER %I ON %s', v_trigger, p_rel);
    END LOOP;
  END IF;
END;
$$;

