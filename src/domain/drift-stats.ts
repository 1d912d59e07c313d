/**
 * Drift statistics between a reference sample and a current sample of one numeric feature.
 *
 * The service computes the heavy parts in the database (quantile edges, histograms, the two
 * empirical CDFs) and hands the small result, a DriftSummary, to `judgeDrift`. The same summary
 * can be computed here from raw arrays (`summarise`): the tests compare both paths on the same
 * data, and the benchmark uses it as its reference.
 *
 * Definitions (README "Drift"):
 * - bins: the distinct reference quantiles at 0.1, 0.2, ..., 0.9 (percentile_cont: linear
 *   interpolation) are the edges; bin i holds the values x with edges[i-1] <= x < edges[i]
 *   (PostgreSQL's width_bucket), the first bin everything below edges[0], the last everything
 *   at or above the last edge. Equal quantiles collapse, so a sample with few distinct values
 *   has fewer than 10 bins.
 * - PSI = sum over bins of (c - r) * ln(c / r), with r and c the reference and current
 *   proportions smoothed as p' = (p + eps) / (1 + k * eps) (eps = 1e-4, k = number of bins), so
 *   an empty bin costs a large but finite amount. Drift at PSI >= 0.2.
 * - Jensen-Shannon distance: the square root of the JS divergence (log base 2, so in [0, 1]) of
 *   the same two binned distributions, unsmoothed. Drift at >= 0.1.
 * - Kolmogorov-Smirnov: D = sup |F_ref - F_cur| over the two empirical CDFs; p-value from the
 *   asymptotic Kolmogorov distribution with Stephens' small-sample correction,
 *   Q_KS((sqrt(en) + 0.12 + 0.11 / sqrt(en)) * D), en = n m / (n + m). Drift at p < 0.05.
 * - Wasserstein-1 distance: the integral of |F_ref - F_cur|, divided by the reference sample
 *   standard deviation. Drift at >= 0.1.
 */

export type DriftMethod = 'psi' | 'ks' | 'js' | 'wasserstein'
export const DRIFT_METHODS: readonly DriftMethod[] = ['psi', 'ks', 'js', 'wasserstein']

/** Default thresholds. KS compares its p-value (drift below the threshold); the others their statistic (drift at or above). */
export const DEFAULT_THRESHOLDS: Readonly<Record<DriftMethod, number>> = { psi: 0.2, ks: 0.05, js: 0.1, wasserstein: 0.1 }
export const PSI_BINS = 10
export const PSI_EPSILON = 1e-4

/** The interior quantile fractions of `bins` equal-frequency bins: 0.1 .. 0.9 for 10. */
export function quantileFractions (bins = PSI_BINS): number[] {
  return Array.from({ length: bins - 1 }, (_, i) => Number(((i + 1) / bins).toFixed(12)))
}

// ---------------------------------------------------------------------------------------------
// Building blocks

/** PostgreSQL's percentile_cont on a sorted array: linear interpolation between closest ranks. */
export function quantile (sorted: ArrayLike<number>, fraction: number): number {
  const n = sorted.length
  if (n === 0) return Number.NaN
  const row = fraction * (n - 1)
  const lo = Math.floor(row)
  const hi = Math.ceil(row)
  const a = sorted[lo]
  if (lo === hi) return a
  return a + (row - lo) * (sorted[hi] - a)
}

/** The distinct reference quantiles used as bin edges, ascending. */
export function quantileEdges (sorted: ArrayLike<number>, bins = PSI_BINS): number[] {
  if (sorted.length === 0) return []
  const qs = quantileFractions(bins).map((f) => quantile(sorted, f))
  return [...new Set(qs)].sort((a, b) => a - b)
}

/** width_bucket(x, edges): the number of edges <= x, so 0 .. edges.length. */
export function binIndex (edges: ArrayLike<number>, x: number): number {
  let lo = 0
  let hi = edges.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (edges[mid] <= x) lo = mid + 1
    else hi = mid
  }
  return lo
}

export function histogram (values: ArrayLike<number>, edges: readonly number[]): number[] {
  const counts = new Array<number>(edges.length + 1).fill(0)
  for (let i = 0; i < values.length; i++) counts[binIndex(edges, values[i])]++
  return counts
}

export function proportions (counts: readonly number[]): number[] {
  const total = counts.reduce((s, c) => s + c, 0)
  return counts.map((c) => (total === 0 ? 0 : c / total))
}

/** Epsilon smoothing that keeps the proportions summing to one. */
export function smooth (props: readonly number[], epsilon = PSI_EPSILON): number[] {
  const k = props.length
  return props.map((p) => (p + epsilon) / (1 + k * epsilon))
}

/** Population stability index of two count vectors over the same bins. */
export function psi (referenceCounts: readonly number[], currentCounts: readonly number[], epsilon = PSI_EPSILON): number {
  sameLength(referenceCounts, currentCounts)
  const r = smooth(proportions(referenceCounts), epsilon)
  const c = smooth(proportions(currentCounts), epsilon)
  let sum = 0
  for (let i = 0; i < r.length; i++) sum += (c[i] - r[i]) * Math.log(c[i] / r[i])
  return sum
}

