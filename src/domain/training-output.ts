import type { Dtype } from './feature.js'
import { runSteps, STEP_ROWS, type Steps } from './steps.js'
import { decodeValue } from './value-validation.js'

/**
 * The output of point-in-time joins: the merge that answers a block of entity rows from the
 * stored candidates, and the rendering of answered rows as JSON, NDJSON or CSV. Pure: the
 * candidates come in from the repository (db/point-in-time.ts), the text goes out to the route.
 *
 * The rule (SPEC, "Point-in-time semantics"): for feature f, entity e, point in time T and
 * knowledge cutoff K, the candidates are the rows of (f, e) with event_time <= T and
 * ingested_at <= K (and event_time >= T - ttl); the answer is the candidate with the greatest
 * (event_time, ingested_at). With point_in_time "known", K is min(T, K_request) per row.
 */

export type PointInTime = 'event' | 'known'
export type ValueStatus = 'PRESENT' | 'NULL_VALUE' | 'NOT_FOUND' | 'OUTSIDE_TTL'

export const STATUS_NOT_FOUND = 0
export const STATUS_PRESENT = 1
export const STATUS_NULL_VALUE = 2
export const STATUS_OUTSIDE_TTL = 3
export const STATUS_NAMES: readonly ValueStatus[] = ['NOT_FOUND', 'PRESENT', 'NULL_VALUE', 'OUTSIDE_TTL']

/**
 * A stored NULL in a packed run of float8 values (series packs): a NaN bit pattern that no packed
 * value has (stored NaNs are packed as the canonical NaN), as two big-endian int32 words.
 */
export const PACKED_NULL_HI = 0xfff84e55 | 0
export const PACKED_NULL_LO = 0x4c4c0000 | 0

/** What the merge needs to know about each feature of the join. */
export interface JoinFeature {
  dtype: Dtype
  ttl_ms: number | null
}

/**
 * A block of entity rows prepared for the merge: the rows grouped by entity and, within an
 * entity, ordered by T. The rows keep their block-local index, which is their output order.
 */
export interface EntityBlock {
  size: number
  /** T of each row, epoch ms, by block-local index. */
  t: Float64Array
  /** Distinct entity ids of the block, in first-seen order. */
  entityIds: string[]
  /** Rows of entity i are order[entityStart[i] .. entityStart[i+1]). */
  entityStart: Int32Array
  /** Block-local row indices grouped by entity, each group ordered by T. */
  order: Int32Array
  /** The inverse of order: rank[row] is the row's position in order. */
  rank: Int32Array
  /** T by position in order (sortedT[k] = t[order[k]]): the merge reads it front to back. */
  sortedT: Float64Array
  /** Smallest and greatest T of each entity in the block. */
  minT: Float64Array
  maxT: Float64Array
}

/** Groups `size` rows (entity id and T by index) into an EntityBlock. */
export function buildEntityBlock (size: number, entityOf: (i: number) => string, tOf: (i: number) => number): EntityBlock {
  return runSteps(entityBlockSteps(size, entityOf, tOf))
}

/**
 * buildEntityBlock in steps: the generator yields after every STEP_ROWS rows of
 * each pass (and after each entity whose rows had to be sorted) and returns the block, so that
 * a caller can let other work run between the steps of a large block.
 */
export function * entityBlockSteps (size: number, entityOf: (i: number) => string, tOf: (i: number) => number): Steps<EntityBlock> {
  const t = new Float64Array(size)
  const rowEntity = new Int32Array(size)
  const index = new Map<string, number>()
  const entityIds: string[] = []
  const counts: number[] = []
  for (let i = 0; i < size; i++) {
    t[i] = tOf(i)
    const id = entityOf(i)
    let e = index.get(id)
    if (e === undefined) {
      e = entityIds.length
      index.set(id, e)
      entityIds.push(id)
      counts.push(0)
    }
    rowEntity[i] = e
    counts[e]++
    if ((i + 1) % STEP_ROWS === 0) yield
  }
  const n = entityIds.length
  const entityStart = new Int32Array(n + 1)
  for (let e = 0; e < n; e++) entityStart[e + 1] = entityStart[e] + counts[e]
  const fill = entityStart.slice(0, n)
  const order = new Int32Array(size)
  for (let i = 0; i < size; i++) order[fill[rowEntity[i]]++] = i
  yield
  const minT = new Float64Array(n)
  const maxT = new Float64Array(n)
  let checked = 0
  for (let e = 0; e < n; e++) {
    const from = entityStart[e]
    const to = entityStart[e + 1]
    let sorted = true
    for (let j = from + 1; j < to; j++) if (t[order[j]] < t[order[j - 1]]) { sorted = false; break }
    if (!sorted) {
      const seg = Array.from(order.subarray(from, to)).sort((a, b) => t[a] - t[b] || a - b)
      order.set(seg, from)
    }
    minT[e] = t[order[from]]
    maxT[e] = t[order[to - 1]]
    checked += to - from
    if (!sorted || checked >= STEP_ROWS) {
      checked = 0
      yield
    }
  }
  const rank = new Int32Array(size)
  const sortedT = new Float64Array(size)
  for (let k = 0; k < size; k++) {
    const row = order[k]
    rank[row] = k
    sortedT[k] = t[row]
  }
  return { size, t, entityIds, entityStart, order, rank, sortedT, minT, maxT }
}

