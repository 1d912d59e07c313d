import t from 'tap'
import fc from 'fast-check'
import { buildTestApp } from '../lib/helper.js'
import { appendValues } from '../lib/fixtures.js'
import { soundCutoff } from '../../db/knowledge.js'
import { rebuildWriteLog } from '../../db/write-log.js'
import { buildFeaturePacks } from '../../db/series-packs.js'
import type { Sql } from '../../db/connection.js'
import type { App } from '../../src/app.js'
import { decodeValue } from '../../src/domain/value-validation.js'
import type { Dtype } from '../../src/domain/feature.js'

/**
 * The point-in-time rule of SPEC, checked against a reference implementation written as the
 * rule reads, on random data: ties on event_time, corrections (same key, later ingested_at),
 * ttl edges (event_time == T, event_time == T - ttl), ingested_at one microsecond either side
 * of a row's T, nulls, duplicated entity rows, cutoffs between ingests. Training sets in both
 * point_in_time modes, with and without as_of_system_time, and /retrieve; one app answers in
 * blocks of 3 rows (to cross block boundaries), one with the default block size. Both read
 * with the direct COPY (the default of postgres mode); two more read with bounded reads
 * (PIT_READS=bounded, TimescaleDB mode's default) and a lookback of 1 s, so that anchors are
 * found in all three of its steps (within the lookback, the next 15 s, everything older),
 * with the write log and the first events trusted (after a rebuild, or the real write path)
 * and not (values written by SQL). The direct reads ("event" mode) take numeric values from
 * series packs (db/series-packs.ts) where the write log proves them current: in some runs packs
 * are built for part of the data (a random cutoff and horizon, 1 to 4 values a pack: boundaries
 * everywhere, versions of one event_time split between packs), with values stamped after the
 * cutoff, so that some pairs read packs and rows and others fall back to the rows.
 */

const SEED = Number(process.env.PIT_SEED ?? Date.now() % 2 ** 31)
const RUNS = Number(process.env.PIT_RUNS ?? 40)
const U = 60_000 // one tick of the random time grid
const BASE = Date.UTC(2022, 0, 1)
const ENTITIES = ['a', 'b', 'c']

interface Feature { name: string, dtype: Dtype, ttl_ms: number | null }
interface Stored { f: number, e: string, eventMs: number, ingestedUs: number, num: number | null, text: string | null }
interface Cell { value: unknown, status: string, event_time: string | null }

/** The rule, literally: filter the candidates, take the greatest (event_time, ingested_at). */
function reference (stored: Stored[], features: Feature[], f: number, e: string, T: number, K: number): Cell {
  const ttl = features[f].ttl_ms
  const known = stored.filter((r) => r.f === f && r.e === e && r.eventMs <= T && r.ingestedUs <= K * 1000)
  const candidates = ttl === null ? known : known.filter((r) => r.eventMs >= T - ttl)
  if (candidates.length === 0) return { value: null, status: known.length > 0 ? 'OUTSIDE_TTL' : 'NOT_FOUND', event_time: null }
  const best = candidates.reduce((a, b) => (b.eventMs > a.eventMs || (b.eventMs === a.eventMs && b.ingestedUs > a.ingestedUs) ? b : a))
  if (best.num === null && best.text === null) return { value: null, status: 'NULL_VALUE', event_time: new Date(best.eventMs).toISOString() }
  return { value: decodeValue(features[f].dtype, best.num, best.text), status: 'PRESENT', event_time: new Date(best.eventMs).toISOString() }
}

async function readStored (sql: Sql, ids: number[]): Promise<Stored[]> {
  const rows = await sql<Array<{ feature_id: number, entity_id: string, event_ms: number, ingested_us: number, value_num: number | null, value_text: string | null }>>`
    SELECT feature_id, entity_id,
           (extract(epoch FROM event_time) * 1000)::int8 AS event_ms,
           (extract(epoch FROM ingested_at) * 1000000)::int8 AS ingested_us,
           value_num, value_text
    FROM feature_snapshots`
  return rows.map((r) => ({ f: ids.indexOf(r.feature_id), e: r.entity_id, eventMs: r.event_ms, ingestedUs: r.ingested_us, num: r.value_num, text: r.value_text }))
}

