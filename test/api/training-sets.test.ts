import t from 'tap'
import { buildTestApp } from '../lib/helper.js'
import { insertDefinition, appendValues } from '../lib/fixtures.js'
import { soundCutoff } from '../../db/knowledge.js'

const H = 3_600_000
const T0 = Date.UTC(2023, 0, 1)
const iso = (ms: number): string => new Date(ms).toISOString()

t.test('a training set joins each row with the value known at its time, in input order', async (t) => {
  const { app, sql } = await buildTestApp(t)
  const price = await insertDefinition(sql, { name: 'close_price' })
  const vol = await insertDefinition(sql, { name: 'volume', ttl_ms: 2 * H })
  const label = await insertDefinition(sql, { name: 'regime', dtype: 'string' })
  await appendValues(sql, [
    { featureId: price, entityId: 'BTC', eventTimeMs: T0, num: 100 },
    { featureId: price, entityId: 'BTC', eventTimeMs: T0 + H, num: 101 },
    { featureId: price, entityId: 'ETH', eventTimeMs: T0, num: 10 },
    { featureId: vol, entityId: 'BTC', eventTimeMs: T0, num: 5 },
    { featureId: vol, entityId: 'ETH', eventTimeMs: T0 + H, num: null },
    { featureId: label, entityId: 'BTC', eventTimeMs: T0, text: 'bull, "strong"' },
  ])
  const k1 = await soundCutoff(sql)
  // a correction of BTC's price at T0+H, learned later
  await appendValues(sql, [{ featureId: price, entityId: 'BTC', eventTimeMs: T0 + H, num: 102 }])

  const body = {
    features: ['close_price', 'volume', 'regime'],
    entity_rows: [
      { entity_id: 'BTC', event_time: iso(T0 + 3 * H), label: 1 },
      { entity_id: 'BTC', event_time: iso(T0 - 1), label: 0 },
      { entity_id: 'ETH', event_time: T0 + H, label: null },
      { entity_id: 'BTC', event_time: iso(T0 + H), label: 1 },
      { entity_id: 'BTC', event_time: iso(T0 + H), label: 1 },
      { entity_id: 'SOL', event_time: iso(T0 + H) },
    ],
    include_metadata: true,
  }
  const res = await app.inject({ method: 'POST', url: '/v1/training-sets', payload: body })
  t.equal(res.statusCode, 200, res.body)
  t.match(res.headers['content-type'], /application\/json/)
  t.equal(res.headers['x-row-count'], '6')
  t.equal(res.headers['x-feature-versions'], 'close_price@1,volume@1,regime@1')
  const out = res.json()
  t.same(out.columns, ['entity_id', 'event_time', 'label', 'close_price', 'volume', 'regime',
    'close_price__status', 'close_price__event_time', 'volume__status', 'volume__event_time', 'regime__status', 'regime__event_time'])
  const rows = out.rows
  t.equal(rows.length, 6)
  t.same(rows.map((r: { entity_id: string }) => r.entity_id), ['BTC', 'BTC', 'ETH', 'BTC', 'BTC', 'SOL'], 'input order, duplicates kept')
  t.match(rows[0], { close_price: 102, close_price__status: 'PRESENT', volume: null, volume__status: 'OUTSIDE_TTL', volume__event_time: null, regime: 'bull, "strong"', label: 1 })
  t.match(rows[1], { close_price: null, close_price__status: 'NOT_FOUND', volume__status: 'NOT_FOUND', regime__status: 'NOT_FOUND', label: 0 })
  t.match(rows[2], { close_price: 10, volume: null, volume__status: 'NULL_VALUE', volume__event_time: iso(T0 + H), label: null })
  t.match(rows[3], { close_price: 102, close_price__event_time: iso(T0 + H), volume: 5, volume__status: 'PRESENT' })
  t.same(rows[3], rows[4])
  t.match(rows[5], { close_price__status: 'NOT_FOUND' })
  t.notOk('label' in rows[5] && rows[5].label !== null, 'a missing pass-through column is null')

  // as of k1 the correction is not known yet
  const before = await app.inject({ method: 'POST', url: '/v1/training-sets', payload: { ...body, as_of_system_time: iso(k1) } })
  t.equal(before.json().rows[0].close_price, 101)
  t.equal(before.headers['x-as-of-system-time'], iso(k1))

  const csv = await app.inject({ method: 'POST', url: '/v1/training-sets', headers: { accept: 'text/csv' }, payload: { ...body, include_metadata: false } })
  t.equal(csv.statusCode, 200)
  t.match(csv.headers['content-type'], /text\/csv/)
  const lines = csv.body.split('\n')
  t.equal(lines[0], 'entity_id,event_time,label,close_price,volume,regime')
  t.equal(lines[1], `BTC,${iso(T0 + 3 * H)},1,102,,"bull, ""strong"""`)
  t.equal(lines[3], `ETH,${iso(T0 + H)},,10,,`)
  t.equal(lines.length, 8, 'header, 6 rows, final newline')

  const nd = await app.inject({ method: 'POST', url: '/v1/training-sets', headers: { accept: 'application/x-ndjson' }, payload: body })
  t.equal(nd.statusCode, 200)
  const ndRows = nd.body.trim().split('\n').map((l) => JSON.parse(l))
  t.same(ndRows, rows)
})

