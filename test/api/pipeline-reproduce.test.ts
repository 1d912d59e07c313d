import t from 'tap'
import { createHash } from 'node:crypto'
import { buildTestApp, testAdminUrl, type TestContext } from '../lib/helper.js'
import { insertDefinition, appendValues, type RawValue } from '../lib/fixtures.js'
import { insertContract } from '../../db/contracts.js'
import { connect, type Sql } from '../../db/connection.js'
import { retentionFinding } from '../../src/services/pipelines.js'

/** Whether the test server can run the TimescaleDB mode. */
const timescale = await (async () => {
  const admin = connect(testAdminUrl(), { max: 1 })
  try {
    const [row] = await admin<Array<{ ok: boolean }>>`SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') AS ok`
    return row.ok
  } finally {
    await admin.end()
  }
})()

const H = 3_600_000
const M = 60_000
const T0 = Date.UTC(2023, 5, 1)
const iso = (ms: number): string => new Date(ms).toISOString()
const sha256 = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex')

interface Ids { price: number, volume: number, up: number, regime: number }

/**
 * Four features of every dtype for BTC and ETH, hourly over 40 hours, with nulls, a NaN, a
 * negative zero and corrections already in the store before any run.
 */
async function seed (sql: Sql): Promise<Ids> {
  const ids: Ids = {
    price: await insertDefinition(sql, { name: 'close_price', validation: { allow_non_finite: true } }),
    volume: await insertDefinition(sql, { name: 'volume', ttl_ms: 3 * H }),
    up: await insertDefinition(sql, { name: 'is_up', dtype: 'bool' }),
    regime: await insertDefinition(sql, { name: 'regime', dtype: 'string' }),
  }
  const rows: RawValue[] = []
  for (let h = 0; h < 40; h++) {
    for (const [e, base] of [['BTC', 30_000], ['ETH', 1_900]] as const) {
      const t = T0 + h * H
      rows.push({ featureId: ids.price, entityId: e, eventTimeMs: t, num: h === 7 ? Number.NaN : h === 8 ? -0 : base + h * 1.1 })
      if (h % 6 !== 5) rows.push({ featureId: ids.volume, entityId: e, eventTimeMs: t, num: h % 4 === 0 ? null : 10 + h / 7 })
      rows.push({ featureId: ids.up, entityId: e, eventTimeMs: t, num: h % 3 === 0 ? 1 : 0 })
      rows.push({ featureId: ids.regime, entityId: e, eventTimeMs: t, text: h % 5 === 0 ? '' : h % 2 === 0 ? 'bull, "strong"' : 'bear' })
    }
  }
  await appendValues(sql, rows)
  // corrections known before the runs
  await appendValues(sql, [{ featureId: ids.price, entityId: 'BTC', eventTimeMs: T0 + 5 * H, num: 31_005.5 }])
  return ids
}

const FEATURES = ['close_price', 'volume', 'is_up', 'regime']

function inlineRows (): Array<Record<string, unknown>> {
  const rows: Array<Record<string, unknown>> = [
    { entity_id: 'BTC', event_time: iso(T0 + 5 * H + 30 * M), label: 1 },
    { entity_id: 'ETH', event_time: iso(T0 + 10 * H), label: 0 },
    { entity_id: 'XRP', event_time: iso(T0 + 3 * H), label: 1 },
    { entity_id: 'BTC', event_time: iso(T0 + 20 * H + 15 * M), label: 0, weight: 0.25 },
    { entity_id: 'BTC', event_time: iso(T0 + 5 * H + 30 * M), label: 1 },
  ]
  for (let i = 0; i < 60; i++) rows.push({ entity_id: ['BTC', 'ETH', 'SOL'][i % 3], event_time: T0 + i * 37 * M, label: i % 2, weight: i / 7 })
  return rows
}

async function run (ctx: TestContext, body: Record<string, unknown>): Promise<{ id: string, fingerprint: string, status: string, row_count: number }> {
  const res = await ctx.app.inject({ method: 'POST', url: '/v1/pipeline-runs', payload: body })
  if (res.statusCode !== 201) throw new Error(`run failed: ${res.statusCode} ${res.body}`)
  return res.json()
}

async function dataset (ctx: TestContext, id: string, format: 'csv' | 'json' = 'csv'): Promise<string> {
  const res = await ctx.app.inject({ method: 'GET', url: `/v1/pipeline-runs/${id}/dataset?format=${format}` })
  if (res.statusCode !== 200) throw new Error(`dataset: ${res.statusCode} ${res.body}`)
  return res.body
}