/** The arrays of a block's answers (see BlockAnswers). */
export interface AnswerCells {
  status: Uint8Array
  num: Float64Array
  text: Array<string | null>
  eventTime: Float64Array
}

/**
 * The answers of one block: one cell per (row, feature), stored by the row's position in the
 * block's entity order (cell(row, feature) = rank[row] * features + feature), so that the merge,
 * which answers an entity's rows in that order, writes front to back. Stored by row, inline rows
 * in random entity order made each of the merge's writes (and each read of T) a cache miss:
 * ~70 % of the merge's time, ~0.8 s per 1M rows. Readers in row order take one miss a row (its
 * features are adjacent).
 */
export class BlockAnswers {
  readonly status: Uint8Array
  readonly num: Float64Array
  readonly text: Array<string | null>
  readonly eventTime: Float64Array

  /** `cells`: the arrays of answers already made (a block sent to a render thread), else new ones. */
  constructor (readonly block: EntityBlock, readonly features: readonly JoinFeature[], cells?: AnswerCells) {
    if (cells !== undefined) {
      this.status = cells.status
      this.num = cells.num
      this.text = cells.text
      this.eventTime = cells.eventTime
      return
    }
    const n = block.size * features.length
    this.status = new Uint8Array(n)
    this.num = new Float64Array(n)
    this.text = features.some((f) => f.dtype === 'string') ? new Array<string | null>(n).fill(null) : []
    this.eventTime = new Float64Array(n)
  }

  /** Where the cell of (row, feature) is in the arrays. */
  cell (row: number, feature: number): number {
    return this.block.rank[row] * this.features.length + feature
  }

  /** The API value of a cell (null unless PRESENT). */
  value (row: number, feature: number): number | string | boolean | null {
    const at = this.cell(row, feature)
    if (this.status[at] !== STATUS_PRESENT) return null
    const dtype = this.features[feature].dtype
    return dtype === 'string' ? this.text[at] : decodeValue(dtype, this.num[at], null)
  }

  statusName (row: number, feature: number): ValueStatus {
    return STATUS_NAMES[this.status[this.cell(row, feature)]]
  }

  /** event_time of the answer (epoch ms), null when there is none. */
  answerTime (row: number, feature: number): number | null {
    const at = this.cell(row, feature)
    const s = this.status[at]
    return s === STATUS_PRESENT || s === STATUS_NULL_VALUE ? this.eventTime[at] : null
  }
}

/**
 * The merge. Candidates arrive grouped by pair (pair = entity index * features + feature
 * index, ascending) and, within a pair, in the order they become visible: by event_time in
 * "event" mode (all candidates have ingested_at <= K already), by max(event_time, ingested_at)
 * in "known" mode (a row T sees a candidate once event_time <= T and ingested_at <= T). The
 * first candidate of a pair may be the best one visible at the entity's smallest T of the block.
 * Since visibility only grows with T, a running maximum over (event_time, ingested_at) answers
 * the entity's rows in T order. Pairs without candidates stay NOT_FOUND.
 */
export class PointInTimeMerge {
  private pair = -1
  private rowAt = 0
  private rowEnd = 0
  private feature = 0
  private ttl = -1
  private lastVisible = -Infinity
  private has = false
  private bestEvent = 0
  private bestIngested = 0
  // the best candidate's value: a number (kept unboxed: always a number, with the flag below),
  // a text, or neither (a stored null)
  private bestNum = 0
  private bestIsNum = false
  private bestText: string | null = null
  private readonly nFeatures: number
  private readonly known: boolean
  private readonly ttls: number[]

  constructor (private readonly answers: BlockAnswers, mode: PointInTime) {
    this.nFeatures = answers.features.length
    this.known = mode === 'known'
    this.ttls = answers.features.map((f) => f.ttl_ms ?? -1)
  }

  /**
   * One candidate. eventMs: its event_time (epoch ms); ingestedUs: its ingested_at (epoch
   * microseconds, exact: the store keeps microseconds; 0 in "event" mode, where it is not
   * needed); num/text: its stored value.
   */
  push (pair: number, eventMs: number, ingestedUs: number, num: number | null, text: string | null): void {
    if (pair !== this.pair) this.openPair(pair)
    // a row T sees the candidate when ingested_at <= T, i.e. ceil(ingested_at to ms) <= T
    const visible = this.known ? Math.max(eventMs, Math.ceil(ingestedUs / 1000)) : eventMs
    if (visible < this.lastVisible) throw new Error(`point-in-time merge: candidates of pair ${pair} are out of order`)
    this.lastVisible = visible
    const t = this.answers.block.sortedT
    while (this.rowAt < this.rowEnd && t[this.rowAt] < visible) this.answer(this.rowAt++)
    // ties on (event_time, ingested_at) cannot happen (primary key) except in "event" mode, where
    // ingested_at is not sent and candidates come in (event_time, ingested_at) order: the later wins
    if (!this.has || eventMs > this.bestEvent || (eventMs === this.bestEvent && ingestedUs >= this.bestIngested)) {
      this.has = true
      this.bestEvent = eventMs
      this.bestIngested = ingestedUs
      this.bestIsNum = num !== null
      this.bestNum = num ?? 0
      this.bestText = text
    }
  }

