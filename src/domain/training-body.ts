import { runSteps, STEP_ROWS, type Steps } from './steps.js'
import { commonTimestampMs, dayInMonth, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, parseTimestamp } from './time.js'

/**
 * Inline entity rows of a training set, held as columns instead of one object per row: the
 * distinct entity ids once each, an entity index and a time (epoch ms) per row, and the
 * pass-through members column by column, only when rows have any. A body of 1,000,000 rows then
 * costs ~12 bytes a row instead of a JS object, two strings and a parsed copy of the body.
 *
 * `scanTrainingBody` fills it straight from the bytes of a JSON request body; pipelines (and
 * bodies the scanner leaves to JSON.parse) fill it from row objects. Both give the same columns.
 */
export class EntityRowColumns {
  /** Distinct entity ids, in first-seen order. */
  readonly entityIds: string[] = []
  private readonly idIndex = new Map<string, number>()
  private entity: Int32Array
  private time: Float64Array
  private n = 0
  /** Rows whose event_time did not parse: the value given (the caller reports it). */
  readonly badTimes = new Map<number, unknown>()
  /** Pass-through member names, in first-seen order (over rows, then within a row). */
  readonly extraNames: string[] = []
  private readonly extraCols = new Map<string, unknown[]>()

  constructor (capacity = 1024) {
    this.entity = new Int32Array(Math.max(16, capacity))
    this.time = new Float64Array(Math.max(16, capacity))
  }

  get count (): number { return this.n }

  /** Appends a row; `time` is the event_time as given (a string, or what the schema made of it). */
  add (entityId: string, time: unknown): number {
    const ms = parseTimestampMs(time)
    return this.addParsed(entityId, ms, time)
  }

  /** Appends a row whose event_time is already parsed (NaN: did not parse; `raw` is kept). */
  addParsed (entityId: string, ms: number, raw: unknown): number {
    const row = this.n
    if (row === this.entity.length) this.grow()
    let e = this.idIndex.get(entityId)
    if (e === undefined) {
      e = this.entityIds.length
      this.idIndex.set(entityId, e)
      this.entityIds.push(entityId)
    }
    this.entity[row] = e
    this.time[row] = ms
    if (ms !== ms) this.badTimes.set(row, raw)
    this.n = row + 1
    return row
  }

  /** Sets a pass-through member of a row (JSON value). */
  setExtra (row: number, name: string, value: unknown): void {
    let col = this.extraCols.get(name)
    if (col === undefined) {
      col = []
      this.extraCols.set(name, col)
      this.extraNames.push(name)
    }
    // rows come in order: pad with holes so that the array stays dense (compact) while it can
    while (col.length < row) col.push(undefined)
    col[row] = value
  }

  entityIndexAt (row: number): number { return this.entity[row] }
  entityAt (row: number): string { return this.entityIds[this.entity[row]] }
  /** event_time of a row, epoch ms; NaN when it did not parse (see badTimes). */
  timeAt (row: number): number { return this.time[row] }

  /** The pass-through members a row has (an empty object when none). */
  extraAt (row: number): Record<string, unknown> {
    const out: Record<string, unknown> = {}
    for (const name of this.extraNames) {
      const v = this.extraCols.get(name)![row]
      if (v !== undefined) out[name] = v
    }
    return out
  }

  /** Drops the spare capacity once every row is in. */
  finish (): this {
    if (this.entity.length > this.n * 1.25 + 16) {
      this.entity = this.entity.slice(0, this.n)
      this.time = this.time.slice(0, this.n)
    }
    return this
  }

  private grow (): void {
    const entity = new Int32Array(this.entity.length * 2)
    entity.set(this.entity)
    this.entity = entity
    const time = new Float64Array(this.time.length * 2)
    time.set(this.time)
    this.time = time
  }
}

/** Columns of row objects that passed the request schema (entity_id a string, event_time given). */
export function entityRowColumnsFromObjects (rows: ReadonlyArray<{ entity_id: string, event_time: unknown }>): EntityRowColumns {
  return runSteps(entityRowColumnsSteps(rows))
}

/**
 * entityRowColumnsFromObjects in steps: yields after every STEP_ROWS rows and returns the
 * columns, so that a caller can let other work run between the steps of a large body.
 */
