import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { buildTestApp, type TestContext } from '../lib/helper.js'
import { insertDefinition } from '../lib/fixtures.js'

const T0 = Date.UTC(2023, 5, 1, 12)
const H = 3_600_000
const iso = (ms: number): string => new Date(ms).toISOString()

// One app for the file (each app is a fresh migrated database); tests use their own entity ids.
const ctx: TestContext = await buildTestApp(t, { config: { MAX_JSON_ROWS: 500, VALUES_BODY_LIMIT_BYTES: 256 * 1024 } })
const { app, sql } = ctx
const ids = {
  close: await insertDefinition(sql, { name: 'close_price', validation: { nullable: false, min: 0 } }),
  volume: await insertDefinition(sql, { name: 'volume', validation: { nullable: true, min: 0, max: 1e12 } }),
  flag: await insertDefinition(sql, { name: 'flag', dtype: 'bool' }),
  trades: await insertDefinition(sql, { name: 'trades', dtype: 'int64', validation: { max: 1000 } }),
  side: await insertDefinition(sql, { name: 'side', dtype: 'string', validation: { allowed_values: ['buy', 'sell'] } }),
  ratio: await insertDefinition(sql, { name: 'ratio', validation: { allow_non_finite: true } }),
  closeV2: await insertDefinition(sql, { name: 'close_price', version: 2, status: 'deprecated' }),
}

interface Snap { feature_id: number, entity_id: string, event_ms: number, value_num: number | null, value_text: string | null }
async function snapshots (entity: string): Promise<Snap[]> {
  return sql`SELECT feature_id, entity_id, (extract(epoch FROM event_time) * 1000)::int8 AS event_ms, value_num, value_text
             FROM feature_snapshots WHERE entity_id LIKE ${entity + '%'} ORDER BY feature_id, entity_id, event_time, ingested_at` as unknown as Promise<Snap[]>
}

function post (payload: string | object, opts: { type?: string, query?: string } = {}): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url: `/v1/values${opts.query ? `?${opts.query}` : ''}`,
    headers: { 'content-type': opts.type ?? 'application/json' },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  })
}

t.test('JSON rows of every dtype are written under one ingested_at, after COMMIT', async (t) => {
  const res = await post({ rows: [
    { feature: 'close_price', entity_id: 'A1', event_time: iso(T0), value: 27000.5 },
    { feature: 'close_price@1', entity_id: 'A1', event_time: T0 + H, value: 27100 },
    { feature: 'volume', entity_id: 'A1', event_time: '2023-06-01T14:00:00+02:00', value: null },
    { feature: 'flag', entity_id: 'A1', event_time: iso(T0), value: true },
    { feature: 'trades', entity_id: 'A1', event_time: iso(T0), value: 42 },
    { feature: 'side', entity_id: 'A1', event_time: iso(T0), value: 'sell' },
    { feature: 'ratio', entity_id: 'A1', event_time: iso(T0), value: '-Infinity' },
    { feature: 'close_price@2', entity_id: 'A1', event_time: iso(T0), value: -1 },
  ] })
  t.equal(res.statusCode, 200, res.body)
  const body = res.json()
  t.match(body, { received: 8, written: 8, skipped: 0, ingested_at: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/ })
  t.notOk('errors' in body)
  const rows = await snapshots('A1')
  t.equal(rows.length, 8)
  const at = await sql`SELECT DISTINCT extract(epoch FROM ingested_at) * 1000 AS ms FROM feature_snapshots WHERE entity_id = 'A1'`
  t.equal(at.length, 1, 'one stamp for the whole request')
  const stampMs = Number(at[0].ms)
  const answered = Date.parse(body.ingested_at)
  t.ok(answered >= stampMs && answered - stampMs < 1, `the answer carries the stamp, rounded up to the millisecond (${body.ingested_at} vs ${at[0].ms})`)
  const [{ online, matching }] = await sql`
    SELECT count(*)::int AS online, count(s.feature_id)::int AS matching
    FROM feature_online o LEFT JOIN feature_snapshots s USING (feature_id, entity_id, event_time, ingested_at)
    WHERE o.entity_id = 'A1'`
  t.equal(online, 7)
  t.equal(matching, online, 'online rows carry the exact (microsecond) stamp of their snapshot rows')
  const of = (id: number): Snap[] => rows.filter((r) => r.feature_id === id)
  t.same(of(ids.close).map((r) => r.value_num), [27000.5, 27100])
  t.same(of(ids.volume)[0], { feature_id: ids.volume, entity_id: 'A1', event_ms: T0, value_num: null, value_text: null }, 'offsets normalised, null stored')
  t.equal(of(ids.flag)[0].value_num, 1)
  t.equal(of(ids.trades)[0].value_num, 42)
  t.equal(of(ids.side)[0].value_text, 'sell')
  t.equal(of(ids.ratio)[0].value_num, Number.NEGATIVE_INFINITY)
  t.equal(of(ids.closeV2)[0].value_num, -1, 'name@version reaches a deprecated version')
})