  /**
   * A packed run of candidates of `pair` ("event" mode), as series packs hold them
   * (db/series-packs.ts): at `ev`, `n` big-endian int8 event times in µs since 1970; at `val`,
   * n big-endian float8 values (a stored NULL is the bit pattern PACKED_NULL_HI/LO); at `ing`
   * (when >= 0), n big-endian int8 ingested_at in µs. In (event_time, ingested_at) order. Only
   * the candidates with minT < event_time (ms) <= maxT and, with `ing`, ingested_at <= cutoffUs
   * count. The same as pushing each of them, in order, with ingestedUs 0, but a candidate's
   * value is read only when it answers a row, and event times are compared as they are stored.
   */
  pushPacked (pair: number, dv: DataView, ev: number, ing: number, val: number, n: number, minT: number, maxT: number, cutoffUs: number): void {
    if (this.known) throw new Error('point-in-time merge: packed candidates in "known" mode')
    if (pair !== this.pair) this.openPair(pair)
    const t = this.answers.block.sortedT
    const end = this.rowEnd
    let rowAt = this.rowAt
    // event_time in ms is floor(µs / 1000): ms > minT <=> µs >= (minT + 1) * 1000, and so on
    const fromUs = (minT + 1) * 1000
    const toUs = (maxT + 1) * 1000
    // the next open row sees a candidate once its event time (µs) is below (T + 1) * 1000
    let seeUs = rowAt < end ? (t[rowAt] + 1) * 1000 : Infinity
    let last = -Infinity
    let best = -1
    for (let k = 0; k < n; k++) {
      const at = ev + 8 * k
      const us = dv.getInt32(at) * 4294967296 + dv.getUint32(at + 4)
      if (us < last) throw new Error(`point-in-time merge: packed candidates of pair ${pair} are out of order`)
      last = us
      if (us < fromUs) continue
      if (us >= toUs) break
      if (ing >= 0) {
        const i = ing + 8 * k
        if (dv.getInt32(i) * 4294967296 + dv.getUint32(i + 4) > cutoffUs) continue
      }
      if (us >= seeUs) {
        // rows before this candidate's event time are answered by the best so far
        if (best >= 0) this.takePacked(dv, ev, val, best)
        if (Math.floor(us / 1000) < this.lastVisible) throw new Error(`point-in-time merge: candidates of pair ${pair} are out of order`)
        while (rowAt < end && (t[rowAt] + 1) * 1000 <= us) this.answer(rowAt++)
        seeUs = rowAt < end ? (t[rowAt] + 1) * 1000 : Infinity
      }
      best = k
    }
    if (best >= 0) {
      this.takePacked(dv, ev, val, best)
      if (this.bestEvent < this.lastVisible) throw new Error(`point-in-time merge: candidates of pair ${pair} are out of order`)
      this.lastVisible = this.bestEvent
    }
    this.rowAt = rowAt
  }

  /** Makes the k-th candidate of a packed run the best one. */
  private takePacked (dv: DataView, ev: number, val: number, k: number): void {
    const at = ev + 8 * k
    this.has = true
    this.bestEvent = Math.floor((dv.getInt32(at) * 4294967296 + dv.getUint32(at + 4)) / 1000)
    this.bestIngested = 0
    const v = val + 8 * k
    this.bestIsNum = !(dv.getInt32(v) === PACKED_NULL_HI && dv.getInt32(v + 4) === PACKED_NULL_LO)
    this.bestNum = this.bestIsNum ? dv.getFloat64(v) : 0
    this.bestText = null
  }

  /** Answers the rows still open. Call once, after the last candidate. */
  finish (): void {
    this.closePair()
    this.pair = Number.MAX_SAFE_INTEGER
  }

  private openPair (pair: number): void {
    if (pair < this.pair || pair >= this.answers.block.entityIds.length * this.nFeatures) {
      throw new Error(`point-in-time merge: pair ${pair} out of order or range`)
    }
    this.closePair()
    this.pair = pair
    const entity = Math.floor(pair / this.nFeatures)
    this.feature = pair - entity * this.nFeatures
    this.ttl = this.ttls[this.feature]
    this.rowAt = this.answers.block.entityStart[entity]
    this.rowEnd = this.answers.block.entityStart[entity + 1]
    this.lastVisible = -Infinity
    this.has = false
  }

  private closePair (): void {
    if (this.pair < 0) return
    while (this.rowAt < this.rowEnd) this.answer(this.rowAt++)
  }

  /** Answers the row at position k of the block's entity order. */
  private answer (k: number): void {
    if (!this.has) return // NOT_FOUND, the initial state
    const a = this.answers
    const at = k * this.nFeatures + this.feature
    if (this.ttl >= 0 && this.bestEvent < a.block.sortedT[k] - this.ttl) {
      a.status[at] = STATUS_OUTSIDE_TTL
      return
    }
    a.eventTime[at] = this.bestEvent
    if (this.bestIsNum) {
      a.status[at] = STATUS_PRESENT
      a.num[at] = this.bestNum
    } else if (this.bestText !== null) {
      a.status[at] = STATUS_PRESENT
      a.text[at] = this.bestText
    } else a.status[at] = STATUS_NULL_VALUE
  }
}

// ---- rendering -------------------------------------------------------------------------

export type OutputFormat = 'json' | 'ndjson' | 'csv'
export const OUTPUT_MEDIA_TYPES: Record<OutputFormat, string> = {
  json: 'application/json',
  ndjson: 'application/x-ndjson',
  csv: 'text/csv',
}

