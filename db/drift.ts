import type postgres from 'postgres'
import type { Sql, TxSql } from './connection.js'
import type { DriftMethod, DriftSummary } from '../src/domain/drift-stats.js'
import { windowHasNoCorrections } from './write-log.js'

type Queryable = Sql | TxSql
type Fragment = postgres.PendingQuery<postgres.Row[]>

// ---------------------------------------------------------------------------------------------
// Samples and the drift summary

/**
 * One side of a drift check. A window is the point-in-time view of the feature's values with
 * event_time in [from, to): for each (entity, event_time) the latest correction known at the
 * cutoff. A pipeline run is the run's dataset: for each of its entity rows, the value the
 * point-in-time join gave it (same cutoff, same point_in_time mode, same ttl). Either way only
 * finite numbers count: x - x = 0 is false for null, NaN and the infinities (and cheaper per row
 * than comparing with each).
 */
export type SampleSpec =
  | { kind: 'window', featureId: number, entityId?: string, fromMs: number, toMs: number, cutoffMs: number, noCorrections?: boolean }
  | { kind: 'run', featureId: number, entityId?: string, runId: string, cutoffMs: number, known: boolean, ttlMs: number | null, grid?: GridSpec }

/** A grid run's entity rows: every entity at every time of `times`. */
export interface GridSpec { entities: string[], timesMs: number[] }

const iso = (ms: number): string => new Date(ms).toISOString()
const finiteOrNull = (x: number | null): number | null => (x !== null && Number.isFinite(x) ? x : null)

function sampleQuery (sql: Queryable, s: SampleSpec): Fragment {
  const entity = s.entityId === undefined ? sql`` : sql`AND s.entity_id = ${s.entityId}`
  if (s.kind === 'window' && s.noCorrections === true) {
    // proven free of corrections at the cutoff (db/write-log.ts): every (entity, event_time) has
    // at most one row known at the cutoff, so the rows are the point-in-time values as they are
    return sql`
      SELECT s.value_num AS x
      FROM feature_snapshots s
      WHERE s.feature_id = ${s.featureId} ${entity}
        AND s.event_time >= ${iso(s.fromMs)}::timestamptz AND s.event_time < ${iso(s.toMs)}::timestamptz
        AND s.ingested_at <= ${iso(s.cutoffMs)}::timestamptz
        AND s.value_num - s.value_num = 0`
  }
  if (s.kind === 'window') {
    // Walking the primary key backwards gives (entity, event_time) groups with the latest
    // correction first, so DISTINCT ON needs no sort.
    return sql`
      SELECT x FROM (
        SELECT DISTINCT ON (s.entity_id, s.event_time) s.value_num AS x
        FROM feature_snapshots s
        WHERE s.feature_id = ${s.featureId} ${entity}
          AND s.event_time >= ${iso(s.fromMs)}::timestamptz AND s.event_time < ${iso(s.toMs)}::timestamptz
          AND s.ingested_at <= ${iso(s.cutoffMs)}::timestamptz
        ORDER BY s.entity_id DESC, s.event_time DESC, s.ingested_at DESC
      ) latest
      WHERE x - x = 0`
  }
  const rowEntity = s.entityId === undefined ? sql`` : sql`AND r.entity_id = ${s.entityId}`
  const rows = s.grid
    ? sql`SELECT e AS entity_id, t AS event_time
          FROM unnest(${s.grid.entities}::text[]) e
          CROSS JOIN unnest(${s.grid.timesMs.map(iso)}::timestamptz[]) t`
    : sql`SELECT entity_id, event_time FROM pipeline_run_entities WHERE run_id = ${s.runId}::uuid`
  const knowledge = s.known ? sql`AND v.ingested_at <= r.event_time` : sql``
  // with a ttl, a candidate older than T - ttl does not count (OUTSIDE_TTL: no value)
  const ttl = s.ttlMs === null ? sql`` : sql`AND v.event_time >= r.event_time - ${s.ttlMs}::int8 * interval '1 millisecond'`
  return sql`
    SELECT p.x FROM (${rows}) r
    CROSS JOIN LATERAL (
      SELECT v.value_num AS x
      FROM feature_snapshots v
      WHERE v.feature_id = ${s.featureId} AND v.entity_id = r.entity_id
        AND v.event_time <= r.event_time AND v.ingested_at <= ${iso(s.cutoffMs)}::timestamptz ${knowledge} ${ttl}
      ORDER BY v.event_time DESC, v.ingested_at DESC
      LIMIT 1
    ) p
    WHERE p.x - p.x = 0 ${rowEntity}`
}

/** About how many fine bins the first pass aims at: enough that the exact second pass touches few values. */
export const FINE_BINS = 32_768
/** Values read up front to choose the fine bins' width. */
const PROBE_VALUES = 5000

/** 2^floor(log2(x)), the exponent kept within +-1000. */
function powerOfTwoAtMost (x: number): number {
  return 2 ** Math.max(-1000, Math.min(1000, Math.floor(Math.log2(x))))
}

