import t, { type Test } from 'tap'
import { buildTestApp, type TestContext } from '../lib/helper.js'
import { appendValues, insertDefinition } from '../lib/fixtures.js'

const H = 3_600_000
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const monitor = (over: Record<string, unknown> = {}) => ({
  name: 'volume_daily', feature: 'volume', entity_id: 'BTC',
  reference: { offset: '1d', length: '2d' }, current: { offset: '0s', length: '1d' },
  methods: ['psi', 'ks'], schedule: { every: '1h' }, ...over,
})

/** `volume` with a value every half hour for the last 4 days (BTC), so windows relative to now have data. */
async function withData (t: Test, opts: { logger?: Record<string, unknown> } = {}): Promise<TestContext & { f: number }> {
  const ctx = await buildTestApp(t, opts)
  const f = await insertDefinition(ctx.sql, { name: 'volume' })
  await insertDefinition(ctx.sql, { name: 'label', dtype: 'string' })
  const now = Date.now()
  await appendValues(ctx.sql, Array.from({ length: 192 }, (_, i) => ({ featureId: f, entityId: 'BTC', eventTimeMs: now - (i + 0.5) * H / 2, num: 100 + (i % 10) + (i < 48 ? 20 : 0) })))
  return { ...ctx, f }
}

async function checksOf (ctx: TestContext, monitorId: number): Promise<Array<{ check_id: string, tick: string, n: number }>> {
  return [...await ctx.sql<Array<{ check_id: string, tick: string, n: number }>>`
    SELECT check_id::text, details ->> 'tick' AS tick, count(*)::int8 AS n
    FROM feature_drift_logs WHERE monitor_id = ${monitorId} GROUP BY 1, 2 ORDER BY 2`]
}

t.test('monitors: create, read, list, change, delete', async (t) => {
  const ctx = await withData(t)
  const created = await ctx.app.inject({ method: 'POST', url: '/v1/drift/monitors', payload: monitor() })
  t.equal(created.statusCode, 201, created.body)
  const m = created.json()
  t.equal(created.headers.location, `/v1/drift/monitors/${m.id}`)
  t.match(m, {
    name: 'volume_daily', feature: 'volume', entity_id: 'BTC', enabled: true, runs: 0, last_run: null,
    reference: { offset: '1d', length: '2d' }, current: { offset: '0s', length: '1d' }, schedule: { every: '1h' },
    methods: ['psi', 'ks'], thresholds: { psi: 0.2, ks: 0.05, js: 0.1, wasserstein: 0.1 },
  })
  t.ok(Math.abs(Date.parse(m.next_run_at) - Date.now()) < 60_000, 'the first tick is due at once')

  const dup = await ctx.app.inject({ method: 'POST', url: '/v1/drift/monitors', payload: monitor() })
  t.equal(dup.statusCode, 409)
  t.match(dup.json().detail, /volume_daily/)

  t.same((await ctx.app.inject({ method: 'GET', url: `/v1/drift/monitors/${m.id}` })).json(), m)
  const second = (await ctx.app.inject({ method: 'POST', url: '/v1/drift/monitors', payload: monitor({ name: 'all_entities', entity_id: undefined, enabled: false, thresholds: { psi: 0.3 } }) })).json()
  t.equal(second.entity_id, null)
  t.equal(second.thresholds.psi, 0.3)
  t.equal((await ctx.app.inject({ method: 'GET', url: '/v1/drift/monitors' })).json().items.length, 2)
  t.equal((await ctx.app.inject({ method: 'GET', url: '/v1/drift/monitors?enabled=false' })).json().items[0].name, 'all_entities')
  t.equal((await ctx.app.inject({ method: 'GET', url: '/v1/drift/monitors?feature=other' })).json().items.length, 0)
  const page1 = (await ctx.app.inject({ method: 'GET', url: '/v1/drift/monitors?limit=1' })).json()
  t.equal(page1.items.length, 1)
  const page2 = (await ctx.app.inject({ method: 'GET', url: `/v1/drift/monitors?limit=1&cursor=${page1.next_cursor}` })).json()
  t.equal(page2.items[0].name, 'all_entities')
  t.equal(page2.next_cursor, null)

  // change: schedule and entity; a new schedule is due at once
  await ctx.sql`UPDATE drift_monitors SET next_run_at = now() + interval '5 hours' WHERE id = ${m.id}`
  const patched = await ctx.app.inject({ method: 'PATCH', url: `/v1/drift/monitors/${m.id}`, payload: { schedule: { every: '30m' }, entity_id: null, description: 'hourly volume' } })
  t.equal(patched.statusCode, 200, patched.body)
  t.match(patched.json(), { schedule: { every: '30m' }, entity_id: null, description: 'hourly volume', name: 'volume_daily', methods: ['psi', 'ks'] })
  t.ok(Date.parse(patched.json().next_run_at) < Date.now() + 60_000, 'rescheduled to now')
  const sameSchedule = (await ctx.app.inject({ method: 'PATCH', url: `/v1/drift/monitors/${m.id}`, payload: { methods: ['js'] } })).json()
  t.equal(sameSchedule.next_run_at, patched.json().next_run_at, 'other changes keep the schedule')
  t.equal((await ctx.app.inject({ method: 'PATCH', url: `/v1/drift/monitors/${m.id}`, payload: { name: 'all_entities' } })).statusCode, 409)

  const del = await ctx.app.inject({ method: 'DELETE', url: `/v1/drift/monitors/${m.id}` })
  t.equal(del.statusCode, 204)
  t.equal((await ctx.app.inject({ method: 'GET', url: `/v1/drift/monitors/${m.id}` })).statusCode, 404)
  t.equal((await ctx.app.inject({ method: 'DELETE', url: `/v1/drift/monitors/${m.id}` })).statusCode, 404)
  t.equal((await ctx.app.inject({ method: 'PATCH', url: `/v1/drift/monitors/${m.id}`, payload: { enabled: true } })).statusCode, 404)
})