/**
 * Picks the output format from an Accept header: the supported type with the highest q
 * (ties: the order the client listed them). No header, or any wildcard: JSON. undefined when
 * nothing acceptable is supported (406).
 */
export function chooseOutputFormat (accept: string | undefined): OutputFormat | undefined {
  if (accept === undefined || accept.trim() === '') return 'json'
  const options: Array<{ format: OutputFormat, q: number, at: number }> = []
  accept.split(',').forEach((part, at) => {
    const [type, ...params] = part.trim().toLowerCase().split(';').map((s) => s.trim())
    let q = 1
    for (const p of params) if (p.startsWith('q=')) q = Number(p.slice(2))
    if (!(q > 0)) return
    const format: OutputFormat | undefined = type === 'application/json' || type === 'application/*' || type === '*/*'
      ? 'json'
      : type === 'application/x-ndjson' || type === 'application/ndjson' || type === 'application/jsonl'
        ? 'ndjson'
        : type === 'text/csv' || type === 'text/*' ? 'csv' : undefined
    if (format) options.push({ format, q, at })
  })
  options.sort((a, b) => b.q - a.q || a.at - b.at)
  return options[0]?.format
}

export interface OutputLayout {
  /** All column names, in order. */
  columns: string[]
  extraColumns: string[]
  /** One column name per feature. */
  featureColumns: string[]
  includeMetadata: boolean
}

/**
 * Column names of a training set: entity_id, event_time, the pass-through columns, one column
 * per feature (its name, or name@version when two versions of one name are joined), then with
 * metadata `<feature>__status` and `<feature>__event_time` per feature.
 */
export function featureColumnNames (features: ReadonlyArray<{ name: string, version: number }>): string[] {
  const perName = new Map<string, number>()
  for (const f of features) perName.set(f.name, (perName.get(f.name) ?? 0) + 1)
  return features.map((f) => (perName.get(f.name)! > 1 ? `${f.name}@${f.version}` : f.name))
}

export function outputColumns (extraColumns: string[], featureColumns: string[], includeMetadata: boolean): string[] {
  const meta = includeMetadata ? featureColumns.flatMap((c) => [`${c}__status`, `${c}__event_time`]) : []
  return ['entity_id', 'event_time', ...extraColumns, ...featureColumns, ...meta]
}

/** Answered rows of a block, with the entity id and pass-through columns of each (block-local) row. */
export interface AnsweredRows {
  answers: BlockAnswers
  entityAt: (row: number) => string
  extraAt: (row: number) => Record<string, unknown>
}

/**
 * Renders answered rows as text in one format: a prologue, the rows, an epilogue. Rendering
 * reads the block's columns directly (no row objects) and writes bytes (ByteWriter), not
 * strings, since it is most of the CPU time of a large training set: building each row as a
 * string and encoding the joined text took ~1.8x the time in a micro-benchmark (full-precision
 * floats), and made more garbage.
 */
export interface RowRenderer {
  readonly mediaType: string
  start: () => string
  rows: (block: AnsweredRows, from: number, to: number) => string
  end: () => string
}

export function rowRenderer (format: OutputFormat, layout: OutputLayout): RowRenderer {
  return format === 'csv' ? csvRenderer(layout) : jsonRenderer(layout, format === 'ndjson')
}

/**
 * Text written straight into one Buffer, grown as needed and reused: take() returns what was
 * written as a string and starts over.
 */
export class ByteWriter {
  private buf: Buffer
  private at = 0

  constructor (initialSize = 1 << 16) {
    this.buf = Buffer.allocUnsafe(initialSize)
  }