/**
 * The fine bins' scale: 1 / width, a power of two near FINE_BINS / (max - min) of a small probe
 * of the samples, so that floor(x * scale) is exact and monotone in x. The probe only tunes
 * speed: any scale gives the same, exact, results.
 */
function fineScale (span: number, bins: number): number {
  return span > 0 && Number.isFinite(span) ? powerOfTwoAtMost(bins / span) : 1
}

/** Tuning of driftSummary (any setting gives the same results; tests and benchmarks vary them). */
export interface SummaryOptions {
  /** About how many fine bins to aim at (default FINE_BINS). */
  fineBins?: number
  /** Read windows point-in-time even when the write log proves them free of corrections. */
  exactRead?: boolean
}

/** What the summary statement returns: sample statistics, the KS and Wasserstein parts, the quantile bins. */
interface SummaryRow {
  /** per sample: count, min, max, mean and sum of squared deviations of (x - shift) / unit */
  ref_n: number, ref_min: number | null, ref_max: number | null, ref_mu: number | null, ref_m2: number | null
  cur_n: number, cur_min: number | null, cur_max: number | null, cur_mu: number | null, cur_m2: number | null
  /** max |F_ref - F_cur| at the bin ends */
  ks_ends: number | null
  /** the Wasserstein integral between bins and inside the bins where the CDFs cannot cross */
  w_known: number | null
  /** max |F_ref - F_cur| inside the candidate bins */
  ks_inside: number | null
  /** the Wasserstein integral inside the candidate bins where the CDFs may cross */
  w_inside: number | null
  edges: number[] | null
  below_r: number[] | null
  below_c: number[] | null
}

/**
 * Everything a drift check needs, computed in the database in one read of the samples and
 * without sorting them (on a million values, a sort costs more than the reading):
 *
 * 0. A probe of a few thousand values sets the fine-bin width (fineScale) and a shift that keeps
 *    the sums of squares precise. A window that the write log proves free of corrections at the
 *    cutoff (db/write-log.ts) is then read as a plain range scan instead of the point-in-time
 *    walk (index scan backwards + DISTINCT ON): the same rows, about a quarter less work.
 * 1. One statement reads both samples (the point-in-time values) once and gives every value its
 *    fine bin, k = floor(x * scale), monotone in x: the bins cut the sorted values into runs. A
 *    hash aggregate per bin and side (count, min, max, sums, and the bin's values as an array;
 *    parallel workers take one sample each) gives the sample statistics, and a window over the
 *    bins both empirical CDFs at every bin end, exactly. From them: KS at the bin ends, and the
 *    Wasserstein integral between bins and inside every bin where one CDF stays above the other
 *    (from the bins' counts and sums). What cannot be settled from the bins is a short list of
 *    candidate bins: bins whose counts allow a KS gap above the best so far, bins where the CDFs
 *    may cross, and the bins holding the reference ranks of the quantiles.
 * 2. The same statement unnests the values of the candidate bins only (a few thousand of a
 *    million) and, with window functions over them, finishes exactly: the largest gap and the
 *    integral inside those bins, the reference order statistics at the quantile ranks
 *    (percentile_cont's definition), the distinct quantile edges, and how many values of each
 *    sample lie below each edge (width_bucket's bins).
 *
 * The probe and the statement run in one REPEATABLE READ transaction, so they read the same
 * values. Only the statistics leave the database.
 */
