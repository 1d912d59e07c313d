import { transactionOn, type Sql, type TxSql } from './connection.js'
import type { StorageMode } from './storage-mode.js'
import { iso } from './params.js'

type Queryable = Sql | TxSql

export type StatsBucket = '1h' | '1d'

/** One bucket of the aggregates, summed over entities when no entity is asked for. */
export interface StatsRow {
  bucket: Date
  row_count: number
  num_count: number
  text_count: number
  null_count: number
  sum: number | null
  sum_sq: number | null
  min: number | null
  max: number | null
}

export interface StatsQuery {
  featureId: number
  entityId?: string
  bucket: StatsBucket
  /** Bucket-aligned, [fromMs, toMs). */
  fromMs: number
  toMs: number
}

/** The postgres-mode materialized views and how their watermarks are set at a refresh. */
const VIEWS = {
  hourly: 'feature_stats_hourly',
  daily: 'feature_stats_daily',
  drift: 'feature_drift_daily',
} as const

/**
 * Per-bucket statistics of one feature (and entity) from the aggregates. TimescaleDB mode reads
 * the continuous aggregates, whose real-time aggregation adds the buckets not yet materialized.
 * postgres mode does the same by hand: the materialized view for buckets before its watermark
 * (stats_refresh_state), and feature_snapshots aggregated live from the watermark on. Both count
 * every stored row, corrections included, and leave NaN and infinities out of the numbers.
 */
export async function statsBuckets (sql: Queryable, mode: StorageMode, q: StatsQuery): Promise<StatsRow[]> {
  const view = q.bucket === '1h' ? VIEWS.hourly : VIEWS.daily
  const width = q.bucket === '1h' ? '1 hour' : '1 day'
  const from = iso(q.fromMs)
  const to = iso(q.toMs)
  const matEntity = q.entityId === undefined ? sql`` : sql`AND m.entity_id = ${q.entityId}`
  if (mode === 'timescaledb') {
    return [...await sql<StatsRow[]>`
      SELECT m.bucket, sum(m.row_count)::int8 AS row_count, sum(m.num_count)::int8 AS num_count,
             sum(m.text_count)::int8 AS text_count, sum(m.null_count)::int8 AS null_count,
             sum(m.sum) AS sum, sum(m.sum_sq) AS sum_sq, min(m.min) AS min, max(m.max) AS max
      FROM ${sql(view)} m
      WHERE m.feature_id = ${q.featureId} ${matEntity}
        AND m.bucket >= ${from}::timestamptz AND m.bucket < ${to}::timestamptz
      GROUP BY m.bucket
      ORDER BY m.bucket`]
  }
  const liveEntity = q.entityId === undefined ? sql`` : sql`AND s.entity_id = ${q.entityId}`
  return [...await sql<StatsRow[]>`
    WITH wm AS (
      SELECT coalesce((SELECT watermark FROM stats_refresh_state WHERE view_name = ${view}), '-infinity'::timestamptz) AS w)
    SELECT u.bucket, sum(u.row_count)::int8 AS row_count, sum(u.num_count)::int8 AS num_count,
           sum(u.text_count)::int8 AS text_count, sum(u.null_count)::int8 AS null_count,
           sum(u.sum) AS sum, sum(u.sum_sq) AS sum_sq, min(u.min) AS min, max(u.max) AS max
    FROM (
      SELECT m.bucket, m.row_count, m.num_count, m.text_count, m.null_count, m.sum, m.sum_sq, m.min, m.max
      FROM ${sql(view)} m, wm
      WHERE m.feature_id = ${q.featureId} ${matEntity}
        AND m.bucket >= ${from}::timestamptz AND m.bucket < ${to}::timestamptz AND m.bucket < wm.w
      UNION ALL
      SELECT date_bin(${width}::interval, s.event_time, timestamptz '2000-01-01 00:00:00+00') AS bucket,
             count(*),
             count(s.value_num) FILTER (WHERE s.value_num NOT IN ('NaN', 'Infinity', '-Infinity')),
             count(s.value_text),
             count(*) FILTER (WHERE s.value_num IS NULL AND s.value_text IS NULL),
             -- as the views sum (migrations/061): never an overflow error
             sum(CASE WHEN abs(s.value_num) < 1e300 THEN s.value_num ELSE sign(s.value_num) * 'Infinity'::float8 END) FILTER (WHERE s.value_num NOT IN ('NaN', 'Infinity', '-Infinity')),
             sum(CASE WHEN abs(s.value_num) < 1e150 THEN s.value_num * s.value_num ELSE 'Infinity'::float8 END) FILTER (WHERE s.value_num NOT IN ('NaN', 'Infinity', '-Infinity')),
             min(s.value_num) FILTER (WHERE s.value_num NOT IN ('NaN', 'Infinity', '-Infinity')),
             max(s.value_num) FILTER (WHERE s.value_num NOT IN ('NaN', 'Infinity', '-Infinity'))
      FROM feature_snapshots s, wm
      WHERE s.feature_id = ${q.featureId} ${liveEntity}
        AND s.event_time >= greatest(${from}::timestamptz, wm.w) AND s.event_time < ${to}::timestamptz
      GROUP BY 1
    ) u
    GROUP BY u.bucket
    ORDER BY u.bucket`]
}

