CREATE FUNCTION lakets.drop_rollup(p_name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r lakets._rollup_registry := lakets._rollup(p_name);
  v_dependents text;
  v_rel regclass;
  v_view record;
BEGIN
  SELECT string_agg(quote_literal(x.name), ', ') INTO v_dependents FROM lakets._rollup_registry x WHERE r.id = ANY (x.depends_on);
  IF v_dependents IS NOT NULL THEN
    RAISE EXCEPTION 'lakets: RollUps % depend on %', v_dependents, quote_literal(r.name)
      USING ERRCODE = 'dependent_objects_still_exist', HINT = 'drop them first';
  END IF;
  v_rel := to_regclass(r.rollup_table);
  IF v_rel IS NOT NULL THEN
    -- Its window view (used by RollUps built on it, all gone by now) goes first.
    FOR v_view IN SELECT DISTINCT w.ev_class::regclass AS v FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid
                   JOIN pg_class c ON c.oid = w.ev_class
                  WHERE d.refobjid = v_rel AND d.classid = 'pg_rewrite'::regclass
                    AND c.relnamespace = 'lakets_window'::regnamespace LOOP
      EXECUTE format('DROP VIEW %s', v_view.v);
    END LOOP;
    EXECUTE format('DROP TABLE %s', v_rel);
  END IF;
  DELETE FROM lakets._rollup_registry WHERE id = r.id;
  -- The window view over the source ChronoTable goes with the last RollUp that reads it: left
  -- behind, it would make drop_chronotable fail (the view depends on the table).
  IF r.source_chronotable_id IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM lakets._rollup_registry x WHERE x.source_chronotable_id = r.source_chronotable_id) THEN
    SELECT to_regclass(format('%I.%I', c.schema_name, c.table_name)) INTO v_rel
      FROM lakets._chronotable_registry c WHERE c.id = r.source_chronotable_id;
    FOR v_view IN SELECT DISTINCT w.ev_class::regclass AS v FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid
                   JOIN pg_class c ON c.oid = w.ev_class
                  WHERE d.refobjid = v_rel AND d.classid = 'pg_rewrite'::regclass
                    AND c.relnamespace = 'lakets_window'::regnamespace LOOP
      EXECUTE format('DROP VIEW %s', v_view.v);
    END LOOP;
  END IF;
  IF r.source_chronotable_id IS NOT NULL AND r.invalidation_enabled THEN
    PERFORM lakets._apply_triggers(r.source_chronotable_id);
  END IF;
END;
$$;

