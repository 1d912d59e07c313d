import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'
import { connect, withDatabase, type Sql } from '../../db/connection.js'
import { openDatabase, type Database } from '../../db/bootstrap.js'
import { loadConfig, type Config } from '../../src/config.js'
import { buildApp, type App } from '../../src/app.js'
import { startUp } from '../../src/services/startup.js'
import { testAdminUrl } from './embedded-test-cluster.js'
import pino from 'pino'

export { testAdminUrl }

/** A fresh, empty database on the test server; dropped when the test ends. */
export async function createTestDatabase (t: Test): Promise<string> {
  const admin = connect(testAdminUrl(), { max: 1 })
  const name = `fs_test_${process.pid}_${randomBytes(4).toString('hex')}`
  await admin.unsafe(`CREATE DATABASE "${name}"`)
  await admin.end()
  t.teardown(async () => {
    const a = connect(testAdminUrl(), { max: 1 })
    await a.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => {})
    await a.end()
  })
  return withDatabase(testAdminUrl(), name)
}

export interface TestContext {
  app: App
  sql: Sql
  db: Database
  config: Config
  url: string
}

export interface TestAppOptions {
  config?: Partial<Config>
  /** Load the default definitions and contract (default false: tests start empty). */
  defaults?: boolean
  backgroundJobs?: boolean
  /** Reuse an existing test database (second instance on the same database). */
  url?: string
  /**
   * Require API keys (default false). Tests also run without rate limits and load shedding
   * unless their config sets them: a busy test machine must not turn into 429s and 503s.
   */
  auth?: boolean
  /** Logger options for the app (default: no logger), e.g. a stream that keeps the lines. */
  logger?: Record<string, unknown>
}

/** The whole app on its own migrated database, closed when the test ends. */
export async function buildTestApp (t: Test, opts: TestAppOptions = {}): Promise<TestContext> {
  const url = opts.url ?? await createTestDatabase(t)
  const config = loadConfig({}, { LOAD_DEFAULTS: opts.defaults ?? false, BACKGROUND_JOBS: opts.backgroundJobs ?? false, DB_POOL_MAX: 5, AUTH: opts.auth ? 'on' : 'off', RATE_LIMIT_MAX: 0, PRESSURE_MAX_EVENT_LOOP_DELAY_MS: 0, PRESSURE_MAX_HEAP_USED_BYTES: 0, ...opts.config })
  const db = await openDatabase(url, config)
  await startUp(db, config, pino({ level: 'silent' }))
  const app = await buildApp({ config, sql: db.sql, storageMode: db.storageMode, databaseUrl: url }, { logger: opts.logger ?? false, backgroundJobs: opts.backgroundJobs ?? false })
  await app.ready()
  t.teardown(async () => {
    await app.close()
    await db.sql.end({ timeout: 2 })
  })
  return { app, sql: db.sql, db, config, url }
}

/** Path of the shared real data, or undefined (tests then skip with a message). */
export { sharedDataDir } from './shared-data.js'

/**
 * TimescaleDB mode: pauses the database's background jobs (compression, retention, aggregate
 * refreshes); a no-op in postgres mode. For tests that write values, or take locks, while they
 * hold a join's sessions open: a job's first compression of a chunk waits for the sessions'
 * ROW SHARE locks, the test's writes into that chunk queue behind the job, and the join waits
 * for the test. Call it before the test writes its first values.
 */
export async function pauseTimescaleJobs (ctx: Pick<TestContext, 'sql' | 'db'>): Promise<void> {
  if (ctx.db.storageMode !== 'timescaledb') return
  await ctx.sql`SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE job_id >= 1000`
}

/** Polls `what` every `everyMs` until it holds (true) or `ms` pass (false). */
export async function until (what: () => Promise<boolean>, ms = 10_000, everyMs = 50): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await what()) return true
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
  return false
}

/**
 * Refreshes a continuous aggregate by hand (up to `endMs`, else all of it). The refresh policy's
 * job (added at start, run by TimescaleDB's scheduler) may be refreshing it at the same moment:
 * that is an error (55P03), and waiting for the job and trying again is what an operator would do.
 */
export async function refreshAggregate (sql: Sql, view: 'feature_stats_hourly' | 'feature_stats_daily', endMs?: number): Promise<void> {
  const end = endMs === undefined ? null : new Date(endMs)
  for (let attempt = 1; ; attempt++) {
    try {
      await (view === 'feature_stats_hourly'
        ? sql`CALL refresh_continuous_aggregate('feature_stats_hourly', NULL, ${end}::timestamptz)`
        : sql`CALL refresh_continuous_aggregate('feature_stats_daily', NULL, ${end}::timestamptz)`)
      return
    } catch (err) {
      if ((err as { code?: string }).code !== '55P03' || attempt >= 100) throw err
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
}
