import t from 'tap'
import fc from 'fast-check'
import { CandidateDecoder, type PackRanges } from '../../db/point-in-time.js'
import { COPY_SIGNATURE } from '../../db/copy-out.js'
import { PACKED_NULL_HI, PACKED_NULL_LO } from '../../db/series-packs.js'

/**
 * The binary COPY decoder of point-in-time reads, on streams written here in PostgreSQL's
 * binary COPY format and cut into chunks at random places: tuples that span many chunks, a
 * chunk boundary inside every field, and tuples larger than any seen before (the decoder joins
 * chunks in one buffer it reuses and grows). Tuples of "event" mode may carry a pair's series
 * packs (three byte strings: event µs, ingested µs or NULL, float8 values with NULL as a NaN of
 * its own): the decoder emits, after the anchor and before the arrays, the packed values inside
 * the entity's (minT, maxT] and, when the ingested field came along, stamped at or before K.
 */

const PG_EPOCH_MS = 946_684_800_000

interface Candidate { pair: number, eventMs: number, ingestedUs: number, num: number | null, text: string | null }
interface Packed { eventMs: number, ingestedUs: number, num: number | null }
interface Packs { values: Packed[], withIngested: boolean }
interface Tuple { pair: number, anchor?: Omit<Candidate, 'pair'>, later: Array<Omit<Candidate, 'pair'>>, known: boolean, isText: boolean, packs?: Packs }

const int16 = (v: number): Buffer => { const b = Buffer.alloc(2); b.writeInt16BE(v); return b }
const int32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeInt32BE(v); return b }
const int64 = (v: bigint): Buffer => { const b = Buffer.alloc(8); b.writeBigInt64BE(v); return b }
const float8 = (v: number): Buffer => { const b = Buffer.alloc(8); b.writeDoubleBE(v); return b }
const field = (b: Buffer | null): Buffer => (b === null ? int32(-1) : Buffer.concat([int32(b.length), b]))
const eventTs = (ms: number): Buffer => int64(BigInt(ms - PG_EPOCH_MS) * 1000n)
const ingestedTs = (us: number): Buffer => int64(BigInt(us) - BigInt(PG_EPOCH_MS) * 1000n)
const NULL_BYTES = (() => { const b = Buffer.alloc(8); b.writeInt32BE(PACKED_NULL_HI); b.writeInt32BE(PACKED_NULL_LO, 4); return b })()
/** The three pack fields of a tuple: NULL, NULL, NULL when the pair is not read from packs. */
function packFields (packs: Packs | undefined): Buffer[] {
  if (packs === undefined) return [field(null), field(null), field(null)]
  const ev = Buffer.concat(packs.values.map((p) => int64(BigInt(p.eventMs) * 1000n)))
  const ing = Buffer.concat(packs.values.map((p) => int64(BigInt(p.ingestedUs))))
  const num = Buffer.concat(packs.values.map((p) => (p.num === null ? NULL_BYTES : float8(p.num))))
  return [field(ev), field(packs.withIngested ? ing : null), field(num)]
}
const array = (oid: number, items: Array<Buffer | null>): Buffer =>
  Buffer.concat([int32(1), int32(items.some((i) => i === null) ? 1 : 0), int32(oid), int32(items.length), int32(1), ...items.map(field)])

function encode (tuples: Tuple[]): Buffer {
  const parts: Buffer[] = [COPY_SIGNATURE, int32(0), int32(0)]
  for (const tu of tuples) {
    const a = tu.anchor
    const later = tu.later
    parts.push(int16(12), field(int32(tu.pair)),
      field(a ? eventTs(a.eventMs) : null), field(a && tu.known ? ingestedTs(a.ingestedUs) : null),
      field(a && a.num !== null ? float8(a.num) : null), field(a && a.text !== null ? Buffer.from(a.text) : null),
      field(later.length > 0 ? array(1184, later.map((c) => eventTs(c.eventMs))) : null),
      field(later.length > 0 && tu.known ? array(1184, later.map((c) => ingestedTs(c.ingestedUs))) : null),
      field(later.length > 0 ? array(701, later.map((c) => (c.num === null ? null : float8(c.num)))) : null),
      field(later.length > 0 && tu.isText ? array(25, later.map((c) => (c.text === null ? null : Buffer.from(c.text)))) : null),
      ...packFields(tu.packs))
  }
  parts.push(int16(-1))
  return Buffer.concat(parts)
}