export function * entityRowColumnsSteps (rows: ReadonlyArray<{ entity_id: string, event_time: unknown }>): Steps<EntityRowColumns> {
  const cols = new EntityRowColumns(rows.length)
  for (let i = 0; i < rows.length; i++) {
    addRowObject(cols, rows[i] as unknown as Record<string, unknown>)
    if ((i + 1) % STEP_ROWS === 0) yield
  }
  return cols.finish()
}

/** Adds a row object's members to `cols` (pass-through members included). */
function addRowObject (cols: EntityRowColumns, row: Record<string, unknown>): void {
  const r = cols.add(row.entity_id as string, row.event_time)
  for (const key in row) {
    if (key !== 'entity_id' && key !== 'event_time' && row[key] !== undefined) cols.setExtra(r, key, row[key])
  }
}

function parseTimestampMs (v: unknown): number {
  const t = parseTimestamp(v)
  return t.ok ? t.ms : Number.NaN
}

// ---- the scanner ----------------------------------------------------------------------------

/** An error of the row schema, as Ajv reports it (instancePath relative to the row). */
export interface RowSchemaError {
  instancePath: string
  [key: string]: unknown
}

/** Validates (and, like the request schema, coerces in place) one row object; null when valid. */
export type RowValidator = (row: unknown) => RowSchemaError[] | null

export type ScanResult =
  /** The body without its entity rows: `rest` is the JSON text with `"entity_rows":[]`. */
  | { kind: 'columns', rest: string, columns: EntityRowColumns, rowErrors: RowSchemaError[] }
  /** Not the shape the scanner takes (or nothing to gain): parse the whole body as usual. */
  | { kind: 'fallback' }
  /** Certainly not valid JSON. */
  | { kind: 'invalid', at: number }

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c
const COLON = 0x3a
const LBRACE = 0x7b
const RBRACE = 0x7d
const LBRACKET = 0x5b
const RBRACKET = 0x5d
const MINUS = 0x2d
const ENTITY_ID = Uint8Array.from(Buffer.from('entity_id', 'latin1'))
const EVENT_TIME = Uint8Array.from(Buffer.from('event_time', 'latin1'))
const ENTITY_ROWS = Uint8Array.from(Buffer.from('entity_rows', 'latin1'))

class NotJson extends Error {
  constructor (readonly at: number) { super('not JSON') }
}

/**
 * Reads a training-set request body (JSON bytes) without materialising its entity rows:
 * the top-level object is walked; the value of its one `entity_rows` member, when an array,
 * is read row by row into EntityRowColumns, and the rest of the body is handed back as text
 * (with `"entity_rows":[]`) for the ordinary JSON parser and schema.
 *
 * Rows of the usual shape (an object of simple members: strings of printable ASCII without
 * escapes, numbers, true, false, null; no member twice; entity_id a string of 1 to 256
 * characters; event_time present) are read from the bytes. Any other row is cut out and given
 * to JSON.parse, then to `validate` (the request schema of one row, which reports errors and
 * coerces like the schema of the whole body would); its errors come back with their row's path.
 * Anything unexpected outside the rows (no object, `entity_rows` twice or not an array, text
 * that might be a prototype key) gives 'fallback': the caller parses the whole body as before.
 * A row that is certainly malformed JSON gives 'invalid'.
 */
export function scanTrainingBody (b: Buffer, validate: RowValidator): ScanResult {
  return runSteps(scanTrainingBodySteps(b, validate))
}

/**
 * scanTrainingBody in steps: yields after every STEP_ROWS entity rows and returns the result,
 * so that a caller can let other work run while a large body is read.
 */
export function * scanTrainingBodySteps (b: Buffer, validate: RowValidator): Steps<ScanResult> {
  try {
    return yield * scan(b, validate)
  } catch (err) {
    if (err instanceof NotJson) return { kind: 'invalid', at: err.at }
    throw err
  }
}

