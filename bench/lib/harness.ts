import pino from 'pino'
import { startTestCluster, stopTestCluster } from '../../test/lib/embedded-test-cluster.js'
import { connect, withDatabase } from '../../db/connection.js'
import { openDatabase, type Database } from '../../db/bootstrap.js'
import { loadConfig, type Config } from '../../src/config.js'
import { buildApp, type App } from '../../src/app.js'
import { startUp } from '../../src/services/startup.js'

/** One measured figure beside the reference it is compared with, measured in the same run. */
export interface BenchResult {
  bench: string
  /** What was measured, in words. */
  measured: string
  value: number
  unit: string
  reference: string
  reference_value: number
  /** value / reference_value (for "lower is better" units the bench says so in `target`). */
  ratio: number
  /** The target in words, e.g. ">= 50 % of raw COPY". */
  target: string
  met: boolean
  notes?: string
}

export interface Bench {
  name: string
  run: (adminUrl: string) => Promise<BenchResult[]>
}

/** A database server for the benchmarks: BENCH_DATABASE_URL, or a private embedded cluster. */
export async function withBenchServer<T> (fn: (adminUrl: string) => Promise<T>): Promise<T> {
  if (process.env.BENCH_DATABASE_URL) return fn(process.env.BENCH_DATABASE_URL)
  const url = await startTestCluster()
  try {
    return await fn(url)
  } finally {
    await stopTestCluster()
  }
}

export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]
}

export interface BenchApp {
  app: App
  db: Database
  url: string
  /** Closes the app and the pool and drops the database. */
  close: () => Promise<void>
}

export interface BenchAppOptions {
  /** Settings over the bench defaults (auth, rate limits and load shedding off). */
  config?: Partial<Config>
  /** Logger options for the app; default none. */
  logger?: boolean | Record<string, unknown>
}

/**
 * The whole service on a fresh database of the bench server, by default with auth, rate limits
 * and load shedding off (they would measure the harness, not the service; a bench that measures
 * them turns them on). Not listening yet.
 */
export async function openBenchApp (adminUrl: string, label: string, opts: BenchAppOptions = {}): Promise<BenchApp> {
  const admin = connect(adminUrl, { max: 1 })
  const name = `bench_${label}_${process.pid}`
  await admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
  await admin.unsafe(`CREATE DATABASE "${name}"`)
  const url = withDatabase(adminUrl, name)
  const config = loadConfig({}, { LOAD_DEFAULTS: false, BACKGROUND_JOBS: false, AUTH: 'off', RATE_LIMIT_MAX: 0, PRESSURE_MAX_EVENT_LOOP_DELAY_MS: 0, DB_POOL_MAX: 4, ...opts.config })
  const db = await openDatabase(url, config)
  await startUp(db, config, pino({ level: 'silent' }))
  const app = await buildApp({ config, sql: db.sql, storageMode: db.storageMode, databaseUrl: url }, { logger: opts.logger ?? false, backgroundJobs: false })
  return {
    app, db, url,
    close: async () => {
      await app.close()
      await db.sql.end({ timeout: 1 })
      await admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
      await admin.end()
    },
  }
}
