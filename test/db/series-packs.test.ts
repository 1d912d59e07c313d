import t from 'tap'
import type { Test } from 'tap'
import { buildTestApp, until } from '../lib/helper.js'
import { appendValues, insertDefinition, type RawValue } from '../lib/fixtures.js'
import { soundCutoff } from '../../db/knowledge.js'
import { rebuildWriteLog } from '../../db/write-log.js'
import { buildFeaturePacks, packableFeatures, PACKED_NULL_HI, PACKED_NULL_LO, type PackBuild } from '../../db/series-packs.js'
import { monthStart } from '../../src/services/series-packs.js'
import type { Sql } from '../../db/connection.js'
import type { App } from '../../src/app.js'
import { onlyIn } from '../lib/test-server-mode.js'

/** Series packs are read and built in postgres mode only (TimescaleDB compresses its chunks itself). */
const POSTGRES_ONLY = await onlyIn('postgres')

/**
 * Series packs (migrations/110, db/series-packs.ts): point-in-time reads ("event" mode, direct
 * reads, postgres mode) take a numeric pair's values before the pack horizon from the packs
 * where the write log proves them current, else from the rows. Every answer here is compared
 * with the same request to a second app on the same database with SERIES_PACKS=false (rows
 * only), and, where it matters, with explicit values. Whether packs were read is seen by
 * changing the packs' bytes (tamper): an answer that moves with them came from the packs.
 */

const H = 3_600_000
const T0 = Date.UTC(2021, 0, 1)
const iso = (ms: number): string => new Date(ms).toISOString()

interface Ctx { app: App, off: App, sql: Sql }

/** One database, two apps: packs on (the default) and off. */
async function setup (t: Test, config: Record<string, unknown> = {}): Promise<Ctx> {
  const on = await buildTestApp(t, { config })
  const off = await buildTestApp(t, { url: on.url, config: { ...config, SERIES_PACKS: false } })
  return { app: on.app, off: off.app, sql: on.sql }
}

interface TsBody {
  features: string[]
  grid?: { entities: string[], from: string, to: string, every: string }
  entity_rows?: Array<{ entity_id: string, event_time: string }>
  as_of_system_time?: string | number
  point_in_time?: 'event' | 'known'
}

/** A training set as JSON text (with metadata), and its rows. */
async function trainingSet (app: App, body: TsBody, accept = 'application/json'): Promise<{ text: string, rows: Array<Record<string, unknown>> }> {
  const res = await app.inject({ method: 'POST', url: '/v1/training-sets', headers: { accept }, payload: { include_metadata: true, ...body } })
  if (res.statusCode !== 200) throw new Error(`training set: ${res.statusCode} ${res.body}`)
  return { text: res.body, rows: accept === 'application/json' ? res.json().rows : [] }
}

/**
 * The training set from both apps: the same bytes (x-as-of-system-time pinned, so both read at
 * one cutoff); returns the rows.
 */
async function agree (t: Test, ctx: Ctx, body: TsBody, label: string): Promise<Array<Record<string, unknown>>> {
  const k = body.as_of_system_time ?? await soundCutoff(ctx.sql)
  const pinned = { ...body, as_of_system_time: k }
  const on = await trainingSet(ctx.app, pinned)
  const off = await trainingSet(ctx.off, pinned)
  t.equal(on.text, off.text, `${label}: packs on = packs off`)
  return on.rows
}

/** The value column of one feature over the rows. */
const column = (rows: Array<Record<string, unknown>>, name: string): unknown[] => rows.map((r) => r[name])

async function build (sql: Sql, featureId: number, horizonMs: number, packValues?: number, cutoffMs?: number): Promise<PackBuild> {
  return buildFeaturePacks(sql, { featureId, cutoffMs: cutoffMs ?? await soundCutoff(sql), horizonMs, ...(packValues === undefined ? {} : { packValues }) })
}

const isNullBytes = (b: Buffer, at: number): boolean => b.readInt32BE(at) === PACKED_NULL_HI && b.readInt32BE(at + 4) === PACKED_NULL_LO

/**
 * Adds `delta` to every finite packed value of the feature (of one entity, or all): answers read
 * from the packs move by it, answers read from the rows do not. Returns the undo.
 */
async function tamper (sql: Sql, featureId: number, entityId?: string, delta = 1000): Promise<() => Promise<void>> {
  const packs = await sql<Array<{ ctid: string, value_num: Buffer }>>`
    SELECT ctid::text AS ctid, value_num FROM feature_series_packs
    WHERE feature_id = ${featureId} ${entityId === undefined ? sql`` : sql`AND entity_id = ${entityId}`}`
  const undo: Array<{ ctid: string, value_num: Buffer }> = []
  for (const p of packs) {
    const b = Buffer.from(p.value_num)
    for (let at = 0; at < b.length; at += 8) {
      if (isNullBytes(b, at)) continue
      const v = b.readDoubleBE(at)
      if (Number.isFinite(v)) b.writeDoubleBE(v + delta, at)
    }
    undo.push({ ctid: await setPackValues(sql, p.ctid, b), value_num: p.value_num })
  }
  return async () => {
    for (const p of undo) await setPackValues(sql, p.ctid, p.value_num)
  }
}

