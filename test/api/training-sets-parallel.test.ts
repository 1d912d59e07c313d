import t from 'tap'
import { buildTestApp, pauseTimescaleJobs, until } from '../lib/helper.js'
import { appendValues, insertDefinition, transactionsOpen, type RawValue } from '../lib/fixtures.js'
import { closePointInTimeSession, JOIN_LOCK_TIMEOUT_MS, openPointInTimeSessions } from '../../db/point-in-time.js'
import { connect } from '../../db/connection.js'
import type { Sql } from '../../db/connection.js'
import type { AnsweredRows } from '../../src/domain/training-output.js'
import { joinPointInTime, resolveFeatures, type TrainingSetService } from '../../src/services/training-sets.js'

/**
 * Training sets read on two connections in parallel (TRAINING_READ_CONNECTIONS) must give the
 * answers of one snapshot: those of one connection, whatever commits while they are built.
 */
const H = 3_600_000
const T0 = Date.UTC(2023, 0, 1)
const iso = (ms: number): string => new Date(ms).toISOString()
const ENTITIES = ['A', 'B', 'C', 'D']

async function seed (sql: Sql): Promise<void> {
  const price = await insertDefinition(sql, { name: 'price' })
  const label = await insertDefinition(sql, { name: 'label', dtype: 'string', ttl_ms: 3 * H })
  const rows: RawValue[] = []
  for (const [e, id] of ENTITIES.entries()) {
    for (let h = 0; h < 24; h += 1 + e) {
      rows.push({ featureId: price, entityId: id, eventTimeMs: T0 + h * H, num: e * 100 + h })
      if (h % 4 === 0) rows.push({ featureId: label, entityId: id, eventTimeMs: T0 + h * H, text: h % 8 === 0 ? null : `${id}${h}` })
    }
  }
  await appendValues(sql, rows)
  // corrections, learned later
  await appendValues(sql, [{ featureId: price, entityId: 'B', eventTimeMs: T0 + 6 * H, num: -1 }, { featureId: label, entityId: 'C', eventTimeMs: T0 + 8 * H, text: 'fixed' }])
}

/** 60 rows over 4 entities, not in time order, with duplicates: 12 blocks of 5 rows. */
const entityRows = Array.from({ length: 60 }, (_, i) => ({ entity_id: ENTITIES[(i * 7) % 4], event_time: iso(T0 + ((i * 37) % 30) * H - (i % 3) * 60_000), n: i }))

/** Rows rendered as plain objects, in order, from answered blocks. */
async function collect (service: TrainingSetService, request: object, between?: (block: number) => Promise<void>): Promise<unknown[]> {
  const resolved = await service.resolve(request as never)
  const out: unknown[] = []
  let b = 0
  for await (const block of service.answeredBlocks(resolved) as AsyncIterable<AnsweredRows>) {
    const { answers } = block
    for (let r = 0; r < answers.block.size; r++) {
      out.push({
        entity_id: block.entityAt(r),
        t: answers.block.t[r],
        extra: block.extraAt(r),
        cells: resolved.features.map((_, f) => [answers.value(r, f), answers.statusName(r, f), answers.answerTime(r, f)]),
      })
    }
    await between?.(b++)
  }
  return out
}

for (const pointInTime of ['event', 'known'] as const) {
  t.test(`${pointInTime}: two read connections answer exactly as one, on one snapshot, while writes commit`, async (t) => {
    const two = await buildTestApp(t, { config: { TRAINING_BLOCK_ROWS: 5, TRAINING_READ_CONNECTIONS: 2 } })
    const one = await buildTestApp(t, { url: two.url, config: { TRAINING_BLOCK_ROWS: 5, TRAINING_READ_CONNECTIONS: 1 } })
    // the writes between blocks must not queue behind a compression waiting for the join
    await pauseTimescaleJobs(two)
    await seed(two.sql)
    const sql = two.sql
    const [{ id: priceId }] = await sql<Array<{ id: number }>>`SELECT id FROM feature_definitions WHERE name = 'price'`
    // a pinned K, so that both builds answer the same question
    const [{ k }] = await sql<Array<{ k: Date }>>`SELECT now() AS k`
    // "known": rows around the moments the values and the corrections were ingested
    const stamps = (await sql<Array<{ ms: number }>>`SELECT ceil(extract(epoch FROM ingested_at) * 1000)::float8 AS ms FROM feature_snapshots GROUP BY 1 ORDER BY 1`).map((r) => r.ms)
    t.equal(stamps.length, 2)
    const [s1, s2] = stamps
    const around = [s1 - 1, s1, s1 + 1, Math.floor((s1 + s2) / 2), s2 - 1, s2, s2 + 1, s2 + H]
    const rows = pointInTime === 'event' ? entityRows : entityRows.map((r, i) => ({ ...r, event_time: iso(around[(i * 5) % around.length]) }))
    const request = { features: ['price', 'label'], entity_rows: rows, point_in_time: pointInTime, as_of_system_time: k.toISOString() }
    const expected = await collect(one.app.services.trainingSets, request)
    t.equal(expected.length, 60)

    let sessionsSeen = 0
    const got = await collect(two.app.services.trainingSets, request, async (b) => {
      if (b === 0) sessionsSeen = await transactionsOpen(sql)
      // between blocks: new values and corrections commit, and values are removed (as a
      // retention job would); none of it may show in any later block
      if (b % 3 === 0) {
        await appendValues(sql, ENTITIES.map((id, i) => ({ featureId: priceId, entityId: id, eventTimeMs: T0 + (i + 1) * H, num: 1e6 + b })))
        await sql`DELETE FROM feature_snapshots WHERE entity_id = ${ENTITIES[(b / 3) % 4]} AND event_time < ${iso(T0 + 20 * H)}`
      }
    })
    t.equal(sessionsSeen, 2, 'two sessions read the blocks')
    t.same(got, expected, 'the same answers as one connection, in input order')
    t.ok((got as Array<{ cells: unknown[][] }>).some((r) => r.cells[0][1] === 'PRESENT'), 'answers were found')
    t.equal(await transactionsOpen(sql), 0, 'both transactions ended')
    const now = await collect(one.app.services.trainingSets, request)
    t.notSame(now, expected, 'the writes do change a build started after them')
  })
}

