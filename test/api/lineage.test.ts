import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import { buildTestApp } from '../lib/helper.js'
import { insertDefinition } from '../lib/fixtures.js'
import type { Sql } from '../../db/connection.js'
import { walkLineage } from '../../db/lineage.js'
import { DependencyGraph } from '../../src/domain/dependency-graph.js'

async function edge (sql: Sql, featureId: number, on: string, version: number | null = null): Promise<void> {
  await sql`INSERT INTO feature_dependencies (feature_id, depends_on_name, depends_on_version) VALUES (${featureId}, ${on}, ${version})`
}

/**
 *   signal -> momentum -> volume_ratio -> volume
 *          \          \-> close_price
 *           \-> atr_percentage -> close_price
 * volume_ratio@2 pins volume@1; a deprecated feature's edge to volume does not count.
 */
async function withGraph (t: Test) {
  const ctx = await buildTestApp(t)
  const id: Record<string, number> = {}
  for (const name of ['close_price', 'volume', 'volume_ratio', 'atr_percentage', 'momentum', 'signal']) id[name] = await insertDefinition(ctx.sql, { name })
  const ratio2 = await insertDefinition(ctx.sql, { name: 'volume_ratio', version: 2 })
  const old = await insertDefinition(ctx.sql, { name: 'old_signal', status: 'deprecated' })
  await edge(ctx.sql, id.volume_ratio, 'volume')
  await edge(ctx.sql, ratio2, 'volume', 1)
  await edge(ctx.sql, id.atr_percentage, 'close_price')
  await edge(ctx.sql, id.momentum, 'close_price')
  await edge(ctx.sql, id.momentum, 'volume_ratio')
  await edge(ctx.sql, id.signal, 'momentum')
  await edge(ctx.sql, id.signal, 'atr_percentage')
  await edge(ctx.sql, old, 'volume')
  const contract = async (name: string, status: string, features: Array<Record<string, unknown>>) => ctx.sql`
    INSERT INTO feature_contracts (name, version, entity, features, status) VALUES (${name}, 1, 'symbol', ${ctx.sql.json(features as never)}, ${status})`
  await contract('ensemble', 'active', [{ feature: 'signal', required: true }, { feature: 'volume@1', required: false }])
  await contract('draft_set', 'draft', [{ feature: 'momentum' }])
  const run = async (kind: string, features: Array<{ name: string, version: number, id: number }>) => ctx.sql`
    INSERT INTO pipeline_runs (id, started_at, kind, name, status, features, point_in_time, cutoff, entity_spec)
    VALUES (${randomUUID()}, now(), ${kind}, 'train', 'succeeded', ${ctx.sql.json(features as never)}, 'event', now(), ${ctx.sql.json({ type: 'rows', row_count: 0 } as never)})`
  await run('run', [{ name: 'volume', version: 1, id: id.volume }, { name: 'close_price', version: 1, id: id.close_price }])
  await run('run', [{ name: 'signal', version: 1, id: id.signal }])
  await run('reproduction', [{ name: 'volume', version: 1, id: id.volume }])
  return ctx
}

