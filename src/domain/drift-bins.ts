import { binIndex, type DriftSummary } from './drift-stats.js'

/**
 * The second half of a drift check: exact statistics from the fine bins that the database made
 * of each sample (db/drift.ts), plus the values of the few bins that the bins alone cannot settle.
 *
 * A fine bin is k = floor(x * scale) (scale a power of two, so monotone in x): the bins cut the
 * sorted values into runs. The database gives, per sample and bin, the count, min, max and the
 * sum of the offsets d = x - k / scale and their sum of squared deviations from the bin's mean
 * offset (a one-pass, cancellation-free update: PostgreSQL's var_pop). From them, exactly:
 * - each sample's count, min, max, mean and sum of squared deviations (Chan et al.'s combination
 *   of the bins' moments, in units of (x - shift) / unit so that the squares stay precise);
 * - both empirical CDFs at every bin end, so KS at the bin ends, and the Wasserstein integral
 *   between bins and inside every bin where one CDF stays above the other (from the counts and
 *   the sums of the offsets).
 * What they cannot settle is a short list of candidate bins (`candidates`): bins whose counts
 * allow a KS gap above the best found so far, bins where the CDFs may cross, and the bins
 * holding the reference ranks of the quantiles. `finish` resolves those from their values.
 */

/** The fine bins of one sample, ascending by k. */
export interface FineBins {
  k: Float64Array
  n: Float64Array
  lo: Float64Array
  hi: Float64Array
  /** sum of the offsets x - k / scale */
  sb: Float64Array
  /** sum of the squared deviations of the offsets from their mean in the bin */
  m2: Float64Array
}

/** Bytes per bin in the packed form: k, n, lo, hi, sb, m2 as big-endian float8 (float8send). */
export const PACKED_BIN_BYTES = 48

const LITTLE_ENDIAN = new Uint8Array(new Float64Array([1]).buffer)[7] === 0x3f

/** m fine bins, all zero, to be filled in. */
function emptyBins (m: number): FineBins {
  return { k: new Float64Array(m), n: new Float64Array(m), lo: new Float64Array(m), hi: new Float64Array(m), sb: new Float64Array(m), m2: new Float64Array(m) }
}

/** Unpacks the fine bins the database sends as one bytea (null: no values). */
export function unpackBins (packed: Buffer | null): FineBins {
  const m = packed === null ? 0 : packed.length / PACKED_BIN_BYTES
  if (!Number.isInteger(m)) throw new Error(`packed fine bins of ${packed!.length} bytes`)
  const bins = emptyBins(m)
  if (m === 0) return bins
  // big-endian float8s: copied into an aligned array, byte-swapped there in one native pass
  // when the machine is little-endian, then read column by column
  const all = new Float64Array(m * 6)
  const bytes = new Uint8Array(all.buffer)
  bytes.set(packed!)
  if (LITTLE_ENDIAN) Buffer.from(all.buffer).swap64()
  for (let i = 0, o = 0; i < m; i++, o += 6) {
    bins.k[i] = all[o]
    bins.n[i] = all[o + 1]
    bins.lo[i] = all[o + 2]
    bins.hi[i] = all[o + 3]
    bins.sb[i] = all[o + 4]
    bins.m2[i] = all[o + 5]
  }
  for (let i = 1; i < m; i++) if (!(bins.k[i - 1] < bins.k[i])) throw new Error('fine bins out of order')
  return bins
}

/**
 * The union of two ascending lists of bin keys, in order: for the m-th key, its index in `a` and
 * in `b` (-1 where that list does not hold it). (A key may be infinite: the ends of the lists
 * are told by their lengths, not by a sentinel.)
 */
function mergeIndex (a: Float64Array, b: Float64Array): { ia: Int32Array, ib: Int32Array, m: number } {
  const ia = new Int32Array(a.length + b.length)
  const ib = new Int32Array(a.length + b.length)
  let i = 0
  let j = 0
  let m = 0
  while (i < a.length || j < b.length) {
    const inA = i < a.length
    const inB = j < b.length
    const takeA = inA && (!inB || a[i] <= b[j])
    const takeB = inB && (!inA || b[j] <= a[i])
    ia[m] = takeA ? i++ : -1
    ib[m] = takeB ? j++ : -1
    m++
  }
  return { ia, ib, m }
}