export async function driftSummary (sql: Sql, reference: SampleSpec, current: SampleSpec, fractions: number[], opts: SummaryOptions = {}): Promise<DriftSummary> {
  const { row, shift, unit } = await sql.begin('isolation level repeatable read', async (tx) => {
    // work_mem: the per-bin hash aggregate keeps every value (~40 bytes each at peak) until the
    // candidate bins are known; enable_sort: the row estimates of the point-in-time read are far
    // too low (DISTINCT ON and the finiteness test), which makes sorting 1M rows by bin look cheap
    // min_parallel_*_scan_size: no parallel scan of one window, so that each window is read and
    // aggregated whole by one process (a parallel worker per window), as the point-in-time read
    // always was: no partial states of the arrays cross processes, and the order of the sums
    // does not depend on how rows were shared out (a parallel scan of a plain range read split
    // them run by run, and cost more)
    await tx`SELECT set_config('work_mem', '256MB', true), set_config('enable_sort', 'off', true),
                    set_config('min_parallel_table_scan_size', '8GB', true), set_config('min_parallel_index_scan_size', '8GB', true)`
    // the probe walks the primary key (the point-in-time read stops after a few thousand rows;
    // a range scan would first collect the whole window)
    const [probe] = await tx<{ lo: number | null, hi: number | null, mid: number | null }[]>`
      SELECT min(x) AS lo, max(x) AS hi, avg(x) AS mid
      FROM ((${sampleQuery(tx, reference)} LIMIT ${PROBE_VALUES}) UNION ALL (${sampleQuery(tx, current)} LIMIT ${PROBE_VALUES})) p`
    // a window that provably holds no corrections at the cutoff is read without the dedupe
    if (opts.exactRead !== true) {
      if (reference.kind === 'window') reference = { ...reference, noCorrections: await windowHasNoCorrections(tx, reference) }
      if (current.kind === 'window') current = { ...current, noCorrections: await windowHasNoCorrections(tx, current) }
      // a plain range read of a window is a range scan of the primary key, not a scan of every
      // feature's values (the planner prefers the latter once a window is a large part of the
      // table, and reads it whole for each window)
      if ((reference.kind === 'window' && reference.noCorrections === true) || (current.kind === 'window' && current.noCorrections === true)) {
        await tx`SELECT set_config('enable_seqscan', 'off', true)`
      }
    }
    const span = probe.lo === null || probe.hi === null ? 0 : probe.hi - probe.lo
    const scale = fineScale(span, opts.fineBins ?? FINE_BINS)
    const shift = probe.mid ?? 0
    // deviations from the shift are summed in units of about the probe's span (a power of two,
    // so exact): their squares stay far from overflow
    const unit = span > 0 && Number.isFinite(span) ? 1 / powerOfTwoAtMost(1 / span) : 1
    // each value with its bin k and its offset d in the bin (no OFFSET 0 to compute them once:
    // it would make the plan serial). PostgreSQL raises an overflow error rather than returning
    // infinity: values beyond about 1e150 times the probe's span make the check fail with 22003
    // (the service answers 422)
    const binned = (sample: SampleSpec): Fragment => tx`
      SELECT x, floor(x * ${scale}::float8) AS k, x - floor(x * ${scale}::float8) / ${scale}::float8 AS d
      FROM (${sampleQuery(tx, sample)}) p`
    const [row] = await tx<SummaryRow[]>`
      WITH hs AS (
        -- one aggregate per sample: a parallel worker reads and aggregates a whole sample, and the
        -- leader gets finished bins (no partial states of the arrays to combine)
        (SELECT 0 AS side, b.k, count(*)::float8 AS n, min(b.x) AS lo, max(b.x) AS hi, sum(b.d) AS sb, sum(b.d * b.d) AS sq, array_agg(b.x) AS xs
         FROM (${binned(reference)}) b GROUP BY b.k)
        UNION ALL
        (SELECT 1 AS side, b.k, count(*)::float8 AS n, min(b.x) AS lo, max(b.x) AS hi, sum(b.d) AS sb, sum(b.d * b.d) AS sq, array_agg(b.x) AS xs
         FROM (${binned(current)}) b GROUP BY b.k)),
      -- mean and sum of squared deviations of each sample in (x - shift) / unit, combined from the
      -- bins' (Chan et al.): bin mean u (base - shift + sb / n, scaled) and m2 = sq - sb^2 / n
      ht AS (
        SELECT hs.side, hs.n, hs.lo, hs.hi, ((hs.k / ${scale}::float8 - ${shift}::float8) + hs.sb / hs.n) * ${1 / unit}::float8 AS u,
               greatest((hs.sq - hs.sb * (hs.sb / hs.n)) * ${1 / unit}::float8 * ${1 / unit}::float8, 0) AS m2
        FROM hs),
      sides AS (SELECT side, sum(n) AS n, min(lo) AS mn, max(hi) AS mx, sum(n * u) / sum(n) AS mu FROM ht GROUP BY side),
      side_stats AS (
        SELECT sides.side, sides.n, sides.mn, sides.mx, sides.mu, sum(ht.m2 + ht.n * ((ht.u - sides.mu) * (ht.u - sides.mu))) AS m2
        FROM sides JOIN ht ON ht.side = sides.side GROUP BY sides.side, sides.n, sides.mn, sides.mx, sides.mu),
      g AS (
        SELECT coalesce((SELECT n FROM side_stats WHERE side = 0), 0) AS nr0, coalesce((SELECT n FROM side_stats WHERE side = 1), 0) AS nc0,
               (SELECT nullif(n, 0) FROM side_stats WHERE side = 0) AS nr, (SELECT nullif(n, 0) FROM side_stats WHERE side = 1) AS nc),
      h AS (
        SELECT k, coalesce(sum(n) FILTER (WHERE side = 0), 0) AS nr, coalesce(sum(n) FILTER (WHERE side = 1), 0) AS nc,
               min(lo) AS lo, max(hi) AS hi, k / ${scale}::float8 AS base,
               coalesce(sum(sb) FILTER (WHERE side = 0), 0) AS sr, coalesce(sum(sb) FILTER (WHERE side = 1), 0) AS sc
        FROM hs GROUP BY k),
      hc AS (
        SELECT h.*, sum(h.nr) OVER w - h.nr AS cr, sum(h.nc) OVER w - h.nc AS cc, lead(h.lo) OVER w AS next_lo
        FROM h WINDOW w AS (ORDER BY h.k ROWS UNBOUNDED PRECEDING)),
      hd AS (
        SELECT hc.*,
               (hc.cr + hc.nr) / g.nr - (hc.cc + hc.nc) / g.nc AS d_end,
               greatest((hc.cr + hc.nr) / g.nr - hc.cc / g.nc, (hc.cc + hc.nc) / g.nc - hc.cr / g.nr) AS d_bound,
               ((hc.cr / g.nr >= (hc.cc + hc.nc) / g.nc) OR ((hc.cr + hc.nr) / g.nr <= hc.cc / g.nc))
                 AND hc.k > '-Infinity' AND hc.k < 'Infinity' AS definite
        FROM hc, g),
      lb AS (SELECT max(abs(d_end)) AS l FROM hd),
      -- the bins in order, and the reference values below each: cr never decreases, so the bin
      -- holding reference rank r (cr <= r < cr + nr) is the last one with cr <= r, which
      -- width_bucket finds by binary search
      ka AS (SELECT array_agg(k ORDER BY k) AS ks, array_agg(cr ORDER BY k) AS crs FROM hd),
      qk AS (
        SELECT width_bucket(floor(q.f * (g.nr - 1)), ka.crs) AS i1, width_bucket(ceil(q.f * (g.nr - 1)), ka.crs) AS i2
        FROM unnest(${fractions}::float8[]) AS q(f), g, ka WHERE g.nr > 0),
      -- inside a bin holding a single value the CDFs step once, at that value: nothing to resolve
      -- there for KS or Wasserstein
      cand AS (
        SELECT hd.k FROM hd, lb WHERE hd.lo < hd.hi AND (hd.d_bound > lb.l OR NOT hd.definite)
        UNION
        SELECT ka.ks[i] FROM qk, ka, generate_series(qk.i1, qk.i2) AS i),
      c AS MATERIALIZED (SELECT hd.k, hd.cr, hd.cc, hd.nr, hd.nc, hd.lo, hd.hi, hd.definite FROM hd WHERE hd.k IN (SELECT k FROM cand)),
      -- the second pass: the distinct values of the candidate bins and how many of each sample
      -- hold each, from the bins' arrays (a bin holding a single value is that value, n times)
      bv AS MATERIALIZED (
        SELECT bx.k, bx.x, count(*) FILTER (WHERE bx.side = 0)::float8 AS vr, count(*) FILTER (WHERE bx.side = 1)::float8 AS vc
        FROM (SELECT hs.side, u.x, hs.k FROM hs JOIN c ON c.k = hs.k AND c.lo < c.hi CROSS JOIN LATERAL unnest(hs.xs) AS u(x)) bx
        GROUP BY bx.k, bx.x
        UNION ALL
        SELECT c.k, c.lo, c.nr, c.nc FROM c WHERE c.lo = c.hi),
      -- per distinct value: the CDF gap just after it, the next value, and the reference ranks
      -- [r_lo, r_lo + vr) its copies take
      bc AS (
        SELECT bv.k, bv.x, bv.vr, c.definite, lead(bv.x) OVER w AS next_x,
               (c.cr + sum(bv.vr) OVER w) / g.nr - (c.cc + sum(bv.vc) OVER w) / g.nc AS d,
               c.cr + sum(bv.vr) OVER w - bv.vr AS r_lo
        FROM bv JOIN c ON c.k = bv.k CROSS JOIN g
        WINDOW w AS (PARTITION BY bv.k ORDER BY bv.x ROWS UNBOUNDED PRECEDING)),
      qp AS (SELECT q.f * (g.nr - 1) AS pos, floor(q.f * (g.nr - 1)) AS r1, ceil(q.f * (g.nr - 1)) AS r2 FROM unnest(${fractions}::float8[]) AS q(f), g WHERE g.nr > 0),
      -- the values holding reference copies in rank order: r_lo increases strictly, so the value
      -- holding rank r is the last one with r_lo <= r (width_bucket's binary search)
      rk AS (SELECT array_agg(bc.r_lo ORDER BY bc.k, bc.x) AS rlo, array_agg(bc.x ORDER BY bc.k, bc.x) AS xs FROM bc WHERE bc.vr > 0),
      qx AS (SELECT qp.pos, qp.r1, rk.xs[width_bucket(qp.r1, rk.rlo)] AS x1, rk.xs[width_bucket(qp.r2, rk.rlo)] AS x2 FROM qp, rk),
      qv AS (SELECT qx.x1 + (qx.pos - qx.r1) * (qx.x2 - qx.x1) AS q FROM qx),
      edges AS (SELECT array(SELECT DISTINCT q FROM qv ORDER BY q) AS e),
      below AS (
        SELECT z.e,
               (SELECT c.cr FROM c WHERE c.k >= z.ke ORDER BY c.k LIMIT 1) + coalesce(sum(bv.vr) FILTER (WHERE bv.x < z.e), 0) AS br,
               (SELECT c.cc FROM c WHERE c.k >= z.ke ORDER BY c.k LIMIT 1) + coalesce(sum(bv.vc) FILTER (WHERE bv.x < z.e), 0) AS bc
        FROM (SELECT e, floor(e * ${scale}::float8) AS ke FROM unnest((SELECT e FROM edges)) AS e) z
        LEFT JOIN bv ON bv.k = z.ke
        GROUP BY z.e, z.ke)
      SELECT g.nr0::int8 AS ref_n, (SELECT mn FROM side_stats WHERE side = 0) AS ref_min, (SELECT mx FROM side_stats WHERE side = 0) AS ref_max,
             (SELECT mu FROM side_stats WHERE side = 0) AS ref_mu, (SELECT m2 FROM side_stats WHERE side = 0) AS ref_m2,
             g.nc0::int8 AS cur_n, (SELECT mn FROM side_stats WHERE side = 1) AS cur_min, (SELECT mx FROM side_stats WHERE side = 1) AS cur_max,
             (SELECT mu FROM side_stats WHERE side = 1) AS cur_mu, (SELECT m2 FROM side_stats WHERE side = 1) AS cur_m2,
             (SELECT l FROM lb) AS ks_ends,
             coalesce((SELECT sum(abs(d_end) * (next_lo - hi)) FROM hd WHERE next_lo IS NOT NULL), 0)
               + coalesce((SELECT sum(abs((hd.cr * (hd.hi - hd.lo) + hd.nr * (hd.hi - hd.base) - hd.sr) / g.nr
                                        - (hd.cc * (hd.hi - hd.lo) + hd.nc * (hd.hi - hd.base) - hd.sc) / g.nc))
                           FROM hd WHERE hd.definite), 0) AS w_known,
             (SELECT max(abs(d)) FROM bc) AS ks_inside,
             coalesce((SELECT sum(abs(d) * (next_x - x)) FROM bc WHERE NOT definite AND next_x IS NOT NULL), 0) AS w_inside,
             (SELECT e FROM edges) AS edges,
             (SELECT array_agg(br::float8 ORDER BY e) FROM below) AS below_r,
             (SELECT array_agg(bc::float8 ORDER BY e) FROM below) AS below_c
      FROM g`
    return { row, shift, unit }
  }) as { row: SummaryRow, shift: number, unit: number }

  // mean and sample stddev from the mean and sum of squared deviations of (x - shift) / unit; a
  // sample of one repeated value has exactly that mean and a zero stddev (not a rounding residue)
  const moments = (n: number, mu: number | null, m2: number | null, min: number | null, max: number | null): { mean: number | null, stddev: number | null } => {
    if (n === 0 || mu === null || m2 === null) return { mean: null, stddev: null }
    if (min !== null && min === max) return { mean: min, stddev: n > 1 ? 0 : null }
    return { mean: shift + mu * unit, stddev: n > 1 ? Math.sqrt(Math.max(0, m2 / (n - 1))) * unit : null }
  }
  const edges = (row.edges ?? []).map(Number)
  const counts = (below: number[] | null, total: number): number[] => {
    const b = (below ?? []).map(Number)
    return [...b, total].map((x, i) => x - (i === 0 ? 0 : b[i - 1]))
  }
  const both = row.ref_n > 0 && row.cur_n > 0
  return {
    reference: { count: row.ref_n, ...moments(row.ref_n, row.ref_mu, row.ref_m2, row.ref_min, row.ref_max), min: row.ref_min, max: row.ref_max },
    current: { count: row.cur_n, ...moments(row.cur_n, row.cur_mu, row.cur_m2, row.cur_min, row.cur_max), min: row.cur_min, max: row.cur_max },
    edges,
    referenceCounts: counts(row.below_r, row.ref_n),
    currentCounts: counts(row.below_c, row.cur_n),
    ks: both ? Math.max(row.ks_ends ?? 0, row.ks_inside ?? 0) : null,
    wasserstein: both ? (row.w_known ?? 0) + (row.w_inside ?? 0) : null,
  }
}

