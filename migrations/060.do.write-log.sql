-- The write log: what each ingest transaction wrote, per feature, so that a drift check can
-- prove cheaply that a window holds no corrections and read it as a plain range scan.
--
-- One row per (ingest transaction, feature): its ingested_at stamp, the event_time range it
-- wrote, and its entity when it wrote a single one (null: several). Written by the ingest path
-- in the same transaction as the values (db/values.ts), so a snapshot sees a write's values and
-- its log row together or neither. A window [from, to) read at cutoff K holds no corrections
-- when no two log rows with ingested_at <= K, of the same entity (or of several), overlap in
-- event_time inside it: every (entity, event_time) then has at most one row known at K.
--
-- Writes that bypass the ingest path (direct SQL, UPDATEs) cannot be described, so a
-- statement-level trigger (without transition tables, which TimescaleDB before 2.17 refuses on hypertables) records
-- that such a write happened; while feature_untracked_writes holds a row, drift checks take the
-- exact point-in-time read. The ingest path marks its own statements with the transaction-local
-- setting feature_store.logged_write. rebuildWriteLog (db/write-log.ts) rebuilds the log from
-- the values and clears the marker.

CREATE TABLE feature_write_log (
  feature_id  integer     NOT NULL,
  ingested_at timestamptz NOT NULL,
  first_event timestamptz NOT NULL,
  last_event  timestamptz NOT NULL,
  -- the one entity the write held, or null when it held several
  entity_id   text
);
CREATE INDEX feature_write_log_feature_idx ON feature_write_log (feature_id, last_event);

CREATE TABLE feature_untracked_writes (
  at        timestamptz NOT NULL DEFAULT clock_timestamp(),
  operation text        NOT NULL
);

CREATE FUNCTION feature_store_untracked_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(current_setting('feature_store.logged_write', true), '') = '' THEN
    INSERT INTO feature_untracked_writes (operation) VALUES (TG_OP);
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER feature_snapshots_untracked_write
  AFTER INSERT OR UPDATE ON feature_snapshots
  FOR EACH STATEMENT EXECUTE FUNCTION feature_store_untracked_write();

-- the values already stored: one log row per (feature, stamp), as the ingest path writes them
INSERT INTO feature_write_log (feature_id, ingested_at, first_event, last_event, entity_id)
SELECT feature_id, ingested_at, min(event_time), max(event_time),
       CASE WHEN min(entity_id) = max(entity_id) THEN min(entity_id) END
FROM feature_snapshots
GROUP BY feature_id, ingested_at;
