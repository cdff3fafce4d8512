-- ---------------------------------------------------------------------------------------------
-- The durability proof
-- ---------------------------------------------------------------------------------------------

-- What Lakehouse Sync reports for a shadow, read with the CALLER's rights, and why nothing can be
-- proven when committed_lsn is NULL. Never raises: anything unexpected is "not durable".
CREATE FUNCTION lakets._cdf_probe(p_shadow_table text, OUT committed_lsn pg_lsn, OUT reason text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_schema text := 'lakets_cdf';
  v_name text := p_shadow_table;
  v_shadow oid;
  v_table oid;
  v_status text;
BEGIN
  IF p_shadow_table IS NULL THEN
    reason := 'sync is not enabled (no shadow table)';
    RETURN;
  END IF;
  -- The registry stores the bare name, which may itself contain a dot (table "my.table"): look it up
  -- in lakets_cdf first, and read "schema.name" only when no such shadow exists.
  SELECT c.oid INTO v_shadow FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = v_schema AND c.relname = v_name;
  IF v_shadow IS NULL AND position('.' IN p_shadow_table) > 0 THEN
    v_schema := split_part(p_shadow_table, '.', 1);
    v_name := substr(p_shadow_table, length(v_schema) + 2);
    SELECT c.oid INTO v_shadow FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = v_schema AND c.relname = v_name;
  END IF;
  IF v_shadow IS NULL THEN
    reason := format('shadow table %I.%I does not exist', v_schema, v_name);
    RETURN;
  END IF;
  SELECT c.oid INTO v_table FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'wal2delta' AND c.relname = 'tables';
  IF v_table IS NULL THEN
    reason := 'wal2delta.tables does not exist (Lakehouse Sync is not set up on this database)';
    RETURN;
  END IF;
  IF NOT has_schema_privilege('wal2delta', 'USAGE') THEN
    reason := format('role %I lacks USAGE on schema wal2delta', current_user);
    RETURN;
  END IF;
  IF NOT has_table_privilege(v_table, 'SELECT') THEN
    reason := format('role %I lacks SELECT on wal2delta.tables', current_user);
    RETURN;
  END IF;
  BEGIN
    EXECUTE 'SELECT t.status, t.committed_lsn FROM wal2delta.tables t WHERE t.table_oid = $1'
       INTO v_status, committed_lsn USING v_shadow;
  EXCEPTION WHEN OTHERS THEN
    committed_lsn := NULL;
    reason := format('wal2delta.tables could not be read: %s', SQLERRM);
    RETURN;
  END;
  IF v_status IS NULL THEN
    committed_lsn := NULL;
    reason := format('shadow %I.%I has no row in wal2delta.tables (Lakehouse Sync has not picked it up)', v_schema, v_name);
  ELSIF v_status <> 'STREAMING' THEN
    committed_lsn := NULL;
    reason := format('shadow %I.%I is %s, not STREAMING', v_schema, v_name, v_status);
  ELSIF committed_lsn IS NULL THEN
    reason := format('shadow %I.%I is STREAMING but has no committed_lsn yet', v_schema, v_name);
  END IF;
END;
$$;

CREATE FUNCTION lakets._cdf_committed_lsn(p_shadow_table text) RETURNS pg_lsn
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN (lakets._cdf_probe(p_shadow_table)).committed_lsn;

-- Why a chunk is or is not proven durable (NULL = durable).
CREATE FUNCTION lakets._not_durable_reason(p_committed pg_lsn, p_probe_reason text, p_last_write pg_lsn) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN CASE
  WHEN p_committed IS NULL THEN coalesce(p_probe_reason, 'committed_lsn is unknown')
  WHEN p_last_write IS NULL THEN 'the chunk has no last_write_lsn'
  WHEN p_committed < p_last_write THEN
    format('committed_lsn %s is behind the chunk''s last_write_lsn %s (Lakehouse Sync has not caught up)', p_committed, p_last_write)
END;

