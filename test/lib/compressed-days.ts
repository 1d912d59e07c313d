import type { Test } from 'tap'
import { buildTestApp, pauseTimescaleJobs } from './helper.js'
import { appendValues, insertDefinition, type RawValue } from './fixtures.js'
import type { Sql } from '../../db/connection.js'
import type { FeatureDefinition } from '../../src/domain/feature.js'
import { resolveFeatures } from '../../src/services/training-sets.js'

export const H = 3_600_000
export const DAY = 24 * H
export const T0 = Date.UTC(2023, 0, 1)
export const DAYS = 6

/**
 * The start of the TimescaleDB tests that read across compressions: one-day chunks, the
 * database's jobs paused (the test compresses by hand), DAYS days of hourly `close_price`
 * values of BTC from T0 (the value is the hour's number), and every chunk compressed.
 */
export async function compressedHourlyDays (t: Test): Promise<{ sql: Sql, url: string, f: number, features: FeatureDefinition[] }> {
  const ctx = await buildTestApp(t, { config: { SNAPSHOT_CHUNK_INTERVAL: '1 day' } })
  const { sql, url } = ctx
  await pauseTimescaleJobs(ctx)
  const f = await insertDefinition(sql, { name: 'close_price' })
  const hourly: RawValue[] = []
  for (let h = 0; h < DAYS * 24; h++) hourly.push({ featureId: f, entityId: 'BTC', eventTimeMs: T0 + h * H, num: h })
  await appendValues(sql, hourly)
  await sql`SELECT compress_chunk(c) FROM show_chunks('feature_snapshots') c`
  return { sql, url, f, features: await resolveFeatures(sql, ['close_price'], '/features') }
}