/** The fine bins of two parts of one sample (the same scale), as one: counts and sums add up. */
export function combineBins (a: FineBins, b: FineBins): FineBins {
  if (b.k.length === 0) return a
  if (a.k.length === 0) return b
  const { ia, ib, m } = mergeIndex(a.k, b.k)
  const out = emptyBins(m)
  for (let x = 0; x < m; x++) {
    const i = ia[x]
    const j = ib[x]
    if (j < 0 || i < 0) {
      const p = j < 0 ? a : b
      const y = j < 0 ? i : j
      out.k[x] = p.k[y]; out.n[x] = p.n[y]; out.lo[x] = p.lo[y]; out.hi[x] = p.hi[y]; out.sb[x] = p.sb[y]; out.m2[x] = p.m2[y]
      continue
    }
    // Chan et al.: the deviations of both parts about the joint mean offset
    const na = a.n[i]
    const nb = b.n[j]
    const gap = a.sb[i] / na - b.sb[j] / nb
    out.k[x] = a.k[i]
    out.n[x] = na + nb
    out.lo[x] = b.lo[j] < a.lo[i] ? b.lo[j] : a.lo[i]
    out.hi[x] = b.hi[j] > a.hi[i] ? b.hi[j] : a.hi[i]
    out.sb[x] = a.sb[i] + b.sb[j]
    out.m2[x] = a.m2[i] + (b.m2[j] + gap * gap * (na * nb / (na + nb)))
  }
  return out
}

/** The candidate-bin values of several parts of one sample, as one list (a bin's values joined). */
export function combineValues (parts: BinValues[][]): BinValues[] {
  if (parts.length === 1) return parts[0]
  const byK = new Map<number, number[]>()
  for (const part of parts) {
    for (const v of part) {
      const xs = byK.get(v.k)
      if (xs === undefined) byK.set(v.k, [...v.xs])
      else xs.push(...v.xs)
    }
  }
  return [...byK].map(([k, xs]) => ({ k, xs }))
}

/** The fine-bin frame: k = floor(x * scale); moments in (x - shift) / unit. */
export interface BinFrame { scale: number, shift: number, unit: number }

/** 2^floor(log2(x)), the exponent kept within +-1000 (so its inverse is finite too). */
function powerOfTwoAtMost (x: number): number {
  return 2 ** Math.max(-1000, Math.min(1000, Math.floor(Math.log2(x))))
}

/**
 * The frame of a check from a small probe of its samples (lowest, highest and mean value): the
 * fine bins' scale, 1 / width, a power of two near `bins` / (max - min), so that floor(x * scale)
 * is exact and monotone in x (the probe only tunes speed: any scale gives the same results);
 * the probe's mean as the shift; and a unit of about the probe's span (a power of two, so
 * exact) in which deviations are summed, so that their squares stay far from overflow.
 */
export function binFrame (lo: number | null, hi: number | null, mid: number | null, bins: number): BinFrame {
  const span = lo === null || hi === null ? 0 : hi - lo
  const usable = span > 0 && Number.isFinite(span)
  return {
    scale: usable ? powerOfTwoAtMost(bins / span) : 1,
    shift: mid ?? 0,
    unit: usable ? 1 / powerOfTwoAtMost(1 / span) : 1,
  }
}

export interface SideMoments { n: number, min: number | null, max: number | null, mu: number | null, m2: number | null }

/** A bin of both samples together, with both CDFs just before it. */
interface MergedBin {
  k: number
  nr: number
  nc: number
  lo: number
  hi: number
  sr: number
  sc: number
  /** reference and current values in earlier bins */
  cr: number
  cc: number
  /** the CDFs cannot cross inside the bin */
  definite: boolean
}

