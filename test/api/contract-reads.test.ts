import t from 'tap'
import { buildTestApp, until, type TestContext } from '../lib/helper.js'
import { insertDefinition } from '../lib/fixtures.js'

const H = 3_600_000

async function call (ctx: TestContext, method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown): Promise<{ status: number, body: Record<string, any> }> {
  const res = await ctx.app.inject({ method, url, ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }) })
  return { status: res.statusCode, body: res.json() }
}

async function setUp (t: Parameters<typeof buildTestApp>[0]): Promise<TestContext & { now: number }> {
  const ctx = await buildTestApp(t)
  await insertDefinition(ctx.sql, { name: 'close_price', version: 1 })
  await insertDefinition(ctx.sql, { name: 'close_price', version: 2 })
  await insertDefinition(ctx.sql, { name: 'volume', ttl_ms: 2 * H })
  await insertDefinition(ctx.sql, { name: 'spread' })
  const now = Date.now()
  const ingest = await call(ctx, 'POST', '/v1/values', { rows: [
    { feature: 'close_price@1', entity_id: 'BTC', event_time: now - 3 * H, value: 100 },
    { feature: 'close_price@2', entity_id: 'BTC', event_time: now - 3 * H, value: 200 },
    { feature: 'volume', entity_id: 'BTC', event_time: now - H, value: 5 },
    { feature: 'volume', entity_id: 'ETH', event_time: now - 5 * H, value: 7 },
    { feature: 'spread', entity_id: 'BTC', event_time: now - H, value: 0.5 },
  ] })
  if (ingest.status !== 200) throw new Error(JSON.stringify(ingest.body))
  const created = await call(ctx, 'POST', '/v1/contracts', { name: 'momentum', entity: 'symbol', status: 'active', features: [{ feature: 'close_price@1' }, { feature: 'volume' }] })
  if (created.status !== 201) throw new Error(JSON.stringify(created.body))
  return { ...ctx, now }
}

t.test('online reads and retrievals by contract: the contract\'s features, as a training set of it joins them', async (t) => {
  const ctx = await setUp(t)
  const byFeatures = await call(ctx, 'GET', '/v1/online/BTC?features=close_price@1,volume')
  for (let i = 0; i < 2; i++) { // the second read comes from the cache
    const byContract = await call(ctx, 'GET', '/v1/online/BTC?contract=momentum')
    t.equal(byContract.status, 200, JSON.stringify(byContract.body))
    t.same(byContract.body, { ...byFeatures.body, contract: { name: 'momentum', version: 1 } }, `read ${i + 1}: the contract's features, keyed by its references`)
  }
  t.same(Object.keys(byFeatures.body.values), ['close_price@1', 'volume'])
  t.equal(byFeatures.body.values['close_price@1'].value, 100, 'the version the contract pins')

  const batch = await call(ctx, 'POST', '/v1/online', { entities: ['ETH', 'BTC'], contract: 'momentum@1' })
  t.equal(batch.status, 200, JSON.stringify(batch.body))
  t.same(batch.body.contract, { name: 'momentum', version: 1 })
  t.same(batch.body.results.map((r: any) => [r.entity_id, r.values['close_price@1'].status, r.values.volume.status]), [['ETH', 'NOT_FOUND', 'OUTSIDE_TTL'], ['BTC', 'PRESENT', 'PRESENT']])
  const again = await call(ctx, 'POST', '/v1/online', { entities: ['ETH', 'BTC'], contract: 'momentum@1' })
  t.same(again.body, batch.body, 'the same answer from the cache')

  const asOf = new Date(ctx.now - 2 * H).toISOString()
  const retrieved = await call(ctx, 'POST', '/v1/retrieve', { entities: ['BTC'], contract: 'momentum', as_of: asOf })
  t.equal(retrieved.status, 200, JSON.stringify(retrieved.body))
  t.same(retrieved.body.contract, { name: 'momentum', version: 1 })
  t.same(retrieved.body.features.map((f: any) => f.ref), ['close_price@1', 'volume'])
  const listed = await call(ctx, 'POST', '/v1/retrieve', { entities: ['BTC'], features: ['close_price@1', 'volume'], as_of: asOf })
  t.same(retrieved.body.results, listed.body.results, 'the same values as the features listed')
  t.equal(retrieved.body.results[0].values.volume.status, 'NOT_FOUND', 'volume was not there yet at as_of')

  // serving and training agree: the online answer is the training set's row at T = now
  const training = await ctx.app.inject({ method: 'POST', url: '/v1/training-sets', payload: { contract: 'momentum', entity_rows: [{ entity_id: 'BTC', event_time: Date.now() }, { entity_id: 'ETH', event_time: Date.now() }] } })
  t.equal(training.statusCode, 200, training.body)
  const rows = training.json().rows
  // (a training set names a column by the feature's name when one version of it is joined)
  t.same(rows.map((r: any) => [r.close_price, r.volume]), batch.body.results.map((r: any) => [r.values['close_price@1'].value, r.values.volume.value]).reverse())
})

