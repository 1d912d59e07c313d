import t from 'tap'
import { buildTestApp, refreshAggregate } from '../lib/helper.js'
import { appendValues, insertDefinition } from '../lib/fixtures.js'

t.test('a value too large to square does not break the statistics of any feature', async (t) => {
  const { app, sql, db } = await buildTestApp(t)
  const huge = await insertDefinition(sql, { name: 'huge' })
  const normal = await insertDefinition(sql, { name: 'normal' })
  const t0 = Date.UTC(2023, 5, 1)
  await appendValues(sql, [
    { featureId: huge, entityId: 'X', eventTimeMs: t0, num: 1e200 },
    { featureId: huge, entityId: 'X', eventTimeMs: t0 + 60_000, num: 1 },
    { featureId: normal, entityId: 'X', eventTimeMs: t0, num: 2 },
    { featureId: normal, entityId: 'X', eventTimeMs: t0 + 60_000, num: 4 },
  ])
  if (db.storageMode === 'postgres') await app.services.stats.refreshNow()
  else await refreshAggregate(sql, 'feature_stats_hourly')
  const q = '?bucket=1h&from=2023-06-01T00:00:00Z&to=2023-06-01T02:00:00Z'
  const n = await app.inject({ method: 'GET', url: `/v1/features/normal/stats${q}` })
  t.equal(n.statusCode, 200, n.body)
  t.match(n.json().buckets[0], { count: 2, mean: 3, min: 2, max: 4 })
  const h = await app.inject({ method: 'GET', url: `/v1/features/huge/stats${q}` })
  t.equal(h.statusCode, 200, h.body)
  t.match(h.json().buckets[0], { count: 2, max: 1e200, stddev: null })
})

t.test('values whose sum overflows do not break the statistics of any feature, read live or materialized', async (t) => {
  const { app, sql, db } = await buildTestApp(t)
  const huge = await insertDefinition(sql, { name: 'huge' })
  const normal = await insertDefinition(sql, { name: 'normal' })
  const t0 = Date.UTC(2023, 5, 1)
  const q = '?bucket=1h&from=2023-06-01T00:00:00Z&to=2023-06-01T03:00:00Z'
  await appendValues(sql, [
    // two values of 1e308 add up past float8's largest number
    { featureId: huge, entityId: 'X', eventTimeMs: t0, num: 1e308 },
    { featureId: huge, entityId: 'X', eventTimeMs: t0 + 60_000, num: 1e308 },
    { featureId: huge, entityId: 'Y', eventTimeMs: t0 + 120_000, num: 1e299 },
    { featureId: huge, entityId: 'X', eventTimeMs: t0 + 3_600_000, num: 3 },
    { featureId: normal, entityId: 'X', eventTimeMs: t0, num: 2 },
    { featureId: normal, entityId: 'X', eventTimeMs: t0 + 60_000, num: 4 },
  ])
  const expectHuge = async (when: string): Promise<void> => {
    const h = await app.inject({ method: 'GET', url: `/v1/features/huge/stats${q}` })
    t.equal(h.statusCode, 200, `${when}: ${h.body}`)
    t.match(h.json().buckets, [
      { count: 3, numeric_count: 3, mean: null, stddev: null, sum: null, min: 1e299, max: 1e308 },
      { count: 1, mean: 3, sum: 3, min: 3, max: 3 },
    ], when)
    const x = await app.inject({ method: 'GET', url: `/v1/features/huge/stats${q}&entity_id=Y` })
    t.match(x.json().buckets, [{ count: 1, mean: 1e299, sum: 1e299 }], `${when}: a value below 1e300 is summed`)
  }
  await expectHuge('read live')
  if (db.storageMode === 'postgres') await app.services.stats.refreshNow()
  else {
    await refreshAggregate(sql, 'feature_stats_hourly')
    await refreshAggregate(sql, 'feature_stats_daily')
  }
  await expectHuge('materialized')
  const n = await app.inject({ method: 'GET', url: `/v1/features/normal/stats${q}` })
  t.match(n.json().buckets[0], { count: 2, mean: 3, min: 2, max: 4 }, 'the other feature')
  const day = await app.inject({ method: 'GET', url: '/v1/features/huge/stats?bucket=1d&from=2023-06-01T00:00:00Z&to=2023-06-02T00:00:00Z' })
  t.equal(day.statusCode, 200, day.body)
  t.match(day.json().buckets, [{ count: 4, mean: null, sum: null }], 'the daily level too')
})
