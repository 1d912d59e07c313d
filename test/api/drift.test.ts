import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import { buildTestApp, type TestContext } from '../lib/helper.js'
import { appendValues, insertDefinition } from '../lib/fixtures.js'
import { judgeDrift, summarise, quantileFractions } from '../../src/domain/drift-stats.js'
import { driftSummary } from '../../db/drift.js'
import { seededRandom, standardNormal } from '../lib/random.js'

const H = 3_600_000
const T0 = Date.UTC(2023, 0, 1)
const iso = (ms: number): string => new Date(ms).toISOString()

/** Deterministic normal-ish numbers (mulberry32 + Box-Muller). */
function normals (seed: number, n: number, mean: number, sd: number): number[] {
  const rand = seededRandom(seed)
  return Array.from({ length: n }, () => mean + sd * standardNormal(rand))
}

interface Fixture { ctx: TestContext, featureId: number, ref: number[], cur: number[] }

/** `volume` with 300 hourly values of BTC from T0 (reference), then 200 shifted ones (current), and 50 of ETH. */
async function withData (t: Test): Promise<Fixture> {
  const ctx = await buildTestApp(t)
  const featureId = await insertDefinition(ctx.sql, { name: 'volume' })
  await insertDefinition(ctx.sql, { name: 'symbol_name', dtype: 'string' })
  const ref = normals(1, 300, 100, 10)
  const cur = normals(2, 200, 108, 14)
  await appendValues(ctx.sql, [
    ...ref.map((v, i) => ({ featureId, entityId: 'BTC', eventTimeMs: T0 + i * H, num: v })),
    ...cur.map((v, i) => ({ featureId, entityId: 'BTC', eventTimeMs: T0 + (300 + i) * H, num: v })),
    ...normals(3, 50, 5, 1).map((v, i) => ({ featureId, entityId: 'ETH', eventTimeMs: T0 + i * H, num: v })),
  ])
  return { ctx, featureId, ref, cur }
}

const refWindow = { from: iso(T0), to: iso(T0 + 300 * H) }
const curWindow = { from: iso(T0 + 300 * H), to: iso(T0 + 500 * H) }

t.test('a window check: statistics, verdicts and bins match the in-memory computation', async (t) => {
  const { ctx, ref, cur } = await withData(t)
  const res = await ctx.app.inject({ method: 'POST', url: '/v1/drift/checks', payload: { feature: 'volume', entity_id: 'BTC', reference: refWindow, current: curWindow } })
  t.equal(res.statusCode, 201, res.body)
  const body = res.json()
  t.equal(body.status, 'ok')
  t.same(body.feature, { name: 'volume', version: 1 })
  t.equal(body.reference.count, 300)
  t.equal(body.current.count, 200)
  t.equal(body.min_samples, 30)
  t.match(body.check_id, /^[0-9a-f-]{36}$/)
  t.same(body.results.map((r: { method: string }) => r.method), ['psi', 'ks', 'js', 'wasserstein'])

  const expected = judgeDrift(summarise(ref, cur), ['psi', 'ks', 'js', 'wasserstein'])
  for (const e of expected.results) {
    const got = body.results.find((r: { method: string }) => r.method === e.method)
    t.ok(Math.abs(got.statistic - e.statistic!) < 1e-9, `${e.method}: SQL ${got.statistic} = in memory ${e.statistic}`)
    t.equal(got.drifted, e.drifted, `${e.method} verdict`)
    t.equal(got.threshold, e.threshold)
    if (e.method === 'ks') t.ok(Math.abs(got.p_value - e.p_value!) < 1e-9, 'KS p-value')
  }
  t.equal(body.bins.length, 10)
  t.same(body.bins.map((b: { reference_count: number }) => b.reference_count), expected.bins.map((b) => b.reference_count))
  t.same(body.bins.map((b: { current_count: number }) => b.current_count), expected.bins.map((b) => b.current_count))
  for (let i = 1; i < 10; i++) t.ok(Math.abs(body.bins[i].lower - expected.bins[i].lower!) < 1e-9, `edge ${i}`)
  t.equal(body.drifted, true, 'a mean shift of 0.8 sd is drift')
  t.ok(Math.abs(body.reference.mean - ref.reduce((a, b) => a + b, 0) / 300) < 1e-9)

  // written to the log: one row per method, same check id
  const logs = await ctx.app.inject({ method: 'GET', url: `/v1/drift/logs?check_id=${body.check_id}` })
  t.equal(logs.statusCode, 200)
  t.equal(logs.json().items.length, 4)
  const psiLog = logs.json().items.find((r: { method: string }) => r.method === 'psi')
  t.equal(psiLog.details.bins.length, 10, 'the log keeps the bins')
  t.equal(psiLog.reference.count, 300)
  t.equal(psiLog.entity_id, 'BTC')
})

