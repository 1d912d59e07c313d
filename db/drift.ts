import type postgres from 'postgres'
import type { Sql, TxSql } from './connection.js'
import type { DriftMethod, DriftSummary } from '../src/domain/drift-stats.js'
import { windowHasNoCorrections } from './write-log.js'
import { closePointInTimeSession, isLockTimeout, openPointInTimeSessions, type ReservedSql } from './point-in-time.js'
import { binFrame, binStage, combineBins, combineValues, driftSummaryOf, finish, unpackBins, type BinValues, type FineBins } from '../src/domain/drift-bins.js'
import { iso } from './params.js'
import { oneBinaryField, readCopyOut } from './copy-out.js'

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

/** Tuning of driftSummary (any setting gives the same results; tests and benchmarks vary them). */
export interface SummaryOptions {
  /** About how many fine bins to aim at (default FINE_BINS). */
  fineBins?: number
  /** Read windows point-in-time even when the write log proves them free of corrections. */
  exactRead?: boolean
  /** Tests: called once the first session holds its read locks, before the samples are read. */
  beforeParts?: () => Promise<void>
}

/** The temporary tables of the parts' fine bins (names fixed here, never from input). */
const BIN_TABLES = ['drift_bins_0', 'drift_bins_1', 'drift_bins_2', 'drift_bins_3'] as const

/** One part of a sample, read into its own table on one session. */
interface Part { side: 0 | 1, spec: SampleSpec, table: number, session: ReservedSql }

/**
 * Two windows whose lengths differ by at most half: read one per session, they share the work
 * about as well as in halves, with half the statements (each plans over the window's chunks on
 * a hypertable, ~30 ms for 150 chunks) and half the bins to send.
 */
function similarWindows (a: SampleSpec, b: SampleSpec): boolean {
  if (a.kind !== 'window' || b.kind !== 'window') return false
  const la = a.toMs - a.fromMs
  const lb = b.toMs - b.fromMs
  return Math.max(la, lb) <= 1.5 * Math.min(la, lb)
}

/**
 * A window in two halves of its event-time range (each read on its own session), so that the
 * sessions share the work however unequal the windows are (a monitor's reference is often 30
 * times its current window). A pipeline run's dataset is one part.
 */
function halves (s: SampleSpec): SampleSpec[] {
  if (s.kind !== 'window' || s.toMs - s.fromMs < 2) return [s]
  const mid = s.fromMs + Math.floor((s.toMs - s.fromMs) / 2)
  return [{ ...s, toMs: mid }, { ...s, fromMs: mid }]
}

/**
 * Everything a drift check needs, from one read of each sample in the database, without
 * sorting the samples (on a million values a sort costs more than the reading) and without
 * sending them to Node:
 *
 * 0. Two read sessions on one snapshot (db/point-in-time.ts; one when the pool is busy). A probe
 *    of a few thousand values sets the fine-bin width and a shift that keeps the sums of
 *    squares precise. A window that the write log proves free of corrections at the
 *    cutoff (db/write-log.ts) is read as a plain range scan (a bitmap scan of its key range)
 *    instead of the point-in-time walk (index scan backwards + DISTINCT ON): the same rows,
 *    about a quarter less work.
 * 1. Each sample (the point-in-time values) is read once: two windows of about the same length
 *    one per session; else in two halves of its time range, each session reading the first or
 *    the second half of both samples. The sessions read at the same time, each grouping what
 *    it reads by fine bin, k = floor(x * scale), monotone in x: a hash aggregate per bin
 *    (count, min, max, the sum of the offsets in the bin and their squared deviations; and the
 *    bin's values as an array, unless the part is a plain window read) into a temporary table
 *    per part. Only the bins' numbers leave the database, packed (48 bytes a bin, one bytea
 *    through a binary COPY); the halves' bins add up.
 * 2. From the bins, src/domain/drift-bins.ts settles the sample statistics, KS at the bin ends
 *    and most of the Wasserstein integral, exactly, and names the few candidate bins the bins
 *    cannot settle (a few thousand values of a million).
 * 3. Each part sends the values of its candidate bins (a plain window reads its rows again for
 *    them: keeping every bin's values costs ~40 % of a fine-bin pass, a second plain read about
 *    half of that, for 0.67-0.75 of the check's time); drift-bins.ts finishes exactly: the
 *    largest CDF gap and the integral inside them, the reference order statistics at the
 *    quantile ranks (percentile_cont's definition), the distinct quantile edges, and how many
 *    values of each sample lie below each edge (width_bucket's bins).
 */
export async function driftSummary (sql: Sql, reference: SampleSpec, current: SampleSpec, fractions: number[], opts: SummaryOptions = {}): Promise<DriftSummary> {
  try {
    return await summaryOnSessions(sql, 2, reference, current, fractions, opts)
  } catch (err) {
    // a session waited too long for a lock (JOIN_LOCK_TIMEOUT_MS, db/point-in-time.ts): the wait
    // may have been part of a cycle through the other session; all is rolled back (releasing
    // every lock of the check), and it runs again on one session, which waits as long as it takes
    if (!isLockTimeout(err)) throw err
    return summaryOnSessions(sql, 1, reference, current, fractions, opts)
  }
}