  /** Room for n more bytes. */
  room (n: number): void {
    if (this.at + n <= this.buf.length) return
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n))
    this.buf.copy(next, 0, 0, this.at)
    this.buf = next
  }

  byte (c: number): void {
    this.room(1)
    this.buf[this.at++] = c
  }

  /** A string, as UTF-8. */
  text (s: string): void {
    const n = s.length
    this.room(n * 3)
    const buf = this.buf
    const from = this.at
    let at = from
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i)
      if (c >= 0x80) {
        this.at = from + buf.write(s, from, 'utf8')
        return
      }
      buf[at++] = c
    }
    this.at = at
  }

  /** Bytes already encoded. */
  bytes (b: Uint8Array): void {
    const n = b.length
    this.room(n)
    const buf = this.buf
    let at = this.at
    for (let i = 0; i < n; i++) buf[at++] = b[i]
    this.at = at
  }

  /**
   * A number as String(v) writes it (ASCII). Over [1e-6, 1e15), values of at most 15
   * significant digits (prices, sizes, counts) are written from integer arithmetic
   * (shortDecimal), those of 16 or 17 (returns, ratios, scaled prices) from an exact product
   * (longDecimal); the others through String(v). String(v) costs ~140-250 ns a value, these
   * ~65 and ~85 ns (micro-benchmark); it was the largest single item of a training set's CPU
   * profile.
   */
  number (v: number): void {
    // String(v) of a number is at most 25 characters (-0.0000012345678901234567)
    this.room(25)
    // handed over through a typed array: shortDecimal is too large to be inlined, and a double
    // passed as an argument to a call that is not would be boxed (allocated) on every call
    NUMBER_ARG[0] = v
    if (!this.shortDecimal()) this.text(String(v))
  }

  /**
   * Writes v (NUMBER_ARG[0]) as String(v) would when |v| is 0 or in [1e-6, 1e15) and v has a
   * decimal representation of at most 15 significant digits; else, over that range, as
   * longDecimal does; else writes nothing and says false.
   *
   * With e = floor(log10 |v|), m = round(|v| * 10^(14 - e)) has 15 digits, and the decimal
   * D = m * 10^(e - 14) reads back as v exactly when m / 10^(14 - e) === |v| (both operands
   * exact, the quotient correctly rounded: the double nearest D, which is what parsing D gives).
   * Decimals of at most 15 significant digits map to distinct doubles (DBL_DIG), so D is then
   * the only one that reads back as v: String(v), the shortest such decimal, is D without its
   * trailing zeros, in positional notation over this range.
   */
  private shortDecimal (): boolean {
    const v = NUMBER_ARG[0]
    let a = v
    if (v <= 0) {
      if (v === 0) { this.buf[this.at++] = DIGIT_0; return true } // also -0, as String(-0)
      a = -v
    }
    if (!(a >= 1e-6 && a < 1e15)) return false
    // e from the binary exponent (floor(log10 a) is floor(e2 * log10 2) or one more)
    exponentF64[0] = a
    let e = Math.floor((((exponentU32[EXPONENT_WORD] >>> 20) & 0x7ff) - 1023) * 0.30102999566398114) | 0
    if (a >= POW10[e + 1 + POW10_ZERO]) e++
    const p = POW10[14 - e + POW10_ZERO]
    const m = Math.round(a * p)
    if (m < 1e14 || m >= 1e15) return false
    if (m / p !== a) return this.longDecimal(e)
    // the 15 digits, as ASCII, two at a time, in int32 arithmetic (with double arithmetic, and
    // so double indexes into the typed arrays, the method took ~40 % longer)
    const d = DIGITS17
    const hi = Math.floor(m / 1e8) | 0 // 7 digits
    digitPairs(d, 15, (m - hi * 1e8) | 0, 4) // 8 digits
    d[0] = DIGIT_0 + digitPairs(d, 7, hi, 3)
    let n = 15
    while (d[n - 1] === DIGIT_0) n--
    this.positional(n, e, v < 0)
    return true
  }

  /**
   * Writes v (NUMBER_ARG[0]; |v| in [1e-6, 1e15), e = floor(log10 |v|)) as String(v) would when
   * its shortest decimal has 16 or 17 significant digits; else (at most 15, or too close to
   * call) writes nothing and says false.
   *
   * With k = 16 - e, S = |v| * 10^k lies in [1e16, 1e17): a decimal of 17 significant digits
   * is an integer N there (times 10^-k), one of 16 a multiple of 10. N reads back as v when it
   * lies within the half-gaps from S to the neighbouring doubles' S (`up`, and `down`, half of
   * it below a power of two), both exact. S comes exactly as hi + lo (Dekker's product: 10^k is
   * exact for k <= 22), then as the integer nh * 1e8 + nl plus a fraction fr in [0, 1). The
   * gaps are 0.55 to 11.1 units wide, so the nearest integer always reads back; String(v) is
   * the multiple of 10 that does, the nearer if two do, else that integer. The distances are
   * small sums of exact values, off by at most ~2^-46: whenever one is within EPS of a gap, a
   * tie or 0.5, and whenever a multiple of 100 might read back (15 digits or fewer), the answer
   * is left to String(v). A property test compares the output with String(v).
   */
  private longDecimal (e: number): boolean {
    const v = NUMBER_ARG[0]
    const a = v < 0 ? -v : v
    const k = 16 - e
    if (k > 22) return false
    const p = POW10[k + POW10_ZERO]
    // a * p = hi + lo exactly (Veltkamp's split of a; p's is in the tables)
    const c = SPLITTER * a
    const ah = c - (c - a)
    const al = a - ah
    const ph = POW10_HI[k]
    const pl = POW10_LO[k]
    const hi = a * p
    const lo = ((ah * ph - hi) + ah * pl + al * ph) + al * pl
    // hi is an even integer below 2^57: nh * 1e8 and nh * 1e8 + nl are exact
    let nh = Math.floor(hi / 1e8)
    let nl = hi - nh * 1e8
    const whole = Math.floor(lo)
    const fr = lo - whole
    // nl back into [0, 1e8): the quotient above may be off by one, and whole moves nl by up to 8
    nl += whole
    while (nl < 0) { nl += 1e8; nh-- }
    while (nl >= 1e8) { nl -= 1e8; nh++ }
    if (nh < 1e8 || nh >= 1e9) return false
    // half the gap to the next double, as a double (2^(e2 - 53)), times p: exact
    exponentF64[0] = a
    const top = exponentU32[EXPONENT_WORD]
    const powerOfTwo = (top & 0xfffff) === 0 && exponentU32[1 - EXPONENT_WORD] === 0
    exponentU32[EXPONENT_WORD] = (((top >>> 20) & 0x7ff) - 53) << 20
    exponentU32[1 - EXPONENT_WORD] = 0
    const up = exponentF64[0] * p
    const down = powerOfTwo ? up * 0.5 : up
    // S's distances to the multiples of 100 and of 10 below it
    const r100 = (nl | 0) % 100
    const y = r100 + fr
    if (y < down + EPS || 100 - y < up + EPS) return false
    const r = r100 % 10
    const x = r + fr
    const lowerIn = x < down - EPS
    const upperIn = 10 - x < up - EPS
    if ((!lowerIn && x <= down + EPS) || (!upperIn && 10 - x <= up + EPS)) return false
    let add: number
    if (lowerIn && upperIn) {
      if (x > 5 - EPS && x < 5 + EPS) return false
      add = x < 5 ? -r : 10 - r
    } else if (lowerIn) add = -r
    else if (upperIn) add = 10 - r
    else {
      if (fr === 0.5) return false
      add = fr < 0.5 ? 0 : 1
    }
    nl += add
    while (nl < 0) { nl += 1e8; nh-- }
    while (nl >= 1e8) { nl -= 1e8; nh++ }
    if (nh >= 1e9) return false
    const d = DIGITS17
    digitPairs(d, 17, nl | 0, 4) // 8 digits
    d[0] = DIGIT_0 + digitPairs(d, 9, nh | 0, 4) // 9 digits
    let n = 17
    while (d[n - 1] === DIGIT_0) n--
    this.positional(n, e, v < 0)
    return true
  }

  /**
   * Writes the n significant digits in DIGITS17 (the first nonzero) of a number whose decimal
   * exponent is e, in positional notation as String(v) does (room already made).
   */
  private positional (n: number, e: number, negative: boolean): void {
    const d = DIGITS17
    const buf = this.buf
    let at = this.at
    if (negative) buf[at++] = MINUS
    if (e >= 0) {
      // the integer part: e + 1 digits (its last ones may be zeros of m); then the fraction
      const whole = e + 1
      for (let i = 0; i < whole; i++) buf[at++] = d[i]
      if (n > whole) {
        buf[at++] = DOT
        for (let i = whole; i < n; i++) buf[at++] = d[i]
      }
    } else {
      buf[at++] = DIGIT_0
      buf[at++] = DOT
      for (let i = -1; i > e; i--) buf[at++] = DIGIT_0
      for (let i = 0; i < n; i++) buf[at++] = d[i]
    }
    this.at = at
  }

  /**
   * An epoch-ms time as Date.prototype.toISOString writes it: the date part computed with integer
   * arithmetic and kept for the next call (consecutive rows mostly share a day), the time of day
   * written as digits.
   */
  isoMillis (ms: number): void {
    if (!(ms >= FAST_ISO_FROM && ms < FAST_ISO_TO)) return this.text(new Date(ms).toISOString())
    const day = Math.floor(ms / DAY_MS)
    if (day !== isoDay) {
      isoDay = day
      civilDate(day, ISO_DAY)
    }
    // the time of day in int32 arithmetic (divisions by constants become multiplications)
    let rest = (ms - day * DAY_MS) | 0
    const h = (rest / 3_600_000) | 0
    rest -= h * 3_600_000
    const mi = (rest / 60_000) | 0
    rest -= mi * 60_000
    const sec = (rest / 1000) | 0
    const milli = rest - sec * 1000
    const hundreds = (milli / 100) | 0
    this.room(24)
    const buf = this.buf
    let at = this.at
    for (let i = 0; i < 11; i++) buf[at++] = ISO_DAY[i]
    buf[at++] = DIGIT_PAIRS[h << 1]
    buf[at++] = DIGIT_PAIRS[(h << 1) + 1]
    buf[at++] = 58 // :
    buf[at++] = DIGIT_PAIRS[mi << 1]
    buf[at++] = DIGIT_PAIRS[(mi << 1) + 1]
    buf[at++] = 58
    buf[at++] = DIGIT_PAIRS[sec << 1]
    buf[at++] = DIGIT_PAIRS[(sec << 1) + 1]
    buf[at++] = 46 // .
    buf[at++] = DIGIT_0 + hundreds
    const tens = (milli - hundreds * 100) << 1
    buf[at++] = DIGIT_PAIRS[tens]
    buf[at++] = DIGIT_PAIRS[tens + 1]
    buf[at++] = 90 // Z
    this.at = at
  }

  /**
   * The text written since the last take(), as a string; the writer starts over in the same
   * buffer. A training set's chunks leave this way. A string lives on the JavaScript heap and
   * dies young (a scavenge frees it); a new Buffer per chunk counts as external memory instead,
   * ~120 MB per 1M rows, which V8 answers with full collections unless scavenges free the
   * Buffers first. With the numbers written without String(v) (longDecimal), little else
   * makes young garbage: Buffers then caused 19 full collections per 1M-row grid request
   * (strings: 3), their marking thread taking CPU from PostgreSQL, and cost ~0.3 s more service
   * CPU than the UTF-8 decoding and encoding of strings (an earlier session, with String(v)
   * garbage, had measured Buffers 0.08 s ahead).
   */
  take (): string {
    const out = this.buf.toString('utf8', 0, this.at)
    this.at = 0
    return out
  }
}