t.test('the SQL summary equals the in-memory summary, across entities and with ties', async (t) => {
  const { ctx, featureId } = await withData(t)
  // ties and equal quantiles: integers 0..4 many times over
  const f2 = await insertDefinition(ctx.sql, { name: 'level', dtype: 'int64' })
  const a = Array.from({ length: 100 }, (_, i) => i % 5)
  const b = Array.from({ length: 80 }, (_, i) => (i * 7) % 4)
  await appendValues(ctx.sql, [
    ...a.map((v, i) => ({ featureId: f2, entityId: `e${i % 3}`, eventTimeMs: T0 + i * H, num: v })),
    ...b.map((v, i) => ({ featureId: f2, entityId: `e${i % 3}`, eventTimeMs: T0 + (1000 + i) * H, num: v })),
  ])
  const k = Date.now() + 1000
  const sqlSide = await driftSummary(ctx.sql,
    { kind: 'window', featureId: f2, fromMs: T0, toMs: T0 + 1000 * H, cutoffMs: k },
    { kind: 'window', featureId: f2, fromMs: T0 + 1000 * H, toMs: T0 + 2000 * H, cutoffMs: k }, quantileFractions())
  const mem = summarise(a, b)
  t.same(sqlSide.edges, mem.edges)
  t.same(sqlSide.referenceCounts, mem.referenceCounts)
  t.same(sqlSide.currentCounts, mem.currentCounts)
  t.ok(Math.abs(sqlSide.ks! - mem.ks!) < 1e-12, `KS ${sqlSide.ks} = ${mem.ks}`)
  t.ok(Math.abs(sqlSide.wasserstein! - mem.wasserstein!) < 1e-12, `W1 ${sqlSide.wasserstein} = ${mem.wasserstein}`)

  // all entities of volume: BTC and ETH together
  const all = await ctx.app.inject({ method: 'POST', url: '/v1/drift/checks', payload: { feature: 'volume', reference: refWindow, current: curWindow, methods: ['ks'] } })
  t.equal(all.json().reference.count, 350, 'without entity_id every entity counts')
  t.equal(all.json().entity_id, null)
  void featureId
})

t.test('windows read the latest correction known at the cutoff; nulls and non-finite values are left out', async (t) => {
  const ctx = await buildTestApp(t)
  const f = await insertDefinition(ctx.sql, { name: 'price', validation: { allow_non_finite: true } })
  const base = Array.from({ length: 40 }, (_, i) => ({ featureId: f, entityId: 'X', eventTimeMs: T0 + i * H, num: 1 + (i % 4) }))
  await appendValues(ctx.sql, [...base, ...base.map((r) => ({ ...r, eventTimeMs: r.eventTimeMs + 100 * H }))])
  const check = async (asOf?: string) => (await ctx.app.inject({
    method: 'POST', url: '/v1/drift/checks',
    payload: { feature: 'price', reference: { from: iso(T0), to: iso(T0 + 40 * H) }, current: { from: iso(T0 + 100 * H), to: iso(T0 + 140 * H) }, methods: ['ks', 'wasserstein'], ...(asOf ? { as_of_system_time: asOf } : {}) },
  })).json()
  const before = await check()
  t.equal(before.results[0].statistic, 0, 'identical samples')
  const beforeCorrection = before.knowledge_cutoff
  await new Promise((resolve) => setTimeout(resolve, 5))

  // corrections in the current window: 10 values become 100, 2 become null, 1 becomes NaN
  await appendValues(ctx.sql, [
    ...Array.from({ length: 10 }, (_, i) => ({ featureId: f, entityId: 'X', eventTimeMs: T0 + (100 + i) * H, num: 100 })),
    { featureId: f, entityId: 'X', eventTimeMs: T0 + 120 * H, num: null },
    { featureId: f, entityId: 'X', eventTimeMs: T0 + 121 * H, num: null },
    { featureId: f, entityId: 'X', eventTimeMs: T0 + 122 * H, num: Number.NaN },
  ])
  const after = await check()
  t.equal(after.current.count, 37, 'a correction replaces its value; null and NaN corrections remove it')
  t.equal(after.current.max, 100)
  t.ok(after.results[0].statistic > 0.2, 'the corrections show')
  const asBefore = await check(beforeCorrection)
  t.equal(asBefore.current.count, 40, 'as_of_system_time reads the values known then')
  t.equal(asBefore.results[0].statistic, 0)
  t.equal(asBefore.knowledge_cutoff, beforeCorrection)
})

