import t from 'tap'
import { buildTestApp, type TestContext } from '../lib/helper.js'
import { insertDefinition } from '../lib/fixtures.js'

const H = 3_600_000
const iso = (ms: number): string => new Date(ms).toISOString()

const ctx: TestContext = await buildTestApp(t)
const { app, sql } = ctx
await insertDefinition(sql, { name: 'price', ttl_ms: 2 * H })
await insertDefinition(sql, { name: 'vol', validation: { nullable: true } })
await insertDefinition(sql, { name: 'label', dtype: 'string' })
await insertDefinition(sql, { name: 'up', dtype: 'bool' })
await insertDefinition(sql, { name: 'ratio', validation: { allow_non_finite: true } })

async function ingest (rows: Array<{ feature: string, entity_id: string, event_time: number | string, value: unknown }>): Promise<void> {
  const res = await app.inject({ method: 'POST', url: '/v1/values', payload: { rows } })
  if (res.statusCode !== 200) throw new Error(res.body)
}

async function get (entity: string, features: string): Promise<{ statusCode: number, body: any }> {
  const res = await app.inject({ method: 'GET', url: `/v1/online/${encodeURIComponent(entity)}?features=${encodeURIComponent(features)}` })
  return { statusCode: res.statusCode, body: res.json() }
}

t.test('statuses: PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_TTL; values decoded per dtype', async (t) => {
  const now = Date.now()
  await ingest([
    { feature: 'price', entity_id: 'S1', event_time: now - 3 * H, value: 1 },
    { feature: 'price', entity_id: 'S1', event_time: now - H, value: 2 },
    { feature: 'vol', entity_id: 'S1', event_time: now - 10 * H, value: 5 },
    { feature: 'vol', entity_id: 'S1', event_time: now - 5 * H, value: null },
    { feature: 'label', entity_id: 'S1', event_time: now - H, value: 'bull' },
    { feature: 'up', entity_id: 'S1', event_time: now - H, value: false },
    { feature: 'ratio', entity_id: 'S1', event_time: now - H, value: 'Infinity' },
    { feature: 'price', entity_id: 'S2', event_time: now - 3 * H, value: 9 },
  ])
  const s1 = await get('S1', 'price,vol,label,up,ratio')
  t.equal(s1.statusCode, 200)
  t.same(s1.body, {
    entity_id: 'S1',
    values: {
      price: { value: 2, event_time: iso(now - H), status: 'PRESENT' },
      vol: { value: null, event_time: iso(now - 5 * H), status: 'NULL_VALUE' },
      label: { value: 'bull', event_time: iso(now - H), status: 'PRESENT' },
      up: { value: false, event_time: iso(now - H), status: 'PRESENT' },
      ratio: { value: 'Infinity', event_time: iso(now - H), status: 'PRESENT' },
    },
  })
  const s2 = await get('S2', 'price,vol')
  t.same(s2.body.values, {
    price: { value: null, event_time: null, status: 'OUTSIDE_TTL' },
    vol: { value: null, event_time: null, status: 'NOT_FOUND' },
  }, 'ttl is enforced online; a value older than the ttl is not served')
})

t.test('T = now: a latest value dated in the future is not served; the latest at or before now is', async (t) => {
  const now = Date.now()
  await ingest([
    { feature: 'vol', entity_id: 'F1', event_time: now - H, value: 5 },
    { feature: 'vol', entity_id: 'F1', event_time: now + H, value: 6 },
    { feature: 'vol', entity_id: 'F2', event_time: now + H, value: 7 },
    { feature: 'price', entity_id: 'F3', event_time: now - 5 * H, value: 1 },
    { feature: 'price', entity_id: 'F3', event_time: now + H, value: 2 },
  ])
  for (let round = 0; round < 2; round++) { // the second round answers from the cache
    const f1 = await get('F1', 'vol')
    t.same(f1.body.values.vol, { value: 5, event_time: iso(now - H), status: 'PRESENT' })
    t.same((await get('F2', 'vol')).body.values.vol, { value: null, event_time: null, status: 'NOT_FOUND' })
    t.same((await get('F3', 'price')).body.values.price, { value: null, event_time: null, status: 'OUTSIDE_TTL' })
  }
})

