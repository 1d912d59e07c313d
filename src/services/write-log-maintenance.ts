import type { FastifyBaseLogger } from 'fastify'
import type { AppDeps } from '../context.js'
import { pruneWriteLog } from '../../db/write-log.js'
import { BackgroundLoop } from './background-loop.js'

/** How often the write log is pruned: it grows by one row per ingest and feature, retention drops values by chunks. */
export const WRITE_LOG_PRUNE_MS = 3_600_000
/** The first prune after start, once startup work has settled. */
const FIRST_PRUNE_MS = 60_000

/**
 * TimescaleDB mode: drops the write log's rows for values the retention policy removed
 * (pruneWriteLog), every hour, so that the log does not outgrow the values it describes.
 * postgres mode keeps every value (nothing to prune, and finding the oldest would be a full
 * scan). Any instance may prune; two at once delete the same rows, which is harmless.
 */
export class WriteLogMaintenance {
  private readonly loop: BackgroundLoop

  constructor (private readonly deps: AppDeps, log: FastifyBaseLogger) {
    this.loop = new BackgroundLoop(async () => {
      const dropped = await this.pruneNow()
      if (dropped > 0) log.info({ dropped }, 'write log pruned: rows of values removed by retention')
    }, () => WRITE_LOG_PRUNE_MS, (err) => { log.error({ err }, 'write log prune failed') })
  }

  /** Prunes now; the number of log rows dropped. */
  async pruneNow (): Promise<number> {
    return pruneWriteLog(this.deps.sql)
  }

  start (): void {
    if (this.deps.storageMode === 'timescaledb') this.loop.start(FIRST_PRUNE_MS)
  }

  async stop (): Promise<void> {
    await this.loop.stop()
  }
}
