import { Type, type Static } from 'typebox'
import { Nullable } from './common.js'


export const LineageQuery = Type.Object({
  direction: Type.Optional(Type.Union([Type.Literal('upstream'), Type.Literal('downstream'), Type.Literal('both')], { default: 'both', description: 'upstream: what the feature depends on; downstream: what depends on it' })),
  depth: Type.Optional(Type.Integer({ minimum: 1, maximum: 20, default: 3, description: 'how many edges away to walk' })),
}, { additionalProperties: false })
export type LineageQuery = Static<typeof LineageQuery>

const ContractUse = Type.Object({
  name: Type.String(),
  version: Type.Integer(),
  status: Type.String(),
  feature: Type.String({ description: 'how the contract refers to the feature: name or name@version' }),
  required: Type.Boolean(),
})

const RunUse = Type.Object({
  id: Type.String(),
  name: Type.String(),
  status: Type.String(),
  started_at: Type.String(),
  version: Nullable(Type.Integer(), 'the feature version the run pinned'),
})

export const LineageNode = Type.Object({
  name: Type.String(),
  relation: Type.Union([Type.Literal('self'), Type.Literal('upstream'), Type.Literal('downstream')]),
  depth: Type.Integer({ description: 'edges from the feature asked about' }),
  exists: Type.Boolean({ description: 'false for a dependency on a name that has no definition' }),
  latest_version: Nullable(Type.Integer()),
  active_versions: Type.Array(Type.Integer()),
  entity: Nullable(Type.String()),
  dtype: Nullable(Type.String()),
  contracts: Type.Array(ContractUse, { description: 'contracts (any status) that list this feature' }),
  pipeline_runs: Type.Object({
    count: Type.Integer({ description: 'pipeline runs that pinned this feature' }),
    recent: Type.Array(RunUse, { description: 'the most recent of them (up to 10)' }),
  }),
})

export const LineageEdge = Type.Object({
  from: Type.String({ description: 'the dependent feature' }),
  to: Type.String({ description: 'the feature it depends on' }),
  to_versions: Type.Array(Nullable(Type.Integer()), { description: 'versions of `to` pinned by the active versions of `from`; null = follows the latest' }),
})

export const Lineage = Type.Object({
  feature: Type.String(),
  direction: Type.String(),
  depth: Type.Integer(),
  nodes: Type.Array(LineageNode, { description: 'the feature itself first, then by depth' }),
  edges: Type.Array(LineageEdge),
  impact: Type.Object({
    features: Type.Array(Type.String(), { description: 'downstream features a change would reach (within depth)' }),
    contracts: Type.Array(Type.Object({ name: Type.String(), version: Type.Integer(), status: Type.String() }), { description: 'contracts listing the feature or a downstream one' }),
    active_contracts: Type.Integer(),
    pipeline_runs: Type.Integer({ description: 'pipeline runs that pinned the feature or a downstream one' }),
  }, { description: 'what a change to this feature would touch: itself and what is downstream of it' }),
})
export type Lineage = Static<typeof Lineage>