async function summaryOnSessions (sql: Sql, count: number, reference: SampleSpec, current: SampleSpec, fractions: number[], opts: SummaryOptions): Promise<DriftSummary> {
  const sessions = await openPointInTimeSessions(sql, count, { pairsTable: false })
  try {
    const first = sessions[0]
    const second = sessions[1] ?? first
    // work_mem: the per-bin hash aggregate may keep every value (~40 bytes each at peak); the row
    // estimates of the point-in-time read are far too low (DISTINCT ON and the finiteness test),
    // which makes sorting by bin look cheap (enable_sort); each session reads its sample alone
    // (no parallel workers: the two sessions are the parallelism). TimescaleDB's SkipScan turns
    // the point-in-time walk's DISTINCT ON into one index descent per (entity, event_time) in
    // every chunk: ~6 µs a row, 10 times the plain walk (a million values: 3.4 s instead of 0.76 s);
    // off for the check's transaction (on a server without TimescaleDB the setting is an unused
    // placeholder). Every read is planned for its own windows (plan_cache_mode): after five runs
    // of a statement PostgreSQL may keep a generic plan, which on a hypertable cannot leave out
    // the chunks outside the window at planning (a plain window's second read took 1.7-3.5x
    // the whole check's time on 596 chunks)
    const configure = async (conn: ReservedSql): Promise<void> => {
      await conn`SELECT set_config('work_mem', '256MB', true), set_config('enable_sort', 'off', true),
                        set_config('max_parallel_workers_per_gather', '0', true), set_config('timescaledb.enable_skipscan', 'off', true),
                        set_config('plan_cache_mode', 'force_custom_plan', true)`
    }
    await Promise.all([...new Set([first, second])].map(configure))
    // the probe only sets the frame (any values of the samples do): a window's first few
    // thousand rows as they come, corrections or not, through an index scan that stops there
    // (a bitmap scan would first collect the whole window; on a hypertable the first chunks
    // suffice, where the point-in-time walk, in entity order, starts a scan in every chunk)
    const probeOf = (s: SampleSpec): SampleSpec => (s.kind === 'window' ? { ...s, noCorrections: true } : s)
    await first`SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true)`
    const [probe] = await first<{ lo: number | null, hi: number | null, mid: number | null }[]>`
      SELECT min(x) AS lo, max(x) AS hi, avg(x) AS mid
      FROM ((${sampleQuery(first, probeOf(reference))} LIMIT ${PROBE_VALUES}) UNION ALL (${sampleQuery(first, probeOf(current))} LIMIT ${PROBE_VALUES})) p`
    await first`SELECT set_config('enable_seqscan', 'on', true), set_config('enable_bitmapscan', 'on', true)`
    // a window that provably holds no corrections at the cutoff is read without the dedupe
    if (opts.exactRead !== true) {
      if (reference.kind === 'window') reference = { ...reference, noCorrections: await windowHasNoCorrections(first, reference) }
      if (current.kind === 'window') current = { ...current, noCorrections: await windowHasNoCorrections(first, current) }
    }
    await opts.beforeParts?.()
    const frame = binFrame(probe.lo, probe.hi, probe.mid, opts.fineBins ?? FINE_BINS)
    // two windows of about the same length: one per session; else the first half of each
    // sample on one session and the second on the other (or all on one session)
    const parts: Part[] = []
    if (second !== first && similarWindows(reference, current)) {
      parts.push({ side: 0, spec: reference, table: 0, session: first }, { side: 1, spec: current, table: 1, session: second })
    } else {
      for (const [side, spec] of [[0, reference], [1, current]] as const) {
        halves(spec).forEach((half, h) => parts.push({ side, spec: half, table: parts.length, session: h === 0 ? first : second }))
      }
    }
    const binsOf = await eachPartOnItsSession(parts, async (p) => fineBins(p, frame.scale))
    const sideBins = (side: 0 | 1): FineBins => parts.filter((p) => p.side === side).map((p) => binsOf.get(p)!).reduce(combineBins)
    const stage = binStage(sideBins(0), sideBins(1), frame, fractions)
    const valuesOf = await eachPartOnItsSession(parts, async (p) => binValues(p, p.side === 0 ? stage.fetch.reference : stage.fetch.current, frame.scale))
    const sideValues = (side: 0 | 1): BinValues[] => combineValues(parts.filter((p) => p.side === side).map((p) => valuesOf.get(p)!))
    return driftSummaryOf(stage, finish(stage, sideValues(0), sideValues(1)))
  } finally {
    await Promise.all(sessions.map(async (s) => closePointInTimeSession(s)))
  }
}

/**
 * `work` for every part: each session's parts one after the other (a session runs one statement
 * at a time, and a part's statements depend on its planner settings), the sessions at the same
 * time. Every session's work settles before any failure is thrown (the sessions are then rolled
 * back: not while one of them still has statements to send).
 */
