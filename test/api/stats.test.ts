import t, { type Test } from 'tap'
import pino from 'pino'
import { buildTestApp, refreshAggregate, type TestContext } from '../lib/helper.js'
import { appendValues, insertDefinition } from '../lib/fixtures.js'
import { onlyIn } from '../lib/test-server-mode.js'
import { applyAggregatePolicies } from '../../src/services/stats.js'
import type { Sql } from '../../db/connection.js'

const H = 3_600_000
const DEFAULT_T0 = Date.UTC(2023, 5, 1)
const T0 = DEFAULT_T0
/** Five days ago at midnight: close enough to now for one query to span it and the current hour. */
const RECENT = Math.floor(Date.now() / (24 * H)) * 24 * H - 5 * 24 * H
const iso = (ms: number): string => new Date(ms).toISOString()

interface Bucket { start: string, count: number, numeric_count: number, null_count: number, text_count: number, mean: number | null, stddev: number | null, min: number | null, max: number | null }

function expectStats (t: Test, got: Bucket, values: Array<number | null>, label: string): void {
  const nums = values.filter((v): v is number => v !== null && Number.isFinite(v))
  const mean = nums.reduce((a, b) => a + b, 0) / nums.length
  const sd = Math.sqrt(nums.reduce((a, b) => a + (b - mean) ** 2, 0) / (nums.length - 1))
  t.equal(got.count, values.length, `${label} count`)
  t.equal(got.numeric_count, nums.length, `${label} numeric count`)
  t.equal(got.null_count, values.filter((v) => v === null).length, `${label} nulls`)
  t.ok(Math.abs(got.mean! - mean) < 1e-9, `${label} mean ${got.mean} = ${mean}`)
  t.ok(Math.abs(got.stddev! - sd) < 1e-6, `${label} stddev ${got.stddev} = ${sd}`)
  t.equal(got.min, Math.min(...nums), `${label} min`)
  t.equal(got.max, Math.max(...nums), `${label} max`)
}

/** 3 hours x 2 entities x 4 values in each hour (at :00, :15, :30, :45), with a null and a NaN. */
async function withValues (t: Test, opts: Parameters<typeof buildTestApp>[1] = {}, T0 = DEFAULT_T0): Promise<TestContext & { f: number, values: Map<string, Array<number | null>> }> {
  const ctx = await buildTestApp(t, opts)
  const f = await insertDefinition(ctx.sql, { name: 'volume', validation: { allow_non_finite: true } })
  await insertDefinition(ctx.sql, { name: 'old_one', status: 'deprecated' })
  const values = new Map<string, Array<number | null>>()
  const rows = []
  for (let h = 0; h < 3; h++) {
    for (const e of ['BTC', 'ETH']) {
      for (let q = 0; q < 4; q++) {
        let v: number | null = (e === 'BTC' ? 100 : 10) + h * 10 + q * q
        if (h === 1 && e === 'BTC' && q === 3) v = null
        if (h === 2 && e === 'ETH' && q === 0) v = Number.NaN
        rows.push({ featureId: f, entityId: e, eventTimeMs: T0 + h * H + q * 15 * 60_000, num: v })
        const key = `${h}/${e}`
        values.set(key, [...(values.get(key) ?? []), Number.isNaN(v) ? Number.NaN : v])
      }
    }
  }
  await appendValues(ctx.sql, rows)
  return { ...ctx, f, values }
}

const get = async (ctx: TestContext, q: string) => {
  const res = await ctx.app.inject({ method: 'GET', url: `/v1/features/volume/stats${q}` })
  return res
}