const candidate = (isText: boolean, known: boolean): fc.Arbitrary<Omit<Candidate, 'pair'>> => fc.record({
  // beyond ±142 years of 2000 a timestamp's high word takes the decoder's BigInt path
  eventMs: fc.oneof(fc.integer({ min: Date.UTC(1990, 0, 1), max: Date.UTC(2100, 0, 1) }), fc.integer({ min: Date.UTC(1000, 0, 1), max: Date.UTC(9999, 11, 31) })),
  ingestedUs: known ? fc.oneof(fc.integer({ min: Date.UTC(2000, 0, 1) * 1000, max: Date.UTC(2100, 0, 1) * 1000 }), fc.integer({ min: Date.UTC(1800, 0, 1) * 1000, max: Date.UTC(2200, 0, 1) * 1000 })) : fc.constant(0),
  num: isText ? fc.constant(null) : fc.option(fc.double(), { nil: null }),
  text: isText ? fc.option(fc.string({ unit: 'grapheme', maxLength: 40 }), { nil: null }) : fc.constant(null),
})

const tuples = fc.boolean().chain((known) => fc.array(fc.boolean().chain((isText) => fc.record({
  pair: fc.nat(1000),
  anchor: fc.option(candidate(isText, known), { nil: undefined }),
  // now and then a long tuple, so that the joined buffer has to grow
  later: fc.oneof({ weight: 5, arbitrary: fc.array(candidate(isText, known), { maxLength: 20 }) }, { weight: 1, arbitrary: fc.array(candidate(isText, known), { minLength: 500, maxLength: 3000 }) }),
  known: fc.constant(known),
  isText: fc.constant(isText),
})), { maxLength: 12 }))

/** What the decoder must emit, in order: per tuple the anchor, the packed values it keeps, the arrays. */
function expected (list: Tuple[], ranges?: PackRanges): Candidate[] {
  const out: Candidate[] = []
  for (const tu of list) {
    if (tu.anchor) out.push({ pair: tu.pair, ...tu.anchor })
    if (tu.packs !== undefined && ranges !== undefined) {
      const entity = Math.floor(tu.pair / ranges.features)
      for (const p of tu.packs.values) {
        if (p.eventMs <= ranges.minT[entity] || p.eventMs > ranges.maxT[entity]) continue
        if (tu.packs.withIngested && p.ingestedUs > ranges.cutoffUs) continue
        out.push({ pair: tu.pair, eventMs: p.eventMs, ingestedUs: 0, num: p.num, text: null })
      }
    }
    for (const c of tu.later) out.push({ pair: tu.pair, ...c })
  }
  return out
}

/** Numbers as text that tells -0 from 0 (tap's t.same does not), NaN included. */
const exact = (list: Candidate[]): Array<Omit<Candidate, 'num'> & { num: string | null }> =>
  list.map((c) => ({ ...c, num: c.num === null ? null : Object.is(c.num, -0) ? '-0' : String(c.num) }))

/** `bytes` cut at the given fractions (sorted), fed to a decoder; what it decoded. */
function decode (bytes: Buffer, cuts: number[], ranges?: PackRanges): Candidate[] {
  const got: Candidate[] = []
  const d = new CandidateDecoder((pair, eventMs, ingestedUs, num, text) => { got.push({ pair, eventMs, ingestedUs, num, text }) }, ranges)
  const at = [...new Set(cuts.map((c) => Math.floor(c * bytes.length)))].sort((a, b) => a - b)
  let from = 0
  for (const to of [...at, bytes.length]) {
    if (to > from) d.write(Buffer.from(bytes.subarray(from, to))) // a copy, as a socket's chunk is
    from = to
  }
  d.end()
  return got
}

t.test('every candidate comes out once, in order, however the stream is cut', async (t) => {
  fc.assert(fc.property(tuples, fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 60 }), (list, cuts) => {
    const bytes = encode(list)
    const want = exact(expected(list))
    const whole = decode(bytes, [])
    t.same(exact(whole), want)
    t.same(exact(decode(bytes, cuts)), want)
    // one byte at a time for small streams: a boundary inside every field
    if (bytes.length < 4000) t.same(exact(decode(bytes, Array.from({ length: bytes.length }, (_, i) => i / bytes.length))), want)
  }), { numRuns: 150 })
})

const S = 1000 // one step of the packs' time grid, ms
const PAIRS = 1000