t.test('POST /v1/online: several entities in request order, duplicates kept', async (t) => {
  const now = Date.now()
  await ingest([
    { feature: 'vol', entity_id: 'P1', event_time: now - H, value: 1 },
    { feature: 'vol', entity_id: 'P2', event_time: now - H, value: 2 },
    { feature: 'label', entity_id: 'P2', event_time: now - H, value: 'x' },
  ])
  const res = await app.inject({ method: 'POST', url: '/v1/online', payload: { entities: ['P2', 'P1', 'nobody', 'P2'], features: ['vol', 'label', 'vol@1'] } })
  t.equal(res.statusCode, 200)
  const results = res.json().results
  t.same(results.map((r: { entity_id: string }) => r.entity_id), ['P2', 'P1', 'nobody', 'P2'])
  t.same(results[0].values, {
    vol: { value: 2, event_time: iso(now - H), status: 'PRESENT' },
    label: { value: 'x', event_time: iso(now - H), status: 'PRESENT' },
    'vol@1': { value: 2, event_time: iso(now - H), status: 'PRESENT' },
  })
  t.equal(results[1].values.label.status, 'NOT_FOUND')
  t.same(Object.values(results[2].values).map((v: any) => v.status), ['NOT_FOUND', 'NOT_FOUND', 'NOT_FOUND'])
  t.same(results[3], results[0])
})

t.test('cached answers are sent as the same JSON text the response serializer makes of a database read', async (t) => {
  const now = Date.now()
  const entity = 'Q "1" \\ é/☃' // quotes, a backslash, non-ASCII: the text must escape as JSON does
  await ingest([
    { feature: 'price', entity_id: entity, event_time: now - H, value: 1.1 },
    { feature: 'price', entity_id: 'Q2', event_time: now - 3 * H, value: 5 },
    { feature: 'vol', entity_id: entity, event_time: now - H, value: null },
    { feature: 'label', entity_id: entity, event_time: now - H, value: 'a "quoted"\nline' },
    { feature: 'up', entity_id: entity, event_time: now - H, value: true },
    { feature: 'ratio', entity_id: entity, event_time: now - H, value: 'NaN' },
    { feature: 'ratio', entity_id: 'Q2', event_time: now - H, value: -1e-7 },
  ])
  const refs = 'price,vol,label,up,ratio,vol@1,price'
  const url = `/v1/online/${encodeURIComponent(entity)}?features=${encodeURIComponent(refs)}`
  // the write evicted these keys: the first answer is read from the database and serialised
  // by the response schema; the second comes from the cache as text
  const cold = await app.inject({ method: 'GET', url })
  const warm = await app.inject({ method: 'GET', url })
  t.equal(cold.statusCode, 200)
  t.equal(warm.body, cold.body, 'byte-identical')
  t.equal(warm.headers['content-type'], cold.headers['content-type'])
  t.same(Object.keys(warm.json().values), ['price', 'vol', 'label', 'up', 'ratio', 'vol@1'], 'duplicates once, in request order')
  t.same(warm.json().values.label, { value: 'a "quoted"\nline', event_time: iso(now - H), status: 'PRESENT' })

  const payload = { entities: [entity, 'Q2', 'nobody', entity], features: ['price', 'ratio', 'vol'] }
  const hitsBefore = app.services.online.cache.hits
  const warmBatch = await app.inject({ method: 'POST', url: '/v1/online', payload })
  t.ok(app.services.online.cache.hits > hitsBefore, 'answered from the cache')
  app.services.online.cache.invalidate({ all: true })
  const coldBatch = await app.inject({ method: 'POST', url: '/v1/online', payload })
  t.equal(warmBatch.statusCode, 200)
  t.equal(warmBatch.body, coldBatch.body, 'byte-identical')
  t.same(warmBatch.json().results[1].values.price, { value: null, event_time: null, status: 'OUTSIDE_TTL' })
})

