import type { FastifyInstance } from 'fastify'
import type { AppDeps } from '../context.js'
import { trainingReadConnections } from '../config.js'
import { RegistryService } from './registry.js'
import { ContractService } from './contracts.js'
import { TrainingSetService } from './training-sets.js'
import { RetrievalService } from './retrieval.js'
import { PipelineService } from './pipelines.js'
import { ApiKeyService } from './api-keys.js'
import { AuditService } from './audit.js'
import { DatabaseHealth } from './database-health.js'
import { DriftService } from './drift.js'
import { MonitorService } from './monitors.js'
import { StatsService } from './stats.js'
import { WriteLogMaintenance } from './write-log-maintenance.js'
import { SeriesPackMaintenance } from './series-packs.js'
import { RenderPool } from './render-pool.js'
import { LineageService } from './lineage.js'
import { IngestService } from './ingest.js'
import { OnlineService } from './online.js'
import { OnlineCache } from './online-cache.js'
import { ValueHistoryService } from './value-history.js'
import { EntityInventoryService } from './entity-inventory.js'
import { FreshnessMetrics } from './freshness-metrics.js'
import { randomUUID } from 'node:crypto'

/**
 * Every service of the app, built once per app instance. A service that keeps state
 * (cache, listeners, background jobs) releases it in close().
 */
export interface Services {
  registry: RegistryService
  contracts: ContractService
  trainingSets: TrainingSetService
  retrieval: RetrievalService
  pipelines: PipelineService
  apiKeys: ApiKeyService
  audit: AuditService
  databaseHealth: DatabaseHealth
  drift: DriftService
  monitors: MonitorService
  stats: StatsService
  writeLog: WriteLogMaintenance
  seriesPacks: SeriesPackMaintenance
  /** Threads that render training sets (TRAINING_RENDER_THREADS). */
  renderPool: RenderPool
  lineage: LineageService
  ingest: IngestService
  online: OnlineService
  valueHistory: ValueHistoryService
  entityInventory: EntityInventoryService
  close: () => Promise<void>
}

export interface ServiceOptions {
  backgroundJobs: boolean
}

export async function buildServices (deps: AppDeps, app: FastifyInstance, opts: ServiceOptions): Promise<Services> {
  const closers: Array<() => Promise<void>> = []
  void app; void opts; void deps
  const apiKeys = new ApiKeyService(deps.sql, { adminApiKey: deps.config.ADMIN_API_KEY, cacheSeconds: deps.config.AUTH_CACHE_SECONDS })
  const audit = new AuditService(deps.sql, app.log)
  closers.push(async () => { await audit.flush() })
  const databaseHealth = new DatabaseHealth(deps.sql, app.log, deps.config.DB_HEARTBEAT_SECONDS * 1000)
  if (deps.databaseUrl !== '') databaseHealth.start()
  closers.push(async () => { databaseHealth.close() })
  // point-in-time reads with plan-time bounds where a hypertable would otherwise plan every chunk
  const bounded = deps.config.PIT_READS === 'bounded' || (deps.config.PIT_READS === 'auto' && deps.storageMode === 'timescaledb')
  const boundedReads = bounded ? { lookbackMs: deps.config.PIT_LOOKBACK_SECONDS * 1000 } : undefined
  // series packs: postgres mode, direct reads
  const seriesPacks = new SeriesPackMaintenance(deps, app.log)
  seriesPacks.register(app.metrics)
  const packs = seriesPacks.enabled && boundedReads === undefined
  const trainingSets = new TrainingSetService(deps.sql, { maxRows: deps.config.MAX_TRAINING_ROWS, blockRows: deps.config.TRAINING_BLOCK_ROWS, readConnections: trainingReadConnections(deps.config, deps.storageMode), boundedReads, packs })
  const renderPool = new RenderPool(deps.config.TRAINING_RENDER_THREADS, (err) => {
    app.log.error({ err }, 'render thread could not start: training sets are written on the main thread')
  })
  closers.push(async () => { await renderPool.close() })
  const retrieval = new RetrievalService(deps.sql, { blockRows: deps.config.TRAINING_BLOCK_ROWS, boundedReads, packs })
  const pipelines = new PipelineService(deps, trainingSets, app.log, { syncMaxRows: deps.config.PIPELINE_SYNC_MAX_ROWS, concurrency: deps.config.PIPELINE_CONCURRENCY, backgroundJobs: opts.backgroundJobs })
  closers.push(async () => { await pipelines.close() })
  const online = new OnlineService(deps.sql, new OnlineCache({ maxKeys: deps.config.CACHE_MAX_KEYS, ttlSeconds: deps.config.CACHE_TTL_SECONDS, origin: randomUUID() }, app.metrics))
  // this instance's registry changes reach its online cache at commit (read-your-writes); the
  // other instances' through the notification their commit sends (migrations 020 and 090)
  const forgetReferences = (): void => { online.cache.forgetDefinitions() }
  const registry = new RegistryService(deps.sql, forgetReferences)
  const contracts = new ContractService(deps.sql, { maxRows: deps.config.MAX_JSON_ROWS }, forgetReferences)
  const drift = new DriftService(deps)
  const monitors = new MonitorService(deps, drift, app.log)
  const stats = new StatsService(deps, app.log)
  const writeLog = new WriteLogMaintenance(deps, app.log)
  const lineage = new LineageService(deps.sql)
  // Cache coherence is part of correctness, not an optional job: listen whenever there is a database.
  if (deps.databaseUrl !== '') await online.start()
  closers.push(async () => { await online.close() })
  if (deps.config.FRESHNESS_METRICS_SECONDS > 0 && deps.databaseUrl !== '') new FreshnessMetrics(deps.sql, deps.config.FRESHNESS_METRICS_SECONDS, app.log).register(app.metrics)
  const ingest = new IngestService(deps.sql, online, { maxJsonRows: deps.config.MAX_JSON_ROWS, idempotencyKeepHours: deps.config.IDEMPOTENCY_KEEP_HOURS }, app.log)
  if (opts.backgroundJobs) {
    monitors.start()
    stats.start()
    writeLog.start()
    seriesPacks.start()
    closers.push(async () => { await monitors.stop(); await stats.stop(); await writeLog.stop(); await seriesPacks.stop() })
  }
  return {
    registry,
    contracts,
    trainingSets,
    retrieval,
    pipelines,
    apiKeys,
    audit,
    databaseHealth,
    drift,
    monitors,
    stats,
    writeLog,
    seriesPacks,
    renderPool,
    lineage,
    ingest,
    online,
    valueHistory: new ValueHistoryService(deps.sql),
    entityInventory: new EntityInventoryService(deps.sql),
    close: async () => { for (const c of closers.reverse()) await c() },
  }
}