function * scan (b: Buffer, validate: RowValidator): Steps<ScanResult> {
  const n = b.length
  let p = ws(b, 0)
  if (b[p] !== LBRACE) return { kind: 'fallback' }
  p = ws(b, p + 1)
  let rowsFrom = -1
  let rowsTo = -1
  let result: { columns: EntityRowColumns, rowErrors: RowSchemaError[] } | undefined
  if (b[p] !== RBRACE) {
    for (;;) {
      // a key with escapes might spell entity_rows: leave such bodies to JSON.parse
      if (b[p] !== QUOTE) return { kind: 'fallback' }
      const keyClose = plainStringEnd(b, p + 1)
      if (keyClose < 0) return { kind: 'fallback' }
      const keyEnd = keyClose + 1
      const isRows = keyEnd - p - 2 === ENTITY_ROWS.length && sameBytes(b, p + 1, ENTITY_ROWS)
      p = ws(b, keyEnd)
      if (b[p] !== COLON) return { kind: 'fallback' }
      p = ws(b, p + 1)
      if (isRows) {
        if (rowsFrom >= 0 || b[p] !== LBRACKET) return { kind: 'fallback' }
        rowsFrom = p
        const read = yield * readRows(b, p, validate)
        if (read === undefined) return { kind: 'fallback' }
        result = read
        p = read.end
        rowsTo = p
      } else {
        const end = valueEnd(b, p)
        if (end < 0) return { kind: 'fallback' }
        p = end
      }
      p = ws(b, p)
      if (b[p] === COMMA) { p = ws(b, p + 1); continue }
      if (b[p] === RBRACE) break
      return { kind: 'fallback' }
    }
  }
  if (ws(b, p + 1) !== n || result === undefined) return { kind: 'fallback' }
  const rest = `${b.toString('utf8', 0, rowsFrom)}[]${b.toString('utf8', rowsTo, n)}`
  return { kind: 'columns', rest, columns: result.columns.finish(), rowErrors: result.rowErrors }
}

/** Scratch space of one row's pass-through members (fast path). */
const extraKeys: string[] = []
const extraValues: unknown[] = []

/** Reads the array at `p` (a '['). undefined: leave the body to JSON.parse. */
function * readRows (b: Buffer, p: number, validate: RowValidator): Steps<{ columns: EntityRowColumns, rowErrors: RowSchemaError[], end: number } | undefined> {
  // ~60 bytes a row is the usual size: start near the final capacity
  const columns = new EntityRowColumns(Math.min(1 << 20, Math.ceil(b.length / 64)))
  const rowErrors: RowSchemaError[] = []
  p = ws(b, p + 1)
  if (b[p] === RBRACKET) return { columns, rowErrors, end: p + 1 }
  for (let row = 0; ; row++) {
    const fast = b[p] === LBRACE ? fastRow(b, p, columns) : -1
    if (fast >= 0) p = fast
    else {
      const end = valueEnd(b, p)
      if (end < 0) throw new NotJson(p)
      const text = b.toString('utf8', p, end)
      // the ordinary parser refuses prototype keys; let it see them
      if (text.includes('__proto__') || text.includes('constructor')) return undefined
      let value: unknown
      try {
        value = JSON.parse(text)
      } catch {
        throw new NotJson(p)
      }
      const errors = validate(value)
      if (errors) {
        for (const e of errors) rowErrors.push({ ...e, instancePath: `/entity_rows/${row}${e.instancePath}` })
        columns.addParsed('', 0, undefined) // keeps row numbers aligned; the request fails anyway
      } else {
        addRowObject(columns, value as Record<string, unknown>)
      }
      p = end
    }
    p = ws(b, p)
    if (b[p] === COMMA) {
      p = ws(b, p + 1)
      if ((row + 1) % STEP_ROWS === 0) yield
      continue
    }
    if (b[p] === RBRACKET) return { columns, rowErrors, end: p + 1 }
    throw new NotJson(p)
  }
}

/**
 * One row of the usual shape, read from the bytes into `columns`: the index after its '}', or
 * -1 (nothing added) when it is not of that shape.
 */
function fastRow (b: Buffer, p: number, columns: EntityRowColumns): number {
  const plain = plainRow(b, p, columns)
  return plain >= 0 ? plain : shapedRow(b, p, columns)
}

/**
 * The commonest row, `{"entity_id":"<id>","event_time":"<RFC 3339 timestamp>"}` in that order,
 * whitespace allowed between tokens, read with fixed comparisons: the index after its '}', or
 * -1 (nothing added) for anything else, which shapedRow reads. ~3x faster than shapedRow.
 */
