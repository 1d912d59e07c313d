import http from 'node:http'
import { readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import type { AddressInfo } from 'node:net'
import type { Sql } from '../db/connection.js'
import { insertDefinition } from '../test/lib/fixtures.js'
import { sharedDataDir } from '../test/lib/shared-data.js'
import { openBenchApp, type Bench, type BenchResult } from './lib/harness.js'

/**
 * Benchmark 1: rows/s through POST /v1/values (CSV and NDJSON streams over real HTTP to a
 * listening app) against a raw COPY of the same rows into the same table, each on an empty
 * table, in the same run. Data: the real hourly candles (open, high, low, close, volume of 10
 * symbols, about 1.2 million values) when ../shared/data is present, else generated rows.
 * Beside it, the latency of a small write (a JSON body of 10 rows, as a producer posting each
 * new candle sends it), answered after its commit, against the same rows written by one INSERT
 * in a transaction of their own.
 */

interface Row { feature: string, entity: string, eventMs: number, value: number }
const FEATURES = ['open_price', 'high_price', 'low_price', 'close_price', 'volume']
const CHUNK = 256 * 1024

function loadRows (limit: number): { rows: Row[], source: string } {
  const dir = sharedDataDir()
  const rows: Row[] = []
  if (dir !== undefined) {
    const candles = path.join(dir, 'market', 'binance_spot_1h')
    for (const file of readdirSync(candles).filter((f) => f.endsWith('.csv')).sort()) {
      const symbol = file.replace(/_1h\.csv$/, '')
      const lines = readFileSync(path.join(candles, file), 'utf8').split('\n').slice(1)
      for (const line of lines) {
        if (line === '') continue
        const [date, open, high, low, close, volume] = line.split(',')
        // a candle is known at its close: open time + 1 h
        const eventMs = Date.parse(`${date.replace(' ', 'T')}Z`) + 3_600_000
        const values = [open, high, low, close, volume].map(Number)
        for (let f = 0; f < FEATURES.length; f++) rows.push({ feature: FEATURES[f], entity: symbol, eventMs, value: values[f] })
      }
    }
    return { rows: rows.slice(0, limit), source: `real candles (${rows.length.toLocaleString('en-US')} values)` }
  }
  const t0 = Date.UTC(2021, 0, 1)
  for (let i = 0; rows.length < limit; i++) {
    for (let f = 0; f < FEATURES.length && rows.length < limit; f++) rows.push({ feature: FEATURES[f], entity: `SYM${i % 10}`, eventMs: t0 + Math.floor(i / 10) * 3_600_000, value: 100 + Math.sin(i) * 10 + f })
  }
  return { rows, source: 'generated rows' }
}

function chunked (lines: Iterable<string>): Buffer[] {
  const out: Buffer[] = []
  let buf = ''
  for (const l of lines) {
    buf += l
    if (buf.length >= CHUNK) { out.push(Buffer.from(buf)); buf = '' }
  }
  if (buf.length > 0) out.push(Buffer.from(buf))
  return out
}

function * csvLines (rows: Row[]): Iterable<string> {
  yield 'feature,entity_id,event_time,value\n'
  for (const r of rows) yield `${r.feature},${r.entity},${new Date(r.eventMs).toISOString()},${r.value}\n`
}

function * ndjsonLines (rows: Row[]): Iterable<string> {
  for (const r of rows) yield `{"feature":"${r.feature}","entity_id":"${r.entity}","event_time":"${new Date(r.eventMs).toISOString()}","value":${r.value}}\n`
}

function * copyLines (rows: Row[], ids: Map<string, number>, stamp: string): Iterable<string> {
  for (const r of rows) yield `${ids.get(r.feature)!}\t${r.entity}\t${new Date(r.eventMs).toISOString()}\t${stamp}\t${r.value}\t\\N\n`
}

/** POST /v1/values over HTTP: `send` writes the body; the answer's status and text. */
async function postValues (port: number, headers: http.OutgoingHttpHeaders, send: (req: http.ClientRequest) => void): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/values', headers }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }))
    })
    req.on('error', reject)
    send(req)
  })
}

async function postStream (port: number, type: string, chunks: Buffer[]): Promise<{ status: number, body: string }> {
  return postValues(port, { 'content-type': type, 'transfer-encoding': 'chunked' }, (req) => {
    let i = 0
    const pump = (): void => {
      while (i < chunks.length) {
        if (!req.write(chunks[i++])) { req.once('drain', pump); return }
      }
      req.end()
    }
    pump()
  })
}

async function rawCopy (sql: Sql, chunks: Buffer[]): Promise<void> {
  await sql.begin(async (tx) => {
    const stream = await tx`COPY feature_snapshots (feature_id, entity_id, event_time, ingested_at, value_num, value_text) FROM STDIN`.writable()
    for (const c of chunks) {
      if (!stream.write(c)) await new Promise((resolve) => stream.once('drain', resolve))
    }
    await new Promise<void>((resolve, reject) => { stream.once('error', reject); stream.end(() => resolve()) })
  })
}

/** Small writes: one POST /v1/values of 10 rows at a time, sequential; the same rows by INSERT. */
const SMALL_WRITES = 200
const SMALL_ROWS = 10

async function postJson (port: number, body: string): Promise<{ status: number, body: string }> {
  return postValues(port, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, (req) => req.end(body))
}

/** Milliseconds per call, sorted. */
async function latencies (n: number, fn: (i: number) => Promise<void>): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    await fn(i)
    out.push(performance.now() - t0)
  }
  return out.sort((a, b) => a - b)
}

