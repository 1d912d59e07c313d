import { Type, type Static } from 'typebox'
import { Name, Cursor, Limit, Nullable } from './common.js'

// Nullable fields are JSON Schema type lists (Nullable, common.ts), not anyOf: with the service's
// type coercion an anyOf would turn null into 0 or "" before the null branch is tried.
export const NullableNumber = Nullable(Type.Number())
const nullableString = (maxLength: number, description: string, examples?: string[]) =>
  Nullable(Type.String({ maxLength, ...(examples ? { examples } : {}) }), description)

export const Dtype = Type.Unsafe<'float64' | 'int64' | 'bool' | 'string'>({
  type: 'string', enum: ['float64', 'int64', 'bool', 'string'], description: 'value type; int64 values lie within ±2^53-1',
})
export const DefinitionStatus = Type.Unsafe<'active' | 'deprecated'>({ type: 'string', enum: ['active', 'deprecated'] })

export const EntityType = Type.String({ pattern: '^[a-z][a-z0-9_]{0,62}$', description: 'entity type the values are keyed by, e.g. symbol', examples: ['symbol'] })
export const Description = Type.String({ maxLength: 4096, description: 'what the feature means, how it is computed' })
export const Owner = nullableString(256, 'team or person responsible', ['quant-research'])
export const Unit = nullableString(64, 'unit of the values', ['USDT'])
export const Tags = Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 64, uniqueItems: true, description: 'free-form labels', examples: [['market', 'price']] })
export const Ttl = Nullable(Type.String({ maxLength: 32, examples: ['2h'] }), 'maximum age a value may have at a point in time (500ms, 90s, 15m, 1h, 7d, 2w); null = unbounded')
export const DependsOn = Type.Array(Type.String({ maxLength: 80 }), {
  maxItems: 64, description: 'features this one is computed from: name (latest active version) or name@version', examples: [['close_price']],
})

const AllowedValues = Type.Unsafe<Array<string | number | boolean> | null>({
  type: ['array', 'null'], items: {}, maxItems: 10_000, description: 'the only values accepted (of the feature dtype); null = any',
})

/** Rules as written in a request: absent keys keep their default (or the previous version's rule). */
export const ValidationRulesInput = Type.Object({
  nullable: Type.Optional(Type.Boolean({ description: 'null values accepted (default true)' })),
  min: Type.Optional(Nullable(Type.Number(), 'smallest value accepted (numeric dtypes); null = none')),
  max: Type.Optional(Nullable(Type.Number(), 'largest value accepted (numeric dtypes); null = none')),
  allowed_values: Type.Optional(AllowedValues),
  allow_non_finite: Type.Optional(Type.Boolean({ description: 'NaN and ±Infinity accepted (float64 only; default false)' })),
}, { additionalProperties: false })

export const ValidationRulesOutput = Type.Object({
  nullable: Type.Boolean(),
  min: NullableNumber,
  max: NullableNumber,
  allowed_values: AllowedValues,
  allow_non_finite: Type.Boolean(),
})

export const FeatureDefinition = Type.Object({
  name: Name,
  version: Type.Integer({ minimum: 1 }),
  entity: Type.String(),
  dtype: Dtype,
  description: Type.String(),
  owner: Nullable(Type.String()),
  tags: Type.Array(Type.String()),
  unit: Nullable(Type.String()),
  validation: ValidationRulesOutput,
  ttl: Nullable(Type.String(), 'e.g. 2h; null = unbounded'),
  shared_entity_id: Nullable(Type.String(), 'market-wide features: the entity id their values are stored under'),
  depends_on: Type.Array(Type.String()),
  status: DefinitionStatus,
  created_at: Type.String({ format: 'date-time' }),
}, {
  examples: [{
    name: 'close_price', version: 1, entity: 'symbol', dtype: 'float64', description: 'Close price of the hourly candle', owner: 'market-data',
    tags: ['market', 'price'], unit: 'USDT', validation: { nullable: false, min: 0, max: null, allowed_values: null, allow_non_finite: false },
    ttl: '2h', shared_entity_id: null, depends_on: [], status: 'active', created_at: '2024-01-01T00:00:00.000Z',
  }],
})
export type FeatureDefinitionApi = Static<typeof FeatureDefinition>

const SharedEntityId = Nullable(Type.String({ minLength: 1, maxLength: 256, examples: ['MARKET'] }), 'Market-wide feature: values are stored under this one entity id (e.g. MARKET) and every entity reads them; null = one value per entity')

