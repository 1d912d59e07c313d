import NodeCache from 'node-cache'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { FeatureDefinition, Scalar } from '../domain/feature.js'

/** A latest value as the online answers use it (decoded once, when it enters the cache). */
export interface CachedValue {
  eventMs: number
  /** event_time as RFC 3339 */
  eventTime: string
  value: Scalar | null
  /** The answer while within ttl, as JSON text: {"value":…,"event_time":…,"status":"PRESENT"|"NULL_VALUE"} */
  json: string
}

/** What an ingest changed in the online table. */
export type OnlineChange =
  | { keys: Array<{ featureId: number, entityId: string }> }
  | { features: number[] }
  | { all: true }

interface Entry {
  /** null: known to have no online row (a negative entry) */
  row: CachedValue | null
  /** the feature's flush generation when the entry was stored */
  fgen: number
}

/** A contract as online reads use it: its version and its features' references. */
export interface CachedContract { name: string, version: number, refs: string[] }

/** NOTIFY payloads are limited to 8000 bytes; stay clear of it. */
const MAX_PAYLOAD_BYTES = 7900

/**
 * The online cache: latest values keyed by (feature id, entity id), negative entries too,
 * and the resolution of feature references. The one invalidation path is `invalidate()`
 * (values) and `forgetDefinitions()` (references), fed by this instance's writes and by the
 * other instances' notifications (`applyMessage`).
 *
 * Race guard: a reader notes `generation` before it queries the database and stores what it
 * read only if no invalidation happened meanwhile; otherwise an answer fetched just before a
 * write's eviction could be cached after it and outlive it.
 */
export class OnlineCache {
  /** Identifies this instance in notifications, so that it skips its own. */
  readonly origin: string
  private readonly values: NodeCache
  private readonly maxKeys: number
  private readonly ttlMs: number
  private gen = 0
  /** per-feature flush generation: a feature flush is O(1), stale entries are dropped on read */
  private readonly featureGens = new Map<number, number>()
  private refs = new Map<string, FeatureDefinition | null>()
  /** How contract references resolved (found ones only), forgotten with the feature references. */
  private contracts = new Map<string, CachedContract>()
  private refsGen = 0
  private refsSince = Date.now()

  hits = 0
  misses = 0
  evictions = 0
  capacityEvictions = 0
  invalidations = 0

  constructor (opts: { maxKeys: number, ttlSeconds: number, origin: string }, registry?: Registry) {
    this.maxKeys = opts.maxKeys
    this.ttlMs = opts.ttlSeconds * 1000
    this.origin = opts.origin
    this.values = new NodeCache({
      stdTTL: opts.ttlSeconds,
      checkperiod: opts.ttlSeconds > 0 ? Math.min(opts.ttlSeconds, 60) : 0,
      useClones: false,
      deleteOnExpire: true,
    })
    if (registry) this.register(registry)
  }

  get generation (): number { return this.gen }
  get size (): number { return this.values.getStats().keys }

  /**
   * The cached latest value: a value, null (known absent), or undefined (not cached). Counted as
   * a hit or a miss unless `count` is false (a caller that counts its hits itself).
   */
  lookup (featureId: number, entityId: string, count = true): CachedValue | null | undefined {
    const entry = this.values.get<Entry>(`${featureId}|${entityId}`)
    if (entry !== undefined && entry.fgen === (this.featureGens.get(featureId) ?? 0)) {
      if (count) this.hits++
      return entry.row
    }
    if (count) this.misses++
    return undefined
  }

  /** Stores what a reader fetched, unless an invalidation happened since `generation` was read. */
  store (featureId: number, entityId: string, row: CachedValue | null, generation: number): void {
    if (generation !== this.gen) return
    if (this.values.getStats().keys >= this.maxKeys) this.evictOldest()
    this.values.set<Entry>(`${featureId}|${entityId}`, { row, fgen: this.featureGens.get(featureId) ?? 0 })
  }

  /** Drops what a write changed. */
  invalidate (change: OnlineChange): void {
    this.gen++
    this.invalidations++
    if ('all' in change) {
      this.evictions += this.values.getStats().keys
      this.values.flushAll()
      this.featureGens.clear()
    } else if ('features' in change) {
      for (const f of change.features) this.featureGens.set(f, (this.featureGens.get(f) ?? 0) + 1)
    } else {
      this.evictions += this.values.del(change.keys.map((k) => `${k.featureId}|${k.entityId}`))
    }
  }