/** A packed value on the grid from `base`: event times in steps, stamps in steps +0/1/999 µs. */
const packedArb = (base: number): fc.Arbitrary<Packed> => fc.record({
  eventMs: fc.tuple(fc.integer({ min: 0, max: 24 }), fc.constantFrom(0, 0, 1, -1)).map(([k, d]) => base + k * S + d),
  ingestedUs: fc.tuple(fc.integer({ min: 0, max: 24 }), fc.constantFrom(0, 0, 1, 999)).map(([k, d]) => (base + k * S) * 1000 + d),
  num: fc.oneof(
    { weight: 3, arbitrary: fc.double() },
    { weight: 1, arbitrary: fc.constantFrom(null, Number.NaN, -0, 0, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.MIN_VALUE, -Number.MAX_VALUE) },
  ),
})

/** Packs of one pair, in (event_time, ingested_at) order as the builder writes them, sometimes long. */
const packsArb = (base: number): fc.Arbitrary<Packs> => fc.record({
  values: fc.oneof(
    { weight: 5, arbitrary: fc.array(packedArb(base), { maxLength: 30 }) },
    { weight: 1, arbitrary: fc.array(packedArb(base), { minLength: 300, maxLength: 1500 }) },
  ).map((vs) => vs.sort((a, b) => a.eventMs - b.eventMs || a.ingestedUs - b.ingestedUs)),
  withIngested: fc.boolean(),
})

/**
 * A block of "event" mode: tuples of numeric and text pairs, numeric ones sometimes with packs,
 * and the ranges: per entity a (minT, maxT] on the same grid (a few random ranges repeated over
 * the entities), the features per entity and K. `base`: the grid's origin, near 2000 or
 * anywhere from 1900 (negative µs) to 2250: the decoder reads a pack's int8 as a double, exact
 * below 2^53 µs (2255-06-05); packs hold only values before the horizon, which the job keeps
 * near now.
 */
const packedBlocks = fc.oneof(
  fc.integer({ min: Date.UTC(1990, 0, 1), max: Date.UTC(2100, 0, 1) }),
  fc.integer({ min: Date.UTC(1900, 0, 1), max: Date.UTC(2250, 0, 1) }),
).chain((base) => fc.record({
  base: fc.constant(base),
  features: fc.integer({ min: 1, max: 5 }),
  spans: fc.array(fc.tuple(fc.integer({ min: -2, max: 24 }), fc.integer({ min: 0, max: 26 }), fc.constantFrom(0, 0, 1, -1)), { minLength: 1, maxLength: 6 }),
  cutoff: fc.tuple(fc.integer({ min: -1, max: 25 }), fc.constantFrom(0, 0, 1, 999, -1)).map(([k, d]) => (base + k * S) * 1000 + d),
  list: fc.array(fc.boolean().chain((isText) => fc.record({
    pair: fc.nat(PAIRS - 1),
    anchor: fc.option(candidate(isText, false), { nil: undefined }),
    later: fc.oneof({ weight: 5, arbitrary: fc.array(candidate(isText, false), { maxLength: 10 }) }, { weight: 1, arbitrary: fc.array(candidate(isText, false), { minLength: 300, maxLength: 1000 }) }),
    known: fc.constant(false),
    isText: fc.constant(isText),
    packs: isText ? fc.constant(undefined) : fc.option(packsArb(base), { nil: undefined, freq: 3 }),
  })), { maxLength: 10 }),
}))

function rangesOf (base: number, features: number, spans: Array<[number, number, number]>, cutoffUs: number): PackRanges {
  const entities = Math.ceil(PAIRS / features)
  const minT = new Float64Array(entities)
  const maxT = new Float64Array(entities)
  for (let e = 0; e < entities; e++) {
    const [from, width, d] = spans[e % spans.length]
    minT[e] = base + from * S + d
    maxT[e] = minT[e] + width * S
  }
  return { features, minT, maxT, cutoffUs }
}

t.test('packed values: the anchor, the packs cut to (minT, maxT] and K, then the arrays, however the stream is cut', async (t) => {
  let packedTuples = 0
  let kept = 0
  let cutByK = 0
  fc.assert(fc.property(packedBlocks, fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 60 }), (block, cuts) => {
    const ranges = rangesOf(block.base, block.features, block.spans, block.cutoff)
    const bytes = encode(block.list)
    const want = exact(expected(block.list, ranges))
    t.same(exact(decode(bytes, [], ranges)), want)
    t.same(exact(decode(bytes, cuts, ranges)), want)
    if (bytes.length < 4000) t.same(exact(decode(bytes, Array.from({ length: bytes.length }, (_, i) => i / bytes.length), ranges)), want)
    for (const tu of block.list) {
      if (tu.packs === undefined) continue
      packedTuples++
      const e = Math.floor(tu.pair / block.features)
      const inRange = tu.packs.values.filter((p) => p.eventMs > ranges.minT[e] && p.eventMs <= ranges.maxT[e])
      kept += tu.packs.withIngested ? inRange.filter((p) => p.ingestedUs <= ranges.cutoffUs).length : inRange.length
      if (tu.packs.withIngested) cutByK += inRange.filter((p) => p.ingestedUs > ranges.cutoffUs).length
    }
  }), { numRuns: 200 })
  // the generator reaches every branch of the filter
  t.ok(packedTuples > 100 && kept > 100 && cutByK > 50, `${packedTuples} packed tuples, ${kept} packed values kept, ${cutByK} dropped for K`)
})