t.test('monitors: bad input is a 4xx naming the field', async (t) => {
  const ctx = await withData(t)
  const cases: Array<[string, Record<string, unknown>, number, RegExp]> = [
    ['unknown feature', monitor({ feature: 'nope' }), 422, /nope/],
    ['string feature', monitor({ feature: 'label' }), 422, /numeric/],
    ['too frequent', monitor({ schedule: { every: '500ms' } }), 422, /schedule\/every.*at least 1s/],
    ['zero length', monitor({ current: { offset: '0s', length: '0s' } }), 422, /current\/length/],
    ['not a duration', monitor({ reference: { offset: '7 days', length: '1d' } }), 400, /reference\/offset/],
    ['bad name', monitor({ name: 'Volume Daily' }), 400, /name/],
    ['unknown method', monitor({ methods: ['chi2'] }), 400, /methods/],
    ['bad threshold', monitor({ thresholds: { js: 3 } }), 400, /thresholds\/js/],
    ['infinite threshold', monitor({ thresholds: { psi: 'Infinity' } }), 400, /thresholds\/psi/],
    ['bad entity id', monitor({ entity_id: 'a\u0000b' }), 422, /entity_id/],
    ['no schedule', { ...monitor(), schedule: undefined }, 400, /schedule/],
    ['unknown field', monitor({ colour: 'red' }), 400, /colour/],
  ]
  for (const [name, payload, status, detail] of cases) {
    const res = await ctx.app.inject({ method: 'POST', url: '/v1/drift/monitors', payload })
    t.equal(res.statusCode, status, `${name}: ${res.body.slice(0, 200)}`)
    t.match(res.body, detail, name)
  }
  const ok = (await ctx.app.inject({ method: 'POST', url: '/v1/drift/monitors', payload: monitor() })).json()
  t.equal((await ctx.app.inject({ method: 'PATCH', url: `/v1/drift/monitors/${ok.id}`, payload: {} })).statusCode, 400, 'an empty change')
  t.equal((await ctx.app.inject({ method: 'PATCH', url: `/v1/drift/monitors/${ok.id}`, payload: { feature: 'label' } })).statusCode, 422)
  t.equal((await ctx.app.inject({ method: 'GET', url: '/v1/drift/monitors/abc' })).statusCode, 400)
  t.equal((await ctx.app.inject({ method: 'GET', url: '/v1/drift/monitors?cursor=%%%' })).statusCode, 400)
  t.equal((await ctx.app.inject({ method: 'GET', url: '/v1/drift/monitors' })).json().items.length, 1, 'nothing else was created')
})

