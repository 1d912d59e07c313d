import { BadRequestError, pointerSegment, type FieldError } from './errors.js'
import type { FeatureDefinition } from './feature.js'
import { refProblem } from './feature-ref.js'
import { entityIdProblem } from './names.js'
import { parseTimestamp } from './time.js'
import { checkValue } from './value-validation.js'

/**
 * Checking ingested rows: every field of a long row `{feature, entity_id, event_time, value}`
 * (or every cell of a wide CSV row) against the definitions, turned into values ready to
 * store or into row errors. Pure: the caller feeds rows and decides what to do with errors.
 */

export type OnInvalid = 'reject' | 'skip'

/** One validated value on its way into feature_snapshots. */
export interface ValueRow {
  featureId: number
  entityId: string
  eventTimeMs: number
  num: number | null
  text: string | null
}

/** How many row errors an answer lists; the total is always counted. */
export const MAX_LISTED_ERRORS = 100

/** Resolves references against a set of definitions: `name@v` exactly, `name` = latest active version. */
export class DefinitionCatalog {
  private readonly byRef = new Map<string, FeatureDefinition>()

  constructor (defs: Iterable<FeatureDefinition>) {
    for (const d of defs) {
      this.byRef.set(`${d.name}@${d.version}`, d)
      if (d.status !== 'active') continue
      const latest = this.byRef.get(d.name)
      if (latest === undefined || latest.version < d.version) this.byRef.set(d.name, d)
    }
  }

  /** The definition a syntactically valid reference points to, or undefined. */
  resolve (ref: string): FeatureDefinition | undefined {
    return this.byRef.get(ref)
  }
}

/** The row errors of one request: all counted, the first MAX_LISTED_ERRORS listed. */
export class RowErrors {
  readonly listed: FieldError[] = []
  count = 0
  /** Rows (values) not written because of an error. */
  rowsWithErrors = 0
  readonly unknownFeatures = new Set<string>()

  add (e: FieldError): void {
    this.count++
    if (this.listed.length < MAX_LISTED_ERRORS) this.listed.push(e)
  }

  get full (): boolean { return this.listed.length >= MAX_LISTED_ERRORS }

  /** A one-line summary for the problem detail. */
  summary (): string {
    const unknown = [...this.unknownFeatures]
    const names = unknown.length > 0 ? ` Unknown feature${unknown.length > 1 ? 's' : ''}: ${unknown.slice(0, 10).join(', ')}${unknown.length > 10 ? ', ...' : ''}.` : ''
    const listed = this.count > this.listed.length ? ` (the first ${this.listed.length} are listed)` : ''
    // an error is a bad field, or a whole row (a line that is not JSON, a CSV record of the wrong width)
    return `${this.count} error${this.count === 1 ? '' : 's'} in ${this.rowsWithErrors} row${this.rowsWithErrors === 1 ? '' : 's'}${listed}.${names}`
  }
}

/**
 * Where a row came from, for error reports: its number and where rows of its kind are (e.g.
 * `/body/rows`, `/lines`, `/records`). The row's path (`/lines/4`) is made only when an error
 * names it, not for every row read.
 */
export interface RowPosition {
  row: number
  base: string
}

/** The JSON pointer of a row, e.g. `/lines/4`. */
export function rowPath (at: RowPosition): string {
  return `${at.base}/${at.row}`
}

/** A resolved feature, or the reason it cannot be used (reported as a field error). */
export function resolveFeature (catalog: DefinitionCatalog, ref: unknown): { ok: true, def: FeatureDefinition } | { ok: false, rule: string, message: string, unknown?: string } {
  if (ref === undefined || ref === null || ref === '') return { ok: false, rule: 'required', message: 'feature is missing' }
  // a reference the catalog holds is well formed (its keys are): the syntax check is for the rest
  if (typeof ref === 'string') {
    const def = catalog.resolve(ref)
    if (def !== undefined) return { ok: true, def }
  }
  const problem = refProblem(ref)
  if (problem !== undefined) return { ok: false, rule: 'ref', message: `feature ${problem}` }
  // well formed (so a string) and not in the catalog
  const name = ref as string
  const versioned = name.includes('@')
  return { ok: false, rule: 'unknown_feature', unknown: name, message: versioned ? `feature '${name}' does not exist` : `feature '${name}' does not exist or has no active version` }
}

// Rows of a request mostly repeat the entity id and event time of the row before: both checks
// are pure, so the last answer is kept (whichever request asked).
let lastTimeInput: unknown
let lastTime: ReturnType<typeof parseTimestamp> = { ok: false, message: '' }
let lastValidEntity: unknown

function parseTime (raw: unknown): ReturnType<typeof parseTimestamp> {
  if (raw !== lastTimeInput) {
    lastTime = parseTimestamp(raw)
    lastTimeInput = raw
  }
  return lastTime
}

function entityProblem (raw: unknown): string | undefined {
  if (raw === lastValidEntity) return undefined
  const problem = entityIdProblem(raw)
  if (problem === undefined) lastValidEntity = raw
  return problem
}

