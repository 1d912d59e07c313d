import type { FastifyBaseLogger } from 'fastify'
import type { Logger } from 'pino'
import type { AppDeps } from '../context.js'
import type { Config } from '../config.js'
import type { Sql } from '../../db/connection.js'
import type { StorageMode } from '../../db/storage-mode.js'
import { ensureAggregatePolicies, materializedUntil, refreshStatsViews, statsBuckets, type RefreshReport, type StatsBucket } from '../../db/stats.js'
import { BadRequestError, UnprocessableError, type FieldError } from '../domain/errors.js'
import { assertName } from '../domain/names.js'
import { formatTimestamp, queryTimestamp } from '../domain/time.js'
import type { FeatureStats, FeatureStatsQuery } from '../../routes/schemas/stats.js'
import { BackgroundLoop } from './background-loop.js'
import { featureVersionOrNotFound } from './registry.js'

const BUCKET_MS: Record<StatsBucket, number> = { '1h': 3_600_000, '1d': 86_400_000 }
/** Default range: the last week of hours, or the last 90 days. */
const DEFAULT_BUCKETS: Record<StatsBucket, number> = { '1h': 168, '1d': 90 }
export const MAX_STATS_BUCKETS = 10_000

/**
 * Feature statistics per hour or day from the aggregates (feature_stats_hourly / _daily), with
 * mean and stddev derived from the sums. In postgres mode this service also keeps the
 * materialized views fresh: every STATS_REFRESH_SECONDS one instance (advisory lock) refreshes
 * them and moves their watermarks; reads combine them with live aggregation above the watermark.
 */
export class StatsService {
  private readonly refresher: BackgroundLoop

  constructor (private readonly deps: AppDeps, log: FastifyBaseLogger) {
    this.refresher = new BackgroundLoop(async () => {
      const started = Date.now()
      const report = await this.refreshNow()
      if (report) log.debug({ report, ms: Date.now() - started }, 'statistics views refreshed')
    }, () => this.deps.config.STATS_REFRESH_SECONDS * 1000, (err) => { log.error({ err }, 'statistics views refresh failed') })
  }

  async featureStats (name: string, q: FeatureStatsQuery): Promise<FeatureStats> {
    assertName(name, 'name')
    const bucket = q.bucket ?? '1h'
    const width = BUCKET_MS[bucket]
    const errors: FieldError[] = []
    const toIn = queryTimestamp(q.to, 'to', errors)
    const fromIn = queryTimestamp(q.from, 'from', errors)
    if (errors.length > 0) throw new BadRequestError(errors.map((e) => `${e.field}: ${e.message}`).join('; '), errors)
    // buckets are UTC-aligned: from rounds down, to rounds up to a bucket boundary
    const toMs = Math.ceil((toIn ?? Date.now() + 1) / width) * width
    const fromMs = Math.floor((fromIn ?? toMs - DEFAULT_BUCKETS[bucket] * width) / width) * width
    if (fromMs >= toMs) throw new BadRequestError('to must be later than from', [{ path: '/querystring/to', field: 'to', rule: 'range', message: 'must be later than from' }])
    if ((toMs - fromMs) / width > MAX_STATS_BUCKETS) {
      throw new BadRequestError(`The range spans ${(toMs - fromMs) / width} buckets of ${bucket}; at most ${MAX_STATS_BUCKETS} per request: narrow from/to or use bucket=1d`,
        [{ path: '/querystring/from', field: 'from', rule: 'range', message: `more than ${MAX_STATS_BUCKETS} buckets` }])
    }
    const def = await featureVersionOrNotFound(this.deps.sql, name, q.version)

    const { sql, storageMode } = this.deps
    const [rows, watermark] = await Promise.all([
      statsBuckets(sql, storageMode, { featureId: def.id, entityId: q.entity_id, bucket, fromMs, toMs }).catch((err: unknown) => {
        // the aggregates sum squares: values beyond about 1e154 overflow float8
        if ((err as { code?: string }).code === '22003') throw new UnprocessableError(`The values of '${def.name}' in this range are too large for the statistics (their squares overflow)`)
        throw err
      }),
      materializedUntil(sql, storageMode, bucket),
    ])
    return {
      feature: { name: def.name, version: def.version, dtype: def.dtype },
      entity_id: q.entity_id ?? null,
      bucket,
      from: formatTimestamp(fromMs),
      to: formatTimestamp(toMs),
      materialized_until: watermark === null ? null : formatTimestamp(watermark.getTime()),
      buckets: rows.map((r) => {
        const n = r.num_count
        const mean = n > 0 && r.sum !== null ? r.sum / n : null
        // sample variance from the sums; rounding can make it a hair negative
        const raw = n > 1 && r.sum !== null && r.sum_sq !== null ? Math.max(0, (r.sum_sq - (r.sum * r.sum) / n) / (n - 1)) : null
        // values too large to square (see migrations/003) leave the spread unknown, not an error
        const variance = raw !== null && Number.isFinite(raw) ? raw : null
        return {
          start: formatTimestamp(r.bucket.getTime()),
          count: r.row_count,
          numeric_count: r.num_count,
          text_count: r.text_count,
          null_count: r.null_count,
          mean: mean !== null && Number.isFinite(mean) ? mean : null,
          stddev: variance === null ? null : Math.sqrt(variance),
          min: r.min,
          max: r.max,
          sum: n > 0 && r.sum !== null && Number.isFinite(r.sum) ? r.sum : null,
        }
      }),
    }
  }

  /** postgres mode: refreshes the materialized views now (undefined when another instance is at it). */
  async refreshNow (): Promise<RefreshReport[] | undefined> {
    if (this.deps.storageMode !== 'postgres') return []
    return refreshStatsViews(this.deps.sql)
  }

  /** postgres mode: refresh every STATS_REFRESH_SECONDS until stop(). TimescaleDB refreshes by its own policies. */
  start (): void {
    if (this.deps.storageMode === 'postgres') this.refresher.start(this.deps.config.STATS_REFRESH_SECONDS * 1000)
  }

  async stop (): Promise<void> {
    await this.refresher.stop()
  }
}

/** At start: the refresh policies of the continuous aggregates (TimescaleDB mode only). */
export async function applyAggregatePolicies (sql: Sql, mode: StorageMode, config: Config, log: Logger): Promise<void> {
  if (mode !== 'timescaledb') return
  const changes = await ensureAggregatePolicies(sql, config.STATS_REFRESH_SECONDS)
  for (const c of changes) log.info(c, `continuous aggregate policy ${c.action}: ${c.view}`)
}
