import t from 'tap'
import { buildTestApp } from '../lib/helper.js'
import { appendValues, insertDefinition } from '../lib/fixtures.js'
import { driftSummary } from '../../db/drift.js'
import { quantileFractions, summarise } from '../../src/domain/drift-stats.js'
import { seededRandom, standardNormal } from '../lib/random.js'

/**
 * The database computes the drift summary over fine bins, resolving the few bins that need single
 * values from the values the bins kept (db/drift.ts); the in-memory summarise() sorts. They must
 * agree exactly (up to float rounding of sums) on any data: ties, heavy tails, constants,
 * outliers, and bins far coarser than the data (the bin width comes from a probe of the newest
 * values, which need not look like the rest).
 */
const H = 3_600_000
const T0 = Date.UTC(2020, 0, 1)

const rng = seededRandom
const normal = standardNormal

const r = rng(42)
const cases: Record<string, [number[], number[]]> = {
  'normal vs shifted': [Array.from({ length: 3000 }, () => 100 + 10 * normal(r)), Array.from({ length: 2000 }, () => 103 + 12 * normal(r))],
  'heavy tails': [Array.from({ length: 3000 }, () => Math.exp(2 * normal(r))), Array.from({ length: 2500 }, () => Math.exp(2.5 * normal(r) + 0.3))],
  'integers with ties': [Array.from({ length: 2000 }, () => Math.floor(r() * 10)), Array.from({ length: 1500 }, () => Math.floor(r() * r() * 10))],
  identical: (() => { const a = Array.from({ length: 1000 }, () => normal(r)); return [a, [...a]] as [number[], number[]] })(),
  'constant reference': [new Array(500).fill(5), Array.from({ length: 500 }, () => (r() < 0.5 ? 5 : 5 + r()))],
  'outliers of both signs': [Array.from({ length: 2000 }, (_, i) => (i % 500 === 0 ? -1e12 : normal(r))), Array.from({ length: 2000 }, (_, i) => (i % 700 === 0 ? 1e12 : normal(r) + 0.1))],
  // the newest 5000 values (which set the bin width) span a million; the older ones sit in [0, 1):
  // they share a handful of coarse bins, which the second pass must resolve value by value
  'coarse bins': [
    [...Array.from({ length: 3000 }, () => r()), ...Array.from({ length: 5000 }, () => r() * 1e6)],
    [...Array.from({ length: 3000 }, () => r() * 0.9 + 0.05), ...Array.from({ length: 5000 }, () => r() * 1e6)],
  ],
  // many copies of a few values among continuous ones: the quantiles and the largest CDF gap sit
  // on bins holding a single repeated value, which the second pass takes as one value n times
  'ties among continuous values': [
    Array.from({ length: 3000 }, (_, i) => (i % 3 === 0 ? Math.floor(r() * 5) : r() * 5)),
    Array.from({ length: 2500 }, (_, i) => (i % 2 === 0 ? Math.floor(r() * 4) : r() * 5 + 0.1)),
  ],
  'one value each': [[3], [4]],
  // far outliers, many orders of magnitude beyond the probe's span: huge bin keys and deviations
  'extreme magnitudes': [
    [1e100, -1e100, ...Array.from({ length: 1000 }, () => r()), 5e99, ...Array.from({ length: 5000 }, () => r())],
    [2e100, ...Array.from({ length: 800 }, () => r() + 0.2), -3e100, ...Array.from({ length: 5000 }, () => r())],
  ],
  'disjoint': [Array.from({ length: 300 }, () => r()), Array.from({ length: 300 }, () => 10 + r())],
}

t.test('the SQL summary equals the in-memory one', async (t) => {
  const { sql } = await buildTestApp(t)
  let id = 0
  for (const [name, [ref, cur]] of Object.entries(cases)) {
    const f = await insertDefinition(sql, { name: `case_${++id}` })
    // oldest first, so the probe (newest first) sees the last values of each array
    await appendValues(sql, [
      ...ref.map((v, i) => ({ featureId: f, entityId: 'A', eventTimeMs: T0 + i * H, num: v })),
      ...cur.map((v, i) => ({ featureId: f, entityId: 'A', eventTimeMs: T0 + (100_000 + i) * H, num: v })),
    ])
    const k = Date.now() + 1000
    const got = await driftSummary(sql,
      { kind: 'window', featureId: f, fromMs: T0, toMs: T0 + 100_000 * H, cutoffMs: k },
      { kind: 'window', featureId: f, fromMs: T0 + 100_000 * H, toMs: T0 + 200_000 * H, cutoffMs: k }, quantileFractions())
    const want = summarise(ref, cur)
    t.same(got.edges, want.edges, `${name}: the quantile edges are percentile_cont's`)
    t.same(got.referenceCounts, want.referenceCounts, `${name}: reference bin counts`)
    t.same(got.currentCounts, want.currentCounts, `${name}: current bin counts`)
    t.ok(Math.abs(got.ks! - want.ks!) <= 1e-12, `${name}: KS ${got.ks} = ${want.ks}`)
    const scale = Math.max(Math.abs(want.wasserstein!), 1e-300)
    t.ok(Math.abs(got.wasserstein! - want.wasserstein!) / scale <= 1e-9, `${name}: Wasserstein ${got.wasserstein} = ${want.wasserstein}`)
    t.equal(got.reference.count, want.reference.count)
    t.equal(got.current.count, want.current.count)
    t.equal(got.reference.min, want.reference.min)
    t.equal(got.current.max, want.current.max)
    const close = (a: number | null, b: number | null): boolean => (a === null || b === null || !Number.isFinite(b) ? a === b || !Number.isFinite(b) : Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)))
    t.ok(close(got.reference.mean, want.reference.mean) && close(got.current.mean, want.current.mean), `${name}: means`)
    t.ok(close(got.reference.stddev, want.reference.stddev) && close(got.current.stddev, want.current.stddev), `${name}: stddevs ${got.reference.stddev} ${want.reference.stddev}`)
  }
})

t.test('values too far apart for float arithmetic: a 422 that says so, never a 500', async (t) => {
  const { app, sql } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'huge' })
  await appendValues(sql, [
    ...Array.from({ length: 100 }, (_, i) => ({ featureId: f, entityId: 'A', eventTimeMs: T0 + i * H, num: i === 0 ? 1e200 : i })),
    ...Array.from({ length: 100 }, (_, i) => ({ featureId: f, entityId: 'A', eventTimeMs: T0 + (1000 + i) * H, num: i })),
  ])
  const res = await app.inject({
    method: 'POST', url: '/v1/drift/checks',
    payload: { feature: 'huge', reference: { from: T0, to: T0 + 1000 * H }, current: { from: T0 + 1000 * H, to: T0 + 2000 * H } },
  })
  t.equal(res.statusCode, 422)
  t.match(res.json().detail, /too far apart/)
})