/** Writes one pack's value_num (the pack by its ctid); returns its new ctid. */
async function setPackValues (sql: Sql, ctid: string, values: Buffer): Promise<string> {
  const [row] = await sql<Array<{ ctid: string }>>`UPDATE feature_series_packs SET value_num = ${values} WHERE ctid = ${ctid}::tid RETURNING ctid::text AS ctid`
  if (row === undefined) throw new Error(`no pack at ${ctid}`)
  return row.ctid
}

/** The rows' answers of one column with the feature's packs tampered, then undone. */
async function tampered (ctx: Ctx, featureId: number, body: TsBody, name: string, entityId?: string): Promise<unknown[]> {
  const undo = await tamper(ctx.sql, featureId, entityId)
  try {
    return column((await trainingSet(ctx.app, body)).rows, name)
  } finally {
    await undo()
  }
}

/** Hourly values of one entity: T0 + i h for i in [from, to), value f(i). */
function hourly (featureId: number, entityId: string, from: number, to: number, f: (i: number) => number | null): RawValue[] {
  const out: RawValue[] = []
  for (let i = from; i < to; i++) out.push({ featureId, entityId, eventTimeMs: T0 + i * H, num: f(i) })
  return out
}

const grid = (features: string[], entities: string[], fromH: number, toH: number, every = '1h'): TsBody =>
  ({ features, grid: { entities, from: iso(T0 + fromH * H), to: iso(T0 + toH * H), every } })

async function marks (sql: Sql): Promise<number> {
  const [{ n }] = await sql<Array<{ n: number }>>`SELECT count(*)::int AS n FROM feature_pack_marks`
  return n
}

/** Feature x with hours 0..23 of A (values 0..23) and of B (100..123). */
async function seedAB (sql: Sql): Promise<number> {
  const x = await insertDefinition(sql, { name: 'x' })
  await appendValues(sql, [...hourly(x, 'A', 0, 24, (i) => i), ...hourly(x, 'B', 0, 24, (i) => 100 + i)])
  return x
}

async function packCount (sql: Sql, featureId?: number): Promise<number> {
  const [{ n }] = await sql<Array<{ n: number }>>`SELECT count(*)::int AS n FROM feature_series_packs ${featureId === undefined ? sql`` : sql`WHERE feature_id = ${featureId}`}`
  return n
}

t.test('packs are read: changing their bytes changes the answer (packs on), not with SERIES_PACKS=false; restored, the same again', POSTGRES_ONLY, async (t) => {
  const ctx = await setup(t)
  const { sql } = ctx
  const x = await seedAB(sql)
  const built = await build(sql, x, T0 + 48 * H, 5)
  t.same(built, { action: 'rebuilt', packs: 10, values: 48 }, 'the first build: 5 packs of A and of B')

  const body = grid(['x'], ['A', 'B'], 0, 23)
  const rows = await agree(t, ctx, body, 'built')
  t.same(column(rows, 'x'), [...Array.from({ length: 24 }, (_, i) => i), ...Array.from({ length: 24 }, (_, i) => 100 + i)])

  // the pack of A holding T0+7h: its value there becomes 999
  const [pack] = await sql<Array<{ ctid: string, event_us: Buffer, value_num: Buffer }>>`
    SELECT ctid::text AS ctid, event_us, value_num FROM feature_series_packs
    WHERE feature_id = ${x} AND entity_id = 'A' AND range_start <= ${iso(T0 + 7 * H)}::timestamptz AND range_end > ${iso(T0 + 7 * H)}::timestamptz`
  const at = Array.from({ length: pack.event_us.length / 8 }, (_, k) => Number(pack.event_us.readBigInt64BE(8 * k) / 1000n)).indexOf(T0 + 7 * H)
  t.ok(at >= 0, 'the pack holds T0+7h')
  const changed = Buffer.from(pack.value_num)
  changed.writeDoubleBE(999, 8 * at)
  const changedAt = await setPackValues(sql, pack.ctid, changed)

  const pinned = { ...body, as_of_system_time: await soundCutoff(sql) }
  const on = column((await trainingSet(ctx.app, pinned)).rows, 'x')
  const off = column((await trainingSet(ctx.off, pinned)).rows, 'x')
  t.equal(on[7], 999, 'packs on: the changed pack answers A at T0+7h')
  t.same(on.filter((_, i) => i !== 7), column(rows, 'x').filter((_, i) => i !== 7), 'nothing else moved')
  t.same(off, column(rows, 'x'), 'packs off: the rows answer')
  // the anchor (the value at the block's smallest T) and /retrieve (one T per entity) read the rows
  const retrieve = await ctx.app.inject({ method: 'POST', url: '/v1/retrieve', payload: { entities: ['A'], features: ['x'], as_of: iso(T0 + 7 * H) } })
  t.equal(retrieve.json().results[0].values.x.value, 7, '/retrieve at T0+7h alone: the anchor, from the rows')

  await setPackValues(sql, changedAt, pack.value_num)
  t.same(await agree(t, ctx, body, 'restored'), rows, 'restored: the same answers')
})