t.test('hourly and daily statistics, per entity and across entities', async (t) => {
  const ctx = await withValues(t)
  const res = await get(ctx, `?bucket=1h&from=${iso(T0)}&to=${iso(T0 + 3 * H)}`)
  t.equal(res.statusCode, 200, res.body)
  const body = res.json()
  t.same(body.feature, { name: 'volume', version: 1, dtype: 'float64' })
  t.equal(body.entity_id, null)
  t.equal(body.buckets.length, 3)
  for (let h = 0; h < 3; h++) {
    t.equal(body.buckets[h].start, iso(T0 + h * H))
    expectStats(t, body.buckets[h], [...ctx.values.get(`${h}/BTC`)!, ...ctx.values.get(`${h}/ETH`)!], `hour ${h}`)
  }
  const btc = (await get(ctx, `?bucket=1h&entity_id=BTC&from=${iso(T0)}&to=${iso(T0 + 3 * H)}`)).json()
  for (let h = 0; h < 3; h++) expectStats(t, btc.buckets[h], ctx.values.get(`${h}/BTC`)!, `BTC hour ${h}`)

  const day = (await get(ctx, `?bucket=1d&from=${iso(T0)}&to=${iso(T0 + 24 * H)}`)).json()
  t.equal(day.buckets.length, 1)
  t.equal(day.buckets[0].start, iso(T0))
  expectStats(t, day.buckets[0], [...ctx.values.values()].flat(), 'day')

  // from and to round outwards to bucket boundaries; empty buckets are left out
  const rounded = (await get(ctx, `?bucket=1h&from=${iso(T0 + 30 * 60_000)}&to=${iso(T0 + 2 * H + 1)}`)).json()
  t.equal(rounded.from, iso(T0))
  t.equal(rounded.to, iso(T0 + 3 * H))
  t.equal(rounded.buckets.length, 3)
  t.equal((await get(ctx, `?bucket=1h&from=${iso(T0 + 10 * H)}&to=${iso(T0 + 20 * H)}`)).json().buckets.length, 0)
  t.equal((await get(ctx, `?bucket=1h&version=1&from=${iso(T0)}&to=${iso(T0 + H)}`)).json().buckets.length, 1)
})

t.test('bad requests', async (t) => {
  const ctx = await withValues(t)
  const cases: Array<[string, string, number, RegExp]> = [
    ['/v1/features/nope/stats', 'unknown feature', 404, /nope/],
    ['/v1/features/old_one/stats', 'no active version', 404, /no active version/],
    ['/v1/features/volume/stats?version=7', 'unknown version', 404, /volume@7/],
    ['/v1/features/volume/stats?bucket=5m', 'bad bucket', 400, /bucket/],
    ['/v1/features/volume/stats?from=2023-01-02T00:00:00Z&to=2023-01-01T00:00:00Z', 'to before from', 400, /to must be later/],
    ['/v1/features/volume/stats?from=2000-01-01T00:00:00Z&to=2023-01-01T00:00:00Z', 'too many buckets', 400, /at most 10000/],
    ['/v1/features/volume/stats?from=2023-01-01T00:00:00', 'no zone', 400, /from.*time zone/],
    ['/v1/features/Volume/stats', 'bad name', 400, /name/],
    ['/v1/features/volume/stats?colour=red', 'unknown parameter', 400, /colour/],
  ]
  for (const [url, name, status, detail] of cases) {
    const res = await ctx.app.inject({ method: 'GET', url })
    t.equal(res.statusCode, status, `${name}: ${res.body.slice(0, 200)}`)
    t.match(res.body, detail, name)
  }
})