async function reproduce (ctx: TestContext, id: string, qs = ''): Promise<Record<string, any>> {
  const res = await ctx.app.inject({ method: 'POST', url: `/v1/pipeline-runs/${id}/reproduce${qs}` })
  if (res.statusCode !== 201) throw new Error(`reproduce: ${res.statusCode} ${res.body}`)
  return res.json()
}

t.test('after backfills, corrections, new versions, new entities and later values, runs reproduce byte for byte', async (t) => {
  const ctx = await buildTestApp(t)
  const ids = await seed(ctx.sql)
  await ctx.sql.begin((tx) => insertContract(tx, {
    name: 'inputs', version: 1, description: '', entity: 'symbol', owner: null, tags: [], status: 'active',
    features: FEATURES.map((feature) => ({ feature })), featureNames: FEATURES, rules: {},
  }))

  const a = await run(ctx, { name: 'a', features: FEATURES, entity_rows: inlineRows(), point_in_time: 'event' })
  const b = await run(ctx, { name: 'b', contract: 'inputs', grid: { entities: ['BTC', 'ETH', 'XRP'], from: iso(T0), to: iso(T0 + 39 * H), every: '30m' }, point_in_time: 'known', validation: 'warn' })
  const c = await run(ctx, { name: 'c', features: FEATURES, grid: { entities: ['ETH', 'BTC'], from: iso(T0 + 2 * H), to: iso(T0 + 30 * H), every: '45m' }, point_in_time: 'event' })
  t.same([a.status, b.status, c.status], ['succeeded', 'succeeded', 'succeeded'])
  const before = { a: await dataset(ctx, a.id), b: await dataset(ctx, b.id), c: await dataset(ctx, c.id), aJson: await dataset(ctx, a.id, 'json') }
  t.equal(sha256(before.a), a.fingerprint)
  t.match(before.a, /,NaN,/, 'NaN is in the dataset')
  t.match(before.a, /,"bull, ""strong"""\n/, 'strings with commas and quotes are quoted')

  // --- the store moves on ---------------------------------------------------------------
  const later: RawValue[] = []
  // backfills: new event times inside the window
  for (let h = 0; h < 39; h++) later.push({ featureId: ids.price, entityId: 'BTC', eventTimeMs: T0 + h * H + 20 * M, num: 1 }, { featureId: ids.volume, entityId: 'ETH', eventTimeMs: T0 + h * H + 50 * M, num: 2 })
  // corrections of values the runs used
  for (let h = 0; h < 40; h++) later.push({ featureId: ids.price, entityId: 'ETH', eventTimeMs: T0 + h * H, num: -h }, { featureId: ids.regime, entityId: 'BTC', eventTimeMs: T0 + h * H, text: 'corrected' })
  // new entities, one of them in the runs' entity rows and grid
  for (let h = 0; h < 40; h++) later.push({ featureId: ids.price, entityId: 'XRP', eventTimeMs: T0 + h * H, num: 0.5 }, { featureId: ids.up, entityId: 'SOL', eventTimeMs: T0 + h * H, num: 1 })
  // values after the window
  for (let h = 40; h < 60; h++) later.push({ featureId: ids.price, entityId: 'BTC', eventTimeMs: T0 + h * H, num: 99 })
  await appendValues(ctx.sql, later)
  // a new version of a feature, the old one deprecated, and a new contract version
  const price2 = await insertDefinition(ctx.sql, { name: 'close_price', version: 2 })
  await ctx.sql`UPDATE feature_definitions SET status = 'deprecated' WHERE id = ${ids.price}`
  await appendValues(ctx.sql, [{ featureId: price2, entityId: 'BTC', eventTimeMs: T0, num: 7 }])
  await ctx.sql.begin((tx) => insertContract(tx, {
    name: 'inputs', version: 2, description: '', entity: 'symbol', owner: null, tags: [], status: 'active',
    features: [{ feature: 'close_price' }, { feature: 'volume' }], featureNames: ['close_price', 'volume'], rules: {},
  }))

  // the same request today, versions pinned alike, sees other data: the changes matter
  const today = await run(ctx, { name: 'a', features: ['close_price@1', 'volume@1', 'is_up@1', 'regime@1'], entity_rows: inlineRows() })
  t.not(today.fingerprint, a.fingerprint, 'a new build of the same request differs')

  for (const [name, r] of [['a', a], ['b', b], ['c', c]] as const) {
    const rep = await reproduce(ctx, r.id)
    t.match(rep, { kind: 'reproduction', parent_id: r.id, status: 'succeeded', fingerprint: r.fingerprint, reproduction: { verdict: 'reproducible', reproducible: true, fingerprint: r.fingerprint, expected_fingerprint: r.fingerprint, differences: [] } }, `run ${name} reproduces`)
    t.equal(await dataset(ctx, r.id), before[name], `run ${name}: the rebuilt dataset is byte-identical`)
  }
  t.equal(await dataset(ctx, a.id, 'json'), before.aJson, 'the JSON rendering too')
  const list = (await ctx.app.inject({ method: 'GET', url: `/v1/pipeline-runs?parent_id=${a.id}` })).json()
  t.equal(list.items.length, 1, 'the reproduction is listed under its run')
  t.match(list.items[0], { kind: 'reproduction', features: [{ name: 'close_price', version: 1 }] })
})

