import t from 'tap'
import { buildTestApp, until, type TestContext } from '../lib/helper.js'
import { appendValues, insertDefinition } from '../lib/fixtures.js'
import { ValueStaging } from '../../db/values.js'

const H = 3_600_000
const T0 = Date.UTC(2023, 5, 1)
const iso = (ms: number): string => new Date(ms).toISOString()

interface Item { entity_id: string, event_time: string, ingested_at: string, ingested_at_us: number, value: unknown, status: string, superseded: boolean }

async function ingest (ctx: TestContext, rows: unknown[]): Promise<string> {
  const res = await ctx.app.inject({ method: 'POST', url: '/v1/values', payload: { rows } })
  if (res.statusCode !== 200) throw new Error(res.body)
  return res.json().ingested_at as string
}

async function history (ctx: TestContext, name: string, q: string): Promise<{ status: number, body: Record<string, any> }> {
  const res = await ctx.app.inject({ method: 'GET', url: `/v1/features/${name}/values${q}` })
  return { status: res.statusCode, body: res.json() }
}

/** Every page of a listing, following next_cursor. */
async function allPages (ctx: TestContext, name: string, q: string): Promise<{ items: Item[], pages: number }> {
  const items: Item[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const { status, body } = await history(ctx, name, `${q}${cursor === null ? '' : `&cursor=${cursor}`}`)
    if (status !== 200) throw new Error(JSON.stringify(body))
    items.push(...body.items as Item[])
    cursor = body.next_cursor
    pages++
  } while (cursor !== null)
  return { items, pages }
}

t.test('corrections: every stored row, which one is superseded, and the history as known at a past cutoff', async (t) => {
  const ctx = await buildTestApp(t)
  await insertDefinition(ctx.sql, { name: 'close_price' })
  const k1 = await ingest(ctx, [
    { feature: 'close_price', entity_id: 'BTC', event_time: iso(T0), value: 100 },
    { feature: 'close_price', entity_id: 'BTC', event_time: iso(T0 + H), value: 110 },
    { feature: 'close_price', entity_id: 'ETH', event_time: iso(T0), value: 10 },
  ])
  const k2 = await ingest(ctx, [{ feature: 'close_price', entity_id: 'BTC', event_time: iso(T0), value: 101 }]) // a correction
  t.ok(k2 > k1)

  const all = await history(ctx, 'close_price', '')
  t.equal(all.status, 200, JSON.stringify(all.body))
  t.same(all.body.feature, { name: 'close_price', version: 1, dtype: 'float64' })
  t.equal(all.body.corrections, 'all')
  t.same(all.body.items.map((i: Item) => [i.entity_id, i.event_time, i.ingested_at, i.value, i.superseded]), [
    ['BTC', iso(T0), k1, 100, true],
    ['BTC', iso(T0), k2, 101, false],
    ['BTC', iso(T0 + H), k1, 110, false],
    ['ETH', iso(T0), k1, 10, false],
  ], 'primary key order; the first BTC row is replaced by the correction')
  t.equal(all.body.next_cursor, null)
  for (const i of all.body.items as Item[]) {
    t.equal(i.ingested_at, iso(Math.ceil(i.ingested_at_us / 1000)), 'ingested_at is the exact stamp rounded up to the ms')
    t.equal(i.status, 'PRESENT')
  }

  const latest = await history(ctx, 'close_price', '?corrections=latest&entity_id=BTC')
  t.same(latest.body.items.map((i: Item) => [i.event_time, i.value, i.superseded]), [[iso(T0), 101, false], [iso(T0 + H), 110, false]])
  t.equal(latest.body.entity_id, 'BTC')
  t.equal(latest.body.stored_under, 'BTC')

  // as the store knew it at k1: the correction is not there, so nothing is superseded
  const then = await history(ctx, 'close_price', `?as_of_system_time=${k1}&entity_id=BTC`)
  t.same(then.body.items.map((i: Item) => [i.event_time, i.value, i.superseded]), [[iso(T0), 100, false], [iso(T0 + H), 110, false]])
  t.equal(then.body.as_of_system_time, k1)
  const before = await history(ctx, 'close_price', `?as_of_system_time=${Date.parse(k1) - 1}`)
  t.same(before.body.items, [], 'nothing was known before the first write')

  // the same rows a point-in-time read chooses from: retrieve at T0 as of k1 and as of now
  const pit = async (k?: string): Promise<unknown> => (await ctx.app.inject({ method: 'POST', url: '/v1/retrieve', payload: { entities: ['BTC'], features: ['close_price'], as_of: iso(T0), ...(k ? { as_of_system_time: k } : {}) } })).json().results[0].values.close_price.value
  t.equal(await pit(k1), 100)
  t.equal(await pit(), 101)

  // event_time range: [from, to)
  const range = await history(ctx, 'close_price', `?from=${iso(T0 + 1)}&to=${T0 + 2 * H}`)
  t.same(range.body.items.map((i: Item) => [i.entity_id, i.event_time]), [['BTC', iso(T0 + H)]])
  t.equal(range.body.from, iso(T0 + 1))
  t.equal(range.body.to, iso(T0 + 2 * H))
  const exclusive = await history(ctx, 'close_price', `?from=${iso(T0)}&to=${iso(T0 + H)}&entity_id=BTC`)
  t.same(exclusive.body.items.map((i: Item) => i.value), [100, 101], 'to is exclusive, from inclusive')
})