t.test('a correction of a packed value: answered from the rows until the next build (rebuilt), then from the packs', POSTGRES_ONLY, async (t) => {
  const ctx = await setup(t)
  const { sql } = ctx
  const x = await seedAB(sql)
  t.equal((await build(sql, x, T0 + 48 * H, 4)).action, 'rebuilt')
  const k1 = await soundCutoff(sql)
  const body = grid(['x'], ['A', 'B'], 0, 23)

  // A at T0+7h corrected to -7, stamped after built_through
  await appendValues(sql, [{ featureId: x, entityId: 'A', eventTimeMs: T0 + 7 * H, num: -7 }])
  const rows = await agree(t, ctx, body, 'after the correction')
  t.equal(rows[7].x, -7, 'the correction is answered')
  t.same(column(rows, 'x').slice(24), Array.from({ length: 24 }, (_, i) => 100 + i), 'B unchanged')
  // A's pair falls back to the rows (the write log shows the correction in its range); B's, written by no later write, still reads the packs
  const moved = await tampered(ctx, x, body, 'x')
  t.same(moved.slice(0, 24), column(rows, 'x').slice(0, 24), 'A: from the rows')
  t.same(moved.slice(25), column(rows, 'x').slice(25).map((v) => (v as number) + 1000), 'B: from the packs (all but the anchor)')
  // as of k1, before the correction: the original value, the same with packs on and off
  t.equal((await agree(t, ctx, { ...body, as_of_system_time: k1 }, 'as of k1'))[7].x, 7)

  // the next build finds a write before the horizon since built_through: packs rebuilt with the correction
  const rebuilt = await build(sql, x, T0 + 48 * H, 4)
  t.same(rebuilt, { action: 'rebuilt', packs: 13, values: 49 }, 'rebuilt: both versions of A at T0+7h packed')
  const again = await agree(t, ctx, body, 'rebuilt')
  t.same(again, rows, 'the same answers')
  const fromPacks = await tampered(ctx, x, body, 'x')
  t.same(fromPacks.slice(1, 24), column(rows, 'x').slice(1, 24).map((v) => (v as number) + 1000), 'A: from the packs again, the correction included')
  t.equal(fromPacks[7], -7 + 1000)
  // the packs hold the old version too: as of k1 (before built_through) it is cut by its stamp
  t.equal((await agree(t, ctx, { ...body, as_of_system_time: k1 }, 'rebuilt, as of k1'))[7].x, 7)
  t.equal((await tampered(ctx, x, { ...body, as_of_system_time: k1 }, 'x'))[7], 1007, 'as of k1: from the packs, the later version cut by its stamp')
})

t.test('appends after the horizon are read from the rows; a later horizon appends, nothing new is current, an older cutoff is skipped', POSTGRES_ONLY, async (t) => {
  const ctx = await setup(t)
  const { sql } = ctx
  const x = await seedAB(sql)
  const first = await build(sql, x, T0 + 12 * H, 5)
  t.same(first, { action: 'rebuilt', packs: 6, values: 24 }, 'hours 0..11 of A and B packed')
  const firstCutoff = (await sql<Array<{ bt: Date }>>`SELECT built_through AS bt FROM feature_pack_marks WHERE feature_id = ${x}`)[0].bt.getTime()

  // new values after the horizon: a logged write that touches nothing packed
  await appendValues(sql, [...hourly(x, 'A', 24, 36, (i) => i), ...hourly(x, 'B', 24, 36, (i) => 100 + i)])
  const body = grid(['x'], ['A', 'B'], 0, 35)
  const rows = await agree(t, ctx, body, 'appended rows')
  t.same(column(rows, 'x'), [...Array.from({ length: 36 }, (_, i) => i), ...Array.from({ length: 36 }, (_, i) => 100 + i)])
  const moved = await tampered(ctx, x, body, 'x')
  const want = (shiftUntil: number): unknown[] => column(rows, 'x').map((v, r) => ((r % 36) >= 1 && (r % 36) < shiftUntil ? (v as number) + 1000 : v))
  t.same(moved, want(12), 'before the horizon from the packs (but the anchors), from it on from the rows')

  // a later horizon: the packs are appended with [T0+12h, T0+30h)
  const appended = await build(sql, x, T0 + 30 * H, 5)
  t.same(appended, { action: 'appended', packs: 8, values: 36 }, 'appended: 18 values of A and of B')
  t.same(await agree(t, ctx, body, 'after the append'), rows)
  t.same(await tampered(ctx, x, body, 'x'), want(30), 'now packed up to T0+30h')

  // nothing new: current (the mark moves on, nothing is packed)
  t.same(await build(sql, x, T0 + 30 * H, 5), { action: 'current', packs: 0, values: 0 })
  // the horizon never moves back
  t.same(await build(sql, x, T0 + 10 * H, 5), { action: 'current', packs: 0, values: 0 })
  const [mark] = await sql<Array<{ bt: Date, horizon: Date }>>`SELECT built_through AS bt, horizon FROM feature_pack_marks WHERE feature_id = ${x}`
  t.equal(mark.horizon.getTime(), T0 + 30 * H, 'the horizon stays')
  // a cutoff older than the mark's: skipped, nothing changed
  t.same(await build(sql, x, T0 + 40 * H, 5, firstCutoff), { action: 'skipped', reason: 'newer_build', packs: 0, values: 0 })
  const [after] = await sql<Array<{ bt: Date, horizon: Date }>>`SELECT built_through AS bt, horizon FROM feature_pack_marks WHERE feature_id = ${x}`
  t.same([after.bt.getTime(), after.horizon.getTime()], [mark.bt.getTime(), mark.horizon.getTime()], 'the mark stays')
  t.same(await tampered(ctx, x, body, 'x'), want(30))

  // a write after the horizon of one entity and before it of the other: A falls back, B does not
  await appendValues(sql, [{ featureId: x, entityId: 'A', eventTimeMs: T0 + 3 * H, num: -3 }])
  await appendValues(sql, [{ featureId: x, entityId: 'B', eventTimeMs: T0 + 33 * H, num: -33 }])
  const later = await agree(t, ctx, body, 'writes of A and B')
  t.equal(later[3].x, -3)
  t.equal(later[36 + 33].x, -33)
  const m2 = await tampered(ctx, x, body, 'x')
  t.same(m2.slice(0, 36), column(later, 'x').slice(0, 36), 'A: from the rows')
  t.same(m2.slice(36), column(later, 'x').slice(36).map((v, r) => (r >= 1 && r < 30 ? (v as number) + 1000 : v)), 'B: from the packs up to the horizon')
})

