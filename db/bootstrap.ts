import type { Config } from '../src/config.js'
import { connect, transactionOn, type Sql, type TxSql } from './connection.js'
import { detectStorageMode, type StorageMode } from './storage-mode.js'
import { migrate } from './migrate.js'
import { convertToTimescale, plainTimeSeriesTables, type ConversionReport } from './timescale.js'

export interface Database {
  sql: Sql
  url: string
  storageMode: StorageMode
  applied: string[]
  /** What was converted when a database first set up in postgres mode started in timescaledb mode. */
  converted: ConversionReport | null
}

/** Connects, decides the storage mode, and applies pending migrations. */
export async function openDatabase (url: string, config: Config, opts: { poolMax?: number } = {}): Promise<Database> {
  const sql = connect(url, { max: opts.poolMax ?? config.DB_POOL_MAX, idleTimeoutSeconds: config.DB_IDLE_TIMEOUT_SECONDS })
  try {
    const storageMode = await detectStorageMode(sql, config.STORAGE_MODE)
    let converted: ConversionReport | null = null
    const applied = await migrate(sql, {
      mode: storageMode,
      snapshotChunkInterval: config.SNAPSHOT_CHUNK_INTERVAL,
      runsChunkInterval: config.RUNS_CHUNK_INTERVAL,
      driftChunkInterval: config.DRIFT_CHUNK_INTERVAL,
      // A database first migrated in postgres mode, now on a server with TimescaleDB: its plain
      // tables and materialized views become hypertables and continuous aggregates, in one
      // transaction, before the pending migrations run in timescaledb mode.
      beforeMigrations: storageMode !== 'timescaledb'
        ? undefined
        : async (conn) => {
          if ((await plainTimeSeriesTables(conn)).length === 0) return
          // one transaction on the migration's connection
          converted = await transactionOn(conn, async () => convertToTimescale(conn as unknown as TxSql, {
            feature_snapshots: config.SNAPSHOT_CHUNK_INTERVAL,
            pipeline_runs: config.RUNS_CHUNK_INTERVAL,
            feature_drift_logs: config.DRIFT_CHUNK_INTERVAL,
          }))
        },
    })
    return { sql, url, storageMode, applied, converted }
  } catch (err) {
    await sql.end({ timeout: 1 })
    throw err
  }
}
