import type { FastifyBaseLogger } from 'fastify'
import type { AppDeps } from '../context.js'
import { pruneWriteLog } from '../../db/write-log.js'

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
  private timer?: NodeJS.Timeout
  private current?: Promise<unknown>
  private stopped = true

  constructor (private readonly deps: AppDeps, private readonly log: FastifyBaseLogger) {}

  /** Prunes now; the number of log rows dropped. */
  async pruneNow (): Promise<number> {
    return pruneWriteLog(this.deps.sql)
  }

  start (): void {
    if (this.deps.storageMode !== 'timescaledb' || !this.stopped) return
    this.stopped = false
    this.schedule(FIRST_PRUNE_MS)
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    await this.current
  }

  private schedule (delayMs: number): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.current = this.pruneNow()
        .then((dropped) => { if (dropped > 0) this.log.info({ dropped }, 'write log pruned: rows of values removed by retention') },
          (err: unknown) => { this.log.error({ err }, 'write log prune failed') })
        .finally(() => { this.current = undefined; this.schedule(WRITE_LOG_PRUNE_MS) })
    }, delayMs)
    this.timer.unref()
  }
}