/** At most this many distinct entity ids keep their rendered bytes per response. */
const ENTITY_CACHE_MAX = 100_000

/** An entity id's rendered bytes (`render` of it), kept for the next rows of the same entity. */
function entityBytesCache (render: (id: string) => string): (id: string) => Buffer {
  const cache = new Map<string, Buffer>()
  let lastId: string | undefined
  let last: Buffer = Buffer.alloc(0)
  return (id) => {
    if (id === lastId) return last
    let b = cache.get(id)
    if (b === undefined) {
      b = Buffer.from(render(id), 'utf8')
      if (cache.size < ENTITY_CACHE_MAX) cache.set(id, b)
    }
    lastId = id
    last = b
    return b
  }
}

const QUOTE = 34
const COMMA = 44
const NEWLINE = 10

/**
 * JSON objects, one per row, keys in column order; JSON: `{"columns":[...],"rows":[...]}`,
 * NDJSON: one object per line. Non-finite floats are the strings "NaN", "Infinity",
 * "-Infinity" (JSON has no such numbers).
 */
function jsonRenderer (layout: OutputLayout, ndjson: boolean): RowRenderer {
  const { extraColumns, featureColumns, includeMetadata } = layout
  const bytes = (s: string): Buffer => Buffer.from(s, 'utf8')
  const extraKeys = extraColumns.map((c) => bytes(`,${JSON.stringify(c)}:`))
  const featureKeys = featureColumns.map((c) => bytes(`,${JSON.stringify(c)}:`))
  const statusKeys = featureColumns.map((c) => bytes(`,${JSON.stringify(`${c}__status`)}:"`))
  const timeKeys = featureColumns.map((c) => bytes(`,${JSON.stringify(`${c}__event_time`)}:`))
  const statusNames = STATUS_NAMES.map((n) => bytes(`${n}"`))
  const entityPrefix = bytes('{"entity_id":')
  const timePrefix = bytes(',"event_time":"')
  const nul = bytes('null')
  const yes = bytes('true')
  const no = bytes('false')
  const entity = entityBytesCache((id) => JSON.stringify(id))
  const w = new ByteWriter()
  let first = true
  return {
    mediaType: ndjson ? 'application/x-ndjson' : 'application/json',
    start: () => (ndjson ? '' : `{"columns":${JSON.stringify(layout.columns)},"rows":[`),
    rows: ({ answers, entityAt, extraAt }, from, to) => {
      const nf = answers.features.length
      const dtypes = answers.features.map((f) => f.dtype)
      const { status, num, text, eventTime } = answers
      const { t, rank } = answers.block
      for (let r = from; r < to; r++) {
        if (!ndjson) {
          if (first) first = false
          else w.byte(COMMA)
        }
        w.bytes(entityPrefix)
        w.bytes(entity(entityAt(r)))
        w.bytes(timePrefix)
        w.isoMillis(t[r])
        w.byte(QUOTE)
        if (extraKeys.length > 0) {
          const extra = extraAt(r)
          for (let i = 0; i < extraKeys.length; i++) {
            const v = extra[extraColumns[i]]
            w.bytes(extraKeys[i])
            w.text(v === undefined ? 'null' : JSON.stringify(v))
          }
        }
        const at = rank[r] * nf
        for (let f = 0; f < nf; f++) {
          w.bytes(featureKeys[f])
          if (status[at + f] !== STATUS_PRESENT) { w.bytes(nul); continue }
          const dtype = dtypes[f]
          if (dtype === 'string') w.text(JSON.stringify(text[at + f]))
          else if (dtype === 'bool') w.bytes(num[at + f] === 1 ? yes : no)
          else {
            const v = num[at + f]
            if (Number.isFinite(v)) w.number(v)
            else { w.byte(QUOTE); w.number(v); w.byte(QUOTE) }
          }
        }
        if (includeMetadata) {
          for (let f = 0; f < nf; f++) {
            const st = status[at + f]
            w.bytes(statusKeys[f])
            w.bytes(statusNames[st])
            w.bytes(timeKeys[f])
            if (st === STATUS_PRESENT || st === STATUS_NULL_VALUE) {
              w.byte(QUOTE)
              w.isoMillis(eventTime[at + f])
              w.byte(QUOTE)
            } else w.bytes(nul)
          }
        }
        w.byte(125) // }
        if (ndjson) w.byte(NEWLINE)
      }
      return w.take()
    },
    end: () => (ndjson ? '' : ']}'),
  }
}