async function smallWrites (sql: Sql, port: number, featureId: number): Promise<{ post: number[], insert: number[] }> {
  const t0 = Date.UTC(2030, 0, 1)
  const rowsOf = (i: number, offset: number): Array<{ entity: string, eventMs: number, value: number }> =>
    Array.from({ length: SMALL_ROWS }, (_, e) => ({ entity: `SYM${e}`, eventMs: t0 + (offset + i) * 3_600_000, value: 100 + i + e }))
  const post = async (i: number): Promise<void> => {
    const body = JSON.stringify({ rows: rowsOf(i, 0).map((r) => ({ feature: FEATURES[0], entity_id: r.entity, event_time: new Date(r.eventMs).toISOString(), value: r.value })) })
    const res = await postJson(port, body)
    if (res.status !== 200 || JSON.parse(res.body).written !== SMALL_ROWS) throw new Error(`small write failed: ${res.status} ${res.body.slice(0, 300)}`)
  }
  const insert = async (i: number): Promise<void> => {
    const rs = rowsOf(i, SMALL_WRITES + 10)
    await sql.begin(async (tx) => {
      await tx`
        INSERT INTO feature_snapshots (feature_id, entity_id, event_time, ingested_at, value_num)
        SELECT ${featureId}, u.e, timestamptz 'epoch' + u.t * interval '1 millisecond', clock_timestamp(), u.v
        FROM unnest(${rs.map((r) => r.entity)}::text[], ${rs.map((r) => r.eventMs)}::int8[], ${rs.map((r) => r.value)}::float8[]) AS u(e, t, v)`
    })
  }
  await post(-1); await insert(-1) // warm-up
  // alternating halves, so that a slow phase of the machine falls on both
  const half = SMALL_WRITES / 2
  const a = await latencies(half, post)
  const b = await latencies(half, insert)
  const c = await latencies(half, async (i) => post(half + i))
  const d = await latencies(half, async (i) => insert(half + i))
  return { post: [...a, ...c].sort((x, y) => x - y), insert: [...b, ...d].sort((x, y) => x - y) }
}

async function emptyTables (sql: Sql): Promise<void> {
  await sql`TRUNCATE feature_snapshots, feature_online`
  await sql`CHECKPOINT`
}

async function timed (fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now()
  await fn()
  return (performance.now() - t0) / 1000
}

async function run (adminUrl: string): Promise<BenchResult[]> {
  const limit = Number(process.env.BENCH_INGEST_ROWS ?? 1_200_000)
  const repeats = Number(process.env.BENCH_REPEATS ?? 2)
  const { rows, source } = loadRows(limit)
  const { app, db, close } = await openBenchApp(adminUrl, 'ingest')
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as AddressInfo).port
  const ids = new Map<string, number>()
  for (const f of FEATURES) ids.set(f, await insertDefinition(db.sql, { name: f, validation: { min: 0 } }))

  const csv = chunked(csvLines(rows))
  const ndjson = chunked(ndjsonLines(rows))
  const copy = chunked(copyLines(rows, ids, new Date().toISOString()))
  const best = { copy: Infinity, csv: Infinity, ndjson: Infinity }
  let small: { post: number[], insert: number[] }
  try {
    for (let r = 0; r < repeats; r++) {
      await emptyTables(db.sql)
      best.copy = Math.min(best.copy, await timed(() => rawCopy(db.sql, copy)))
      for (const [kind, type, body] of [['csv', 'text/csv', csv], ['ndjson', 'application/x-ndjson', ndjson]] as const) {
        await emptyTables(db.sql)
        best[kind] = Math.min(best[kind], await timed(async () => {
          const res = await postStream(port, type, body)
          if (res.status !== 200 || JSON.parse(res.body).written !== rows.length) throw new Error(`ingest failed: ${res.status} ${res.body.slice(0, 500)}`)
        }))
      }
    }
    await emptyTables(db.sql)
    small = await smallWrites(db.sql, port, ids.get(FEATURES[0])!)
  } finally {
    await close()
  }
  const copyRate = rows.length / best.copy
  const notes = `${rows.length.toLocaleString('en-US')} values, ${source}, ${db.storageMode} mode, best of ${repeats}`
  const median = (xs: number[]): number => xs[Math.floor(xs.length / 2)]
  const p99 = (xs: number[]): number => xs[Math.min(xs.length - 1, Math.ceil(0.99 * xs.length) - 1)]
  const smallNotes = `${SMALL_WRITES} sequential writes of ${SMALL_ROWS} rows each way, alternating halves; p99 ${p99(small.post).toFixed(1)} ms vs ${p99(small.insert).toFixed(1)} ms`
  const streams = (['csv', 'ndjson'] as const).map((kind): BenchResult => {
    const rate = rows.length / best[kind]
    return {
      bench: 'ingest',
      measured: `POST /v1/values ${kind.toUpperCase()} stream`,
      value: rate,
      unit: 'rows/s',
      reference: 'raw COPY into feature_snapshots',
      reference_value: copyRate,
      ratio: rate / copyRate,
      target: '>= 0.5 of raw COPY',
      met: rate / copyRate >= 0.5,
      notes,
    }
  })
  return [...streams, {
    bench: 'ingest',
    measured: `POST /v1/values JSON, ${SMALL_ROWS} rows, median latency (answered after commit)`,
    value: median(small.post),
    unit: 'ms',
    reference: `the same ${SMALL_ROWS} rows by one INSERT in a transaction`,
    reference_value: median(small.insert),
    ratio: median(small.post) / median(small.insert),
    target: 'informational (lower is better)',
    met: true,
    notes: smallNotes,
  }]
}

const bench: Bench = { name: 'ingest', run }
export default bench
