import t from 'tap'
import { buildTestApp } from '../lib/helper.js'

t.test('rate limits per key and per address: 429 problem+json with Retry-After', async (t) => {
  const { app } = await buildTestApp(t, { auth: true, config: { RATE_LIMIT_MAX: 3, RATE_LIMIT_WINDOW_MS: 60_000 } })
  const a = { authorization: `Bearer ${(await app.services.apiKeys.create({ name: 'a', scopes: ['read'] }, null)).key}` }
  const b = { authorization: `Bearer ${(await app.services.apiKeys.create({ name: 'b', scopes: ['read'] }, null)).key}` }
  for (let i = 0; i < 3; i++) {
    const res = await app.inject({ method: 'GET', url: '/v1/system', headers: a })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['x-ratelimit-limit'], '3')
    t.equal(res.headers['x-ratelimit-remaining'], String(2 - i))
    t.ok(Number(res.headers['x-ratelimit-reset']) >= 1 && Number(res.headers['x-ratelimit-reset']) <= 60)
  }
  const limited = await app.inject({ method: 'GET', url: '/v1/system', headers: a })
  t.equal(limited.statusCode, 429)
  t.equal(limited.headers['x-ratelimit-remaining'], '0')
  t.match(String(limited.headers['x-request-id']), /.+/, 'a refusal still carries the request id')
  t.match(limited.headers['content-type'], /application\/problem\+json/)
  t.match(limited.json(), { status: 429, title: 'Too Many Requests', detail: /Rate limit of 3 requests per 60 s/ })
  t.ok(Number(limited.headers['retry-after']) >= 1 && Number(limited.headers['retry-after']) <= 60, `Retry-After ${limited.headers['retry-after']}`)

  t.equal((await app.inject({ method: 'GET', url: '/v1/system', headers: b })).statusCode, 200, 'another key has its own budget')
  for (let i = 0; i < 3; i++) t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 429, 'without a key the client address is the bucket')
  t.equal((await app.inject({ method: 'GET', url: '/health', remoteAddress: '10.0.0.2' })).statusCode, 200, 'another address has its own budget')
})

