import type { Sql } from '../../db/connection.js'
import { contractsUsing, countPipelineRunsUsingAny, pipelineRunsUsing, summariseFeatures, walkLineage, type LineageDirection } from '../../db/lineage.js'
import { NotFoundError } from '../domain/errors.js'
import { assertName } from '../domain/names.js'
import type { Lineage, LineageQuery } from '../../routes/schemas/lineage.js'

const RECENT_RUNS = 10

/**
 * Lineage and impact: the dependency graph around a feature (walked in the database), with the
 * contracts and pipeline runs that use each feature on it.
 */
export class LineageService {
  constructor (private readonly sql: Sql) {}

  async lineage (name: string, q: LineageQuery): Promise<Lineage> {
    assertName(name, 'name')
    const direction: LineageDirection = q.direction ?? 'both'
    const depth = q.depth ?? 3
    const root = await summariseFeatures(this.sql, [name])
    if (!root.has(name)) throw new NotFoundError(`Feature '${name}' does not exist`)
    const walk = await walkLineage(this.sql, name, direction, depth)
    const names = walk.nodes.map((n) => n.name)
    const [features, contracts, runs] = await Promise.all([
      summariseFeatures(this.sql, names),
      contractsUsing(this.sql, names),
      pipelineRunsUsing(this.sql, names, RECENT_RUNS),
    ])
    const nodes = walk.nodes.map((n) => {
      const f = features.get(n.name)
      const r = runs.find((x) => x.feature === n.name)
      return {
        name: n.name,
        relation: n.relation,
        depth: n.depth,
        exists: f !== undefined,
        latest_version: f?.latest_version ?? null,
        active_versions: f?.active_versions ?? [],
        entity: f?.entity ?? null,
        dtype: f?.dtype ?? null,
        contracts: contracts.filter((c) => c.feature === n.name).map((c) => ({ name: c.name, version: c.version, status: c.status, feature: c.ref, required: c.required })),
        pipeline_runs: { count: r?.total ?? 0, recent: r?.recent ?? [] },
      }
    })
    // impact: the feature and everything downstream of it
    const touched = new Set(nodes.filter((n) => n.relation !== 'upstream').map((n) => n.name))
    const impactContracts = new Map<string, { name: string, version: number, status: string }>()
    for (const c of contracts) if (touched.has(c.feature)) impactContracts.set(`${c.name}@${c.version}`, { name: c.name, version: c.version, status: c.status })
    // a run that pinned several touched features is one run: counted in the database unless
    // only one touched feature has runs
    const touchedRuns = runs.filter((r) => touched.has(r.feature))
    const impactRuns = touchedRuns.length <= 1 ? touchedRuns[0]?.total ?? 0 : await countPipelineRunsUsingAny(this.sql, touchedRuns.map((r) => r.feature))
    return {
      feature: name,
      direction,
      depth,
      nodes,
      edges: walk.edges,
      impact: {
        features: nodes.filter((n) => n.relation === 'downstream').map((n) => n.name),
        contracts: [...impactContracts.values()],
        active_contracts: [...impactContracts.values()].filter((c) => c.status === 'active').length,
        pipeline_runs: impactRuns,
      },
    }
  }
}