// ---------------------------------------------------------------------------------------------
// Pipeline runs as references

export interface RunReference {
  id: string
  status: string
  features: Array<{ name: string, version: number, id: number }>
  cutoff: Date
  point_in_time: 'event' | 'known'
  entity_spec: { type: 'rows' | 'grid', grid?: Record<string, unknown> }
}

export async function findRunForDrift (sql: Queryable, id: string): Promise<RunReference | undefined> {
  const [row] = await sql<RunReference[]>`
    SELECT id::text AS id, status, features, cutoff, point_in_time, entity_spec
    FROM pipeline_runs WHERE id = ${id}::uuid AND kind = 'run'`
  return row
}

// ---------------------------------------------------------------------------------------------
// The log

export interface DriftLogInsert {
  checkId: string
  featureId: number
  featureName: string
  featureVersion: number
  entityId: string | null
  method: DriftMethod
  status: 'ok' | 'insufficient_data'
  statistic: number | null
  pValue: number | null
  threshold: number
  drifted: boolean | null
  reference: Record<string, unknown>
  current: Record<string, unknown>
  referenceCount: number
  currentCount: number
  cutoffMs: number
  monitorId: number | null
  details: Record<string, unknown>
}

/** Writes the rows of one check under one checked_at (millisecond precision); returns it. */
export async function insertDriftLogs (sql: Queryable, rows: DriftLogInsert[]): Promise<Date> {
  const [{ at }] = await sql<{ at: Date }[]>`SELECT date_trunc('milliseconds', clock_timestamp()) AS at`
  const doc = rows.map((r) => ({
    check_id: r.checkId, feature_id: r.featureId, feature_name: r.featureName, feature_version: r.featureVersion,
    entity_id: r.entityId, method: r.method, status: r.status, statistic: finiteOrNull(r.statistic), p_value: finiteOrNull(r.pValue),
    threshold: r.threshold, drifted: r.drifted, reference: r.reference, current: r.current, reference_count: r.referenceCount,
    current_count: r.currentCount, knowledge_cutoff: iso(r.cutoffMs), monitor_id: r.monitorId, details: r.details,
  }))
  await sql`
    INSERT INTO feature_drift_logs (checked_at, check_id, feature_id, feature_name, feature_version, entity_id, method, status,
      statistic, p_value, threshold, drifted, reference, current, reference_count, current_count, knowledge_cutoff, monitor_id, details)
    SELECT ${at}::timestamptz, u.check_id, u.feature_id, u.feature_name, u.feature_version, u.entity_id, u.method, u.status,
      u.statistic, u.p_value, u.threshold, u.drifted, u.reference, u.current, u.reference_count, u.current_count,
      u.knowledge_cutoff, u.monitor_id, u.details
    FROM jsonb_to_recordset(${sql.json(doc as never)}::jsonb) AS u(
      check_id uuid, feature_id int4, feature_name text, feature_version int4, entity_id text, method text, status text,
      statistic float8, p_value float8, threshold float8, drifted bool, reference jsonb, current jsonb, reference_count int8,
      current_count int8, knowledge_cutoff timestamptz, monitor_id int8, details jsonb)`
  return at
}

