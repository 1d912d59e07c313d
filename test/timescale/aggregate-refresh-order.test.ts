import t, { type Test } from 'tap'
import pino from 'pino'
import { buildTestApp, pauseTimescaleJobs, until, type TestContext } from '../lib/helper.js'
import { appendValues, insertDefinition } from '../lib/fixtures.js'
import { onlyIn } from '../lib/test-server-mode.js'
import { applyAggregatePolicies } from '../../src/services/stats.js'
import { refreshesInBatches } from '../../db/stats.js'
import { listJobs } from '../../db/timescale.js'

/**
 * TimescaleDB refreshes a long window in batches (2.21 on), each batch its own transaction, and
 * moves the aggregate's watermark to the newest bucket materialized after each one. Real-time
 * aggregation answers the buckets below the watermark from the materialization and the rest
 * live; refreshed newest batch first (TimescaleDB's default), the older buckets are in neither
 * part until the refresh ends. The service's policies refresh oldest first: here each policy
 * run stops after a few batches, and the statistics are whole after each run.
 */

const H = 3_600_000
const T0 = Date.UTC(2023, 0, 2)
const DAYS = 40
const iso = (ms: number): string => new Date(ms).toISOString()

type Job = { job_id: number, config: Record<string, unknown> }

/** The refresh policy of each continuous aggregate, by aggregate (as GET /v1/system lists them). */
async function refreshJobs (ctx: TestContext): Promise<Map<string, Job>> {
  const jobs = (await listJobs(ctx.sql)).filter((j) => j.kind === 'policy_refresh_continuous_aggregate' && j.target !== null)
  return new Map(jobs.map((j) => [j.target!, { job_id: j.id, config: j.config ?? {} }]))
}

/** Whether this TimescaleDB refreshes in batches (2.21 on); says so when it does not. */
async function batchedOrSkipped (t: Test, ctx: TestContext): Promise<boolean> {
  const batched = await refreshesInBatches(ctx.sql)
  if (!batched) t.comment('skipped: this TimescaleDB refreshes in one transaction (no batches before 2.21)')
  return batched
}