t.test('as_of_system_time before built_through: values stamped after it are cut from the packs by their stamp', POSTGRES_ONLY, async (t) => {
  const ctx = await setup(t)
  const { sql } = ctx
  const x = await insertDefinition(sql, { name: 'x' })
  const y = await insertDefinition(sql, { name: 'y', dtype: 'int64' })
  await appendValues(sql, [...hourly(x, 'A', 0, 12, (i) => i), ...hourly(y, 'A', 0, 12, (i) => 10 * i)])
  const k1 = await soundCutoff(sql)
  // corrections of even hours and new hours 12..17, then values after the horizon
  await appendValues(sql, [...hourly(x, 'A', 0, 18, (i) => (i % 2 === 0 ? -i : i)), ...hourly(y, 'A', 12, 18, (i) => 10 * i)])
  const k2 = await soundCutoff(sql)
  await appendValues(sql, [...hourly(x, 'A', 4, 6, () => null)])
  t.equal((await build(sql, x, T0 + 16 * H, 3)).action, 'rebuilt')
  t.equal((await build(sql, y, T0 + 16 * H, 3)).action, 'rebuilt')
  const body = grid(['x', 'y'], ['A'], 0, 20)
  for (const [k, label] of [[k1, 'k1'], [k2, 'k2'], [undefined, 'now']] as const) {
    const b = k === undefined ? body : { ...body, as_of_system_time: k }
    const rows = await agree(t, ctx, b, `as of ${label}`)
    const xs = column(rows, 'x')
    const want = Array.from({ length: 21 }, (_, i) => {
      if (k === k1) return i < 12 ? i : 11
      const v = (j: number): number | null => (k === undefined && (j === 4 || j === 5) ? null : j % 2 === 0 ? -j : j)
      return v(Math.min(i, 17))
    })
    t.same(xs, want, `as of ${label}: x`)
    t.same(column(rows, 'y'), Array.from({ length: 21 }, (_, i) => 10 * Math.min(i, k === k1 ? 11 : 17)), `as of ${label}: y`)
    // k1 and k2 are before built_through: the packs go out with their stamps and are cut at K
    // the answering value's event time: packed when in (T0, T0+16h) (T0 is the block's anchor, from the rows)
    const event = (i: number): number => Math.min(i, k === k1 ? 11 : 17)
    const moved = await tampered(ctx, x, b, 'x')
    t.same(moved, xs.map((v, i) => (event(i) >= 1 && event(i) < 16 && typeof v === 'number' ? v + 1000 : v)), `as of ${label}: x from the packs up to the horizon`)
  }
})

