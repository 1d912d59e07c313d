import type { Sql } from '../../db/connection.js'
import { historyBatches, readValueHistory, type HistoryKey, type HistoryRow, type HistorySpec } from '../../db/value-history.js'
import { soundCutoff } from '../../db/knowledge.js'
import type { ValueHistory, ValueHistoryItem, ValueHistoryQuery } from '../../routes/schemas/value-history.js'
import type { FeatureDefinition } from '../domain/feature.js'
import { BadRequestError, type FieldError } from '../domain/errors.js'
import { assertName } from '../domain/names.js'
import { formatTimestamp, queryTimestamp } from '../domain/time.js'
import { decodeValue } from '../domain/value-validation.js'
import { featureVersionOrNotFound } from './registry.js'

export const DEFAULT_HISTORY_LIMIT = 1000

/**
 * The stored rows of a feature version as they are: every correction with its ingested_at,
 * oldest key first. What a point-in-time answer was chosen from, for people checking one.
 */
export class ValueHistoryService {
  constructor (private readonly sql: Sql) {}

  /** One page of the history (the JSON answer). */
  async history (name: string, q: ValueHistoryQuery): Promise<ValueHistory> {
    const listing = await this.prepare(name, q)
    const limit = q.limit ?? DEFAULT_HISTORY_LIMIT
    const rows = await this.read(listing, listing.after, limit + 1)
    const more = rows.length > limit
    const page = more ? rows.slice(0, limit) : rows
    return {
      feature: { name: listing.def.name, version: listing.def.version, dtype: listing.def.dtype },
      entity_id: q.entity_id ?? null,
      stored_under: listing.storedEntity ?? null,
      from: listing.fromMs === undefined ? null : formatTimestamp(listing.fromMs),
      to: listing.toMs === undefined ? null : formatTimestamp(listing.toMs),
      as_of_system_time: formatTimestamp(listing.cutoffMs),
      corrections: listing.corrections,
      items: page.map((r) => historyItem(listing.def, r)),
      next_cursor: more ? encodeHistoryCursor({ after: keyOf(page[page.length - 1]), cutoffMs: listing.cutoffMs }) : null,
    }
  }

  /**
   * Every row of the listing after the cursor (if any), from one statement read in batches of
   * EXPORT_BATCH_ROWS at the listing's cutoff: what the streamed answers (NDJSON, CSV) are made
   * from, in memory of one batch. Everything is checked before the statement starts.
   */
  async export (name: string, q: ValueHistoryQuery): Promise<{ listing: HistoryListing, pages: AsyncGenerator<ValueHistoryItem[]> }> {
    const listing = await this.prepare(name, q)
    const batches = historyBatches(this.sql, this.spec(listing, listing.after), EXPORT_BATCH_ROWS)
    async function * pages (): AsyncGenerator<ValueHistoryItem[]> {
      for await (const rows of batches) yield rows.map((r) => historyItem(listing.def, r))
    }
    return { listing, pages: pages() }
  }

  /** Checks the request (4xx), finds the feature version and fixes the cutoff of the listing. */
  private async prepare (name: string, q: ValueHistoryQuery): Promise<HistoryListing> {
    assertName(name, 'name')
    const errors: FieldError[] = []
    const fromMs = queryTimestamp(q.from, 'from', errors)
    const toMs = queryTimestamp(q.to, 'to', errors)
    const requestedCutoffMs = queryTimestamp(q.as_of_system_time, 'as_of_system_time', errors)
    if (fromMs !== undefined && toMs !== undefined && fromMs >= toMs) {
      errors.push({ path: '/querystring/to', field: 'to', rule: 'range', message: 'must be later than from' })
    }
    const cursor = q.cursor === undefined ? undefined : decodeHistoryCursor(q.cursor, errors)
    if (errors.length > 0) throw new BadRequestError(errors.map((e) => `${e.field}: ${e.message}`).join('; '), errors)

    const def = await featureVersionOrNotFound(this.sql, name, q.version)
    return {
      def,
      // a market-wide feature keeps every entity's values under its one shared entity id
      storedEntity: q.entity_id === undefined ? undefined : (def.shared_entity_id ?? q.entity_id),
      fromMs,
      toMs,
      // K: a sound cutoff (no later write can be stamped at or before it), as retrievals take
      // it, so that the same K always shows the same rows; the first page's K goes on in the
      // cursor, so that the pages of one listing show one state of the store
      cutoffMs: cursor?.cutoffMs ?? await soundCutoff(this.sql, requestedCutoffMs),
      corrections: q.corrections ?? 'all',
      after: cursor?.after,
    }
  }