t.test('a tampered stored value: not reproducible, naming the rows and columns', async (t) => {
  const ctx = await buildTestApp(t)
  const ids = await seed(ctx.sql)
  const a = await run(ctx, { name: 'a', features: FEATURES, entity_rows: inlineRows() })
  const original = await dataset(ctx, a.id)

  // rows 0, 4 (BTC at 5:30) and 14 (BTC at 5:33) use close_price of 5:00; row 1 uses ETH's regime of 10:00
  const changed = await ctx.sql`UPDATE feature_snapshots SET value_num = 12345 WHERE feature_id = ${ids.price} AND entity_id = 'BTC' AND event_time = ${new Date(T0 + 5 * H)}`
  t.equal(changed.count, 2, 'both stored rows of that point (original and correction) are tampered with')
  await ctx.sql`UPDATE feature_snapshots SET value_text = 'tampered' WHERE feature_id = ${ids.regime} AND entity_id = 'ETH' AND event_time = ${new Date(T0 + 10 * H)}`

  const rep = await reproduce(ctx, a.id)
  t.match(rep.reproduction, {
    verdict: 'not_reproducible', reproducible: false, expected_fingerprint: a.fingerprint, different_cells: 4, different_rows: 4, differences_truncated: false, retention: null,
    detail: /differs from the original in 4 cell\(s\) of 4 row\(s\)/,
  })
  t.not(rep.reproduction.fingerprint, a.fingerprint)
  t.same(rep.reproduction.differences.map((d: Record<string, unknown>) => [d.row, d.column, d.entity_id, d.event_time, d.rebuilt]), [
    [0, 'close_price@1', 'BTC', iso(T0 + 5 * H + 30 * M), '12345'],
    [1, 'regime@1', 'ETH', iso(T0 + 10 * H), 'tampered'],
    [4, 'close_price@1', 'BTC', iso(T0 + 5 * H + 30 * M), '12345'],
    [14, 'close_price@1', 'BTC', iso(T0 + 5 * H + 33 * M), '12345'],
  ])
  const limited = await reproduce(ctx, a.id, '?max_differences=1')
  t.match(limited.reproduction, { different_cells: 4, differences_truncated: true })
  t.equal(limited.reproduction.differences.length, 1)

  // the parent is unchanged; the dataset endpoint streams what the store now holds
  const parent = (await ctx.app.inject({ method: 'GET', url: `/v1/pipeline-runs/${a.id}` })).json()
  t.equal(parent.fingerprint, a.fingerprint)
  const now = await ctx.app.inject({ method: 'GET', url: `/v1/pipeline-runs/${a.id}/dataset?format=csv` })
  t.not(now.body, original)
  t.equal(now.headers['x-dataset-fingerprint'], a.fingerprint)
  t.equal(now.trailers['x-rebuilt-fingerprint'], rep.reproduction.fingerprint, 'the trailer tells the rebuilt one apart')

  // a lost entity row: the rebuild is a row short
  await ctx.sql`DELETE FROM pipeline_run_entities WHERE run_id = ${a.id} AND ord = ${a.row_count - 1}`
  const short = await reproduce(ctx, a.id, '?max_differences=10')
  t.match(short.reproduction, { verdict: 'not_reproducible', row_count: a.row_count - 1, expected_row_count: a.row_count, detail: new RegExp(`has ${a.row_count - 1} rows instead of ${a.row_count}`) })

  const repro = await ctx.app.inject({ method: 'POST', url: `/v1/pipeline-runs/${rep.id}/reproduce` })
  t.equal(repro.statusCode, 409, 'a reproduction is not reproduced itself')
  t.match(repro.json(), { parent_id: a.id })
})