/** What the bins settle, and what is left for `finish`. */
export interface BinStage {
  frame: BinFrame
  fractions: number[]
  reference: SideMoments
  current: SideMoments
  /** max |F_ref - F_cur| at the bin ends (null unless both samples have values) */
  ksEnds: number | null
  /** the Wasserstein integral between bins and inside the bins where the CDFs cannot cross */
  wKnown: number
  /** the candidate bins, ascending by k */
  candidates: MergedBin[]
  /** per sample, the k of its candidate bins that hold more than one distinct value */
  fetch: { reference: number[], current: number[] }
}

function moments (b: FineBins, f: BinFrame): SideMoments {
  const m = b.k.length
  if (m === 0) return { n: 0, min: null, max: null, mu: null, m2: null }
  const inv = 1 / f.unit
  const u = new Float64Array(m)
  const m2 = new Float64Array(m)
  let n = 0
  let sum = 0
  let min = Infinity
  let max = -Infinity
  for (let i = 0; i < m; i++) {
    const ni = b.n[i]
    u[i] = ((b.k[i] / f.scale - f.shift) + b.sb[i] / ni) * inv
    m2[i] = Math.max(b.m2[i] * inv * inv, 0)
    n += ni
    sum += ni * u[i]
    if (b.lo[i] < min) min = b.lo[i]
    if (b.hi[i] > max) max = b.hi[i]
  }
  const mu = sum / n
  let total = 0
  for (let i = 0; i < m; i++) total += m2[i] + b.n[i] * ((u[i] - mu) * (u[i] - mu))
  return { n, min, max, mu, m2: total }
}

/** Everything the fine bins of both samples settle, and the candidate bins to resolve. */
export function binStage (ref: FineBins, cur: FineBins, frame: BinFrame, fractions: number[]): BinStage {
  const reference = moments(ref, frame)
  const current = moments(cur, frame)
  const NR = reference.n
  const NC = current.n
  const both = NR > 0 && NC > 0
  // both samples' bins merged by k, as columns: the counts, the span, and how many values of
  // each sample lie in earlier bins (typed arrays: a million values make ~30,000 bins)
  const { ia, ib, m } = mergeIndex(ref.k, cur.k)
  const K = new Float64Array(m)
  const BR = new Float64Array(m)
  const BC = new Float64Array(m)
  const LO = new Float64Array(m)
  const HI = new Float64Array(m)
  const CR = new Float64Array(m)
  const CC = new Float64Array(m)
  let cr = 0
  let cc = 0
  for (let x = 0; x < m; x++) {
    const i = ia[x]
    const j = ib[x]
    K[x] = i < 0 ? cur.k[j] : ref.k[i]
    const nr = i < 0 ? 0 : ref.n[i]
    const nc = j < 0 ? 0 : cur.n[j]
    BR[x] = nr
    BC[x] = nc
    LO[x] = Math.min(i < 0 ? Infinity : ref.lo[i], j < 0 ? Infinity : cur.lo[j])
    HI[x] = Math.max(i < 0 ? -Infinity : ref.hi[i], j < 0 ? -Infinity : cur.hi[j])
    CR[x] = cr
    CC[x] = cc
    cr += nr
    cc += nc
  }
  const sr = (x: number): number => (ia[x] < 0 ? 0 : ref.sb[ia[x]])
  const sc = (x: number): number => (ib[x] < 0 ? 0 : cur.sb[ib[x]])
  /** the CDFs cannot cross inside bin x */
  const definite = (x: number): boolean => (CR[x] / NR >= (CC[x] + BC[x]) / NC || (CR[x] + BR[x]) / NR <= CC[x] / NC) && Number.isFinite(K[x])
  // KS at the bin ends; the Wasserstein integral between bins and inside the definite ones
  let ksEnds: number | null = null
  let wKnown = 0
  if (both) {
    let l = 0
    for (let x = 0; x < m; x++) {
      const dEnd = (CR[x] + BR[x]) / NR - (CC[x] + BC[x]) / NC
      if (Math.abs(dEnd) > l) l = Math.abs(dEnd)
      if (x + 1 < m) wKnown += Math.abs(dEnd) * (LO[x + 1] - HI[x])
    }
    for (let x = 0; x < m; x++) {
      if (!definite(x)) continue
      const base = K[x] / frame.scale
      wKnown += Math.abs((CR[x] * (HI[x] - LO[x]) + BR[x] * (HI[x] - base) - sr(x)) / NR - (CC[x] * (HI[x] - LO[x]) + BC[x] * (HI[x] - base) - sc(x)) / NC)
    }
    ksEnds = l
  }
  // candidates: a KS gap inside could beat the ends, or the CDFs may cross; and the bins of the
  // reference ranks that the quantiles need (the last bin with cr <= rank, for each rank)
  const isCandidate = new Uint8Array(m)
  if (both) {
    for (let x = 0; x < m; x++) {
      if (!(LO[x] < HI[x])) continue
      const dBound = Math.max((CR[x] + BR[x]) / NR - CC[x] / NC, (CC[x] + BC[x]) / NC - CR[x] / NR)
      if (dBound > ksEnds! || !definite(x)) isCandidate[x] = 1
    }
  }
  if (NR > 0) {
    for (const fr of fractions) {
      const i1 = binIndex(CR, Math.floor(fr * (NR - 1)))
      const i2 = binIndex(CR, Math.ceil(fr * (NR - 1)))
      for (let x = i1; x <= i2; x++) isCandidate[x - 1] = 1
    }
  }
  const candidates: MergedBin[] = []
  for (let x = 0; x < m; x++) {
    if (isCandidate[x] !== 1) continue
    candidates.push({ k: K[x], nr: BR[x], nc: BC[x], lo: LO[x], hi: HI[x], sr: sr(x), sc: sc(x), cr: CR[x], cc: CC[x], definite: both && definite(x) })
  }
  const fetch = { reference: [] as number[], current: [] as number[] }
  for (const b of candidates) {
    if (b.lo === b.hi) continue
    if (b.nr > 0) fetch.reference.push(b.k)
    if (b.nc > 0) fetch.current.push(b.k)
  }
  return { frame, fractions, reference, current, ksEnds, wKnown, candidates, fetch }
}