  private async read (l: HistoryListing, after: HistoryKey | undefined, limit: number): Promise<HistoryRow[]> {
    return readValueHistory(this.sql, { ...this.spec(l, after), limit })
  }

  private spec (l: HistoryListing, after: HistoryKey | undefined): HistorySpec {
    return {
      featureId: l.def.id,
      ...(l.storedEntity === undefined ? {} : { entityId: l.storedEntity }),
      ...(l.fromMs === undefined ? {} : { fromMs: l.fromMs }),
      ...(l.toMs === undefined ? {} : { toMs: l.toMs }),
      cutoffMs: l.cutoffMs,
      latestOnly: l.corrections === 'latest',
      ...(after === undefined ? {} : { after }),
    }
  }
}

/** A checked history request: the feature version, the filters and the cutoff of the listing. */
export interface HistoryListing {
  def: FeatureDefinition
  storedEntity: string | undefined
  fromMs: number | undefined
  toMs: number | undefined
  cutoffMs: number
  corrections: 'all' | 'latest'
  after: HistoryKey | undefined
}

/** Rows per batch of a streamed history. */
const EXPORT_BATCH_ROWS = 10_000

const keyOf = (r: HistoryRow): HistoryKey => ({ entityId: r.entity_id, eventMs: r.event_ms, eventSubUs: r.event_sub_us, ingestedUs: r.ingested_us })

function historyItem (def: FeatureDefinition, r: HistoryRow): ValueHistoryItem {
  const value = decodeValue(def.dtype, r.value_num, r.value_text)
  return {
    entity_id: r.entity_id,
    event_time: formatTimestamp(r.event_ms),
    // rounded up to the millisecond, as ingest answers it: as_of_system_time = ingested_at sees the row
    ingested_at: formatTimestamp(Math.ceil(r.ingested_us / 1000)),
    ingested_at_us: r.ingested_us,
    value,
    status: value === null ? 'NULL_VALUE' : 'PRESENT',
    superseded: r.superseded,
  }
}

/** The range of timestamps the API takes (years 1900 to 9999), with a day to spare. */
const MIN_CURSOR_MS = Date.UTC(1899, 11, 31)
const MAX_CURSOR_MS = Date.UTC(10000, 0, 2)
const isInRange = (x: unknown, lo: number, hi: number): boolean => Number.isSafeInteger(x) && (x as number) >= lo && (x as number) <= hi
/** An entity id as the store may hold one (PostgreSQL text holds no NUL). */
const isStorableId = (x: unknown): x is string => typeof x === 'string' && x.length <= 256 && !x.includes('\u0000')

/** A page's cursor: the last row it listed, and the cutoff of the listing. */
interface HistoryCursor { after: HistoryKey, cutoffMs: number }

function encodeHistoryCursor (c: HistoryCursor): string {
  const k = c.after
  return Buffer.from(JSON.stringify([k.entityId, k.eventMs, k.eventSubUs, k.ingestedUs, c.cutoffMs])).toString('base64url')
}

function decodeHistoryCursor (cursor: string, errors: FieldError[]): HistoryCursor | undefined {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown
    if (Array.isArray(v) && v.length === 5 && isStorableId(v[0]) && isInRange(v[1], MIN_CURSOR_MS, MAX_CURSOR_MS) && isInRange(v[2], 0, 999) &&
        isInRange(v[3], 0, Number.MAX_SAFE_INTEGER) && isInRange(v[4], MIN_CURSOR_MS, MAX_CURSOR_MS)) {
      return { after: { entityId: v[0], eventMs: v[1] as number, eventSubUs: v[2] as number, ingestedUs: v[3] as number }, cutoffMs: v[4] as number }
    }
  } catch { /* reported below */ }
  errors.push({ path: '/querystring/cursor', field: 'cursor', rule: 'cursor', message: 'is not a cursor of this listing: pass next_cursor of the previous page unchanged' })
  return undefined
}
