import t from 'tap'
import { buildTestApp } from '../lib/helper.js'
import { insertDefinition, appendValues } from '../lib/fixtures.js'
import { soundCutoff } from '../../db/knowledge.js'

const H = 3_600_000
const T0 = Date.UTC(2023, 5, 1)
const iso = (ms: number): string => new Date(ms).toISOString()

t.test('values at a past moment, as known at a past cutoff', async (t) => {
  const { app, sql } = await buildTestApp(t)
  const p1 = await insertDefinition(sql, { name: 'close_price', version: 1, ttl_ms: 2 * H })
  const p2 = await insertDefinition(sql, { name: 'close_price', version: 2 })
  const flag = await insertDefinition(sql, { name: 'halted', dtype: 'bool', validation: { nullable: true } })
  await appendValues(sql, [
    { featureId: p1, entityId: 'BTC', eventTimeMs: T0, num: 100 },
    { featureId: p2, entityId: 'BTC', eventTimeMs: T0, num: 200 },
    { featureId: p1, entityId: 'ETH', eventTimeMs: T0 - 5 * H, num: 10 },
    { featureId: flag, entityId: 'BTC', eventTimeMs: T0, num: null },
    { featureId: flag, entityId: 'ETH', eventTimeMs: T0, num: 1 },
  ])
  const k1 = await soundCutoff(sql)
  await appendValues(sql, [{ featureId: p1, entityId: 'BTC', eventTimeMs: T0, num: 101 }]) // a correction

  const ask = (body: Record<string, unknown>) => app.inject({ method: 'POST', url: '/v1/retrieve', payload: { entities: ['BTC', 'ETH', 'BTC', 'SOL'], features: ['close_price@1', 'close_price', 'halted'], as_of: iso(T0 + H), ...body } })
  const res = await ask({})
  t.equal(res.statusCode, 200, res.body)
  const body = res.json()
  t.same(body.features.map((f: { ref: string, version: number }) => `${f.ref}=${f.version}`), ['close_price@1=1', 'close_price=2', 'halted=1'])
  t.same(body.results.map((r: { entity_id: string }) => r.entity_id), ['BTC', 'ETH', 'BTC', 'SOL'], 'request order, duplicates kept')
  t.same(body.results[0].values, {
    'close_price@1': { value: 101, event_time: iso(T0), status: 'PRESENT' },
    close_price: { value: 200, event_time: iso(T0), status: 'PRESENT' },
    halted: { value: null, event_time: iso(T0), status: 'NULL_VALUE' },
  })
  t.same(body.results[1].values['close_price@1'], { value: null, event_time: null, status: 'OUTSIDE_TTL' })
  t.same(body.results[1].values.halted, { value: true, event_time: iso(T0), status: 'PRESENT' })
  t.same(body.results[3].values.close_price, { value: null, event_time: null, status: 'NOT_FOUND' })

  const before = await ask({ as_of_system_time: k1 })
  t.equal(before.json().results[0].values['close_price@1'].value, 100, 'as of k1 the correction is unknown')
  t.equal(before.json().as_of_system_time, iso(k1))
  const earlier = await ask({ as_of: iso(T0 - 1) })
  t.equal(earlier.json().results[0].values['close_price@1'].status, 'NOT_FOUND')
  const future = await ask({ as_of_system_time: '9999-01-01T00:00:00Z' })
  t.ok(Date.parse(future.json().as_of_system_time) <= Date.now(), 'a future cutoff is taken as now')
})

t.test('bad requests', async (t) => {
  const { app, sql } = await buildTestApp(t)
  await insertDefinition(sql, { name: 'close_price' })
  const post = (payload: Record<string, unknown>) => app.inject({ method: 'POST', url: '/v1/retrieve', payload })
  let res = await post({ entities: ['BTC'], features: ['close_price', 'nope'], as_of: '2023-01-01T00:00:00Z' })
  t.equal(res.statusCode, 422)
  t.match(res.json(), { errors: [{ path: '/body/features/1', field: 'features', rule: 'unknown_feature' }] })
  res = await post({ entities: ['BTC'], features: ['close_price'], as_of: '2023-01-01T00:00:00' })
  t.equal(res.statusCode, 422)
  t.match(res.json().detail, /no time zone/)
  res = await post({ entities: [], features: ['close_price'], as_of: 0 })
  t.equal(res.statusCode, 400)
  res = await post({ entities: ['BTC'], features: ['close_price'], as_of: '2023-01-01T00:00:00Z', as_of_system_time: 'now' })
  t.equal(res.statusCode, 422)
})

t.test('the pairs table is made once per connection and reused empty by the next requests', async (t) => {
  // DB_POOL_MAX 5 in test apps: at most 5 connections, so at most 5 tables however many requests
  const { app, sql } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'px' })
  await appendValues(sql, [{ featureId: f, entityId: 'A', eventTimeMs: T0, num: 1 }, { featureId: f, entityId: 'B', eventTimeMs: T0, num: 2 }])
  const tables = async (): Promise<number[]> => (await sql<{ oid: number }[]>`
    SELECT c.oid::int8 AS oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = 'pit_pairs' AND n.nspname LIKE 'pg_temp_%' AND c.relpersistence = 't'`).map((r) => r.oid)
  const seen = new Set<number>()
  for (let i = 0; i < 12; i++) {
    // alternate the entities: a row left over from one request would change the next answer
    const entities = i % 2 === 0 ? ['A', 'B'] : ['B']
    const res = await app.inject({ method: 'POST', url: '/v1/retrieve', payload: { entities, features: ['px'], as_of: iso(T0 + H) } })
    t.equal(res.statusCode, 200, res.body)
    t.same(res.json().results.map((r: { entity_id: string, values: { px: { value: number } } }) => [r.entity_id, r.values.px.value]), i % 2 === 0 ? [['A', 1], ['B', 2]] : [['B', 2]], `request ${i}`)
    for (const oid of await tables()) seen.add(oid)
  }
  t.ok(seen.size >= 1, 'a pairs table outlives its request on its connection')
  t.ok(seen.size <= 5, `one table per connection, not one per request (${seen.size} for 12 requests)`)
})
