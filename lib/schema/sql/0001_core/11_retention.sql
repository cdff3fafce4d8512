-- ---------------------------------------------------------------------------------------------
-- Retention
-- ---------------------------------------------------------------------------------------------

-- Drops one chunk's partition with definer rights. Locks the parent then the partition (the order
-- DROP itself uses, so concurrent writers cannot deadlock us), and only then re-reads the chunk's
-- last_write_lsn: a write that was in flight when the gate was checked is now committed and
-- stamped, so the gate is decided on final data. p_gated false: forced, or a table without the gate.
CREATE FUNCTION lakets._drop_chunk(p_chunk_id int, p_gated boolean, p_committed_lsn pg_lsn) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  c lakets._chunk_metadata;
  r lakets._chronotable_registry;
  v_rel regclass;
BEGIN
  SELECT * INTO c FROM lakets._chunk_metadata WHERE id = p_chunk_id;
  IF NOT FOUND OR c.status = 'dropped' THEN
    RETURN false;
  END IF;
  SELECT * INTO r FROM lakets._chronotable_registry WHERE id = c.chronotable_id;
  v_rel := to_regclass(format('%I.%I', r.schema_name, substr(c.chunk_name, length(r.schema_name) + 2)));
  IF v_rel IS NOT NULL THEN
    BEGIN
      EXECUTE format('LOCK TABLE %I.%I, %s IN ACCESS EXCLUSIVE MODE', r.schema_name, r.table_name, v_rel);
    EXCEPTION WHEN undefined_table THEN
      -- Another session dropped it while we waited for the lock: its row says so below.
      v_rel := NULL;
    END;
  END IF;
  SELECT * INTO c FROM lakets._chunk_metadata WHERE id = p_chunk_id FOR UPDATE;
  IF c.status = 'dropped' THEN
    RETURN false;
  END IF;
  IF p_gated AND lakets._not_durable_reason(p_committed_lsn, NULL, c.last_write_lsn) IS NOT NULL THEN
    RAISE NOTICE 'lakets: retention deferred chunk %: %', c.chunk_name,
      lakets._not_durable_reason(p_committed_lsn, NULL, c.last_write_lsn);
    RETURN false;
  END IF;
  IF v_rel IS NOT NULL THEN
    EXECUTE format('DROP TABLE %s', v_rel);
  END IF;
  UPDATE lakets._chunk_metadata SET status = 'dropped', last_modified_at = now() WHERE id = c.id;
  RETURN true;
END;
$$;

CREATE FUNCTION lakets.execute_retention(
  p_table_name text, p_schema_name text DEFAULT 'public', p_force boolean DEFAULT false
) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
  r lakets._chronotable_registry := lakets._chronotable(p_table_name, p_schema_name);
  v_drop_after interval;
  v_tiered_kind boolean;
  v_gated boolean;
  v_committed pg_lsn;
  v_probe_reason text;
  v_reason text;
  v_dropped int := 0;
  c lakets._chunk_metadata;
BEGIN
  -- With both a retention and a tiered_retention row, the longest drop_after wins and the gate
  -- applies: the conservative reading of two policies.
  SELECT max((p.config ->> 'drop_after')::interval), bool_or(p.policy_type = 'tiered_retention')
    INTO v_drop_after, v_tiered_kind
    FROM lakets._policy_registry p
   WHERE p.chronotable_id = r.id AND p.enabled AND p.policy_type IN ('retention', 'tiered_retention');
  IF v_drop_after IS NULL THEN
    RETURN 0;
  END IF;
  v_gated := (r.sync_enabled OR v_tiered_kind) AND NOT coalesce(p_force, false);
  IF v_gated THEN
    SELECT p.committed_lsn, p.reason INTO v_committed, v_probe_reason FROM lakets._cdf_probe(r.shadow_table_name) p;
  END IF;
  FOR c IN
    SELECT * FROM lakets._chunk_metadata m
     WHERE m.chronotable_id = r.id AND m.status IN ('active', 'tiered') AND m.range_end <= now() - v_drop_after
     ORDER BY m.range_start
  LOOP
    IF v_gated THEN
      v_reason := lakets._not_durable_reason(v_committed, v_probe_reason, c.last_write_lsn);
      IF v_reason IS NOT NULL THEN
        RAISE NOTICE 'lakets: retention deferred chunk %: %', c.chunk_name, v_reason;
        CONTINUE;
      END IF;
    END IF;
    BEGIN
      IF lakets._drop_chunk(c.id, v_gated, v_committed) THEN
        v_dropped := v_dropped + 1;
      END IF;
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'lakets: retention could not drop chunk %: % (SQLSTATE %)', c.chunk_name, SQLERRM, SQLSTATE;
    END;
  END LOOP;
  UPDATE lakets._policy_registry SET last_run_at = now()
   WHERE chronotable_id = r.id AND enabled AND policy_type IN ('retention', 'tiered_retention');
  RETURN v_dropped;
END;
$$;

