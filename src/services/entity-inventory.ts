import type { Sql } from '../../db/connection.js'
import { readEntityInventory } from '../../db/entity-inventory.js'
import type { EntityInventory, EntityInventoryQuery } from '../../routes/schemas/entity-inventory.js'
import { BadRequestError } from '../domain/errors.js'
import { assertName } from '../domain/names.js'
import { formatDuration, formatTimestamp, parseDuration } from '../domain/time.js'
import { decodeValue } from '../domain/value-validation.js'
import { decodeCursor, encodeCursor, featureVersionOrNotFound } from './registry.js'

export const DEFAULT_INVENTORY_LIMIT = 1000

/**
 * Which entities a feature version has values for, since when and up to when, and whether each
 * is stale: its latest value older than `stale_after` (default: the feature's ttl, past which
 * online reads answer OUTSIDE_TTL). What an operator checks before a training run, or alerts on.
 */
export class EntityInventoryService {
  constructor (private readonly sql: Sql) {}

  async inventory (name: string, q: EntityInventoryQuery): Promise<EntityInventory> {
    assertName(name, 'name')
    let staleAfterMs: number | null = null
    if (q.stale_after !== undefined) {
      const d = parseDuration(q.stale_after)
      if (!d.ok) throw new BadRequestError(`stale_after: ${d.message}`, [{ path: '/querystring/stale_after', field: 'stale_after', rule: 'duration', message: d.message }])
      staleAfterMs = d.ms
    }
    const after = decodeCursor(q.cursor, 'string')
    const def = await featureVersionOrNotFound(this.sql, name, q.version)
    staleAfterMs ??= def.ttl_ms

    const limit = q.limit ?? DEFAULT_INVENTORY_LIMIT
    const nowMs = Date.now()
    const rows = await readEntityInventory(this.sql, {
      featureId: def.id,
      ...(after === undefined ? {} : { afterEntity: after }),
      ...(q.prefix === undefined ? {} : { prefix: q.prefix }),
      limit: limit + 1,
    })
    const more = rows.length > limit
    const page = more ? rows.slice(0, limit) : rows
    return {
      feature: { name: def.name, version: def.version, dtype: def.dtype, ttl: def.ttl_ms === null ? null : formatDuration(def.ttl_ms) },
      as_of: formatTimestamp(nowMs),
      stale_after: staleAfterMs === null ? null : formatDuration(staleAfterMs),
      items: page.map((r) => {
        const value = decodeValue(def.dtype, r.value_num, r.value_text)
        const ageMs = nowMs - r.latest_event_ms
        return {
          entity_id: r.entity_id,
          first_event_time: r.first_event_ms === null ? null : formatTimestamp(r.first_event_ms),
          latest_event_time: formatTimestamp(r.latest_event_ms),
          latest_ingested_at: formatTimestamp(Math.ceil(r.latest_ingested_us / 1000)),
          latest_value: value,
          age_ms: ageMs,
          stale: staleAfterMs === null ? null : ageMs > staleAfterMs,
        }
      }),
      next_cursor: more ? encodeCursor(page[page.length - 1].entity_id) : null,
    }
  }
}
