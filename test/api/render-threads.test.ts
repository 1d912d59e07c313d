import t from 'tap'
import type { Worker } from 'node:worker_threads'
import { buildTestApp } from '../lib/helper.js'
import { insertDefinition, appendValues } from '../lib/fixtures.js'
import { handleRenderRequest, type RenderReply } from '../../src/services/render-worker.js'
import { RenderPool } from '../../src/services/render-pool.js'
import type { ScannedRows } from '../../src/domain/training-body.js'
import type { App } from '../../src/app.js'

/**
 * Training sets written on a render thread (TRAINING_RENDER_THREADS, 1 by default) are byte for
 * byte the ones written on the main thread (0): every format, with metadata, every dtype and
 * status, many blocks, inline rows and grids, rows with pass-through columns (written on the
 * main thread), concurrent training sets on one thread. A thread that dies is replaced; one
 * that cannot start turns the pool off.
 */

const H = 3_600_000
const T0 = Date.UTC(2023, 0, 1)
const iso = (ms: number): string => new Date(ms).toISOString()

async function seed (sql: Parameters<typeof insertDefinition>[0]): Promise<void> {
  const price = await insertDefinition(sql, { name: 'close_price', ttl_ms: 5 * H, validation: { allow_non_finite: true } })
  const count = await insertDefinition(sql, { name: 'trades', dtype: 'int64' })
  const up = await insertDefinition(sql, { name: 'up', dtype: 'bool' })
  const label = await insertDefinition(sql, { name: 'regime', dtype: 'string' })
  const rows: Parameters<typeof appendValues>[1] = []
  const specials = [Number.NaN, Infinity, -Infinity, -0, 0.1 + 0.2, 1e-7, 123456789012345680000, null]
  for (const e of ['BTC', 'ETH', 'SOL~1', 'a,"quoted"']) {
    for (let h = 0; h < 60; h += (h % 7) + 1) {
      rows.push({ featureId: price, entityId: e, eventTimeMs: T0 + h * H, num: h % 11 === 5 ? specials[h % specials.length] : 1000 + h * 1.0001 + e.length / 3 })
      rows.push({ featureId: count, entityId: e, eventTimeMs: T0 + h * H + 1, num: h % 9 === 4 ? null : h * 17 })
      if (h % 3 === 0) rows.push({ featureId: up, entityId: e, eventTimeMs: T0 + h * H, num: h % 2 })
      if (h % 4 === 1) rows.push({ featureId: label, entityId: e, eventTimeMs: T0 + h * H, text: h % 8 === 1 ? `x,"${h}"\n` : `é ${h}` })
    }
  }
  await appendValues(sql, rows)
}

const FEATURES = ['close_price', 'trades', 'up', 'regime']

function inlineRows (n: number, extra: boolean): Array<Record<string, unknown>> {
  const entities = ['BTC', 'ETH', 'SOL~1', 'a,"quoted"', 'NONE']
  return Array.from({ length: n }, (_, i) => ({
    entity_id: entities[(i * 7) % entities.length],
    event_time: iso(T0 - 2 * H + ((i * 7919) % (70 * 60)) * 60_000 + (i % 3)),
    ...(extra ? { ord: i, tag: i % 5 === 0 ? null : `t${i % 4}` } : {}),
  }))
}

async function post (app: App, payload: object, accept: string): Promise<{ status: number, body: string, type: string }> {
  const res = await app.inject({ method: 'POST', url: '/v1/training-sets', headers: { accept }, payload })
  return { status: res.statusCode, body: res.body, type: String(res.headers['content-type']) }
}

t.test('a render thread writes the same bytes as the main thread', async (t) => {
  const main = await buildTestApp(t, { config: { TRAINING_RENDER_THREADS: 0, TRAINING_BLOCK_ROWS: 37 } })
  const threaded = await buildTestApp(t, { url: main.url, config: { TRAINING_RENDER_THREADS: 1, TRAINING_BLOCK_ROWS: 37 } })
  await seed(main.sql)
  const grid = { entities: ['BTC', 'a,"quoted"', 'NONE', 'ETH'], from: iso(T0 - H), to: iso(T0 + 70 * H), every: '17m' }
  const payloads: Array<[string, object]> = [
    ['inline', { features: FEATURES, entity_rows: inlineRows(400, false) }],
    ['inline with metadata', { features: FEATURES, entity_rows: inlineRows(250, false), include_metadata: true }],
    ['inline with pass-through columns', { features: FEATURES, entity_rows: inlineRows(120, true), include_metadata: true }],
    ['grid', { features: FEATURES, grid }],
    ['grid with metadata, known', { features: FEATURES, grid, include_metadata: true, point_in_time: 'known' }],
  ]
  for (const [label, payload] of payloads) {
    for (const accept of ['text/csv', 'application/json', 'application/x-ndjson']) {
      const a = await post(main.app, payload, accept)
      const b = await post(threaded.app, payload, accept)
      t.equal(a.status, 200, `${label}, ${accept}: ${a.body.slice(0, 200)}`)
      t.equal(b.status, 200, `${label}, ${accept} (thread): ${b.body.slice(0, 200)}`)
      t.equal(b.type, a.type)
      t.ok(a.body.length > 1000, `${label}, ${accept}: a real answer (${a.body.length} bytes)`)
      t.equal(b.body, a.body, `${label}, ${accept}: same bytes`)
    }
  }
  // JSON output parses and has one row per input row
  const j = await post(threaded.app, payloads[0][1], 'application/json')
  t.equal(JSON.parse(j.body).rows.length, 400)

  // concurrent training sets on the one thread: each its own, in order
  const concurrent = await Promise.all(payloads.map(async ([, payload], i) => post(threaded.app, payload, i % 2 === 0 ? 'text/csv' : 'application/x-ndjson')))
  for (let i = 0; i < payloads.length; i++) {
    const alone = await post(main.app, payloads[i][1], i % 2 === 0 ? 'text/csv' : 'application/x-ndjson')
    t.equal(concurrent[i].body, alone.body, `concurrent ${payloads[i][0]}`)
  }
})

