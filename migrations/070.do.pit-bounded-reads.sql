-- Bounded point-in-time reads: the same candidates as the direct read of db/point-in-time.ts,
-- read by statements whose time bounds are plan-time constants.
--
-- The direct read finds a pair's anchor (its latest value at or before the pair's smallest T)
-- with no lower bound on event_time, and both of its reads take their bounds from the pairs
-- table, i.e. only at run time. On a hypertable PostgreSQL then plans every chunk of
-- feature_snapshots and leaves them out only while running: with 596 compressed weekly chunks
-- that planning took 0.3-1.3 s for a retrieve of two values. feature_store_pit_prepare, called
-- before a block's COPY, plans only the chunks the block can touch:
--
-- 1. anchors within the lookback: event_time from the block's smallest T minus the lookback
--    (the argument) up to the block's greatest smallest-T;
-- 2. anchors of the pairs still without one whose first value (feature_first_events) is older
--    than that: first over the next 15 lookbacks, then down to the oldest of those first
--    values (and not below the first value of the writes known at the anchors' cutoffs, from
--    the write log). Only this step, for a value in force since long before T, plans older
--    chunks; a pair with no value at all, or none before T, or none known at its cutoff,
--    costs nothing here;
-- 3. the later candidates are read by the caller's COPY from the temporary view
--    pit_block_values: feature_snapshots within the block's time range ("known" mode also reads
--    values written between a pair's two cutoffs, whatever their event_time: their earliest
--    event_time comes from the write log).
--
-- Steps 1 and 2 run through EXECUTE ... USING, which plans each statement for the values given.
-- The view is made for each block with its two bounds as literals (format %L of timestamptz
-- values the function computed, never text from a client), because a COPY takes no parameters
-- and a set-returning function would copy every value of the block once more (+0.11 us a value,
-- measured). PostgreSQL expands the view into the COPY's query, so the bounds are constants
-- when it is planned.
--
-- While feature_untracked_writes says that writes bypassed the ingest path (direct SQL), neither
-- feature_first_events nor the write log is trusted, and the older reads have no lower bound.
-- The anchors go to the session's temporary table pit_anchor (made with pit_pairs, emptied
-- here for each block). The temporary tables are only named in dynamic statements, so no plan
-- of this function outlives them.

-- The earliest event_time stored per (feature, entity), kept by the ingest path in the same
-- transaction as the values (db/values.ts) and rebuilt with the write log (db/write-log.ts).
-- A lower bound: a correction of an older key or a value removed later leaves it as it is.
CREATE TABLE feature_first_events (
  feature_id  integer     NOT NULL,
  entity_id   text        NOT NULL,
  first_event timestamptz NOT NULL,
  PRIMARY KEY (feature_id, entity_id)
);
INSERT INTO feature_first_events (feature_id, entity_id, first_event)
SELECT feature_id, entity_id, min(event_time) FROM feature_snapshots GROUP BY feature_id, entity_id;

-- "known" reads look up the writes between two cutoffs
CREATE INDEX feature_write_log_ingested_idx ON feature_write_log (feature_id, ingested_at);

CREATE FUNCTION feature_store_pit_prepare(known boolean, lookback interval) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
  feats int4[];
  lo timestamptz;          -- the block's smallest T
  anchor_hi timestamptz;   -- the greatest smallest-T of a pair: no anchor is later
  hi timestamptz;          -- the block's greatest T
  kmin_lo timestamptz;
  kmin_hi timestamptz;
  kmax_hi timestamptz;
  untracked boolean;
  anchor_lo timestamptz;
  anchor_floor timestamptz;
  log_floor timestamptz;
  late_floor timestamptz;
  pairs int8;
  found_anchors int8;
  step_lo timestamptz;
  step_hi timestamptz;
  step_found int8;
  span interval;
  -- the best candidate of each pair without an anchor yet, with event_time in [$1, $2)
  anchors text := $q$
    INSERT INTO pit_anchor (pair, event_time, ingested_at, value_num, value_text)
    SELECT p.pair, a.event_time, a.ingested_at, a.value_num, a.value_text
    FROM pit_pairs p
    CROSS JOIN LATERAL (
      SELECT s.event_time, s.ingested_at, s.value_num, s.value_text
      FROM feature_snapshots s
      WHERE s.feature_id = p.feature_id AND s.entity_id = p.entity_id
        AND s.event_time <= p.min_t AND s.ingested_at <= p.k_min
        AND s.event_time >= $1 AND s.event_time < $2
      ORDER BY s.event_time DESC, s.ingested_at DESC
      LIMIT 1
    ) a
    WHERE NOT EXISTS (SELECT 1 FROM pit_anchor x WHERE x.pair = p.pair)$q$;
