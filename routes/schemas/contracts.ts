import { Type, type Static } from 'typebox'
import { Name, Cursor, Limit, NAME_PATTERN, Nullable } from './common.js'
import { Description, EntityType, NullableNumber, Owner, Tags, ValidationRulesInput } from './features.js'

export const ContractStatus = Type.Unsafe<'draft' | 'active' | 'retired'>({ type: 'string', enum: ['draft', 'active', 'retired'] })
const Fraction = Nullable(Type.Number({ minimum: 0, maximum: 1 }))

/** Overrides of the feature's own validation rules, plus a null-fraction limit on the data set. */
export const ContractFeatureRules = Type.Object({
  ...ValidationRulesInput.properties,
  max_null_fraction: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 1 }), 'largest share of null values of this feature in a data set (overrides the contract-wide one)')),
}, { additionalProperties: false, description: 'overrides of the definition rules: a key replaces the rule, null clears min, max or allowed_values' })

export const ContractFeature = Type.Object({
  feature: Type.String({ minLength: 1, maxLength: 80, description: 'name (latest active version) or name@version', examples: ['close_price', 'close_price@1'] }),
  required: Type.Optional(Type.Boolean({ default: true, description: 'every row must carry it (default true); an optional feature may be left out' })),
  rules: Type.Optional(ContractFeatureRules),
}, { additionalProperties: false })

export const ContractRulesInput = Type.Object({
  min_rows: Type.Optional(Nullable(Type.Integer({ minimum: 0 }), 'fewest rows a data set may have')),
  max_null_fraction: Type.Optional(Fraction),
}, { additionalProperties: false, description: 'rules on the whole data set' })

export const ContractRulesOutput = Type.Object({
  min_rows: Nullable(Type.Integer()),
  max_null_fraction: NullableNumber,
})

export const Contract = Type.Object({
  name: Name,
  version: Type.Integer({ minimum: 1 }),
  description: Type.String(),
  entity: Type.String(),
  owner: Nullable(Type.String()),
  tags: Type.Array(Type.String()),
  features: Type.Array(Type.Object({
    feature: Type.String(),
    required: Type.Boolean(),
    rules: Type.Object({}, { additionalProperties: true, description: 'the overrides as given' }),
  })),
  rules: ContractRulesOutput,
  status: ContractStatus,
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
}, {
  examples: [{
    name: 'phase5b_ensemble_features', version: 1, description: 'Inputs of the phase 5b ensemble', entity: 'symbol', owner: 'quant-research', tags: ['ensemble'],
    features: [{ feature: 'close_price', required: true, rules: {} }, { feature: 'volume_ratio', required: true, rules: { max: 50 } }],
    rules: { min_rows: 1, max_null_fraction: null }, status: 'active', created_at: '2024-01-01T00:00:00.000Z', updated_at: '2024-01-01T00:00:00.000Z',
  }],
})
export type ContractApi = Static<typeof Contract>

const Features = Type.Array(ContractFeature, { minItems: 1, maxItems: 1000 })

export const CreateContractBody = Type.Object({
  name: Name,
  entity: EntityType,
  features: Features,
  description: Type.Optional(Description),
  owner: Type.Optional(Owner),
  tags: Type.Optional(Tags),
  rules: Type.Optional(ContractRulesInput),
  status: Type.Optional(Type.Unsafe<'draft' | 'active'>({ type: 'string', enum: ['draft', 'active'], default: 'draft', description: 'draft (default) or active' })),
}, {
  additionalProperties: false,
  examples: [{
    name: 'momentum_inputs', entity: 'symbol', description: 'Inputs of the momentum model', status: 'active',
    features: [{ feature: 'close_price' }, { feature: 'volume', rules: { min: 1 } }, { feature: 'atr_percentage', required: false }],
    rules: { min_rows: 100, max_null_fraction: 0.01 },
  }],
})
export type CreateContractInput = Static<typeof CreateContractBody>

export const NewContractVersionBody = Type.Object({
  entity: Type.Optional(EntityType),
  features: Type.Optional(Features),
  description: Type.Optional(Description),
  owner: Type.Optional(Owner),
  tags: Type.Optional(Tags),
  rules: Type.Optional(ContractRulesInput),
  status: Type.Optional(Type.Unsafe<'draft' | 'active'>({ type: 'string', enum: ['draft', 'active'], default: 'draft' })),
}, {
  additionalProperties: false,
  description: 'The new version: fields left out are carried over from the latest version (rules as a whole); status defaults to draft.',
  examples: [{ features: [{ feature: 'close_price' }, { feature: 'volume' }], status: 'active' }],
})
export type NewContractVersionInput = Static<typeof NewContractVersionBody>