export const CreateFeatureBody = Type.Object({
  name: Name,
  entity: EntityType,
  dtype: Dtype,
  description: Type.Optional(Description),
  owner: Type.Optional(Owner),
  tags: Type.Optional(Tags),
  unit: Type.Optional(Unit),
  validation: Type.Optional(ValidationRulesInput),
  ttl: Type.Optional(Ttl),
  shared_entity_id: Type.Optional(SharedEntityId),
  depends_on: Type.Optional(DependsOn),
}, {
  additionalProperties: false,
  examples: [{
    name: 'close_price', entity: 'symbol', dtype: 'float64', description: 'Close price of the hourly candle, stamped at the candle close',
    owner: 'market-data', tags: ['market', 'price'], unit: 'USDT', validation: { nullable: false, min: 0 }, ttl: '2h',
  }],
})
export type CreateFeatureInput = Static<typeof CreateFeatureBody>

export const NewVersionBody = Type.Object({
  entity: Type.Optional(EntityType),
  dtype: Type.Optional(Dtype),
  validation: Type.Optional(ValidationRulesInput),
  ttl: Type.Optional(Ttl),
  shared_entity_id: Type.Optional(SharedEntityId),
  depends_on: Type.Optional(DependsOn),
  description: Type.Optional(Description),
  owner: Type.Optional(Owner),
  tags: Type.Optional(Tags),
  unit: Type.Optional(Unit),
}, {
  additionalProperties: false,
  description: 'The changes of the new version; every field left out is carried over from the latest version. validation is merged into the previous rules (a key replaces that rule, null clears min, max or allowed_values).',
  examples: [{ validation: { max: 1000000 }, ttl: '3h' }],
})
export type NewVersionInput = Static<typeof NewVersionBody>

export const PatchFeatureBody = Type.Object({
  description: Type.Optional(Description),
  owner: Type.Optional(Owner),
  tags: Type.Optional(Tags),
  unit: Type.Optional(Unit),
}, {
  additionalProperties: false,
  minProperties: 1,
  description: 'Metadata only; applies to every version of the feature. Schema changes (entity, dtype, validation, ttl, depends_on) need a new version.',
  examples: [{ owner: 'quant-research', tags: ['market', 'price', 'core'] }],
})
export type PatchFeatureInput = Static<typeof PatchFeatureBody>

export const ListFeaturesQuery = Type.Object({
  entity: Type.Optional(EntityType),
  tag: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 16, description: 'features carrying every tag given (repeat the parameter for several)' })),
  status: Type.Optional(DefinitionStatus),
  text: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'case-insensitive substring of the name or the description' })),
  limit: Limit,
  cursor: Cursor,
}, { additionalProperties: false })
export type ListFeaturesFilter = Static<typeof ListFeaturesQuery>

export const FeatureList = Type.Object({
  items: Type.Array(FeatureDefinition, { description: 'one entry per feature: its latest active version (its latest version when every version is deprecated), ordered by name' }),
  next_cursor: Nullable(Type.String(), 'pass as cursor for the next page; null on the last page'),
})

export const FeatureVersionList = Type.Object({
  items: Type.Array(FeatureDefinition, { description: 'versions in ascending order' }),
  next_cursor: Nullable(Type.String()),
})

export const VersionsQuery = Type.Object({ limit: Limit, cursor: Cursor }, { additionalProperties: false })

export const FeatureRefParams = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 80, description: 'feature name (latest active version) or name@version', examples: ['close_price', 'close_price@2'] }),
})
export const FeatureNameParams = Type.Object({ name: Name })
export const FeatureVersionParams = Type.Object({ name: Name, version: Type.Integer({ minimum: 1, maximum: 999_999_999, examples: [1] }) })

export const DeprecateQuery = Type.Object({
  force: Type.Optional(Type.Boolean({ default: false, description: 'deprecate even while active contracts or features depend on it (logged)' })),
}, { additionalProperties: false })

const VersionedName = Type.Object({ name: Type.String(), version: Type.Integer() })
export const Dependents = Type.Object({
  features: Type.Array(VersionedName, { description: 'active feature versions that depend on it' }),
  contracts: Type.Array(VersionedName, { description: 'active contract versions that require it' }),
})

export const DeprecationResult = Type.Object({
  name: Type.String(),
  deprecated_versions: Type.Integer({ description: 'versions that were active and are now deprecated' }),
  forced: Type.Boolean(),
  dependents: Dependents,
})
export type DeprecationResultApi = Static<typeof DeprecationResult>