t.test('too few values: an insufficient-data result, logged, without statistics', async (t) => {
  const { ctx } = await withData(t)
  const res = await ctx.app.inject({
    method: 'POST', url: '/v1/drift/checks',
    payload: { feature: 'volume', entity_id: 'ETH', reference: refWindow, current: curWindow },
  })
  t.equal(res.statusCode, 201)
  const body = res.json()
  t.equal(body.status, 'insufficient_data')
  t.equal(body.drifted, null)
  t.equal(body.current.count, 0)
  t.match(body.note, /current window has 0 numeric values.*at least 30/)
  for (const r of body.results) { t.equal(r.statistic, null); t.equal(r.drifted, null); t.equal(r.status, 'insufficient_data') }
  const logs = (await ctx.app.inject({ method: 'GET', url: '/v1/drift/logs?status=insufficient_data' })).json()
  t.equal(logs.items.length, 4)
  t.equal(logs.items[0].drifted, null)

  // the minimum is configurable
  const small = await buildTestApp(t, { url: ctx.url, config: { DRIFT_MIN_SAMPLES: 5 } })
  const few = await small.app.inject({
    method: 'POST', url: '/v1/drift/checks',
    payload: { feature: 'volume', entity_id: 'BTC', reference: { from: iso(T0), to: iso(T0 + 6 * H) }, current: { from: iso(T0 + 300 * H), to: iso(T0 + 306 * H) } },
  })
  t.equal(few.json().status, 'ok', 'DRIFT_MIN_SAMPLES=5 gives a verdict on 6 values')
})

t.test('thresholds and methods are overridable', async (t) => {
  const { ctx } = await withData(t)
  const res = await ctx.app.inject({
    method: 'POST', url: '/v1/drift/checks',
    payload: { feature: 'volume@1', entity_id: 'BTC', reference: refWindow, current: curWindow, methods: ['psi', 'wasserstein'], thresholds: { psi: 50, wasserstein: 50 } },
  })
  t.equal(res.statusCode, 201)
  const body = res.json()
  t.same(body.results.map((r: { method: string }) => r.method), ['psi', 'wasserstein'])
  t.same(body.results.map((r: { threshold: number }) => r.threshold), [50, 50])
  t.equal(body.drifted, false)
  t.ok(body.results[1].distance > 0, 'the raw Wasserstein distance is reported too')
})

