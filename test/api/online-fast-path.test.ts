import t, { type Test } from 'tap'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { buildTestApp, type TestContext } from '../lib/helper.js'
import { insertDefinition } from '../lib/fixtures.js'
import type { Config } from '../../src/config.js'

/**
 * The online fast path (ONLINE_FAST_PATH, on by default) answers cached online GETs before
 * Fastify's routing. Its answers must be the route's, byte for byte apart from the Date and a
 * generated request id: every request here is sent over HTTP (app.inject does not go through
 * the server, so the rest of the suite never meets the fast path) to an instance with it and to
 * one without it, on one database, and the answers compared.
 */

const H = 3_600_000

interface Answer { status: number, headers: Record<string, string>, body: string }

/** A GET (or HEAD) of exactly `path` (nothing re-encoded), over a new connection. */
async function send (port: number, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string>, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** Answers of the fast path served so far (its counter of /metrics); undefined when it is off. */
async function fastAnswers (ctx: TestContext): Promise<number | undefined> {
  const metric = ctx.app.metrics.getSingleMetric('online_fast_path_answers_total')
  return metric === undefined ? undefined : (await metric.get()).values[0]?.value ?? 0
}

async function listening (t: Test, config: Partial<Config>, url?: string): Promise<TestContext & { port: number }> {
  const ctx = await buildTestApp(t, { auth: true, url, config })
  await ctx.app.listen({ port: 0, host: '127.0.0.1' })
  return { ...ctx, port: (ctx.app.server.address() as AddressInfo).port }
}

/**
 * Definitions written in SQL reach the online caches by a notification, which makes them forget
 * how references resolved; let it arrive before counting the fast path's answers.
 */
async function settle (): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 300))
}

const RATE = { RATE_LIMIT_MAX: 1_000_000, PRESSURE_MAX_EVENT_LOOP_DELAY_MS: 1000 }