t.test('NULL, NaN, -0, ±Infinity and extremes come out of the packs exactly as out of the rows', POSTGRES_ONLY, async (t) => {
  const ctx = await setup(t)
  const { sql } = ctx
  const x = await insertDefinition(sql, { name: 'x' })
  const n = await insertDefinition(sql, { name: 'n', dtype: 'int64' })
  const b = await insertDefinition(sql, { name: 'b', dtype: 'bool' })
  const specials = [null, Number.NaN, -0, 0, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1.5, Number.MIN_VALUE, -Number.MAX_VALUE, 2 ** 53 + 2, -1e-300, 0.1]
  const ints = [null, 0, -0, 1, -1, 2 ** 53, -(2 ** 53), 42, null, 7, -7, 3]
  const bools = [null, 0, 1, 1, 0, null, 1, 0, 0, 1, null, 1]
  await appendValues(sql, [
    ...hourly(x, 'A', 0, specials.length, (i) => specials[i]),
    ...hourly(n, 'A', 0, ints.length, (i) => ints[i]),
    ...hourly(b, 'A', 0, bools.length, (i) => bools[i]),
    // B: the specials backwards, and corrected later
    ...hourly(x, 'B', 0, specials.length, (i) => specials[specials.length - 1 - i]),
  ])
  await appendValues(sql, hourly(x, 'B', 0, specials.length, (i) => specials[(i + 5) % specials.length]))
  for (const f of [x, n, b]) t.equal((await build(sql, f, T0 + 100 * H, 2)).action, 'rebuilt')
  const body = grid(['x', 'n', 'b'], ['A', 'B'], -1, specials.length, '30m')
  const rows = await agree(t, ctx, body, 'specials')
  const k = await soundCutoff(sql)
  for (const accept of ['application/x-ndjson', 'text/csv']) {
    const on = await trainingSet(ctx.app, { ...body, as_of_system_time: k }, accept)
    const off = await trainingSet(ctx.off, { ...body, as_of_system_time: k }, accept)
    t.equal(on.text, off.text, `${accept}: packs on = packs off`)
  }
  // explicit: A at T0 + i h (row 2 + 2i: the grid starts an hour before, every 30 min)
  const at = (entity: number, i: number): Record<string, unknown> => rows[entity * (2 * specials.length + 3) + 2 + 2 * i]
  t.same([at(0, 0).x, at(0, 0).x__status], [null, 'NULL_VALUE'])
  t.equal(at(0, 1).x, 'NaN')
  t.equal(at(0, 4).x, 'Infinity')
  t.equal(at(0, 5).x, '-Infinity')
  t.equal(at(0, 7).x, Number.MIN_VALUE)
  t.equal(at(0, 8).x, -Number.MAX_VALUE)
  t.equal(at(0, 6).n, -(2 ** 53))
  t.same([at(0, 1).b, at(0, 2).b, at(0, 5).b__status], [false, true, 'NULL_VALUE'])
  // -0 from the packs: the same bytes as from the rows (checked above); here that they were packed
  const moved = await tampered(ctx, x, body, 'x', 'A')
  t.equal(moved[2 + 2 * 6], 1001.5, 'A read from the packs')
  t.equal(moved[2 + 2 * 3], 1000, '0 + 1000')
  t.equal(moved[2 + 2 * 2], 1000, '-0 + 1000')
})

/** event_us of a pack as epoch ms. */
const eventsOf = (b: Buffer): number[] => Array.from({ length: b.length / 8 }, (_, k) => Number(b.readBigInt64BE(8 * k) / 1000n))

t.test('pack boundaries: versions of one event_time split between packs (1, 2 and 3 values a pack), the same answers as the rows', POSTGRES_ONLY, async (t) => {
  const ctx = await setup(t)
  const { sql } = ctx
  const x = await insertDefinition(sql, { name: 'x' })
  // A: two versions of its first event time (T0) and of T0+2h, three of T0+4h; B: two of T0+1h
  const v1: RawValue[] = [...hourly(x, 'A', 0, 6, (i) => i), ...hourly(x, 'B', 0, 6, (i) => 100 + i)]
  await appendValues(sql, v1)
  const k1 = await soundCutoff(sql)
  await appendValues(sql, [
    { featureId: x, entityId: 'A', eventTimeMs: T0, num: -0.5 },
    { featureId: x, entityId: 'A', eventTimeMs: T0 + 2 * H, num: -2 },
    { featureId: x, entityId: 'A', eventTimeMs: T0 + 4 * H, num: -4 },
    { featureId: x, entityId: 'B', eventTimeMs: T0 + H, num: -101 },
  ])
  const k2 = await soundCutoff(sql)
  await appendValues(sql, [{ featureId: x, entityId: 'A', eventTimeMs: T0 + 4 * H, num: -44 }])
  const bodies: TsBody[] = [
    grid(['x'], ['A', 'B'], -1, 8, '30m'),
    grid(['x'], ['A', 'B'], 0, 6, '1h'),
    grid(['x'], ['A', 'B'], 2, 4, '1h'), // min_t and max_t on split event times
    grid(['x'], ['A', 'B'], 1, 2, '1h'),
    { features: ['x'], entity_rows: [0, 4, 2, 4, 1, 5].map((h) => ({ entity_id: 'A', event_time: iso(T0 + h * H) })) },
  ]
  const cutoffs = [undefined, k1, k2]
  const before: string[] = []
  for (const body of bodies) {
    for (const k of cutoffs) before.push((await trainingSet(ctx.off, { ...body, ...(k === undefined ? {} : { as_of_system_time: k }) })).text)
  }
  for (const packValues of [1, 2, 3]) {
    await sql`DELETE FROM feature_pack_marks` // the next build starts over
    const built = await build(sql, x, T0 + 5 * H, packValues)
    t.match(built, { action: 'rebuilt', values: 15 }, `${packValues} a pack: rebuilt, 9 values of A and 6 of B`)
    const packs = await sql<Array<{ entity_id: string, start: Date, end: Date, event_us: Buffer }>>`
      SELECT entity_id, range_start AS start, range_end AS end, event_us FROM feature_series_packs WHERE feature_id = ${x} ORDER BY entity_id, range_start`
    const split = packs.filter((p) => eventsOf(p.event_us).at(-1) === p.end.getTime())
    if (packValues < 3) t.ok(split.length > 0, `${packValues} a pack: some pack ends with a version of its range_end (${split.map((p) => `${p.entity_id}@${iso(p.end.getTime())}`).join(', ')})`)
    let i = 0
    for (const body of bodies) {
      for (const k of cutoffs) {
        const got = await trainingSet(ctx.app, { ...body, ...(k === undefined ? {} : { as_of_system_time: k }) })
        t.equal(got.text, before[i++], `${packValues} a pack, ${body.grid === undefined ? 'rows' : `${body.grid.from}..${body.grid.to} every ${body.grid.every}`}, K ${k === undefined ? 'now' : iso(k)}`)
      }
    }
    const moved = await tampered(ctx, x, bodies[1], 'x')
    // T0 (the anchor) and from T0+5h (the horizon) on from the rows
    t.same(moved, [-0.5, 1001, 998, 1003, 956, 5, 5, 100, 899, 1102, 1103, 1104, 105, 105], `${packValues} a pack: read from the packs`)
  }
})