export interface DriftLogRow {
  id: number
  checked_at: Date
  check_id: string
  feature_name: string
  feature_version: number
  entity_id: string | null
  method: DriftMethod
  status: 'ok' | 'insufficient_data'
  statistic: number | null
  p_value: number | null
  threshold: number
  drifted: boolean | null
  reference: Record<string, unknown>
  current: Record<string, unknown>
  reference_count: number
  current_count: number
  knowledge_cutoff: Date
  monitor_id: number | null
  details: Record<string, unknown>
}

export interface DriftLogFilter {
  featureName?: string
  featureVersion?: number
  entityId?: string
  method?: DriftMethod
  drifted?: boolean
  status?: 'ok' | 'insufficient_data'
  fromMs?: number
  toMs?: number
  checkId?: string
  monitorId?: number
  /** Keyset: rows strictly after (checked_at, id) in the order checked_at DESC, id DESC. */
  after?: { checkedAtMs: number, id: number }
  limit: number
}

/** Newest first. */
export async function listDriftLogs (sql: Queryable, f: DriftLogFilter): Promise<DriftLogRow[]> {
  const cond = (on: boolean, fragment: () => Fragment): Fragment => (on ? fragment() : sql``)
  return [...await sql<DriftLogRow[]>`
    SELECT id, checked_at, check_id::text AS check_id, feature_name, feature_version, entity_id, method, status, statistic, p_value,
           threshold, drifted, reference, current, reference_count, current_count, knowledge_cutoff, monitor_id, details
    FROM feature_drift_logs
    WHERE true
      ${cond(f.featureName !== undefined, () => sql`AND feature_name = ${f.featureName!}`)}
      ${cond(f.featureVersion !== undefined, () => sql`AND feature_version = ${f.featureVersion!}`)}
      ${cond(f.entityId !== undefined, () => sql`AND entity_id = ${f.entityId!}`)}
      ${cond(f.method !== undefined, () => sql`AND method = ${f.method!}`)}
      ${cond(f.drifted !== undefined, () => sql`AND drifted = ${f.drifted!}`)}
      ${cond(f.status !== undefined, () => sql`AND status = ${f.status!}`)}
      ${cond(f.fromMs !== undefined, () => sql`AND checked_at >= ${iso(f.fromMs!)}::timestamptz`)}
      ${cond(f.toMs !== undefined, () => sql`AND checked_at < ${iso(f.toMs!)}::timestamptz`)}
      ${cond(f.checkId !== undefined, () => sql`AND check_id = ${f.checkId!}::uuid`)}
      ${cond(f.monitorId !== undefined, () => sql`AND monitor_id = ${f.monitorId!}`)}
      ${cond(f.after !== undefined, () => sql`AND (checked_at, id) < (${iso(f.after!.checkedAtMs)}::timestamptz, ${f.after!.id}::int8)`)}
    ORDER BY checked_at DESC, id DESC
    LIMIT ${f.limit}`]
}

