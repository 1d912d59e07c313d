import t, { type Test } from 'tap'
import { Writable } from 'node:stream'
import pino from 'pino'
import { buildTestApp, createTestDatabase } from '../lib/helper.js'
import { openDatabase } from '../../db/bootstrap.js'
import { loadConfig, type Config } from '../../src/config.js'
import { buildApp, type App } from '../../src/app.js'
import { startUp } from '../../src/services/startup.js'
import { bearerToken } from '../../src/plugins/auth.js'
import { LazyChildLogger } from '../../src/plugins/access-log.js'

/** The app with a logger writing JSON lines into `lines`. */
async function appWithLog (t: Test, config: Partial<Config>): Promise<{ app: App, lines: Array<Record<string, unknown>> }> {
  const url = await createTestDatabase(t)
  const cfg = loadConfig({}, { LOAD_DEFAULTS: false, BACKGROUND_JOBS: false, DB_POOL_MAX: 3, AUTH: 'off', RATE_LIMIT_MAX: 0, PRESSURE_MAX_EVENT_LOOP_DELAY_MS: 0, PRESSURE_MAX_HEAP_USED_BYTES: 0, ...config })
  const db = await openDatabase(url, cfg)
  await startUp(db, cfg, pino({ level: 'silent' }))
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({ write (chunk, _enc, cb) { for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l)); cb() } })
  const app = await buildApp({ config: cfg, sql: db.sql, storageMode: db.storageMode, databaseUrl: url }, { logger: { level: 'info', stream }, backgroundJobs: false })
  await app.ready()
  t.teardown(async () => {
    await app.close()
    await db.sql.end({ timeout: 2 })
  })
  return { app, lines }
}

const requestLines = (lines: Array<Record<string, unknown>>): Array<Record<string, unknown>> =>
  lines.filter((l) => l.msg === 'request completed' || l.msg === 'incoming request' || String(l.msg).startsWith('request rejected: no such route'))