t.test('pages follow the primary key across entities, corrections and equal event times', async (t) => {
  const ctx = await buildTestApp(t)
  const f = await insertDefinition(ctx.sql, { name: 'volume' })
  const rows = []
  for (const e of ['A', 'B', 'C']) for (let h = 0; h < 7; h++) rows.push({ featureId: f, entityId: e, eventTimeMs: T0 + h * H, num: h })
  await appendValues(ctx.sql, rows)
  // corrections of a few keys, in two more transactions (three ingested_at stamps)
  await appendValues(ctx.sql, [{ featureId: f, entityId: 'A', eventTimeMs: T0, num: 10 }, { featureId: f, entityId: 'B', eventTimeMs: T0 + 6 * H, num: 16 }])
  await appendValues(ctx.sql, [{ featureId: f, entityId: 'A', eventTimeMs: T0, num: 20 }])

  const whole = await history(ctx, 'volume', '?limit=10000')
  t.equal(whole.body.items.length, 24)
  const sorted = [...whole.body.items as Item[]].sort((a, b) => a.entity_id.localeCompare(b.entity_id) || Date.parse(a.event_time) - Date.parse(b.event_time) || a.ingested_at_us - b.ingested_at_us)
  t.same(whole.body.items, sorted, 'ordered by entity, event_time, ingested_at')
  t.same((whole.body.items as Item[]).filter((i) => i.superseded).map((i) => [i.entity_id, i.value]), [['A', 0], ['A', 10], ['B', 6]])

  for (const limit of [1, 2, 3, 5, 23, 24]) {
    const { items, pages } = await allPages(ctx, 'volume', `?limit=${limit}`)
    t.same(items, whole.body.items, `pages of ${limit} give the same rows`)
    t.equal(pages, Math.ceil(24 / limit), `${pages} pages of ${limit}`)
  }
  const latest = await allPages(ctx, 'volume', '?limit=4&corrections=latest')
  t.same(latest.items, (whole.body.items as Item[]).filter((i) => !i.superseded), 'latest: the rows not superseded, paged')
  const one = await allPages(ctx, 'volume', '?limit=2&entity_id=B&from=2023-06-01T03:00:00Z')
  t.same(one.items.map((i) => i.value), [3, 4, 5, 6, 16])
})