t.test('two instances: each tick runs exactly once; missed ticks run once; windows are relative to the run', async (t) => {
  const ctx = await withData(t)
  const hourly = (await ctx.app.inject({ method: 'POST', url: '/v1/drift/monitors', payload: monitor() })).json()
  const missed = (await ctx.app.inject({ method: 'POST', url: '/v1/drift/monitors', payload: monitor({ name: 'missed', schedule: { every: '1h' } }) })).json()
  const off = (await ctx.app.inject({ method: 'POST', url: '/v1/drift/monitors', payload: monitor({ name: 'off', enabled: false }) })).json()
  // "missed": due 10.5 hours ago, as if every instance had been down since
  await ctx.sql`UPDATE drift_monitors SET next_run_at = now() - interval '10 hours 30 minutes' WHERE id = ${missed.id}`
  const [{ due }] = await ctx.sql<{ due: Date }[]>`SELECT next_run_at AS due FROM drift_monitors WHERE id = ${missed.id}`

  const config = { MONITOR_POLL_MS: 100, STATS_REFRESH_SECONDS: 3600 }
  const a = await buildTestApp(t, { url: ctx.url, backgroundJobs: true, config })
  const b = await buildTestApp(t, { url: ctx.url, backgroundJobs: true, config })
  await sleep(1500)

  const hourlyChecks = await checksOf(ctx, hourly.id)
  t.equal(hourlyChecks.length, 1, 'the due tick ran once, by one of the two instances')
  t.equal(hourlyChecks[0].n, 2, 'one log row per method')
  const missedChecks = await checksOf(ctx, missed.id)
  t.equal(missedChecks.length, 1, 'ten missed ticks ran once, not ten times')
  t.equal(missedChecks[0].tick, due.toISOString())
  t.equal((await checksOf(ctx, off.id)).length, 0, 'a disabled monitor does not run')

  const after = (await a.app.inject({ method: 'GET', url: `/v1/drift/monitors/${missed.id}` })).json()
  const next = Date.parse(after.next_run_at)
  t.ok(next > Date.now() && next <= Date.now() + H, 'the next tick is the first slot after now')
  t.equal((next - due.getTime()) % H, 0, 'on the schedule of the missed tick')
  t.equal(after.runs, 1)
  t.match(after.last_run, { status: 'ok', error: null })
  t.equal(after.last_run.check_id, missedChecks[0].check_id)

  // the windows: reference [now - 3d, now - 1d), current [now - 1d, now)
  const [log] = await ctx.sql<Array<{ reference: { from: string, to: string, count: number }, current: { from: string, to: string, count: number }, checked_at: Date }>>`
    SELECT reference, current, checked_at FROM feature_drift_logs WHERE monitor_id = ${hourly.id} LIMIT 1`
  const ranAt = log.checked_at.getTime()
  t.ok(Math.abs(Date.parse(log.current.to) - ranAt) < 5000, 'current window ends at the run')
  t.equal(Date.parse(log.current.to) - Date.parse(log.current.from), 24 * H)
  t.equal(Date.parse(log.current.to) - Date.parse(log.reference.to), 24 * H, 'reference ends a day earlier')
  t.equal(Date.parse(log.reference.to) - Date.parse(log.reference.from), 48 * H)
  t.equal(log.current.count, 48)
  t.equal(log.reference.count, 96)

  // a schedule of 1s with both instances running: one check per tick, ticks a second apart
  const fast = (await a.app.inject({ method: 'POST', url: '/v1/drift/monitors', payload: monitor({ name: 'fast', schedule: { every: '1s' } }) })).json()
  await sleep(3300)
  await b.app.close()
  await a.app.services.monitors.stop()
  const fastChecks = await checksOf(ctx, fast.id)
  t.ok(fastChecks.length >= 3 && fastChecks.length <= 5, `${fastChecks.length} ticks in 3.3 s`)
  t.equal(new Set(fastChecks.map((c) => c.tick)).size, fastChecks.length, 'no tick ran twice')
  const ticks = fastChecks.map((c) => Date.parse(c.tick))
  for (let i = 1; i < ticks.length; i++) t.equal((ticks[i] - ticks[0]) % 1000, 0, 'ticks on the 1s schedule')
  const [{ runs }] = await ctx.sql<{ runs: number }[]>`SELECT runs FROM drift_monitors WHERE id = ${fast.id}`
  t.equal(runs, fastChecks.length, 'runs counts the ticks run')

  // enabling the disabled one runs it at the next look
  await ctx.app.inject({ method: 'PATCH', url: `/v1/drift/monitors/${off.id}`, payload: { enabled: true } })
  t.equal(await ctx.app.services.monitors.tick(), 1, 'a look in this instance runs the re-enabled monitor')
  t.equal((await checksOf(ctx, off.id)).length, 1)
})

