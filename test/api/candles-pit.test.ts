import t, { type Test as TapTest } from 'tap'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { parse } from 'csv-parse/sync'
import { buildTestApp, sharedDataDir } from '../lib/helper.js'
import { insertDefinition, appendValues } from '../lib/fixtures.js'
import { soundCutoff } from '../../db/knowledge.js'
import { rebuildWriteLog } from '../../db/write-log.js'

/**
 * Real hourly candles (../shared/data): close prices stamped at candle close (open time + 1 h;
 * the CSV's date is the open time in UTC without a zone). A few months are loaded, as if
 * ingested live 5 s after each close; then gaps, ttl edges and backfills are checked.
 */
const H = 3_600_000
const dataDir = sharedDataDir()
const WINDOWS: Array<[string, string]> = [
  ['2021-04-04T00:00:00Z', '2021-05-01T00:00:00Z'],
  ['2021-08-10T00:00:00Z', '2021-10-01T00:00:00Z'],
  ['2023-03-20T00:00:00Z', '2023-03-28T00:00:00Z'],
]
const iso = (ms: number): string => new Date(ms).toISOString()

interface Candle { symbol: string, openMs: number, close: number }

function loadCandles (dir: string, symbol: string): Candle[] {
  const text = readFileSync(path.join(dir, 'market', 'binance_spot_1h', `${symbol}_1h.csv`), 'utf8')
  const records = parse(text, { columns: true, skip_empty_lines: true }) as Array<{ date: string, close: string }>
  const windows = WINDOWS.map(([a, b]) => [Date.parse(a), Date.parse(b)])
  return records
    .map((r) => ({ symbol, openMs: Date.parse(`${r.date.replace(' ', 'T')}Z`), close: Number(r.close) }))
    .filter((c) => windows.some(([a, b]) => c.openMs >= a && c.openMs < b))
}

