import t from 'tap'
import { buildTestApp, type TestContext } from '../lib/helper.js'
import { insertDefinition } from '../lib/fixtures.js'

const H = 3_600_000

/** The samples of one metric family in /metrics, keyed by their label text. */
async function scrape (ctx: TestContext, name: string): Promise<Map<string, number>> {
  const res = await ctx.app.inject({ method: 'GET', url: '/metrics' })
  if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${res.body}`)
  const out = new Map<string, number>()
  for (const line of res.body.split('\n')) {
    const m = /^(\w+)\{(.*)\} (\S+)$/.exec(line)
    if (m !== null && m[1] === name) out.set(m[2], Number(m[3]))
  }
  return out
}

async function ingest (ctx: TestContext, rows: unknown[]): Promise<void> {
  const res = await ctx.app.inject({ method: 'POST', url: '/v1/values', payload: { rows } })
  if (res.statusCode !== 200) throw new Error(res.body)
}

t.test('freshness gauges per active feature version, read at most once per FRESHNESS_METRICS_SECONDS', async (t) => {
  const ctx = await buildTestApp(t, { config: { FRESHNESS_METRICS_SECONDS: 1 } })
  await insertDefinition(ctx.sql, { name: 'close_price', ttl_ms: 2 * H })
  await insertDefinition(ctx.sql, { name: 'volume' })
  await insertDefinition(ctx.sql, { name: 'retired', status: 'deprecated' })
  const now = Date.now()
  await ingest(ctx, [
    { feature: 'close_price', entity_id: 'BTC', event_time: now - H, value: 1 },
    { feature: 'close_price', entity_id: 'BTC', event_time: now - 10 * H, value: 1 },
    { feature: 'close_price', entity_id: 'ETH', event_time: now - 5 * H, value: 1 },
    { feature: 'volume', entity_id: 'BTC', event_time: now - 30 * H, value: 1 },
  ])
  const cp = 'feature="close_price",version="1"'
  const vol = 'feature="volume",version="1"'
  const entities = await scrape(ctx, 'feature_entities')
  t.same([...entities], [[cp, 2], [vol, 1]], 'active versions only, deprecated ones left out')
  t.same([...await scrape(ctx, 'feature_newest_event_time_seconds')], [[cp, (now - H) / 1000], [vol, (now - 30 * H) / 1000]])
  t.same([...await scrape(ctx, 'feature_stalest_entity_event_time_seconds')], [[cp, (now - 5 * H) / 1000], [vol, (now - 30 * H) / 1000]])
  t.same([...await scrape(ctx, 'feature_stale_entities')], [[cp, 1]], 'ETH is past the 2h ttl; volume has no ttl')

  // a new entity: the figures are kept for FRESHNESS_METRICS_SECONDS, then read again
  await ingest(ctx, [{ feature: 'close_price', entity_id: 'SOL', event_time: now, value: 1 }])
  const cached = await scrape(ctx, 'feature_entities')
  t.equal(cached.get(cp), 2, 'within the interval: the last figures')
  await new Promise((resolve) => setTimeout(resolve, 1100))
  t.equal((await scrape(ctx, 'feature_entities')).get(cp), 3, 'after it: read again')
  t.equal((await scrape(ctx, 'feature_newest_event_time_seconds')).get(cp), now / 1000)

  // the database away: /metrics still answers, with the last figures
  await new Promise((resolve) => setTimeout(resolve, 1100))
  await ctx.sql.end({ timeout: 1 })
  const away = await ctx.app.inject({ method: 'GET', url: '/metrics' })
  t.equal(away.statusCode, 200)
  t.match(away.body, `feature_entities{${cp}} 3`)
})

t.test('FRESHNESS_METRICS_SECONDS=0: no freshness gauges', async (t) => {
  const ctx = await buildTestApp(t, { config: { FRESHNESS_METRICS_SECONDS: 0 } })
  await insertDefinition(ctx.sql, { name: 'close_price' })
  const res = await ctx.app.inject({ method: 'GET', url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.notMatch(res.body, /feature_entities/)
})