async function defineFeatures (sql: Sql, features: Feature[]): Promise<number[]> {
  // the TRUNCATE drops every pack mark (a trigger); the packs of the features deleted below go too
  await sql`TRUNCATE feature_snapshots, feature_online`
  await sql`DELETE FROM feature_series_packs`
  await sql`DELETE FROM feature_definitions`
  const ids: number[] = []
  for (const f of features) {
    const [r] = await sql<{ id: number }[]>`INSERT INTO feature_definitions (name, version, entity, dtype, ttl_ms) VALUES (${f.name}, 1, 'symbol', ${f.dtype}, ${f.ttl_ms}) RETURNING id`
    ids.push(r.id)
  }
  return ids
}

interface Request { rows: Array<{ e: string, T: number }>, mode: 'event' | 'known', K: number | undefined }

/** Compares one training set (JSON with metadata) with the reference; returns a difference or undefined. */
async function checkTrainingSet (app: App, label: string, stored: Stored[], features: Feature[], req: Request): Promise<string | undefined> {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/training-sets',
    payload: {
      features: features.map((f) => f.name),
      entity_rows: req.rows.map((r, i) => ({ entity_id: r.e, event_time: new Date(r.T).toISOString(), i })),
      point_in_time: req.mode,
      include_metadata: true,
      ...(req.K === undefined ? {} : { as_of_system_time: req.K }),
    },
  })
  if (res.statusCode !== 200) return `${label}: status ${res.statusCode} ${res.body}`
  const now = Date.parse(res.headers['x-as-of-system-time'] as string)
  const K = req.K === undefined ? now : Math.min(req.K, now)
  const rows = res.json().rows as Array<Record<string, unknown>>
  if (rows.length !== req.rows.length) return `${label}: ${rows.length} rows for ${req.rows.length}`
  for (let i = 0; i < rows.length; i++) {
    const { e, T } = req.rows[i]
    if (rows[i].entity_id !== e || rows[i].event_time !== new Date(T).toISOString() || rows[i].i !== i) return `${label}: row ${i} is ${JSON.stringify(rows[i])}`
    for (let f = 0; f < features.length; f++) {
      const want = reference(stored, features, f, e, T, req.mode === 'known' ? Math.min(T, K) : K)
      const name = features[f].name
      const got = { value: rows[i][name], status: rows[i][`${name}__status`], event_time: rows[i][`${name}__event_time`] }
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        return `${label} (${req.mode}, K=${req.K === undefined ? 'now' : new Date(req.K).toISOString()}): row ${i} (${e} at ${new Date(T).toISOString()}) ${name}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`
      }
    }
  }
  return undefined
}

async function checkRetrieve (app: App, stored: Stored[], features: Feature[], entities: string[], T: number, K: number | undefined): Promise<string | undefined> {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/retrieve',
    payload: { entities, features: features.map((f) => f.name), as_of: new Date(T).toISOString(), ...(K === undefined ? {} : { as_of_system_time: new Date(K).toISOString() }) },
  })
  if (res.statusCode !== 200) return `retrieve: status ${res.statusCode} ${res.body}`
  const body = res.json()
  const k = Date.parse(body.as_of_system_time)
  for (let i = 0; i < entities.length; i++) {
    if (body.results[i].entity_id !== entities[i]) return `retrieve: result ${i} is for ${body.results[i].entity_id}`
    for (let f = 0; f < features.length; f++) {
      const want = reference(stored, features, f, entities[i], T, k)
      const v = body.results[i].values[features[f].name]
      const got = { value: v.value, status: v.status, event_time: v.event_time }
      if (JSON.stringify(got) !== JSON.stringify(want)) return `retrieve at ${new Date(T).toISOString()} K=${body.as_of_system_time}: ${entities[i]} ${features[f].name}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`
    }
  }
  return undefined
}