t.test('bad requests are 4xx naming the field; nothing is logged', async (t) => {
  const { ctx } = await withData(t)
  const post = (payload: Record<string, unknown>) => ctx.app.inject({ method: 'POST', url: '/v1/drift/checks', payload })
  const good = { feature: 'volume', reference: refWindow, current: curWindow }
  const cases: Array<[string, Record<string, unknown>, number, RegExp]> = [
    ['unknown feature', { ...good, feature: 'nope' }, 422, /nope/],
    ['unknown version', { ...good, feature: 'volume@9' }, 422, /volume@9/],
    ['bad reference', { ...good, feature: 'Bad Name' }, 400, /feature/],
    ['string feature', { ...good, feature: 'symbol_name' }, 422, /numeric/],
    ['to before from', { ...good, current: { from: curWindow.to, to: curWindow.from } }, 422, /current\/to/],
    ['empty window', { ...good, reference: { from: refWindow.from, to: refWindow.from } }, 422, /reference\/to/],
    ['no zone', { ...good, current: { from: '2023-01-01T00:00:00', to: curWindow.to } }, 422, /current\/from.*time zone/],
    ['no reference', { ...good, reference: {} }, 422, /reference/],
    ['half a window', { ...good, reference: { from: refWindow.from } }, 422, /reference/],
    ['window and run', { ...good, reference: { ...refWindow, pipeline_run: randomUUID() } }, 422, /not both/],
    ['bad run id', { ...good, reference: { pipeline_run: 'run-1' } }, 422, /pipeline_run/],
    ['unknown run', { ...good, reference: { pipeline_run: randomUUID() } }, 422, /Pipeline run/],
    ['unknown method', { ...good, methods: ['chi2'] }, 400, /methods/],
    ['no methods', { ...good, methods: [] }, 400, /methods/],
    ['bad threshold', { ...good, thresholds: { ks: 2 } }, 400, /thresholds\/ks/],
    ['infinite threshold', { ...good, thresholds: { psi: 'Infinity' } }, 400, /thresholds\/psi/],
    ['huge threshold', { ...good, thresholds: { wasserstein: '1e400' } }, 400, /thresholds\/wasserstein/],
    ['bad entity id', { ...good, entity_id: 'a\u0000b' }, 422, /entity_id/],
    ['unknown threshold', { ...good, thresholds: { chi2: 1 } }, 400, /chi2/],
    ['unknown field', { ...good, colour: 'red' }, 400, /colour/],
    ['missing current', { feature: 'volume', reference: refWindow }, 400, /current/],
  ]
  for (const [name, payload, status, detail] of cases) {
    const res = await post(payload)
    t.equal(res.statusCode, status, `${name}: ${res.statusCode} ${res.body.slice(0, 200)}`)
    t.match(res.headers['content-type'], /application\/problem\+json/, name)
    t.match(res.body, detail, `${name} says what is wrong`)
  }
  const logs = (await ctx.app.inject({ method: 'GET', url: '/v1/drift/logs' })).json()
  t.equal(logs.items.length, 0, 'no check was logged')
})

