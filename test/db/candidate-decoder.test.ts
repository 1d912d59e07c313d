import t from 'tap'
import fc from 'fast-check'
import { CandidateDecoder } from '../../db/point-in-time.js'
import { COPY_SIGNATURE } from '../../db/copy-out.js'

/**
 * The binary COPY decoder of point-in-time reads, on streams written here in PostgreSQL's
 * binary COPY format and cut into chunks at random places: tuples that span many chunks, a
 * chunk boundary inside every field, and tuples larger than any seen before (the decoder joins
 * chunks in one buffer it reuses and grows).
 */

const PG_EPOCH_MS = 946_684_800_000

interface Candidate { pair: number, eventMs: number, ingestedUs: number, num: number | null, text: string | null }
interface Tuple { pair: number, anchor?: Omit<Candidate, 'pair'>, later: Array<Omit<Candidate, 'pair'>>, known: boolean, isText: boolean }

const int16 = (v: number): Buffer => { const b = Buffer.alloc(2); b.writeInt16BE(v); return b }
const int32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeInt32BE(v); return b }
const int64 = (v: bigint): Buffer => { const b = Buffer.alloc(8); b.writeBigInt64BE(v); return b }
const float8 = (v: number): Buffer => { const b = Buffer.alloc(8); b.writeDoubleBE(v); return b }
const field = (b: Buffer | null): Buffer => (b === null ? int32(-1) : Buffer.concat([int32(b.length), b]))
const eventTs = (ms: number): Buffer => int64(BigInt(ms - PG_EPOCH_MS) * 1000n)
const ingestedTs = (us: number): Buffer => int64(BigInt(us) - BigInt(PG_EPOCH_MS) * 1000n)
const array = (oid: number, items: Array<Buffer | null>): Buffer =>
  Buffer.concat([int32(1), int32(items.some((i) => i === null) ? 1 : 0), int32(oid), int32(items.length), int32(1), ...items.map(field)])

function encode (tuples: Tuple[]): Buffer {
  const parts: Buffer[] = [COPY_SIGNATURE, int32(0), int32(0)]
  for (const tu of tuples) {
    const a = tu.anchor
    const later = tu.later
    parts.push(int16(9), field(int32(tu.pair)),
      field(a ? eventTs(a.eventMs) : null), field(a && tu.known ? ingestedTs(a.ingestedUs) : null),
      field(a && a.num !== null ? float8(a.num) : null), field(a && a.text !== null ? Buffer.from(a.text) : null),
      field(later.length > 0 ? array(1184, later.map((c) => eventTs(c.eventMs))) : null),
      field(later.length > 0 && tu.known ? array(1184, later.map((c) => ingestedTs(c.ingestedUs))) : null),
      field(later.length > 0 ? array(701, later.map((c) => (c.num === null ? null : float8(c.num)))) : null),
      field(later.length > 0 && tu.isText ? array(25, later.map((c) => (c.text === null ? null : Buffer.from(c.text)))) : null))
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

function expected (list: Tuple[]): Candidate[] {
  const out: Candidate[] = []
  for (const tu of list) {
    if (tu.anchor) out.push({ pair: tu.pair, ...tu.anchor })
    for (const c of tu.later) out.push({ pair: tu.pair, ...c })
  }
  return out
}

/** `bytes` cut at the given fractions (sorted), fed to a decoder; what it decoded. */
function decode (bytes: Buffer, cuts: number[]): Candidate[] {
  const got: Candidate[] = []
  const d = new CandidateDecoder((pair, eventMs, ingestedUs, num, text) => { got.push({ pair, eventMs, ingestedUs, num, text }) })
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
    const want = expected(list)
    const whole = decode(bytes, [])
    t.same(whole, want)
    t.same(decode(bytes, cuts), want)
    // one byte at a time for small streams: a boundary inside every field
    if (bytes.length < 4000) t.same(decode(bytes, Array.from({ length: bytes.length }, (_, i) => i / bytes.length)), want)
  }), { numRuns: 150 })
})

t.test('a stream without its trailer fails at the end', async (t) => {
  const bytes = encode([{ pair: 1, later: [{ eventMs: Date.UTC(2024, 0, 1), ingestedUs: 0, num: 1, text: null }], known: false, isText: false }])
  const d = new CandidateDecoder(() => {})
  d.write(bytes.subarray(0, bytes.length - 2))
  t.throws(() => d.end(), /before its trailer/)
})
