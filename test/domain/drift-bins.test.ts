import t, { type Test } from 'tap'
import fc from 'fast-check'
import { PACKED_BIN_BYTES, binFrame, binStage, combineBins, combineValues, driftSummaryOf, finish, unpackBins, type BinFrame, type BinValues, type FineBins } from '../../src/domain/drift-bins.js'
import { quantileFractions, summarise, type DriftSummary } from '../../src/domain/drift-stats.js'

// fixed by default so that every run checks the same cases; DRIFT_BINS_SEED=<n> explores others
const SEED = Number(process.env.DRIFT_BINS_SEED ?? 20261206)

/**
 * The bin stage on its own, against the in-memory reference (summarise sorts the samples): the
 * fine bins are made here the way the database makes them (k = floor(x * scale), count, min,
 * max, sums of the offsets, the values), so any scale, however coarse or fine, must give the
 * reference's answer.
 */
function fineBinsOf (xs: number[], frame: BinFrame): { bins: FineBins, values: Map<number, number[]> } {
  const byK = new Map<number, number[]>()
  for (const x of xs) {
    const k = Math.floor(x * frame.scale)
    let v = byK.get(k)
    if (v === undefined) byK.set(k, v = [])
    v.push(x)
  }
  const ks = [...byK.keys()].sort((a, b) => a - b)
  const bins: FineBins = { k: Float64Array.from(ks), n: new Float64Array(ks.length), lo: new Float64Array(ks.length), hi: new Float64Array(ks.length), sb: new Float64Array(ks.length), m2: new Float64Array(ks.length) }
  ks.forEach((k, i) => {
    const v = byK.get(k)!
    bins.n[i] = v.length
    bins.lo[i] = Math.min(...v)
    bins.hi[i] = Math.max(...v)
    for (const x of v) bins.sb[i] += x - k / frame.scale
    const mean = bins.sb[i] / v.length
    for (const x of v) bins.m2[i] += (x - k / frame.scale - mean) ** 2
  })
  return { bins, values: byK }
}

function viaBins (ref: number[], cur: number[], scale: number): DriftSummary {
  const all = [...ref, ...cur]
  // the service's frame from a probe that saw everything, at the scale under test
  const probe = all.length === 0 ? binFrame(null, null, null, 1) : binFrame(Math.min(...all), Math.max(...all), all.reduce((a, b) => a + b, 0) / all.length, 1)
  const frame: BinFrame = { ...probe, scale }
  const r = fineBinsOf(ref, frame)
  const c = fineBinsOf(cur, frame)
  const stage = binStage(r.bins, c.bins, frame, quantileFractions())
  const take = (ks: number[], m: Map<number, number[]>): BinValues[] => ks.map((k) => ({ k, xs: m.get(k)! }))
  return driftSummaryOf(stage, finish(stage, take(stage.fetch.reference, r.values), take(stage.fetch.current, c.values)))
}

