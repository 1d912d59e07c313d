import t from 'tap'
import type { Test } from 'tap'
import { buildTestApp, pauseTimescaleJobs } from '../lib/helper.js'
import { appendValues, insertDefinition, transactionsOpen, type RawValue } from '../lib/fixtures.js'
import { connect, type Sql } from '../../db/connection.js'
import type { ReservedSql } from '../../db/point-in-time.js'
import { JOIN_LOCK_TIMEOUT_MS } from '../../db/point-in-time.js'
import { driftSummary, type SampleSpec } from '../../db/drift.js'
import { soundCutoff } from '../../db/knowledge.js'
import { quantileFractions } from '../../src/domain/drift-stats.js'
import type { BlockAnswers } from '../../src/domain/training-output.js'
import { joinPointInTime, resolveFeatures } from '../../src/services/training-sets.js'

/**
 * A join read on two sessions of one snapshot must not hang when a third party's exclusive
 * lock request queues behind a read lock that session A holds while A waits for the service,
 * and session B's read lock request queues behind that request. The sessions hold ROW SHARE on
 * feature_snapshots itself from their start (db/point-in-time.ts lockAgainstChunkRewrites), so
 * their later read locks on the table pass such a queue; the read locks on its indexes (and on
 * chunks made later) do not: here a REINDEX of the primary key, which reads use (on a
 * hypertable, of a chunk's indexes: TimescaleDB does not reindex a hypertable's index; its own
 * jobs are paused, whose waits for the sessions would queue the REINDEX too). PostgreSQL sees no deadlock (A waits for its client, not for a
 * lock); the service breaks the cycle: B gives up after JOIN_LOCK_TIMEOUT_MS, is rolled back,
 * and the work goes on with fewer sessions. Same answers as without the interference.
 */
const H = 3_600_000
const T0 = Date.UTC(2023, 0, 1)
const ENTITIES = ['A', 'B', 'C', 'D', 'E']

async function seed (sql: Sql): Promise<number> {
  const f = await insertDefinition(sql, { name: 'price' })
  const rows: RawValue[] = []
  for (const [e, id] of ENTITIES.entries()) for (let h = 0; h < 400; h++) rows.push({ featureId: f, entityId: id, eventTimeMs: T0 + h * H, num: e * 10 + (h % 13) + (h >= 200 ? 3 : 0) })
  await appendValues(sql, rows)
  await appendValues(sql, [{ featureId: f, entityId: 'B', eventTimeMs: T0 + 6 * H, num: -1 }]) // a correction
  return f
}

/**
 * REINDEX of the values' primary key; on a hypertable, of the indexes of the chunk holding
 * `atMs` (reads plan only the chunks of their time range there).
 */
async function reindexValues (conn: Sql | ReservedSql, atMs: number): Promise<void> {
  const [{ hypertable }] = await conn<Array<{ hypertable: boolean }>>`
    SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = 'feature_snapshots'::regclass) AS hypertable`
  if (!hypertable) { await conn`REINDEX INDEX feature_snapshots_pkey`; return }
  const [{ chunk }] = await conn<Array<{ chunk: string }>>`
    SELECT chunk_schema || '.' || chunk_name AS chunk FROM timescaledb_information.chunks
    WHERE hypertable_name = 'feature_snapshots' AND range_start <= ${new Date(atMs)} AND range_end > ${new Date(atMs)}`
  await conn`REINDEX TABLE ${conn(chunk)}`
}

/**
 * Another client asks for an ACCESS EXCLUSIVE lock on the primary key of feature_snapshots
 * (REINDEX); resolves once the request waits in the lock queue. `release()` ends its
 * transaction (after the reindex).
 */
