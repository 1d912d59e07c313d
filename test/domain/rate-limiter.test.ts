import t from 'tap'
import { RateLimiter, tooManyRequests } from '../../src/plugins/rate-limit.js'

t.test('a fixed window per bucket: max requests, then refusals until the window ends', async (t) => {
  const limiter = new RateLimiter(3, 10_000)
  const t0 = 1_000_000
  t.same(limiter.hit('a', t0), { allowed: true, limit: 3, remaining: 2, resetSeconds: 10 })
  t.same(limiter.hit('a', t0 + 1), { allowed: true, limit: 3, remaining: 1, resetSeconds: 10 })
  t.same(limiter.hit('a', t0 + 4001), { allowed: true, limit: 3, remaining: 0, resetSeconds: 6 })
  t.same(limiter.hit('a', t0 + 9999), { allowed: false, limit: 3, remaining: 0, resetSeconds: 1 }, 'the 4th request in the window')
  t.equal(limiter.hit('b', t0 + 9999).allowed, true, 'another bucket has its own budget')
  t.same(limiter.hit('a', t0 + 10_000), { allowed: true, limit: 3, remaining: 2, resetSeconds: 10 }, 'a new window opens at its end')
  const err = tooManyRequests(limiter.hit('b', t0 + 9999), 10_000)
  t.equal(err.status, 429)
})

t.test('refused requests still count: a client that keeps sending stays refused until the window ends', async (t) => {
  const limiter = new RateLimiter(1, 1000)
  t.ok(limiter.hit('k', 0).allowed)
  for (let i = 1; i < 100; i++) t.notOk(limiter.hit('k', i * 9).allowed)
  t.ok(limiter.hit('k', 1000).allowed)
})

t.test('memory is bounded: the bucket whose window opened longest ago is forgotten first', async (t) => {
  const limiter = new RateLimiter(1, 60_000, 3)
  limiter.hit('a', 0)
  limiter.hit('b', 1)
  limiter.hit('c', 2)
  t.notOk(limiter.hit('a', 3).allowed, 'a is still held')
  limiter.hit('d', 4) // evicts a, whose window opened first
  t.equal(limiter.size, 3)
  t.ok(limiter.hit('a', 5).allowed, 'a starts afresh')
  t.notOk(limiter.hit('c', 6).allowed, 'c (window opened at 2) is still held')
})

t.test('the refusal: 429 problem with Retry-After and the window in words', async (t) => {
  const err = tooManyRequests({ allowed: false, limit: 5, remaining: 0, resetSeconds: 7 }, 60_000)
  t.equal(err.status, 429)
  t.equal(err.title, 'Too Many Requests')
  t.equal(err.message, 'Rate limit of 5 requests per 60 s exceeded; retry in 7 s')
  t.same(err.headers, { 'retry-after': '7' })
})
