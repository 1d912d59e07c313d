import t from 'tap'
import { buildTestApp } from '../lib/helper.js'
import { appendValues, insertDefinition } from '../lib/fixtures.js'

/**
 * DB_POOL_MAX=1 is a valid setting: no request may wait for a second pooled connection while
 * it holds the one (a reserved read session, a transaction, the migration's connection).
 */
t.test('the service works on a pool of one connection: start-up, ingest, reads, joins, drift, runs', async (t) => {
  const ctx = await buildTestApp(t, { config: { DB_POOL_MAX: 1 } })
  const f = await insertDefinition(ctx.sql, { name: 'close_price' })
  const T0 = Date.UTC(2023, 0, 1)
  await appendValues(ctx.sql, Array.from({ length: 200 }, (_, i) => ({ featureId: f, entityId: 'A', eventTimeMs: T0 + i * 3_600_000, num: i % 17 })))
  const ts = await ctx.app.inject({ method: 'POST', url: '/v1/training-sets', payload: { features: ['close_price'], grid: { entities: ['A'], from: T0, to: T0 + 100 * 3_600_000, every: '1h' } } })
  t.equal(ts.statusCode, 200, ts.body.slice(0, 200))
  const dr = await ctx.app.inject({ method: 'POST', url: '/v1/drift/checks', payload: { feature: 'close_price', reference: { from: T0, to: T0 + 100 * 3_600_000 }, current: { from: T0 + 100 * 3_600_000, to: T0 + 200 * 3_600_000 } } })
  t.equal(dr.statusCode, 201, dr.body.slice(0, 200))
  const run = await ctx.app.inject({ method: 'POST', url: '/v1/pipeline-runs', payload: { name: 'r', features: ['close_price'], grid: { entities: ['A'], from: T0, to: T0 + 10 * 3_600_000, every: '1h' } } })
  t.ok(run.statusCode < 300, run.body.slice(0, 300))
  const rv = await ctx.app.inject({ method: 'POST', url: '/v1/retrieve', payload: { entities: ['A'], features: ['close_price'], as_of: T0 + 5 * 3_600_000 } })
  t.equal(rv.statusCode, 200)
  const on = await ctx.app.inject({ method: 'GET', url: '/v1/online/A?features=close_price' })
  t.equal(on.statusCode, 200)
  const ingest = await ctx.app.inject({ method: 'POST', url: '/v1/values', payload: { rows: [{ feature: 'close_price', entity_id: 'B', event_time: T0, value: 1 }] } })
  t.equal(ingest.statusCode, 200, ingest.body)
  const csv = await ctx.app.inject({ method: 'GET', url: '/v1/features/close_price/values', headers: { accept: 'text/csv' } })
  t.equal(csv.body.trimEnd().split('\n').length, 202, 'the streamed history: a header and 201 rows')
  const stats = await ctx.app.inject({ method: 'GET', url: `/v1/features/close_price/stats?from=${T0}&to=${T0 + 200 * 3_600_000}` })
  t.equal(stats.statusCode, 200)
})