t.test('values of every dtype, nulls, non-finite numbers, versions and market-wide features', async (t) => {
  const ctx = await buildTestApp(t)
  const f1 = await insertDefinition(ctx.sql, { name: 'spread', validation: { allow_non_finite: true } })
  const f2 = await insertDefinition(ctx.sql, { name: 'spread', version: 2 })
  const flag = await insertDefinition(ctx.sql, { name: 'halted', dtype: 'bool' })
  const count = await insertDefinition(ctx.sql, { name: 'trades', dtype: 'int64' })
  const label = await insertDefinition(ctx.sql, { name: 'regime', dtype: 'string' })
  await appendValues(ctx.sql, [
    { featureId: f1, entityId: 'BTC', eventTimeMs: T0, num: Number.NaN },
    { featureId: f1, entityId: 'BTC', eventTimeMs: T0 + 1, num: Number.POSITIVE_INFINITY },
    { featureId: f1, entityId: 'BTC', eventTimeMs: T0 + 2, num: null },
    { featureId: f2, entityId: 'BTC', eventTimeMs: T0, num: 2.5 },
    { featureId: flag, entityId: 'BTC', eventTimeMs: T0, num: 1 },
    { featureId: count, entityId: 'BTC', eventTimeMs: T0, num: 2 ** 53 - 1 },
    { featureId: label, entityId: 'BTC', eventTimeMs: T0, text: 'a "quoted", multi\nline label' },
  ])
  const v1 = await history(ctx, 'spread', '?version=1')
  t.same(v1.body.items.map((i: Item) => [i.value, i.status]), [['NaN', 'PRESENT'], ['Infinity', 'PRESENT'], [null, 'NULL_VALUE']])
  const current = await history(ctx, 'spread', '')
  t.same(current.body.feature, { name: 'spread', version: 2, dtype: 'float64' }, 'the latest active version by default')
  t.same(current.body.items.map((i: Item) => i.value), [2.5])
  t.same((await history(ctx, 'halted', '')).body.items.map((i: Item) => i.value), [true])
  t.same((await history(ctx, 'trades', '')).body.items.map((i: Item) => i.value), [2 ** 53 - 1])
  t.same((await history(ctx, 'regime', '')).body.items.map((i: Item) => i.value), ['a "quoted", multi\nline label'])

  // a market-wide feature: every entity reads the values of its shared entity id
  const created = await ctx.app.inject({ method: 'POST', url: '/v1/features', payload: { name: 'btc_dominance', entity: 'symbol', dtype: 'float64', shared_entity_id: 'MARKET' } })
  t.equal(created.statusCode, 201, created.body)
  await ingest(ctx, [{ feature: 'btc_dominance', entity_id: 'MARKET', event_time: iso(T0), value: 46.5 }])
  const market = await history(ctx, 'btc_dominance', '?entity_id=ETHUSDT')
  t.equal(market.body.entity_id, 'ETHUSDT')
  t.equal(market.body.stored_under, 'MARKET')
  t.same(market.body.items.map((i: Item) => [i.entity_id, i.value]), [['MARKET', 46.5]])
})

t.test('bad requests are 4xx problems naming the field', async (t) => {
  const ctx = await buildTestApp(t)
  await insertDefinition(ctx.sql, { name: 'close_price' })
  await insertDefinition(ctx.sql, { name: 'retired', status: 'deprecated' })
  const expectProblem = async (q: string, status: number, field: string | undefined, name = 'close_price'): Promise<void> => {
    const res = await ctx.app.inject({ method: 'GET', url: `/v1/features/${name}/values${q}` })
    t.equal(res.statusCode, status, `${name}${q}: ${res.body}`)
    t.match(res.headers['content-type'], /application\/problem\+json/)
    if (field !== undefined) t.ok(JSON.stringify(res.json()).includes(field), `${q} names ${field}: ${res.body}`)
  }
  await expectProblem('?from=yesterday', 400, 'from')
  await expectProblem('?to=2023-06-01T00:00:00', 400, 'to')
  await expectProblem('?as_of_system_time=2023-06-01T00:00:00.0001Z', 400, 'as_of_system_time')
  await expectProblem('?from=2023-06-02T00:00:00Z&to=2023-06-01T00:00:00Z', 400, 'to')
  await expectProblem('?from=2023-06-01T00:00:00Z&to=2023-06-01T00:00:00Z', 400, 'to')
  await expectProblem('?limit=0', 400, 'limit')
  await expectProblem('?limit=10001', 400, 'limit')
  await expectProblem('?corrections=some', 400, 'corrections')
  await expectProblem('?version=0', 400, 'version')
  await expectProblem('?version=99999999999', 400, 'version')
  await expectProblem('?colour=red', 400, 'colour')
  await expectProblem('?entity_id=', 400, 'entity_id')
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')
  for (const cursor of ['nonsense', b64([1, 2, 3]), b64(['A', 1e300, 0, 5, T0]), b64(['A', 0, 0, -1, T0]), b64(['A', 0, 1000, 1, T0]), b64(['A', 0, 0, 1, 1e300]), b64(['A', 0, 0, 1]),
    b64(['A\u0000', 0, 0, 1, T0]), b64(['A'.repeat(300), 0, 0, 1, T0]), b64({ k: 1 })]) {
    await expectProblem(`?cursor=${cursor}`, 400, 'cursor')
  }
  await expectProblem('', 404, undefined, 'no_such_feature')
  await expectProblem('?version=2', 404, undefined)
  await expectProblem('', 404, undefined, 'retired')
  const old = await ctx.app.inject({ method: 'GET', url: '/v1/features/retired/values?version=1' })
  t.equal(old.statusCode, 200, 'a deprecated version is still readable by its number')
  await expectProblem('', 400, 'name', 'Bad-Name')
  // an entity id PostgreSQL cannot store matches nothing rather than failing
  const nul = await ctx.app.inject({ method: 'GET', url: '/v1/features/close_price/values?entity_id=A%00B' })
  t.ok(nul.statusCode === 200 || nul.statusCode === 400, `NUL in entity_id: ${nul.statusCode}`)
})