t.test('refresh policies materialize the oldest buckets first: the statistics never lose buckets mid-refresh', await onlyIn('timescaledb'), async (t) => {
  const ctx = await buildTestApp(t)
  if (!await batchedOrSkipped(t, ctx)) return

  await pauseTimescaleJobs(ctx)
  // a policy run started before the pause ends before the test goes on
  t.ok(await until(async () => {
    const [{ running }] = await ctx.sql<{ running: number }[]>`SELECT count(*)::int AS running FROM timescaledb_information.job_stats WHERE job_status = 'Running'`
    return running === 0
  }, 30_000), 'no policy job running')
  const jobs = await refreshJobs(ctx)
  t.same([...jobs.keys()].sort(), ['feature_drift_daily', 'feature_stats_daily', 'feature_stats_hourly'])
  for (const [view, job] of jobs) t.equal(job.config.refresh_newest_first, false, `${view}: oldest first`)
  // a refresh of an aggregate built on another may read that one's new watermark without the
  // buckets under it (migrations/080): the daily aggregate reads the values
  const [daily] = await ctx.sql<{ definition: string }[]>`
    SELECT view_definition AS definition FROM timescaledb_information.continuous_aggregates WHERE view_schema = 'public' AND view_name = 'feature_stats_daily'`
  t.match(daily.definition, /FROM feature_snapshots/, 'the daily aggregate reads the values')
  t.notMatch(daily.definition, /feature_stats_hourly/)

  const f = await insertDefinition(ctx.sql, { name: 'volume' })
  const rows = Array.from({ length: 24 * DAYS }, (_, i) => ({ featureId: f, entityId: 'BTC', eventTimeMs: T0 + i * H, num: i }))
  await appendValues(ctx.sql, rows)

  const stats = async (bucket: '1h' | '1d') => {
    const res = await ctx.app.inject({ method: 'GET', url: `/v1/features/volume/stats?bucket=${bucket}&from=${iso(T0)}&to=${iso(T0 + DAYS * 24 * H)}` })
    t.equal(res.statusCode, 200)
    return res.json() as { materialized_until: string | null, buckets: Array<{ start: string, count: number, min: number, max: number }> }
  }
  const whole = (bucket: '1h' | '1d', got: Awaited<ReturnType<typeof stats>>, label: string) => {
    const per = bucket === '1h' ? 1 : 24
    t.equal(got.buckets.length, rows.length / per, `${label}: every ${bucket} bucket answered`)
    t.ok(got.buckets.every((b, i) => b.count === per && b.min === i * per && b.max === i * per + per - 1), `${label}: every bucket whole`)
  }
  whole('1h', await stats('1h'), 'before any refresh')

  // a few batches a run: each run materializes part of the window, as the first batches of one
  // long refresh have when another transaction reads (a batch is 10 buckets; the batches start
  // at the first chunk's start, days before the first value)
  const limit = { feature_stats_hourly: 20, feature_stats_daily: 1 }
  for (const [view, batches] of Object.entries(limit)) {
    const job = jobs.get(view)!
    await ctx.sql`SELECT alter_job(${job.job_id}, config => config || jsonb_build_object('max_batches_per_execution', ${batches}::int)) FROM timescaledb_information.jobs WHERE job_id = ${job.job_id}`
  }
  const end = T0 + DAYS * 24 * H
  let partial = 0
  for (let run = 1; run <= 12; run++) {
    await ctx.sql`CALL run_job(${jobs.get('feature_stats_hourly')!.job_id})`
    const hourly = await stats('1h')
    whole('1h', hourly, `hourly run ${run} (materialized until ${hourly.materialized_until})`)
    await ctx.sql`CALL run_job(${jobs.get('feature_stats_daily')!.job_id})`
    const daily = await stats('1d')
    whole('1d', daily, `daily run ${run} (materialized until ${daily.materialized_until})`)
    const until = hourly.materialized_until === null ? -Infinity : Date.parse(hourly.materialized_until)
    if (until > T0 && until < end) partial++
    if (until >= end && daily.materialized_until !== null && Date.parse(daily.materialized_until) >= end) break
  }
  t.ok(partial >= 2, `the hourly aggregate was partly materialized when read (${partial} runs)`)
  const [{ materialized }] = await ctx.sql<{ materialized: Date | null }[]>`
    SELECT _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(mh.id)) AS materialized
    FROM timescaledb_information.continuous_aggregates ca
    JOIN _timescaledb_catalog.hypertable mh ON mh.schema_name = ca.materialization_hypertable_schema AND mh.table_name = ca.materialization_hypertable_name
    WHERE ca.view_name = 'feature_stats_daily'`
  t.ok(materialized !== null && materialized.getTime() >= end, 'the runs went on to the end')
})

t.test('start-up turns an existing newest-first policy oldest first', await onlyIn('timescaledb'), async (t) => {
  const ctx = await buildTestApp(t)
  if (!await batchedOrSkipped(t, ctx)) return
  await pauseTimescaleJobs(ctx)
  const hourly = (await refreshJobs(ctx)).get('feature_stats_hourly')!
  // as a policy added by an earlier version of the service (or by hand) is
  await ctx.sql`SELECT alter_job(${hourly.job_id}, config => config - 'refresh_newest_first') FROM timescaledb_information.jobs WHERE job_id = ${hourly.job_id}`
  t.equal((await refreshJobs(ctx)).get('feature_stats_hourly')!.config.refresh_newest_first, undefined)

  const logged: string[] = []
  const log = pino({ level: 'info' }, { write: (line: string) => { logged.push(JSON.parse(line).msg) } })
  await applyAggregatePolicies(ctx.sql, 'timescaledb', ctx.config, log)
  t.same(logged, ['continuous aggregate policy reordered: feature_stats_hourly'])
  const after = await refreshJobs(ctx)
  t.equal(after.get('feature_stats_hourly')!.config.refresh_newest_first, false, 'oldest first again')
  t.equal(after.get('feature_stats_hourly')!.job_id, hourly.job_id, 'the same job, its other settings kept')
  t.same(after.get('feature_stats_hourly')!.config, { ...hourly.config, refresh_newest_first: false })

  logged.length = 0
  await applyAggregatePolicies(ctx.sql, 'timescaledb', ctx.config, log)
  t.same(logged, [], 'nothing to do the second time')
})