t.test('more versions of one event_time than a pack holds, past the first pack: the build packs them all, and reads answer them', POSTGRES_ONLY, async (t) => {
  const ctx = await setup(t)
  const { sql } = ctx
  const x = await insertDefinition(sql, { name: 'x' })
  const y = await insertDefinition(sql, { name: 'y' })
  // x: T0, then two versions of T0+1h; 1 value a pack: packs 1 and 2 both begin at T0+1h
  await appendValues(sql, [{ featureId: x, entityId: 'A', eventTimeMs: T0, num: 0 }, { featureId: x, entityId: 'A', eventTimeMs: T0 + H, num: 1 }])
  await appendValues(sql, [{ featureId: x, entityId: 'A', eventTimeMs: T0 + H, num: -1 }])
  t.match(await build(sql, x, T0 + 2 * H, 1), { action: 'rebuilt', values: 3 }, 'rebuilt')
  // y: packed up to T0+1h, then appended from T0+1h, where it has two versions: the appended
  // range's first pack starts at the old horizon, and so does the next
  await appendValues(sql, [{ featureId: y, entityId: 'A', eventTimeMs: T0, num: 0 }, { featureId: y, entityId: 'A', eventTimeMs: T0 + H, num: 1 }])
  await appendValues(sql, [{ featureId: y, entityId: 'A', eventTimeMs: T0 + H, num: -1 }])
  t.match(await build(sql, y, T0 + H, 1), { action: 'rebuilt', values: 1 })
  t.match(await build(sql, y, T0 + 2 * H, 1), { action: 'appended', values: 2 }, 'appended')
  const rows = await agree(t, ctx, grid(['x', 'y'], ['A'], 0, 2), 'packed')
  t.same([column(rows, 'x'), column(rows, 'y')], [[0, -1, -1], [0, -1, -1]])
})

t.test('untracked writes turn packs off; rebuildWriteLog drops them; a DELETE or TRUNCATE of values drops the marks', POSTGRES_ONLY, async (t) => {
  const ctx = await setup(t)
  const { sql } = ctx
  const x = await insertDefinition(sql, { name: 'x' })
  const y = await insertDefinition(sql, { name: 'y' })
  await appendValues(sql, [...hourly(x, 'A', 0, 12, (i) => i), ...hourly(y, 'A', 0, 12, (i) => -i)])
  for (const f of [x, y]) t.equal((await build(sql, f, T0 + 24 * H)).action, 'rebuilt')
  const body = grid(['x', 'y'], ['A'], 0, 11)
  const ids = Array.from({ length: 12 }, (_, i) => i)
  t.same(await tampered(ctx, x, body, 'x'), ids.map((i) => (i === 0 ? 0 : i + 1000)), 'packed')

  // a value inserted by SQL (not through the ingest path): recorded as an untracked write
  await sql`INSERT INTO feature_snapshots (feature_id, entity_id, event_time, ingested_at, value_num) VALUES (${x}, 'A', ${iso(T0 + 5 * H)}::timestamptz, clock_timestamp(), 55)`
  const [{ u }] = await sql<Array<{ u: number }>>`SELECT count(*)::int AS u FROM feature_untracked_writes`
  t.equal(u, 1, 'an untracked write')
  const rows = await agree(t, ctx, body, 'after an untracked write')
  t.equal(rows[5].x, 55)
  t.same(await tampered(ctx, x, body, 'x'), column(rows, 'x'), 'x: packs not read')
  t.same(await tampered(ctx, y, body, 'y'), column(rows, 'y'), 'y (not written at all): packs not read either')
  t.same(await build(sql, x, T0 + 24 * H), { action: 'skipped', reason: 'untracked_writes', packs: 0, values: 0 })
  const run = await ctx.app.services.seriesPacks.buildNow()
  t.same(run.features, [{ featureId: x, action: 'skipped', reason: 'untracked_writes', packs: 0, values: 0 }], 'buildNow stops at the first: the same for every feature')

  // rebuildWriteLog clears the untracked writes and drops every pack and mark
  const rebuilt = await rebuildWriteLog(sql)
  t.equal(rebuilt.clearedUntrackedWrites, 1)
  t.same([await packCount(sql), await marks(sql)], [0, 0], 'no packs, no marks')
  t.same(await agree(t, ctx, body, 'after rebuildWriteLog'), rows)
  t.equal((await build(sql, x, T0 + 24 * H)).action, 'rebuilt')
  t.equal((await build(sql, y, T0 + 24 * H)).action, 'rebuilt')
  t.same(await tampered(ctx, x, body, 'x'), column(rows, 'x').map((v, i) => (i === 0 ? v : (v as number) + 1000)), 'packed again, the SQL value included')

  // a DELETE of values drops every mark (of every feature); the packs stay, unread
  await sql`DELETE FROM feature_snapshots WHERE feature_id = ${x} AND entity_id = 'A' AND event_time = ${iso(T0 + 7 * H)}::timestamptz`
  t.equal(await marks(sql), 0, 'DELETE: no marks')
  t.ok(await packCount(sql) > 0, 'the packs are still there')
  const deleted = await agree(t, ctx, body, 'after a DELETE')
  t.equal(deleted[7].x, 6, 'the deleted value is not answered')
  t.same(await tampered(ctx, x, body, 'x'), column(deleted, 'x'), 'x: packs not read')
  t.same(await tampered(ctx, y, body, 'y'), column(deleted, 'y'), 'y: packs not read')
  // the next build starts over
  t.same(await build(sql, x, T0 + 24 * H), { action: 'rebuilt', packs: 1, values: 12 }, 'rebuilt: 11 hours and the SQL value')
  t.same(await tampered(ctx, x, body, 'x'), column(deleted, 'x').map((v, i) => (i === 0 ? v : (v as number) + 1000)), 'packed again, without the deleted value')

  // TRUNCATE: no marks, nothing answered
  await sql`TRUNCATE feature_snapshots`
  t.equal(await marks(sql), 0, 'TRUNCATE: no marks')
  const empty = await agree(t, ctx, body, 'after TRUNCATE')
  t.same(column(empty, 'x__status'), ids.map(() => 'NOT_FOUND'))
  t.same(column(empty, 'y__status'), ids.map(() => 'NOT_FOUND'))
})

