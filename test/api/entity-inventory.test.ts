import t from 'tap'
import { buildTestApp, type TestContext } from '../lib/helper.js'
import { insertDefinition } from '../lib/fixtures.js'

const H = 3_600_000
const iso = (ms: number): string => new Date(ms).toISOString()

interface Item { entity_id: string, first_event_time: string | null, latest_event_time: string, latest_ingested_at: string, latest_value: unknown, age_ms: number, stale: boolean | null }

async function ingest (ctx: TestContext, rows: unknown[]): Promise<string> {
  const res = await ctx.app.inject({ method: 'POST', url: '/v1/values', payload: { rows } })
  if (res.statusCode !== 200) throw new Error(res.body)
  return res.json().ingested_at as string
}

async function inventory (ctx: TestContext, name: string, q = ''): Promise<{ status: number, body: Record<string, any> }> {
  const res = await ctx.app.inject({ method: 'GET', url: `/v1/features/${name}/entities${q}` })
  return { status: res.statusCode, body: res.json() }
}

t.test('each entity: earliest and latest event time, latest value, age, staleness by ttl or stale_after', async (t) => {
  const ctx = await buildTestApp(t)
  await insertDefinition(ctx.sql, { name: 'close_price', ttl_ms: 2 * H })
  await insertDefinition(ctx.sql, { name: 'volume' })
  const now = Date.now()
  const k1 = await ingest(ctx, [
    { feature: 'close_price', entity_id: 'BTCUSDT', event_time: now - 30 * H, value: 100 },
    { feature: 'close_price', entity_id: 'BTCUSDT', event_time: now - H, value: 101 },
    { feature: 'close_price', entity_id: 'ETHUSDT', event_time: now - 10 * H, value: 10 },
    { feature: 'volume', entity_id: 'SOLUSDT', event_time: now - 5 * H, value: 5 },
  ])
  // a backfill older than everything, and a correction of ETH's latest value
  const k2 = await ingest(ctx, [
    { feature: 'close_price', entity_id: 'BTCUSDT', event_time: now - 100 * H, value: 90 },
    { feature: 'close_price', entity_id: 'ETHUSDT', event_time: now - 10 * H, value: 11 },
  ])

  const { status, body } = await inventory(ctx, 'close_price')
  t.equal(status, 200, JSON.stringify(body))
  t.same(body.feature, { name: 'close_price', version: 1, dtype: 'float64', ttl: '2h' })
  t.equal(body.stale_after, '2h', 'the feature\'s ttl by default')
  const asOf = Date.parse(body.as_of)
  t.ok(asOf >= now && asOf <= Date.now())
  t.same(body.items.map((i: Item) => [i.entity_id, i.first_event_time, i.latest_event_time, i.latest_value, i.latest_ingested_at, i.stale]), [
    ['BTCUSDT', iso(now - 100 * H), iso(now - H), 101, k1, false],
    ['ETHUSDT', iso(now - 10 * H), iso(now - 10 * H), 11, k2, true],
  ], 'entity order; the backfill moves first_event_time, not the latest; the correction is the latest value')
  t.same(body.items.map((i: Item) => i.age_ms), [asOf - (now - H), asOf - (now - 10 * H)])
  t.equal(body.next_cursor, null)

  const loose = await inventory(ctx, 'close_price', '?stale_after=1d')
  t.equal(loose.body.stale_after, '1d')
  t.same(loose.body.items.map((i: Item) => i.stale), [false, false])
  const noTtl = await inventory(ctx, 'volume')
  t.equal(noTtl.body.stale_after, null)
  t.same(noTtl.body.items.map((i: Item) => [i.entity_id, i.stale]), [['SOLUSDT', null]], 'no ttl and no stale_after: staleness unknown')
  const prefixed = await inventory(ctx, 'close_price', '?prefix=ETH')
  t.same(prefixed.body.items.map((i: Item) => i.entity_id), ['ETHUSDT'])
  const none = await inventory(ctx, 'close_price', '?prefix=XRP')
  t.same(none.body.items, [])
})

t.test('pages, versions, future-dated values, and what online reads see', async (t) => {
  const ctx = await buildTestApp(t)
  await insertDefinition(ctx.sql, { name: 'regime', dtype: 'string', version: 1 })
  await insertDefinition(ctx.sql, { name: 'regime', dtype: 'string', version: 2 })
  const now = Date.now()
  const entities = Array.from({ length: 23 }, (_, i) => `E${String(i).padStart(2, '0')}`)
  await ingest(ctx, entities.map((e, i) => ({ feature: 'regime@2', entity_id: e, event_time: now - i * H, value: `r${i}` })))
  await ingest(ctx, [{ feature: 'regime@1', entity_id: 'OLD', event_time: now - H, value: 'x' }])
  await ingest(ctx, [{ feature: 'regime@2', entity_id: 'E00', event_time: now + 24 * H, value: 'future' }])

  const seen: Item[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const { status, body }: { status: number, body: Record<string, any> } = await inventory(ctx, 'regime', `?limit=5${cursor === null ? '' : `&cursor=${cursor}`}`)
    t.equal(status, 200)
    seen.push(...body.items as Item[])
    cursor = body.next_cursor
    pages++
  } while (cursor !== null)
  t.equal(pages, 5)
  t.same(seen.map((i) => i.entity_id), entities, 'every entity once, in order, the latest version by default')
  t.equal(seen[0].latest_value, 'future', 'the latest stored event time, even in the future')
  t.ok(seen[0].age_ms < 0, 'a future-dated value has a negative age')
  t.same((await inventory(ctx, 'regime', '?version=1')).body.items.map((i: Item) => i.entity_id), ['OLD'])

  // the online read of E00 falls back to the latest value at or before now
  const online = await ctx.app.inject({ method: 'GET', url: '/v1/online/E00?features=regime' })
  t.equal(online.json().values.regime.value, 'r0')
})

t.test('bad requests are 4xx problems naming the field', async (t) => {
  const ctx = await buildTestApp(t)
  await insertDefinition(ctx.sql, { name: 'close_price' })
  const expectProblem = async (name: string, q: string, status: number, field?: string): Promise<void> => {
    const res = await ctx.app.inject({ method: 'GET', url: `/v1/features/${name}/entities${q}` })
    t.equal(res.statusCode, status, `${name}${q}: ${res.body}`)
    t.match(res.headers['content-type'], /application\/problem\+json/)
    if (field !== undefined) t.ok(JSON.stringify(res.json()).includes(field), `names ${field}`)
  }
  await expectProblem('close_price', '?stale_after=soon', 400, 'stale_after')
  await expectProblem('close_price', '?stale_after=-1h', 400, 'stale_after')
  await expectProblem('close_price', '?limit=0', 400, 'limit')
  await expectProblem('close_price', '?limit=10001', 400, 'limit')
  await expectProblem('close_price', '?prefix=', 400, 'prefix')
  await expectProblem('close_price', '?cursor=nonsense', 400, 'cursor')
  await expectProblem('close_price', `?cursor=${Buffer.from(JSON.stringify({ k: 'A\u0000' })).toString('base64url')}`, 400, 'cursor')
  await expectProblem('close_price', '?version=99999999999', 400, 'version')
  await expectProblem('close_price', '?version=0', 400, 'version')
  await expectProblem('close_price', '?entity=BTC', 400, 'entity')
  await expectProblem('close_price', '?version=9', 404)
  await expectProblem('nothing_here', '', 404)
  await expectProblem('Bad-Name', '', 400, 'name')
})