t.test('needs the read scope when authentication is on', async (t) => {
  const ctx = await buildTestApp(t, { auth: true })
  await insertDefinition(ctx.sql, { name: 'close_price' })
  const anonymous = await ctx.app.inject({ method: 'GET', url: '/v1/features/close_price/values' })
  t.equal(anonymous.statusCode, 401)
  const { key } = await ctx.app.services.apiKeys.create({ name: 'reader', scopes: ['read'] }, null)
  const read = await ctx.app.inject({ method: 'GET', url: '/v1/features/close_price/values', headers: { authorization: `Bearer ${key}` } })
  t.equal(read.statusCode, 200, read.body)
})

t.test('as_of_system_time is a sound cutoff: the same K shows the same rows, as retrievals at K do', async (t) => {
  const ctx = await buildTestApp(t)
  const f = await insertDefinition(ctx.sql, { name: 'close_price' })
  await appendValues(ctx.sql, [{ featureId: f, entityId: 'A', eventTimeMs: T0, num: 1 }])
  // a correction stamped but not committed yet
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  let stamped!: () => void
  const isStamped = new Promise<void>((resolve) => { stamped = resolve })
  const writer = ctx.sql.begin(async (tx) => {
    const staging = new ValueStaging(tx)
    await staging.open()
    await staging.add({ featureId: f, entityId: 'A', eventTimeMs: T0, num: 2, text: null })
    const result = await staging.commit()
    stamped()
    await gate
    return result
  })
  await isStamped
  await new Promise((resolve) => setTimeout(resolve, 20))
  const k = Date.now()
  const first = ctx.app.inject({ method: 'GET', url: `/v1/features/close_price/values?entity_id=A&as_of_system_time=${k}` })
  await new Promise((resolve) => setTimeout(resolve, 200))
  release()
  await writer
  const before = (await first).json()
  const after = (await ctx.app.inject({ method: 'GET', url: `/v1/features/close_price/values?entity_id=A&as_of_system_time=${k}` })).json()
  t.same(before.items.map((i: Item) => [i.value, i.superseded]), [[1, true], [2, false]], 'the read waited for the write stamped before K')
  t.same(after.items, before.items, 'the same K, the same history')
  t.equal(before.as_of_system_time, iso(k))

  const future = (await ctx.app.inject({ method: 'GET', url: '/v1/features/close_price/values?as_of_system_time=9999-01-01T00:00:00Z' })).json()
  t.ok(Date.parse(future.as_of_system_time) <= Date.now(), 'a cutoff later than now is now')
})

t.test('the pages of one listing show one state of the store (the cursor keeps the first page\'s cutoff)', async (t) => {
  const ctx = await buildTestApp(t)
  const f = await insertDefinition(ctx.sql, { name: 'close_price' })
  await appendValues(ctx.sql, [{ featureId: f, entityId: 'A', eventTimeMs: T0, num: 1 }, { featureId: f, entityId: 'A', eventTimeMs: T0 + 1, num: 5 }])
  const p1 = (await history(ctx, 'close_price', '?corrections=latest&limit=1')).body
  await appendValues(ctx.sql, [{ featureId: f, entityId: 'A', eventTimeMs: T0, num: 2 }, { featureId: f, entityId: 'B', eventTimeMs: T0, num: 9 }])
  const p2 = (await history(ctx, 'close_price', `?corrections=latest&limit=10&cursor=${p1.next_cursor}`)).body
  t.equal(p2.as_of_system_time, p1.as_of_system_time)
  t.same([...p1.items, ...p2.items].map((i: Item) => [i.entity_id, i.value]), [['A', 1], ['A', 5]], 'written after the first page: in none of its pages')
  const fresh = (await history(ctx, 'close_price', '?corrections=latest')).body
  t.same(fresh.items.map((i: Item) => [i.entity_id, i.value]), [['A', 2], ['A', 5], ['B', 9]], 'a new listing sees them')
})