t.test('drift logs: filters, time range and cursor pagination', async (t) => {
  const { ctx } = await withData(t)
  const run = async (payload: Record<string, unknown>) => (await ctx.app.inject({ method: 'POST', url: '/v1/drift/checks', payload })).json()
  const first = await run({ feature: 'volume', entity_id: 'BTC', reference: refWindow, current: curWindow, methods: ['psi', 'ks'] })
  const calm = await run({ feature: 'volume', entity_id: 'BTC', reference: refWindow, current: refWindow, methods: ['psi', 'ks'] })
  await run({ feature: 'volume', reference: refWindow, current: curWindow, methods: ['js'] })
  const get = async (q: string) => {
    const res = await ctx.app.inject({ method: 'GET', url: `/v1/drift/logs${q}` })
    t.equal(res.statusCode, 200, `${q}: ${res.body.slice(0, 200)}`)
    return res.json()
  }
  t.equal((await get('')).items.length, 5)
  t.equal((await get('?method=psi')).items.length, 2)
  t.equal((await get('?entity_id=BTC')).items.length, 4)
  t.equal((await get('?drifted=false')).items.length, 2, 'the calm check')
  t.ok((await get('?drifted=true')).items.every((r: { check_id: string }) => r.check_id !== calm.check_id))
  t.equal((await get('?feature=volume@1')).items.length, 5)
  t.equal((await get('?feature=volume@2')).items.length, 0)
  t.equal((await get('?feature=other')).items.length, 0)
  const newest = (await get('')).items
  t.equal(newest[0].method, 'js', 'newest first')
  t.equal((await get(`?from=${encodeURIComponent(first.checked_at)}&to=${encodeURIComponent(first.checked_at)}`)).items.length, 0, 'to is exclusive')
  t.equal((await get(`?to=${encodeURIComponent(new Date(Date.parse(first.checked_at) + 1).toISOString())}`)).items.length, 2, 'the first check only')

  // pagination: pages of 2 cover all 5 rows exactly once
  const seen: number[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const page: { items: Array<{ id: number }>, next_cursor: string | null } = await get(`?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
    seen.push(...page.items.map((r) => r.id))
    cursor = page.next_cursor
    pages++
  } while (cursor && pages < 10)
  t.equal(pages, 3)
  t.same([...seen].sort((a, b) => a - b), newest.map((r: { id: number }) => r.id).sort((a: number, b: number) => a - b))
  t.equal(new Set(seen).size, 5)

  for (const q of ['?cursor=zzz', '?method=chi2', '?drifted=maybe', '?from=yesterday', '?check_id=x', '?monitor_id=100000000000000000000']) {
    const res = await ctx.app.inject({ method: 'GET', url: `/v1/drift/logs${q}` })
    t.equal(res.statusCode, 400, `${q} is a 400`)
    t.ok(res.json().errors?.some((e: { path: string }) => e.path === `/querystring/${q.slice(1, q.indexOf('='))}`), `${q}: the problem names the parameter`)
  }
})

t.test('daily drift summary counts checks made a second ago', async (t) => {
  const { ctx } = await withData(t)
  for (let i = 0; i < 3; i++) {
    await ctx.app.inject({ method: 'POST', url: '/v1/drift/checks', payload: { feature: 'volume', entity_id: 'BTC', reference: refWindow, current: i === 0 ? refWindow : curWindow, methods: ['psi'] } })
  }
  const res = await ctx.app.inject({ method: 'GET', url: '/v1/drift/daily?feature=volume' })
  t.equal(res.statusCode, 200, res.body)
  const items = res.json().items
  t.equal(items.length, 1)
  t.match(items[0], { feature: 'volume', method: 'psi', checks: 3, drifted: 2, insufficient_data: 0 })
  t.ok(items[0].max_statistic >= items[0].mean_statistic && items[0].mean_statistic >= items[0].min_statistic)
  // postgres mode: after a refresh the materialized days and the live ones still add up to the same answer
  await ctx.app.services.stats.refreshNow()
  t.same((await ctx.app.inject({ method: 'GET', url: '/v1/drift/daily?feature=volume' })).json().items, items, 'the same after a refresh')
  t.equal((await ctx.app.inject({ method: 'GET', url: '/v1/drift/daily?feature=volume&method=ks' })).json().items.length, 0)
  t.equal((await ctx.app.inject({ method: 'GET', url: '/v1/drift/daily?from=2020-01-02T00:00:00Z&to=2020-01-01T00:00:00Z' })).statusCode, 400)
})

t.test('a pipeline run\'s dataset as the reference: its pinned version, cutoff, ttl and grid', async (t) => {
  const { ctx, featureId, ref, cur } = await withData(t)
  const cutoff = new Date(Date.now() - 1)
  await new Promise((resolve) => setTimeout(resolve, 5))
  // corrections after the run's cutoff are not part of its dataset
  await appendValues(ctx.sql, ref.slice(0, 100).map((_, i) => ({ featureId, entityId: 'BTC', eventTimeMs: T0 + i * H, num: 1e6 })))
  const insertRun = async (spec: Record<string, unknown>, pit = 'event', features = [{ name: 'volume', version: 1, id: featureId }]) => {
    const id = randomUUID()
    await ctx.sql`
      INSERT INTO pipeline_runs (id, started_at, name, status, features, point_in_time, cutoff, entity_spec)
      VALUES (${id}, now(), 'train', 'succeeded', ${ctx.sql.json(features as never)}, ${pit}, ${cutoff}, ${ctx.sql.json(spec as never)})`
    return id
  }
  // inline rows: every reference hour + 30 min (the value of that hour), plus one row before any value
  const rowsRun = await insertRun({ type: 'rows', row_count: 301, extra_columns: [], min_event_time: null, max_event_time: null })
  const rows = [...ref.map((_, i) => ({ e: 'BTC', t: T0 + i * H + 30 * 60_000 })), { e: 'BTC', t: T0 - H }]
  await ctx.sql`
    INSERT INTO pipeline_run_entities (run_id, ord, entity_id, event_time)
    SELECT ${rowsRun}::uuid, o - 1, e, t FROM unnest(${rows.map((r) => r.e)}::text[], ${rows.map((r) => new Date(r.t).toISOString())}::timestamptz[]) WITH ORDINALITY AS u(e, t, o)`

  const check = async (runId: string, extra: Record<string, unknown> = {}) => ctx.app.inject({
    method: 'POST', url: '/v1/drift/checks', payload: { feature: 'volume', entity_id: 'BTC', reference: { pipeline_run: runId }, current: curWindow, ...extra },
  })
  const res = await check(rowsRun)
  t.equal(res.statusCode, 201, res.body)
  const body = res.json()
  t.equal(body.reference.count, 300, 'one value per entity row that has one, as known at the run\'s cutoff')
  t.equal(body.reference.pipeline_run, rowsRun)
  t.equal(body.reference.point_in_time, 'event')
  t.equal(body.reference.feature_version, 1)
  t.equal(body.reference.cutoff, cutoff.toISOString())
  const expected = judgeDrift(summarise(ref, cur), ['psi', 'ks', 'js', 'wasserstein'])
  for (const e of expected.results) {
    const got = body.results.find((r: { method: string }) => r.method === e.method)
    t.ok(Math.abs(got.statistic - e.statistic!) < 1e-9, `${e.method} over the run's dataset`)
  }

  // a grid run over the same hours (to inclusive), entities BTC and ETH, entity filter BTC
  const gridRun = await insertRun({ type: 'grid', row_count: 600, grid: { entities: ['BTC', 'ETH'], from: iso(T0 + 30 * 60_000), to: iso(T0 + 299 * H + 30 * 60_000), every: '1h' } })
  const grid = (await check(gridRun)).json()
  t.equal(grid.reference.count, 300)
  t.ok(Math.abs(grid.results[0].statistic - body.results[0].statistic) < 1e-12, 'the grid gives the same dataset')
  const gridAll = (await ctx.app.inject({ method: 'POST', url: '/v1/drift/checks', payload: { feature: 'volume', reference: { pipeline_run: gridRun }, current: curWindow, methods: ['ks'] } })).json()
  t.equal(gridAll.reference.count, 600, 'without entity_id: every row of the grid (ETH\'s last value carries forward: no ttl)')

  // a ttl shorter than the 30 minutes between value and row: every row is OUTSIDE_TTL
  const ttlFeature = await insertDefinition(ctx.sql, { name: 'fresh', ttl_ms: 10 * 60_000 })
  await appendValues(ctx.sql, ref.map((v, i) => ({ featureId: ttlFeature, entityId: 'BTC', eventTimeMs: T0 + i * H, num: v })))
  const ttlRun = await insertRun({ type: 'rows', row_count: 0 }, 'event', [{ name: 'fresh', version: 1, id: ttlFeature }])
  await ctx.sql`INSERT INTO pipeline_run_entities (run_id, ord, entity_id, event_time) SELECT ${ttlRun}::uuid, g, 'BTC', ${new Date(T0 + 30 * 60_000)}::timestamptz + g * interval '1 hour' FROM generate_series(0, 99) g`
  const ttl = (await ctx.app.inject({ method: 'POST', url: '/v1/drift/checks', payload: { feature: 'fresh', reference: { pipeline_run: ttlRun }, current: refWindow } })).json()
  t.equal(ttl.reference.count, 0, 'values older than the ttl are not in the dataset')
  t.equal(ttl.status, 'insufficient_data')

  // "known" mode: a row sees only what was ingested by its own time (everything here was ingested after)
  const knownRun = await insertRun({ type: 'rows', row_count: 0 }, 'known')
  await ctx.sql`INSERT INTO pipeline_run_entities (run_id, ord, entity_id, event_time) SELECT ${knownRun}::uuid, g, 'BTC', ${new Date(T0 + 30 * 60_000)}::timestamptz + g * interval '1 hour' FROM generate_series(0, 99) g`
  t.equal((await check(knownRun)).json().reference.count, 0, 'point_in_time known: nothing was known in 2023')

  const other = await check(ttlRun)
  t.equal(other.statusCode, 422, 'the run did not use volume')
  t.match(other.json().detail, /did not use feature 'volume'.*fresh@1/)
})