/** The values of a candidate bin of one sample, as the database sends them. */
export interface BinValues { k: number, xs: number[] }

export interface BinResult {
  /** max |F_ref - F_cur| inside the candidate bins */
  ksInside: number | null
  /** the Wasserstein integral inside the candidate bins where the CDFs may cross */
  wInside: number
  /** the distinct reference quantiles, ascending */
  edges: number[]
  /** reference and current values below each edge */
  belowR: number[]
  belowC: number[]
}

/** Resolves the candidate bins from their values: the exact KS, Wasserstein and quantile edges. */
export function finish (stage: BinStage, refValues: BinValues[], curValues: BinValues[]): BinResult {
  const NR = stage.reference.n
  const NC = stage.current.n
  const both = NR > 0 && NC > 0
  const byK = (vs: BinValues[]): Map<number, number[]> => new Map(vs.map((v) => [v.k, v.xs.map(Number)]))
  const refXs = byK(refValues)
  const curXs = byK(curValues)
  // per candidate bin, its distinct values ascending with how many of each sample hold each
  interface Distinct { x: number, vr: number, vc: number }
  const perBin: Distinct[][] = stage.candidates.map((b) => {
    if (b.lo === b.hi) return [{ x: b.lo, vr: b.nr, vc: b.nc }]
    const counts = new Map<number, Distinct>()
    for (const [xs, side] of [[refXs.get(b.k), 0], [curXs.get(b.k), 1]] as const) {
      if (xs === undefined) continue
      for (const x of xs) {
        let d = counts.get(x)
        if (d === undefined) { d = { x, vr: 0, vc: 0 }; counts.set(x, d) }
        if (side === 0) d.vr++
        else d.vc++
      }
    }
    const got = [...counts.values()].sort((a, c) => a.x - c.x)
    let vr = 0
    let vc = 0
    for (const d of got) { vr += d.vr; vc += d.vc }
    if (vr !== b.nr || vc !== b.nc) throw new Error(`fine bin ${b.k}: ${vr}/${vc} values read, ${b.nr}/${b.nc} counted`)
    return got
  })
  let ksInside: number | null = null
  let wInside = 0
  // reference copies in rank order: the value holding rank r is the last one with rLo <= r
  const rLo: number[] = []
  const rX: number[] = []
  stage.candidates.forEach((b, x) => {
    let sr = 0
    let sc = 0
    const values = perBin[x]
    for (let y = 0; y < values.length; y++) {
      const v = values[y]
      if (v.vr > 0) { rLo.push(b.cr + sr); rX.push(v.x) }
      sr += v.vr
      sc += v.vc
      if (!both) continue
      const d = (b.cr + sr) / NR - (b.cc + sc) / NC
      if (ksInside === null || Math.abs(d) > ksInside) ksInside = Math.abs(d)
      if (!b.definite && y + 1 < values.length) wInside += Math.abs(d) * (values[y + 1].x - v.x)
    }
  })
  const edges: number[] = []
  if (NR > 0) {
    const qs = stage.fractions.map((f) => {
      const pos = f * (NR - 1)
      const r1 = Math.floor(pos)
      const x1 = rX[binIndex(rLo, r1) - 1]
      const x2 = rX[binIndex(rLo, Math.ceil(pos)) - 1]
      return x1 + (pos - r1) * (x2 - x1)
    })
    edges.push(...[...new Set(qs)].sort((a, c) => a - c))
  }
  // below each edge e, in fine bin ke = floor(e * scale): the values of earlier bins (the cr of
  // the first candidate bin at or after ke), plus those of bin ke that lie below e
  const belowR: number[] = []
  const belowC: number[] = []
  for (const e of edges) {
    const ke = Math.floor(e * stage.frame.scale)
    const x = stage.candidates.findIndex((b) => b.k >= ke)
    if (x < 0) throw new Error(`no candidate bin at or after the edge ${e}`)
    let br = stage.candidates[x].cr
    let bc = stage.candidates[x].cc
    if (stage.candidates[x].k === ke) {
      for (const v of perBin[x]) {
        if (v.x < e) { br += v.vr; bc += v.vc }
      }
    }
    belowR.push(br)
    belowC.push(bc)
  }
  return { ksInside: both ? ksInside : null, wInside, edges, belowR, belowC }
}