t.test('the fast path answers as the route does, and leaves the rest to it', async (t) => {
  const fast = await listening(t, { ...RATE })
  const routed = await listening(t, { ...RATE, ONLINE_FAST_PATH: 'off' }, fast.url)
  const { sql, app } = fast
  const read = `Bearer ${(await app.services.apiKeys.create({ name: 'reader', scopes: ['read'] }, null)).key}`
  const write = `Bearer ${(await app.services.apiKeys.create({ name: 'writer', scopes: ['write'] }, null)).key}`
  await insertDefinition(sql, { name: 'price' })
  await insertDefinition(sql, { name: 'price', version: 2 })
  await insertDefinition(sql, { name: 'quote', ttl_ms: 2 * H })
  await insertDefinition(sql, { name: 'vol', validation: { nullable: true } })
  await insertDefinition(sql, { name: 'label', dtype: 'string' })
  const now = Date.now()
  const rows = [
    { feature: 'price', entity_id: 'BTC-USD', event_time: now - H, value: 1.5 },
    { feature: 'price@2', entity_id: 'BTC-USD', event_time: now - H, value: 2.5 },
    { feature: 'vol', entity_id: 'BTC-USD', event_time: now - 2 * H, value: null },
    { feature: 'label', entity_id: 'BTC-USD', event_time: now - H, value: 'a "quoted" \\ label' },
    { feature: 'quote', entity_id: 'OLD', event_time: now - 3 * H, value: 7 },
    { feature: 'price', entity_id: 'FUTURE', event_time: now + H, value: 8 },
    { feature: 'price', entity_id: 'a b', event_time: now - H, value: 9 },
  ]
  await settle()
  const ingested = await app.inject({ method: 'POST', url: '/v1/values', payload: { rows }, headers: { authorization: write } })
  t.equal(ingested.statusCode, 200, ingested.body)

  /** The same request to both instances: the same answer (apart from Date and a generated id). */
  const same = async (path: string, headers: Record<string, string> = { authorization: read }, method = 'GET'): Promise<Answer> => {
    const a = await send(fast.port, path, headers, method)
    const b = await send(routed.port, path, headers, method)
    const strip = (x: Answer): Answer => {
      const h = { ...x.headers }
      delete h.date
      if (headers['x-request-id'] === undefined) t.match(h['x-request-id'], /^[A-Za-z0-9_-]{12}-[0-9a-z]+$/, `${path}: a generated request id`)
      delete h['x-request-id']
      let body = x.body
      if (h['content-type'] === 'application/problem+json; charset=utf-8' && body !== '') {
        const problem = JSON.parse(body)
        t.equal(problem.request_id, x.headers['x-request-id'])
        delete problem.request_id
        body = JSON.stringify(problem)
      }
      // each instance counts in buckets of its own (a URL the router cannot decode is refused
      // before any hook, uncounted)
      if (x.status === 200 || h['x-ratelimit-limit'] !== undefined) t.match(h, { 'x-ratelimit-limit': '1000000', 'x-ratelimit-remaining': /^\d+$/, 'x-ratelimit-reset': /^\d+$/ })
      delete h['x-ratelimit-remaining']
      delete h['x-ratelimit-reset']
      return { ...x, headers: h, body }
    }
    t.same(strip(a), strip(b), `${method} ${path}: the same answer with and without the fast path`)
    return a
  }

  const served0 = (await fastAnswers(fast))!
  t.equal(served0, 0)
  t.equal(await fastAnswers(routed), undefined, 'no fast path, no counter')

  // cached answers (the first read fills the cache through the route, the next is the fast path's)
  for (const path of ['/v1/online/BTC-USD?features=price,vol,label', '/v1/online/BTC-USD?features=price@2,price,price@1,,vol', '/v1/online/OLD?features=quote', '/v1/online/NOBODY?features=price,vol']) {
    const first = await same(path)
    t.equal(first.status, 200, `${path}: ${first.body}`)
    const before = (await fastAnswers(fast))!
    const again = await same(path)
    t.equal(again.body, first.body)
    t.equal(await fastAnswers(fast), before + 1, `${path}: answered by the fast path`)
  }
  const btc = JSON.parse((await same('/v1/online/BTC-USD?features=price,vol,label')).body)
  t.same(btc.values.label, { value: 'a "quoted" \\ label', event_time: new Date(now - H).toISOString(), status: 'PRESENT' })
  t.equal(btc.values.vol.status, 'NULL_VALUE')
  t.equal(JSON.parse((await same('/v1/online/OLD?features=quote')).body).values.quote.status, 'OUTSIDE_TTL')
  t.equal(JSON.parse((await same('/v1/online/NOBODY?features=price')).body).values.price.status, 'NOT_FOUND')

  // what the fast path leaves to the route: the answers are still the same
  const left = async (path: string, status: number, headers: Record<string, string> = { authorization: read }, method = 'GET'): Promise<Answer> => {
    await same(path, headers, method)
    const before = (await fastAnswers(fast))!
    const a = await same(path, headers, method)
    t.equal(a.status, status, `${method} ${path}: ${a.body}`)
    t.equal(await fastAnswers(fast), before, `${method} ${path}: left to the route`)
    return a
  }
  await left('/v1/online/FUTURE?features=price', 200) // a future-dated latest value is read from the database
  t.equal(JSON.parse((await same('/v1/online/a%20b?features=price')).body).values.price.value, 9, 'a percent-encoded entity id is decoded by the router')
  await left('/v1/online/a%20b?features=price', 200)
  await left('/v1/online/BTC-USD?features=price%2Cvol', 200)
  await left('/v1/online/BTC-USD?features=price&features=vol', 400)
  await left('/v1/online/BTC-USD?features=price&other=1', 200)
  await left('/v1/online/BTC-USD?features=', 400)
  await left('/v1/online/BTC-USD?features=,', 400)
  await left(`/v1/online/BTC-USD?features=${Array.from({ length: 101 }, (_, i) => `f${i}`).join(',')}`, 400)
  await left('/v1/online/BTC-USD?features=nope', 422)
  await left('/v1/online/BTC-USD?features=price&contract=x', 400)
  await left(`/v1/online/${'x'.repeat(257)}?features=price`, 400)
  await left('/v1/online/BTC-USD', 400)
  await left('/v1/online/?features=price', 400)
  await left('/v1/online/BTC-USD?features=price', 200, { authorization: read }, 'HEAD')
  await left('/v1/online/BTC-USD?features=price', 401, {})
  await left('/v1/online/BTC-USD?features=price', 401, { authorization: 'Bearer fs_nosuchkey_0000000000000000' })
  await left('/v1/online/BTC-USD?features=price', 401, { authorization: 'Basic abc' })
  // a key with a stronger scope reads too; the first request looks it up, the next is fast
  await same('/v1/online/BTC-USD?features=price', { authorization: write })
  t.equal((await same('/v1/online/BTC-USD?features=price', { authorization: write })).status, 200)

  // a request id the client gives is kept; an unusable one is replaced
  t.equal((await same('/v1/online/BTC-USD?features=price', { authorization: read, 'x-request-id': 'trace-42' })).headers['x-request-id'], 'trace-42')
  t.not((await send(fast.port, '/v1/online/BTC-USD?features=price', { authorization: read, 'x-request-id': 'bad id!' })).headers['x-request-id'], 'bad id!')

  // random requests, plain and not: the same answers from both instances
  let seed = 20261207
  const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]
  const CHARS = "AZaz09._~:@!$'()*+,=-"
  const entities = ['BTC-USD', 'NOBODY', 'OLD', 'FUTURE', 'a%20b', '%41BC', '%2F', '%zz', '.', '..', 'x'.repeat(256), 'x'.repeat(257)]
  const refs = ['price', 'price@1', 'price@2', 'price@9', 'vol', 'label', 'quote', 'nope', '', 'Price', '%20price', 'price%2Cvol']
  const fastBefore = (await fastAnswers(fast))!
  const cacheBefore = [fast.app.services.online.cache.stats(), routed.app.services.online.cache.stats()]
  for (let i = 0; i < 150; i++) {
    const entity = rand() < 0.5 ? pick(entities) : Array.from({ length: 1 + Math.floor(rand() * 8) }, () => pick([...CHARS])).join('')
    const features = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => pick(refs)).join(',')
    const extra = pick(['', '', '', '&x=1', '&contract=c', '&features=vol'])
    const query = rand() < 0.1 ? '' : `?features=${features}${extra}`
    const headers = pick<Record<string, string>>([{ authorization: read }, { authorization: read }, { authorization: read }, {}, { authorization: 'Bearer nope' }])
    await same(`/v1/online/${entity}${query}`, headers, rand() < 0.1 ? 'HEAD' : 'GET')
  }
  t.ok((await fastAnswers(fast))! > fastBefore, 'some of them were the fast path\'s')
  const [f, r] = [fast.app.services.online.cache.stats(), routed.app.services.online.cache.stats()]
  t.same({ hits: f.hits - cacheBefore[0].hits, misses: f.misses - cacheBefore[0].misses }, { hits: r.hits - cacheBefore[1].hits, misses: r.misses - cacheBefore[1].misses }, 'the same cache hits and misses counted')
  t.ok(f.hits > cacheBefore[0].hits && f.misses > cacheBefore[0].misses)

  // read-your-writes: a write through the fast instance is in its next fast answer
  const served = (await fastAnswers(fast))!
  const w = await app.inject({ method: 'POST', url: '/v1/values', payload: { rows: [{ feature: 'price', entity_id: 'BTC-USD', event_time: now - H / 2, value: 3.5 }] }, headers: { authorization: write } })
  t.equal(w.statusCode, 200)
  t.equal(JSON.parse((await send(fast.port, '/v1/online/BTC-USD?features=price', { authorization: read })).body).values.price.value, 3.5)
  t.equal(JSON.parse((await send(fast.port, '/v1/online/BTC-USD?features=price', { authorization: read })).body).values.price.value, 3.5)
  t.equal(await fastAnswers(fast), served + 1, 'the first read after the write refilled the cache, the second was fast')

  // while the database is unreachable the answers say they may be stale: the route's job
  app.services.databaseHealth.reportFailure(Object.assign(new Error('connection closed'), { code: 'CONNECTION_CLOSED' }))
  t.not(app.services.databaseHealth.unavailableSince, null)
  const stale = await send(fast.port, '/v1/online/BTC-USD?features=price', { authorization: read })
  t.equal(stale.status, 200)
  t.equal(stale.headers['x-stale'], 'database-unavailable')
  t.equal(await fastAnswers(fast), served + 1, 'left to the route while the database is away')

  // every 200 of the route is in one histogram series, whoever answered it
  const metrics = (await send(fast.port, '/metrics')).body
  const series = metrics.split('\n').filter((l) => l.startsWith('http_request_duration_seconds_count{') && l.includes('route="/v1/online/:entity_id"') && l.includes('status="200"') && l.includes('method="GET"'))
  t.equal(series.length, 1, 'one series for the route\'s 200s')
})