/** Checks the entity id and event time shared by the values of a row; records errors. */
export function checkKey (entityId: unknown, eventTime: unknown, at: RowPosition, errors: RowErrors, names = { entity: 'entity_id', time: 'event_time' }): { entityId: string, eventTimeMs: number } | undefined {
  let ok = true
  const idProblem = entityId === undefined ? 'is missing' : entityProblem(entityId)
  if (idProblem !== undefined) {
    errors.add({ row: at.row, path: `${rowPath(at)}/${names.entity}`, field: names.entity, rule: entityId === undefined ? 'required' : 'entity_id', message: `entity_id ${idProblem}` })
    ok = false
  }
  let eventTimeMs = 0
  if (eventTime === undefined || eventTime === null || eventTime === '') {
    errors.add({ row: at.row, path: `${rowPath(at)}/${names.time}`, field: names.time, rule: 'required', message: 'event_time is missing' })
    ok = false
  } else {
    const ts = parseTime(eventTime)
    if (ts.ok) eventTimeMs = ts.ms
    else {
      errors.add({ row: at.row, path: `${rowPath(at)}/${names.time}`, field: names.time, rule: 'timestamp', message: `event_time ${ts.message}` })
      ok = false
    }
  }
  return ok ? { entityId: entityId as string, eventTimeMs } : undefined
}

/** Checks one value against its definition; records the error under `field`. */
export function checkCell (def: FeatureDefinition, raw: unknown, fromText: boolean, at: RowPosition, field: string, errors: RowErrors): { num: number | null, text: string | null } | undefined {
  const checked = checkValue(def, raw, fromText)
  if (checked.ok) return checked.value
  errors.add({ row: at.row, path: `${rowPath(at)}/${field}`, field, rule: checked.rule, message: checked.message })
  return undefined
}

/**
 * Checks a long row (JSON, NDJSON or long CSV). Returns the value to store, or undefined
 * after recording every problem of the row in `errors`.
 */
export function checkLongRow (catalog: DefinitionCatalog, raw: unknown, fromText: boolean, at: RowPosition, errors: RowErrors): ValueRow | undefined {
  const before = errors.count
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    errors.add({ row: at.row, path: rowPath(at), rule: 'type', message: 'a row must be an object {feature, entity_id, event_time, value}' })
    errors.rowsWithErrors++
    return undefined
  }
  const r = raw as Record<string, unknown>
  // the four fields and nothing else, as a long CSV has exactly those columns (a misspelt
  // field is named, not silently dropped)
  for (const k in r) {
    if (k !== 'feature' && k !== 'entity_id' && k !== 'event_time' && k !== 'value') {
      errors.add({ row: at.row, path: `${rowPath(at)}/${pointerSegment(k)}`, field: k, rule: 'unknown_field', message: `'${k.length > 64 ? `${k.slice(0, 64)}...` : k}' is not a field of a row: a row has feature, entity_id, event_time and value` })
      break
    }
  }
  const feature = resolveFeature(catalog, r.feature)
  if (!feature.ok) {
    errors.add({ row: at.row, path: `${rowPath(at)}/feature`, field: 'feature', rule: feature.rule, message: feature.message })
    if (feature.unknown !== undefined && errors.unknownFeatures.size < 100) errors.unknownFeatures.add(feature.unknown)
  }
  const key = checkKey(r.entity_id, r.event_time, at, errors)
  const value = feature.ok ? checkCell(feature.def, r.value, fromText, at, 'value', errors) : undefined
  if (errors.count > before || !feature.ok || key === undefined || value === undefined) {
    errors.rowsWithErrors++
    return undefined
  }
  return { featureId: feature.def.id, entityId: key.entityId, eventTimeMs: key.eventTimeMs, num: value.num, text: value.text }
}

/** The columns of a CSV body, decided by its header. */
export type CsvLayout =
  | { kind: 'long', feature: number, entity: number, time: number, value: number, width: number }
  | { kind: 'wide', entity: number, time: number, columns: Array<{ index: number, ref: string }>, width: number }

const LONG_COLUMNS = ['feature', 'entity_id', 'event_time', 'value'] as const

/**
 * Long CSV: exactly the columns feature, entity_id, event_time, value (any order). Wide CSV:
 * entity_id, event_time and one column per feature reference. Anything else is a 400.
 */
export function csvLayout (headerCells: string[]): CsvLayout {
  const header = headerCells.map((h) => h.trim())
  const fail = (message: string, column?: number): never => {
    throw new BadRequestError(`The CSV header is invalid: ${message}`, [{ row: 0, path: column === undefined ? '/header' : `/header/${column}`, ...(column === undefined ? {} : { field: header[column] }), rule: 'csv_header', message }])
  }
  const seen = new Map<string, number>()
  header.forEach((h, i) => {
    if (h === '') fail(`column ${i + 1} has no name`, i)
    if (seen.has(h)) fail(`column '${h}' appears twice`, i)
    seen.set(h, i)
  })
  const entity = seen.get('entity_id')
  const time = seen.get('event_time')
  if (entity === undefined || time === undefined) fail('it must name the columns entity_id and event_time (long: feature,entity_id,event_time,value; wide: entity_id,event_time,<feature>...)')
  if (seen.has('feature') || seen.has('value')) {
    for (const c of LONG_COLUMNS) if (!seen.has(c)) fail(`a long CSV needs the columns ${LONG_COLUMNS.join(',')}; '${c}' is missing`)
    header.forEach((h, i) => { if (!(LONG_COLUMNS as readonly string[]).includes(h)) fail(`a long CSV has only the columns ${LONG_COLUMNS.join(',')}; '${h}' is not one of them`, i) })
    return { kind: 'long', feature: seen.get('feature')!, entity: entity!, time: time!, value: seen.get('value')!, width: header.length }
  }
  const columns: Array<{ index: number, ref: string }> = []
  header.forEach((h, i) => {
    if (i === entity || i === time) return
    const problem = refProblem(h)
    if (problem !== undefined) fail(`column '${h}' is not a feature reference: ${problem}`, i)
    columns.push({ index: i, ref: h })
  })
  if (columns.length === 0) fail('a wide CSV needs at least one feature column after entity_id and event_time')
  return { kind: 'wide', entity: entity!, time: time!, columns, width: header.length }
}