/** The summary from both stages; a sample of one repeated value has exactly that mean and a zero stddev. */
export function driftSummaryOf (stage: BinStage, done: BinResult): DriftSummary {
  const { shift, unit } = stage.frame
  const side = (m: SideMoments): DriftSummary['reference'] => {
    const base = { count: m.n, min: m.min, max: m.max }
    if (m.n === 0 || m.mu === null || m.m2 === null) return { ...base, mean: null, stddev: null }
    if (m.min !== null && m.min === m.max) return { ...base, mean: m.min, stddev: m.n > 1 ? 0 : null }
    return { ...base, mean: shift + m.mu * unit, stddev: m.n > 1 ? Math.sqrt(Math.max(0, m.m2 / (m.n - 1))) * unit : null }
  }
  const counts = (below: number[], total: number): number[] => [...below, total].map((x, i) => x - (i === 0 ? 0 : below[i - 1]))
  const both = stage.reference.n > 0 && stage.current.n > 0
  return {
    reference: side(stage.reference),
    current: side(stage.current),
    edges: done.edges,
    referenceCounts: counts(done.belowR, stage.reference.n),
    currentCounts: counts(done.belowC, stage.current.n),
    ks: both ? Math.max(stage.ksEnds ?? 0, done.ksInside ?? 0) : null,
    wasserstein: both ? stage.wKnown + done.wInside : null,
  }
}