t.test('a monitor whose feature went away records the error and keeps its schedule', async (t) => {
  const ctx = await withData(t)
  const m = (await ctx.app.inject({ method: 'POST', url: '/v1/drift/monitors', payload: monitor() })).json()
  await ctx.sql`UPDATE feature_definitions SET status = 'deprecated' WHERE name = 'volume'`
  t.equal(await ctx.app.services.monitors.tick(), 1)
  const after = (await ctx.app.inject({ method: 'GET', url: `/v1/drift/monitors/${m.id}` })).json()
  t.match(after.last_run, { status: 'error', check_id: null, error: /volume/ })
  t.ok(Date.parse(after.next_run_at) > Date.now(), 'the tick is spent')
  t.equal(await ctx.app.services.monitors.tick(), 0, 'nothing due until the next slot')
})

t.test('a drifting monitor warns once when drift starts, not on every tick', async (t) => {
  const lines: Array<{ level: number, msg: string, monitor?: string }> = []
  const ctx = await withData(t, { logger: { level: 'info', stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } } })
  const m = (await ctx.app.inject({ method: 'POST', url: '/v1/drift/monitors', payload: monitor({ schedule: { every: '1s' } }) })).json()
  const tick = async (): Promise<Array<[number, string]>> => {
    lines.length = 0
    await ctx.sql`UPDATE drift_monitors SET next_run_at = now() WHERE id = ${m.id}`
    t.equal(await ctx.app.services.monitors.tick(), 1)
    return lines.filter((l) => l.monitor === 'volume_daily').map((l) => [l.level, l.msg])
  }
  // the last day is 20 higher than the two before it: drift
  t.same(await tick(), [[40, 'drift monitor: drift detected']], 'a warning when it starts')
  t.same(await tick(), [[30, 'drift monitor: drift continues']], 'info while it lasts')
  t.same(await tick(), [[30, 'drift monitor: drift continues']])
  // two windows of the same level: no drift
  const patched = await ctx.app.inject({ method: 'PATCH', url: `/v1/drift/monitors/${m.id}`, payload: { reference: { offset: '2d', length: '1d' }, current: { offset: '1d', length: '1d' } } })
  t.equal(patched.statusCode, 200, patched.body)
  t.same(await tick(), [[30, 'drift monitor: drift no longer detected']], 'info when it ends')
  t.same(await tick(), [], 'nothing while all is well')
  t.equal((await ctx.app.inject({ method: 'GET', url: `/v1/drift/monitors/${m.id}` })).json().last_run.drifted, false)
})