const BAD_ROWS = [
  { feature: 'close_price', entity_id: 'B1', event_time: iso(T0), value: 1 }, // 0 good
  { feature: 'close_price', entity_id: 'B1', event_time: iso(T0), value: 'abc' }, // 1 dtype
  { feature: 'close_price', entity_id: 'B1', event_time: iso(T0 + H), value: null }, // 2 nullable
  { feature: 'close_price', entity_id: 'B1', event_time: iso(T0 + 2 * H), value: -5 }, // 3 min
  { feature: 'trades', entity_id: 'B1', event_time: iso(T0), value: 5000 }, // 4 max
  { feature: 'side', entity_id: 'B1', event_time: iso(T0), value: 'hold' }, // 5 allowed_values
  { feature: 'close_price', entity_id: 'B1', event_time: iso(T0), value: 'NaN' }, // 6 allow_non_finite
  { feature: 'close_price', entity_id: '', event_time: iso(T0), value: 1 }, // 7 entity_id
  { feature: 'close_price', entity_id: 'B\u0007', event_time: iso(T0), value: 1 }, // 8 entity_id (control character)
  { feature: 'close_price', entity_id: 'B1', event_time: '2023-06-01T12:00:00', value: 1 }, // 9 timestamp without zone
  { feature: 'close_price', entity_id: 'B1', event_time: '2023-06-01T12:00:00.0001Z', value: 1 }, // 10 sub-millisecond
  { feature: 'no_such_feature', entity_id: 'B1', event_time: iso(T0), value: 1 }, // 11 unknown_feature
  { feature: 'close_price', entity_id: 'B1', event_time: iso(T0) }, // 12 value missing
  'not a row', // 13 type
  { feature: 'Close-Price', entity_id: 'B1', event_time: iso(T0), value: 1 }, // 14 ref syntax
  { feature: 'trades', entity_id: 'B1', event_time: iso(T0 + H), value: 1.5 }, // 15 int64 dtype
  { feature: 'flag', entity_id: 'B1', event_time: iso(T0), value: 'yes' }, // 16 bool dtype
  { feature: 'close_price@9', entity_id: 'B1', event_time: iso(T0), value: 1 }, // 17 unknown version
  { feature: 'volume', entity_id: 'B1', event_time: iso(T0), value: 10 }, // 18 good
]
const EXPECTED_RULES: Array<[number, string, string | undefined]> = [
  [1, 'dtype', 'value'], [2, 'nullable', 'value'], [3, 'min', 'value'], [4, 'max', 'value'], [5, 'allowed_values', 'value'],
  [6, 'allow_non_finite', 'value'], [7, 'entity_id', 'entity_id'], [8, 'entity_id', 'entity_id'], [9, 'timestamp', 'event_time'],
  [10, 'timestamp', 'event_time'], [11, 'unknown_feature', 'feature'], [12, 'required', 'value'], [13, 'type', undefined],
  [14, 'ref', 'feature'], [15, 'dtype', 'value'], [16, 'dtype', 'value'], [17, 'unknown_feature', 'feature'],
]

