import type postgres from 'postgres'
import type { Sql } from './connection.js'
import { iso } from './params.js'

/** Where a page of a value history starts: just after this stored row (its primary key). */
export interface HistoryKey {
  entityId: string
  /** event_time, epoch ms (rounded down) */
  eventMs: number
  /** event_time's microseconds past eventMs (0-999): rows written by hand may have them */
  eventSubUs: number
  /** ingested_at, epoch µs (exact: the store keeps microseconds) */
  ingestedUs: number
}

export interface HistorySpec {
  featureId: number
  /** Only this entity's rows (the stored entity id). */
  entityId?: string
  /** event_time >= fromMs */
  fromMs?: number
  /** event_time < toMs */
  toMs?: number
  /** Only rows ingested at or before this moment (epoch ms). */
  cutoffMs: number
  /** Leave out rows that a later correction of the same (entity, event_time), known at the cutoff, replaces. */
  latestOnly: boolean
  after?: HistoryKey
  /** Rows at most; none: every row (historyBatches) */
  limit?: number
}

export interface HistoryRow {
  entity_id: string
  /** event_time, epoch ms (rounded down) */
  event_ms: number
  /** event_time's microseconds past event_ms (0-999) */
  event_sub_us: number
  ingested_us: number
  value_num: number | null
  value_text: string | null
  /** A later correction of the same (entity, event_time) is known at the cutoff. */
  superseded: boolean
}

/**
 * The stored rows of one feature version, corrections included, in primary key order (entity,
 * event_time, ingested_at): one ordered range of the primary key index (on a hypertable, the
 * chunks' ranges merged in order), continued after `after` (keyset pagination). In that order
 * a row is superseded exactly when the next row within the cutoff has the same entity and
 * event_time, so `superseded` (and `latestOnly`) look one row ahead as the rows stream by: no
 * lookup per row, and no anti-join that would read the whole feature before the first row.
 */
export async function readValueHistory (sql: Sql, s: HistorySpec): Promise<HistoryRow[]> {
  return historyQuery(sql, s)
}

/**
 * The same rows in batches of `batchRows` from one statement (a portal read batch by batch):
 * planned once and read on one snapshot however long the listing, where pages would plan the
 * statement again for each (on a hypertable, over every chunk the range touches).
 */
export function historyBatches (sql: Sql, s: Omit<HistorySpec, 'limit'>, batchRows: number): AsyncIterable<HistoryRow[]> {
  return historyQuery(sql, s).cursor(batchRows)
}

function historyQuery (sql: Sql, s: HistorySpec): postgres.PendingQuery<HistoryRow[]> {
  const entity = s.entityId === undefined ? sql`` : sql`AND s.entity_id = ${s.entityId}`
  const from = s.fromMs === undefined ? sql`` : sql`AND s.event_time >= ${iso(s.fromMs)}::timestamptz`
  const to = s.toMs === undefined ? sql`` : sql`AND s.event_time < ${iso(s.toMs)}::timestamptz`
  const after = s.after === undefined
    ? sql``
    : sql`AND (s.entity_id, s.event_time, s.ingested_at) > (${s.after.entityId}::text,
          timestamptz 'epoch' + ${s.after.eventMs}::int8 * interval '1 millisecond' + ${s.after.eventSubUs}::int4 * interval '1 microsecond',
          timestamptz 'epoch' + ${s.after.ingestedUs}::int8 * interval '1 microsecond')`
  // event_time in whole ms and the µs past them: exact in a JavaScript number up to year 9999
  // (its µs since 1970 are not past 2255)
  return sql<HistoryRow[]>`
    SELECT h.entity_id, floor(extract(epoch FROM h.event_time) * 1000)::int8 AS event_ms,
           (extract(epoch FROM h.event_time) * 1000000 - floor(extract(epoch FROM h.event_time) * 1000) * 1000)::int4 AS event_sub_us,
           (extract(epoch FROM h.ingested_at) * 1000000)::int8 AS ingested_us,
           h.value_num, h.value_text, h.superseded
    FROM (
      SELECT s.entity_id, s.event_time, s.ingested_at, s.value_num, s.value_text,
             coalesce(lead(s.entity_id) OVER w = s.entity_id AND lead(s.event_time) OVER w = s.event_time, false) AS superseded
      FROM feature_snapshots s
      WHERE s.feature_id = ${s.featureId} AND s.ingested_at <= ${iso(s.cutoffMs)}::timestamptz ${entity} ${from} ${to} ${after}
      WINDOW w AS (ORDER BY s.entity_id, s.event_time, s.ingested_at)
    ) h
    ${s.latestOnly ? sql`WHERE NOT h.superseded` : sql``}
    ORDER BY h.entity_id, h.event_time, h.ingested_at
    ${s.limit === undefined ? sql`` : sql`LIMIT ${s.limit}`}`
}
