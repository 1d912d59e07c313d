-- TimescaleDB mode: the daily statistics aggregate the values themselves, no longer the hourly
-- continuous aggregate.
--
-- A continuous aggregate built on another one reads it through its real-time view when it is
-- refreshed: the hourly buckets materialized below the hourly watermark, the rest aggregated
-- live. TimescaleDB's refresh reads the watermark with a newer snapshot than the materialized
-- rows (the watermark is read while the statement is planned, inside the refresh's
-- transaction, after the statement's snapshot was taken), so when a batch of an hourly refresh
-- committed in between, the daily refresh saw the new hourly watermark without the hourly
-- buckets under it, and materialized days from part of their hours, or none. Reproduced after a
-- conversion (both policies starting together): feature_stats_daily materialized nothing for
-- 11 days and 2 of 24 hours for the 12th, and answered so until a later refresh. Built on
-- feature_snapshots, a refresh reads rows, and its snapshot is the only one involved.
--
-- postgres mode keeps the daily view built on the hourly one: the service refreshes its views
-- one after the other in one process (db/stats.ts refreshStatsViews), which cannot interleave.
--
-- feature_store_stats_daily_from_values() makes the change when feature_stats_daily is a
-- continuous aggregate that reads feature_stats_hourly (returns whether it did): here, and after
-- a postgres-mode database is converted (db/timescale.ts), whose daily view still reads the
-- hourly one. The aggregate is made again empty; real-time aggregation answers from the values
-- until its refresh policy (added back on start, db/stats.ts ensureAggregatePolicies) catches up.

CREATE OR REPLACE FUNCTION feature_store_stats_daily_from_values() RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM timescaledb_information.continuous_aggregates
    WHERE view_schema = 'public' AND view_name = 'feature_stats_daily'
      AND view_definition ~ '\mfeature_stats_hourly\M'
  ) THEN
    RETURN false;
  END IF;
  DROP MATERIALIZED VIEW public.feature_stats_daily;
  -- the columns and their sums as the hourly aggregate has them (migrations/061)
  CREATE MATERIALIZED VIEW public.feature_stats_daily WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
    SELECT time_bucket('1 day', event_time) AS bucket, feature_id, entity_id,
           count(*) AS row_count,
           count(value_num) FILTER (WHERE value_num NOT IN ('NaN', 'Infinity', '-Infinity')) AS num_count,
           count(value_text) AS text_count,
           count(*) FILTER (WHERE value_num IS NULL AND value_text IS NULL) AS null_count,
           sum(CASE WHEN abs(value_num) < 1e300 THEN value_num ELSE sign(value_num) * 'Infinity'::float8 END) FILTER (WHERE value_num NOT IN ('NaN', 'Infinity', '-Infinity')) AS sum,
           sum(CASE WHEN abs(value_num) < 1e150 THEN value_num * value_num ELSE 'Infinity'::float8 END) FILTER (WHERE value_num NOT IN ('NaN', 'Infinity', '-Infinity')) AS sum_sq,
           min(value_num) FILTER (WHERE value_num NOT IN ('NaN', 'Infinity', '-Infinity')) AS min,
           max(value_num) FILTER (WHERE value_num NOT IN ('NaN', 'Infinity', '-Infinity')) AS max
    FROM public.feature_snapshots
    GROUP BY 1, 2, 3
  WITH NO DATA;
  RETURN true;
END
$fn$;

DO $$
BEGIN
  IF current_setting('feature_store.storage_mode', true) = 'timescaledb' THEN
    PERFORM feature_store_stats_daily_from_values();
  END IF;
END
$$;