/**
 * CSV (RFC 4180, LF line ends): null is an empty cell; a string is quoted when it is empty or
 * holds a comma, quote, CR or LF (so an empty string reads back as "" and null as nothing);
 * objects and arrays in pass-through columns are written as quoted JSON.
 */
function csvRenderer (layout: OutputLayout): RowRenderer {
  const { extraColumns, includeMetadata } = layout
  const statusNames = STATUS_NAMES.map((n) => Buffer.from(`,${n},`))
  const yes = Buffer.from(',true')
  const no = Buffer.from(',false')
  const entity = entityBytesCache(csvText)
  const w = new ByteWriter()
  return {
    mediaType: 'text/csv',
    start: () => `${layout.columns.map(csvText).join(',')}\n`,
    rows: ({ answers, entityAt, extraAt }, from, to) => {
      const nf = answers.features.length
      const dtypes = answers.features.map((f) => f.dtype)
      const { status, num, text, eventTime } = answers
      const { t, rank } = answers.block
      for (let r = from; r < to; r++) {
        w.bytes(entity(entityAt(r)))
        w.byte(COMMA)
        w.isoMillis(t[r])
        if (extraColumns.length > 0) {
          const extra = extraAt(r)
          for (const c of extraColumns) {
            w.byte(COMMA)
            w.text(csvCell(extra[c]))
          }
        }
        const at = rank[r] * nf
        for (let f = 0; f < nf; f++) {
          if (status[at + f] !== STATUS_PRESENT) { w.byte(COMMA); continue }
          const dtype = dtypes[f]
          if (dtype === 'string') { w.byte(COMMA); w.text(csvText(text[at + f]!)) } else if (dtype === 'bool') w.bytes(num[at + f] === 1 ? yes : no)
          else { w.byte(COMMA); w.number(num[at + f]) }
        }
        if (includeMetadata) {
          for (let f = 0; f < nf; f++) {
            const st = status[at + f]
            w.bytes(statusNames[st])
            if (st === STATUS_PRESENT || st === STATUS_NULL_VALUE) w.isoMillis(eventTime[at + f])
          }
        }
        w.byte(NEWLINE)
      }
      return w.take()
    },
    end: () => '',
  }
}