t.test('downstream lineage and impact of a base feature', async (t) => {
  const ctx = await withGraph(t)
  const res = await ctx.app.inject({ method: 'GET', url: '/v1/features/volume/lineage?direction=downstream' })
  t.equal(res.statusCode, 200, res.body)
  const body = res.json()
  t.match(body, { feature: 'volume', direction: 'downstream', depth: 3 })
  t.same(body.nodes.map((n: { name: string, relation: string, depth: number }) => [n.name, n.relation, n.depth]),
    [['volume', 'self', 0], ['volume_ratio', 'downstream', 1], ['momentum', 'downstream', 2], ['signal', 'downstream', 3]])
  t.same(body.edges, [
    { from: 'momentum', to: 'volume_ratio', to_versions: [null] },
    { from: 'signal', to: 'momentum', to_versions: [null] },
    { from: 'volume_ratio', to: 'volume', to_versions: [1, null] },
  ], 'edges walked, with the versions pinned (volume_ratio@2 pins volume@1); the deprecated feature\'s edge is not one')
  const volume = body.nodes[0]
  t.match(volume, { exists: true, latest_version: 1, active_versions: [1], entity: 'symbol', dtype: 'float64' })
  t.same(volume.contracts, [{ name: 'ensemble', version: 1, status: 'active', feature: 'volume@1', required: false }])
  t.equal(volume.pipeline_runs.count, 1, 'runs, not reproductions')
  t.match(volume.pipeline_runs.recent[0], { name: 'train', status: 'succeeded', version: 1 })
  t.match(body.nodes[1], { name: 'volume_ratio', latest_version: 2, active_versions: [1, 2] })
  t.same(body.impact, {
    features: ['volume_ratio', 'momentum', 'signal'],
    contracts: [{ name: 'draft_set', version: 1, status: 'draft' }, { name: 'ensemble', version: 1, status: 'active' }],
    active_contracts: 1,
    pipeline_runs: 2,
  })

  const shallow = (await ctx.app.inject({ method: 'GET', url: '/v1/features/volume/lineage?direction=downstream&depth=1' })).json()
  t.same(shallow.nodes.map((n: { name: string }) => n.name), ['volume', 'volume_ratio'])
  t.same(shallow.edges.map((e: { from: string }) => e.from), ['volume_ratio'])
})

t.test('upstream and both directions', async (t) => {
  const ctx = await withGraph(t)
  const up = (await ctx.app.inject({ method: 'GET', url: '/v1/features/signal/lineage?direction=upstream&depth=5' })).json()
  t.same(up.nodes.map((n: { name: string, depth: number }) => `${n.name}:${n.depth}`),
    ['signal:0', 'atr_percentage:1', 'momentum:1', 'close_price:2', 'volume_ratio:2', 'volume:3'], 'close_price at its shortest depth, once')
  t.equal(up.edges.length, 6)
  t.same(up.impact.features, [], 'nothing depends on signal')
  t.same(up.impact.contracts, [{ name: 'ensemble', version: 1, status: 'active' }])

  const both = (await ctx.app.inject({ method: 'GET', url: '/v1/features/momentum/lineage' })).json()
  t.same(both.nodes.map((n: { name: string, relation: string }) => `${n.name}:${n.relation}`),
    ['momentum:self', 'close_price:upstream', 'signal:downstream', 'volume_ratio:upstream', 'volume:upstream'], 'by depth, then name')
  t.same(both.impact.features, ['signal'])

  const leaf = (await ctx.app.inject({ method: 'GET', url: '/v1/features/old_signal/lineage' })).json()
  t.same(leaf.nodes.map((n: { name: string }) => n.name), ['old_signal'], 'a deprecated feature\'s edges are not walked')
  t.same(leaf.nodes[0].active_versions, [])
})

t.test('a dependency on a name without a definition is a node that does not exist', async (t) => {
  const ctx = await buildTestApp(t)
  const f = await insertDefinition(ctx.sql, { name: 'derived' })
  await edge(ctx.sql, f, 'ghost')
  const body = (await ctx.app.inject({ method: 'GET', url: '/v1/features/derived/lineage?direction=upstream' })).json()
  t.match(body.nodes[1], { name: 'ghost', exists: false, latest_version: null, entity: null, contracts: [], pipeline_runs: { count: 0, recent: [] } })
})

t.test('bad requests', async (t) => {
  const ctx = await withGraph(t)
  for (const [url, status] of [
    ['/v1/features/nope/lineage', 404], ['/v1/features/Volume/lineage', 400], ['/v1/features/volume/lineage?direction=sideways', 400],
    ['/v1/features/volume/lineage?depth=0', 400], ['/v1/features/volume/lineage?depth=21', 400], ['/v1/features/volume/lineage?depth=two', 400],
    ['/v1/features/volume/lineage?colour=red', 400],
  ] as const) {
    const res = await ctx.app.inject({ method: 'GET', url })
    t.equal(res.statusCode, status, `${url}: ${res.body.slice(0, 160)}`)
    t.match(res.headers['content-type'], /problem\+json/)
  }
})

