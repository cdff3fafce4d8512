-- The time values a statement wrote or removed, as a query over its transition tables (named
-- lakets_new / lakets_old by every LakeTS trigger): shared by the write-LSN and RollUp triggers.
CREATE FUNCTION lakets._transition_rows(p_op text, p_time_column text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN CASE p_op
  WHEN 'INSERT' THEN format('SELECT %I AS t FROM lakets_new', p_time_column)
  WHEN 'DELETE' THEN format('SELECT %I AS t FROM lakets_old', p_time_column)
  ELSE format('SELECT %1$I AS t FROM lakets_new UNION ALL SELECT %1$I FROM lakets_old', p_time_column)
END;

-- Writes waiting for their commit-time stamp: one row per chunk per writing transaction.
CREATE TABLE lakets._pending_write (
  chunk_id int NOT NULL,
  xid      xid8 NOT NULL DEFAULT pg_current_xact_id(),
  PRIMARY KEY (chunk_id, xid)
);

-- Deferred to just before commit: stamps the chunk again, so a transaction that stayed open while
-- Lakehouse Sync passed its statement-time stamp is not taken as durable once it commits (the
-- statement-time stamp alone, as in LakeTS, would be). Tiering and Retention wait for the
-- metadata row or the partition lock such a writer holds, and then see this stamp.
CREATE FUNCTION lakets._stamp_at_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  UPDATE lakets._chunk_metadata
     SET last_write_lsn = greatest(coalesce(last_write_lsn, '0/0'::pg_lsn), pg_current_wal_insert_lsn())
   WHERE id = NEW.chunk_id AND status <> 'dropped';
  DELETE FROM lakets._pending_write WHERE chunk_id = NEW.chunk_id AND xid = NEW.xid;
  RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER lakets_stamp_at_commit AFTER INSERT ON lakets._pending_write
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION lakets._stamp_at_commit();

-- Statement-level trigger: stamps last_write_lsn on each chunk the statement touched, and queues
-- the commit-time stamp above (once per chunk and transaction). The LSN is read when the metadata
-- row is locked (greatest() keeps it monotonic under concurrent writers), and is the WAL insert
-- position, which is past every record this statement wrote.
CREATE FUNCTION lakets._stamp_write_lsn() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_id int := TG_ARGV[0]::int;
  v_col text;
  v_interval interval;
  v_sql text;
  v_min timestamptz;
  v_max timestamptz;
  v_starts timestamptz[];
BEGIN
  SELECT time_column, chunk_interval INTO v_col, v_interval
    FROM lakets._chronotable_registry WHERE id = v_id;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  v_sql := lakets._transition_rows(TG_OP, v_col);
  -- Most statements write into one chunk: min and max settle that in one cheap pass; only a
  -- statement spanning chunks pays for the distinct buckets.
  EXECUTE format('SELECT min(t), max(t) FROM (%s) s', v_sql) INTO v_min, v_max;
  IF v_min IS NULL THEN
    RETURN NULL;
  ELSIF date_bin(v_interval, v_min, lakets._origin()) = date_bin(v_interval, v_max, lakets._origin()) THEN
    v_starts := ARRAY[date_bin(v_interval, v_min, lakets._origin())];
  ELSE
    EXECUTE format('SELECT array_agg(DISTINCT date_bin($1, t, $2)) FROM (%s) s', v_sql)
       INTO v_starts USING v_interval, lakets._origin();
  END IF;
  IF v_starts IS NOT NULL THEN
    WITH stamped AS (
      UPDATE lakets._chunk_metadata
         SET last_write_lsn = greatest(coalesce(last_write_lsn, '0/0'::pg_lsn), pg_current_wal_insert_lsn()),
             last_modified_at = now()
       WHERE chronotable_id = v_id AND range_start = ANY (v_starts) AND status <> 'dropped'
      RETURNING id
    )
    INSERT INTO lakets._pending_write (chunk_id) SELECT id FROM stamped ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END;
$$;

