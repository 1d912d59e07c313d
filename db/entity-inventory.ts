import type { Sql } from './connection.js'

export interface InventoryRow {
  entity_id: string
  /** epoch ms */
  first_event_ms: number | null
  latest_event_ms: number
  /** epoch µs */
  latest_ingested_us: number
  value_num: number | null
  value_text: string | null
}

/**
 * The entities a feature version has values for, in entity order after `afterEntity`: the latest
 * row of each from the online table and its earliest event time from feature_first_events, both
 * kept by the ingest path in the values' transaction (one ordered range of each primary key).
 */
export async function readEntityInventory (sql: Sql, s: { featureId: number, afterEntity?: string, prefix?: string, limit: number }): Promise<InventoryRow[]> {
  const after = s.afterEntity === undefined ? sql`` : sql`AND o.entity_id > ${s.afterEntity}`
  // a filter, not a key range: a range's upper bound would depend on the column's collation
  const prefix = s.prefix === undefined ? sql`` : sql`AND starts_with(o.entity_id, ${s.prefix})`
  return sql<InventoryRow[]>`
    SELECT o.entity_id,
           (extract(epoch FROM f.first_event) * 1000)::int8 AS first_event_ms,
           (extract(epoch FROM o.event_time) * 1000)::int8 AS latest_event_ms,
           (extract(epoch FROM o.ingested_at) * 1000000)::int8 AS latest_ingested_us,
           o.value_num, o.value_text
    FROM feature_online o
    LEFT JOIN feature_first_events f ON f.feature_id = o.feature_id AND f.entity_id = o.entity_id
    WHERE o.feature_id = ${s.featureId} ${after} ${prefix}
    ORDER BY o.entity_id
    LIMIT ${s.limit}`
}

/** Per active feature version: how many entities have values, and the newest and oldest of their latest event times. */
export interface FreshnessRow {
  name: string
  version: number
  entities: number
  /** epoch ms; null without entities */
  newest_ms: number | null
  oldest_latest_ms: number | null
  /** entities whose latest value is older than the ttl at the database's now(); null without a ttl */
  stale: number | null
}

/** One pass over the online table (one row per feature version and entity), grouped by feature. */
export async function readFreshness (sql: Sql): Promise<FreshnessRow[]> {
  return sql<FreshnessRow[]>`
    SELECT d.name, d.version, count(o.entity_id)::int8 AS entities,
           (extract(epoch FROM max(o.event_time)) * 1000)::int8 AS newest_ms,
           (extract(epoch FROM min(o.event_time)) * 1000)::int8 AS oldest_latest_ms,
           CASE WHEN d.ttl_ms IS NULL THEN NULL
                ELSE count(*) FILTER (WHERE o.event_time < now() - d.ttl_ms * interval '1 millisecond') END::int8 AS stale
    FROM feature_definitions d
    LEFT JOIN feature_online o ON o.feature_id = d.id
    WHERE d.status = 'active'
    GROUP BY d.id, d.name, d.version, d.ttl_ms
    ORDER BY d.name, d.version`
}