function plainRow (b: Buffer, p: number, columns: EntityRowColumns): number {
  p = ws(b, p + 1)
  // "entity_id"
  if (b[p] !== QUOTE || b[p + 1] !== 0x65 || b[p + 2] !== 0x6e || b[p + 3] !== 0x74 || b[p + 4] !== 0x69 || b[p + 5] !== 0x74 ||
    b[p + 6] !== 0x79 || b[p + 7] !== 0x5f || b[p + 8] !== 0x69 || b[p + 9] !== 0x64 || b[p + 10] !== QUOTE) return -1
  p = ws(b, p + 11)
  if (b[p] !== COLON) return -1
  p = ws(b, p + 1)
  if (b[p] !== QUOTE) return -1
  const idFrom = p + 1
  const idTo = plainStringEnd(b, idFrom)
  if (idTo < 0 || idTo === idFrom || idTo - idFrom > 256) return -1
  p = ws(b, idTo + 1)
  if (b[p] !== COMMA) return -1
  p = ws(b, p + 1)
  // "event_time"
  if (b[p] !== QUOTE || b[p + 1] !== 0x65 || b[p + 2] !== 0x76 || b[p + 3] !== 0x65 || b[p + 4] !== 0x6e || b[p + 5] !== 0x74 ||
    b[p + 6] !== 0x5f || b[p + 7] !== 0x74 || b[p + 8] !== 0x69 || b[p + 9] !== 0x6d || b[p + 10] !== 0x65 || b[p + 11] !== QUOTE) return -1
  p = ws(b, p + 12)
  if (b[p] !== COLON) return -1
  p = ws(b, p + 1)
  if (b[p] !== QUOTE) return -1
  const timeFrom = p + 1
  // toISOString's 24 characters, or 20, else wherever the string ends (the parse below checks
  // every byte up to timeTo, none of them a quote: a string that ended sooner fails it)
  const timeTo = b[timeFrom + 24] === QUOTE && b[timeFrom + 20] !== QUOTE ? timeFrom + 24 : b[timeFrom + 20] === QUOTE ? timeFrom + 20 : plainStringEnd(b, timeFrom)
  if (timeTo < 0) return -1
  p = ws(b, timeTo + 1)
  if (b[p] !== RBRACE) return -1
  const ms = parseTimestampBytes(b, timeFrom, timeTo)
  if (ms !== ms) return -1
  columns.addParsed(internId(b, idFrom, idTo), ms, undefined)
  return p + 1
}

/** One row of the usual shape in general (any member order, pass-through members): see fastRow. */
function shapedRow (b: Buffer, p: number, columns: EntityRowColumns): number {
  let idFrom = -1
  let idTo = -1
  let timeFrom = -1
  let timeTo = -1
  let timeIsString = false
  let extras = 0
  p = ws(b, p + 1)
  if (b[p] === RBRACE) return -1
  for (;;) {
    if (b[p] !== QUOTE) return -1
    const keyFrom = p + 1
    const keyTo = plainStringEnd(b, keyFrom)
    if (keyTo < 0) return -1
    p = ws(b, keyTo + 1)
    if (b[p] !== COLON) return -1
    p = ws(b, p + 1)
    const c = b[p]
    const keyLength = keyTo - keyFrom
    if (keyLength === 9 && sameBytes(b, keyFrom, ENTITY_ID)) {
      if (idFrom >= 0 || c !== QUOTE) return -1
      idFrom = p + 1
      idTo = plainStringEnd(b, idFrom)
      if (idTo < 0 || idTo === idFrom || idTo - idFrom > 256) return -1
      p = idTo + 1
    } else if (keyLength === 10 && sameBytes(b, keyFrom, EVENT_TIME)) {
      if (timeFrom >= 0) return -1
      if (c === QUOTE) {
        timeFrom = p + 1
        timeTo = plainStringEnd(b, timeFrom)
        if (timeTo < 0) return -1
        timeIsString = true
        p = timeTo + 1
      } else if (c === MINUS || (c >= 0x30 && c <= 0x39)) {
        timeFrom = p
        timeTo = numberEnd(b, p)
        if (timeTo < 0) return -1
        timeIsString = false
        p = timeTo
      } else return -1
    } else {
      // an integer-like key would change JavaScript's member order: leave such rows to JSON.parse
      if (keyLength === 0 || (b[keyFrom] >= 0x30 && b[keyFrom] <= 0x39)) return -1
      const key = b.toString('latin1', keyFrom, keyTo)
      if (key === '__proto__' || key === 'constructor') return -1
      for (let k = 0; k < extras; k++) if (extraKeys[k] === key) return -1
      let value: unknown
      if (c === QUOTE) {
        const to = plainStringEnd(b, p + 1)
        if (to < 0) return -1
        value = b.toString('latin1', p + 1, to)
        p = to + 1
      } else if (c === MINUS || (c >= 0x30 && c <= 0x39)) {
        const to = numberEnd(b, p)
        if (to < 0) return -1
        value = Number(b.toString('latin1', p, to))
        p = to
      } else if (c === 0x74 && b[p + 1] === 0x72 && b[p + 2] === 0x75 && b[p + 3] === 0x65) { value = true; p += 4 } else if (c === 0x66 && b[p + 1] === 0x61 && b[p + 2] === 0x6c && b[p + 3] === 0x73 && b[p + 4] === 0x65) { value = false; p += 5 } else if (c === 0x6e && b[p + 1] === 0x75 && b[p + 2] === 0x6c && b[p + 3] === 0x6c) { value = null; p += 4 } else return -1
      extraKeys[extras] = key
      extraValues[extras] = value
      extras++
    }
    p = ws(b, p)
    if (b[p] === COMMA) { p = ws(b, p + 1); continue }
    if (b[p] === RBRACE) { p++; break }
    return -1
  }
  if (idFrom < 0 || timeFrom < 0) return -1
  const id = internId(b, idFrom, idTo)
  let row: number
  if (timeIsString) {
    const ms = parseTimestampBytes(b, timeFrom, timeTo)
    row = ms === ms ? columns.addParsed(id, ms, undefined) : columns.add(id, b.toString('latin1', timeFrom, timeTo))
  } else {
    // the request schema makes a number given for event_time the string of that number
    row = columns.add(id, String(Number(b.toString('latin1', timeFrom, timeTo))))
  }
  for (let k = 0; k < extras; k++) {
    columns.setExtra(row, extraKeys[k], extraValues[k])
    extraValues[k] = undefined
  }
  return p
}

