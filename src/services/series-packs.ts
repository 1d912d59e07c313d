import type { FastifyBaseLogger } from 'fastify'
import { Counter, Gauge, type Registry } from 'prom-client'
import { pitPairsRead } from '../../db/point-in-time.js'
import type { AppDeps } from '../context.js'
import { soundCutoff } from '../../db/knowledge.js'
import { buildFeaturePacks, packableFeatures, type PackBuild } from '../../db/series-packs.js'
import type { Sql } from '../../db/connection.js'
import { BackgroundLoop } from './background-loop.js'

/** The first build after start, once startup work has settled. */
const FIRST_BUILD_MS = 10_000

/** The start of the UTC month holding `ms`. */
export function monthStart (ms: number): number {
  const d = new Date(ms)
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)
}

export interface PackRun {
  cutoffMs: number
  horizonMs: number
  features: Array<{ featureId: number } & PackBuild>
}

/**
 * One run of the job: every numeric feature's packs brought up to a sound knowledge cutoff taken
 * now, the horizon at the start of the UTC month `settleSeconds` before it. Stops at an untracked
 * write (the same for every feature). `onBuilt`: each feature's build and how long it took.
 */
export async function buildSeriesPacks (sql: Sql, settleSeconds: number, onBuilt: (featureId: number, built: PackBuild, ms: number) => void = () => {}): Promise<PackRun> {
  const cutoffMs = await soundCutoff(sql)
  const horizonMs = monthStart(cutoffMs - settleSeconds * 1000)
  const features: PackRun['features'] = []
  for (const featureId of await packableFeatures(sql)) {
    const t0 = performance.now()
    const built = await buildFeaturePacks(sql, { featureId, cutoffMs, horizonMs })
    features.push({ featureId, ...built })
    onBuilt(featureId, built, Math.round(performance.now() - t0))
    if (built.reason === 'untracked_writes') break
  }
  return { cutoffMs, horizonMs, features }
}

/**
 * Keeps the series packs (db/series-packs.ts) current: every SERIES_PACK_INTERVAL_SECONDS, each
 * numeric feature's packs are brought up to a sound knowledge cutoff taken now, with the
 * horizon at the start of the UTC month SERIES_PACK_SETTLE_SECONDS ago. A run that finds
 * nothing new only moves the feature's mark forward (one statement): reads then check the write
 * log only for writes since. postgres mode only (TimescaleDB compresses its chunks itself, and
 * its retention drops values without a trigger). Any instance may run it; the builds of one
 * feature take turns (an advisory lock), and a build older than the stored one is skipped.
 */
export class SeriesPackMaintenance {
  private readonly loop: BackgroundLoop
  private readonly builds = { current: 0, appended: 0, rebuilt: 0, skipped: 0 }
  private lastRunMs = 0

  constructor (private readonly deps: AppDeps, private readonly log: FastifyBaseLogger) {
    this.loop = new BackgroundLoop(async () => { await this.buildNow() },
      () => deps.config.SERIES_PACK_INTERVAL_SECONDS * 1000,
      (err) => { log.error({ err }, 'series pack build failed') })
  }

  /** Whether reads use packs and the job builds them here. */
  get enabled (): boolean {
    return this.deps.config.SERIES_PACKS && this.deps.storageMode === 'postgres'
  }

  /** Brings every numeric feature's packs up to date now. */
  async buildNow (): Promise<PackRun> {
    const run = await buildSeriesPacks(this.deps.sql, this.deps.config.SERIES_PACK_SETTLE_SECONDS, (featureId, built, ms) => {
      if ((built.action === 'appended' || built.action === 'rebuilt') && built.values > 0) {
        this.log.info({ featureId, action: built.action, packs: built.packs, values: built.values, ms }, 'series packs built')
      }
      this.builds[built.action]++
    })
    this.lastRunMs = Date.now()
    return run
  }

  /** /metrics: point-in-time pairs read from packs and from rows, this instance's builds. */
  register (registry: Registry): void {
    const self = this // eslint-disable-line @typescript-eslint/no-this-alias
    /* eslint-disable no-new */
    new Counter({
      name: 'pit_pairs_read_total',
      help: 'Point-in-time pairs (entity x feature x block) read, by source: series packs or stored rows (a pair may count in both)',
      labelNames: ['source'],
      registers: [registry],
      collect () { this.reset(); this.inc({ source: 'packs' }, pitPairsRead.packs); this.inc({ source: 'rows' }, pitPairsRead.rows) },
    })
    new Counter({
      name: 'series_pack_builds_total',
      help: 'Series pack builds of a feature in this instance, by what they did',
      labelNames: ['action'],
      registers: [registry],
      collect () { this.reset(); for (const [action, n] of Object.entries(self.builds)) this.inc({ action }, n) },
    })
    new Gauge({
      name: 'series_pack_last_run_seconds',
      help: 'When this instance last brought every feature\'s series packs up to date (unix seconds; 0: not yet)',
      registers: [registry],
      collect () { this.set(self.lastRunMs / 1000) },
    })
    /* eslint-enable no-new */
  }

  start (): void {
    if (this.enabled) this.loop.start(FIRST_BUILD_MS)
  }

  async stop (): Promise<void> {
    await this.loop.stop()
  }
}