const CSV_NEEDS_QUOTES = /[",\r\n]/

function csvText (s: string): string {
  if (s === '') return '""'
  return CSV_NEEDS_QUOTES.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}

/** One CSV cell: null and undefined empty, numbers and booleans as they print, strings quoted when needed, objects as quoted JSON. */
export function csvCell (v: unknown): string {
  if (v === null || v === undefined) return ''
  if (typeof v === 'number') return String(v)
  if (typeof v === 'boolean') return v ? 'true' : 'false'
  if (typeof v === 'string') return csvText(v)
  return csvText(JSON.stringify(v))
}

const DIGIT_0 = 48
const DOT = 46
const MINUS = 45
/** "00" to "99" as ASCII pairs. */
const DIGIT_PAIRS = Uint8Array.from({ length: 200 }, (_, i) => DIGIT_0 + (i % 2 === 0 ? Math.floor(i / 20) : (i >> 1) % 10))
/** 10^k for k in [-POW10_ZERO, 22], at k + POW10_ZERO: exact for k >= 0 (the nearest doubles below). */
const POW10_ZERO = 8
const POW10 = Float64Array.from({ length: 23 + POW10_ZERO }, (_, i) => Number(`1e${i - POW10_ZERO}`))
const DIGITS17 = new Uint8Array(17)
/** Veltkamp's splitter for doubles (2^27 + 1), and 10^k (k in [0, 22]) split by it: 10^k = hi + lo. */
const SPLITTER = 134_217_729
const POW10_HI = Float64Array.from({ length: 23 }, (_, k) => { const c = SPLITTER * 10 ** k; return c - (c - 10 ** k) })
const POW10_LO = Float64Array.from({ length: 23 }, (_, k) => 10 ** k - POW10_HI[k])
/** longDecimal's margin: far above its rounding errors (~2^-46), far below a gap (>= 0.55). */
const EPS = 1e-9

/** Writes the last 2 * pairs digits of x (an int32) as ASCII into d[end - 2 * pairs, end); returns the rest of x. */
function digitPairs (d: Uint8Array, end: number, x: number, pairs: number): number {
  for (let i = end - 2; pairs > 0; i -= 2, pairs--) {
    const q = (x / 100) | 0
    const r = (x - q * 100) << 1
    d[i] = DIGIT_PAIRS[r]
    d[i + 1] = DIGIT_PAIRS[r + 1]
    x = q
  }
  return x
}
/** ByteWriter.number's argument to shortDecimal and longDecimal. */
const NUMBER_ARG = new Float64Array(1)
const exponentF64 = new Float64Array(1)
const exponentU32 = new Uint32Array(exponentF64.buffer)
/** The word of a double's bits that holds its exponent: the second on little-endian machines. */
const EXPONENT_WORD = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0
const DAY_MS = 86_400_000
const FAST_ISO_FROM = Date.UTC(1000, 0, 1)
const FAST_ISO_TO = Date.UTC(10000, 0, 1)
let isoDay = Number.NaN
/** `YYYY-MM-DDT` of isoDay, as ASCII. */
const ISO_DAY = new Uint8Array(11)

const isoScratch = new ByteWriter(32)

/**
 * The same text as Date.prototype.toISOString (UTC, three fractional digits), several times
 * faster: ByteWriter.isoMillis, which the renderers write with directly.
 */
export function isoMillis (ms: number): string {
  isoScratch.isoMillis(ms)
  return isoScratch.take()
}

/**
 * Writes `YYYY-MM-DDT` of a day number since 1970-01-01 (proleptic Gregorian, H. Hinnant's
 * algorithm; years 1000-9999) into out as ASCII.
 */
function civilDate (days: number, out: Uint8Array): void {
  const z = days + 719_468
  const era = Math.floor(z / 146_097)
  const doe = z - era * 146_097
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365)
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100))
  const mp = Math.floor((5 * doy + 2) / 153)
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1
  const m = mp < 10 ? mp + 3 : mp - 9
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0)
  digitPairs(out, 4, y, 2)
  out[4] = MINUS
  out[5] = DIGIT_PAIRS[m << 1]
  out[6] = DIGIT_PAIRS[(m << 1) + 1]
  out[7] = MINUS
  out[8] = DIGIT_PAIRS[d << 1]
  out[9] = DIGIT_PAIRS[(d << 1) + 1]
  out[10] = 84 // T
}