export interface DriftDailyRow {
  bucket: Date
  feature_name: string
  method: DriftMethod
  checks: number
  drifted_checks: number
  insufficient_checks: number
  statistic_count: number
  statistic_sum: number | null
  statistic_min: number | null
  statistic_max: number | null
}

/**
 * Drift per day from the feature_drift_daily aggregate. In postgres mode the materialized view
 * answers for days before its watermark and the log itself for the days after (so a check made
 * a second ago is counted); TimescaleDB's real-time aggregation does the same by itself.
 */
export async function listDriftDaily (sql: Queryable, mode: 'timescaledb' | 'postgres', f: { featureName?: string, method?: DriftMethod, fromMs: number, toMs: number }): Promise<DriftDailyRow[]> {
  const byName = f.featureName === undefined ? sql`` : sql`AND feature_name = ${f.featureName}`
  const byMethod = f.method === undefined ? sql`` : sql`AND method = ${f.method}`
  const from = iso(f.fromMs)
  const to = iso(f.toMs)
  if (mode === 'timescaledb') {
    return [...await sql<DriftDailyRow[]>`
      SELECT bucket, feature_name, method, checks::int8 AS checks, drifted_checks::int8 AS drifted_checks,
             insufficient_checks::int8 AS insufficient_checks, statistic_count::int8 AS statistic_count,
             statistic_sum, statistic_min, statistic_max
      FROM feature_drift_daily
      WHERE bucket >= ${from}::timestamptz AND bucket < ${to}::timestamptz ${byName} ${byMethod}
      ORDER BY bucket, feature_name, method`]
  }
  return [...await sql<DriftDailyRow[]>`
    WITH wm AS (
      SELECT coalesce((SELECT watermark FROM stats_refresh_state WHERE view_name = 'feature_drift_daily'), '-infinity'::timestamptz) AS w)
    SELECT bucket, feature_name, method, checks::int8 AS checks, drifted_checks::int8 AS drifted_checks,
           insufficient_checks::int8 AS insufficient_checks, statistic_count::int8 AS statistic_count,
           statistic_sum, statistic_min, statistic_max
    FROM (
      SELECT d.* FROM feature_drift_daily d, wm
      WHERE d.bucket >= ${from}::timestamptz AND d.bucket < ${to}::timestamptz AND d.bucket < wm.w ${byName} ${byMethod}
      UNION ALL
      SELECT date_bin('1 day', checked_at, timestamptz '2000-01-01 00:00:00+00') AS bucket, feature_name, method,
             count(*), count(*) FILTER (WHERE drifted), count(*) FILTER (WHERE status = 'insufficient_data'),
             count(statistic), sum(statistic), min(statistic), max(statistic)
      FROM feature_drift_logs, wm
      WHERE checked_at >= greatest(${from}::timestamptz, wm.w) AND checked_at < ${to}::timestamptz ${byName} ${byMethod}
      GROUP BY 1, 2, 3
    ) u
    ORDER BY bucket, feature_name, method`]
}

