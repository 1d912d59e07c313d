import t from 'tap'
import { buildTestApp } from '../lib/helper.js'
import { appendValues } from '../lib/fixtures.js'
import { compressedHourlyDays, DAY, DAYS, H, T0 } from '../lib/compressed-days.js'
import { onlyIn } from '../lib/test-server-mode.js'

interface Item { entity_id: string, event_time: string, ingested_at_us: number, value: number, superseded: boolean }

t.test('the history reads compressed chunks, and corrections written into them, in key order', await onlyIn('timescaledb'), async (t) => {
  const { sql, url, f } = await compressedHourlyDays(t)
  // corrections of one hour a day, written into the compressed chunks (which become partial)
  const corrected = Array.from({ length: DAYS }, (_, d) => d * 24 + 5)
  await appendValues(sql, corrected.map((h) => ({ featureId: f, entityId: 'BTC', eventTimeMs: T0 + h * H, num: 1000 + h })))
  const [{ partial }] = await sql<Array<{ partial: number }>>`
    SELECT count(*)::int8 AS partial FROM _timescaledb_catalog.chunk ch
    JOIN _timescaledb_catalog.hypertable h ON h.id = ch.hypertable_id
    WHERE h.table_name = 'feature_snapshots' AND ch.status & 8 = 8`
  t.equal(partial, DAYS, 'every chunk holds compressed rows and a correction outside them')

  const { app } = await buildTestApp(t, { url })
  const items: Item[] = []
  let cursor: string | null = null
  do {
    const res: Awaited<ReturnType<typeof app.inject>> = await app.inject({ method: 'GET', url: `/v1/features/close_price/values?entity_id=BTC&limit=7${cursor === null ? '' : `&cursor=${cursor}`}` })
    t.equal(res.statusCode, 200, res.body)
    items.push(...res.json().items as Item[])
    cursor = res.json().next_cursor
  } while (cursor !== null)

  const expected: Array<[string, number, boolean]> = []
  for (let h = 0; h < DAYS * 24; h++) {
    const isCorrected = corrected.includes(h)
    expected.push([new Date(T0 + h * H).toISOString(), h, isCorrected])
    if (isCorrected) expected.push([new Date(T0 + h * H).toISOString(), 1000 + h, false])
  }
  t.same(items.map((i) => [i.event_time, i.value, i.superseded]), expected, 'every row once, in key order, across compressed and uncompressed parts')

  const day2 = await app.inject({ method: 'GET', url: `/v1/features/close_price/values?from=${T0 + 2 * DAY}&to=${T0 + 3 * DAY}&corrections=latest` })
  t.same(day2.json().items.map((i: Item) => i.value), Array.from({ length: 24 }, (_, h) => (h === 5 ? 1000 + 48 + h : 48 + h)), 'a day\'s latest rows: the correction instead of the compressed original')
})
