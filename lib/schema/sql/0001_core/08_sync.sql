-- ---------------------------------------------------------------------------------------------
-- Sync (the shadow table that Lakehouse Sync streams to Unity Catalog)
-- ---------------------------------------------------------------------------------------------

-- Row trigger on the ChronoTable (cloned to every partition by Postgres): mirrors each write into
-- the unpartitioned shadow. UPDATE and DELETE touch one matching shadow row each (the shadow has
-- no key; rows are matched on all columns, narrowed by the time column's index).
CREATE FUNCTION lakets._mirror_to_shadow() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_shadow text := TG_ARGV[0];
  v_time text := TG_ARGV[1];
  v_cols text;
  v_match text;
BEGIN
  IF TG_OP = 'INSERT' THEN
    EXECUTE format('INSERT INTO lakets_cdf.%I SELECT ($1).*', v_shadow) USING NEW;
    RETURN NULL;
  END IF;
  v_match := format('SELECT ctid FROM lakets_cdf.%1$I x WHERE x.%2$I IS NOT DISTINCT FROM ($1).%2$I '
                    'AND ROW(x.*) IS NOT DISTINCT FROM ROW(($1).*) LIMIT 1', v_shadow, v_time);
  IF TG_OP = 'DELETE' THEN
    EXECUTE format('DELETE FROM lakets_cdf.%I WHERE ctid = (%s)', v_shadow, v_match) USING OLD;
  ELSE
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO v_cols
      FROM pg_attribute WHERE attrelid = TG_RELID AND attnum > 0 AND NOT attisdropped;
    EXECUTE format('UPDATE lakets_cdf.%I SET (%s) = (SELECT ($2).*) WHERE ctid = (%s)', v_shadow, v_cols, v_match)
      USING OLD, NEW;
  END IF;
  RETURN NULL;
END;
$$;

CREATE FUNCTION lakets.enable_sync(p_table_name text, p_schema_name text DEFAULT 'public') RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r lakets._chronotable_registry := lakets._chronotable(p_table_name, p_schema_name);
  v_shadow text;
  v_parent regclass := format('%I.%I', r.schema_name, r.table_name)::regclass;
  v_tracking boolean := lakets._write_tracking_enabled(r.id);
BEGIN
  IF r.sync_enabled THEN
    RAISE NOTICE 'lakets: sync is already enabled for % (shadow lakets_cdf.%)', v_parent, quote_ident(r.shadow_table_name);
    RETURN;
  END IF;
  v_shadow := '_shadow_' || CASE WHEN r.schema_name = 'public' THEN '' ELSE r.schema_name || '_' END || r.table_name;
  IF octet_length(v_shadow) > 63 THEN
    RAISE EXCEPTION 'lakets: shadow table name "%" would exceed 63 bytes', v_shadow
      USING ERRCODE = 'name_too_long', HINT = 'use a shorter table name';
  END IF;
  IF EXISTS (SELECT 1 FROM lakets._chronotable_registry WHERE shadow_table_name = v_shadow AND id <> r.id) THEN
    RAISE EXCEPTION 'lakets: shadow name lakets_cdf.% is taken by another ChronoTable', quote_ident(v_shadow)
      USING ERRCODE = 'duplicate_table';
  END IF;
  -- Writers wait from here until the mirror trigger exists (the lock covers every partition too):
  -- a write committed between the copy below and CREATE TRIGGER would never reach the shadow, yet
  -- its chunk's stamp would later be "proven" and the chunk dropped.
  EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', v_parent);
  EXECUTE format('CREATE TABLE IF NOT EXISTS lakets_cdf.%I (LIKE %s)', v_shadow, v_parent);
  EXECUTE format('ALTER TABLE lakets_cdf.%I REPLICA IDENTITY FULL', v_shadow);
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON lakets_cdf.%I (%I)', left(v_shadow, 55) || '_time', v_shadow, r.time_column);
  EXECUTE format('TRUNCATE lakets_cdf.%I', v_shadow);
  EXECUTE format('INSERT INTO lakets_cdf.%I SELECT * FROM %s', v_shadow, v_parent);
  EXECUTE format('CREATE OR REPLACE TRIGGER lakets_mirror AFTER INSERT OR UPDATE OR DELETE ON %s '
                 'FOR EACH ROW EXECUTE FUNCTION lakets._mirror_to_shadow(%L, %L)', v_parent, v_shadow, r.time_column);
  UPDATE lakets._chronotable_registry SET shadow_table_name = v_shadow, sync_enabled = true WHERE id = r.id;
  IF NOT v_tracking THEN
    PERFORM lakets._backfill_write_lsn(r.id);
    PERFORM lakets._apply_triggers(r.id);
  END IF;
END;
$$;

CREATE FUNCTION lakets.disable_sync(p_table_name text, p_schema_name text DEFAULT 'public') RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r lakets._chronotable_registry := lakets._chronotable(p_table_name, p_schema_name);
BEGIN
  IF NOT r.sync_enabled THEN
    RAISE NOTICE 'lakets: sync is not enabled for %.%', quote_ident(r.schema_name), quote_ident(r.table_name);
    RETURN;
  END IF;
  EXECUTE format('DROP TRIGGER IF EXISTS lakets_mirror ON %I.%I', r.schema_name, r.table_name);
  EXECUTE format('DROP TABLE IF EXISTS lakets_cdf.%I', r.shadow_table_name);
  UPDATE lakets._chronotable_registry SET shadow_table_name = NULL, sync_enabled = false WHERE id = r.id;
  IF NOT lakets._write_tracking_enabled(r.id) THEN
    PERFORM lakets._apply_triggers(r.id);
  END IF;
END;
$$;