// ---------------------------------------------------------------------------------------------
// Monitors

export interface MonitorFields {
  name: string
  description: string
  feature: string
  entity_id: string | null
  reference_offset_ms: number
  reference_length_ms: number
  current_offset_ms: number
  current_length_ms: number
  methods: DriftMethod[]
  thresholds: Partial<Record<DriftMethod, number>>
  every_ms: number
  enabled: boolean
}

/** A stored monitor: its fields, its schedule and its last run. */
export interface MonitorRow extends MonitorFields {
  id: number
  next_run_at: Date
  runs: number
  last_run_at: Date | null
  last_check_id: string | null
  last_status: string | null
  last_drifted: boolean | null
  last_error: string | null
  created_at: Date
  updated_at: Date
}

/** Inserts a monitor whose first tick is due at once. Undefined when the name is taken. */
export async function insertMonitor (sql: Queryable, m: MonitorFields): Promise<MonitorRow | undefined> {
  const [row] = await sql<MonitorRow[]>`
    INSERT INTO drift_monitors (name, description, feature, entity_id, reference_offset_ms, reference_length_ms, current_offset_ms,
                                current_length_ms, methods, thresholds, every_ms, enabled, next_run_at)
    VALUES (${m.name}, ${m.description}, ${m.feature}, ${m.entity_id}, ${m.reference_offset_ms}, ${m.reference_length_ms},
            ${m.current_offset_ms}, ${m.current_length_ms}, ${m.methods}::text[], ${sql.json(m.thresholds as never)}, ${m.every_ms},
            ${m.enabled}, now())
    ON CONFLICT (name) DO NOTHING
    RETURNING *`
  return row
}

export async function findMonitor (sql: Queryable, id: number): Promise<MonitorRow | undefined> {
  const [row] = await sql<MonitorRow[]>`SELECT * FROM drift_monitors WHERE id = ${id}`
  return row
}

