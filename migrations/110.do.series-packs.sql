-- Series packs: a packed copy of each numeric series' settled past, for point-in-time reads.
--
-- A training set's block read (db/point-in-time.ts) reads every stored value in each pair's
-- time range; from the primary key index that costs PostgreSQL ~0.3 µs a value (10M values for
-- 1M random entity rows over 3 years of hourly data). A pack holds up to a few thousand
-- consecutive values of one (feature, entity) as three byte strings (event times and ingested_at
-- as big-endian int8 microseconds since 1970, values as big-endian float8), which the read
-- sends as they are stored: a few ns a value. db/series-packs.ts builds them, src/services/
-- series-packs.ts keeps them current.
--
-- Exact by construction, per feature (feature_pack_marks): the packs of a feature hold exactly
-- its rows with event_time < horizon and ingested_at <= built_through, in (event_time,
-- ingested_at) order. built_through is a sound knowledge cutoff when the packs are built (no
-- later write can be stamped at or before it). A read uses the packs of a pair only when the
-- write log (migrations/060) shows no write of the feature stamped after built_through (and at or
-- before the read's cutoff) that could touch the pair's packed range, and no untracked write
-- is recorded; otherwise it reads the rows. Values at or after the horizon (the recent, still
-- moving past) are always read from the rows. A DELETE or TRUNCATE of feature_snapshots drops
-- every mark (the trigger below), so nothing is read from packs until they are rebuilt.
--
-- Each pack covers [range_start, range_end) of event_time (a value equal to range_end may sit at
-- the end of a pack when versions of one event_time are split between packs, and a pack of
-- such versions alone covers [t, t)); the ranges of one (feature, entity) do not overlap
-- otherwise, and (range_start, seq) orders them.

CREATE TABLE feature_series_packs (
  feature_id  integer     NOT NULL,
  entity_id   text        NOT NULL,
  range_start timestamptz NOT NULL,
  range_end   timestamptz NOT NULL,
  -- orders packs that start at the same time (more versions of one event_time than a pack holds)
  seq         integer     NOT NULL,
  n           integer     NOT NULL,
  -- n x int8: event_time, µs since 1970
  event_us    bytea       NOT NULL,
  -- n x int8: ingested_at, µs since 1970
  ingested_us bytea       NOT NULL,
  -- n x float8; a stored NULL is the NaN with the bit pattern fff8 4e55 4c4c 0000 (see
  -- db/series-packs.ts), a stored NaN the canonical one
  value_num   bytea       NOT NULL,
  PRIMARY KEY (feature_id, entity_id, range_start, seq)
);
-- sent as stored: no compression to undo on every read (they hardly compress anyway)
ALTER TABLE feature_series_packs
  ALTER COLUMN event_us SET STORAGE EXTERNAL,
  ALTER COLUMN ingested_us SET STORAGE EXTERNAL,
  ALTER COLUMN value_num SET STORAGE EXTERNAL;

CREATE TABLE feature_pack_marks (
  feature_id     integer     PRIMARY KEY,
  built_through  timestamptz NOT NULL,
  horizon        timestamptz NOT NULL
);

-- the reads' check for writes after built_through, and the builder's
CREATE INDEX feature_write_log_stamp_idx ON feature_write_log (feature_id, ingested_at);

-- A DELETE or TRUNCATE takes this row's lock (the trigger below), which a build holds shared
-- for its whole transaction: so the removal waits for a build under way (and then drops the
-- marks it wrote), or the build waits for the removal to commit (and then reads without the
-- removed values). Without it, a removal committing during a build could be followed by the
-- build's mark.
CREATE TABLE feature_pack_epoch (epoch bigint NOT NULL);
INSERT INTO feature_pack_epoch VALUES (0);

CREATE FUNCTION feature_store_drop_pack_marks() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE feature_pack_epoch SET epoch = epoch + 1;
  DELETE FROM feature_pack_marks;
  RETURN NULL;
END
$$;

CREATE TRIGGER feature_snapshots_delete_drops_packs
  AFTER DELETE ON feature_snapshots
  FOR EACH STATEMENT EXECUTE FUNCTION feature_store_drop_pack_marks();
CREATE TRIGGER feature_snapshots_truncate_drops_packs
  AFTER TRUNCATE ON feature_snapshots
  FOR EACH STATEMENT EXECUTE FUNCTION feature_store_drop_pack_marks();
