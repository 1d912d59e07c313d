import { Type, type Static } from 'typebox'
import { EntityId, FeatureValue, Nullable, Ref, Timestamp } from './common.js'

/** Most features one retrieval may read (listed, or from a contract). */
export const MAX_RETRIEVE_FEATURES = 500

export const RetrieveRequestSchema = Type.Object({
  entities: Type.Array(EntityId, { minItems: 1, maxItems: 10_000, description: 'entity ids; one result per id, in this order, duplicates kept' }),
  features: Type.Optional(Type.Array(Ref, { minItems: 1, maxItems: MAX_RETRIEVE_FEATURES, description: 'feature references (name = latest active version, or name@version); or give contract' })),
  contract: Type.Optional(Type.String({ minLength: 1, description: 'a contract (name: its latest active version; or name@version): its features, keyed by their references in the contract. Instead of features' })),
  as_of: Timestamp,
  as_of_system_time: Type.Optional(Type.Union([Type.String(), Type.Integer()], {
    description: 'knowledge cutoff K (RFC 3339 with a zone, or epoch ms): only values ingested at or before it are seen. Omitted: now (a sound cutoff). Later than now: now',
  })),
}, {
  additionalProperties: false,
  examples: [{ entities: ['BTCUSDT', 'ETHUSDT'], features: ['close_price', 'volume@1'], as_of: '2023-06-01T12:00:00Z' }],
})
export type RetrieveRequest = Static<typeof RetrieveRequestSchema>

// a type and enum, not an anyOf of literals: the serializer checks it with typeof, once a value
export const ValueStatusSchema = Type.Unsafe<'PRESENT' | 'NULL_VALUE' | 'NOT_FOUND' | 'OUTSIDE_TTL'>({
  type: 'string',
  enum: ['PRESENT', 'NULL_VALUE', 'NOT_FOUND', 'OUTSIDE_TTL'],
  description: 'PRESENT: a value; NULL_VALUE: the latest value is null; NOT_FOUND: no value at or before as_of; OUTSIDE_TTL: the latest value is older than the ttl',
})

export const PointValue = Type.Object({
  value: FeatureValue('the value (non-finite floats as "NaN", "Infinity", "-Infinity"); null unless PRESENT'),
  event_time: Nullable(Type.String({ format: 'date-time' }), 'event_time of the value; null for NOT_FOUND and OUTSIDE_TTL'),
  status: ValueStatusSchema,
})

export const ResolvedFeature = Type.Object({
  ref: Type.String({ description: 'the reference as requested' }),
  name: Type.String(),
  version: Type.Integer(),
  dtype: Type.String(),
  ttl_ms: Nullable(Type.Integer()),
})

export const RetrieveResponseSchema = Type.Object({
  as_of: Type.String({ format: 'date-time' }),
  as_of_system_time: Type.String({ format: 'date-time', description: 'the knowledge cutoff K used' }),
  features: Type.Array(ResolvedFeature, { description: 'the versions the references resolved to' }),
  contract: Type.Optional(Type.Object({ name: Type.String(), version: Type.Integer() }, { description: 'the contract version whose features were read (when contract was given)' })),
  results: Type.Array(Type.Object({
    entity_id: Type.String(),
    values: Type.Record(Type.String(), PointValue, { description: 'keyed by the reference as requested (or as the contract names it)' }),
  })),
}, {
  examples: [{
    as_of: '2023-06-01T12:00:00.000Z',
    as_of_system_time: '2024-01-01T00:00:00.000Z',
    features: [{ ref: 'close_price', name: 'close_price', version: 1, dtype: 'float64', ttl_ms: 7_200_000 }],
    results: [{ entity_id: 'BTCUSDT', values: { close_price: { value: 27210.5, event_time: '2023-06-01T12:00:00.000Z', status: 'PRESENT' } } }],
  }],
})
export type RetrieveResponse = Static<typeof RetrieveResponseSchema>
