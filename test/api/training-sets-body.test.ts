import t from 'tap'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { buildTestApp } from '../lib/helper.js'
import { insertDefinition, appendValues } from '../lib/fixtures.js'

/**
 * POST /v1/training-sets reads entity_rows from the body's bytes into columns
 * (src/domain/training-body.ts). Every body here is answered twice: as sent, and with an
 * `"entity_rows":[]` member put in front, which JSON.parse semantics make the same request
 * (the later member wins) but which the scanner leaves to the ordinary parser, schema and
 * row objects. Both answers must be the same, byte for byte, errors included.
 */

const H = 3_600_000
const T0 = Date.UTC(2023, 0, 1)
const iso = (ms: number): string => new Date(ms).toISOString()
const K = '2100-01-01T00:00:00Z' // later than now: now

function viaObjects (body: string): string {
  const at = body.indexOf('{')
  return `${body.slice(0, at)}{"entity_rows":[],${body.slice(at + 1)}`
}

interface Answer { status: number, type: string | undefined, rows: string | undefined, body: string }

t.test('the scanned body answers exactly as the parsed one', async (t) => {
  const { app, sql } = await buildTestApp(t)
  const price = await insertDefinition(sql, { name: 'close_price' })
  const regime = await insertDefinition(sql, { name: 'regime', dtype: 'string' })
  await appendValues(sql, [
    { featureId: price, entityId: 'BTCUSDT', eventTimeMs: T0, num: 100.5 },
    { featureId: price, entityId: 'BTCUSDT', eventTimeMs: T0 + H, num: 0.1 + 0.2 },
    { featureId: price, entityId: 'ÉTH', eventTimeMs: T0, num: -0 },
    { featureId: regime, entityId: 'BTCUSDT', eventTimeMs: T0, text: 'bull, "strong"\n' },
  ])

  const post = async (body: string, accept: string): Promise<Answer> => {
    const res = await app.inject({ method: 'POST', url: '/v1/training-sets', headers: { 'content-type': 'application/json', accept }, payload: body })
    let text = res.body
    if (res.headers['content-type']?.toString().includes('problem')) {
      const p = res.json()
      delete p.request_id
      text = JSON.stringify(p)
    }
    return { status: res.statusCode, type: res.headers['content-type']?.toString(), rows: res.headers['x-row-count']?.toString(), body: text }
  }
  const same = async (name: string, body: string, expectStatus: number): Promise<Answer> => {
    let first: Answer | undefined
    for (const accept of ['application/json', 'text/csv', 'application/x-ndjson']) {
      const a = await post(body, accept)
      const b = await post(viaObjects(body), accept)
      t.same(a, b, `${name} (${accept})`)
      t.equal(a.status, expectStatus, `${name}: ${a.body.slice(0, 300)}`)
      first ??= a
      if (a.status !== 200) break
    }
    return first!
  }
  const req = (rows: string, extra = ''): string => `{"features":["close_price","regime"],"as_of_system_time":"${K}","include_metadata":true,${extra}"entity_rows":${rows}}`
  const T1 = iso(T0 + H)

  await same('plain rows', req(`[{"entity_id":"BTCUSDT","event_time":"${T1}"},{"entity_id":"BTCUSDT","event_time":"${iso(T0 - 1)}"},{"event_time":"${T1}","entity_id":"SOL"}]`), 200)
  await same('no rows', req('[]'), 200)
  await same('whitespace everywhere', ` \n\t{ "features" : [ "close_price" ] ,\r\n "entity_rows" :\n[ { "entity_id" :\t"BTCUSDT" , "event_time" : "${T1}" , "label" : 1 } ,\n{"entity_id":"BTCUSDT","event_time":"${T1}"}\n ] , "as_of_system_time" : "${K}" }\n `, 200)
  await same('escapes and unicode', req(`[{"entity_id":"BTC\\u0055SDT","event_time":"${T1}","note":"a\\"b\\\\c\\n"},{"entity_id":"ÉTH","event_time":"${T1}","note":"é😀"},{"entity_id":"BTCUSDT","event_time":"2023-01-01T01:00:00\\u005a"}]`), 200)
  const numbers = await same('numbers as event_time', req(`[{"entity_id":"BTCUSDT","event_time":${T0 + H}},{"entity_id":"BTCUSDT","event_time":${(T0 + H) / 1000}e3},{"entity_id":"BTCUSDT","event_time":"${T0}"}]`), 200)
  t.match(numbers.body, /"close_price":0\.30000000000000004/)
  await same('event_time with offsets', req('[{"entity_id":"BTCUSDT","event_time":"2023-01-01T03:00:00+02:00"},{"entity_id":"BTCUSDT","event_time":"2023-01-01T01:00:00.000z"}]'), 200)
  // the forms of Python's isoformat and others: the same rows as their UTC Z form
  const forms = await same('timestamp forms', req(`[${['2023-01-01T01:00:00+00:00', '2022-12-31T20:00:00-05:00', '2023-01-01T06:30:00.000000+05:30', '2023-01-01 01:00:00Z',
    '2023-01-01t01:00:00.5Z', '2023-01-01T00:59:59.999000Z', '2023-01-01T01:00:00.12+00:00'].map((ts) => `{"entity_id": "BTCUSDT", "event_time": "${ts}"}`).join(', ')}]`), 200)
  const utc = await same('the same rows in UTC', req(`[${[T1, T1, T1, T1, iso(T0 + H + 500), iso(T0 + H - 1), iso(T0 + H + 120)].map((ts) => `{"entity_id":"BTCUSDT","event_time":"${ts}"}`).join(',')}]`), 200)
  t.equal(forms.body, utc.body, 'offsets, fractions and separators read as parseTimestamp reads them')
  const extras = await same('pass-through columns', req(`[{"entity_id":"BTCUSDT","event_time":"${T1}","b":1.5e2,"a":"x,y","c":true},{"entity_id":"BTCUSDT","event_time":"${T1}","d":null,"a":-0.0,"e":false},{"entity_id":"BTCUSDT","event_time":"${T1}","n":{"k":[1,{"z":null}]},"arr":[1,"2"]},{"entity_id":"SOL","event_time":"${T1}"}]`), 200)
  t.match(extras.body, /"columns":\["entity_id","event_time","b","a","c","d","e","n","arr",/)
  await same('integer-like keys and duplicate keys', req(`[{"entity_id":"BTCUSDT","event_time":"${T1}","x":1,"2":"two","x":3},{"entity_id":"SOL","entity_id":"BTCUSDT","event_time":"${T1}","event_time":"${iso(T0)}","1":1}]`), 200)
  await same('a constructor member', req(`[{"entity_id":"BTCUSDT","event_time":"${T1}","constructor":1}]`), 200)
  await same('a prototype member', req(`[{"entity_id":"BTCUSDT","event_time":"${T1}","__proto__":{"x":1}}]`), 400)
  await same('a pass-through column clashing with an output column', req(`[{"entity_id":"BTCUSDT","event_time":"${T1}","close_price":1}]`), 422)

  // schema errors (400), alone and together with errors elsewhere in the body
  await same('rows that are no objects', req(`[5,"x",null,[],{"entity_id":"BTCUSDT","event_time":"${T1}"},true]`), 400)
  await same('missing and bad members', req(`[{"event_time":"${T1}"},{"entity_id":"BTCUSDT"},{"entity_id":"","event_time":"${T1}"},{"entity_id":"${'x'.repeat(257)}","event_time":"${T1}"},{"entity_id":{},"event_time":{}},{"entity_id":7,"event_time":null},{"entity_id":"A","event_time":true}]`), 400)
  await same('row errors with body errors', `{"features":"close_price","bogus":1,"entity_rows":[{"entity_id":""}],"grid":5,"point_in_time":"x","include_metadata":"y"}`, 400)
  await same('row errors with a contract error', `{"contract":"Bad Name","entity_rows":[{"entity_id":"A","event_time":"${T1}"},{"event_time":1}]}`, 400)
  await same('entity_rows not an array', `{"features":["close_price"],"entity_rows":{"entity_id":"A"}}`, 400)

  // row errors found by the service (422)
  await same('bad timestamps', req(`[{"entity_id":"BTCUSDT","event_time":"2023-01-01T00:00:00"},{"entity_id":"BTCUSDT","event_time":"2023-02-30T00:00:00Z"},{"entity_id":"BTCUSDT","event_time":"2023-01-01T00:00:00.0001Z"},{"entity_id":"BTCUSDT","event_time":1.5},{"entity_id":"BTCUSDT","event_time":-99999999999999},{"entity_id":"BTCUSDT","event_time":1e400}]`), 422)
  await same('bad entity ids', req(`[{"entity_id":"BTC\\u0000","event_time":"${T1}"},{"entity_id":"ok","event_time":"${T1}"},{"entity_id":"\\u0007","event_time":"x"}]`), 422)
  await same('more than 100 bad rows', req(`[${Array.from({ length: 150 }, (_, i) => `{"entity_id":"E${i % 3}","event_time":"bad${i}"}`).join(',')}]`), 422)

  // malformed JSON
  const row = `{"entity_id":"BTCUSDT","event_time":"${T1}"}`
  for (const [name, rows] of [
    ['trailing comma', `[${row},]`],
    ['missing comma', `[${row} ${row}]`],
    ['unterminated row', `[${row.slice(0, -1)}]`],
    ['bad literal', `[{"entity_id":"BTCUSDT","event_time":"${T1}","x":tru}]`],
    ['bad number', `[{"entity_id":"BTCUSDT","event_time":"${T1}","x":01}]`],
    ['bad nesting', `[{"entity_id":"BTCUSDT","event_time":"${T1}","x":[1}]}]`],
    ['unclosed array', `[${row}`],
    ['control character in a string', `[{"entity_id":"BTC\tUSDT","event_time":"${T1}"}]`],
  ]) await same(`malformed: ${name}`, req(rows), 400)
  await same('malformed: garbage after the body', `${req(`[${row}]`)} x`, 400)
  await same('malformed: two bodies', `${req(`[${row}]`)}{}`, 400)

  // an escaped key that spells entity_rows, and entity_rows twice: parsed as usual
  await same('escaped top-level key', `{"features":["close_price"],"entity\\u005frows":[${row}]}`, 200)
  const twice = await post(`{"features":["close_price"],"entity_rows":[{"entity_id":"SOL","event_time":"${T1}"}],"entity_rows":[${row}]}`, 'text/csv')
  t.match(twice.body, /^entity_id,event_time,close_price\nBTCUSDT,/, 'the later entity_rows wins')

  const empty = await app.inject({ method: 'POST', url: '/v1/training-sets', headers: { 'content-type': 'application/json' }, payload: '' })
  t.equal(empty.statusCode, 400)
  t.match(empty.json().detail, /empty/)
})

t.test('a training-set body over the limit is 413, a wrong length 400, both problem+json', async (t) => {
  const { app } = await buildTestApp(t, { config: { TRAINING_BODY_LIMIT_BYTES: 4096 } })
  await insertDefinitionFor(app)
  const rows = Array.from({ length: 200 }, (_, i) => ({ entity_id: `E${i}`, event_time: iso(T0) }))
  const big = JSON.stringify({ features: ['close_price'], entity_rows: rows })
  const res = await app.inject({ method: 'POST', url: '/v1/training-sets', headers: { 'content-type': 'application/json' }, payload: big })
  t.equal(res.statusCode, 413)
  t.match(res.headers['content-type'], /problem\+json/)
  const small = JSON.stringify({ features: ['close_price'], entity_rows: rows.slice(0, 3) })
  const ok = await app.inject({ method: 'POST', url: '/v1/training-sets', headers: { 'content-type': 'application/json', accept: 'text/csv' }, payload: small })
  t.equal(ok.statusCode, 200, ok.body)
  t.equal(ok.body.split('\n').length, 5)

  // over a socket: chunked (no Content-Length) past the limit, and a Content-Length that lies
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as AddressInfo).port
  const send = async (headers: Record<string, string | number>, parts: string[]): Promise<{ status: number, body: string }> => new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/training-sets', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    r.on('error', reject)
    for (const p of parts) r.write(p)
    r.end()
  })
  const chunked = await send({}, [big.slice(0, 2000), big.slice(2000)])
  t.equal(chunked.status, 413, chunked.body)
  const chunkedOk = await send({ accept: 'text/csv' }, [small.slice(0, 10), small.slice(10)])
  t.equal(chunkedOk.status, 200, chunkedOk.body)
  t.equal(chunkedOk.body.split('\n').length, 5)
  const declaredTooBig = await send({ 'content-length': 100_000 }, [])
  t.equal(declaredTooBig.status, 413)
})

async function insertDefinitionFor (app: Awaited<ReturnType<typeof buildTestApp>>['app']): Promise<void> {
  const res = await app.inject({ method: 'POST', url: '/v1/features', payload: { name: 'close_price', entity: 'symbol', dtype: 'float64' } })
  if (res.statusCode !== 201) throw new Error(res.body)
}
