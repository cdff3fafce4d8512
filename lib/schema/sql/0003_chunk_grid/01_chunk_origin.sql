-- LakeTS-compatible schema, part 3: Partition Manager keeps a ChronoTable's existing chunk grid.
--
-- 0001 binned every ChronoTable on the UTC origin (2000-01-01 00:00 UTC). A ChronoTable whose
-- chunks were laid out on another grid (the public LakeTS reads its origin in the session's time
-- zone, so a table set up from Europe/Berlin has daily chunks starting 23:00 UTC) then failed at
-- every _ensure_partitions with "would overlap partition" (42P17). Now new partitions continue the
-- grid of the table's latest non-dropped chunk; a table without chunks still starts on the UTC
-- origin. Partition names stay rendered from range_start in UTC, whatever the session's time zone.

-- The origin a ChronoTable's partitions are binned on: the start of its latest non-dropped chunk
-- (any chunk boundary is a valid origin for date_bin), else the UTC origin.
CREATE FUNCTION lakets._chunk_origin(p_chronotable_id int) RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(
    (SELECT m.range_start FROM lakets._chunk_metadata m
      WHERE m.chronotable_id = p_chronotable_id AND m.status <> 'dropped'
      ORDER BY m.range_start DESC LIMIT 1),
    lakets._origin())
$$;