t.test('postgres mode: materialized up to the watermark, live after it; values ingested a second ago are in', await onlyIn('postgres'), async (t) => {
  const ctx = await withValues(t, {}, RECENT)
  const q = `?bucket=1h&from=${iso(RECENT)}&to=${iso(Date.now() + 2 * H)}`
  const before = (await get(ctx, q)).json()
  t.equal(before.materialized_until, null, 'nothing materialized yet: all live')

  const report = await ctx.app.services.stats.refreshNow()
  t.same(report!.map((r) => r.view), ['feature_stats_hourly', 'feature_stats_daily', 'feature_drift_daily'])
  const [{ n }] = await ctx.sql<{ n: number }[]>`SELECT count(*)::int8 AS n FROM feature_stats_hourly`
  t.equal(n, 6, 'the view holds the 3 hours x 2 entities')
  const after = (await get(ctx, q)).json()
  t.ok(after.materialized_until, 'a watermark is set')
  t.ok(Date.parse(after.materialized_until) <= Date.now() - H + 1000, 'one bucket behind now')
  t.same(after.buckets, before.buckets, 'materialized and live answers agree')

  // a value of the current hour, ingested now, is in the answer at once (live part)
  const now = Date.now()
  await appendValues(ctx.sql, [{ featureId: ctx.f, entityId: 'BTC', eventTimeMs: now, num: 42 }])
  const fresh = (await get(ctx, q)).json()
  const last = fresh.buckets[fresh.buckets.length - 1]
  t.equal(last.start, iso(Math.floor(now / H) * H))
  t.match(last, { count: 1, mean: 42, min: 42, max: 42 })
  const freshDay = (await get(ctx, `?bucket=1d&from=${iso(RECENT)}&to=${iso(now + 24 * H)}`)).json()
  t.equal(freshDay.buckets[freshDay.buckets.length - 1].count, 1, 'the daily level too')

  // a late correction of a materialized hour appears at the next refresh
  await appendValues(ctx.sql, [{ featureId: ctx.f, entityId: 'BTC', eventTimeMs: RECENT, num: 1 }])
  await ctx.app.services.stats.refreshNow()
  t.equal((await get(ctx, q)).json().buckets[0].count, 9, 'the correction counts as a stored row')

  // the background refresher: every STATS_REFRESH_SECONDS, one instance at a time
  const bg = await buildTestApp(t, { url: ctx.url, backgroundJobs: true, config: { STATS_REFRESH_SECONDS: 1, MONITOR_POLL_MS: 60_000 } })
  const [{ at }] = await bg.sql<{ at: Date }[]>`SELECT max(refreshed_at) AS at FROM stats_refresh_state`
  await new Promise((resolve) => setTimeout(resolve, 2500))
  const [{ at: later }] = await bg.sql<{ at: Date }[]>`SELECT max(refreshed_at) AS at FROM stats_refresh_state`
  t.ok(later.getTime() > at.getTime(), 'refreshed in the background')
})

async function policyJobs (sql: Sql): Promise<Record<string, string>> {
  const rows = await sql<{ view: string, every: string }[]>`
    SELECT ca.view_name::text AS view, j.schedule_interval::text AS every
    FROM timescaledb_information.jobs j
    JOIN timescaledb_information.continuous_aggregates ca
      ON (ca.view_schema = j.hypertable_schema AND ca.view_name = j.hypertable_name)
      OR (ca.materialization_hypertable_schema = j.hypertable_schema AND ca.materialization_hypertable_name = j.hypertable_name)
    WHERE j.proc_name = 'policy_refresh_continuous_aggregate'`
  return Object.fromEntries(rows.map((r) => [r.view, r.every]))
}

t.test('TimescaleDB mode: refresh policies at start-up, real-time aggregation', await onlyIn('timescaledb'), async (t) => {
  const ctx = await withValues(t, {}, RECENT)
  t.equal(ctx.db.storageMode, 'timescaledb')
  t.same(await policyJobs(ctx.sql), { feature_stats_hourly: '00:05:00', feature_stats_daily: '00:05:00', feature_drift_daily: '00:05:00' })
  const log = pino({ level: 'silent' })
  await applyAggregatePolicies(ctx.sql, 'timescaledb', { ...ctx.config, STATS_REFRESH_SECONDS: 300 }, log)
  t.equal(Object.keys(await policyJobs(ctx.sql)).length, 3, 'idempotent: no second policy')
  await applyAggregatePolicies(ctx.sql, 'timescaledb', { ...ctx.config, STATS_REFRESH_SECONDS: 60 }, log)
  t.same(await policyJobs(ctx.sql), { feature_stats_hourly: '00:01:00', feature_stats_daily: '00:01:00', feature_drift_daily: '00:01:00' }, 'rescheduled')

  const q = `?bucket=1h&from=${iso(RECENT)}&to=${iso(Date.now() + 2 * H)}`
  const before = (await get(ctx, q)).json()
  t.equal(before.buckets.length, 3, 'real-time aggregation answers before any refresh')
  await refreshAggregate(ctx.sql, 'feature_stats_hourly')
  await refreshAggregate(ctx.sql, 'feature_stats_daily')
  const after = (await get(ctx, q)).json()
  t.ok(after.materialized_until, 'materialized')
  t.same(after.buckets, before.buckets, 'materialized and real-time answers agree')
  await appendValues(ctx.sql, [{ featureId: ctx.f, entityId: 'BTC', eventTimeMs: Date.now(), num: 42 }])
  const fresh = (await get(ctx, q)).json()
  t.match(fresh.buckets[fresh.buckets.length - 1], { count: 1, mean: 42 })
})
