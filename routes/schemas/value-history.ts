import { Type, type Static } from 'typebox'
import { Cursor, EntityId, FeatureValue, FeatureVersionFilter, Nullable, RangeFrom, RangeTo } from './common.js'

export const ValueHistoryQuery = Type.Object({
  entity_id: Type.Optional(EntityId),
  from: Type.Optional(RangeFrom),
  to: Type.Optional(RangeTo),
  as_of_system_time: Type.Optional(Type.Union([Type.String(), Type.Integer()], { description: 'knowledge cutoff K: the history as the store knew it then (rows ingested at or before K; RFC 3339 with a zone, or epoch ms). Default: now. Ignored with a cursor, which keeps the first page\'s K' })),
  corrections: Type.Optional(Type.Union([Type.Literal('all'), Type.Literal('latest')], {
    default: 'all',
    description: 'all (default): every stored row, corrections included; latest: per (entity, event_time) only the latest row known at as_of_system_time (what a point-in-time read chooses from)',
  })),
  version: FeatureVersionFilter,
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, default: 1000, description: 'page size' })),
  cursor: Cursor,
}, { additionalProperties: false })
export type ValueHistoryQuery = Static<typeof ValueHistoryQuery>

export const ValueHistoryItem = Type.Object({
  entity_id: Type.String({ description: 'the entity id the row is stored under' }),
  event_time: Type.String({ description: 'when the value became true in the world' }),
  ingested_at: Type.String({ description: 'when the store learned it, rounded up to the millisecond (as_of_system_time = ingested_at sees the row)' }),
  ingested_at_us: Type.Integer({ description: 'ingested_at exactly: epoch microseconds' }),
  value: FeatureValue('the stored value (non-finite floats as "NaN", "Infinity", "-Infinity"); null for a stored null'),
  status: Type.Unsafe<'PRESENT' | 'NULL_VALUE'>({ type: 'string', enum: ['PRESENT', 'NULL_VALUE'] }),
  superseded: Type.Boolean({ description: 'a later correction of the same entity and event_time is known at as_of_system_time' }),
})
export type ValueHistoryItem = Static<typeof ValueHistoryItem>

export const ValueHistory = Type.Object({
  feature: Type.Object({ name: Type.String(), version: Type.Integer(), dtype: Type.String() }),
  entity_id: Nullable(Type.String(), 'as asked; null: all entities'),
  stored_under: Nullable(Type.String(), 'the entity id read: entity_id, or the shared entity id of a market-wide feature; null: all entities'),
  from: Nullable(Type.String()),
  to: Nullable(Type.String()),
  as_of_system_time: Type.String({ description: 'the knowledge cutoff of the listing: only rows ingested at or before it. As asked (now when later), else now; a sound cutoff (no write still in progress can be stamped at or before it), kept by next_cursor for every page of the listing' }),
  corrections: Type.Unsafe<'all' | 'latest'>({ type: 'string', enum: ['all', 'latest'] }),
  items: Type.Array(ValueHistoryItem, { description: 'ordered by entity_id, event_time, ingested_at' }),
  next_cursor: Nullable(Type.String(), 'pass as cursor for the next page; null: this was the last'),
})
export type ValueHistory = Static<typeof ValueHistory>
