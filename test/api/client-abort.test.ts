import t from 'tap'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { buildTestApp } from '../lib/helper.js'
import { isDatabaseUnavailable } from '../../src/plugins/errors.js'
import { transactionsOpen } from '../lib/fixtures.js'

/**
 * A client that hangs up in the middle of its upload fails its request with ECONNRESET
 * ("aborted"), the code of a database connection reset too: it must not mark the database down
 * (which would put x-stale on every answer until the next successful query).
 */
t.test('a client hanging up mid-upload does not mark the database unavailable', async (t) => {
  const { app, sql } = await buildTestApp(t, { defaults: true })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as AddressInfo).port
  for (const type of ['application/json', 'application/x-ndjson', 'text/csv']) {
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.write(`POST /v1/values HTTP/1.1\r\nHost: x\r\nContent-Type: ${type}\r\nContent-Length: 100000\r\n\r\n`)
        socket.write(type === 'text/csv' ? 'feature,entity_id,event_time,value\nclose_price,A,2023-01-01T00:00:00Z,1\n' : '{"rows":[')
        setTimeout(() => { socket.destroy(); resolve() }, 100)
      })
      socket.on('error', reject)
    })
  }
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(app.services.databaseHealth.unavailableSince, null, 'the database is not marked down')
  const res = await app.inject({ method: 'GET', url: '/v1/features/close_price' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['x-stale'], undefined, 'answers are not marked stale')
  t.same(await sql`SELECT count(*)::int AS n FROM feature_snapshots`, [{ n: 0 }], 'nothing written')
})

t.test('isDatabaseUnavailable: socket codes count when a socket call failed, driver and server codes always', async (t) => {
  t.equal(isDatabaseUnavailable(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })), false, 'an HTTP request stream aborted')
  t.equal(isDatabaseUnavailable(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', syscall: 'read' })), true)
  t.equal(isDatabaseUnavailable(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED', syscall: 'connect' })), true)
  t.equal(isDatabaseUnavailable({ code: 'CONNECTION_CLOSED' }), true)
  t.equal(isDatabaseUnavailable({ code: '57P01' }), true)
  t.equal(isDatabaseUnavailable({ code: '23505' }), false)
})

t.test('what the HTTP parser refuses before there is a request is a problem too', async (t) => {
  const { app } = await buildTestApp(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as AddressInfo).port
  const raw = async (text: string): Promise<string> => new Promise((resolve, reject) => {
    let got = ''
    const socket = net.connect(port, '127.0.0.1', () => socket.write(text))
    socket.on('data', (d) => { got += d.toString() })
    socket.on('close', () => resolve(got))
    socket.on('error', reject)
  })
  const big = await raw(`GET /v1/features?text=${'a'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`)
  t.match(big, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/)
  t.match(big, /content-type: application\/problem\+json/i)
  t.match(JSON.parse(big.slice(big.indexOf('\r\n\r\n') + 4)), { status: 431, title: 'Request Header Fields Too Large', detail: /headers/ })
  const garbage = await raw('NOT HTTP AT ALL\r\n\r\n')
  t.match(garbage, /^HTTP\/1\.1 400 Bad Request\r\n/)
  t.match(JSON.parse(garbage.slice(garbage.indexOf('\r\n\r\n') + 4)), { status: 400, type: /problems\/bad-request/ })
})

t.test('a body the service would misread (compressed, or not UTF-8) is a 415 before it is read', async (t) => {
  const { app, sql } = await buildTestApp(t, { defaults: true })
  const csv = 'feature,entity_id,event_time,value\nclose_price,ENC,2023-01-01T00:00:00Z,1\n'
  const send = (headers: Record<string, string>) => app.inject({ method: 'POST', url: '/v1/values', payload: csv, headers: { 'content-type': 'text/csv', ...headers } })
  const gz = await send({ 'content-encoding': 'gzip' })
  t.equal(gz.statusCode, 415)
  t.match(gz.json(), { detail: /Content-Encoding gzip is not accepted/ })
  const utf16 = await send({ 'content-type': 'text/csv; charset=utf-16' })
  t.equal(utf16.statusCode, 415)
  t.match(utf16.json(), { detail: /charset=utf-16 is not accepted/ })
  t.same(await sql`SELECT count(*)::int AS n FROM feature_snapshots`, [{ n: 0 }], 'nothing written')
  const fine: Array<Record<string, string>> = [{}, { 'content-encoding': 'identity' }, { 'content-type': 'text/csv; charset=UTF-8' }, { 'content-type': 'text/csv;charset="utf8"' }]
  for (const headers of fine) {
    t.equal((await send(headers)).statusCode, 200, JSON.stringify(headers))
  }
  const json = await app.inject({ method: 'POST', url: '/v1/features', payload: '{}', headers: { 'content-type': 'application/json; charset=latin1' } })
  t.equal(json.statusCode, 415, 'every route with a body')
  t.equal((await app.inject({ method: 'GET', url: '/v1/features', headers: { 'content-encoding': 'gzip' } })).statusCode, 200, 'routes without a body do not care')
})

t.test('streamReleasing: release runs once, also when the stream is destroyed before its first read', async (t) => {
  const { streamReleasing } = await import('../../routes/streams.js')
  let releases = 0
  let bodyRan = false
  const early = streamReleasing(async function * (release) {
    try { bodyRan = true; yield 'a' } finally { await release() }
  }, async () => { releases++ })
  early.destroy()
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(bodyRan, false, 'the generator never started')
  t.equal(releases, 1, 'released anyway')

  releases = 0
  const read = streamReleasing(async function * (release) {
    try { yield 'a'; yield 'b' } finally { await release() }
  }, async () => { releases++ })
  const got: string[] = []
  for await (const chunk of read) got.push(String(chunk))
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.same(got, ['a', 'b'])
  t.equal(releases, 1, 'read to the end: released once')
})

t.test('clients hanging up on training sets (before or after the first byte) leave no transaction open', async (t) => {
  const { app, sql } = await buildTestApp(t, { defaults: true, config: { TRAINING_READ_CONNECTIONS: 2, TRAINING_BLOCK_ROWS: 10_000 } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as AddressInfo).port
  const body = JSON.stringify({ features: ['close_price', 'volume'], grid: { entities: Array.from({ length: 200 }, (_, i) => `E${i}`), from: '2023-01-01T00:00:00Z', to: '2023-01-21T19:00:00Z', every: '1h' } })
  for (const waitMs of [0, 5, 20, 60, 150]) {
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.write(`POST /v1/training-sets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: text/csv\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
        setTimeout(() => { socket.destroy(); resolve() }, waitMs)
      })
      socket.on('error', reject)
    })
  }
  let open = -1
  for (let i = 0; i < 100 && open !== 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    open = await transactionsOpen(sql)
  }
  t.equal(open, 0, 'every read session was rolled back and given back')
  const res = await app.inject({ method: 'POST', url: '/v1/training-sets', payload: JSON.parse(body), headers: { accept: 'text/csv' } })
  t.equal(res.statusCode, 200, 'the pool still serves')
})