BEGIN
  EXECUTE 'TRUNCATE pit_anchor';
  EXECUTE 'SELECT min(min_t), max(min_t), max(max_t), min(k_min), max(k_min), max(k_max), count(*) FROM pit_pairs'
    INTO lo, anchor_hi, hi, kmin_lo, kmin_hi, kmax_hi, pairs;
  IF pairs = 0 THEN
    lo := 'infinity';
    hi := '-infinity';
  END IF;
  untracked := EXISTS (SELECT 1 FROM feature_untracked_writes);

  anchor_lo := lo - lookback;
  EXECUTE anchors USING anchor_lo, anchor_hi + interval '1 microsecond';
  GET DIAGNOSTICS found_anchors = ROW_COUNT;

  IF found_anchors < pairs THEN
    -- how far back the pairs still without an anchor can have one (NULL: none can)
    IF untracked THEN
      anchor_floor := '-infinity';
    ELSE
      EXECUTE $q$
        SELECT min(f.first_event)
        FROM pit_pairs p
        JOIN feature_first_events f ON f.feature_id = p.feature_id AND f.entity_id = p.entity_id
        WHERE f.first_event < $1 AND NOT EXISTS (SELECT 1 FROM pit_anchor x WHERE x.pair = p.pair)$q$
        INTO anchor_floor USING anchor_lo;
      IF anchor_floor IS NOT NULL THEN
        -- nor earlier than the first value of a write known at the latest anchor cutoff (none
        -- such write: nothing older is visible, as when history was loaded after T and read
        -- in "known" mode)
        EXECUTE 'SELECT array_agg(feature_id) FROM (SELECT DISTINCT feature_id FROM pit_pairs) d' INTO feats;
        SELECT min(l.first_event) INTO log_floor
        FROM feature_write_log l
        WHERE l.feature_id = ANY (feats) AND l.ingested_at <= kmin_hi;
        anchor_floor := CASE WHEN log_floor IS NULL THEN NULL ELSE greatest(anchor_floor, log_floor) END;
      END IF;
    END IF;
    -- first the next 15 lookbacks, then everything older at once
    step_hi := anchor_lo;
    span := lookback * 15;
    WHILE found_anchors < pairs AND step_hi > anchor_floor LOOP
      step_lo := CASE WHEN span IS NULL THEN anchor_floor ELSE greatest(anchor_floor, step_hi - span) END;
      EXECUTE anchors USING step_lo, step_hi;
      GET DIAGNOSTICS step_found = ROW_COUNT;
      found_anchors := found_anchors + step_found;
      step_hi := step_lo;
      span := NULL;
    END LOOP;
  END IF;

  -- "known": values written between a pair's two cutoffs count whatever their event_time
  IF known AND untracked THEN
    late_floor := '-infinity';
  ELSIF known THEN
    IF feats IS NULL THEN
      EXECUTE 'SELECT array_agg(feature_id) FROM (SELECT DISTINCT feature_id FROM pit_pairs) d' INTO feats;
    END IF;
    SELECT min(l.first_event) INTO late_floor
    FROM feature_write_log l
    WHERE l.feature_id = ANY (feats) AND l.ingested_at > kmin_lo AND l.ingested_at <= kmax_hi;
  END IF;
  EXECUTE format('CREATE OR REPLACE TEMP VIEW pit_block_values AS
    SELECT feature_id, entity_id, event_time, ingested_at, value_num, value_text
    FROM feature_snapshots WHERE event_time >= %L AND event_time <= %L',
    least(lo, coalesce(late_floor, lo)), hi);
END
$fn$;