t.test('on_invalid=reject (default): one bad row rejects all, 422 lists row, field and rule, nothing written', async (t) => {
  const res = await post({ rows: BAD_ROWS })
  t.equal(res.statusCode, 422)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  const p = res.json()
  t.equal(p.error_count, EXPECTED_RULES.length)
  t.match(p.detail, /nothing was written/)
  t.match(p.detail, /Unknown features: no_such_feature, close_price@9/, 'unknown features are named')
  for (const [row, rule, field] of EXPECTED_RULES) {
    const e = p.errors.find((x: { row: number }) => x.row === row)
    t.ok(e, `row ${row} is reported`)
    t.equal(e?.rule, rule, `row ${row}: rule ${rule}`)
    t.equal(e?.field, field, `row ${row}: field ${field}`)
    t.equal(e?.path, field === undefined ? `/body/rows/${row}` : `/body/rows/${row}/${field}`)
    t.type(e?.message, 'string')
  }
  t.notOk(p.errors.some((x: { row: number }) => x.row === 0 || x.row === 18), 'good rows are not reported')
  t.same(await snapshots('B'), [], 'nothing written')
  t.equal((await sql`SELECT count(*)::int AS n FROM feature_online WHERE entity_id LIKE 'B%'`)[0].n, 0, 'online table untouched')
})

t.test('on_invalid=skip: valid rows written, invalid ones reported', async (t) => {
  const res = await post({ rows: BAD_ROWS }, { query: 'on_invalid=skip' })
  t.equal(res.statusCode, 200, res.body)
  const body = res.json()
  t.match(body, { received: 19, written: 2, skipped: 17, error_count: EXPECTED_RULES.length })
  t.same(body.errors.map((e: { row: number }) => e.row), EXPECTED_RULES.map(([r]) => r))
  const rows = await snapshots('B')
  t.same(rows.map((r) => [r.feature_id, r.value_num]), [[ids.close, 1], [ids.volume, 10]])
})

t.test('a row with several problems reports each; the list is capped, the count is not', async (t) => {
  const res = await post({ rows: [{ feature: 'nope', entity_id: '', event_time: 'yesterday', value: 1 }] })
  t.equal(res.statusCode, 422)
  t.same(res.json().errors.map((e: { field: string }) => e.field).sort(), ['entity_id', 'event_time', 'feature'])
  const many = Array.from({ length: 150 }, (_, i) => ({ feature: 'close_price', entity_id: 'C1', event_time: T0 + i, value: -1 }))
  const capped = await post({ rows: many }, { query: 'on_invalid=skip' })
  t.equal(capped.statusCode, 200)
  t.equal(capped.json().errors.length, 100)
  t.equal(capped.json().error_count, 150)
  t.equal(capped.json().skipped, 150)
  t.equal(capped.json().written, 0)
  t.equal(capped.json().ingested_at, null, 'nothing written, no stamp')
})

t.test('same feature, entity and event_time twice in a request: the last row wins; the online table keeps the newest', async (t) => {
  const res = await post({ rows: [
    { feature: 'close_price', entity_id: 'D1', event_time: T0, value: 1 },
    { feature: 'close_price', entity_id: 'D1', event_time: T0 + H, value: 2 },
    { feature: 'close_price', entity_id: 'D1', event_time: T0, value: 3 },
  ] })
  t.equal(res.statusCode, 200)
  t.equal(res.json().written, 2)
  t.same((await snapshots('D1')).map((r) => r.value_num), [3, 2])
  const online = await sql`SELECT value_num FROM feature_online WHERE entity_id = 'D1'`
  t.equal(online[0].value_num, 2, 'latest event_time is online')
  // a correction is a new row, the old one stays (append-only)
  await post({ rows: [{ feature: 'close_price', entity_id: 'D1', event_time: T0 + H, value: 2.5 }] })
  t.same((await snapshots('D1')).map((r) => r.value_num), [3, 2, 2.5])
  t.equal((await sql`SELECT value_num FROM feature_online WHERE entity_id = 'D1'`)[0].value_num, 2.5)
})