t.test('the rate limit counts a request once, whoever answers it', async (t) => {
  const fast = await listening(t, { RATE_LIMIT_MAX: 4, RATE_LIMIT_WINDOW_MS: 60_000 })
  const { sql, app } = fast
  const read = `Bearer ${(await app.services.apiKeys.create({ name: 'reader', scopes: ['read'] }, null)).key}`
  await insertDefinition(sql, { name: 'price' })
  await settle()
  const path = '/v1/online/BTC?features=price'
  const answers: Answer[] = []
  for (let i = 0; i < 5; i++) answers.push(await send(fast.port, path, { authorization: read }))
  t.same(answers.map((a) => a.status), [200, 200, 200, 200, 429])
  t.same(answers.map((a) => a.headers['x-ratelimit-remaining']), ['3', '2', '1', '0', '0'])
  t.ok(answers.every((a) => a.headers['x-ratelimit-limit'] === '4'))
  t.match(answers[4].headers['retry-after'], /^\d+$/)
  t.match(JSON.parse(answers[4].body), { status: 429, title: 'Too Many Requests' })
  t.equal(await fastAnswers(fast), 3, 'the first read filled the cache, the next three were fast, the last was refused by the route')
})

t.test('load shedding is not bypassed', async (t) => {
  const fast = await listening(t, { PRESSURE_MAX_HEAP_USED_BYTES: 1 })
  const { sql, app } = fast
  const read = `Bearer ${(await app.services.apiKeys.create({ name: 'reader', scopes: ['read'] }, null)).key}`
  await insertDefinition(sql, { name: 'price' })
  // the heap is sampled once a second
  await new Promise((resolve) => setTimeout(resolve, 1500))
  for (let i = 0; i < 2; i++) {
    const a = await send(fast.port, '/v1/online/BTC?features=price', { authorization: read })
    t.equal(a.status, 503)
    t.equal(a.headers['retry-after'], '10')
  }
  t.equal(await fastAnswers(fast), 0)
})

