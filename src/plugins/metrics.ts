import fp from 'fastify-plugin'
import { Registry, collectDefaultMetrics, type Metric } from 'prom-client'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify'
import { withHook } from './route-hooks.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The Prometheus registry of this app instance; services add their own metrics to it. */
    metrics: Registry
    /** http_request_duration_seconds, for answers given outside Fastify's routing (the online fast path). */
    requestDurations: SeriesHistogram
  }
}

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

export interface Series {
  labels: Record<string, string>
  /** Observations per bucket (not cumulative); the last slot is above every bound. */
  counts: Float64Array
  sum: number
  count: number
}

/**
 * A Prometheus histogram whose labelled series are made once and then observed with no label
 * handling: prom-client's Histogram builds and hashes a label key on every observation (its
 * labelled children too). Registered in the prom-client registry like its own metrics, and
 * rendered by it in the same text format.
 */
export class SeriesHistogram {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  private readonly all: Series[] = []
  private readonly byKey = new Map<string, Series>()

  constructor (readonly name: string, readonly help: string, private readonly bounds: number[]) {}

  /** The series of these labels (made at the first call, the same one after); keep it and pass it to `observe`. */
  series (labels: Record<string, string>): Series {
    const key = JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)))
    let s = this.byKey.get(key)
    if (s === undefined) {
      s = { labels, counts: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 }
      this.all.push(s)
      this.byKey.set(key, s)
    }
    return s
  }

  observe (s: Series, value: number): void {
    const b = this.bounds
    let i = 0
    while (i < b.length && value > b[i]) i++
    s.counts[i]++
    s.sum += value
    s.count++
  }

  async get (): Promise<{ name: string, help: string, type: string, aggregator: string, values: Array<{ value: number, labels: Record<string, string | number>, metricName: string }> }> {
    const values: Array<{ value: number, labels: Record<string, string | number>, metricName: string }> = []
    for (const s of this.all) {
      let acc = 0
      for (let i = 0; i < this.bounds.length; i++) {
        acc += s.counts[i]
        values.push({ value: acc, labels: { ...s.labels, le: this.bounds[i] }, metricName: `${this.name}_bucket` })
      }
      values.push({ value: s.count, labels: { ...s.labels, le: '+Inf' }, metricName: `${this.name}_bucket` })
      values.push({ value: s.sum, labels: s.labels, metricName: `${this.name}_sum` })
      values.push({ value: s.count, labels: s.labels, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset (): void {
    for (const s of this.all) {
      s.counts.fill(0)
      s.sum = 0
      s.count = 0
    }
  }
}

/**
 * HTTP request durations by method, route and status. Each route observes through its own hook,
 * attached when the route is registered, with the series of each method and status it has
 * answered kept at hand; URLs no route matched are the route `unknown`.
 */
async function metricsPlugin (app: FastifyInstance): Promise<void> {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const duration = new SeriesHistogram('http_request_duration_seconds', 'HTTP request duration by route and status', BUCKETS)
  registry.registerMetric(duration as unknown as Metric)
  app.decorate('metrics', registry)
  app.decorate('requestDurations', duration)

  /** An onResponse hook observing under `route`. */
  const observer = (route: string) => {
    const byMethod = new Map<string, Series[]>()
    return (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void => {
      const method = request.method
      let byStatus = byMethod.get(method)
      if (byStatus === undefined) byMethod.set(method, byStatus = [])
      const status = reply.statusCode
      duration.observe(byStatus[status] ??= duration.series({ method, route, status: String(status) }), reply.elapsedTime / 1000)
      done()
    }
  }
  app.addHook('onRoute', (route: RouteOptions) => {
    route.onResponse = withHook(route.onResponse, observer(route.url)) as RouteOptions['onResponse']
  })
  // URLs no route matched (their answers come from the not-found handler, which has no route hooks)
  const unknown = observer('unknown')
  app.addHook('onResponse', (request, reply, done) => {
    if (request.is404) unknown(request, reply, done)
    else done()
  })
}

export default fp(metricsPlugin, { name: 'metrics' })
