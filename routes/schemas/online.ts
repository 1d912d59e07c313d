import { Type, type Static } from 'typebox'
import { EntityId, FeatureValue, Nullable, Ref } from './common.js'

// Plain `type`/`enum` keywords rather than anyOf unions: the response serializer handles them
// with typeof checks, while anyOf would validate every value at run time (the hot path).
export const OnlineStatus = Type.Unsafe<'PRESENT' | 'NULL_VALUE' | 'NOT_FOUND' | 'OUTSIDE_TTL'>({
  type: 'string',
  enum: ['PRESENT', 'NULL_VALUE', 'NOT_FOUND', 'OUTSIDE_TTL'],
  description: 'PRESENT: a value; NULL_VALUE: the latest value is null; NOT_FOUND: no value at or before now; OUTSIDE_TTL: the latest value is older than the feature\'s ttl (value null)',
})

export const OnlineValue = Type.Object({
  value: FeatureValue('null unless status is PRESENT; NaN and infinities as the strings "NaN", "Infinity", "-Infinity"'),
  event_time: Nullable(Type.String(), 'event_time of the value (RFC 3339, UTC); null for NOT_FOUND and OUTSIDE_TTL'),
  status: OnlineStatus,
}, { additionalProperties: false })
export type OnlineValue = Static<typeof OnlineValue>

export const EntityValues = Type.Object({
  entity_id: Type.String(),
  values: Type.Record(Type.String(), OnlineValue, { description: 'one entry per requested feature reference, keyed by the reference as given' }),
}, { additionalProperties: false })
export type EntityValues = Static<typeof EntityValues>

export const OnlineParams = Type.Object({ entity_id: EntityId })

const ContractRef = Type.String({ minLength: 1, description: 'a contract (name: its latest active version; or name@version): its features, keyed by their references in the contract. Instead of features' })

export const OnlineQuery = Type.Object({
  features: Type.Optional(Type.String({ minLength: 1, description: 'comma-separated feature references (name or name@version), at most 100 (or give contract)', examples: ['close_price,volume'] })),
  contract: Type.Optional(ContractRef),
})

/** The contract a read took its features from. */
export const ContractUsed = Type.Object({ name: Type.String(), version: Type.Integer() }, { additionalProperties: false, description: 'the contract version whose features were read (when contract was given)' })

export const OnlineEntityAnswer = Type.Object({
  entity_id: Type.String(),
  values: Type.Record(Type.String(), OnlineValue, { description: 'one entry per requested feature reference, keyed by the reference as given (or as the contract names it)' }),
  contract: Type.Optional(ContractUsed),
}, { additionalProperties: false })

export const MAX_ONLINE_ENTITIES = 10_000
export const MAX_ONLINE_FEATURES = 100

export const OnlineRequest = Type.Object({
  entities: Type.Array(EntityId, { minItems: 1, maxItems: MAX_ONLINE_ENTITIES, description: 'entity ids; answered in this order, duplicates kept' }),
  features: Type.Optional(Type.Array(Ref, { minItems: 1, maxItems: MAX_ONLINE_FEATURES, description: 'feature references: name (latest active version) or name@version (or give contract)' })),
  contract: Type.Optional(ContractRef),
}, { additionalProperties: false, examples: [{ entities: ['BTCUSDT', 'ETHUSDT'], features: ['close_price', 'volume'] }, { entities: ['BTCUSDT'], contract: 'phase5b_ensemble_features' }] })
export type OnlineRequest = Static<typeof OnlineRequest>

export const OnlineResponse = Type.Object({
  results: Type.Array(EntityValues, { description: 'one entry per requested entity, in request order' }),
  contract: Type.Optional(ContractUsed),
}, { additionalProperties: false })
export type OnlineResponse = Static<typeof OnlineResponse>