/** Jensen-Shannon distance (base 2) of two count vectors over the same bins, in [0, 1]. */
export function jsDistance (referenceCounts: readonly number[], currentCounts: readonly number[]): number {
  sameLength(referenceCounts, currentCounts)
  const p = proportions(referenceCounts)
  const q = proportions(currentCounts)
  let divergence = 0
  for (let i = 0; i < p.length; i++) {
    const m = (p[i] + q[i]) / 2
    if (p[i] > 0) divergence += 0.5 * p[i] * Math.log2(p[i] / m)
    if (q[i] > 0) divergence += 0.5 * q[i] * Math.log2(q[i] / m)
  }
  return Math.sqrt(Math.max(0, divergence))
}

/**
 * Walks the merged empirical CDFs of two sorted samples once and returns
 * D = sup |F_a - F_b| and W1 = integral of |F_a - F_b| dx. Ties are stepped over together.
 */
export function cdfDistances (sortedA: ArrayLike<number>, sortedB: ArrayLike<number>): { ks: number, wasserstein: number } {
  const n = sortedA.length
  const m = sortedB.length
  if (n === 0 || m === 0) return { ks: Number.NaN, wasserstein: Number.NaN }
  let i = 0
  let j = 0
  let ks = 0
  let w = 0
  while (i < n || j < m) {
    const x = Math.min(i < n ? sortedA[i] : Infinity, j < m ? sortedB[j] : Infinity)
    while (i < n && sortedA[i] === x) i++
    while (j < m && sortedB[j] === x) j++
    const diff = Math.abs(i / n - j / m)
    if (diff > ks) ks = diff
    const next = Math.min(i < n ? sortedA[i] : Infinity, j < m ? sortedB[j] : Infinity)
    if (next !== Infinity) w += diff * (next - x)
  }
  return { ks, wasserstein: w }
}

export function ksStatistic (sortedA: ArrayLike<number>, sortedB: ArrayLike<number>): number {
  return cdfDistances(sortedA, sortedB).ks
}

export function wasserstein1 (sortedA: ArrayLike<number>, sortedB: ArrayLike<number>): number {
  return cdfDistances(sortedA, sortedB).wasserstein
}

/**
 * Survival function of the Kolmogorov distribution, Q(λ) = P(K > λ) =
 * 2 Σ (-1)^(j-1) exp(-2 j² λ²); below λ = 1.18 the complementary series
 * P(K <= λ) = sqrt(2π)/λ Σ exp(-(2j-1)² π² / (8 λ²)) converges faster.
 */
export function kolmogorovQ (lambda: number): number {
  if (!(lambda > 0)) return 1
  if (lambda < 1.18) {
    const k = -(Math.PI * Math.PI) / (8 * lambda * lambda)
    let sum = 0
    for (let j = 1; j <= 50; j++) {
      const term = Math.exp(k * (2 * j - 1) * (2 * j - 1))
      sum += term
      if (term < 1e-16 * sum) break
    }
    return clamp01(1 - (Math.sqrt(2 * Math.PI) / lambda) * sum)
  }
  const a = -2 * lambda * lambda
  let sum = 0
  let sign = 1
  for (let j = 1; j <= 100; j++) {
    const term = sign * 2 * Math.exp(a * j * j)
    sum += term
    if (Math.abs(term) < 1e-16 * Math.abs(sum)) break
    sign = -sign
  }
  return clamp01(sum)
}

/** Two-sample KS p-value: asymptotic distribution with Stephens' correction. */
export function ksPValue (d: number, n: number, m: number): number {
  if (!(n > 0 && m > 0) || !Number.isFinite(d)) return Number.NaN
  const en = Math.sqrt((n * m) / (n + m))
  return kolmogorovQ((en + 0.12 + 0.11 / en) * d)
}

// ---------------------------------------------------------------------------------------------
// Summary and verdicts

export interface SampleSummary {
  count: number
  mean: number | null
  stddev: number | null
  min: number | null
  max: number | null
}

/** What the database computes for a check: small, whatever the sample sizes. */
export interface DriftSummary {
  reference: SampleSummary
  current: SampleSummary
  /** Bin edges: the distinct reference quantiles. */
  edges: number[]
  /** Counts per bin (edges.length + 1 bins). */
  referenceCounts: number[]
  currentCounts: number[]
  /** sup |F_ref - F_cur| */
  ks: number | null
  /** integral |F_ref - F_cur| dx (not normalised) */
  wasserstein: number | null
}

export interface Bin {
  /** Lower edge (inclusive); null for the first bin (minus infinity). */
  lower: number | null
  /** Upper edge (exclusive); null for the last bin (plus infinity). */
  upper: number | null
  reference_count: number
  current_count: number
  reference: number
  current: number
}

export interface MethodResult {
  method: DriftMethod
  status: 'ok' | 'insufficient_data'
  /** PSI, D, JS distance or the normalised Wasserstein distance; null without a verdict. */
  statistic: number | null
  /** KS only. */
  p_value: number | null
  threshold: number
  drifted: boolean | null
  /** Wasserstein only: the distance before normalisation, and the reference stddev it was divided by. */
  distance?: number | null
  note?: string
}