t.test('rows written by hand with sub-millisecond event times are paged exactly', async (t) => {
  const ctx = await buildTestApp(t)
  const f = await insertDefinition(ctx.sql, { name: 'close_price' })
  await ctx.sql`INSERT INTO feature_snapshots (feature_id, entity_id, event_time, ingested_at, value_num) VALUES
    (${f}, 'A', '2023-06-01T00:00:00.0006Z', '2023-07-01T00:00:00Z', 1),
    (${f}, 'A', '2023-06-01T00:00:00.0006Z', '2023-07-02T00:00:00Z', 2),
    (${f}, 'A', '2023-06-01T00:00:00.0004Z', '2023-07-01T00:00:00Z', 3),
    (${f}, 'A', '1969-12-31T23:59:59.9995Z', '2023-07-01T00:00:00Z', 4)`
  for (const limit of [1, 2, 3]) {
    const { items, pages } = await allPages(ctx, 'close_price', `?limit=${limit}`)
    t.same(items.map((i) => i.value), [4, 3, 1, 2], `pages of ${limit}: every row once, in order`)
    t.equal(pages, Math.ceil(4 / limit))
  }
  const one = (await history(ctx, 'close_price', '')).body
  t.same(one.items.map((i: Item) => [i.event_time, i.superseded]), [['1969-12-31T23:59:59.999Z', false], ['2023-06-01T00:00:00.000Z', false], ['2023-06-01T00:00:00.000Z', true], ['2023-06-01T00:00:00.000Z', false]], 'event_time shown to the millisecond (rounded down)')
})

t.test('NDJSON and CSV stream every row of the listing, at its cutoff, in the order of the pages', async (t) => {
  const ctx = await buildTestApp(t)
  const f = await insertDefinition(ctx.sql, { name: 'regime', dtype: 'string' })
  const g = await insertDefinition(ctx.sql, { name: 'spread', validation: { allow_non_finite: true } })
  const rows = []
  for (let e = 0; e < 3; e++) for (let h = 0; h < 4000; h++) rows.push({ featureId: f, entityId: `E${e}`, eventTimeMs: T0 + h * H, text: h % 500 === 0 ? 'a "quoted", label' : `r${h % 7}` })
  await appendValues(ctx.sql, rows)
  await appendValues(ctx.sql, [{ featureId: f, entityId: 'E1', eventTimeMs: T0, text: '' }, { featureId: f, entityId: 'E1', eventTimeMs: T0 + H, text: null }])
  await appendValues(ctx.sql, [{ featureId: g, entityId: 'A', eventTimeMs: T0, num: Number.NaN }, { featureId: g, entityId: 'A', eventTimeMs: T0 + 1, num: -Infinity }])

  // the JSON pages, all of them: what the streams must hold
  const { items } = await allPages(ctx, 'regime', '?limit=10000')
  t.equal(items.length, 12_002)
  const ndjson = await ctx.app.inject({ method: 'GET', url: '/v1/features/regime/values', headers: { accept: 'application/x-ndjson' } })
  t.equal(ndjson.statusCode, 200, ndjson.body.slice(0, 500))
  t.match(ndjson.headers['content-type'], /application\/x-ndjson/)
  t.equal(ndjson.headers['x-feature-version'], 'regime@1')
  t.ok(Date.parse(ndjson.headers['x-as-of-system-time'] as string) <= Date.now())
  const streamed = ndjson.body.trimEnd().split('\n').map((l) => JSON.parse(l))
  t.same(streamed, items, 'NDJSON: every row, as the pages list them (one statement, read in batches of 10,000)')

  const csv = await ctx.app.inject({ method: 'GET', url: '/v1/features/regime/values?entity_id=E1&to=2023-06-01T02:00:00Z', headers: { accept: 'text/csv' } })
  t.equal(csv.statusCode, 200)
  t.match(csv.headers['content-type'], /text\/csv/)
  const lines = csv.body.trimEnd().split('\n')
  t.equal(lines[0], 'entity_id,event_time,ingested_at,ingested_at_us,value,status,superseded')
  const e1 = items.filter((i) => i.entity_id === 'E1' && Date.parse(i.event_time) < T0 + 2 * H)
  t.same(lines.slice(1), e1.map((i) => `E1,${i.event_time},${i.ingested_at},${i.ingested_at_us},${i.value === null ? '' : i.value === '' ? '""' : i.value === 'a "quoted", label' ? '"a ""quoted"", label"' : String(i.value)},${i.status},${String(i.superseded)}`))
  t.same(lines.slice(1).map((l) => /^E1,[^,]+,[^,]+,\d+,(.*),(PRESENT|NULL_VALUE),(true|false)$/.exec(l)?.[1]), ['"a ""quoted"", label"', '""', 'r1', ''], 'quoted text, an empty string, a null')

  const nonFinite = await ctx.app.inject({ method: 'GET', url: '/v1/features/spread/values', headers: { accept: 'text/csv' } })
  t.same(nonFinite.body.trimEnd().split('\n').slice(1).map((l) => l.split(',')[4]), ['NaN', '-Infinity'])

  // after a cursor: the rest of the listing, at the cursor's cutoff
  const first = (await history(ctx, 'regime', '?limit=5000&corrections=latest')).body
  const rest = await ctx.app.inject({ method: 'GET', url: `/v1/features/regime/values?corrections=latest&cursor=${first.next_cursor}`, headers: { accept: 'application/x-ndjson' } })
  const latest = (await allPages(ctx, 'regime', '?limit=10000&corrections=latest')).items
  t.same([...first.items, ...rest.body.trimEnd().split('\n').map((l) => JSON.parse(l))], latest, 'a page, then the rest streamed: the whole listing')
  t.equal(rest.headers['x-as-of-system-time'], first.as_of_system_time)

  const empty = await ctx.app.inject({ method: 'GET', url: '/v1/features/regime/values?entity_id=NONE', headers: { accept: 'text/csv' } })
  t.equal(empty.body, 'entity_id,event_time,ingested_at,ingested_at_us,value,status,superseded\n', 'no rows: the header alone')
  const bad = await ctx.app.inject({ method: 'GET', url: '/v1/features/regime/values?from=soon', headers: { accept: 'text/csv' } })
  t.equal(bad.statusCode, 400, 'a bad request is a problem before anything is streamed')
  t.match(bad.headers['content-type'], /application\/problem\+json/)
  const refused = await ctx.app.inject({ method: 'GET', url: '/v1/features/regime/values', headers: { accept: 'image/png' } })
  t.equal(refused.statusCode, 406)
})