t.test('the cache: hits after the first read, read-your-writes on this instance, counters in /metrics', async (t) => {
  const now = Date.now()
  const cache = app.services.online.cache
  t.same((await get('C1', 'vol')).body.values.vol.status, 'NOT_FOUND')
  const before = cache.stats()
  t.same((await get('C1', 'vol')).body.values.vol.status, 'NOT_FOUND', 'a negative entry')
  t.equal(cache.stats().hits, before.hits + 1, 'the second read is a hit')
  t.equal(cache.stats().misses, before.misses)

  await ingest([{ feature: 'vol', entity_id: 'C1', event_time: now - H, value: 1 }])
  t.same((await get('C1', 'vol')).body.values.vol, { value: 1, event_time: iso(now - H), status: 'PRESENT' }, 'the write evicted the negative entry before answering')
  await ingest([{ feature: 'vol', entity_id: 'C1', event_time: now - H, value: 1.5 }])
  t.equal((await get('C1', 'vol')).body.values.vol.value, 1.5, 'a correction of the latest value is read at once')
  await ingest([{ feature: 'vol', entity_id: 'C1', event_time: now - 2 * H, value: 99 }])
  t.equal((await get('C1', 'vol')).body.values.vol.value, 1.5, 'an older event does not replace the latest')

  const metrics = await app.inject({ method: 'GET', url: '/metrics' })
  t.match(metrics.body, /online_cache_hits_total \d+/)
  t.match(metrics.body, /online_cache_misses_total \d+/)
  t.match(metrics.body, /online_cache_evictions_total \d+/)
  t.match(metrics.body, /online_cache_keys \d+/)
  const hits = Number(/online_cache_hits_total (\d+)/.exec(metrics.body)![1])
  t.equal(hits, cache.stats().hits)
})

t.test('a big write flushes per feature and is still read at once', async (t) => {
  const now = Date.now()
  t.equal((await get('B7', 'vol')).body.values.vol.status, 'NOT_FOUND')
  const rows = Array.from({ length: 3000 }, (_, i) => ({ feature: 'vol', entity_id: `B${i}`, event_time: now - H, value: i }))
  await ingest(rows)
  t.same((await get('B7', 'vol')).body.values.vol, { value: 7, event_time: iso(now - H), status: 'PRESENT' })
})

t.test('definition changes reach the reference cache (a new active version is served by name)', async (t) => {
  const now = Date.now()
  await ingest([{ feature: 'label', entity_id: 'V1', event_time: now - H, value: 'v1' }])
  t.equal((await get('V1', 'label')).body.values.label.value, 'v1')
  await insertDefinition(sql, { name: 'label', version: 2, dtype: 'string' })
  let status = ''
  for (let i = 0; i < 100 && status !== 'NOT_FOUND'; i++) {
    status = (await get('V1', 'label')).body.values.label.status
    if (status !== 'NOT_FOUND') await new Promise((resolve) => setTimeout(resolve, 10))
  }
  t.equal(status, 'NOT_FOUND', '`label` now means version 2, which has no value yet')
  t.equal((await get('V1', 'label@1')).body.values['label@1'].value, 'v1')
})

t.test('bad requests: 400 for malformed input, 422 naming unknown features', async (t) => {
  const unknown = await get('X', 'vol,nope,nada@3')
  t.equal(unknown.statusCode, 422)
  t.match(unknown.body.detail, /nope, nada@3/)
  t.match(unknown.body.errors, [{ path: '/querystring/features', field: 'features', rule: 'unknown_feature', message: /'nope'/ }, { path: '/querystring/features', message: /'nada@3'/ }])
  const unknownPosted = await app.inject({ method: 'POST', url: '/v1/online', payload: { entities: ['X'], features: ['vol', 'vol', 'nope'] } })
  t.equal(unknownPosted.statusCode, 422)
  t.match(unknownPosted.json().errors, [{ path: '/body/features/2', field: 'features', rule: 'unknown_feature' }])
  t.equal((await get('X', 'Bad-Ref')).statusCode, 400)
  t.equal((await get('X', ' , ')).statusCode, 400)
  t.equal((await app.inject({ method: 'GET', url: '/v1/online/X' })).statusCode, 400, 'features is required')
  t.equal((await get('X\u0001', 'vol')).statusCode, 400, 'control characters in the entity id')
  t.equal((await get('x'.repeat(257), 'vol')).statusCode, 400)
  const many = await get('X', Array.from({ length: 101 }, (_, i) => `f${i}`).join(','))
  t.equal(many.statusCode, 400)
  const post = await app.inject({ method: 'POST', url: '/v1/online', payload: { entities: [], features: ['vol'] } })
  t.equal(post.statusCode, 400)
  const badEntity = await app.inject({ method: 'POST', url: '/v1/online', payload: { entities: ['ok', 'bad\u0000'], features: ['vol'] } })
  t.equal(badEntity.statusCode, 400)
  t.equal(badEntity.json().errors[0].path, '/body/entities/1')
})
