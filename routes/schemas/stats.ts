import { Type, type Static } from 'typebox'
import { EntityId, FeatureVersionFilter, Name, Nullable, RangeFrom, RangeTo } from './common.js'


export const FeatureNameParams = Type.Object({ name: Name })

export const FeatureStatsQuery = Type.Object({
  bucket: Type.Optional(Type.Union([Type.Literal('1h'), Type.Literal('1d')], { default: '1h', description: 'bucket width' })),
  from: Type.Optional(RangeFrom),
  to: Type.Optional(RangeTo),
  entity_id: Type.Optional(EntityId),
  version: FeatureVersionFilter,
}, { additionalProperties: false })
export type FeatureStatsQuery = Static<typeof FeatureStatsQuery>

export const StatsBucketSchema = Type.Object({
  start: Type.String({ description: 'bucket start (UTC-aligned)' }),
  count: Type.Integer({ description: 'stored rows (corrections included)' }),
  numeric_count: Type.Integer({ description: 'finite numbers among them' }),
  text_count: Type.Integer({ description: 'string values among them' }),
  null_count: Type.Integer({ description: 'null values among them' }),
  mean: Nullable(Type.Number(), 'null when there are no finite numbers, or one of magnitude 1e300 or more'),
  stddev: Nullable(Type.Number(), 'sample standard deviation; null with fewer than 2 numbers, or one of magnitude 1e150 or more'),
  min: Nullable(Type.Number()),
  max: Nullable(Type.Number()),
  sum: Nullable(Type.Number(), 'null when there are no finite numbers, or one of magnitude 1e300 or more'),
})

export const FeatureStats = Type.Object({
  feature: Type.Object({ name: Type.String(), version: Type.Integer(), dtype: Type.String() }),
  entity_id: Nullable(Type.String(), 'null: all entities together'),
  bucket: Type.Union([Type.Literal('1h'), Type.Literal('1d')]),
  from: Type.String({ description: 'inclusive, rounded down to a bucket boundary' }),
  to: Type.String({ description: 'exclusive, rounded up to a bucket boundary' }),
  materialized_until: Nullable(Type.String(), 'buckets from here on are aggregated live from the values; null: nothing materialized yet'),
  buckets: Type.Array(StatsBucketSchema, { description: 'buckets that hold rows, oldest first' }),
})
export type FeatureStats = Static<typeof FeatureStats>