t.test('the sessions of a join share one exported snapshot', async (t) => {
  const ctx = await buildTestApp(t)
  const { sql } = ctx
  // so that the writer below keeps committing while the sessions are open
  await pauseTimescaleJobs(ctx)
  const price = await insertDefinition(sql, { name: 'price' })
  await appendValues(sql, [{ featureId: price, entityId: 'A', eventTimeMs: T0, num: 1 }])
  // a writer committing all the time while the sessions are open; the test never waits for a
  // write while it holds sessions
  let writing = true
  let written = 0
  const writer = (async () => {
    while (writing) { await appendValues(sql, [{ featureId: price, entityId: 'W', eventTimeMs: T0 + (written % 3600) * 1000, num: written }]); written++ }
  })()
  try {
    for (let i = 0; i < 5; i++) {
      const sessions = await openPointInTimeSessions(sql, 2)
      try {
        t.equal(sessions.length, 2)
        const seen = await Promise.all(sessions.map(async (s) => (await s<Array<{ snap: string, n: number }>>`SELECT pg_current_snapshot()::text AS snap, (SELECT count(*)::int FROM feature_snapshots) AS n`)[0]))
        const before = written
        for (let waited = 0; written < before + 2 && waited < 3000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10))
        const after = await Promise.all(sessions.map(async (s) => (await s<Array<{ n: number }>>`SELECT count(*)::int AS n FROM feature_snapshots`)[0].n))
        t.equal(seen[1].snap, seen[0].snap, 'one snapshot')
        t.same(after, [seen[0].n, seen[0].n], 'later commits are invisible to both')
      } finally {
        await Promise.all(sessions.map(closePointInTimeSession))
      }
    }
  } finally {
    writing = false
    await writer
  }
  t.ok(written > 0)
  t.equal(await transactionsOpen(sql), 0)
})

t.test('extra sessions only while the pool has room; concurrent joins all finish', async (t) => {
  const { app, sql } = await buildTestApp(t, { config: { TRAINING_BLOCK_ROWS: 5, TRAINING_READ_CONNECTIONS: 4, DB_POOL_MAX: 4 } })
  await seed(sql)
  const sessions = await openPointInTimeSessions(sql, 4)
  t.equal(sessions.length, 2, 'a pool of 4 keeps 2 for other queries')
  const more = await openPointInTimeSessions(sql, 4)
  t.equal(more.length, 1, 'a second join gets only its own connection')
  await Promise.all([...sessions, ...more].map(closePointInTimeSession))
  const again = await openPointInTimeSessions(sql, 4)
  t.equal(again.length, 2, 'released sessions are counted back')
  await Promise.all(again.map(closePointInTimeSession))

  const request = { features: ['price', 'label'], entity_rows: entityRows }
  const answers = await Promise.all(Array.from({ length: 6 }, async () => app.inject({ method: 'POST', url: '/v1/training-sets', headers: { accept: 'text/csv' }, payload: request })))
  for (const res of answers) {
    t.equal(res.statusCode, 200)
    t.equal(res.body, answers[0].body)
  }
  t.equal(res0Lines(answers[0].body), 61)
  t.equal(await transactionsOpen(sql), 0)
})

function res0Lines (body: string): number {
  return body.trimEnd().split('\n').length
}