function sameBytes (b: Buffer, at: number, word: Uint8Array): boolean {
  for (let i = 0; i < word.length; i++) if (b[at + i] !== word[i]) return false
  return true
}

/**
 * The entity id in bytes [from, to) (printable ASCII) as a string, the same string object for
 * the same bytes: a small table by hash, checked byte for byte, saves making a string a row.
 */
const ID_SLOTS = 4096
const idBySlot: Array<string | undefined> = new Array<string | undefined>(ID_SLOTS).fill(undefined)

function internId (b: Buffer, from: number, to: number): string {
  let h = 0x811c9dc5
  for (let i = from; i < to; i++) h = Math.imul(h ^ b[i], 0x01000193)
  const slot = (h >>> 0) & (ID_SLOTS - 1)
  const known = idBySlot[slot]
  if (known !== undefined && known.length === to - from) {
    let same = true
    for (let i = 0; i < known.length; i++) if (known.charCodeAt(i) !== b[from + i]) { same = false; break }
    if (same) return known
  }
  const id = b.toString('latin1', from, to)
  idBySlot[slot] = id
  return id
}

function ws (b: Buffer, p: number): number {
  for (;;) {
    const c = b[p]
    // every token starts above 0x20: one comparison when there is no whitespace
    if (c <= 0x20 && (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) p++
    else return p
  }
}

/** Index of the closing quote of a string of printable ASCII without escapes from `p`, else -1. */
function plainStringEnd (b: Buffer, p: number): number {
  const n = b.length
  for (; p < n; p++) {
    const c = b[p]
    if (c === QUOTE) return p
    if (c < 0x20 || c > 0x7e || c === BACKSLASH) return -1
  }
  return -1
}

/** Index after the string starting at the quote `p` (any JSON string), else -1. */
function stringEnd (b: Buffer, p: number): number {
  const n = b.length
  for (p++; p < n; p++) {
    const c = b[p]
    if (c === QUOTE) return p + 1
    if (c === BACKSLASH) p++
  }
  return -1
}

/** Index after a JSON number at `p`, else -1 (strict grammar). */
function numberEnd (b: Buffer, p: number): number {
  if (b[p] === MINUS) p++
  if (b[p] === 0x30) p++
  else if (b[p] >= 0x31 && b[p] <= 0x39) { do p++; while (b[p] >= 0x30 && b[p] <= 0x39) } else return -1
  if (b[p] === 0x2e) {
    p++
    if (!(b[p] >= 0x30 && b[p] <= 0x39)) return -1
    do p++; while (b[p] >= 0x30 && b[p] <= 0x39)
  }
  if (b[p] === 0x65 || b[p] === 0x45) {
    p++
    if (b[p] === 0x2b || b[p] === MINUS) p++
    if (!(b[p] >= 0x30 && b[p] <= 0x39)) return -1
    do p++; while (b[p] >= 0x30 && b[p] <= 0x39)
  }
  return p
}

/**
 * Index after the JSON value starting at `p`: strings and nesting are followed, nothing else
 * is checked (the value is parsed afterwards). -1 when it does not end.
 */
function valueEnd (b: Buffer, p: number): number {
  const n = b.length
  const c = b[p]
  if (c === QUOTE) return stringEnd(b, p)
  if (c === LBRACE || c === LBRACKET) {
    let depth = 0
    for (; p < n; p++) {
      const d = b[p]
      if (d === QUOTE) {
        p = stringEnd(b, p) - 1
        if (p < 0) return -1
      } else if (d === LBRACE || d === LBRACKET) depth++
      else if (d === RBRACE || d === RBRACKET) {
        if (--depth === 0) return p + 1
      }
    }
    return -1
  }
  // a scalar: up to the next delimiter
  const from = p
  while (p < n) {
    const d = b[p]
    if (d === COMMA || d === RBRACE || d === RBRACKET || d === 0x20 || d === 0x0a || d === 0x0d || d === 0x09) break
    p++
  }
  return p > from ? p : -1
}

/**
 * The epoch ms of the RFC 3339 timestamp in bytes [from, to) of a buffer, exactly as
 * parseTimestamp (src/domain/time.ts) reads it; NaN where parseTimestamp would refuse it or
 * might read it otherwise (the caller then asks parseTimestamp). toISOString's form,
 * `YYYY-MM-DDTHH:MM:SS[.sss]Z`, is read here from the bytes; the other forms clients send
 * (offsets, other fractions, `t` or a space) by commonTimestampMs, from their text.
 */
export function parseTimestampBytes (b: Buffer, from: number, to: number): number {
  const n = to - from
  if (!((n === 20 || (n === 24 && b[from + 19] === 46)) && b[to - 1] === 0x5a && b[from + 10] === 84)) {
    return n >= 20 && n <= 35 ? commonTimestampMs(b.toString('latin1', from, to)) : Number.NaN
  }
  if (b[from + 4] !== 45 || b[from + 7] !== 45 || b[from + 13] !== 58 || b[from + 16] !== 58) return Number.NaN
  // a pair that is not two digits is NaN, and so is every comparison with it
  const y = bytePair(b, from) * 100 + bytePair(b, from + 2)
  const mo = bytePair(b, from + 5)
  const d = bytePair(b, from + 8)
  const h = bytePair(b, from + 11)
  const mi = bytePair(b, from + 14)
  const sec = bytePair(b, from + 17)
  const ms = n === 24 ? bytePair(b, from + 20) * 10 + byteDigit(b, from + 22) : 0
  if (!(y >= 1900 && mo >= 1 && mo <= 12 && d >= 1 && h <= 23 && mi <= 59 && sec <= 59 && ms >= 0)) return Number.NaN
  if (!dayInMonth(y, mo, d)) return Number.NaN
  const v = daysFromCivilAfter1900(y, mo, d) * 86_400_000 + h * 3_600_000 + mi * 60_000 + sec * 1000 + ms
  return v >= MIN_TIMESTAMP_MS && v <= MAX_TIMESTAMP_MS ? v : Number.NaN
}

/** The two ASCII digits at b[at], b[at + 1] as a number; NaN when either is not a digit. */
function bytePair (b: Buffer, at: number): number {
  return byteDigit(b, at) * 10 + byteDigit(b, at + 1)
}

/** The ASCII digit at b[at]; NaN when it is not one. */
function byteDigit (b: Buffer, at: number): number {
  const x = (b[at] - 48) >>> 0
  return x <= 9 ? x : Number.NaN
}

/**
 * Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), as Date.UTC
 * counts them, for years 1900-9999: in integer arithmetic (every quotient is of non-negative
 * numbers).
 */
function daysFromCivilAfter1900 (y: number, m: number, d: number): number {
  if (m <= 2) y -= 1
  const era = (y / 400) | 0
  const yoe = y - era * 400
  const doy = (((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) | 0) + d - 1
  const doe = yoe * 365 + ((yoe / 4) | 0) - ((yoe / 100) | 0) + doy
  return era * 146_097 + doe - 719_468
}
