import t from 'tap'
import { buildTestApp, refreshAggregate } from '../lib/helper.js'
import { insertDefinition, appendValues } from '../lib/fixtures.js'

const HOUR = 3_600_000
const T0 = Date.UTC(2023, 0, 2)

interface Table { name: string, hypertable: boolean, chunks: number, compressed_chunks: number, compression_ratio: number | null, chunk_interval: string | null }
interface Aggregate { name: string, kind: string, source: string | null, real_time: boolean, last_refresh: string | null, last_refresh_status: string | null, materialized_until: string | null }
interface Job { id: number | null, kind: string, target: string | null, last_run_status: string | null, config: Record<string, unknown> | null }

t.test('GET /v1/system describes the storage the same way in both modes', async (t) => {
  const { app, sql, db } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'close_price' })
  await appendValues(sql, Array.from({ length: 24 * 21 }, (_, h) => ({ featureId: f, entityId: 'BTC', eventTimeMs: T0 + h * HOUR, num: Math.sin(h) })))

  const res = await app.inject({ method: 'GET', url: '/v1/system' })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.match(body, {
    service_version: String,
    postgres_version: /^\d+(\.\d+)?/,
    storage_mode: db.storageMode,
    tables: Array,
    aggregates: Array,
    jobs: Array,
  })
  const tables = new Map<string, Table>(body.tables.map((x: Table) => [x.name, x]))
  const aggregates = new Map<string, Aggregate>(body.aggregates.map((x: Aggregate) => [x.name, x]))
  t.ok(tables.has('feature_snapshots'))
  t.ok(aggregates.has('feature_stats_hourly') && aggregates.has('feature_stats_daily'))
  t.equal(aggregates.get('feature_stats_hourly')!.source, 'feature_snapshots')
  // postgres mode refreshes its daily view after the hourly one, in one process; a TimescaleDB
  // refresh of an aggregate built on another may not see all of it (migrations/080)
  t.equal(aggregates.get('feature_stats_daily')!.source, db.storageMode === 'postgres' ? 'feature_stats_hourly' : 'feature_snapshots', 'the daily level: built on the hourly one in postgres mode, on the values in timescaledb mode')
  for (const a of aggregates.values()) t.equal(a.real_time, true, `${a.name} answers recent values`)

  if (db.storageMode === 'postgres') {
    t.equal(body.timescaledb_version, null)
    t.match(tables.get('feature_snapshots'), { hypertable: false, chunks: 0, chunk_interval: null, compression_ratio: null })
    t.match(aggregates.get('feature_stats_hourly'), { kind: 'materialized_view' })
    t.ok(body.jobs.every((j: Job) => j.kind === 'refresh_materialized_view'))
    return
  }

  t.match(body.timescaledb_version, /^2\.\d+/)
  t.match(tables.get('feature_snapshots'), { hypertable: true, chunk_interval: '7 days', compressed_chunks: 0, compression_ratio: null })
  const chunks = tables.get('feature_snapshots')!.chunks
  t.ok(chunks >= 3, `three weeks of values span chunks (${chunks})`)
  for (const name of ['pipeline_runs', 'feature_drift_logs']) {
    if (tables.has(name)) t.match(tables.get(name), { hypertable: true, chunk_interval: '30 days' }, `${name} is a hypertable`)
  }
  t.match(aggregates.get('feature_stats_hourly'), { kind: 'continuous_aggregate' })
  const compression = body.jobs.find((j: Job) => j.kind === 'policy_compression' && j.target === 'feature_snapshots')
  t.match(compression, { id: Number, config: { compress_after: '7 days' } }, 'the compression policy is listed')

  // After compression and a refresh: compression ratio, materialization watermark, job runs.
  await sql`SELECT compress_chunk(c) FROM show_chunks('feature_snapshots', older_than => ${new Date(T0 + 14 * 24 * HOUR)}::timestamptz) c`
  await refreshAggregate(sql, 'feature_stats_hourly', T0 + 7 * 24 * HOUR)
  const after = (await app.inject({ method: 'GET', url: '/v1/system' })).json()
  const snapshots: Table = after.tables.find((x: Table) => x.name === 'feature_snapshots')
  t.ok(snapshots.compressed_chunks >= 2, `chunks compressed (${snapshots.compressed_chunks} of ${snapshots.chunks})`)
  t.ok(snapshots.compression_ratio !== null && snapshots.compression_ratio > 0, `a compression ratio (${snapshots.compression_ratio})`)
  const hourly: Aggregate = after.aggregates.find((x: Aggregate) => x.name === 'feature_stats_hourly')
  // (the refresh policy may have run since, further)
  t.ok(hourly.materialized_until !== null && Date.parse(hourly.materialized_until) >= T0 + 7 * 24 * HOUR, `materialized at least up to the refreshed window (${hourly.materialized_until})`)

  // Job runs are the scheduler's (a manual run_job records none): the document reports what
  // job_stats holds, and an aggregate's last refresh is its refresh policy's last success.
  const refresh: Job | undefined = after.jobs.find((j: Job) => j.kind === 'policy_refresh_continuous_aggregate' && j.target === 'feature_stats_hourly')
  t.ok(refresh, 'the hourly aggregate has a refresh policy, named by its aggregate')
  for (const job of after.jobs as Array<Job & { last_successful_finish: string | null }>) {
    t.ok(job.last_run_status === null || ['Success', 'Failed'].includes(job.last_run_status), `job ${job.id} (${job.kind}): last run ${job.last_run_status}`)
  }
  const refreshJob = after.jobs.find((j: Job) => j.id === refresh?.id)
  t.equal(hourly.last_refresh, refreshJob?.last_successful_finish ?? null, 'last refresh of the aggregate = last success of its policy')
})