t.test('off with ONLINE_FAST_PATH=off, LOG_REQUESTS=all and CORS', async (t) => {
  for (const config of [{ ONLINE_FAST_PATH: 'off' as const }, { LOG_REQUESTS: 'all' as const }, { CORS_ORIGINS: 'https://example.com' }]) {
    const fast = await listening(t, config)
    const read = `Bearer ${(await fast.app.services.apiKeys.create({ name: 'reader', scopes: ['read'] }, null)).key}`
    await insertDefinition(fast.sql, { name: 'price' })
    for (let i = 0; i < 2; i++) t.equal((await send(fast.port, '/v1/online/BTC?features=price', { authorization: read })).status, 200)
    t.equal(await fastAnswers(fast), undefined, JSON.stringify(config))
  }
})

t.test('with auth off, the bucket of a request without a key is the client address', async (t) => {
  const ctx = await buildTestApp(t, { config: { RATE_LIMIT_MAX: 3 } })
  await ctx.app.listen({ port: 0, host: '127.0.0.1' })
  const port = (ctx.app.server.address() as AddressInfo).port
  await insertDefinition(ctx.sql, { name: 'price' })
  await settle()
  const statuses: number[] = []
  for (let i = 0; i < 4; i++) statuses.push((await send(port, '/v1/online/BTC?features=price')).status)
  t.same(statuses, [200, 200, 200, 429])
  t.equal(await fastAnswers(ctx), 2)
})
