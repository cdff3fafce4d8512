-- ---------------------------------------------------------------------------------------------
-- ChronoTables
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION lakets.create_chronotable(
  p_table_name text,
  p_time_column text,
  p_chunk_interval interval DEFAULT interval '7 days',
  p_schema_name text DEFAULT 'public',
  p_if_not_exists boolean DEFAULT false
) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
  v_schema text := coalesce(p_schema_name, 'public');
  v_id int;
  v_rel regclass;
  v_kind "char";
  v_type regtype;
  v_attnum int2;
  v_tmp text;
  v_owner regrole;
  v_min timestamptz;
  v_max timestamptz;
  v_cols text;
  v_seq text;
  v_col text;
  v_acl record;
  v_max_id bigint;
BEGIN
  SELECT id INTO v_id FROM lakets._chronotable_registry WHERE schema_name = v_schema AND table_name = p_table_name;
  IF FOUND THEN
    IF p_if_not_exists THEN
      RAISE NOTICE 'lakets: %.% is already a ChronoTable (id %), nothing to do', quote_ident(v_schema), quote_ident(p_table_name), v_id;
      RETURN v_id;
    END IF;
    RAISE EXCEPTION 'lakets: %.% is already a ChronoTable (id %)', quote_ident(v_schema), quote_ident(p_table_name), v_id
      USING ERRCODE = 'duplicate_object', HINT = 'pass p_if_not_exists => true to make this a no-op';
  END IF;
  IF p_chunk_interval IS NULL OR p_chunk_interval <= interval '0'
     OR extract(month FROM p_chunk_interval) <> 0 OR extract(year FROM p_chunk_interval) <> 0 THEN
    RAISE EXCEPTION 'lakets: chunk interval % is not usable', p_chunk_interval
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'use a positive interval in days, hours or minutes (months vary in length and cannot be bucketed)';
  END IF;

  v_rel := to_regclass(format('%I.%I', v_schema, p_table_name));
  IF v_rel IS NULL THEN
    RAISE EXCEPTION 'lakets: table %.% does not exist', quote_ident(v_schema), quote_ident(p_table_name)
      USING ERRCODE = 'undefined_table';
  END IF;
  SELECT relkind, relowner::regrole INTO v_kind, v_owner FROM pg_class WHERE oid = v_rel;
  SELECT a.atttypid::regtype, a.attnum INTO v_type, v_attnum FROM pg_attribute a
   WHERE a.attrelid = v_rel AND a.attname = p_time_column AND a.attnum > 0 AND NOT a.attisdropped;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'lakets: table % has no column %', v_rel, quote_ident(p_time_column)
      USING ERRCODE = 'undefined_column';
  END IF;
  IF v_type <> 'timestamptz'::regtype THEN
    RAISE EXCEPTION 'lakets: time column %.% is %, not timestamptz', v_rel, quote_ident(p_time_column), v_type
      USING ERRCODE = 'datatype_mismatch',
            HINT = format('ALTER TABLE %s ALTER COLUMN %I TYPE timestamptz first', v_rel, p_time_column);
  END IF;

  IF v_kind = 'p' THEN
    -- Already partitioned: adopt it when it is RANGE on exactly the time column and still empty.
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table
                    WHERE partrelid = v_rel AND partstrat = 'r' AND partnatts = 1 AND partattrs[0] = v_attnum)
       OR EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = v_rel) THEN
      RAISE EXCEPTION 'lakets: % is already partitioned in another way (or has partitions)', v_rel
        USING ERRCODE = 'feature_not_supported',
              HINT = 'convert a plain table, or an empty table partitioned by RANGE on the time column';
    END IF;
  ELSIF v_kind <> 'r' THEN
    RAISE EXCEPTION 'lakets: % is not a table', v_rel USING ERRCODE = 'wrong_object_type';
  ELSE
    -- Convert a plain table: rename it aside, create the partitioned table in its place with the
    -- same columns, defaults, constraints, indexes and grants, move the rows, drop the old one.
    -- All in this one transaction: an error leaves the original table untouched.
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', v_rel);
    EXECUTE format('SELECT min(%1$I), max(%1$I), count(*) FILTER (WHERE %1$I IS NULL) FROM %2$s', p_time_column, v_rel)
       INTO v_min, v_max, v_max_id;
    IF v_max_id > 0 THEN
      RAISE EXCEPTION 'lakets: % has % rows with a NULL %', v_rel, v_max_id, quote_ident(p_time_column)
        USING ERRCODE = 'not_null_violation', HINT = 'every row of a ChronoTable needs a time; fix or delete those rows';
    END IF;
    v_tmp := left(p_table_name, 40) || '_lakets_' || substr(md5(random()::text), 1, 8);
    EXECUTE format('ALTER TABLE %s RENAME TO %I', v_rel, v_tmp);
    BEGIN
      EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED '
                     'INCLUDING IDENTITY INCLUDING INDEXES INCLUDING STORAGE INCLUDING COMMENTS INCLUDING STATISTICS '
                     'INCLUDING COMPRESSION) PARTITION BY RANGE (%I)',
                     v_schema, p_table_name, v_schema, v_tmp, p_time_column);
    EXCEPTION WHEN invalid_table_definition OR feature_not_supported THEN
      -- Named as the user knows it: v_rel now prints as the temporary name.
      RAISE EXCEPTION 'lakets: %.% cannot become a ChronoTable: %', quote_ident(v_schema), quote_ident(p_table_name), SQLERRM
        USING ERRCODE = SQLSTATE,
              HINT = format('a primary key or unique constraint must include the time column %I', p_time_column);
    END;
    IF v_owner::text <> current_user THEN
      EXECUTE format('ALTER TABLE %I.%I OWNER TO %s', v_schema, p_table_name, v_owner);
    END IF;
    FOR v_acl IN
      SELECT a.privilege_type, a.grantee, a.is_grantable
        FROM pg_class c, aclexplode(c.relacl) a
       WHERE c.oid = format('%I.%I', v_schema, v_tmp)::regclass AND a.grantee <> c.relowner
    LOOP
      EXECUTE format('GRANT %s ON %I.%I TO %s%s', v_acl.privilege_type, v_schema, p_table_name,
                     -- regrole's text form is already quoted where needed ("Writer-Role").
                     CASE WHEN v_acl.grantee = 0 THEN 'PUBLIC' ELSE v_acl.grantee::regrole::text END,
                     CASE WHEN v_acl.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    v_rel := format('%I.%I', v_schema, p_table_name)::regclass;
  END IF;

  -- A ChronoTable is read by time: make sure some index leads with the time column.
  IF NOT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = v_rel AND indkey[0] = (
                   SELECT attnum FROM pg_attribute WHERE attrelid = v_rel AND attname = p_time_column)) THEN
    EXECUTE format('CREATE INDEX ON %s (%I)', v_rel, p_time_column);
  END IF;

  INSERT INTO lakets._chronotable_registry (schema_name, table_name, time_column, chunk_interval)
  VALUES (v_schema, p_table_name, p_time_column, p_chunk_interval)
  RETURNING id INTO v_id;

  IF v_min IS NOT NULL THEN
    PERFORM lakets._create_partitions(v_id, p_range_start => v_min, p_range_end => v_max + interval '1 microsecond');
  END IF;
  PERFORM lakets._create_partitions(v_id);

  IF v_tmp IS NOT NULL THEN
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO v_cols
      FROM pg_attribute WHERE attrelid = format('%I.%I', v_schema, v_tmp)::regclass
       AND attnum > 0 AND NOT attisdropped AND attgenerated = '';
    EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %I.%I', v_rel, v_cols, v_cols, v_schema, v_tmp);
    -- Sequences behind serial columns move to the new table; identity sequences continue past the rows.
    FOR v_col IN SELECT attname FROM pg_attribute
                  WHERE attrelid = v_rel AND attnum > 0 AND NOT attisdropped LOOP
      v_seq := pg_get_serial_sequence(format('%I.%I', v_schema, v_tmp), v_col);
      IF v_seq IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = v_rel AND attname = v_col AND attidentity <> '') THEN
        EXECUTE format('ALTER SEQUENCE %s OWNED BY %s.%I', v_seq, v_rel, v_col);
      END IF;
      v_seq := pg_get_serial_sequence(v_rel::text, v_col);
      IF v_seq IS NOT NULL AND EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = v_rel AND attname = v_col AND attidentity <> '') THEN
        EXECUTE format('SELECT max(%I)::bigint FROM %s', v_col, v_rel) INTO v_max_id;
        IF v_max_id IS NOT NULL THEN
          PERFORM setval(v_seq, v_max_id);
        END IF;
      END IF;
    END LOOP;
    BEGIN
      EXECUTE format('DROP TABLE %I.%I', v_schema, v_tmp);
    EXCEPTION WHEN dependent_objects_still_exist THEN
      RAISE EXCEPTION 'lakets: %.% cannot become a ChronoTable: other objects depend on it (%)',
        quote_ident(v_schema), quote_ident(p_table_name), SQLERRM
        USING ERRCODE = 'dependent_objects_still_exist',
              HINT = 'drop the views or foreign keys that use the table, convert it, then recreate them';
    END;
  END IF;
  RETURN v_id;