const dtypeArb = fc.constantFrom<Dtype>('float64', 'float64', 'string', 'bool', 'int64')
const featuresArb = fc.tuple(
  fc.tuple(dtypeArb, fc.option(fc.integer({ min: 1, max: 4 }), { nil: null })),
  fc.tuple(dtypeArb, fc.option(fc.integer({ min: 1, max: 4 }), { nil: null })),
  fc.tuple(dtypeArb, fc.option(fc.integer({ min: 1, max: 4 }), { nil: null })),
).map((fs): Feature[] => fs.map(([dtype, ttl], i) => ({ name: `f${i}`, dtype, ttl_ms: ttl === null ? null : ttl * U })))

function valueArb (dtype: Dtype): fc.Arbitrary<{ num: number | null, text: string | null }> {
  const nul = fc.constant({ num: null, text: null })
  switch (dtype) {
    case 'string': return fc.oneof(nul, fc.constantFrom('', 'x', 'a,b', 'q"u', 'é').map((text) => ({ num: null, text })))
    case 'bool': return fc.oneof(nul, fc.constantFrom(0, 1).map((num) => ({ num, text: null })))
    case 'int64': return fc.oneof(nul, fc.integer({ min: -5, max: 5 }).map((num) => ({ num, text: null })))
    default: return fc.oneof(nul, fc.constantFrom(0, -0.5, 1.25, 1e21, Number.NaN, Number.POSITIVE_INFINITY).map((num) => ({ num, text: null })))
  }
}

/** Times on a small grid (so that ties and ttl edges are frequent), sometimes 1 ms after a tick. */
const tickArb = fc.tuple(fc.integer({ min: 0, max: 8 }), fc.constantFrom(0, 0, 0, 1)).map(([k, d]) => BASE + k * U + d)
/** ingested_at: a tick, or a tick plus 1 or 999 microseconds (µs since the epoch). */
const ingestArb = fc.tuple(fc.integer({ min: 0, max: 8 }), fc.constantFrom(0, 0, 1, 999)).map(([k, us]) => (BASE + k * U) * 1000 + us)

/** A tick of the grid (and one past it), mostly in its later half. */
const lateTick = (min: number): fc.Arbitrary<number> => fc.oneof({ weight: 2, arbitrary: fc.integer({ min: 5, max: 9 }) }, { weight: 1, arbitrary: fc.integer({ min, max: 9 }) })

const scenarioArb = featuresArb.chain((features) => fc.record({
  features: fc.constant(features),
  stored: fc.uniqueArray(
    fc.integer({ min: 0, max: 2 }).chain((f) => fc.record({
      f: fc.constant(f),
      e: fc.constantFrom('a', 'b'),
      eventMs: tickArb,
      ingestedUs: ingestArb,
      value: valueArb(features[f].dtype),
    })),
    // up to 30 values (size '+1': fast-check's default size stops at 10)
    { maxLength: 30, size: '+1', selector: (r) => `${r.f}|${r.e}|${r.eventMs}|${r.ingestedUs}` },
  ),
  rows: fc.array(fc.record({ e: fc.constantFrom(...ENTITIES), T: tickArb }), { maxLength: 20 }),
  K: fc.option(tickArb, { nil: undefined }),
  // rebuild the write log after the values were written by SQL (bounded reads then trust it)
  rebuild: fc.boolean(),
  // then (when rebuilt) series packs for the numeric features: per feature, one or two builds
  // at a cutoff and horizon on the grid (ms; cutoffs between stamps too; mostly late, so that
  // the packs hold most values), 1 to 4 values a pack
  packs: fc.option(fc.array(fc.array(fc.record({
    cutoffMs: fc.tuple(lateTick(-1), fc.constantFrom(0, 0, 1)).map(([k, d]) => BASE + k * U + d),
    horizonMs: fc.tuple(lateTick(0), fc.constantFrom(0, 0, 1)).map(([k, d]) => BASE + k * U + d),
    packValues: fc.integer({ min: 1, max: 4 }),
  }), { minLength: 1, maxLength: 2 }), { minLength: 3, maxLength: 3 }), { nil: undefined, freq: 5 }),
  retrieveEntities: fc.array(fc.constantFrom(...ENTITIES), { minLength: 1, maxLength: 4 }),
  retrieveT: tickArb,
}))

function isoMicros (us: number): string {
  const ms = Math.floor(us / 1000)
  return `${new Date(ms).toISOString().slice(0, -1)}${String(us - ms * 1000).padStart(3, '0')}Z`
}

