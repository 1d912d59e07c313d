import t from 'tap'
import { buildTestApp } from '../lib/helper.js'
import { appendValues, insertDefinition, type RawValue } from '../lib/fixtures.js'
import type { Sql } from '../../db/connection.js'

/**
 * GET /v1/drift/write-log and POST /v1/drift/write-log/rebuild: an operator sees that values
 * written by SQL outside the ingest path turned the range read of drift checks off, and turns it
 * back on by rebuilding the log from the stored values.
 */
const H = 3_600_000
const T0 = Date.UTC(2022, 0, 1)
const ADMIN_API_KEY = 'env-admin-key-for-write-log-tests-0123'

function hourly (featureId: number, entityId: string, from: number, hours: number, base: number): RawValue[] {
  return Array.from({ length: hours }, (_, i) => ({ featureId, entityId, eventTimeMs: from + i * H, num: base + (i % 11) }))
}

/** The log as the rebuild would make it: one row per (feature, stamp) of the stored values. */
async function logMatchesValues (sql: Sql): Promise<{ rows: number, missing: number, extra: number }> {
  const [row] = await sql<Array<{ rows: number, missing: number, extra: number }>>`
    WITH want AS (
      SELECT feature_id, ingested_at, min(event_time) AS first_event, max(event_time) AS last_event,
             CASE WHEN min(entity_id) = max(entity_id) THEN min(entity_id) END AS entity_id
      FROM feature_snapshots GROUP BY feature_id, ingested_at
    ), got AS (SELECT feature_id, ingested_at, first_event, last_event, entity_id FROM feature_write_log)
    SELECT (SELECT count(*) FROM got)::int AS rows,
           (SELECT count(*) FROM (SELECT * FROM want EXCEPT ALL SELECT * FROM got) m)::int AS missing,
           (SELECT count(*) FROM (SELECT * FROM got EXCEPT ALL SELECT * FROM want) e)::int AS extra`
  return row
}

t.test('untracked writes turn the range read off; the rebuild turns it back on', async (t) => {
  const { app, sql } = await buildTestApp(t, { auth: true, config: { ADMIN_API_KEY } })
  const admin = { authorization: `Bearer ${ADMIN_API_KEY}` }
  const write = { authorization: `Bearer ${(await app.services.apiKeys.create({ name: 'writer', scopes: ['write'] }, null)).key}` }
  const read = { authorization: `Bearer ${(await app.services.apiKeys.create({ name: 'reader', scopes: ['read'] }, null)).key}` }
  const f = await insertDefinition(sql, { name: 'wl_price' })
  await appendValues(sql, hourly(f, 'A', T0, 48, 100))
  await appendValues(sql, hourly(f, 'B', T0, 48, 200))

  let res = await app.inject({ method: 'GET', url: '/v1/drift/write-log', headers: read })
  t.equal(res.statusCode, 200, res.body)
  t.same(res.json(), { range_read: 'available', logged_writes: 2, untracked_writes: 0, first_untracked_at: null, last_untracked_at: null })

  // a correction and an update by hand: the trigger notes both
  await sql`INSERT INTO feature_snapshots (feature_id, entity_id, event_time, ingested_at, value_num)
            VALUES (${f}, 'A', ${new Date(T0 + 5 * H)}, clock_timestamp(), 1e6)`
  await sql`UPDATE feature_snapshots SET value_num = value_num WHERE false`
  res = await app.inject({ method: 'GET', url: '/v1/drift/write-log', headers: read })
  const off = res.json()
  t.equal(off.range_read, 'off_until_rebuilt')
  t.equal(off.untracked_writes, 2)
  t.match(off.first_untracked_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/)
  t.ok(Date.parse(off.last_untracked_at) >= Date.parse(off.first_untracked_at))

  // the rebuild is for admins: it holds up writes for a full scan
  res = await app.inject({ method: 'POST', url: '/v1/drift/write-log/rebuild', headers: write })
  t.equal(res.statusCode, 403, res.body)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  t.equal((await app.inject({ method: 'GET', url: '/v1/drift/write-log', headers: read })).json().range_read, 'off_until_rebuilt', 'a refused rebuild changed nothing')

  res = await app.inject({ method: 'POST', url: '/v1/drift/write-log/rebuild', headers: admin })
  t.equal(res.statusCode, 200, res.body)
  const rebuilt = res.json()
  t.match(rebuilt, { logged_writes: 3, cleared_untracked_writes: 2, range_read: 'available' })
  t.type(rebuilt.took_ms, 'number')
  t.same(await logMatchesValues(sql), { rows: 3, missing: 0, extra: 0 }, 'the log holds the hand-written correction too')
  res = await app.inject({ method: 'GET', url: '/v1/drift/write-log', headers: read })
  t.same(res.json(), { range_read: 'available', logged_writes: 3, untracked_writes: 0, first_untracked_at: null, last_untracked_at: null })

  // the rebuild is audited, with what it did. Entries are written after the answer is sent (by
  // an onResponse hook, which may run after inject() has resolved): wait for both
  let entries: Array<{ method: string, status: number, params: { detail?: Record<string, unknown> } }> = []
  for (let attempt = 0; attempt < 100 && entries.length < 2; attempt++) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 20))
    await app.services.audit.flush()
    res = await app.inject({ method: 'GET', url: '/v1/audit?route=/v1/drift/write-log/rebuild', headers: admin })
    t.equal(res.statusCode, 200, res.body)
    entries = res.json().items
  }
  t.same(entries.map((e) => e.status).sort(), [200, 403], 'the refused and the done rebuild are audited')
  t.match(entries.find((e) => e.status === 200)?.params.detail, { logged_writes: 3, cleared_untracked_writes: 2 })
})

t.test('rebuilds at once, and beside ingests: one log row per write, no deadlock', async (t) => {
  const { app, sql } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'wl_busy' })
  const g = await insertDefinition(sql, { name: 'wl_busy_too' })
  await appendValues(sql, [...hourly(f, 'A', T0, 100, 1), ...hourly(g, 'A', T0, 100, 2)])
  await sql`INSERT INTO feature_snapshots (feature_id, entity_id, event_time, ingested_at, value_num)
            VALUES (${f}, 'Z', ${new Date(T0)}, clock_timestamp(), 7)`
  const rebuild = async (): Promise<number> => {
    const res = await app.inject({ method: 'POST', url: '/v1/drift/write-log/rebuild' })
    t.equal(res.statusCode, 200, res.body)
    return res.statusCode
  }
  const ingest = async (i: number): Promise<number> => {
    const res = await app.inject({
      method: 'POST', url: '/v1/values', headers: { 'content-type': 'application/json' },
      payload: { rows: Array.from({ length: 50 }, (_, k) => ({ feature: k % 2 === 0 ? 'wl_busy' : 'wl_busy_too', entity_id: `E${i}`, event_time: new Date(T0 + (200 + k) * H).toISOString(), value: k })) },
    })
    t.equal(res.statusCode, 200, res.body)
    return res.statusCode
  }
  await Promise.all([rebuild(), rebuild(), ingest(1), rebuild(), ingest(2), ingest(3), rebuild()])
  // 1 appendValues stamp x 2 features + the hand-written stamp + 3 ingests x 2 features
  t.same(await logMatchesValues(sql), { rows: 9, missing: 0, extra: 0 }, 'no write lost or logged twice')
  const status = (await app.inject({ method: 'GET', url: '/v1/drift/write-log' })).json()
  t.same(status, { range_read: 'available', logged_writes: 9, untracked_writes: 0, first_untracked_at: null, last_untracked_at: null })
})