export const PatchContractBody = Type.Object({
  description: Type.Optional(Description),
  owner: Type.Optional(Owner),
  tags: Type.Optional(Tags),
  status: Type.Optional(ContractStatus),
}, {
  additionalProperties: false,
  minProperties: 1,
  description: 'description, owner and tags apply to every version; status applies to the version addressed (name@version) or to the latest version',
  examples: [{ status: 'active' }, { owner: 'quant-research' }],
})
export type PatchContractInput = Static<typeof PatchContractBody>

export const ListContractsQuery = Type.Object({
  entity: Type.Optional(EntityType),
  tag: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 16 })),
  status: Type.Optional(ContractStatus),
  feature: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9_]{0,62}$', description: 'contracts naming this feature' })),
  text: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'case-insensitive substring of the name or the description' })),
  limit: Limit,
  cursor: Cursor,
}, { additionalProperties: false })
export type ListContractsFilter = Static<typeof ListContractsQuery>

export const ContractList = Type.Object({
  items: Type.Array(Contract, { description: 'one entry per contract: its latest active version (else its latest version), ordered by name' }),
  next_cursor: Nullable(Type.String()),
})
export const ContractVersionList = Type.Object({
  items: Type.Array(Contract, { description: 'versions in ascending order' }),
  next_cursor: Nullable(Type.String()),
})

export const ContractRefParams = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 80, description: 'contract name (latest active version, else latest) or name@version', examples: ['phase5b_ensemble_features', 'phase5b_ensemble_features@1'] }),
})
const ContractName = Type.String({ pattern: NAME_PATTERN, description: 'contract name', examples: ['phase5b_ensemble_features'] })
export const ContractNameParams = Type.Object({ name: ContractName })
export const ContractVersionParams = Type.Object({ name: ContractName, version: Type.Integer({ minimum: 1, maximum: 999_999_999, examples: [1] }) })

export const RetireResult = Type.Object({
  name: Type.String(),
  retired_versions: Type.Integer({ description: 'versions that were draft or active and are now retired' }),
})

export const ValidateQuery = Type.Object({
  max_errors: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000, default: 100, description: 'how many row errors to list (all are counted)' })),
}, { additionalProperties: false })

export const ValidateBody = Type.Object({
  rows: Type.Array(Type.Record(Type.String(), Type.Unknown()), {
    description: 'wide rows as a training set produces them: entity_id, event_time and one column per feature (by name, or name@version for pinned features); other columns are ignored',
  }),
}, {
  additionalProperties: false,
  examples: [{ rows: [{ entity_id: 'BTCUSDT', event_time: '2023-06-01T12:00:00Z', close_price: 27100.5, volume: 812.4, btc_dominance: 46.1, market_correlation: 1, volume_ratio: 1.2, atr_percentage: 0.8 }] }],
})
export type ValidateInput = Static<typeof ValidateBody>

const RowError = Type.Object({ row: Type.Integer(), feature: Type.String(), rule: Type.String(), message: Type.String() })
const DatasetError = Type.Object({ feature: Nullable(Type.String()), rule: Type.String(), message: Type.String() })
const FeatureSummary = Type.Object({
  version: Type.Integer({ description: 'the definition version the rows were checked against' }),
  required: Type.Boolean(),
  checked: Type.Integer({ description: 'rows carrying the feature (null included)' }),
  nulls: Type.Integer(),
  missing: Type.Integer({ description: 'rows without the feature' }),
  null_fraction: NullableNumber,
  violations: Type.Record(Type.String(), Type.Integer(), { description: 'rows breaking each rule' }),
})

export const ValidationReport = Type.Object({
  contract: Type.Object({ name: Type.String(), version: Type.Integer() }),
  valid: Type.Boolean(),
  errors: Type.Array(RowError, { description: 'the first max_errors row errors, in row order; row is 0-based' }),
  errors_truncated: Type.Boolean(),
  dataset_errors: Type.Array(DatasetError, { description: 'rules on the whole data set: min_rows, max_null_fraction' }),
  per_feature: Type.Record(Type.String(), FeatureSummary),
  summary: Type.Object({ rows: Type.Integer(), valid_rows: Type.Integer(), invalid_rows: Type.Integer(), error_count: Type.Integer() }),
})
