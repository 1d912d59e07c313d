import t from 'tap'
import { buildTestApp, createTestDatabase } from '../lib/helper.js'
import { appendValues, insertDefinition } from '../lib/fixtures.js'
import { connect } from '../../db/connection.js'

/**
 * A read that cannot take its lock in time (an operator's lock_timeout while maintenance holds
 * an exclusive lock) is a 503 problem with Retry-After, not a 500: nothing is wrong with the
 * request, and a retry usually succeeds.
 */
t.test('a lock timeout is a 503 problem with Retry-After; the same request succeeds once the lock is gone', async (t) => {
  // every session of this database gives up on a lock after 200 ms (an operator's setting)
  const url = await createTestDatabase(t)
  const setup = connect(url, { max: 1 })
  await setup.unsafe(`ALTER DATABASE "${new URL(url).pathname.slice(1)}" SET lock_timeout = '200ms'`)
  await setup.end()
  const { app, sql } = await buildTestApp(t, { url })
  const f = await insertDefinition(sql, { name: 'locked' })
  const T0 = Date.UTC(2023, 0, 1)
  await appendValues(sql, [{ featureId: f, entityId: 'A', eventTimeMs: T0, num: 1 }])
  const maintenance = connect(url, { max: 1 })
  t.teardown(async () => { await maintenance.end({ timeout: 1 }) })
  const conn = await maintenance.reserve()
  await conn`SET lock_timeout = 0`
  await conn`BEGIN`
  await conn`LOCK TABLE feature_snapshots IN ACCESS EXCLUSIVE MODE`
  const payload = { entities: ['A'], features: ['locked'], as_of: new Date(T0 + 1000).toISOString() }
  let res = await app.inject({ method: 'POST', url: '/v1/retrieve', payload })
  t.equal(res.statusCode, 503, res.body)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  t.ok(res.headers['retry-after'], 'Retry-After')
  t.match(res.json(), { status: 503, title: 'Service Unavailable', detail: /lock in time/ })
  await conn`COMMIT`
  conn.release()
  res = await app.inject({ method: 'POST', url: '/v1/retrieve', payload })
  t.equal(res.statusCode, 200, res.body)
})