END;
$$;

-- Drops the ChronoTable itself, its partitions, its shadow and its LakeTS bookkeeping.
CREATE FUNCTION lakets.drop_chronotable(p_table_name text, p_schema_name text DEFAULT 'public') RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r lakets._chronotable_registry := lakets._chronotable(p_table_name, p_schema_name);
  v_dependents text;
BEGIN
  IF to_regclass('lakets._rollup_registry') IS NOT NULL THEN
    EXECUTE 'SELECT string_agg(name, '', '') FROM lakets._rollup_registry WHERE source_chronotable_id = $1'
       INTO v_dependents USING r.id;
    IF v_dependents IS NOT NULL THEN
      RAISE EXCEPTION 'lakets: RollUps read from %.%: %', quote_ident(r.schema_name), quote_ident(r.table_name), v_dependents
        USING ERRCODE = 'dependent_objects_still_exist', HINT = 'drop them first with lakets.drop_rollup(name)';
    END IF;
  END IF;
  IF r.shadow_table_name IS NOT NULL THEN
    EXECUTE format('DROP TABLE IF EXISTS lakets_cdf.%I', r.shadow_table_name);
  END IF;
  EXECUTE format('DROP TABLE IF EXISTS %I.%I', r.schema_name, r.table_name);
  DELETE FROM lakets._chronotable_registry WHERE id = r.id;
END;
$$;