t.test('security headers, and Swagger UI still loads under the CSP', async (t) => {
  const { app } = await buildTestApp(t)
  // JSON answers: the OWASP REST set, a CSP that allows nothing, no HTML-page headers
  const res = await app.inject({ method: 'GET', url: '/health' })
  t.equal(res.headers['x-content-type-options'], 'nosniff')
  t.equal(res.headers['x-frame-options'], 'DENY')
  t.equal(res.headers['cache-control'], 'no-store')
  t.equal(res.headers['strict-transport-security'], undefined, 'no HSTS over plain HTTP (RFC 6797 7.2)')
  t.equal(res.headers['content-security-policy'], "default-src 'none'; frame-ancestors 'none'")
  t.equal(res.headers['access-control-allow-origin'], undefined, 'no CORS unless configured')
  for (const pageOnly of ['x-xss-protection', 'x-download-options', 'x-dns-prefetch-control', 'origin-agent-cluster', 'cross-origin-opener-policy']) {
    t.equal(res.headers[pageOnly], undefined, `${pageOnly} only on pages`)
  }

  // Swagger UI's pages: helmet's full set, with a CSP that lets the UI load its own assets
  const ui = await app.inject({ method: 'GET', url: '/documentation/' })
  t.equal(ui.statusCode, 200)
  t.equal(ui.headers['x-content-type-options'], 'nosniff')
  t.equal(ui.headers['x-frame-options'], 'SAMEORIGIN')
  t.equal(ui.headers['strict-transport-security'], undefined, 'no HSTS over plain HTTP')
  const csp = String(ui.headers['content-security-policy'])
  t.match(csp, /default-src 'self'/)
  t.match(csp, /frame-ancestors 'none'/)
  t.notMatch(csp, /upgrade-insecure-requests/, 'the UI keeps working over plain HTTP')
  t.notMatch(ui.body, /<script(?![^>]*\ssrc=)[^>]*>/, 'no inline script the CSP would block')
  const assets = [...ui.body.matchAll(/(?:src|href)="([^"]+\.(?:js|css|png))"/g)].map((m) => m[1])
  t.ok(assets.length >= 3, `${assets.length} assets`)
  for (const asset of assets) {
    t.notMatch(asset, /^(https?:)?\/\//, `${asset} is same-origin`)
    const res = await app.inject({ method: 'GET', url: new URL(asset, 'http://x/documentation/').pathname })
    t.equal(res.statusCode, 200, `${asset} is served`)
  }
  const init = await app.inject({ method: 'GET', url: '/documentation/static/swagger-initializer.js' })
  t.equal(init.statusCode, 200)
  t.match(init.body, /documentation\/json|\.\/json/, 'the UI fetches the document from the same origin')
})

t.test('Strict-Transport-Security on answers over HTTPS: behind a trusted proxy that says so', async (t) => {
  const proxied = await buildTestApp(t, { config: { TRUST_PROXY: true } })
  const https = { 'x-forwarded-proto': 'https' }
  for (const url of ['/health', '/v1/features', '/documentation/', '/no/such/route']) {
    const res = await proxied.app.inject({ method: 'GET', url, headers: https })
    t.equal(res.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains', `${url} over HTTPS (${res.statusCode})`)
    t.equal((await proxied.app.inject({ method: 'GET', url, headers: { 'x-forwarded-proto': 'http' } })).headers['strict-transport-security'], undefined, `${url} over HTTP`)
  }
  // without TRUST_PROXY a client's X-Forwarded-Proto is not believed
  const direct = await buildTestApp(t)
  t.equal((await direct.app.inject({ method: 'GET', url: '/health', headers: https })).headers['strict-transport-security'], undefined)
})

t.test('CORS when configured: allowed origins only, preflight without a key', async (t) => {
  const { app } = await buildTestApp(t, { auth: true, config: { CORS_ORIGINS: 'https://ui.example.com, https://other.example.com' } })
  const pre = await app.inject({ method: 'OPTIONS', url: '/v1/system', headers: { origin: 'https://ui.example.com', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' } })
  t.equal(pre.statusCode, 204)
  t.equal(pre.headers['access-control-allow-origin'], 'https://ui.example.com')
  t.match(String(pre.headers['access-control-allow-headers']), /Authorization/)
  const stranger = await app.inject({ method: 'GET', url: '/health', headers: { origin: 'https://evil.example.com' } })
  t.equal(stranger.headers['access-control-allow-origin'], undefined)
  const friend = await app.inject({ method: 'GET', url: '/health', headers: { origin: 'https://other.example.com' } })
  t.equal(friend.headers['access-control-allow-origin'], 'https://other.example.com')
})

t.test('bodies over the limit are 413 problem+json', async (t) => {
  const { app } = await buildTestApp(t, { config: { BODY_LIMIT_BYTES: 4096 } })
  const res = await app.inject({ method: 'POST', url: '/v1/api-keys', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ name: 'x'.repeat(10_000), scopes: ['read'] }) })
  t.equal(res.statusCode, 413)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  t.match(res.json(), { status: 413, title: 'Payload Too Large' })
})

t.test('under pressure: 503 problem+json with Retry-After instead of collapse', async (t) => {
  const { app } = await buildTestApp(t, { config: { PRESSURE_MAX_HEAP_USED_BYTES: 1 } })
  await new Promise((resolve) => setTimeout(resolve, 1200)) // the first memory sample
  const res = await app.inject({ method: 'GET', url: '/v1/system' })
  t.equal(res.statusCode, 503)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  t.match(res.json(), { status: 503, detail: /overloaded/ })
  t.equal(res.headers['retry-after'], '10')
})