t.test('a client hanging up in the middle of a streamed history: its statement ends, the pool goes on', async (t) => {
  // one pooled connection: a statement left open would hold it, and every later query would wait
  const ctx = await buildTestApp(t, { config: { DB_POOL_MAX: 1 } })
  const f = await insertDefinition(ctx.sql, { name: 'volume' })
  await ctx.sql`INSERT INTO feature_snapshots (feature_id, entity_id, event_time, ingested_at, value_num)
    SELECT ${f}, 'E' || e, timestamptz '2023-01-01' + h * interval '1 hour', now() - interval '1 minute', h FROM generate_series(1, 20) e, generate_series(1, 10000) h`
  await ctx.app.listen({ port: 0, host: '127.0.0.1' })
  const port = (ctx.app.server.address() as import('node:net').AddressInfo).port
  const net = await import('node:net')
  let got = 0
  await new Promise<void>((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write('GET /v1/features/volume/values HTTP/1.1\r\nHost: x\r\nAccept: application/x-ndjson\r\n\r\n')
    })
    socket.on('data', (d: Buffer) => {
      got += d.length
      if (got > 100_000) { socket.destroy(); resolve() }
    })
    socket.on('error', reject)
  })
  t.ok(got > 100_000, 'the stream had begun')
  const idle = await until(async () => {
    const [{ n }] = await ctx.sql<Array<{ n: number }>>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state <> 'idle' AND query LIKE '%lead(s.entity_id)%' AND pid <> pg_backend_pid()`
    return n === 0
  }, 5000)
  t.ok(idle, 'no history statement left running')
  for (let i = 0; i < 3; i++) {
    const res = await ctx.app.inject({ method: 'GET', url: '/v1/features/volume/values?limit=1' })
    t.equal(res.statusCode, 200, 'the service answers on its one connection')
    t.equal(res.json().items.length, 1)
  }
})