t.test('limits and malformed bodies: 413, 400, 415, never 5xx', async (t) => {
  const tooMany = await post({ rows: Array.from({ length: 501 }, () => ({ feature: 'close_price', entity_id: 'E1', event_time: T0, value: 1 })) })
  t.equal(tooMany.statusCode, 413)
  t.match(tooMany.json().detail, /at most 500/)
  const tooBig = await post({ rows: [{ feature: 'side', entity_id: 'E1', event_time: T0, value: 'x'.repeat(300 * 1024) }] })
  t.equal(tooBig.statusCode, 413)
  t.match(tooBig.headers['content-type'], /problem\+json/)
  const notJson = await post('{"rows": [', {})
  t.equal(notJson.statusCode, 400)
  const noRows = await post({ values: [] })
  t.equal(noRows.statusCode, 400)
  t.match(noRows.json().errors[0].path, /rows/)
  const rowsNotArray = await post({ rows: 'x' }) // the schema layer coerces a scalar into a one-element array
  t.equal(rowsNotArray.statusCode, 422)
  t.equal(rowsNotArray.json().errors[0].rule, 'type')
  const text = await post('hello', { type: 'text/plain' })
  t.equal(text.statusCode, 415)
  const xml = await post('<rows/>', { type: 'application/xml' })
  t.equal(xml.statusCode, 415)
  const badMode = await post({ rows: [] }, { query: 'on_invalid=maybe' })
  t.equal(badMode.statusCode, 400)
  const empty = await post({ rows: [] })
  t.same(empty.json(), { received: 0, written: 0, skipped: 0, ingested_at: null })
  t.same(await snapshots('E1'), [])
})

t.test('a JSON or NDJSON row with a field other than the four is a row error naming it', async (t) => {
  const rows = [
    { feature: 'close_price', entity_id: 'XF1', event_time: iso(T0), value: 1 },
    { feature: 'close_price', entity_id: 'XF1', event_time: iso(T0 + H), value: 2, source: 'feed' },
  ]
  const json = await post({ rows })
  t.equal(json.statusCode, 422)
  t.match(json.json().errors, [{ row: 1, path: '/body/rows/1/source', field: 'source', rule: 'unknown_field' }])
  const nd = await post(rows.map((r) => JSON.stringify(r)).join('\n'), { type: 'application/x-ndjson', query: 'on_invalid=skip' })
  t.equal(nd.statusCode, 200)
  t.match(nd.json(), { written: 1, skipped: 1, errors: [{ row: 2, path: '/lines/2/source', rule: 'unknown_field' }] })
  t.same((await snapshots('XF1')).map((r) => r.value_num), [1])
})

t.test('NDJSON may start with a byte order mark, as CSV may', async (t) => {
  const body = '\ufeff' + JSON.stringify({ feature: 'close_price', entity_id: 'BOM', event_time: iso(T0), value: 10 }) + '\n'
  const res = await post(body, { type: 'application/x-ndjson' })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().written, 1)
})

t.test('NDJSON: one row per line, row numbers are line numbers, streamed past the JSON body limit', async (t) => {
  const lines = [
    JSON.stringify({ feature: 'close_price', entity_id: 'F1', event_time: iso(T0), value: 10 }),
    '',
    JSON.stringify({ feature: 'close_price', entity_id: 'F1', event_time: iso(T0 + H), value: -1 }),
    '{"feature": "close_price", ',
    JSON.stringify({ feature: 'volume', entity_id: 'F1', event_time: T0, value: 7 }) + '\r',
    '[1,2]',
  ]
  const rejected = await post(lines.join('\n'), { type: 'application/x-ndjson' })
  t.equal(rejected.statusCode, 422)
  t.same(rejected.json().errors.map((e: { row: number, rule: string }) => [e.row, e.rule]), [[3, 'min'], [4, 'json'], [6, 'type']])
  t.equal(rejected.json().errors[0].path, '/lines/3/value')
  t.same(await snapshots('F1'), [])
  const skipped = await post(lines.join('\n') + '\n', { type: 'application/x-ndjson; charset=utf-8', query: 'on_invalid=skip' })
  t.equal(skipped.statusCode, 200)
  t.match(skipped.json(), { received: 5, written: 2, skipped: 3 })
  t.same((await snapshots('F1')).map((r) => r.value_num), [10, 7])

  // 6,000 rows (~600 KB) through a route whose JSON limit is 256 KiB
  const big = Array.from({ length: 6000 }, (_, i) => JSON.stringify({ feature: 'volume', entity_id: 'F2', event_time: T0 + i * 1000, value: i }) + ' '.repeat(40)).join('\n') // padded past the JSON body limit
  t.ok(big.length > 256 * 1024)
  const res = await post(big, { type: 'application/x-ndjson' })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().written, 6000)
})

