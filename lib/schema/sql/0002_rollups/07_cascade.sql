-- Refresh order: Kahn's algorithm over depends_on, dependencies first. All RollUps, or the named
-- one plus everything it depends on.
CREATE FUNCTION lakets._rollup_order(p_name text DEFAULT NULL)
RETURNS TABLE (rollup_id int, rollup_name text, refresh_order int, depends_on int[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_scope int[];
  v_done int[] := '{}';
  v_ready int[];
  v_order int := 0;
  v_id int;
BEGIN
  IF p_name IS NULL THEN
    SELECT coalesce(array_agg(id), '{}') INTO v_scope FROM lakets._rollup_registry;
  ELSE
    WITH RECURSIVE up(id) AS (
      SELECT (lakets._rollup(p_name)).id
      UNION
      SELECT d FROM up JOIN lakets._rollup_registry x ON x.id = up.id, unnest(x.depends_on) d
    )
    SELECT array_agg(DISTINCT id) INTO v_scope FROM up;
  END IF;
  LOOP
    SELECT array_agg(x.id ORDER BY x.name) INTO v_ready FROM lakets._rollup_registry x
     WHERE x.id = ANY (v_scope) AND NOT x.id = ANY (v_done)
       AND (SELECT bool_and(d = ANY (v_done) OR NOT d = ANY (v_scope)) FROM unnest(x.depends_on) d) IS NOT FALSE;
    EXIT WHEN v_ready IS NULL;
    FOREACH v_id IN ARRAY v_ready LOOP
      v_order := v_order + 1;
      rollup_id := v_id;
      SELECT x.name, x.depends_on INTO rollup_name, depends_on FROM lakets._rollup_registry x WHERE x.id = v_id;
      refresh_order := v_order;
      RETURN NEXT;
    END LOOP;
    v_done := v_done || v_ready;
  END LOOP;
  IF cardinality(v_done) < cardinality(v_scope) THEN
    RAISE EXCEPTION 'Circular dependency detected in RollUp DAG'
      USING ERRCODE = 'invalid_recursion',
            DETAIL = format('RollUps in the cycle or behind it: %s',
                            (SELECT string_agg(x.name, ', ') FROM lakets._rollup_registry x
                              WHERE x.id = ANY (v_scope) AND NOT x.id = ANY (v_done)));
  END IF;
END;
$$;

-- Each RollUp in its own subtransaction: one failing RollUp does not undo the others, and the
-- RollUps that depend on it (directly or not) are skipped, with a WARNING naming why.
CREATE FUNCTION lakets.refresh_rollup_cascade(p_name text DEFAULT NULL)
RETURNS TABLE (rollup_name text, refreshed boolean, refresh_ms float)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  o record;
  v_failed int[] := '{}';
  v_busy int[] := '{}';
  v_unfenced int[] := '{}';
  v_blocker text;
  v_t0 timestamptz;
  v_lock_timeout text := current_setting('lock_timeout');
BEGIN
  -- Cascades run one after another (waiting like DDL, lock_timeout applies). Side by side, the
  -- second would find the RollUps the first is refreshing locked and skip them, leaving the
  -- changes the first one logged for them pending until the next run.
  BEGIN
    PERFORM pg_advisory_xact_lock(74170012, 0);
  EXCEPTION WHEN lock_not_available THEN
    FOR o IN SELECT * FROM lakets._rollup_order(p_name) ORDER BY refresh_order LOOP
      RAISE NOTICE 'lakets: RollUp % skipped: another cascade is refreshing it', o.rollup_name;
      rollup_name := o.rollup_name;
      refreshed := false;
      refresh_ms := 0;
      RETURN NEXT;
    END LOOP;
    RETURN;
  END;
  -- Every lock of the RollUps in scope up front, in id order: the refresh lock, then the writers'
  -- fence. Taken one RollUp at a time, a fence would be waited for while holding the invalidation
  -- entries of the RollUps already refreshed, which a writer holding that fence may be waiting
  -- for: a deadlock. The refresh lock is waited for briefly only: the cascade before this one may
  -- still be releasing its locks (Postgres can wake us on the lock above before it has released
  -- them all); a RollUp another session is refreshing is skipped, as refresh_rollup does.
  FOR o IN SELECT s.rollup_id, x.invalidation_enabled AND x.source_chronotable_id IS NOT NULL AS fenced
             FROM lakets._rollup_order(p_name) s JOIN lakets._rollup_registry x ON x.id = s.rollup_id
            ORDER BY s.rollup_id LOOP
    PERFORM set_config('lock_timeout', '500ms', true);
    BEGIN
      PERFORM pg_advisory_xact_lock(74170010, o.rollup_id);
    EXCEPTION WHEN lock_not_available THEN
      v_busy := v_busy || o.rollup_id;
    END;
    IF o.fenced AND NOT o.rollup_id = ANY (v_busy) THEN
      PERFORM set_config('lock_timeout', '5s', true);
      BEGIN
        PERFORM pg_advisory_xact_lock(74170011, o.rollup_id);
      EXCEPTION WHEN lock_not_available THEN
        v_unfenced := v_unfenced || o.rollup_id;
      END;
    END IF;
    PERFORM set_config('lock_timeout', v_lock_timeout, true);
  END LOOP;

  FOR o IN SELECT * FROM lakets._rollup_order(p_name) ORDER BY refresh_order LOOP
    rollup_name := o.rollup_name;
    SELECT string_agg(x.name, ', ') INTO v_blocker FROM lakets._rollup_registry x
     WHERE x.id = ANY (o.depends_on) AND x.id = ANY (v_failed);
    IF v_blocker IS NOT NULL THEN
      RAISE WARNING 'lakets: RollUp % skipped: it depends on %, which failed', o.rollup_name, v_blocker;
      v_failed := v_failed || o.rollup_id;
      refreshed := false;
      refresh_ms := 0;
      RETURN NEXT;
      CONTINUE;
    END IF;
    -- Skipped like refresh_rollup skips them (same NOTICEs); not failures.
    IF o.rollup_id = ANY (v_busy) OR o.rollup_id = ANY (v_unfenced) THEN
      RAISE NOTICE 'lakets: RollUp % skipped: %', o.rollup_name,
        CASE WHEN o.rollup_id = ANY (v_busy) THEN 'another session is refreshing it'
             ELSE 'writes on its source stayed open for 5 s; next run will catch up' END;
      refreshed := false;
      refresh_ms := 0;
      RETURN NEXT;
      CONTINUE;
    END IF;
    v_t0 := clock_timestamp();
    BEGIN
      refreshed := lakets.refresh_rollup(o.rollup_name);
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'lakets: RollUp % failed: % (SQLSTATE %)', o.rollup_name, SQLERRM, SQLSTATE;
      v_failed := v_failed || o.rollup_id;
      refreshed := false;
    END;
    refresh_ms := extract(epoch FROM clock_timestamp() - v_t0) * 1000;
    RETURN NEXT;
  END LOOP;
END;
$$;

