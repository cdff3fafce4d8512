-- A window view over one source relation, named like it (so the deparsed query keeps its implicit
-- aliases). NULL when the name is taken by a window over another relation: that RollUp is then
-- refreshed without the window (still exact, only slower).
CREATE FUNCTION lakets._window_view(p_source regclass, p_time_column text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_relname name;
  v_existing oid;
BEGIN
  SELECT relname INTO v_relname FROM pg_class WHERE oid = p_source;
  SELECT c.oid INTO v_existing FROM pg_class c
   WHERE c.relnamespace = 'lakets_window'::regnamespace AND c.relname = v_relname;
  IF v_existing IS NOT NULL THEN
    IF EXISTS (SELECT 1 FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid
                WHERE w.ev_class = v_existing AND d.classid = 'pg_rewrite'::regclass
                  AND d.refclassid = 'pg_class'::regclass AND d.refobjid = p_source) THEN
      RETURN format('lakets_window.%I', v_relname);
    END IF;
    RETURN NULL;
  END IF;
  EXECUTE format('CREATE VIEW lakets_window.%I WITH (security_invoker = true) AS SELECT * FROM %s '
                 'WHERE %I >= current_setting(''lakets.window_lo'', true)::timestamptz '
                 'AND %I < current_setting(''lakets.window_hi'', true)::timestamptz',
                 v_relname, p_source, p_time_column, p_time_column);
  EXECUTE format('GRANT SELECT ON lakets_window.%I TO PUBLIC', v_relname);
  RETURN format('lakets_window.%I', v_relname);
END;
$$;

-- The windowed form of a RollUp's query (see the header); when that does not plan, the query deparsed
-- (schema-qualified) without the window.
-- Not pinned to a search_path: the query is resolved as its author wrote it, in their session.
CREATE FUNCTION lakets._build_refresh_query(p_rollup_id int) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
  r lakets._rollup_registry;
  v_view regclass;
  v_text text;
  v_src record;
  v_window text;
  v_pattern text;
  v_time text;
  v_plain text;
  v_path text := current_setting('search_path');
BEGIN
  SELECT * INTO r FROM lakets._rollup_registry WHERE id = p_rollup_id;
  EXECUTE format('CREATE TEMP VIEW %I AS %s', 'lakets_def_' || p_rollup_id, r.query_text);
  v_view := format('pg_temp.%I', 'lakets_def_' || p_rollup_id)::regclass;
  -- With only pg_catalog on the path, the deparser schema-qualifies every relation and function,
  -- so the text runs the same for any role and path (the job role's included).
  PERFORM set_config('search_path', 'pg_catalog', true);
  v_text := pg_get_viewdef(v_view);
  PERFORM set_config('search_path', v_path, true);
  -- The fallback when the windowed form does not plan: query_text itself cannot be, since refreshes
  -- run with a pinned search_path and would not resolve the author's unqualified names.
  v_plain := rtrim(rtrim(v_text), ';');
  FOR v_src IN
    SELECT DISTINCT d.refobjid::regclass AS rel, n.nspname, c.relname
      FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid
      JOIN pg_class c ON c.oid = d.refobjid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE w.ev_class = v_view AND d.classid = 'pg_rewrite'::regclass
       AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v_view
  LOOP
    v_time := NULL;
    SELECT ct.time_column INTO v_time FROM lakets._chronotable_registry ct
     WHERE ct.id = r.source_chronotable_id AND ct.schema_name = v_src.nspname AND ct.table_name = v_src.relname;
    IF v_time IS NULL THEN
      SELECT d.bucket_column INTO v_time FROM lakets._rollup_registry d
       WHERE d.id = ANY (r.depends_on) AND d.rollup_table = format('%I.%I', v_src.nspname, v_src.relname);
    END IF;
    CONTINUE WHEN v_time IS NULL;
    v_window := lakets._window_view(v_src.rel, v_time);
    CONTINUE WHEN v_window IS NULL;
    v_pattern := '(?<![A-Za-z0-9_$".])' || regexp_replace(format('%I.%I', v_src.nspname, v_src.relname), '([^A-Za-z0-9_])', '\\\1', 'g')
                 || '(?![A-Za-z0-9_$"])';
    v_text := regexp_replace(v_text, v_pattern, v_window, 'g');
  END LOOP;
  EXECUTE format('DROP VIEW %s', v_view);
  v_text := rtrim(rtrim(v_text), ';');
  -- It must still plan and produce the same columns.
  BEGIN
    PERFORM set_config('lakets.window_lo', 'infinity', true);
    PERFORM set_config('lakets.window_hi', 'infinity', true);
    EXECUTE format('SELECT * FROM (%s) q LIMIT 0', v_text);
  EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'lakets: RollUp % will refresh with its query as written, without the time window (%)', r.name, SQLERRM;
    RETURN v_plain;
  END;
  RETURN v_text;
END;
$$;