/** How far the aggregate of a bucket width is materialized (null: nothing yet). */
export async function materializedUntil (sql: Queryable, mode: StorageMode, bucket: StatsBucket): Promise<Date | null> {
  const view = bucket === '1h' ? VIEWS.hourly : VIEWS.daily
  if (mode === 'timescaledb') {
    const [row] = await sql<{ w: Date | null }[]>`
      SELECT CASE WHEN w < timestamptz '1000-01-01' THEN NULL ELSE w END AS w
      FROM (
        SELECT _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(mh.id)) AS w
        FROM timescaledb_information.continuous_aggregates ca
        JOIN _timescaledb_catalog.hypertable mh
          ON mh.schema_name = ca.materialization_hypertable_schema AND mh.table_name = ca.materialization_hypertable_name
        WHERE ca.view_schema = 'public' AND ca.view_name = ${view}
      ) x`
    return row?.w ?? null
  }
  const [row] = await sql<{ w: Date }[]>`SELECT watermark AS w FROM stats_refresh_state WHERE view_name = ${view}`
  return row?.w ?? null
}

// ---------------------------------------------------------------------------------------------
// postgres mode: the refresh of the materialized views

/** Advisory lock of the refresher: one instance refreshes at a time. */
const STATS_REFRESH_LOCK = 7_305_041

export interface RefreshReport { view: string, watermark: Date }

/**
 * Refreshes the postgres-mode materialized views (hourly, then daily from hourly, then drift per
 * day) and moves each watermark in the same transaction as its refresh, so a reader never sees a
 * watermark ahead of the data under it. Watermarks stay one bucket behind now: rows of the last
 * hour (day) still arriving are read live. Returns undefined when another instance holds the
 * refresh lock (it is refreshing right now).
 */
export async function refreshStatsViews (sql: Sql): Promise<RefreshReport[] | undefined> {
  const conn = await sql.reserve()
  try {
    const [{ locked }] = await conn<{ locked: boolean }[]>`SELECT pg_try_advisory_lock(${STATS_REFRESH_LOCK}) AS locked`
    if (!locked) return undefined
    try {
      const out: RefreshReport[] = []
      for (const step of [{ view: VIEWS.hourly, width: '1 hour' }, { view: VIEWS.daily, width: '1 day' }, { view: VIEWS.drift, width: '1 day' }]) {
        const watermark = await transactionOn(conn, async () => {
          await conn`REFRESH MATERIALIZED VIEW CONCURRENTLY ${conn(step.view)}`
          const [row] = await conn<{ watermark: Date }[]>`
            INSERT INTO stats_refresh_state (view_name, refreshed_at, watermark)
            VALUES (${step.view}, now(), date_bin(${step.width}::interval, now() - interval '1 hour', timestamptz '2000-01-01 00:00:00+00'))
            ON CONFLICT (view_name) DO UPDATE SET refreshed_at = EXCLUDED.refreshed_at, watermark = EXCLUDED.watermark
            RETURNING watermark`
          return row.watermark
        })
        out.push({ view: step.view, watermark })
      }
      return out
    } finally {
      await conn`SELECT pg_advisory_unlock(${STATS_REFRESH_LOCK})`.catch(() => {})
    }
  } finally {
    conn.release()
  }
}

// ---------------------------------------------------------------------------------------------
// TimescaleDB mode: the refresh policies of the continuous aggregates

