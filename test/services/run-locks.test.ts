import t from 'tap'
import pino from 'pino'
import { RunLocks } from '../../src/services/pipelines.js'
import { connect } from '../../db/connection.js'
import { createTestDatabase, until } from '../lib/helper.js'

/**
 * The connection that holds the runs' advisory locks stays open for a while after the last run
 * released its lock (runs created one after another reuse it rather than opening a connection
 * each), then closes; a new run opens it again; close() ends it at once.
 */

const RUN_LOCK_CLASS = 7_305_005

t.test('the lock connection outlives a run by its idle time, is reused, and closes when idle or closed', async (t) => {
  const url = await createTestDatabase(t)
  const sql = connect(url, { max: 1 })
  t.teardown(() => sql.end({ timeout: 1 }))
  const lockSessions = async (): Promise<number[]> => (await sql<{ pid: number }[]>`
    SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'feature-store-run-locks'`).map((r) => r.pid)
  const locksHeld = async (): Promise<number> => (await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = ${RUN_LOCK_CLASS}`)[0].n

  const locks = new RunLocks(url, pino({ level: 'silent' }), 300)
  t.teardown(() => locks.close())
  await locks.acquire('run-1')
  t.equal(await locksHeld(), 1, 'the run is locked')
  const [pid] = await lockSessions()
  t.ok(pid !== undefined, 'on the lock connection')
  await locks.release('run-1')
  t.equal(await locksHeld(), 0, 'released')
  t.ok(locks.open, 'the connection stays open once no run holds a lock')

  // a run created within the idle time reuses the connection
  await locks.acquire('run-2')
  t.same(await lockSessions(), [pid], 'the next run takes its lock on the same connection')
  await locks.release('run-2')

  t.ok(await until(async () => !locks.open), 'closed after the idle time')
  t.ok(await until(async () => (await lockSessions()).length === 0), 'and gone from the server')

  // the next run opens it again; close() ends it at once, whatever the idle time
  await locks.acquire('run-3')
  t.equal(await locksHeld(), 1, 'a new connection takes the next lock')
  await locks.release('run-3')
  await locks.close()
  t.notOk(locks.open, 'close() ends the connection at once')
  t.ok(await until(async () => (await lockSessions()).length === 0), 'and it is gone from the server')
})

t.test('a run that takes its lock during the idle time keeps the connection past it', async (t) => {
  const url = await createTestDatabase(t)
  const locks = new RunLocks(url, pino({ level: 'silent' }), 100)
  t.teardown(() => locks.close())
  await locks.acquire('a')
  await locks.release('a')
  await locks.acquire('b')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.ok(locks.open, 'still open while a run holds its lock')
  await locks.release('b')
  t.ok(await until(async () => !locks.open), 'closed once idle again')
})