export async function listMonitors (sql: Queryable, f: { featureName?: string, enabled?: boolean, afterId?: number, limit: number }): Promise<MonitorRow[]> {
  const byName = f.featureName === undefined ? sql`` : sql`AND split_part(feature, '@', 1) = ${f.featureName}`
  const byEnabled = f.enabled === undefined ? sql`` : sql`AND enabled = ${f.enabled}`
  const after = f.afterId === undefined ? sql`` : sql`AND id > ${f.afterId}`
  return [...await sql<MonitorRow[]>`
    SELECT * FROM drift_monitors
    WHERE true ${byName} ${byEnabled} ${after}
    ORDER BY id LIMIT ${f.limit}`]
}

/**
 * Replaces the fields of a monitor. When `reschedule` is set (schedule changed, or enabled
 * again) the next tick is due at once. Undefined when absent; 'name_taken' on a name clash.
 */
export async function updateMonitor (sql: Queryable, id: number, m: MonitorFields, reschedule: boolean): Promise<MonitorRow | undefined | 'name_taken'> {
  try {
    const [row] = await sql<MonitorRow[]>`
      UPDATE drift_monitors SET
        name = ${m.name}, description = ${m.description}, feature = ${m.feature}, entity_id = ${m.entity_id},
        reference_offset_ms = ${m.reference_offset_ms}, reference_length_ms = ${m.reference_length_ms},
        current_offset_ms = ${m.current_offset_ms}, current_length_ms = ${m.current_length_ms},
        methods = ${m.methods}::text[], thresholds = ${sql.json(m.thresholds as never)}, every_ms = ${m.every_ms},
        enabled = ${m.enabled},
        next_run_at = CASE WHEN ${reschedule}::bool THEN now() ELSE next_run_at END,
        updated_at = now()
      WHERE id = ${id}
      RETURNING *`
    return row
  } catch (err) {
    if ((err as { code?: string }).code === '23505') return 'name_taken'
    throw err
  }
}

export async function deleteMonitor (sql: Queryable, id: number): Promise<boolean> {
  const result = await sql`DELETE FROM drift_monitors WHERE id = ${id}`
  return result.count > 0
}

/** Ids of the enabled monitors whose tick is due. */
export async function dueMonitorIds (sql: Queryable, limit: number): Promise<number[]> {
  const rows = await sql<{ id: number }[]>`
    SELECT id FROM drift_monitors WHERE enabled AND next_run_at <= now() ORDER BY next_run_at LIMIT ${limit}`
  return rows.map((r) => r.id)
}

/** A claimed tick: the monitor, the slot it was due at, and the database's now (the window anchor). */
export interface ClaimedTick { monitor: MonitorRow, dueAt: Date, now: Date }

/**
 * Claims the due tick of one monitor: moves next_run_at to the first slot of its schedule after
 * now, in one statement, so of several instances exactly one gets the row back. Ticks missed
 * while no instance ran collapse into this one.
 */
export async function claimMonitorTick (sql: Queryable, id: number): Promise<ClaimedTick | undefined> {
  const [row] = await sql<Array<MonitorRow & { due_at: Date, claimed_now: Date }>>`
    WITH due AS (
      SELECT id, next_run_at AS due_at FROM drift_monitors
      WHERE id = ${id} AND enabled AND next_run_at <= now()
      FOR UPDATE)
    UPDATE drift_monitors m SET
      next_run_at = due.due_at + m.every_ms * (floor(extract(epoch FROM now() - due.due_at) * 1000 / m.every_ms) + 1) * interval '1 millisecond',
      last_run_at = now(),
      runs = m.runs + 1
    FROM due
    WHERE m.id = due.id
    RETURNING m.*, due.due_at, now() AS claimed_now`
  if (!row) return undefined
  const { due_at: dueAt, claimed_now: now, ...monitor } = row
  return { monitor, dueAt, now }
}

export async function recordMonitorRun (sql: Queryable, id: number, r: { checkId: string | null, status: string, drifted: boolean | null, error: string | null }): Promise<void> {
  await sql`
    UPDATE drift_monitors SET last_check_id = ${r.checkId}::uuid, last_status = ${r.status}, last_drifted = ${r.drifted},
                              last_error = ${r.error}
    WHERE id = ${id}`
}

/** Advisory lock class of monitor runs: (class, monitor id) is held while a tick of it runs. */
const MONITOR_LOCK_CLASS = 7_305_040

/**
 * Runs `fn` holding the monitor's advisory lock on a reserved connection, so one monitor never
 * runs twice at once (a slow run and the next tick). Returns undefined without running `fn`
 * when another instance holds it.
 */
export async function withMonitorLock<T> (sql: Sql, id: number, fn: () => Promise<T>): Promise<T | undefined> {
  const conn = await sql.reserve()
  try {
    const [{ locked }] = await conn<{ locked: boolean }[]>`SELECT pg_try_advisory_lock(${MONITOR_LOCK_CLASS}::int4, (${id}::int8 % 2147483647)::int4) AS locked`
    if (!locked) return undefined
    try {
      return await fn()
    } finally {
      await conn`SELECT pg_advisory_unlock(${MONITOR_LOCK_CLASS}::int4, (${id}::int8 % 2147483647)::int4)`.catch(() => {})
    }
  } finally {
    conn.release()
  }
}