async function queueExclusiveLock (t: Test, url: string, atMs = T0): Promise<{ granted: Promise<void>, release: () => Promise<void> }> {
  const other = connect(url, { max: 1 })
  const watcher = connect(url, { max: 1 })
  t.teardown(async () => { await other.end({ timeout: 1 }); await watcher.end({ timeout: 1 }) })
  const conn = await other.reserve()
  const [{ pid }] = await conn<Array<{ pid: number }>>`SELECT pg_backend_pid() AS pid`
  await conn`BEGIN`
  const granted = reindexValues(conn, atMs)
  granted.catch(() => {})
  for (let i = 0; ; i++) {
    const [{ waiting }] = await watcher<Array<{ waiting: boolean }>>`
      SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = ${pid} AND NOT granted) AS waiting`
    if (waiting) break
    if (i > 500) throw new Error('the exclusive lock request never queued')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return {
    granted,
    release: async () => { await granted; await conn`COMMIT`; conn.release() },
  }
}

function rowsOf (blocks: BlockAnswers[]): unknown[] {
  return blocks.flatMap((a) => Array.from({ length: a.block.size }, (_, r) => [a.value(r, 0), a.statusName(r, 0), a.answerTime(r, 0)]))
}

t.test('training set on two sessions: the blocked session is rolled back, its block read on the other', async (t) => {
  const ctx = await buildTestApp(t, { config: { DB_POOL_MAX: 6 } })
  const { sql, url } = ctx
  await pauseTimescaleJobs(ctx)
  await seed(sql)
  const features = await resolveFeatures(sql, ['price'], '/features')
  const k = await soundCutoff(sql)
  const source = { count: 120, entityAt: (i: number) => ENTITIES[i % 5], timeAt: (i: number) => T0 + ((i * 37) % 400) * H + 60_000, extraAt: () => ({}) }
  const calm: BlockAnswers[] = []
  for await (const { answers } of joinPointInTime(sql, features, source, 'event', k, 10, 2)) calm.push(answers)

  // block 0 is read on session A (which then holds its read lock), block 1 on session B: B's
  // read starts only once the exclusive request waits behind A
  let firstRead!: () => void
  const blockZeroRead = new Promise<void>((resolve) => { firstRead = resolve })
  let staged: Awaited<ReturnType<typeof queueExclusiveLock>> | undefined
  const hooks = {
    afterRead: (b: number) => { if (b === 0) firstRead() },
    beforeRead: async (b: number) => {
      if (b !== 1 || staged !== undefined) return
      await blockZeroRead
      staged = await queueExclusiveLock(t, url)
    },
  }
  const started = Date.now()
  const busy: BlockAnswers[] = []
  for await (const { answers } of joinPointInTime(sql, features, source, 'event', k, 10, 2, hooks)) busy.push(answers)
  const ms = Date.now() - started
  t.ok(staged, 'the exclusive request was queued during the join')
  t.same(rowsOf(busy), rowsOf(calm), 'the same answers as without the lock queue')
  t.ok(ms >= JOIN_LOCK_TIMEOUT_MS * 0.9, `the blocked session gave up after its lock timeout (${ms} ms)`)
  await staged!.release() // granted once the join ended
})

t.test('training set on three sessions: two blocked sessions are retired in turn, the third reads on', async (t) => {
  const ctx = await buildTestApp(t, { config: { DB_POOL_MAX: 8 } })
  const { sql, url } = ctx
  await pauseTimescaleJobs(ctx)
  await seed(sql)
  const features = await resolveFeatures(sql, ['price'], '/features')
  const k = await soundCutoff(sql)
  const source = { count: 150, entityAt: (i: number) => ENTITIES[(i * 3) % 5], timeAt: (i: number) => T0 + ((i * 53) % 400) * H, extraAt: () => ({}) }
  const calm: BlockAnswers[] = []
  for await (const { answers } of joinPointInTime(sql, features, source, 'known', k, 10, 3)) calm.push(answers)

  // blocks 1 and 2 (sessions B and C) start once the exclusive request waits behind A
  let firstRead!: () => void
  const blockZeroRead = new Promise<void>((resolve) => { firstRead = resolve })
  let staging: Promise<Awaited<ReturnType<typeof queueExclusiveLock>>> | undefined
  const hooks = {
    afterRead: (b: number) => { if (b === 0) firstRead() },
    beforeRead: async (b: number) => {
      if (b !== 1 && b !== 2) return
      staging ??= blockZeroRead.then(async () => queueExclusiveLock(t, url))
      await staging
    },
  }
  const busy: BlockAnswers[] = []
  for await (const { answers } of joinPointInTime(sql, features, source, 'known', k, 10, 3, hooks)) busy.push(answers)
  t.same(rowsOf(busy), rowsOf(calm), 'the same answers as without the lock queue')
  await (await staging!).release()
  t.equal(await transactionsOpen(sql), 0, 'no transaction left open')
})

t.test('drift check on two sessions: again on one session, same summary', async (t) => {
  const ctx = await buildTestApp(t, { config: { DB_POOL_MAX: 6 } })
  const { sql, url } = ctx
  await pauseTimescaleJobs(ctx)
  const f = await seed(sql)
  const k = await soundCutoff(sql)
  const window = (fromMs: number, toMs: number): SampleSpec => ({ kind: 'window', featureId: f, fromMs, toMs, cutoffMs: k })
  const ref = window(T0, T0 + 200 * H)
  const cur = window(T0 + 200 * H, T0 + 400 * H)
  const calm = await driftSummary(sql, ref, cur, quantileFractions())
  let staged: Awaited<ReturnType<typeof queueExclusiveLock>> | undefined
  let released: Promise<void> | undefined
  const started = Date.now()
  const busy = await driftSummary(sql, ref, cur, quantileFractions(), {
    beforeParts: async () => {
      if (staged !== undefined) return
      // the first session holds its read lock (the probe read the values)
      staged = await queueExclusiveLock(t, url, T0 + 200 * H)
      // the holder of the exclusive lock lets go soon after it gets it (when the check rolls back)
      released = staged.granted.then(async () => { await new Promise((resolve) => setTimeout(resolve, 100)); await staged!.release() })
    },
  })
  const ms = Date.now() - started
  t.ok(staged, 'the exclusive request was queued during the check')
  t.same(busy, calm, 'the same summary as without the lock queue')
  t.ok(ms >= JOIN_LOCK_TIMEOUT_MS * 0.9, `the second session gave up after its lock timeout (${ms} ms)`)
  await released
})

/**
 * Another client holds an ACCESS EXCLUSIVE lock on the primary key of feature_snapshots (a
 * REINDEX in a transaction; granted at once: nothing has read the index yet) until `release()`.
 */
async function holdExclusiveLock (t: Test, url: string): Promise<{ release: () => Promise<void> }> {
  const other = connect(url, { max: 1 })
  t.teardown(async () => { await other.end({ timeout: 1 }) })
  const conn = await other.reserve()
  await conn`BEGIN`
  await reindexValues(conn, T0)
  let released = false
  return { release: async () => { if (released) return; released = true; await conn`COMMIT`; conn.release() } }
}

t.test('training set on two sessions: a wait outlasting the lock timeout on every session ends on the last one, which waits it out', async (t) => {
  const ctx = await buildTestApp(t, { config: { DB_POOL_MAX: 6 } })
  const { sql, url } = ctx
  await pauseTimescaleJobs(ctx)
  await seed(sql)
  const features = await resolveFeatures(sql, ['price'], '/features')
  const k = await soundCutoff(sql)
  const source = { count: 120, entityAt: (i: number) => ENTITIES[(i * 2) % 5], timeAt: (i: number) => T0 + ((i * 41) % 400) * H + 30_000, extraAt: () => ({}) }
  for (const mode of ['event', 'known'] as const) {
    const calm: BlockAnswers[] = []
    for await (const { answers } of joinPointInTime(sql, features, source, mode, k, 10, 2)) calm.push(answers)

    // a maintenance job holds the values exclusively for 1.5 lock timeouts, from before the
    // first read: both sessions wait, both give up after the timeout; one is retired (its block
    // goes to the other), the last one goes back to the start of its block and waits it out
    let releasing: Promise<void> | undefined
    let staging: Promise<void> | undefined
    const hooks = {
      beforeRead: async () => {
        staging ??= holdExclusiveLock(t, url).then((held) => {
          releasing = new Promise((resolve) => setTimeout(resolve, JOIN_LOCK_TIMEOUT_MS * 1.5)).then(async () => held.release())
        })
        await staging
      },
    }
    const started = Date.now()
    const busy: BlockAnswers[] = []
    for await (const { answers } of joinPointInTime(sql, features, source, mode, k, 10, 2, hooks)) busy.push(answers)
    const ms = Date.now() - started
    await releasing
    t.same(rowsOf(busy), rowsOf(calm), `${mode}: the same answers as without the lock`)
    t.ok(ms >= JOIN_LOCK_TIMEOUT_MS * 1.4, `${mode}: the join waited for the lock to be released (${ms} ms)`)
    t.equal(await transactionsOpen(sql), 0, `${mode}: no transaction left open`)
  }
})