t.test('a failing block fails the join cleanly and releases both connections', async (t) => {
  const { app, sql } = await buildTestApp(t, { config: { TRAINING_BLOCK_ROWS: 5, TRAINING_READ_CONNECTIONS: 2 } })
  await seed(sql)
  const features = await resolveFeatures(sql, ['price', 'label'], '/features')
  const [{ k }] = await sql<Array<{ k: Date }>>`SELECT now() AS k`
  const unhandled: unknown[] = []
  const onUnhandled = (err: unknown): void => { unhandled.push(err) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })

  // block `bad` fails in PostgreSQL (text with a NUL byte) on session bad mod 2, while the
  // other session is reading the next block
  for (const bad of [0, 1, 2, 3, 11]) {
    const source = {
      count: 60,
      entityAt: (i: number) => (Math.floor(i / 5) === bad ? 'A\u0000' : ENTITIES[i % 4]),
      timeAt: (i: number) => T0 + i * H,
      extraAt: () => ({}),
    }
    let yielded = 0
    await t.rejects((async () => {
      for await (const _ of joinPointInTime(sql, features, source, 'event', k.getTime(), 5, 2)) yielded++
    })(), `block ${bad} fails the join`)
    t.equal(yielded, bad, 'every block before it was answered')
    t.equal(await transactionsOpen(sql), 0, 'no transaction left open')
  }
  // a consumer that stops early
  for await (const _ of joinPointInTime(sql, features, { count: 60, entityAt: (i) => ENTITIES[i % 4], timeAt: (i) => T0 + i * H, extraAt: () => ({}) }, 'known', k.getTime(), 5, 2)) break
  t.equal(await transactionsOpen(sql), 0, 'no transaction left open after an early stop')
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(unhandled, [], 'no unhandled rejection')

  // the pool still serves joins on two sessions
  const res = await app.inject({ method: 'POST', url: '/v1/training-sets', headers: { accept: 'text/csv' }, payload: { features: ['price', 'label'], entity_rows: entityRows } })
  t.equal(res.statusCode, 200)
  t.equal(res0Lines(res.body), 61)
})

t.test('every session holds ROW SHARE on the values; an extra that cannot have it in time is left out', async (t) => {
  const ctx = await buildTestApp(t, { config: { DB_POOL_MAX: 4 } })
  const { sql, url } = ctx
  await pauseTimescaleJobs(ctx)
  await seed(sql)
  const watcher = connect(url, { max: 1 })
  t.teardown(async () => { await watcher.end({ timeout: 1 }) })
  /** Backends holding (or waiting for) `mode` on feature_snapshots. */
  const lockers = async (mode: string, granted = true): Promise<number[]> => (await watcher<Array<{ pid: number }>>`
    SELECT l.pid FROM pg_locks l WHERE l.relation = 'feature_snapshots'::regclass AND l.mode = ${mode} AND l.granted = ${granted} ORDER BY 1`).map((r) => r.pid)
  const rowShareHolders = async (): Promise<number[]> => lockers('RowShareLock')
  const pids = async (sessions: Awaited<ReturnType<typeof openPointInTimeSessions>>): Promise<number[]> =>
    (await Promise.all(sessions.map(async (s) => (await s<Array<{ pid: number }>>`SELECT pg_backend_pid() AS pid`)[0].pid))).sort((a, b) => a - b)

  const sessions = await openPointInTimeSessions(sql, 2)
  t.equal(sessions.length, 2)
  t.same(await rowShareHolders(), await pids(sessions), 'both sessions hold it')
  await Promise.all(sessions.map(closePointInTimeSession))
  t.same(await rowShareHolders(), [], 'released with the sessions')

  // The extra session's connection comes only once the test gives one back, after another
  // client's EXCLUSIVE request queued behind the first session: the extra's ROW SHARE request
  // would wait behind it while the first session waits for the extra (a cycle PostgreSQL does
  // not see). It gives up after JOIN_LOCK_TIMEOUT_MS; the join goes on with its first session.
  const busy = await Promise.all([sql.reserve(), sql.reserve(), sql.reserve()])
  const other = connect(url, { max: 1 })
  t.teardown(async () => { await other.end({ timeout: 1 }) })
  const exclusive = await other.reserve()
  const opening = openPointInTimeSessions(sql, 2)
  if (!await until(async () => (await rowShareHolders()).length > 0, 10_000, 5)) throw new Error('the first session never took its lock')
  await exclusive`BEGIN`
  const granted = exclusive`LOCK TABLE feature_snapshots IN EXCLUSIVE MODE`.then(() => {})
  granted.catch(() => {})
  if (!await until(async () => (await lockers('ExclusiveLock', false)).length > 0, 10_000, 5)) throw new Error('the EXCLUSIVE request never queued')
  busy[0].release()
  const started = Date.now()
  const alone = await opening
  t.equal(alone.length, 1, 'the extra session was left out')
  t.ok(Date.now() - started >= JOIN_LOCK_TIMEOUT_MS * 0.9, 'after its lock timeout')
  const [{ n }] = await alone[0]<Array<{ n: number }>>`SELECT count(*)::int AS n FROM feature_snapshots`
  t.ok(n > 0, 'the first session reads on')
  await closePointInTimeSession(alone[0])
  await granted
  await exclusive`COMMIT`
  exclusive.release()
  for (const conn of busy.slice(1)) conn.release()
  t.equal(await transactionsOpen(sql), 0, 'no transaction left open')
})