t.test('two runs at once, and runs during heavy ingestion, each reproduce', async (t) => {
  const ctx = await buildTestApp(t, { config: { DB_POOL_MAX: 8 } })
  const ids = await seed(ctx.sql)
  let ingesting = true
  let batches = 0
  const ingest = (async () => {
    // corrections and backfills of the very values the runs read, committed continuously
    while (ingesting) {
      const rows: RawValue[] = []
      for (let i = 0; i < 400; i++) {
        const h = (batches * 7 + i) % 40
        rows.push({ featureId: [ids.price, ids.volume][i % 2], entityId: ['BTC', 'ETH'][(i >> 1) % 2], eventTimeMs: T0 + h * H + (i % 3) * 10 * M, num: batches * 1000 + i })
      }
      await appendValues(ctx.sql, rows)
      batches++
    }
  })()
  const grid = { entities: ['BTC', 'ETH'], from: iso(T0), to: iso(T0 + 39 * H), every: '10m' }
  const runs = []
  try {
    // two at once, then two more while the writes go on
    runs.push(...await Promise.all([
      run(ctx, { name: 'x', features: FEATURES, entity_rows: inlineRows() }),
      run(ctx, { name: 'y', features: ['close_price', 'volume'], grid }),
    ]))
    runs.push(...await Promise.all([
      run(ctx, { name: 'z', features: ['volume', 'close_price'], grid, point_in_time: 'known' }),
      run(ctx, { name: 'w', features: FEATURES, entity_rows: inlineRows().reverse() }),
    ]))
  } finally {
    ingesting = false
    await ingest
  }
  t.ok(batches >= 2, `ingestion ran alongside (${batches} transactions)`)
  for (const r of runs) {
    t.equal(r.status, 'succeeded')
    const rep = await reproduce(ctx, r.id)
    t.equal(rep.reproduction.verdict, 'reproducible', `${r.id} reproduces`)
    t.equal(sha256(await dataset(ctx, r.id)), r.fingerprint)
  }
  const again = await run(ctx, { name: 'y', features: ['close_price', 'volume'], grid })
  t.not(again.fingerprint, runs[1].fingerprint, 'the ingested values changed what a new run sees')
})

t.test('retention: what was dropped is named, not reported as a mismatch', async (t) => {
  const used = Date.UTC(2023, 0, 1)
  t.equal(retentionFinding({ oldestValueUsedMs: used, retention: null, horizonMs: null, oldestRetainedMs: used }), undefined, 'the oldest value used is still kept')
  t.match(retentionFinding({ oldestValueUsedMs: used, retention: '30 days', horizonMs: used + 1, oldestRetainedMs: used }), {
    detail: /older than the retention horizon .*RETENTION=30 days/, facts: { oldest_value_used: iso(used), retention: '30 days', retention_horizon: iso(used + 1) },
  })
  t.match(retentionFinding({ oldestValueUsedMs: used, retention: null, horizonMs: null, oldestRetainedMs: used + 7 * 86_400_000 }), { detail: /chunks holding the older values were dropped/ })
  t.match(retentionFinding({ oldestValueUsedMs: used, retention: null, horizonMs: null, oldestRetainedMs: null }), { detail: /every chunk was dropped/ })

  t.test('on TimescaleDB, after the retention policy dropped the chunks a run used', { skip: timescale ? false : 'needs a TimescaleDB server (TEST_DATABASE_URL): postgres mode has no retention' }, async (t) => {
    const ctx = await buildTestApp(t, { config: { RETENTION: '30 days' } })
    t.equal(ctx.db.storageMode, 'timescaledb')
    // the policy's job must not drop the seeded 2023 chunks on its own before the test does
    await ctx.sql`SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'`
    await seed(ctx.sql)
    const a = await run(ctx, { name: 'a', features: FEATURES, entity_rows: inlineRows() })
    t.equal((await reproduce(ctx, a.id)).reproduction.verdict, 'reproducible', 'while the data is kept, RETENTION alone changes nothing')
    await ctx.sql`SELECT drop_chunks('feature_snapshots', older_than => now() - interval '30 days')`
    const rep = await reproduce(ctx, a.id)
    t.match(rep.reproduction, { verdict: 'data_removed_by_retention', reproducible: false, detail: /retention/, retention: { retention: '30 days', oldest_value_used: /^2023-06-01/ } })
  })
})