t.test('a large body\'s second half of rows is read on the render thread, with the same answers', async (t) => {
  const main = await buildTestApp(t, { config: { TRAINING_RENDER_THREADS: 0 } })
  const threaded = await buildTestApp(t, { url: main.url, config: { TRAINING_RENDER_THREADS: 1 } })
  await seed(main.sql)
  const pool = threaded.app.services.renderPool
  const scans: Array<Promise<ScannedRows | undefined>> = []
  const scanRows = pool.scanRows.bind(pool)
  pool.scanRows = (bytes, from) => {
    const rows = scanRows(bytes, from)
    if (rows !== undefined) scans.push(rows)
    return rows
  }
  // ids without escapes (the thread reads rows of the usual shape only; one with an escape is
  // where it stops, and the main thread reads on)
  const plain = (r: Record<string, unknown>): Record<string, unknown> => (r.entity_id === 'a,"quoted"' ? { ...r, entity_id: 'SOL~1' } : r)
  const rows = inlineRows(24_000, false).map(plain)
  const withExtras = inlineRows(24_000, true).map(plain)
  // rows the helper does not read (an escaped id), and errors, in the second half
  const odd = rows.map((r, i) => (i === 17_000 ? { ...r, entity_id: 'B\\u0054C' } : r))
  const badTime = rows.map((r, i) => (i === 20_001 ? { ...r, event_time: 'not a time' } : r))
  const badRow = rows.map((r, i) => (i === 19_999 ? { event_time: r.event_time } : r))
  const payloads: Array<[string, string]> = [
    ['rows', JSON.stringify({ features: FEATURES, entity_rows: rows })],
    ['rows with pass-through columns', JSON.stringify({ features: FEATURES, entity_rows: withExtras, include_metadata: true })],
    ['an escaped entity id in the second half', JSON.stringify({ features: FEATURES, entity_rows: odd }).replace('"B\\\\u0054C"', '"B\\u0054C"')],
    ['Python\'s spacing', JSON.stringify({ features: FEATURES, entity_rows: rows }).replace(/,"/g, ', "').replace(/":/g, '": ')],
    ['a bad event_time in the second half', JSON.stringify({ features: FEATURES, entity_rows: badTime })],
    ['a bad row in the second half', JSON.stringify({ features: FEATURES, entity_rows: badRow })],
    ['malformed JSON in the second half', JSON.stringify({ features: FEATURES, entity_rows: rows }).replace(/\},\{/g, (m, at: number) => (at > 1_200_000 && at < 1_200_100 ? '};{' : m))],
  ]
  for (const [label, payload] of payloads) {
    t.ok(payload.length > 1 << 20, `${label}: ${payload.length} bytes`)
    const send = async (app: App): Promise<{ status: number, body: string }> => {
      const res = await app.inject({ method: 'POST', url: '/v1/training-sets', headers: { accept: 'text/csv', 'content-type': 'application/json' }, payload })
      // a problem's request id is its own
      return { status: res.statusCode, body: res.statusCode === 200 ? res.body : JSON.stringify({ ...res.json(), request_id: undefined }) }
    }
    const before = scans.length
    const a = await send(main.app)
    const b = await send(threaded.app)
    t.equal(b.status, a.status, `${label}: ${b.body.slice(0, 300)}`)
    t.equal(b.body, a.body, `${label}: same answer`)
    t.equal(scans.length, before + 1, `${label}: handed to the thread`)
  }
  const counts = (await Promise.all(scans)).map((r) => r?.count)
  t.ok(counts.filter((n) => n !== undefined && n > 4000).length >= 5, `the thread read rows: ${counts.join(', ')}`)
  const statuses = await Promise.all(payloads.slice(4).map(async ([, payload]) => (await threaded.app.inject({ method: 'POST', url: '/v1/training-sets', headers: { accept: 'text/csv', 'content-type': 'application/json' }, payload })).statusCode))
  t.same(statuses, [422, 400, 400], 'the errors are the ones the rows have')
})

t.test('a scan on a render thread: only of shared memory and a free thread; a thread that dies gives nothing', async (t) => {
  const pool = new RenderPool(1)
  t.teardown(async () => pool.close())
  const text = `[${Array.from({ length: 2000 }, (_, i) => `{"entity_id":"e${i % 3}","event_time":"2023-01-01T00:00:0${i % 10}Z"}`).join(',')}]`
  const shared = Buffer.from(new SharedArrayBuffer(text.length))
  shared.write(text, 'latin1')
  t.equal(pool.scanRows(Buffer.from(text), 1), undefined, 'not shared memory')
  const rows = await pool.scanRows(shared, 1)
  t.match(rows, { count: 2000, entityIds: ['e0', 'e1', 'e2'], arrayEnd: true, next: text.length })
  t.equal(rows!.time[5], Date.UTC(2023, 0, 1, 0, 0, 5))
  const layout = { columns: ['entity_id', 'event_time'], extraColumns: [], featureColumns: [], includeMetadata: false }
  const session = pool.open('csv', layout)
  t.equal(pool.scanRows(shared, 1), undefined, 'the thread is writing a training set')
  session!.close()
  t.ok(await pool.scanRows(shared, 1), 'free again')
  // a thread stopped before it could read the message (a new pool's thread is still loading)
  const other = new RenderPool(1)
  t.teardown(async () => other.close())
  const pending = other.scanRows(shared, 1)
  t.ok(pending)
  await (other as unknown as { workers: Worker[] }).workers[0].terminate()
  t.equal(await pending, undefined, 'the thread died: the caller reads the rows itself')
  t.equal(new RenderPool(0).scanRows(shared, 1), undefined, 'no threads')
})

t.test('a render thread that dies is replaced by the next training set', async (t) => {
  const { app, sql } = await buildTestApp(t, { config: { TRAINING_RENDER_THREADS: 1, TRAINING_BLOCK_ROWS: 5 } })
  await seed(sql)
  const payload = { features: FEATURES, entity_rows: inlineRows(300, false) }
  const good = await post(app, payload, 'text/csv')
  t.equal(good.status, 200)
  const pool = app.services.renderPool as unknown as { workers: Array<Worker | undefined> }
  const worker = pool.workers[0]
  t.ok(worker, 'the thread was started by the first training set')
  await worker!.terminate()
  t.equal(pool.workers[0], undefined, 'the dead thread is dropped')
  const again = await post(app, payload, 'text/csv')
  t.equal(again.status, 200)
  t.equal(again.body, good.body, 'a new thread writes the same rows')
  t.not(pool.workers[0], worker)
})

t.test('a pool whose thread cannot start writes on the main thread from then on', async (t) => {
  const errors: Error[] = []
  const pool = new RenderPool(1, (err) => { errors.push(err) })
  t.teardown(async () => pool.close())
  const layout = { columns: ['entity_id', 'event_time', 'x'], extraColumns: [], featureColumns: ['x'], includeMetadata: false }
  const session = pool.open('csv', layout)
  t.ok(session)
  // make the thread fail before it is ready: its first message is not one it knows
  const worker = (pool as unknown as { workers: Worker[] }).workers[0]
  worker.emit('error', new Error('cannot load'))
  t.equal(errors.length, 1)
  t.match(errors[0].message, /cannot load/)
  t.equal(pool.open('csv', layout), undefined, 'no more sessions: rows are written on the main thread')
  await t.rejects(session!.render({ answers: { block: { size: 0, t: new Float64Array(0), rank: new Int32Array(0), order: new Int32Array(0), entityStart: new Int32Array(1), entityIds: [] }, features: [], status: new Uint8Array(0), num: new Float64Array(0), text: [], eventTime: new Float64Array(0) }, entityAt: () => '', extraAt: () => ({}) } as never).next(), /cannot load/)
})

t.test('the render thread\'s handler: a block of an unknown session is an error for that session', async (t) => {
  const replies: RenderReply[] = []
  handleRenderRequest({ type: 'close', session: 424242 }, (r) => replies.push(r))
  t.same(replies, [])
  handleRenderRequest({ type: 'block', session: 424242, features: [], size: 0, t: new Float64Array(0), rank: new Int32Array(0), order: new Int32Array(0), entityStart: new Int32Array(1), entityIds: [], status: new Uint8Array(0), num: new Float64Array(0), text: [], eventTime: new Float64Array(0) }, (r) => replies.push(r))
  t.match(replies, [{ session: 424242, type: 'error', message: /no open session/ }])
})