t.test('the recursive CTE walks like the dependency graph of the registry, on random graphs', async (t) => {
  const ctx = await buildTestApp(t)
  // 40 features, edges only from higher to lower numbers (acyclic), about 2.5 per feature
  let seed = 7
  const rand = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
  const names = Array.from({ length: 40 }, (_, i) => `f${String(i).padStart(2, '0')}`)
  const ids: number[] = []
  for (const n of names) ids.push(await insertDefinition(ctx.sql, { name: n }))
  const edges: Array<{ from: string, to: string }> = []
  for (let i = 1; i < names.length; i++) {
    for (let j = 0; j < i; j++) if (rand() < 2.5 / i) edges.push({ from: names[i], to: names[j] })
  }
  for (const e of edges) await edge(ctx.sql, ids[names.indexOf(e.from)], e.to)
  const graph = DependencyGraph.fromEdges(edges)
  for (const n of names) graph.addNode(n)
  let compared = 0
  for (const start of ['f00', 'f07', 'f20', 'f33', 'f39']) {
    for (const direction of ['upstream', 'downstream', 'both'] as const) {
      for (const depth of [1, 2, 4, 10]) {
        const sqlWalk = await walkLineage(ctx.sql, start, direction, depth)
        const mem = graph.walk(start, direction, depth)
        const key = (n: { name: string, depth: number, relation: string }) => `${n.name}/${n.depth}/${n.relation}`
        t.same(sqlWalk.nodes.map(key).sort(), mem.nodes.map(key).sort(), `${start} ${direction} ${depth}: nodes`)
        t.same(sqlWalk.edges.map((e) => `${e.from}>${e.to}`).sort(), mem.edges.map((e) => `${e.from}>${e.to}`).sort(), `${start} ${direction} ${depth}: edges`)
        compared++
      }
    }
  }
  t.equal(compared, 60)
})

t.test('impact counts a pipeline run that pinned several touched features once', async (t) => {
  const ctx = await buildTestApp(t)
  const base = await insertDefinition(ctx.sql, { name: 'base' })
  const derived = await insertDefinition(ctx.sql, { name: 'derived' })
  const other = await insertDefinition(ctx.sql, { name: 'other' })
  await edge(ctx.sql, derived, 'base')
  const run = async (features: Array<{ name: string, version: number, id: number }>) => ctx.sql`
    INSERT INTO pipeline_runs (id, started_at, kind, name, status, features, point_in_time, cutoff, entity_spec)
    VALUES (${randomUUID()}, now(), 'run', 'train', 'succeeded', ${ctx.sql.json(features as never)}, 'event', now(), ${ctx.sql.json({ type: 'rows', row_count: 0 } as never)})`
  await run([{ name: 'base', version: 1, id: base }, { name: 'derived', version: 1, id: derived }])
  await run([{ name: 'derived', version: 1, id: derived }])
  await run([{ name: 'other', version: 1, id: other }])
  const body = (await ctx.app.inject({ method: 'GET', url: '/v1/features/base/lineage' })).json()
  t.same(body.nodes.map((n: { name: string, pipeline_runs: { count: number } }) => [n.name, n.pipeline_runs.count]), [['base', 1], ['derived', 2]])
  t.equal(body.impact.pipeline_runs, 2, 'two runs pinned base or derived (one of them both)')
  const up = (await ctx.app.inject({ method: 'GET', url: '/v1/features/derived/lineage?direction=upstream' })).json()
  t.equal(up.impact.pipeline_runs, 2, 'upstream features are not touched by a change of derived')
})
