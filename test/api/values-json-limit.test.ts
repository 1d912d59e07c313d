import t from 'tap'
import { buildTestApp } from '../lib/helper.js'
import { insertDefinition } from '../lib/fixtures.js'

// The default limits: a JSON body of MAX_JSON_ROWS (100,000) rows of an ordinary size is taken
// (it used to be refused once it passed the 10 MiB of BODY_LIMIT_BYTES, about 100 bytes a row).
const { app, sql } = await buildTestApp(t)
await insertDefinition(sql, { name: 'close_price_usd_mid_1h' })

t.test('100,000 JSON rows of ~140 bytes each are one request', async (t) => {
  const t0 = Date.UTC(2022, 0, 1)
  const rows = Array.from({ length: 100_000 }, (_, i) => ({
    feature: 'close_price_usd_mid_1h',
    entity_id: `BINANCE:SYM${String(i % 50).padStart(4, '0')}USDT`,
    event_time: new Date(t0 + Math.floor(i / 50) * 3_600_000 + 123).toISOString(),
    value: 27_000 + i / 7,
  }))
  const payload = JSON.stringify({ rows })
  t.ok(payload.length > 12 * 1024 * 1024, `body of ${(payload.length / 2 ** 20).toFixed(1)} MiB`)
  const res = await app.inject({ method: 'POST', url: '/v1/values', headers: { 'content-type': 'application/json' }, payload })
  t.equal(res.statusCode, 200, res.body.slice(0, 300))
  t.match(res.json(), { received: 100_000, written: 100_000, skipped: 0 })
  const [{ n }] = await sql<Array<{ n: number }>>`SELECT count(*)::int AS n FROM feature_snapshots`
  t.equal(n, 100_000)

  const tooMany = await app.inject({ method: 'POST', url: '/v1/values', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ rows: [...rows, rows[0]] }) })
  t.equal(tooMany.statusCode, 413, 'one more row than MAX_JSON_ROWS is still a 413')
  t.match(tooMany.json().detail, /100000|100,000/)
})
