import t from 'tap'
import { buildTestApp } from '../lib/helper.js'
import { findNul } from '../../src/plugins/errors.js'

/**
 * What a caller reads in a 4xx: the field, the rule and, for a choice among fixed values, the
 * values allowed, said once; a NUL character (which PostgreSQL text cannot hold) is named where
 * it is, not only in the database's words.
 */
t.test('schema failures name the field and the rule; a choice lists its values once', async (t) => {
  const { app } = await buildTestApp(t, { defaults: true })
  const res = await app.inject({ method: 'POST', url: '/v1/training-sets', payload: { features: ['close_price'], point_in_time: 'now', grid: { entities: ['BTCUSDT'], from: '2023-01-01T00:00:00Z', to: '2023-01-01T02:00:00Z', every: '1h' } } })
  t.equal(res.statusCode, 400)
  t.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8')
  const body = res.json()
  t.same(body.errors, [{ path: '/body/point_in_time', field: 'point_in_time', rule: 'enum', message: 'must be one of "event", "known"' }])
  t.match(body.detail, /\/body\/point_in_time must be one of "event", "known"/)

  const stats = (await app.inject({ method: 'GET', url: '/v1/features/close_price/stats?bucket=5m' })).json()
  t.same(stats.errors, [{ path: '/querystring/bucket', field: 'bucket', rule: 'enum', message: 'must be one of "1h", "1d"' }])
  const lineage = (await app.inject({ method: 'GET', url: '/v1/features/close_price/lineage?direction=sideways' })).json()
  t.match(lineage.errors, [{ path: '/querystring/direction', field: 'direction', rule: 'enum', message: /^must be one of "upstream", "downstream", "both"$/ }])
  t.equal(lineage.errors.length, 1)

  const missing = (await app.inject({ method: 'POST', url: '/v1/features', payload: { name: 'x1', entity: 'symbol' } })).json()
  t.match(missing.errors, [{ path: '/body/dtype', field: 'dtype', rule: 'required' }])
  const row = (await app.inject({ method: 'POST', url: '/v1/values', payload: { rows: [{ feature: 'close_price', entity_id: 'BTCUSDT', event_time: '2023-01-01T00:00:00Z', value: 1 }, { feature: 'close_price', entity_id: 'BTCUSDT', event_time: '2023-01-01T00:00:00Z' }] } })).json()
  t.match(row.errors, [{ path: '/body/rows/1/value', row: 1, field: 'value', rule: 'required' }])
})

t.test('a NUL character the database refuses is named by its field', async (t) => {
  const { app, sql } = await buildTestApp(t, { defaults: true })
  const before = await sql`SELECT count(*)::int AS n FROM feature_definitions`
  const feature = await app.inject({ method: 'POST', url: '/v1/features', payload: { name: 'nul_desc', entity: 'symbol', dtype: 'float64', description: 'a\u0000b' } })
  t.equal(feature.statusCode, 400)
  t.match(feature.json(), { detail: /\/body\/description contains a NUL character/, errors: [{ path: '/body/description', field: 'description', rule: 'no_nul_character' }] })
  t.same(await sql`SELECT count(*)::int AS n FROM feature_definitions`, before, 'nothing written')

  const search = await app.inject({ method: 'GET', url: '/v1/features?text=a%00b' })
  t.equal(search.statusCode, 400)
  t.match(search.json(), { errors: [{ path: '/querystring/text', field: 'text', rule: 'no_nul_character' }] })

  const key = await app.inject({ method: 'POST', url: '/v1/api-keys', payload: { name: 'k\u0000', scopes: ['read'] } })
  t.equal(key.statusCode, 400)
  t.match(key.json(), { errors: [{ path: '/body/name', field: 'name' }] })
})

t.test('findNul: params, query, then body; keys too; JSON pointer escapes', async (t) => {
  t.equal(findNul({ params: { name: 'ok' }, query: {}, body: { a: [{ b: 'x' }, { 'c/d': 'y\u0000' }] } }), '/body/a/1/c~1d')
  t.equal(findNul({ params: {}, query: { q: ['a', 'b\u0000'] }, body: undefined }), '/querystring/q/1')
  t.equal(findNul({ params: {}, query: {}, body: { ['k\u0000']: 1 } }), '/body/k\u0000')
  t.equal(findNul({ params: { id: 'x\u0000' }, query: {}, body: { a: 'y\u0000' } }), '/params/id')
  t.equal(findNul({ params: {}, query: {}, body: { a: 1, b: null, c: true } }), undefined)
})

t.test('text that was not valid UTF-8, and lone surrogates, are refused in entity ids instead of stored altered', async (t) => {
  const { app, sql } = await buildTestApp(t, { defaults: true })
  // invalid UTF-8 bytes in the body decode to U+FFFD: two different ids would become one
  const raw = Buffer.concat([Buffer.from('{"rows":[{"feature":"close_price","entity_id":"U'), Buffer.from([0xff]), Buffer.from('","event_time":"2023-06-01T00:00:00Z","value":1}]}')])
  const bad = await app.inject({ method: 'POST', url: '/v1/values', payload: raw, headers: { 'content-type': 'application/json' } })
  t.equal(bad.statusCode, 422)
  t.match(bad.json().errors, [{ row: 0, field: 'entity_id', message: /U\+FFFD.*not valid UTF-8/ }])
  const lone = await app.inject({ method: 'POST', url: '/v1/values', payload: '{"rows":[{"feature":"close_price","entity_id":"LS\\ud800","event_time":"2023-06-01T00:00:00Z","value":1}]}', headers: { 'content-type': 'application/json' } })
  t.equal(lone.statusCode, 422)
  t.match(lone.json().errors, [{ row: 0, field: 'entity_id', message: /lone UTF-16 surrogate/ }])
  t.same(await sql`SELECT count(*)::int AS n FROM feature_snapshots`, [{ n: 0 }], 'nothing written')
  const ok = await app.inject({ method: 'POST', url: '/v1/values', payload: { rows: [{ feature: 'close_price', entity_id: 'BTC€🚀', event_time: '2023-06-01T00:00:00Z', value: 1 }] } })
  t.equal(ok.statusCode, 200, 'characters outside the BMP (surrogate pairs) are fine')
})

t.test('timestamps before year 100 are out of range, not read as 19xx', async (t) => {
  const { app, sql } = await buildTestApp(t, { defaults: true })
  const res = await app.inject({ method: 'POST', url: '/v1/values', payload: { rows: [{ feature: 'close_price', entity_id: 'YR0', event_time: '0050-06-01T00:00:00Z', value: 1 }] } })
  t.equal(res.statusCode, 422)
  t.match(res.json().errors, [{ row: 0, field: 'event_time', message: /out of range/ }])
  const asOf = await app.inject({ method: 'POST', url: '/v1/retrieve', payload: { entities: ['YR0'], features: ['close_price'], as_of: '0023-06-01T00:00:00Z' } })
  t.equal(asOf.statusCode, 422)
  t.same(await sql`SELECT count(*)::int AS n FROM feature_snapshots`, [{ n: 0 }], 'nothing written')
})