function same (t: Test, got: DriftSummary, want: DriftSummary, label: string): void {
  t.same({ edges: got.edges, referenceCounts: got.referenceCounts, currentCounts: got.currentCounts, ks: got.ks, n: [got.reference.count, got.current.count], min: [got.reference.min, got.current.min], max: [got.reference.max, got.current.max] },
    { edges: want.edges, referenceCounts: want.referenceCounts, currentCounts: want.currentCounts, ks: want.ks, n: [want.reference.count, want.current.count], min: [want.reference.min, want.current.min], max: [want.reference.max, want.current.max] }, label)
  const close = (a: number | null, b: number | null, what: string): void => {
    if (a === null || b === null) { t.equal(a, b, `${label}: ${what}`); return }
    t.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${label}: ${what} ${a} vs ${b}`)
  }
  close(got.wasserstein, want.wasserstein, 'wasserstein')
  close(got.reference.mean, want.reference.mean, 'reference mean')
  close(got.current.mean, want.current.mean, 'current mean')
  close(got.reference.stddev, want.reference.stddev, 'reference stddev')
  close(got.current.stddev, want.current.stddev, 'current stddev')
}

t.test('fine bins of any width give the in-memory answer exactly', async (t) => {
  const sample = fc.array(fc.oneof(fc.integer({ min: -20, max: 20 }), fc.double({ min: -50, max: 50, noNaN: true, noDefaultInfinity: true })), { minLength: 0, maxLength: 60 })
  const scale = fc.constantFrom(1 / 64, 1 / 4, 1, 4, 256, 65536)
  fc.assert(fc.property(sample, sample, scale, (ref, cur, s) => {
    same(t, viaBins(ref, cur, s), summarise(ref, cur), JSON.stringify({ ref, cur, s }))
    return true
  }), { numRuns: 300, seed: SEED })
})

t.test('edge cases: empty samples, constants, one value, ties on bin ends', async (t) => {
  const cases: Array<[number[], number[]]> = [
    [[], []], [[1, 2, 3], []], [[], [1, 2, 3]], [[5], [5]], [[5, 5, 5], [5, 5]], [[0, 0.25, 0.5, 0.75, 1], [0.25, 0.25, 1, 1]],
    [[-1e12, 0, 1e12], [1, 2, 3]],
    // a spread of 1e-11 in a bin of width 4, far from the bin's base: the squared deviations
    // are summed about the bin's mean offset, not as squares of the offsets (which cancel)
    [[-8.600756995763878e-12, 6.601968260680805e-240, -7.140734436909002e-93], [1e-12, 2e-12]],
    // subnormal values: the unit of deviations stays a finite power of two
    [[8e-323, -6e-323], []], [[-5e-324, -5e-323], [5e-324]],
  ]
  for (const [ref, cur] of cases) for (const s of [0.25, 1, 4, 1024, 65536]) same(t, viaBins(ref, cur, s), summarise(ref, cur), JSON.stringify({ ref, cur, s }))
})

t.test('packed bins: 48 big-endian float8 a bin, ascending k', async (t) => {
  const buf = Buffer.alloc(2 * PACKED_BIN_BYTES)
  ;[1, 3, 0.5, 0.9, 0.1, 0.02, 2, 1, 0.6, 0.6, 0.1, 0.01].forEach((x, i) => buf.writeDoubleBE(x, i * 8))
  const b = unpackBins(buf)
  t.same([...b.k], [1, 2])
  t.same([...b.n], [3, 1])
  t.same([...b.m2], [0.02, 0.01])
  t.same(unpackBins(null).k.length, 0)
  t.throws(() => unpackBins(Buffer.alloc(50)))
  const unordered = Buffer.from(buf)
  unordered.writeDoubleBE(5, 0)
  t.throws(() => unpackBins(unordered), /out of order/)
  // every float8 bit for bit (infinities, -0, subnormals, any bytes), from a buffer at any offset
  const specials = [-Infinity, -1e308, -0, 0, 5e-324, 2.2250738585072014e-308, 1, 1e308, Infinity]
  const rows = 2000
  const raw = Buffer.alloc(3 + rows * PACKED_BIN_BYTES)
  const packed = raw.subarray(3)
  const expected: number[] = []
  for (let i = 0; i < rows * 6; i++) {
    let x: number
    if (i % 6 === 0) x = i / 6 - 1000 // k ascending
    else if (i < specials.length * 6) x = specials[i % specials.length]
    else do { x = Buffer.from(Array.from({ length: 8 }, () => Math.floor(Math.random() * 256))).readDoubleBE(0) } while (Number.isNaN(x))
    packed.writeDoubleBE(x, i * 8)
    expected.push(x)
  }
  const got = unpackBins(packed)
  const columns = [got.k, got.n, got.lo, got.hi, got.sb, got.m2]
  t.ok(expected.every((x, i) => Object.is(columns[i % 6][Math.floor(i / 6)], x)), 'every value read exactly')
})

t.test('the bins and values of two parts of a sample combine into those of the whole', async (t) => {
  const frame: BinFrame = { scale: 4, shift: 0, unit: 1 }
  fc.assert(fc.property(fc.array(fc.double({ min: -10, max: 10, noNaN: true }), { maxLength: 40 }), fc.nat(), (xs, cut) => {
    const at = xs.length === 0 ? 0 : cut % (xs.length + 1)
    const [a, b, whole] = [xs.slice(0, at), xs.slice(at), xs].map((part) => fineBinsOf(part, frame))
    const combined = combineBins(a.bins, b.bins)
    for (const key of ['k', 'n', 'lo', 'hi'] as const) t.same([...combined[key]], [...whole.bins[key]], key)
    combined.sb.forEach((x, i) => t.ok(Math.abs(x - whole.bins.sb[i]) < 1e-9, 'sb'))
    const values = combineValues([[...a.values].map(([k, v]) => ({ k, xs: v })), [...b.values].map(([k, v]) => ({ k, xs: v }))])
    t.same(new Map(values.map((v) => [v.k, [...v.xs].sort((p, q) => p - q)])), new Map([...whole.values].map(([k, v]) => [k, [...v].sort((p, q) => p - q)])))
    return true
  }), { numRuns: 100, seed: SEED })
})