t.test('access log: by default mutations and failures, not successful reads', async (t) => {
  const { app, lines } = await appWithLog(t, {})
  t.equal((await app.inject({ method: 'GET', url: '/v1/features' })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200)
  t.same(requestLines(lines), [], 'successful reads write no line')

  t.equal((await app.inject({ method: 'GET', url: '/v1/features/nope' })).statusCode, 404)
  t.equal((await app.inject({ method: 'POST', url: '/v1/features', payload: { name: 'spread', entity: 'symbol', dtype: 'float64' } })).statusCode, 201)
  t.equal((await app.inject({ method: 'GET', url: '/no/such/route' })).statusCode, 404)
  const logged = requestLines(lines)
  t.equal(logged.length, 3, 'a failed read, a mutation, an unknown URL')
  t.match(logged[0], { msg: 'request completed', req: { method: 'GET', url: '/v1/features/nope' }, res: { statusCode: 404 }, reqId: /.+/ })
  t.type(logged[0].responseTime, 'number')
  t.match(logged[1], { msg: 'request completed', req: { method: 'POST', url: '/v1/features' }, res: { statusCode: 201 } })
  t.match(logged[2], { req: { url: '/no/such/route' }, status: 404 })
})

t.test('access log: errors only, and all', async (t) => {
  const errors = await appWithLog(t, { LOG_REQUESTS: 'errors' })
  t.equal((await errors.app.inject({ method: 'POST', url: '/v1/features', payload: { name: 'spread', entity: 'symbol', dtype: 'float64' } })).statusCode, 201)
  t.equal((await errors.app.inject({ method: 'POST', url: '/v1/features', payload: { name: 'spread', entity: 'symbol', dtype: 'float64' } })).statusCode, 409)
  t.match(requestLines(errors.lines), [{ res: { statusCode: 409 } }], 'only the failed mutation')
  t.equal(requestLines(errors.lines).length, 1)

  const all = await appWithLog(t, { LOG_REQUESTS: 'all' })
  t.equal((await all.app.inject({ method: 'GET', url: '/health' })).statusCode, 200)
  t.same(requestLines(all.lines).map((l) => l.msg), ['incoming request', 'request completed'], 'two lines per request')
})

t.test('metrics: one series per route, method and status, unknown URLs as unknown', async (t) => {
  const { app } = await buildTestApp(t)
  for (let i = 0; i < 3; i++) await app.inject({ method: 'GET', url: '/health' })
  await app.inject({ method: 'GET', url: '/v1/features/nope' })
  await app.inject({ method: 'GET', url: '/no/such/route' })
  await app.inject({ method: 'GET', url: '/no/such/route/either' })
  const body = (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(body, /# TYPE http_request_duration_seconds histogram/)
  t.match(body, /http_request_duration_seconds_count\{method="GET",route="\/health",status="200"\} 3\n/)
  t.match(body, /http_request_duration_seconds_bucket\{method="GET",route="\/health",status="200",le="\+Inf"\} 3\n/)
  t.match(body, /http_request_duration_seconds_bucket\{method="GET",route="\/health",status="200",le="10"\} 3\n/)
  t.match(body, /http_request_duration_seconds_sum\{method="GET",route="\/health",status="200"\} [0-9.e-]+\n/)
  t.match(body, /http_request_duration_seconds_count\{method="GET",route="\/v1\/features\/:name",status="404"\} 1\n/)
  t.match(body, /http_request_duration_seconds_count\{method="GET",route="unknown",status="404"\} 2\n/)
  // buckets are cumulative
  const buckets = [...body.matchAll(/http_request_duration_seconds_bucket\{method="GET",route="\/health",status="200",le="([^"]+)"\} (\d+)/g)].map((m) => Number(m[2]))
  t.equal(buckets.length, 15)
  t.same(buckets, [...buckets].sort((a, b) => a - b))
})

t.test('security headers on every answer, refusals included; rate limits before the key check', async (t) => {
  const { app } = await buildTestApp(t, { auth: true, config: { RATE_LIMIT_MAX: 2 } })
  for (const res of [
    await app.inject({ method: 'GET', url: '/v1/features' }),
    await app.inject({ method: 'GET', url: '/no/such/route' }),
    await app.inject({ method: 'GET', url: '/health' }),
  ]) {
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${res.statusCode}`)
    t.equal(res.headers['content-security-policy'], "default-src 'none'; frame-ancestors 'none'")
    t.match(String(res.headers['x-request-id']), /.+/)
  }
  const bad = { authorization: 'Bearer fs_not_a_key' }
  t.equal((await app.inject({ method: 'GET', url: '/v1/features', headers: bad })).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url: '/v1/features', headers: bad })).statusCode, 401)
  const limited = await app.inject({ method: 'GET', url: '/v1/features', headers: bad })
  t.equal(limited.statusCode, 429, 'a bad key is limited too')
  t.ok(Number(limited.headers['retry-after']) >= 1)
})

t.test('bearerToken', async (t) => {
  t.equal(bearerToken(undefined), undefined)
  t.equal(bearerToken('Bearer abc'), 'abc')
  t.equal(bearerToken('bearer   abc '), 'abc')
  t.equal(bearerToken('Bearer abc def'), '')
  t.equal(bearerToken('Bearer '), '')
  t.equal(bearerToken('Bearer\tabc'), 'abc')
  t.equal(bearerToken('Basic abc'), '')
})

t.test('a request logger is made when the request first logs, with its bindings and level', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const parent = pino({ level: 'info' }, new Writable({ write (chunk, _enc, cb) { lines.push(JSON.parse(String(chunk))); cb() } }))
  let children = 0
  const counting = Object.assign(Object.create(parent), { child: (b: pino.Bindings, o?: pino.ChildLoggerOptions) => { children++; return parent.child(b, o) } })
  const quiet = new LazyChildLogger(counting, { reqId: 'r1' }, {})
  t.equal(quiet.level, 'info', 'the parent\'s level, without making a child')
  t.equal(children, 0)
  const log = new LazyChildLogger(counting, { reqId: 'r2' }, { level: 'warn' })
  t.equal(log.level, 'warn')
  log.info('dropped: below the level')
  log.warn({ a: 1 }, 'kept')
  log.error('also kept')
  t.equal(children, 1, 'one child, made on the first call')
  t.match(lines, [{ reqId: 'r2', a: 1, msg: 'kept', level: 40 }, { reqId: 'r2', msg: 'also kept', level: 50 }])
  t.match(log.child({ x: 2 }), { info: Function })
})