t.test('CSV long: header in any order, quoting, empty cell = null, data row numbers', async (t) => {
  const csv = [
    'entity_id,feature,value,event_time',
    `G1,close_price,101.5,${iso(T0)}`,
    `"G,2",volume,,${T0}`,
    `G1,side,"sell",${iso(T0)}`,
    `G1,flag,TRUE,${iso(T0)}`,
    `G1,trades,12,${iso(T0)}`,
  ].join('\n')
  const res = await post(csv, { type: 'text/csv' })
  t.equal(res.statusCode, 200, res.body)
  t.match(res.json(), { received: 5, written: 5, skipped: 0 })
  const rows = await snapshots('G')
  t.same(rows.map((r) => [r.entity_id, r.value_num, r.value_text]), [['G1', 101.5, null], ['G,2', null, null], ['G1', 1, null], ['G1', 12, null], ['G1', null, 'sell']])

  const bad = [
    'feature,entity_id,event_time,value',
    `close_price,G3,${iso(T0)},1`,
    `close_price,G3,${iso(T0 + H)},`, // 2: nullable
    `close_price,G3,${iso(T0)}`, // 3: too few fields
    `nope,G3,${iso(T0)},1`, // 4: unknown feature
    `trades,G3,${iso(T0)},1.5`, // 5: int64
  ].join('\r\n')
  const rejected = await post(bad, { type: 'text/csv' })
  t.equal(rejected.statusCode, 422)
  t.same(rejected.json().errors.map((e: { row: number, rule: string }) => [e.row, e.rule]), [[2, 'nullable'], [3, 'csv_columns'], [4, 'unknown_feature'], [5, 'dtype']])
  t.equal(rejected.json().errors[0].path, '/records/2/value')
  t.same(await snapshots('G3'), [])
  const skipped = await post(bad, { type: 'text/csv', query: 'on_invalid=skip' })
  t.match(skipped.json(), { received: 5, written: 1, skipped: 4 })
})

t.test('CSV wide: two columns of one feature version are refused, whatever on_invalid says', async (t) => {
  const csv = ['entity_id,event_time,close_price,volume,close_price@1', `DUP1,${iso(T0)},100,5,101`].join('\n')
  for (const query of ['', 'on_invalid=skip']) {
    const res = await post(csv, { type: 'text/csv', ...(query ? { query } : {}) })
    t.equal(res.statusCode, 422, query)
    t.match(res.json(), { detail: /names a feature version twice/, errors: [{ row: 0, path: '/header/4', field: 'close_price@1', rule: 'duplicate_column', message: /close_price@1.*already column 2 \('close_price'\)/ }] })
  }
  t.same(await snapshots('DUP'), [], 'nothing written')
})

t.test('CSV wide: entity_id, event_time, one column per feature; empty cell = no value', async (t) => {
  const csv = [
    'entity_id,event_time,close_price,volume@1,side',
    `H1,${iso(T0)},100,5,buy`,
    `H1,${iso(T0 + H)},101,,`,
    `H2,${iso(T0)},,,sell`,
    `H3,${iso(T0)},,,`,
  ].join('\n')
  const res = await post(csv, { type: 'text/csv' })
  t.equal(res.statusCode, 200, res.body)
  t.match(res.json(), { received: 5, written: 5, skipped: 0 })
  t.same((await snapshots('H')).map((r) => [r.entity_id, r.feature_id, r.value_num ?? r.value_text]),
    [['H1', ids.close, 100], ['H1', ids.close, 101], ['H1', ids.volume, 5], ['H1', ids.side, 'buy'], ['H2', ids.side, 'sell']])

  const bad = ['entity_id,event_time,close_price,volume', `H4,${iso(T0)},-1,3`, `H4,not-a-time,1,2`, `H4,${iso(T0 + H)},2,4`].join('\n')
  const rejected = await post(bad, { type: 'text/csv' })
  t.equal(rejected.statusCode, 422)
  t.same(rejected.json().errors.map((e: { row: number, field: string, rule: string }) => [e.row, e.field, e.rule]), [[1, 'close_price', 'min'], [2, 'event_time', 'timestamp']])
  const skipped = await post(bad, { type: 'text/csv', query: 'on_invalid=skip' })
  t.match(skipped.json(), { received: 6, written: 3, skipped: 3 })

  const unknownColumn = ['entity_id,event_time,close_price,mystery', `H5,${iso(T0)},1,2`].join('\n')
  const u = await post(unknownColumn, { type: 'text/csv' })
  t.equal(u.statusCode, 422)
  t.match(u.json().detail, /mystery/)
  t.same(u.json().errors[0], { row: 0, path: '/header/3', field: 'mystery', rule: 'unknown_feature', message: "feature 'mystery' does not exist or has no active version" })
  const us = await post(unknownColumn, { type: 'text/csv', query: 'on_invalid=skip' })
  t.match(us.json(), { received: 2, written: 1, skipped: 1 })
})