async function eachPartOnItsSession<T> (parts: Part[], work: (p: Part) => Promise<T>): Promise<Map<Part, T>> {
  const out = new Map<Part, T>()
  const runs = await Promise.allSettled([...new Set(parts.map((p) => p.session))].map(async (session) => {
    for (const p of parts) if (p.session === session) out.set(p, await work(p))
  }))
  for (const r of runs) if (r.status === 'rejected') throw r.reason
  return out
}

/** A part's sample, each value x with its fine bin k = floor(x * scale). */
function binnedSample (part: Part, scale: number): Fragment {
  const conn = part.session
  return conn`SELECT p.x, floor(p.x * ${scale}::float8) AS k FROM (${sampleQuery(conn, part.spec)}) p`
}

/**
 * A window that the write log proves free of corrections is read as a plain range read, which
 * costs about a fifth of a fine-bin pass: its bins keep no values, and the few bins the check
 * needs the values of are read again (same snapshot, same rows). Every other sample (the
 * point-in-time walk, a run's dataset) costs more to read than to keep: its bins keep their
 * values in a temporary table.
 */
const isPlainWindow = (s: SampleSpec): boolean => s.kind === 'window' && s.noCorrections === true

/**
 * The planner settings of one sample's read: a plain range read of a window is a bitmap scan of
 * the primary key's range: not a scan of every feature's values (which the planner prefers once
 * a window is a large part of the table), and about 10 % cheaper than an index scan here, as it
 * visits each page once in order.
 */
async function planFor (conn: ReservedSql, sample: SampleSpec): Promise<void> {
  const plain = isPlainWindow(sample)
  await conn`SELECT set_config('enable_seqscan', ${plain ? 'off' : 'on'}, true), set_config('enable_indexscan', ${plain ? 'off' : 'on'}, true)`
}

/**
 * Reads one part's sample, grouped by fine bin, and returns the bins, packed. Each value gets its
 * bin k and its offset d in the bin once; a bin's squared deviations are sum(d²) - sum(d)²/n,
 * precise because 0 <= d < 1/scale (var_pop's running update costs ~45 ms more a 500,000
 * values). The bins go into the part's temporary table, with their values unless the part is
 * a plain window (binValues reads those again). PostgreSQL raises an overflow error rather than
 * returning infinity: values beyond about 1e150 times the probe's span make the check fail with
 * 22003 (the service answers 422).
 */
async function fineBins (part: Part, scale: number): Promise<FineBins> {
  const conn = part.session
  await planFor(conn, part.spec)
  const keep = !isPlainWindow(part.spec)
  const grouped = conn`
    SELECT b.k, count(*)::float8 AS n, min(b.x) AS lo, max(b.x) AS hi, sum(b.d) AS sb,
           sum(b.d * b.d) - sum(b.d) * sum(b.d) / count(*)::float8 AS m2 ${keep ? conn`, array_agg(b.x) AS xs` : conn``}
    FROM (
      SELECT x, k, x - k / ${scale}::float8 AS d
      FROM (${binnedSample(part, scale)} OFFSET 0) o
    ) b
    GROUP BY b.k`
  const table = conn(BIN_TABLES[part.table])
  await conn`CREATE TEMP TABLE ${table} ON COMMIT DROP AS ${grouped}`
  // packed in one bytea, sent as it is by a binary COPY (the text format would send it hex
  // encoded: twice the bytes, decoded again here; COPY takes no parameters, hence the table)
  const packed = await readCopyOut(await conn`
    COPY (
      SELECT string_agg(float8send(k) || float8send(n) || float8send(lo) || float8send(hi) || float8send(sb) || float8send(m2), ''::bytea ORDER BY k)
      FROM ${table}
    ) TO STDOUT (FORMAT binary)`.readable())
  return unpackBins(oneBinaryField(packed))
}

/**
 * The values of some fine bins of one part: from its table, or read again for a plain window
 * (on the part's session, in the same transaction: the same rows, the same k for each). A semi
 * join on the keys hashes them whatever the plan (`k = ANY($1)` under a generic plan compared
 * every bin with every key: 0.9-2.1 ms against 0.75-1.5 ms for the ~8 keys of the bench's
 * checks, 9-14 ms against 5 ms for 60 keys over 16,000 bins).
 */
async function binValues (part: Part, ks: number[], scale: number): Promise<BinValues[]> {
  if (ks.length === 0) return []
  const conn = part.session
  if (!isPlainWindow(part.spec)) {
    return [...await conn<BinValues[]>`SELECT k, xs FROM ${conn(BIN_TABLES[part.table])} WHERE k IN (SELECT unnest(${ks}::float8[]))`]
  }
  await planFor(conn, part.spec)
  return [...await conn<BinValues[]>`
    SELECT k, array_agg(x) AS xs
    FROM (${binnedSample(part, scale)}) o
    WHERE k IN (SELECT unnest(${ks}::float8[]))
    GROUP BY k`]
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