t.test('string features are never packed: packableFeatures leaves them out, and reads ignore packs made of them anyway', POSTGRES_ONLY, async (t) => {
  const ctx = await setup(t)
  const { sql } = ctx
  const s = await insertDefinition(sql, { name: 's', dtype: 'string' })
  const x = await insertDefinition(sql, { name: 'x' })
  const n = await insertDefinition(sql, { name: 'n', dtype: 'int64' })
  const b = await insertDefinition(sql, { name: 'b', dtype: 'bool' })
  t.same(await packableFeatures(sql), [x, n, b], 'the numeric features, by id')
  await appendValues(sql, [
    ...Array.from({ length: 6 }, (_, i): RawValue => ({ featureId: s, entityId: 'A', eventTimeMs: T0 + i * H, text: `t${i}` })),
    ...hourly(x, 'A', 0, 6, (i) => i),
  ])
  const run = await ctx.app.services.seriesPacks.buildNow()
  t.same(run.features.map((f) => f.featureId), [x, n, b], 'buildNow: the numeric features only')
  t.equal(await packCount(sql, s), 0, 'nothing packed of s')
  // packs built for s by hand (value_num is null throughout): never read for a text feature
  t.same(await build(sql, s, T0 + 24 * H), { action: 'rebuilt', packs: 1, values: 6 })
  t.equal((await build(sql, x, T0 + 24 * H)).action, 'current', 'x: packed by buildNow')
  const body = grid(['s', 'x'], ['A'], 0, 5)
  const rows = await agree(t, ctx, body, 'string and numeric')
  t.same(column(rows, 's'), ['t0', 't1', 't2', 't3', 't4', 't5'])
  t.same(column(rows, 'x'), [0, 1, 2, 3, 4, 5])
  const res = await trainingSet(ctx.app, body)
  t.same(column(res.rows, 's'), ['t0', 't1', 't2', 't3', 't4', 't5'], 'packs on: the texts')
  t.same(await tampered(ctx, x, body, 'x'), [0, 1001, 1002, 1003, 1004, 1005], 'x from the packs')
})

