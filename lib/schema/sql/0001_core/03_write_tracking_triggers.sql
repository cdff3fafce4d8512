-- Writes need LSN tracking when the table is synced or has a tiering-kind policy.
CREATE FUNCTION lakets._write_tracking_enabled(p_chronotable_id int) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT r.sync_enabled FROM lakets._chronotable_registry r WHERE r.id = p_chronotable_id)
    OR EXISTS (SELECT 1 FROM lakets._policy_registry p
                WHERE p.chronotable_id = p_chronotable_id
                  AND p.policy_type IN ('tiering', 'tiered_retention'));

-- Relations that carry LakeTS statement triggers: the parent and each live partition (a write
-- straight into a partition does not fire the parent's statement triggers).
CREATE FUNCTION lakets._trigger_targets(p_chronotable_id int) RETURNS SETOF regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT to_regclass(format('%I.%I', r.schema_name, r.table_name))
    FROM lakets._chronotable_registry r WHERE r.id = p_chronotable_id
  UNION ALL
  SELECT to_regclass(format('%I.%I', r.schema_name, substr(m.chunk_name, length(r.schema_name) + 2)))
    FROM lakets._chunk_metadata m JOIN lakets._chronotable_registry r ON r.id = m.chronotable_id
   WHERE m.chronotable_id = p_chronotable_id AND m.status <> 'dropped'
$$;

-- Extension point: the RollUps part replaces this to add its invalidation triggers.
CREATE FUNCTION lakets._apply_rollup_triggers(p_chronotable_id int, p_rel regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$ BEGIN NULL; END; $$;

-- (Re)installs or removes the write-LSN triggers on the given relations (default: all targets).
CREATE FUNCTION lakets._apply_triggers(p_chronotable_id int, p_rels regclass[] DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_track boolean := lakets._write_tracking_enabled(p_chronotable_id);
  v_rel regclass;
  v_trigger name;
BEGIN
  FOR v_rel IN
    SELECT t FROM unnest(coalesce(p_rels, ARRAY(SELECT lakets._trigger_targets(p_chronotable_id)))) AS t
     WHERE t IS NOT NULL
       -- Definer rights: only this ChronoTable's own relations, whatever a caller passes (else any
       -- EXECUTE holder could strip a synced table's tracking, or put triggers on foreign tables).
       AND t IN (SELECT lakets._trigger_targets(p_chronotable_id))
  LOOP
    IF v_track THEN
      EXECUTE format('CREATE OR REPLACE TRIGGER lakets_lsn_ins AFTER INSERT ON %s REFERENCING NEW TABLE AS lakets_new '
                     'FOR EACH STATEMENT EXECUTE FUNCTION lakets._stamp_write_lsn(%s)', v_rel, p_chronotable_id);
      EXECUTE format('CREATE OR REPLACE TRIGGER lakets_lsn_upd AFTER UPDATE ON %s REFERENCING OLD TABLE AS lakets_old NEW TABLE AS lakets_new '
                     'FOR EACH STATEMENT EXECUTE FUNCTION lakets._stamp_write_lsn(%s)', v_rel, p_chronotable_id);
      EXECUTE format('CREATE OR REPLACE TRIGGER lakets_lsn_del AFTER DELETE ON %s REFERENCING OLD TABLE AS lakets_old '
                     'FOR EACH STATEMENT EXECUTE FUNCTION lakets._stamp_write_lsn(%s)', v_rel, p_chronotable_id);
    ELSE
      -- Only those present: DROP ... IF EXISTS would NOTICE into every job's report.
      FOR v_trigger IN SELECT tgname FROM pg_trigger
                        WHERE tgrelid = v_rel AND tgname IN ('lakets_lsn_ins', 'lakets_lsn_upd', 'lakets_lsn_del') LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', v_trigger, v_rel);
      END LOOP;
    END IF;
    PERFORM lakets._apply_rollup_triggers(p_chronotable_id, v_rel);
  END LOOP;
END;
$$;

-- Marks every live chunk as written "now": used when tracking starts, since writes made while it
-- was off left no stamp. Conservative: a stamp is only ever raised.
CREATE FUNCTION lakets._backfill_write_lsn(p_chronotable_id int) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  UPDATE lakets._chunk_metadata
     SET last_write_lsn = greatest(coalesce(last_write_lsn, '0/0'::pg_lsn), pg_current_wal_insert_lsn()),
         last_modified_at = now()
   WHERE chronotable_id = p_chronotable_id AND status <> 'dropped';
$$;

