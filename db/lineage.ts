import type { Sql, TxSql } from './connection.js'

type Queryable = Sql | TxSql

export type LineageDirection = 'upstream' | 'downstream' | 'both'

export interface LineageNodeRow { name: string, relation: 'self' | 'upstream' | 'downstream', depth: number }
export interface LineageEdgeRow { from: string, to: string, to_versions: Array<number | null> }

/**
 * Walks the dependency graph from `name` with two recursive CTEs: upstream follows what a
 * feature depends on, downstream what depends on it, each up to `depth` edges. The graph is
 * the registry's name graph: an edge A -> B for every active version of A that depends on B
 * (`to_versions` lists the versions of B they pin; null follows B's latest). UNION keeps one
 * row per (name, depth), and the depth bound ends the walk even on a graph with a cycle.
 * Returns each node once at its smallest depth, and the edges walked.
 */
export async function walkLineage (sql: Queryable, name: string, direction: LineageDirection, depth: number): Promise<{ nodes: LineageNodeRow[], edges: LineageEdgeRow[] }> {
  const up = direction !== 'downstream'
  const down = direction !== 'upstream'
  const rows = await sql<Array<{ kind: 'node' | 'edge', name: string | null, relation: string | null, depth: number | null, src: string | null, dst: string | null, to_versions: Array<number | null> | null }>>`
    WITH RECURSIVE graph AS (
      SELECT d.name AS src, e.depends_on_name AS dst,
             -- as JSON: postgres.js reads NULL elements of int arrays as NaN
             to_json(array_agg(DISTINCT e.depends_on_version ORDER BY e.depends_on_version)) AS to_versions
      FROM feature_dependencies e
      JOIN feature_definitions d ON d.id = e.feature_id
      WHERE d.status = 'active'
      GROUP BY d.name, e.depends_on_name
    ),
    up_walk (name, depth) AS (
      SELECT ${name}::text, 0 WHERE ${up}::bool
      UNION
      SELECT g.dst, w.depth + 1 FROM up_walk w JOIN graph g ON g.src = w.name WHERE w.depth < ${depth}::int
    ),
    down_walk (name, depth) AS (
      SELECT ${name}::text, 0 WHERE ${down}::bool
      UNION
      SELECT g.src, w.depth + 1 FROM down_walk w JOIN graph g ON g.dst = w.name WHERE w.depth < ${depth}::int
    ),
    up_nodes AS (SELECT name, min(depth) AS depth FROM up_walk GROUP BY name),
    down_nodes AS (SELECT name, min(depth) AS depth FROM down_walk GROUP BY name)
    SELECT 'node' AS kind, ${name}::text AS name, 'self' AS relation, 0 AS depth, NULL::text AS src, NULL::text AS dst, NULL::json AS to_versions
    UNION ALL
    SELECT 'node', name, 'upstream', depth, NULL, NULL, NULL FROM up_nodes WHERE depth > 0
    UNION ALL
    SELECT 'node', name, 'downstream', depth, NULL, NULL, NULL FROM down_nodes WHERE depth > 0
      AND name NOT IN (SELECT name FROM up_nodes)
    UNION ALL
    SELECT 'edge', NULL, NULL, NULL, g.src, g.dst, g.to_versions
    FROM graph g
    WHERE g.src IN (SELECT name FROM up_nodes WHERE depth < ${depth}::int)
       OR g.dst IN (SELECT name FROM down_nodes WHERE depth < ${depth}::int)`
  const nodes: LineageNodeRow[] = []
  const edges: LineageEdgeRow[] = []
  for (const r of rows) {
    if (r.kind === 'node') nodes.push({ name: r.name!, relation: r.relation as LineageNodeRow['relation'], depth: r.depth! })
    else edges.push({ from: r.src!, to: r.dst!, to_versions: r.to_versions ?? [] })
  }
  nodes.sort((a, b) => a.depth - b.depth || a.name.localeCompare(b.name))
  edges.sort((a, b) => a.from.localeCompare(b.from) || a.to.localeCompare(b.to))
  return { nodes, edges }
}