t.test('SeriesPackMaintenance: buildNow brings every numeric feature up to a sound cutoff, horizon at the month start', POSTGRES_ONLY, async (t) => {
  t.equal(monthStart(Date.UTC(2024, 2, 15, 12, 30)), Date.UTC(2024, 2, 1))
  t.equal(monthStart(Date.UTC(2024, 2, 1)), Date.UTC(2024, 2, 1))
  t.equal(monthStart(Date.UTC(2024, 2, 1) - 1), Date.UTC(2024, 1, 1))
  t.equal(monthStart(Date.UTC(2023, 11, 31, 23, 59, 59, 999)), Date.UTC(2023, 11, 1))
  t.equal(monthStart(Date.UTC(2024, 0, 1)), Date.UTC(2024, 0, 1))

  const ctx = await setup(t)
  const { sql } = ctx
  t.equal(ctx.app.services.seriesPacks.enabled, true, 'on by default in postgres mode')
  t.equal(ctx.off.services.seriesPacks.enabled, false, 'off with SERIES_PACKS=false')
  const x = await insertDefinition(sql, { name: 'x' })
  const y = await insertDefinition(sql, { name: 'y', dtype: 'int64' })
  // 2021 (well before the horizon) and now (after it)
  const now = Date.now() - 60_000
  await appendValues(sql, [...hourly(x, 'A', 0, 30, (i) => i), ...hourly(y, 'A', 0, 30, (i) => 2 * i), { featureId: x, entityId: 'A', eventTimeMs: now, num: -1 }])
  const before = await soundCutoff(sql)
  const run = await ctx.app.services.seriesPacks.buildNow()
  const after = await soundCutoff(sql)
  t.ok(run.cutoffMs >= before && run.cutoffMs <= after, 'a sound cutoff taken now')
  t.equal(run.horizonMs, monthStart(run.cutoffMs - 86_400_000), 'the month start a day (SERIES_PACK_SETTLE_SECONDS) ago')
  t.same(run.features, [{ featureId: x, action: 'rebuilt', packs: 1, values: 30 }, { featureId: y, action: 'rebuilt', packs: 1, values: 30 }])
  const [mark] = await sql<Array<{ bt: Date, horizon: Date }>>`SELECT built_through AS bt, horizon FROM feature_pack_marks WHERE feature_id = ${x}`
  t.same([mark.bt.getTime(), mark.horizon.getTime()], [run.cutoffMs, run.horizonMs])

  const second = await ctx.app.services.seriesPacks.buildNow()
  t.same(second.features.map((f) => f.action), ['current', 'current'], 'nothing new: current')
  t.ok(second.cutoffMs >= run.cutoffMs)

  await appendValues(sql, [{ featureId: y, entityId: 'A', eventTimeMs: T0 + 3 * H, num: 33 }])
  const third = await ctx.app.services.seriesPacks.buildNow()
  t.same(third.features, [{ featureId: x, action: 'current', packs: 0, values: 0 }, { featureId: y, action: 'rebuilt', packs: 1, values: 31 }], 'a correction of y: y rebuilt')

  const body: TsBody = { features: ['x', 'y'], grid: { entities: ['A'], from: iso(T0), to: iso(T0 + 29 * H), every: '1h' } }
  const rows = await agree(t, ctx, body, 'after buildNow')
  t.equal(rows[3].y, 33)
  t.same(await tampered(ctx, y, body, 'y'), column(rows, 'y').map((v, i) => (i === 0 ? v : (v as number) + 1000)), 'y from the packs')
  // the value after the horizon: from the rows
  const recent = await agree(t, ctx, { features: ['x'], entity_rows: [{ entity_id: 'A', event_time: iso(T0) }, { entity_id: 'A', event_time: iso(now) }] }, 'recent')
  t.same(column(recent, 'x'), [0, -1])
})

for (const op of ['DELETE', 'TRUNCATE'] as const) {
  t.test(`a ${op} of values while a build waits to append: the removed values are not answered from the packs`, POSTGRES_ONLY, async (t) => {
    const ctx = await setup(t)
    const { sql } = ctx
    const x = await insertDefinition(sql, { name: 'x' })
    await appendValues(sql, hourly(x, 'A', 0, 24, (i) => i))
    t.equal((await build(sql, x, T0 + 12 * H)).action, 'rebuilt')
    const body = grid(['x'], ['A'], 0, 11)

    // the next build (a later horizon: it appends) waits for a lock on the packs table ...
    const blocker = await sql.reserve()
    await blocker`BEGIN`
    await blocker`LOCK TABLE feature_series_packs IN SHARE MODE`
    const cutoffMs = await soundCutoff(sql)
    const building = buildFeaturePacks(sql, { featureId: x, cutoffMs, horizonMs: T0 + 20 * H })
    const waiting = await until(async () => {
      const [{ n }] = await sql<Array<{ n: number }>>`
        SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO feature_series_packs%'`
      return n > 0
    })
    t.ok(waiting, 'the build waits to append')
    // ... while values it already packed are removed (the trigger drops the marks; were it to
    // wait for the build instead, the blocker goes first)
    const removing = (op === 'DELETE'
      ? sql`DELETE FROM feature_snapshots WHERE feature_id = ${x} AND entity_id = 'A' AND event_time = ${iso(T0 + 5 * H)}::timestamptz`
      : sql`TRUNCATE feature_snapshots`).execute().then(() => true, (err: Error) => { t.comment(`the ${op} failed: ${err.message}`); return false })
    let settled = false
    void removing.finally(() => { settled = true })
    await until(async () => {
      if (settled) return true
      const [{ n }] = await sql<Array<{ n: number }>>`
        SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE ${op + ' %feature_snapshots%'}`
      return n > 0
    })
    t.comment(`the ${op} ${settled ? `is done; marks: ${await marks(sql)}` : 'waits'}`)
    await blocker`COMMIT`
    blocker.release()
    const built = await building.then((b) => b.action, (err: Error) => `failed: ${err.message}`)
    const removed = await removing
    t.comment(`the build: ${built}; marks after it: ${await marks(sql)}`)
    // the packs before the old horizon still hold the removed values: they must not be read
    const rows = await agree(t, ctx, body, `after the ${op} and the build`)
    t.ok(removed, `the ${op} went through`)
    if (op === 'DELETE') t.equal(rows[5].x, 4, 'the deleted value is not answered')
    else t.same(column(rows, 'x__status'), Array.from({ length: 12 }, () => 'NOT_FOUND'), 'nothing is answered')
  })
}
