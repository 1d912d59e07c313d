import type { Sql } from './connection.js'
import { iso } from './params.js'

/** Where a page of a value history starts: just after this stored row (its primary key). */
export interface HistoryKey {
  entityId: string
  /** event_time, epoch ms */
  eventMs: number
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
  /** Only rows ingested at or before this moment (epoch ms); none: every committed row. */
  cutoffMs?: number
  /** Leave out rows that a later correction of the same (entity, event_time), known at the cutoff, replaces. */
  latestOnly: boolean
  after?: HistoryKey
  limit: number
}

export interface HistoryRow {
  entity_id: string
  event_ms: number
  ingested_us: number
  value_num: number | null
  value_text: string | null
  /** A later correction of the same (entity, event_time) is known at the cutoff. */
  superseded: boolean
}

/**
 * The stored rows of one feature version, corrections included, in primary key order (entity,
 * event_time, ingested_at): one range of the primary key index, continued after `after` (keyset
 * pagination). `superseded` (and `latestOnly`) look for a later row of the same key within the
 * cutoff: one index probe per row.
 */
export async function readValueHistory (sql: Sql, s: HistorySpec): Promise<HistoryRow[]> {
  const cutoff = s.cutoffMs === undefined ? sql`` : sql`AND s.ingested_at <= ${iso(s.cutoffMs)}::timestamptz`
  const laterCutoff = s.cutoffMs === undefined ? sql`` : sql`AND n.ingested_at <= ${iso(s.cutoffMs)}::timestamptz`
  const entity = s.entityId === undefined ? sql`` : sql`AND s.entity_id = ${s.entityId}`
  const from = s.fromMs === undefined ? sql`` : sql`AND s.event_time >= ${iso(s.fromMs)}::timestamptz`
  const to = s.toMs === undefined ? sql`` : sql`AND s.event_time < ${iso(s.toMs)}::timestamptz`
  const after = s.after === undefined
    ? sql``
    : sql`AND (s.entity_id, s.event_time, s.ingested_at) > (${s.after.entityId}::text,
          timestamptz 'epoch' + ${s.after.eventMs}::int8 * interval '1 millisecond',
          timestamptz 'epoch' + ${s.after.ingestedUs}::int8 * interval '1 microsecond')`
  const later = sql`EXISTS (
    SELECT 1 FROM feature_snapshots n
    WHERE n.feature_id = s.feature_id AND n.entity_id = s.entity_id AND n.event_time = s.event_time
      AND n.ingested_at > s.ingested_at ${laterCutoff})`
  const latest = s.latestOnly ? sql`AND NOT ${later}` : sql``
  return sql<HistoryRow[]>`
    SELECT s.entity_id, (extract(epoch FROM s.event_time) * 1000)::int8 AS event_ms,
           (extract(epoch FROM s.ingested_at) * 1000000)::int8 AS ingested_us,
           s.value_num, s.value_text, ${s.latestOnly ? sql`false` : later} AS superseded
    FROM feature_snapshots s
    WHERE s.feature_id = ${s.featureId} ${entity} ${from} ${to} ${cutoff} ${after} ${latest}
    ORDER BY s.entity_id, s.event_time, s.ingested_at
    LIMIT ${s.limit}`
}