/** Each continuous aggregate, and how far behind now its policy stops (the rest is real-time). */
const AGGREGATE_POLICIES = [
  { view: VIEWS.hourly, endOffset: '1 hour' },
  { view: VIEWS.daily, endOffset: '1 day' },
  { view: VIEWS.drift, endOffset: '1 day' },
] as const

export interface PolicyChange { view: string, action: 'added' | 'rescheduled' | 'reordered' }

/** Whether this TimescaleDB refreshes continuous aggregates in batches, with an order to choose (2.20 on). */
export async function refreshesInBatches (sql: Queryable): Promise<boolean> {
  const [{ batched }] = await sql<{ batched: boolean }[]>`
    SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'add_continuous_aggregate_policy' AND 'refresh_newest_first' = ANY (proargnames)) AS batched`
  return batched
}

/**
 * Adds the refresh policy of every continuous aggregate (whole history up to end_offset, every
 * `scheduleSeconds`) when missing, and reschedules it when the interval changed. Idempotent;
 * aggregates that do not exist (yet) are skipped.
 *
 * Oldest buckets first. TimescaleDB (2.21 on) refreshes a long window in batches of buckets,
 * each its own transaction, newest batch first by default, and after each batch moves the
 * aggregate's watermark to the newest bucket materialized. Real-time aggregation answers from
 * the materialized buckets below the watermark and aggregates live above it, so between the
 * batches of a newest-first refresh the buckets older than the first batch are in neither part:
 * after a bulk load or a conversion, the statistics answered only the last few buckets until the
 * refresh ended (seconds to minutes), and the daily aggregate, then built on the hourly one,
 * materialized its days from that partial hourly answer. Oldest first, the watermark never
 * passes a bucket that is not materialized. Versions without batching have no such setting.
 */
export async function ensureAggregatePolicies (sql: Sql, scheduleSeconds: number): Promise<PolicyChange[]> {
  const changes: PolicyChange[] = []
  await sql.begin(async (tx) => {
    // the same lock as the storage policies: concurrent starts do not race
    await tx`SELECT pg_advisory_xact_lock(7305060)`
    const batched = await refreshesInBatches(tx)
    for (const p of AGGREGATE_POLICIES) {
      const [cagg] = await tx<{ exists: boolean }[]>`
        SELECT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates WHERE view_schema = 'public' AND view_name = ${p.view}) AS exists`
      if (!cagg.exists) continue
      const [job] = await tx<{ job_id: number, same: boolean, oldest_first: boolean }[]>`
        SELECT j.job_id, j.schedule_interval = make_interval(secs => ${scheduleSeconds}) AS same,
               coalesce(j.config->'refresh_newest_first' = 'false'::jsonb, false) AS oldest_first
        FROM timescaledb_information.jobs j
        JOIN timescaledb_information.continuous_aggregates ca
          -- recent versions name the aggregate itself, older ones its materialization hypertable
          ON (ca.view_schema = j.hypertable_schema AND ca.view_name = j.hypertable_name)
          OR (ca.materialization_hypertable_schema = j.hypertable_schema AND ca.materialization_hypertable_name = j.hypertable_name)
        WHERE ca.view_schema = 'public' AND ca.view_name = ${p.view} AND j.proc_name = 'policy_refresh_continuous_aggregate'
        ORDER BY j.job_id LIMIT 1`
      if (!job) {
        await tx`SELECT add_continuous_aggregate_policy(${`public.${p.view}`}::regclass, start_offset => NULL,
                   end_offset => ${p.endOffset}::interval, schedule_interval => make_interval(secs => ${scheduleSeconds}),
                   if_not_exists => true ${batched ? tx`, refresh_newest_first => false` : tx``})`
        changes.push({ view: p.view, action: 'added' })
        continue
      }
      if (!job.same) {
        await tx`SELECT alter_job(${job.job_id}, schedule_interval => make_interval(secs => ${scheduleSeconds}))`
        changes.push({ view: p.view, action: 'rescheduled' })
      }
      if (batched && !job.oldest_first) {
        // a policy added before this setting (or by hand): its config gains it
        await tx`SELECT alter_job(j.job_id, config => j.config || '{"refresh_newest_first": false}'::jsonb)
                 FROM timescaledb_information.jobs j WHERE j.job_id = ${job.job_id}`
        changes.push({ view: p.view, action: 'reordered' })
      }
    }
  })
  return changes
}