t.test(`training sets and /retrieve follow the rule on random data (seed ${SEED}, ${RUNS} runs)`, async (t) => {
  t.comment(`seed ${SEED}: rerun with PIT_SEED=${SEED}`)
  const small = await buildTestApp(t, { config: { TRAINING_BLOCK_ROWS: 3, TRAINING_READ_CONNECTIONS: 2 } })
  const large = await buildTestApp(t, { url: small.url })
  const boundedSmall = await buildTestApp(t, { url: small.url, config: { TRAINING_BLOCK_ROWS: 3, TRAINING_READ_CONNECTIONS: 2, PIT_READS: 'bounded', PIT_LOOKBACK_SECONDS: 1 } })
  const boundedLarge = await buildTestApp(t, { url: small.url, config: { PIT_READS: 'bounded', PIT_LOOKBACK_SECONDS: 1 } })
  const sql = small.sql
  // how much the runs packed (a comment at the end)
  const packed = { runs: 0, builds: 0, values: 0 }
  const property = fc.asyncProperty(scenarioArb, async (sc) => {
    const ids = await defineFeatures(sql, sc.features)
    if (sc.stored.length > 0) {
      await sql`INSERT INTO feature_snapshots (feature_id, entity_id, event_time, ingested_at, value_num, value_text)
        SELECT * FROM unnest(${sc.stored.map((r) => ids[r.f])}::int4[], ${sc.stored.map((r) => r.e)}::text[],
          ${sc.stored.map((r) => new Date(r.eventMs).toISOString())}::timestamptz[], ${sc.stored.map((r) => isoMicros(r.ingestedUs))}::text[]::timestamptz[],
          ${sc.stored.map((r) => (r.value.num === null ? null : String(r.value.num)))}::float8[], ${sc.stored.map((r) => r.value.text)}::text[])`
    }
    if (sc.rebuild) await rebuildWriteLog(sql)
    if (sc.rebuild && sc.packs !== undefined) {
      for (let f = 0; f < sc.features.length; f++) {
        if (sc.features[f].dtype === 'string') continue
        for (const b of sc.packs[f]) {
          const built = await buildFeaturePacks(sql, { featureId: ids[f], ...b })
          packed.builds++
          packed.values += built.values
        }
      }
      packed.runs++
    }
    const stored = await readStored(sql, ids)
    const apps = [['blocks of 3', small.app], ['one block', large.app], ['bounded, blocks of 3', boundedSmall.app], ['bounded, one block', boundedLarge.app]] as const
    for (const [label, app] of apps) {
      for (const mode of ['event', 'known'] as const) {
        for (const K of [undefined, sc.K]) {
          const diff = await checkTrainingSet(app, label, stored, sc.features, { rows: sc.rows, mode, K })
          if (diff) throw new Error(diff)
        }
      }
    }
    for (const K of [undefined, sc.K]) {
      for (const app of [large.app, boundedLarge.app]) {
        const diff = await checkRetrieve(app, stored, sc.features, sc.retrieveEntities, sc.retrieveT, K)
        if (diff) throw new Error(diff)
      }
    }
  })
  try {
    await fc.assert(property, { numRuns: RUNS, seed: SEED, endOnFailure: false, interruptAfterTimeLimit: 120_000, markInterruptAsFailure: true })
    t.pass(`${RUNS} random scenarios agree with the reference`)
  } catch (err) {
    t.fail(`${(err as Error).message}\n${String((err as Error).cause ?? "")}`)
  }
  t.comment(`series packs in ${packed.runs} runs: ${packed.builds} builds, ${packed.values} values packed`)
})

