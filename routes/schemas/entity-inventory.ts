import { Type, type Static } from 'typebox'
import { Cursor, FeatureValue, FeatureVersionFilter, Nullable } from './common.js'

export const EntityInventoryQuery = Type.Object({
  stale_after: Type.Optional(Type.String({ description: 'an entity is stale when its latest value is older than this (e.g. 2h, 1d); default: the feature\'s ttl (none: stale is null)' })),
  prefix: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'only entity ids that start with this' })),
  version: FeatureVersionFilter,
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, default: 1000, description: 'page size' })),
  cursor: Cursor,
}, { additionalProperties: false })
export type EntityInventoryQuery = Static<typeof EntityInventoryQuery>

export const EntityInventoryItem = Type.Object({
  entity_id: Type.String({ description: 'the entity id the values are stored under' }),
  first_event_time: Nullable(Type.String(), 'the earliest event_time written through the service (values dropped by retention may make it earlier than the oldest kept)'),
  latest_event_time: Type.String({ description: 'the latest event_time stored (may lie in the future)' }),
  latest_ingested_at: Type.String({ description: 'when that value was ingested (rounded up to the millisecond)' }),
  latest_value: FeatureValue('the value at latest_event_time (non-finite floats as "NaN", "Infinity", "-Infinity")'),
  age_ms: Type.Integer({ description: 'as_of minus latest_event_time, in milliseconds (negative for a future-dated value)' }),
  stale: Nullable(Type.Boolean(), 'age_ms > stale_after; null without a stale_after'),
})

export const EntityInventory = Type.Object({
  feature: Type.Object({ name: Type.String(), version: Type.Integer(), dtype: Type.String(), ttl: Nullable(Type.String()) }),
  as_of: Type.String({ description: 'the moment ages are measured from (the request\'s time)' }),
  stale_after: Nullable(Type.String(), 'the duration used (normalised, e.g. 60m as 1h): stale_after, else the feature\'s ttl; null: neither'),
  items: Type.Array(EntityInventoryItem, { description: 'ordered by entity_id' }),
  next_cursor: Nullable(Type.String(), 'pass as cursor for the next page; null: this was the last'),
})
export type EntityInventory = Static<typeof EntityInventory>
