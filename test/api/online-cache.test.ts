import t from 'tap'
import { Registry } from 'prom-client'
import { OnlineCache } from '../../src/services/online-cache.js'

// The cache alone, without a database: generations, invalidation paths, notifications, capacity.
const row = (v: number): { eventMs: number, eventTime: string, value: number, json: string } => ({ eventMs: v, eventTime: new Date(v).toISOString(), value: v, json: String(v) })

t.test('a value fetched before an invalidation is not cached after it (the race guard)', async (t) => {
  const cache = new OnlineCache({ maxKeys: 100, ttlSeconds: 0, origin: 'me' })
  const generation = cache.generation // a reader notes the generation, then queries the database...
  cache.invalidate({ keys: [{ featureId: 1, entityId: 'A' }] }) // ...a write lands meanwhile
  cache.store(1, 'A', row(1), generation) // the reader's (now stale) answer
  t.equal(cache.lookup(1, 'A'), undefined, 'not cached: the next read goes to the database')
  cache.store(1, 'A', row(2), cache.generation)
  t.same(cache.lookup(1, 'A'), row(2))
  cache.close()
})

t.test('keys, features and everything can be flushed; negative entries are kept', async (t) => {
  const cache = new OnlineCache({ maxKeys: 100, ttlSeconds: 0, origin: 'me' })
  cache.store(1, 'A', row(1), cache.generation)
  cache.store(1, 'B', null, cache.generation)
  cache.store(2, 'A', row(3), cache.generation)
  t.equal(cache.lookup(1, 'B'), null, 'a negative entry')
  cache.invalidate({ keys: [{ featureId: 1, entityId: 'A' }] })
  t.equal(cache.lookup(1, 'A'), undefined)
  t.equal(cache.lookup(1, 'B'), null)
  cache.invalidate({ features: [1] })
  t.equal(cache.lookup(1, 'B'), undefined, 'a feature flush drops every entity of the feature')
  t.same(cache.lookup(2, 'A'), row(3), 'other features stay')
  cache.store(1, 'C', row(4), cache.generation)
  t.same(cache.lookup(1, 'C'), row(4), 'entries stored after the flush are served')
  cache.invalidate({ all: true })
  t.equal(cache.lookup(2, 'A'), undefined)
  cache.close()
})

t.test('notifications: own ones are skipped, big changes fall back to per-feature payloads under 8000 bytes', async (t) => {
  const a = new OnlineCache({ maxKeys: 100, ttlSeconds: 0, origin: 'a' })
  const b = new OnlineCache({ maxKeys: 100, ttlSeconds: 0, origin: 'b' })
  b.store(1, 'X', row(1), b.generation)
  a.store(1, 'X', row(1), a.generation)
  const small = a.payload({ keys: [{ featureId: 1, entityId: 'X' }] })
  a.applyMessage(small)
  t.same(a.lookup(1, 'X'), row(1), 'an instance ignores its own announcement')
  b.applyMessage(small)
  t.equal(b.lookup(1, 'X'), undefined)
  const keys = Array.from({ length: 2000 }, (_, i) => ({ featureId: 1 + (i % 3), entityId: `ENTITY-${i}` }))
  const big = a.payload({ keys })
  t.ok(Buffer.byteLength(big) < 8000)
  t.same(JSON.parse(big).f.sort(), [1, 2, 3], 'flush per feature')
  const huge = a.payload({ features: Array.from({ length: 3000 }, (_, i) => i) })
  t.same(JSON.parse(huge), { o: 'a', a: 1 }, 'flush all when even the feature list is too long')
  b.store(2, 'Y', row(2), b.generation)
  b.applyMessage('not json')
  t.equal(b.lookup(2, 'Y'), undefined, 'an unreadable notification flushes everything')
  b.storeRef('price', null, b.refGeneration)
  b.applyMessage('{"d":1}')
  t.equal(b.lookupRef('price'), undefined, 'a definition change forgets resolved references')
  a.close()
  b.close()
})

t.test('capacity: the oldest tenth is evicted when full; counters reach the registry', async (t) => {
  const registry = new Registry()
  const cache = new OnlineCache({ maxKeys: 10, ttlSeconds: 0, origin: 'me' }, registry)
  for (let i = 0; i < 10; i++) cache.store(1, `E${i}`, row(i), cache.generation)
  cache.store(1, 'E10', row(10), cache.generation)
  t.equal(cache.size, 10)
  t.equal(cache.lookup(1, 'E0'), undefined, 'the oldest went')
  t.same(cache.lookup(1, 'E10'), row(10))
  t.equal(cache.stats().capacity_evictions, 1)
  const text = await registry.metrics()
  t.match(text, /online_cache_hits_total 1/)
  t.match(text, /online_cache_misses_total 1/)
  t.match(text, /online_cache_capacity_evictions_total 1/)
  t.match(text, /online_cache_keys 10/)
  cache.close()
})

t.test('entries expire after CACHE_TTL_SECONDS', async (t) => {
  const cache = new OnlineCache({ maxKeys: 10, ttlSeconds: 1, origin: 'me' })
  cache.store(1, 'A', row(1), cache.generation)
  t.same(cache.lookup(1, 'A'), row(1))
  await new Promise((resolve) => setTimeout(resolve, 1100))
  t.equal(cache.lookup(1, 'A'), undefined)
  cache.close()
})