  /** How a reference resolves, if known: a definition, null (unknown), or undefined (not cached). */
  lookupRef (ref: string): FeatureDefinition | null | undefined {
    this.expireReferences()
    return this.refs.get(ref)
  }

  get refGeneration (): number { return this.refsGen }

  storeRef (ref: string, def: FeatureDefinition | null, generation: number): void {
    if (generation !== this.refsGen) return
    if (this.refs.size >= 100_000) this.forgetDefinitions()
    this.refs.set(ref, def)
  }

  /** How a contract reference resolves, if known (its features never change while it is kept). */
  lookupContract (ref: string): CachedContract | undefined {
    this.expireReferences()
    return this.contracts.get(ref)
  }

  /** Resolutions live at most the cache ttl (a missed notification cannot keep one forever). */
  private expireReferences (): void {
    if (this.ttlMs > 0 && Date.now() - this.refsSince > this.ttlMs) this.forgetDefinitions()
  }

  storeContract (ref: string, contract: CachedContract, generation: number): void {
    if (generation !== this.refsGen) return
    if (this.contracts.size >= 10_000) this.contracts = new Map()
    this.contracts.set(ref, contract)
  }

  /** Forgets how feature and contract references resolved (a registry change). */
  forgetDefinitions (): void {
    this.refsGen++
    this.refs = new Map()
    this.contracts = new Map()
    this.refsSince = Date.now()
  }

  /** The NOTIFY payload that tells other instances what to drop. */
  payload (change: OnlineChange): string {
    if ('keys' in change) {
      const p = JSON.stringify({ o: this.origin, k: change.keys.map((k) => [k.featureId, k.entityId]) })
      if (Buffer.byteLength(p) <= MAX_PAYLOAD_BYTES) return p
      return this.payload({ features: [...new Set(change.keys.map((k) => k.featureId))] })
    }
    if ('features' in change) {
      const p = JSON.stringify({ o: this.origin, f: change.features })
      if (Buffer.byteLength(p) <= MAX_PAYLOAD_BYTES) return p
    }
    return JSON.stringify({ o: this.origin, a: 1 })
  }

  /** Applies a notification from the channel (another instance's write, or a definition change). */
  applyMessage (payload: string): void {
    let m: { o?: string, k?: Array<[number, string]>, f?: number[], a?: number, d?: number }
    try {
      m = JSON.parse(payload)
    } catch {
      this.invalidate({ all: true })
      return
    }
    if (m.d !== undefined) { this.forgetDefinitions(); return }
    if (m.o === this.origin) return
    if (Array.isArray(m.k)) this.invalidate({ keys: m.k.map(([featureId, entityId]) => ({ featureId, entityId })) })
    else if (Array.isArray(m.f)) this.invalidate({ features: m.f })
    else this.invalidate({ all: true })
  }

  /** Forgets everything (the listener reconnected: notifications may have been missed). */
  reset (): void {
    this.invalidate({ all: true })
    this.forgetDefinitions()
  }

  close (): void {
    this.values.close()
  }

  /** FIFO eviction of a tenth of the entries when the cache is full (node-cache has no LRU). */
  private evictOldest (): void {
    const keys = this.values.keys()
    const n = Math.max(1, Math.ceil(keys.length / 10))
    this.capacityEvictions += this.values.del(keys.slice(0, n))
  }

  private register (registry: Registry): void {
    const cache = this // eslint-disable-line @typescript-eslint/no-this-alias
    const counter = (name: string, help: string, read: () => number): void => {
      // eslint-disable-next-line no-new
      new Counter({ name, help, registers: [registry], collect () { this.reset(); this.inc(read()) } })
    }
    counter('online_cache_hits_total', 'Online cache lookups answered from the cache', () => cache.hits)
    counter('online_cache_misses_total', 'Online cache lookups that went to the database', () => cache.misses)
    counter('online_cache_evictions_total', 'Online cache entries dropped because a write changed them', () => cache.evictions)
    counter('online_cache_capacity_evictions_total', 'Online cache entries dropped because the cache was full', () => cache.capacityEvictions)
    counter('online_cache_invalidations_total', 'Invalidations applied (local writes and notifications)', () => cache.invalidations)
    // eslint-disable-next-line no-new
    new Gauge({ name: 'online_cache_keys', help: 'Entries in the online cache', registers: [registry], collect () { this.set(cache.size) } })
  }

  stats (): { hits: number, misses: number, evictions: number, capacity_evictions: number, invalidations: number, keys: number } {
    return { hits: this.hits, misses: this.misses, evictions: this.evictions, capacity_evictions: this.capacityEvictions, invalidations: this.invalidations, keys: this.size }
  }
}