t.test('a packed NULL is exactly its bit pattern: other NaNs stay NaN, -0 stays -0', async (t) => {
  const base = Date.UTC(2024, 0, 1)
  const ev = Buffer.concat([0, 1, 2, 3].map((k) => int64(BigInt(base + k) * 1000n)))
  const num = Buffer.alloc(32)
  num.writeInt32BE(PACKED_NULL_HI, 0); num.writeInt32BE(PACKED_NULL_LO, 4) // NULL
  num.writeInt32BE(PACKED_NULL_HI, 8); num.writeInt32BE(PACKED_NULL_LO | 1, 12) // a NaN one bit off
  num.writeUInt32BE(0x7ff80000, 16) // canonical NaN
  num.writeDoubleBE(-0, 24)
  const bytes = Buffer.concat([COPY_SIGNATURE, int32(0), int32(0), int16(12), field(int32(0)), ...Array.from({ length: 8 }, () => field(null)), field(ev), field(null), field(num), int16(-1)])
  const ranges: PackRanges = { features: 1, minT: Float64Array.of(base - 1), maxT: Float64Array.of(base + 3), cutoffUs: 0 }
  const got = decode(bytes, [], ranges)
  t.same(got.map((c) => c.eventMs), [base, base + 1, base + 2, base + 3])
  t.equal(got[0].num, null)
  t.ok(Number.isNaN(got[1].num) && Number.isNaN(got[2].num), 'other NaNs are NaN')
  t.ok(Object.is(got[3].num, -0), '-0')
})

t.test('packs of unequal lengths fail', async (t) => {
  const base = Date.UTC(2024, 0, 1)
  const ranges: PackRanges = { features: 1, minT: Float64Array.of(base - 10), maxT: Float64Array.of(base + 10), cutoffUs: (base + 10) * 1000 }
  const ev = (n: number): Buffer => Buffer.concat(Array.from({ length: n }, (_, k) => int64(BigInt(base + k) * 1000n)))
  const vals = (n: number): Buffer => Buffer.concat(Array.from({ length: n }, (_, k) => float8(k)))
  const stream = (e: Buffer, i: Buffer | null, v: Buffer): Buffer =>
    Buffer.concat([COPY_SIGNATURE, int32(0), int32(0), int16(12), field(int32(0)), ...Array.from({ length: 8 }, () => field(null)), field(e), field(i), field(v), int16(-1)])
  // the well-formed one decodes
  t.equal(decode(stream(ev(3), ev(3), vals(3)), [], ranges).length, 3)
  t.equal(decode(stream(ev(3), null, vals(3)), [], ranges).length, 3)
  const bad: Array<[string, Buffer]> = [
    ['more event times than values', stream(ev(3), null, vals(2))],
    ['more values than event times', stream(ev(2), null, vals(3))],
    ['ingested shorter', stream(ev(3), ev(2), vals(3))],
    ['ingested longer', stream(ev(3), ev(4), vals(3))],
    ['not whole int8s', stream(ev(3).subarray(0, 20), null, vals(3).subarray(0, 20))],
  ]
  for (const [label, bytes] of bad) {
    t.throws(() => decode(bytes, [], ranges), /unequal lengths/, label)
    // cut anywhere: the same failure once the tuple is whole
    t.throws(() => decode(bytes, Array.from({ length: bytes.length }, (_, i) => i / bytes.length), ranges), /unequal lengths/, `${label}, byte by byte`)
  }
  t.throws(() => decode(stream(ev(3), null, vals(3)), []), /without the block's ranges/, 'packs without ranges')
})

t.test('a stream without its trailer fails at the end', async (t) => {
  const bytes = encode([{ pair: 1, later: [{ eventMs: Date.UTC(2024, 0, 1), ingestedUs: 0, num: 1, text: null }], known: false, isText: false }])
  const d = new CandidateDecoder(() => {})
  d.write(bytes.subarray(0, bytes.length - 2))
  t.throws(() => d.end(), /before its trailer/)
})
