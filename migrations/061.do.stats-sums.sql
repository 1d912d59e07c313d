-- Sums that cannot overflow. A bucket's sum of values overflowed float8 when its values added up
-- past ~1.8e308 (two values of 1e308): an error that stopped the refresh of the statistics of
-- every feature (postgres mode) or of the continuous aggregate (TimescaleDB). A value of
-- magnitude 1e300 or more now counts as +/-Infinity in the sum, as values too large to square
-- already did in sum_sq: its bucket's mean (and spread) are unknown rather than an error, and
-- no realistic count of smaller values can reach the overflow. The views are made again with
-- the same names and columns; TimescaleDB's refresh policies are added back on start
-- (db/stats.ts ensureAggregatePolicies) and real-time aggregation answers meanwhile.

DROP MATERIALIZED VIEW IF EXISTS feature_stats_daily;
DROP MATERIALIZED VIEW IF EXISTS feature_stats_hourly;

DO $$
DECLARE
  hourly_select text := $q$
    SELECT time_bucket('1 hour', event_time) AS bucket, feature_id, entity_id,
           count(*) AS row_count,
           count(value_num) FILTER (WHERE value_num NOT IN ('NaN', 'Infinity', '-Infinity')) AS num_count,
           count(value_text) AS text_count,
           count(*) FILTER (WHERE value_num IS NULL AND value_text IS NULL) AS null_count,
           sum(CASE WHEN abs(value_num) < 1e300 THEN value_num ELSE sign(value_num) * 'Infinity'::float8 END) FILTER (WHERE value_num NOT IN ('NaN', 'Infinity', '-Infinity')) AS sum,
           -- squares past ~1.3e154 would overflow float8 (an error that would stop every refresh): they count as Infinity
           sum(CASE WHEN abs(value_num) < 1e150 THEN value_num * value_num ELSE 'Infinity'::float8 END) FILTER (WHERE value_num NOT IN ('NaN', 'Infinity', '-Infinity')) AS sum_sq,
           min(value_num) FILTER (WHERE value_num NOT IN ('NaN', 'Infinity', '-Infinity')) AS min,
           max(value_num) FILTER (WHERE value_num NOT IN ('NaN', 'Infinity', '-Infinity')) AS max
    FROM feature_snapshots
    GROUP BY 1, 2, 3 $q$;
  daily_select text := $q$
    SELECT time_bucket('1 day', bucket) AS bucket, feature_id, entity_id,
           sum(row_count)::bigint AS row_count, sum(num_count)::bigint AS num_count,
           sum(text_count)::bigint AS text_count, sum(null_count)::bigint AS null_count,
           sum(sum) AS sum, sum(sum_sq) AS sum_sq, min(min) AS min, max(max) AS max
    FROM feature_stats_hourly
    GROUP BY 1, 2, 3 $q$;
BEGIN
  IF current_setting('feature_store.storage_mode', true) = 'timescaledb' THEN
    EXECUTE 'CREATE MATERIALIZED VIEW feature_stats_hourly WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS '
      || hourly_select || ' WITH NO DATA';
    EXECUTE 'CREATE MATERIALIZED VIEW feature_stats_daily WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS '
      || daily_select || ' WITH NO DATA';
  ELSE
    -- time_bucket stand-in: UTC-aligned buckets whatever the session time zone
    EXECUTE 'CREATE MATERIALIZED VIEW feature_stats_hourly AS '
      || replace(hourly_select, $r$time_bucket('1 hour', event_time)$r$, $r$date_bin('1 hour', event_time, timestamptz '2000-01-01 00:00:00+00')$r$);
    EXECUTE 'CREATE MATERIALIZED VIEW feature_stats_daily AS '
      || replace(daily_select, $r$time_bucket('1 day', bucket)$r$, $r$date_bin('1 day', bucket, timestamptz '2000-01-01 00:00:00+00')$r$);
    CREATE UNIQUE INDEX feature_stats_hourly_key ON feature_stats_hourly (feature_id, entity_id, bucket);
    CREATE UNIQUE INDEX feature_stats_daily_key ON feature_stats_daily (feature_id, entity_id, bucket);
  END IF;
END
$$;