export interface DriftVerdict {
  status: 'ok' | 'insufficient_data'
  /** True when any method says drift; null when there is not enough data. */
  drifted: boolean | null
  results: MethodResult[]
  bins: Bin[]
  note?: string
}

export function summariseSample (values: ArrayLike<number>): SampleSummary {
  const n = values.length
  if (n === 0) return { count: 0, mean: null, stddev: null, min: null, max: null }
  let sum = 0
  let min = Infinity
  let max = -Infinity
  for (let i = 0; i < n; i++) { const v = values[i]; sum += v; if (v < min) min = v; if (v > max) max = v }
  const mean = sum / n
  let ss = 0
  for (let i = 0; i < n; i++) { const d = values[i] - mean; ss += d * d }
  return { count: n, mean, stddev: n > 1 ? Math.sqrt(ss / (n - 1)) : null, min, max }
}

/** The DriftSummary of two raw samples, computed in memory (reference implementation). */
export function summarise (reference: ArrayLike<number>, current: ArrayLike<number>, bins = PSI_BINS): DriftSummary {
  const ref = Float64Array.from(reference as ArrayLike<number>).sort()
  const cur = Float64Array.from(current as ArrayLike<number>).sort()
  const edges = quantileEdges(ref, bins)
  const d = cdfDistances(ref, cur)
  return {
    reference: summariseSample(ref),
    current: summariseSample(cur),
    edges,
    referenceCounts: histogram(ref, edges),
    currentCounts: histogram(cur, edges),
    ks: Number.isNaN(d.ks) ? null : d.ks,
    wasserstein: Number.isNaN(d.wasserstein) ? null : d.wasserstein,
  }
}

export function binsOf (s: Pick<DriftSummary, 'edges' | 'referenceCounts' | 'currentCounts'>): Bin[] {
  const r = proportions(s.referenceCounts)
  const c = proportions(s.currentCounts)
  return s.referenceCounts.map((rc, i) => ({
    lower: i === 0 ? null : s.edges[i - 1],
    upper: i === s.edges.length ? null : s.edges[i],
    reference_count: rc,
    current_count: s.currentCounts[i],
    reference: r[i],
    current: c[i],
  }))
}

/**
 * Turns a summary into one result per method. With fewer than `minSamples` values in either
 * sample there is no verdict: every result is `insufficient_data` with a null statistic.
 */
export function judgeDrift (s: DriftSummary, methods: readonly DriftMethod[], thresholds: Partial<Record<DriftMethod, number>> = {}, minSamples = 30): DriftVerdict {
  const threshold = (m: DriftMethod): number => thresholds[m] ?? DEFAULT_THRESHOLDS[m]
  const short: string[] = []
  if (s.reference.count < minSamples) short.push(`the reference has ${s.reference.count} numeric values`)
  if (s.current.count < minSamples) short.push(`the current window has ${s.current.count} numeric values`)
  if (short.length > 0) {
    const note = `insufficient data: ${short.join(' and ')}; at least ${minSamples} are needed in each`
    return {
      status: 'insufficient_data',
      drifted: null,
      note,
      bins: s.reference.count > 0 ? binsOf(s) : [],
      results: methods.map((method) => ({ method, status: 'insufficient_data' as const, statistic: null, p_value: null, threshold: threshold(method), drifted: null, note })),
    }
  }
  const results = methods.map((method): MethodResult => {
    const t = threshold(method)
    switch (method) {
      case 'psi': {
        const v = psi(s.referenceCounts, s.currentCounts)
        return { method, status: 'ok', statistic: v, p_value: null, threshold: t, drifted: v >= t }
      }
      case 'js': {
        const v = jsDistance(s.referenceCounts, s.currentCounts)
        return { method, status: 'ok', statistic: v, p_value: null, threshold: t, drifted: v >= t }
      }
      case 'ks': {
        const d = s.ks ?? 0
        const p = ksPValue(d, s.reference.count, s.current.count)
        return { method, status: 'ok', statistic: d, p_value: p, threshold: t, drifted: p < t }
      }
      case 'wasserstein': {
        const w = s.wasserstein ?? 0
        const sd = s.reference.stddev ?? 0
        if (sd > 0) {
          const v = w / sd
          return { method, status: 'ok', statistic: v, p_value: null, threshold: t, drifted: v >= t, distance: w }
        }
        // A constant reference: any movement at all is drift, and there is no scale to express it in.
        return {
          method, status: 'ok', statistic: w === 0 ? 0 : null, p_value: null, threshold: t, drifted: w > 0, distance: w,
          note: 'the reference has zero standard deviation: the distance cannot be normalised',
        }
      }
    }
  })
  return { status: 'ok', drifted: results.some((r) => r.drifted === true), results, bins: binsOf(s) }
}

function sameLength (a: readonly number[], b: readonly number[]): void {
  if (a.length !== b.length) throw new RangeError(`bin counts differ in length: ${a.length} and ${b.length}`)
}

function clamp01 (x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : x
}
