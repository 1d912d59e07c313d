import { Gauge, type Registry } from 'prom-client'
import type { FastifyBaseLogger } from 'fastify'
import type { Sql } from '../../db/connection.js'
import { readFreshness, type FreshnessRow } from '../../db/entity-inventory.js'

/**
 * Data freshness for Prometheus, per active feature version: how many entities have values, the
 * newest and the stalest of their latest event times, and how many entities are past the ttl.
 * What an alert on a stalled pipeline goes by (e.g. `time() - feature_newest_event_time_seconds
 * > 7200`). Read from the online table at most once per `everySeconds`, however often /metrics
 * (public) is scraped; a scrape while the database is away serves the last figures.
 */
export class FreshnessMetrics {
  private rows: FreshnessRow[] = []
  private readAt = 0
  private pending?: Promise<void>

  constructor (private readonly sql: Sql, private readonly everySeconds: number, private readonly log: FastifyBaseLogger) {}

  register (registry: Registry): void {
    const metrics = this // eslint-disable-line @typescript-eslint/no-this-alias
    const gauge = (name: string, help: string, value: (r: FreshnessRow) => number | null): void => {
      // eslint-disable-next-line no-new
      new Gauge({
        name, help, labelNames: ['feature', 'version'], registers: [registry],
        async collect () {
          await metrics.current()
          this.reset()
          for (const r of metrics.rows) {
            const v = value(r)
            if (v !== null) this.set({ feature: r.name, version: String(r.version) }, v)
          }
        },
      })
    }
    gauge('feature_entities', 'Entities with values, per active feature version', (r) => r.entities)
    gauge('feature_newest_event_time_seconds', 'The newest event time among the entities\' latest values (unix seconds)', (r) => (r.newest_ms === null ? null : r.newest_ms / 1000))
    gauge('feature_stalest_entity_event_time_seconds', 'The oldest of the entities\' latest event times: the stalest entity (unix seconds)', (r) => (r.oldest_latest_ms === null ? null : r.oldest_latest_ms / 1000))
    gauge('feature_stale_entities', 'Entities whose latest value is older than the feature\'s ttl (features with a ttl)', (r) => r.stale)
  }

  /** The figures, read again when older than `everySeconds` (one read at a time). */
  private async current (): Promise<void> {
    if (Date.now() - this.readAt < this.everySeconds * 1000) return
    this.pending ??= readFreshness(this.sql).then((rows) => {
      this.rows = rows
      this.readAt = Date.now()
    }, (err: unknown) => {
      this.log.warn({ err }, 'feature freshness metrics not read; serving the last ones')
      // try again at the next scrape after a short pause, not at every one
      this.readAt = Date.now() - Math.max(0, this.everySeconds - 5) * 1000
    }).finally(() => { this.pending = undefined })
    await this.pending
  }
}