t.test('point-in-time answers on real BTC and ETH candles', { skip: dataDir ? false : 'no ../shared/data: the real candles are not here' }, async (t) => {
  const { app, sql, url } = await buildTestApp(t)
  // the same requests read with bounded reads (TimescaleDB mode's default) must answer the same
  const { app: bounded } = await buildTestApp(t, { url, config: { PIT_READS: 'bounded' } })
  const candles = [...loadCandles(dataDir!, 'BTCUSDT'), ...loadCandles(dataDir!, 'ETHUSDT')]
  t.ok(candles.length > 4000, `${candles.length} candles loaded`)
  // close_price@1 has a 1 h ttl, close_price@2 none
  const v1 = await insertDefinition(sql, { name: 'close_price', version: 1, ttl_ms: H })
  const v2 = await insertDefinition(sql, { name: 'close_price', version: 2 })
  for (const id of [v1, v2]) {
    await sql`INSERT INTO feature_snapshots (feature_id, entity_id, event_time, ingested_at, value_num)
      SELECT ${id}::int4, s, e, e + interval '5 seconds', v
      FROM unnest(${candles.map((c) => c.symbol)}::text[], ${candles.map((c) => iso(c.openMs + H))}::timestamptz[], ${candles.map((c) => c.close)}::float8[]) AS x(s, e, v)`
  }
  // written by SQL: the write log and the first events describe them once rebuilt
  await rebuildWriteLog(sql)
  const post = async (t: TapTest, payload: Record<string, unknown>) => {
    const body = { features: ['close_price@1', 'close_price@2'], include_metadata: true, ...payload }
    const res = await app.inject({ method: 'POST', url: '/v1/training-sets', payload: body })
    t.equal(res.statusCode, 200, res.statusCode === 200 ? 'training set built' : res.body)
    const again = await bounded.inject({ method: 'POST', url: '/v1/training-sets', payload: body })
    t.same(again.json().rows, res.json().rows, 'bounded reads give the same rows')
    return res.json().rows as Array<Record<string, unknown>>
  }

  t.test('known values at known times', async (t) => {
    const rows = await post(t, {
      entity_rows: [
        { entity_id: 'BTCUSDT', event_time: '2021-04-04T21:00:00Z' }, // the first close, at its exact time
        { entity_id: 'BTCUSDT', event_time: '2021-04-04T20:59:59.999Z' }, // 1 ms before it
        { entity_id: 'ETHUSDT', event_time: '2021-04-04T21:59:59.999Z' }, // 1 ms before the second close
        { entity_id: 'BTCUSDT', event_time: '2021-04-20T02:00:00Z' }, // close of the 01:00 candle
        { entity_id: 'ETHUSDT', event_time: '2023-03-24T13:00:00Z' }, // the flat zero-volume candle
        { entity_id: 'BTCUSDT', event_time: '2023-03-24T15:00:00Z' }, // first close after the 2023 gap
      ],
    })
    t.match(rows[0], { close_price: undefined, 'close_price@1': 58025.11, 'close_price@1__status': 'PRESENT', 'close_price@2': 58025.11, 'close_price@1__event_time': '2021-04-04T21:00:00.000Z' })
    t.match(rows[1], { 'close_price@1': null, 'close_price@1__status': 'NOT_FOUND', 'close_price@2__status': 'NOT_FOUND' })
    t.match(rows[2], { 'close_price@1': 2062.56, 'close_price@2': 2062.56 })
    t.match(rows[3], { 'close_price@1': 54764.12 })
    t.match(rows[4], { 'close_price@1': 1789.52, 'close_price@1__event_time': '2023-03-24T13:00:00.000Z' })
    t.match(rows[5], { 'close_price@1': 27989.06 })
  })

  t.test('the 5 gaps: a ttl shorter than the gap gives OUTSIDE_TTL', async (t) => {
    const btc = candles.filter((c) => c.symbol === 'BTCUSDT')
    const gaps: Array<{ lastClose: number, missing: number[] }> = []
    for (let i = 1; i < btc.length; i++) {
      const step = btc[i].openMs - btc[i - 1].openMs
      if (step > H && step < 24 * H) {
        gaps.push({ lastClose: btc[i - 1].openMs + H, missing: Array.from({ length: step / H - 1 }, (_, k) => btc[i - 1].openMs + (k + 2) * H) })
      }
    }
    t.same(gaps.map((g) => iso(g.missing[0] - H)), ['2021-04-20T02:00:00.000Z', '2021-04-25T05:00:00.000Z', '2021-08-13T02:00:00.000Z', '2021-09-29T07:00:00.000Z', '2023-03-24T13:00:00.000Z'], 'the documented gaps (open times of the first missing candle)')
    t.equal(gaps.reduce((n, g) => n + g.missing.length, 0), 12, '12 missing hours')
    const rows: Array<{ entity_id: string, event_time: string, kind: string, last: number }> = []
    for (const g of gaps) {
      for (const symbol of ['BTCUSDT', 'ETHUSDT']) {
        // exactly ttl old: still inside (event_time == T - ttl)
        rows.push({ entity_id: symbol, event_time: iso(g.lastClose + H), kind: 'edge', last: g.lastClose })
        // 1 ms later, and half way through every missing hour: too old
        rows.push({ entity_id: symbol, event_time: iso(g.lastClose + H + 1), kind: 'old', last: g.lastClose })
        for (const m of g.missing) rows.push({ entity_id: symbol, event_time: iso(m + H / 2), kind: 'old', last: g.lastClose })
      }
    }
    const out = await post(t, { entity_rows: rows })
    t.equal(out.length, rows.length)
    let outside = 0
    out.forEach((r, i) => {
      const want = rows[i].kind === 'edge' ? 'PRESENT' : 'OUTSIDE_TTL'
      if (r['close_price@1__status'] !== want) t.fail(`${rows[i].entity_id} at ${rows[i].event_time}: ${String(r['close_price@1__status'])}, want ${want}`)
      if (r['close_price@1__status'] === 'OUTSIDE_TTL') outside++
      if (r['close_price@2__event_time'] !== iso(rows[i].last)) t.fail(`without ttl the last close before the gap answers: ${JSON.stringify(r)}`)
    })
    t.equal(outside, 2 * (5 + 12), 'every point inside a gap is OUTSIDE_TTL with a 1 h ttl, on both symbols')
  })

  t.test('backfills and corrections are invisible under point_in_time "known"', async (t) => {
    // Live ingestion stamped each close 5 s after it: at 1 s past a close, "known" still sees
    // the previous candle (1 h 1 s old: outside the 1 h ttl), "event" sees the new one.
    const live = [{ entity_id: 'BTCUSDT', event_time: '2021-04-10T12:00:01Z' }]
    const ev = await post(t, { entity_rows: live })
    const kn = await post(t, { entity_rows: live, point_in_time: 'known' })
    t.equal(ev[0]['close_price@2__event_time'], '2021-04-10T12:00:00.000Z')
    t.equal(kn[0]['close_price@2__event_time'], '2021-04-10T11:00:00.000Z')
    t.equal(kn[0]['close_price@1__status'], 'OUTSIDE_TTL')

    const before = await soundCutoff(sql)
    // today: fill the 2023-03-24 13:00 gap and correct BTC's close of 2021-04-10 12:00
    const gapClose = Date.parse('2023-03-24T14:00:00Z')
    const corrected = Date.parse('2021-04-10T12:00:00Z')
    await appendValues(sql, [v1, v2].flatMap((featureId) => [
      { featureId, entityId: 'BTCUSDT', eventTimeMs: gapClose, num: 28000 },
      { featureId, entityId: 'BTCUSDT', eventTimeMs: corrected, num: 1 },
    ]))
    const probe = [
      { entity_id: 'BTCUSDT', event_time: '2023-03-24T14:30:00Z' },
      { entity_id: 'BTCUSDT', event_time: '2021-04-10T12:30:00Z' },
    ]
    const now = await post(t, { entity_rows: probe })
    t.match(now[0], { 'close_price@1': 28000, 'close_price@1__status': 'PRESENT' }, 'event: the backfill fills the gap')
    t.match(now[1], { 'close_price@2': 1 }, 'event: the correction wins')
    const then = await post(t, { entity_rows: probe, as_of_system_time: before })
    t.match(then[0], { 'close_price@1__status': 'OUTSIDE_TTL', 'close_price@2': 28080 }, 'as of before the backfill: the gap is still there')
    t.match(then[1], { 'close_price@2': btcClose(candles, corrected) })
    const known = await post(t, { entity_rows: probe, point_in_time: 'known' })
    t.match(known[0], { 'close_price@1__status': 'OUTSIDE_TTL', 'close_price@2': 28080, 'close_price@2__event_time': '2023-03-24T13:00:00.000Z' }, 'known: the backfill is invisible')
    t.match(known[1], { 'close_price@2': btcClose(candles, corrected) }, 'known: the correction is invisible')
  })
})

function btcClose (candles: Candle[], closeMs: number): number {
  return candles.find((c) => c.symbol === 'BTCUSDT' && c.openMs + H === closeMs)!.close
}