t.test('an unpinned contract follows its active version; a pinned one stays', async (t) => {
  const ctx = await setUp(t)
  t.equal((await call(ctx, 'GET', '/v1/online/BTC?contract=momentum')).body.contract.version, 1)
  const v2 = await call(ctx, 'POST', '/v1/contracts/momentum/versions', { features: [{ feature: 'close_price' }, { feature: 'spread' }] })
  t.equal(v2.status, 201, JSON.stringify(v2.body))
  const activated = await call(ctx, 'PATCH', '/v1/contracts/momentum@2', { status: 'active' })
  t.equal(activated.status, 200, JSON.stringify(activated.body))
  const latest = await call(ctx, 'GET', '/v1/online/BTC?contract=momentum')
  t.same(latest.body.contract, { name: 'momentum', version: 2 })
  t.same(Object.entries(latest.body.values).map(([k, v]: [string, any]) => [k, v.value]), [['close_price', 200], ['spread', 0.5]])
  const pinned = await call(ctx, 'GET', '/v1/online/BTC?contract=momentum@1')
  t.same(Object.keys(pinned.body.values), ['close_price@1', 'volume'])
  const retrieved = await call(ctx, 'POST', '/v1/retrieve', { entities: ['BTC'], contract: 'momentum', as_of: Date.now() })
  t.same(retrieved.body.features.map((f: any) => `${f.ref}=${f.name}@${f.version}`), ['close_price=close_price@2', 'spread=spread@1'])
})

t.test('contract changes reach the cached reads: at once on the instance that made them, through the notification on the others', async (t) => {
  const ctx = await setUp(t)
  const other = await buildTestApp(t, { url: ctx.url })
  const version = async (c: TestContext, ref: string): Promise<number> => (await call(c, 'GET', `/v1/online/BTC?contract=${ref}`)).body.contract.version
  for (const c of [ctx, other]) {
    t.equal(await version(c, 'momentum'), 1)
    t.equal(await version(c, 'momentum'), 1, 'cached')
  }
  t.equal((await call(ctx, 'POST', '/v1/contracts/momentum/versions', { features: [{ feature: 'spread' }], status: 'active' })).status, 201)
  t.equal(await version(ctx, 'momentum'), 2, 'read-your-writes on the instance that changed it')
  t.ok(await until(async () => await version(other, 'momentum') === 2, 5000), 'the other instance follows')
  t.same(Object.keys((await call(other, 'GET', '/v1/online/BTC?contract=momentum')).body.values), ['spread'])
  t.equal(await version(other, 'momentum@1'), 1, 'a pinned version stays')
  const batch = await call(other, 'POST', '/v1/online', { entities: ['BTC'], contract: 'momentum' })
  t.same(batch.body.contract, { name: 'momentum', version: 2 })

  // a new feature version: the same for references by name
  const byName = async (c: TestContext): Promise<number> => (await call(c, 'POST', '/v1/retrieve', { entities: ['BTC'], features: ['spread'], as_of: Date.now() })).body.features[0].version
  t.equal((await call(ctx, 'GET', '/v1/online/BTC?features=spread')).body.values.spread.value, 0.5)
  const v2 = await call(ctx, 'POST', '/v1/features/spread/versions', { description: 'wider', validation: { min: 0 } })
  t.equal(v2.status, 201, JSON.stringify(v2.body))
  t.equal(await byName(ctx), 2)
  t.equal((await call(ctx, 'GET', '/v1/online/BTC?features=spread')).body.values.spread.status, 'NOT_FOUND', 'the online read resolves spread to its new version at once (no values yet)')
})

