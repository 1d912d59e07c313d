import t from 'tap'
import type { Worker } from 'node:worker_threads'
import { buildTestApp } from '../lib/helper.js'
import { insertDefinition, appendValues } from '../lib/fixtures.js'
import { handleRenderRequest, type RenderReply } from '../../src/services/render-worker.js'
import { RenderPool } from '../../src/services/render-pool.js'
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