export interface FeatureSummaryRow {
  name: string
  latest_version: number
  active_versions: number[]
  entity: string
  dtype: string
  description: string
}

/** For each name that has definitions: its latest version, active versions, entity, dtype. */
export async function summariseFeatures (sql: Queryable, names: string[]): Promise<Map<string, FeatureSummaryRow>> {
  const rows = await sql<FeatureSummaryRow[]>`
    SELECT DISTINCT ON (name) name, version AS latest_version,
           array(SELECT a.version FROM feature_definitions a WHERE a.name = d.name AND a.status = 'active' ORDER BY a.version) AS active_versions,
           entity, dtype, description
    FROM feature_definitions d
    WHERE name = ANY(${names}::text[])
    ORDER BY name, version DESC`
  return new Map(rows.map((r) => [r.name, r]))
}

export interface ContractUseRow { feature: string, ref: string, name: string, version: number, status: string, required: boolean }

/** Contracts (every status) whose feature list names one of `names`. */
export async function contractsUsing (sql: Queryable, names: string[]): Promise<ContractUseRow[]> {
  return [...await sql<ContractUseRow[]>`
    SELECT split_part(f ->> 'feature', '@', 1) AS feature, f ->> 'feature' AS ref, c.name, c.version, c.status,
           coalesce((f ->> 'required')::bool, true) AS required
    FROM feature_contracts c
    CROSS JOIN LATERAL jsonb_array_elements(c.features) f
    WHERE split_part(f ->> 'feature', '@', 1) = ANY(${names}::text[])
    ORDER BY c.name, c.version`]
}

export interface RunUseRow { feature: string, total: number, recent: Array<{ id: string, name: string, status: string, started_at: string, version: number }> }

/**
 * Pipeline runs (not reproductions) that pinned one of `names`: how many, and the most recent
 * `recent` of them. Empty when the pipeline_runs table does not exist.
 */
export async function pipelineRunsUsing (sql: Queryable, names: string[], recent: number): Promise<RunUseRow[]> {
  const [t] = await sql<{ exists: boolean }[]>`SELECT to_regclass('pipeline_runs') IS NOT NULL AS exists`
  if (!t.exists) return []
  return [...await sql<RunUseRow[]>`
    SELECT n.name AS feature, c.total,
           coalesce((
             SELECT json_agg(json_build_object('id', r.id, 'name', r.name, 'status', r.status,
                                               'started_at', to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                                               'version', r.version) ORDER BY r.started_at DESC)
             FROM (
               SELECT p.id, p.name, p.status, p.started_at,
                      (SELECT (f ->> 'version')::int FROM jsonb_array_elements(p.features) f WHERE f ->> 'name' = n.name LIMIT 1) AS version
               FROM pipeline_runs p
               WHERE p.features @> jsonb_build_array(jsonb_build_object('name', n.name)) AND p.kind = 'run'
               ORDER BY p.started_at DESC
               LIMIT ${recent}
             ) r), '[]'::json) AS recent
    FROM unnest(${names}::text[]) AS n(name)
    CROSS JOIN LATERAL (
      SELECT count(*)::int8 AS total FROM pipeline_runs p
      WHERE p.features @> jsonb_build_array(jsonb_build_object('name', n.name)) AND p.kind = 'run'
    ) c
    WHERE c.total > 0`]
}

/**
 * How many pipeline runs (each counted once) pinned at least one of the features `names` (found
 * by pipelineRunsUsing, which has checked that the table exists).
 */
export async function countPipelineRunsUsingAny (sql: Queryable, names: string[]): Promise<number> {
  if (names.length === 0) return 0
  const [{ n }] = await sql<{ n: number }[]>`
    SELECT count(DISTINCT p.id)::int AS n
    FROM unnest(${names}::text[]) AS u(name)
    JOIN pipeline_runs p ON p.features @> jsonb_build_array(jsonb_build_object('name', u.name)) AND p.kind = 'run'`
  return n
}