t.test('grids, contracts and versions', async (t) => {
  const { app, sql } = await buildTestApp(t)
  const p1 = await insertDefinition(sql, { name: 'close_price', version: 1 })
  const p2 = await insertDefinition(sql, { name: 'close_price', version: 2 })
  await sql`INSERT INTO feature_contracts (name, version, entity, features, status) VALUES ('c', 1, 'symbol', ${sql.json([{ feature: 'close_price@1', required: true }, { feature: 'close_price', required: false }] as never)}, 'active')`
  await appendValues(sql, [
    { featureId: p1, entityId: 'A', eventTimeMs: T0, num: 1 },
    { featureId: p1, entityId: 'A', eventTimeMs: T0 + 2 * H, num: 3 },
    { featureId: p2, entityId: 'B', eventTimeMs: T0 + H, num: 20 },
  ])
  const res = await app.inject({ method: 'POST', url: '/v1/training-sets', headers: { accept: 'text/csv' }, payload: { contract: 'c', grid: { entities: ['A', 'B'], from: iso(T0), to: iso(T0 + 2 * H), every: '1h' } } })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.body, [
    'entity_id,event_time,close_price@1,close_price@2',
    `A,${iso(T0)},1,`, `A,${iso(T0 + H)},1,`, `A,${iso(T0 + 2 * H)},3,`,
    `B,${iso(T0)},,`, `B,${iso(T0 + H)},,20`, `B,${iso(T0 + 2 * H)},,20`, '',
  ].join('\n'))
  t.equal(res.headers['x-feature-versions'], 'close_price@1,close_price@2')
})

t.test('bad input is a problem before any row', async (t) => {
  const { app, sql } = await buildTestApp(t, { config: { MAX_TRAINING_ROWS: 10 } })
  await insertDefinition(sql, { name: 'close_price' })
  await insertDefinition(sql, { name: 'dominance', entity: 'market' })
  const post = (payload: unknown, accept?: string) => app.inject({ method: 'POST', url: '/v1/training-sets', payload: payload as object, headers: accept ? { accept } : {} })
  const rows = [{ entity_id: 'A', event_time: '2023-01-01T00:00:00Z' }]

  let res = await post({ features: ['close_price', 'nope', 'close_price@7'], entity_rows: rows })
  t.equal(res.statusCode, 422)
  t.match(res.headers['content-type'], /problem\+json/)
  t.match(res.json().detail, /nope.*close_price@7/)
  t.same(res.json().errors.map((e: { path: string, field: string, rule: string }) => [e.path, e.field, e.rule]), [['/body/features/1', 'features', 'unknown_feature'], ['/body/features/2', 'features', 'unknown_feature']])

  res = await post({ features: ['close_price', 'dominance'], entity_rows: rows })
  t.equal(res.statusCode, 422)
  t.match(res.json().detail, /dominance@1 \(entity market\)/)

  res = await post({ features: ['close_price'], entity_rows: [...rows, { entity_id: 'B', event_time: '2023-01-01T00:00:00' }, { entity_id: 'C', event_time: '2023-01-01T00:00:00.0001Z' }] })
  t.equal(res.statusCode, 422)
  t.match(res.json().errors, [{ row: 1, path: '/body/entity_rows/1/event_time', field: 'event_time', rule: 'timestamp', message: /no time zone/ }, { row: 2, message: /sub-millisecond/ }])

  res = await post({ features: ['close_price'], entity_rows: [{ entity_id: '', event_time: 0 }] })
  t.equal(res.statusCode, 400)
  t.match(res.json().errors, [{ row: 0 }])

  res = await post({ features: ['close_price'], grid: { entities: ['A', 'B'], from: '2023-01-01T00:00:00Z', to: '2023-01-02T00:00:00Z', every: '1h' } })
  t.equal(res.statusCode, 413)
  t.match(res.json().detail, /2 entities x 25 points in time = 50 rows/)

  res = await post({ features: ['close_price'], entity_rows: Array.from({ length: 11 }, () => rows[0]) })
  t.equal(res.statusCode, 413)

  res = await post({ features: ['close_price'], grid: { entities: ['A'], from: '2023-01-02T00:00:00Z', to: '2023-01-01T00:00:00Z', every: '1x' } })
  t.equal(res.statusCode, 422)
  t.same(res.json().errors.map((e: { path: string }) => e.path), ['/body/grid/every', '/body/grid/to'])

  res = await post({ features: ['close_price'], contract: 'c', entity_rows: rows })
  t.equal(res.statusCode, 422)
  res = await post({ contract: 'nope', entity_rows: rows })
  t.equal(res.statusCode, 422)
  t.match(res.json().detail, /Contract 'nope'/)
  res = await post({ features: ['close_price', 'close_price@1'], entity_rows: rows })
  t.equal(res.statusCode, 422)
  t.match(res.json().detail, /listed twice/)
  res = await post({ features: ['close_price'], entity_rows: [{ ...rows[0], close_price: 1 }] })
  t.equal(res.statusCode, 422)
  t.match(res.json().detail, /clash/)
  res = await post({ features: ['Bad Name'], entity_rows: rows })
  t.equal(res.statusCode, 400)
  res = await post({ features: ['close_price'], entity_rows: rows, as_of_system_time: 'yesterday' })
  t.equal(res.statusCode, 422)
  res = await post({ features: ['close_price'], entity_rows: rows }, 'application/xml')
  t.equal(res.statusCode, 406)

  res = await post({ features: ['close_price'], entity_rows: [] }, 'text/csv')
  t.equal(res.statusCode, 200)
  t.equal(res.body, 'entity_id,event_time,close_price\n')
})