t.test('CSV structure errors are 400s naming the line or column', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['entity_id,close_price\nX,1', /entity_id and event_time/],
    ['entity_id,event_time\nX,1', /at least one feature column/],
    ['entity_id,event_time,close_price,close_price\nX,1,1,1', /appears twice/],
    ['entity_id,event_time,Bad Name\nX,1,1', /not a feature reference/],
    ['feature,entity_id,event_time\nclose_price,X,1', /'value' is missing/],
    ['feature,entity_id,event_time,value,extra\nclose_price,X,1,1,1', /'extra' is not one of them/],
    [`entity_id,event_time,close_price\n"I1,${T0},1\nI1,${T0},2`, /malformed/],
  ]
  for (const [body, detail] of cases) {
    const res = await post(body, { type: 'text/csv' })
    t.equal(res.statusCode, 400, JSON.stringify(body))
    t.match(res.json().detail, detail)
  }
  const unterminated = await post(`entity_id,event_time,close_price\r\nI1,${T0},1\r\nI1,${T0 + H},"2\r\nI1,${T0 + 2 * H},3\r\n`, { type: 'text/csv' })
  t.equal(unterminated.statusCode, 400)
  t.match(unterminated.json(), { detail: /malformed at line 3: Quoted field unterminated/, errors: [{ path: '/lines/3', rule: 'csv' }] })
  const stray = await post(`entity_id,event_time,close_price\nI1,${T0},1\nI1,"${T0}"x,1\nI1,${T0 + H},2\n`, { type: 'text/csv' })
  t.equal(stray.statusCode, 400)
  t.match(stray.json().detail, /malformed at line 3/)
  // a record past 1 MiB (here: a quote never closed) is refused before the body is all read
  const huge = await post(`entity_id,event_time,close_price\nI1,${T0},"${'9'.repeat(1100 * 1024)}`, { type: 'text/csv' })
  t.equal(huge.statusCode, 413)
  t.match(huge.json().detail, /line 2 is longer than 1048576 characters/)
  t.same(await snapshots('I1'), [])
})

t.test('CSV with a byte order mark, \\r\\n line breaks and quoted fields spanning lines', async (t) => {
  const note = await insertDefinition(sql, { name: 'note', dtype: 'string' })
  const csv = `\ufeffentity_id,event_time,close_price,note\r\nK1,${iso(T0)},1.5,"said ""sell"""\r\n\r\n"K1",${iso(T0 + H)},"2","buy,\r\nthen sell"\r\n`
  const res = await post(csv, { type: 'text/csv' })
  t.equal(res.statusCode, 200, res.body)
  t.match(res.json(), { received: 4, written: 4, skipped: 0 })
  t.same((await snapshots('K1')).map((r) => [r.feature_id, r.value_num ?? r.value_text]), [[ids.close, 1.5], [ids.close, 2], [note, 'said "sell"'], [note, 'buy,\r\nthen sell']])
})

t.test('under reject, reading stops at the error limit and the connection is closed', async (t) => {
  const lines = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ feature: 'close_price', entity_id: 'J1', event_time: T0 + i, value: -1 })).join('\n')
  const res = await post(lines, { type: 'application/x-ndjson' })
  t.equal(res.statusCode, 422)
  t.equal(res.json().complete, false)
  t.equal(res.json().errors.length, 100)
  t.equal(res.headers.connection, 'close')
})