t.test(`the real write path: ingests interleaved with sound cutoffs (seed ${SEED})`, async (t) => {
  const { app: direct, sql, url } = await buildTestApp(t, { config: { TRAINING_BLOCK_ROWS: 4, TRAINING_READ_CONNECTIONS: 2 } })
  const { app: bounded } = await buildTestApp(t, { url, config: { TRAINING_BLOCK_ROWS: 4, TRAINING_READ_CONNECTIONS: 2, PIT_READS: 'bounded', PIT_LOOKBACK_SECONDS: 1 } })
  const batchArb = fc.array(fc.record({
    f: fc.integer({ min: 0, max: 1 }),
    e: fc.constantFrom('a', 'b'),
    k: fc.integer({ min: 0, max: 6 }),
    v: fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 9 })),
  }), { minLength: 1, maxLength: 6 })
  // after a batch, maybe series packs of both features: at one of the sound cutoffs taken so far
  // (back: how many moments back; mostly the latest), a horizon on or between the event times
  // (base + h * 500, + 250 when half; mostly late), 1 to 3 values a pack; the later batches are
  // then logged writes after built_through (pairs they touch before the horizon fall back to the rows)
  const packed = { builds: 0, values: 0 }
  const packArb = fc.option(fc.record({
    back: fc.oneof({ weight: 2, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat() }),
    h: fc.oneof({ weight: 2, arbitrary: fc.integer({ min: 4, max: 7 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 7 }) }),
    half: fc.boolean(),
    packValues: fc.integer({ min: 1, max: 3 }),
  }), { nil: null, freq: 2 })
  const property = fc.asyncProperty(
    fc.array(fc.tuple(batchArb, packArb), { minLength: 1, maxLength: 4 }),
    fc.option(fc.integer({ min: 1, max: 3 }), { nil: null }),
    fc.array(fc.record({ e: fc.constantFrom(...ENTITIES), pick: fc.nat(), offset: fc.constantFrom(-1, 0, 1) }), { maxLength: 10 }),
    fc.nat(),
    async (batchesAndPacks, ttl, rowPicks, kPick) => {
      const features: Feature[] = [{ name: 'p', dtype: 'float64', ttl_ms: null }, { name: 'q', dtype: 'int64', ttl_ms: ttl === null ? null : ttl * 1000 }]
      const ids = await defineFeatures(sql, features)
      // event times near now, so that "known" rows fall between the real ingest stamps
      const base = Math.floor(Date.now() / 1000) * 1000 - 3000
      const moments: number[] = []
      for (const [batch, pack] of batchesAndPacks) {
        await appendValues(sql, batch.map((r) => ({ featureId: ids[r.f], entityId: r.e, eventTimeMs: base + r.k * 500, num: r.v })))
        moments.push(await soundCutoff(sql))
        if (pack !== null) {
          for (const featureId of ids) {
            const built = await buildFeaturePacks(sql, { featureId, cutoffMs: moments[moments.length - 1 - (pack.back % moments.length)], horizonMs: base + pack.h * 500 + (pack.half ? 250 : 0), packValues: pack.packValues })
            packed.builds++
            packed.values += built.values
          }
        }
      }
      const stored = await readStored(sql, ids)
      // points in time: event times, ingest stamps (ms floor and ceil) and cutoffs, +-1 ms
      const candidates = [...new Set([...stored.map((s) => s.eventMs), ...stored.flatMap((s) => [Math.floor(s.ingestedUs / 1000), Math.ceil(s.ingestedUs / 1000)]), ...moments])]
      const rows = rowPicks.map((p) => ({ e: p.e, T: candidates[p.pick % candidates.length] + p.offset }))
      const K = moments[kPick % moments.length]
      for (const [label, app] of [['write path', direct], ['write path, bounded', bounded]] as const) {
        for (const mode of ['event', 'known'] as const) {
          for (const k of [undefined, K]) {
            const diff = await checkTrainingSet(app, label, stored, features, { rows, mode, K: k })
            if (diff) throw new Error(diff)
          }
        }
        const diff = await checkRetrieve(app, stored, features, ['a', 'b', 'c'], base + 3 * 500, K)
        if (diff) throw new Error(diff)
      }
    },
  )
  try {
    await fc.assert(property, { numRuns: Math.max(5, Math.round(RUNS / 3)), seed: SEED, endOnFailure: false, interruptAfterTimeLimit: 90_000, markInterruptAsFailure: true })
    t.pass('the real write path agrees with the reference')
  } catch (err) {
    t.fail(`${(err as Error).message}\n${String((err as Error).cause ?? "")}`)
  }
  t.comment(`series packs: ${packed.builds} builds, ${packed.values} values packed`)
})