t.test('bad requests name the field', async (t) => {
  const ctx = await setUp(t)
  const expectProblem = async (method: 'GET' | 'POST', url: string, payload: unknown, status: number, path: string, rule?: string): Promise<void> => {
    const res = await ctx.app.inject({ method, url, ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }) })
    t.equal(res.statusCode, status, `${method} ${url} ${JSON.stringify(payload)}: ${res.body}`)
    t.match(res.headers['content-type'], /application\/problem\+json/)
    const errors = res.json().errors ?? []
    t.ok(errors.some((e: any) => e.path === path && (rule === undefined || e.rule === rule)), `${path} ${rule ?? ''}: ${res.body}`)
  }
  await expectProblem('GET', '/v1/online/BTC', undefined, 400, '/querystring/features', 'one_of_features_contract')
  await expectProblem('GET', '/v1/online/BTC?features=volume&contract=momentum', undefined, 400, '/querystring/features', 'one_of_features_contract')
  await expectProblem('GET', '/v1/online/BTC?contract=nope', undefined, 422, '/querystring/contract', 'unknown_contract')
  await expectProblem('GET', '/v1/online/BTC?contract=momentum@9', undefined, 422, '/querystring/contract', 'unknown_contract')
  await expectProblem('GET', '/v1/online/BTC?contract=Bad-Name', undefined, 400, '/querystring/contract')
  await expectProblem('GET', '/v1/online/BTC?contract=', undefined, 400, '/querystring/contract')
  await expectProblem('POST', '/v1/online', { entities: ['BTC'] }, 422, '/body/features', 'one_of_features_contract')
  await expectProblem('POST', '/v1/online', { entities: ['BTC'], features: ['volume'], contract: 'momentum' }, 422, '/body/features', 'one_of_features_contract')
  await expectProblem('POST', '/v1/online', { entities: ['BTC'], contract: 'nope' }, 422, '/body/contract', 'unknown_contract')
  await expectProblem('POST', '/v1/retrieve', { entities: ['BTC'], as_of: Date.now() }, 422, '/body/features', 'one_of_features_contract')
  await expectProblem('POST', '/v1/retrieve', { entities: ['BTC'], contract: 'nope', as_of: Date.now() }, 422, '/body/contract', 'unknown_contract')
  // a contract that requires a feature with no active version any more
  await ctx.sql`UPDATE feature_definitions SET status = 'deprecated' WHERE name = 'volume'`
  await expectProblem('POST', '/v1/retrieve', { entities: ['BTC'], contract: 'momentum', as_of: Date.now() }, 422, '/body/contract/1', 'unknown_feature')
  await expectProblem('POST', '/v1/online', { entities: ['BTC'], contract: 'momentum' }, 422, '/body/contract', 'unknown_feature')
})

t.test('a contract larger than a read may be: the same limits as a list of features', async (t) => {
  const ctx = await buildTestApp(t)
  const names = Array.from({ length: 501 }, (_, i) => `f${i}`)
  await ctx.sql`INSERT INTO feature_definitions (name, version, entity, dtype, validation, status) SELECT n, 1, 'symbol', 'float64', '{"nullable": true, "allow_non_finite": false}'::jsonb, 'active' FROM unnest(${names}::text[]) n`
  const make = async (name: string, n: number): Promise<void> => {
    const res = await call(ctx, 'POST', '/v1/contracts', { name, entity: 'symbol', status: 'active', features: names.slice(0, n).map((feature) => ({ feature })) })
    if (res.status !== 201) throw new Error(JSON.stringify(res.body))
  }
  await make('wide', 101)
  await make('widest', 501)
  await make('fits', 100)
  for (const url of ['/v1/online/BTC?contract=wide', '/v1/online/BTC?contract=wide']) { // uncached, then cached
    const res = await call(ctx, 'GET', url)
    t.equal(res.status, 422, JSON.stringify(res.body))
    t.match(res.body.errors, [{ path: '/querystring/contract', rule: 'too_many_features' }])
  }
  const batch = await call(ctx, 'POST', '/v1/online', { entities: ['BTC'], contract: 'wide' })
  t.equal(batch.status, 422)
  t.match(batch.body.errors, [{ path: '/body/contract', rule: 'too_many_features' }])
  t.equal((await call(ctx, 'GET', '/v1/online/BTC?contract=fits')).status, 200)
  t.equal((await call(ctx, 'POST', '/v1/retrieve', { entities: ['BTC'], contract: 'wide', as_of: Date.now() })).status, 200, '101 features: within a retrieval\'s 500')
  const widest = await call(ctx, 'POST', '/v1/retrieve', { entities: ['BTC'], contract: 'widest', as_of: Date.now() })
  t.equal(widest.status, 422)
  t.match(widest.body.errors, [{ path: '/body/contract', rule: 'too_many_features' }])
})
