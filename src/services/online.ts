import type { Sql } from '../../db/connection.js'
import { findDefinitionsByRefs } from '../../db/definitions.js'
import { listenOnlineChanges, readLatestAsOf, readOnlineRows, type OnlineRow } from '../../db/online.js'
import { BadRequestError, UnprocessableError, type FieldError } from '../domain/errors.js'
import type { FeatureDefinition } from '../domain/feature.js'
import { parseRef, refProblem } from '../domain/feature-ref.js'
import { entityIdProblem } from '../domain/names.js'
import { decodeValue } from '../domain/value-validation.js'
import type { EntityValues, OnlineValue } from '../../routes/schemas/online.js'
import type { CachedContract, CachedValue, OnlineCache, OnlineChange } from './online-cache.js'
import { resolveContract } from './training-sets.js'

const NOT_FOUND: OnlineValue = Object.freeze({ value: null, event_time: null, status: 'NOT_FOUND' }) as OnlineValue
const OUTSIDE_TTL: OnlineValue = Object.freeze({ value: null, event_time: null, status: 'OUTSIDE_TTL' }) as OnlineValue

/** A (feature, entity) answer the cache could not give: where it goes once read. */
interface Pending { at: Record<string, OnlineValue>, ref: string, def: FeatureDefinition, entityId: string }

/**
 * Latest values with T = K = now (SPEC "Point-in-time semantics"): the online row of each
 * (feature, entity), read through the cache; ttl enforced at read time; a latest row dated in
 * the future falls back to a point-in-time query at now.
 */
export class OnlineService {
  private listener?: { unlisten: () => Promise<void> }
  private readonly prepared = new WeakMap<string[], { unique: string[], keys: string[] }>()

  constructor (private readonly sql: Sql, readonly cache: OnlineCache) {}

  /**
   * The features of a contract (`name`: its latest active version; `name@version`), through the
   * cache, which forgets them at any registry change (this instance's at its commit, the
   * others' through their notification) as it forgets feature references.
   */
  async contractRefs (ref: string, path: string): Promise<CachedContract> {
    const known = this.cache.lookupContract(ref)
    if (known !== undefined) return known
    const generation = this.cache.refGeneration
    const { name, version, refs } = await resolveContract(this.sql, ref, path)
    const c = { name, version, refs }
    this.cache.storeContract(ref, c, generation)
    return c
  }

  /** contractRefs when the cache knows the contract, without waiting; else undefined. */
  cachedContract (ref: string): CachedContract | undefined {
    return this.cache.lookupContract(ref)
  }

  /** Starts listening for other instances' writes and definition changes. */
  async start (): Promise<void> {
    this.listener = await listenOnlineChanges(this.sql, (payload) => { this.cache.applyMessage(payload) }, () => { this.cache.reset() })
  }

  async close (): Promise<void> {
    await this.listener?.unlisten().catch(() => {})
    this.cache.close()
  }

  /**
   * read's answers as JSON text (one per entity) when everything they need is in the cache
   * (definitions and latest rows, none dated after now), without waiting: the usual cached read,
   * assembled from answers serialised once when they entered the cache. The text is what the
   * response schema's serializer makes of read's answer. undefined when the database must be
   * asked (then call read).
   *
   * With `countAnswered`, its lookups count as cache hits only when it answers, and a walk that
   * gives up counts nothing: for a caller that hands a read it cannot answer to one that reads
   * the cache again (the online fast path), so each read is counted once.
   */
  readCachedJson (entities: string[], refs: string[], countAnswered = false): string[] | undefined {
    const { unique: uniqueRefs, keys } = this.prepare(refs)
    const defs: FeatureDefinition[] = new Array(uniqueRefs.length)
    for (let j = 0; j < uniqueRefs.length; j++) {
      const d = this.cache.lookupRef(uniqueRefs[j])
      if (d === undefined || d === null) return undefined
      defs[j] = d
    }
    const now = Date.now()
    const out: string[] = new Array(entities.length)
    for (let i = 0; i < entities.length; i++) {
      let values = ''
      for (let j = 0; j < defs.length; j++) {
        const def = defs[j]
        const row = this.cache.lookup(def.id, def.shared_entity_id ?? entities[i], !countAnswered)
        if (row === undefined || (row !== null && row.eventMs > now)) return undefined
        values += `${j === 0 ? '' : ','}${keys[j]}:${answerJson(def, row, now)}`
      }
      out[i] = `{"entity_id":${JSON.stringify(entities[i])},"values":{${values}}}`
    }
    if (countAnswered) this.cache.hits += entities.length * defs.length
    return out
  }

  /**
   * A reference list without its duplicates, and each reference as a JSON key; kept while the
   * list lives, so a caller that reuses its (never changed) lists prepares each once.
   */
  private prepare (refs: string[]): { unique: string[], keys: string[] } {
    let p = this.prepared.get(refs)
    if (p === undefined) {
      const unique = refs.length > 1 ? [...new Set(refs)] : refs
      p = { unique, keys: unique.map((r) => JSON.stringify(r)) }
      this.prepared.set(refs, p)
    }
    return p
  }

  /** Latest values of `refs` for each entity, in the order given (duplicates kept). */
  /**
   * `refPath` names a reference's place in the request for error answers (a JSON pointer, e.g.
   * /querystring/features or /body/features/2).
   */
  async read (entities: string[], refs: string[], refPath: (ref: string) => string = () => '/body/features'): Promise<EntityValues[]> {
    const uniqueRefs = this.prepare(refs).unique
    const defs = await this.resolve(uniqueRefs, refPath)
    const now = Date.now()
    const { out, missing, ...rest } = this.collect(entities, uniqueRefs, defs, now)
    let future = rest.future
    if (missing !== undefined) {
      const generation = this.cache.generation
      const rows = await readOnlineRows(this.sql, missing.map((m) => m.def.id), missing.map((m) => m.entityId))
      const found = new Map<string, OnlineRow>()
      for (const r of rows) found.set(`${r.feature_id}|${r.entity_id}`, r)
      for (const m of missing) {
        const r = found.get(`${m.def.id}|${m.entityId}`)
        const row = r === undefined ? null : toCached(m.def, r)
        this.cache.store(m.def.id, m.entityId, row, generation)
        if (row !== null && row.eventMs > now) (future ??= []).push(m)
        else m.at[m.ref] = answer(m.def, row, now)
      }
    }
    if (future !== undefined) {
      // A value dated after now is not known yet at T = now: the answer is the latest row at or before now.
      const rows = await readLatestAsOf(this.sql, future.map((f) => f.def.id), future.map((f) => f.entityId), now)
      const found = new Map<string, OnlineRow>()
      for (const r of rows) found.set(`${r.feature_id}|${r.entity_id}`, r)
      for (const f of future) {
        const r = found.get(`${f.def.id}|${f.entityId}`)
        f.at[f.ref] = answer(f.def, r === undefined ? null : toCached(f.def, r), now)
      }
    }
    return out
  }

  /**
   * The answers the cache holds; the (feature, entity) pairs it does not hold (`missing`) and
   * those whose latest row is dated after `now` (`future`) are left for the caller.
   */
  private collect (entities: string[], uniqueRefs: string[], defs: FeatureDefinition[], now: number): { out: EntityValues[], missing?: Pending[], future?: Pending[] } {
    const out: EntityValues[] = new Array(entities.length)
    let missing: Pending[] | undefined
    let future: Pending[] | undefined
    for (let i = 0; i < entities.length; i++) {
      const entityId = entities[i]
      const values: Record<string, OnlineValue> = {}
      for (let j = 0; j < defs.length; j++) {
        const def = defs[j]
        // a market-wide feature is read under its shared entity id, whatever the entity asked for
        const key = def.shared_entity_id ?? entityId
        const row = this.cache.lookup(def.id, key)
        // every key is set now, in request order; the pending ones are overwritten once read
        values[uniqueRefs[j]] = row === undefined || (row !== null && row.eventMs > now) ? NOT_FOUND : answer(def, row, now)
        if (row === undefined) (missing ??= []).push({ at: values, ref: uniqueRefs[j], def, entityId: key })
        else if (row !== null && row.eventMs > now) (future ??= []).push({ at: values, ref: uniqueRefs[j], def, entityId: key })
      }
      out[i] = { entity_id: entityId, values }
    }
    return { out, missing, future }
  }

  /** Checks the entity ids of a request (the schema checks length; this checks characters). */
  checkEntities (entities: string[], path: (i: number) => string): void {
    const errors: FieldError[] = []
    for (let i = 0; i < entities.length && errors.length < 100; i++) {
      const problem = entityIdProblem(entities[i])
      if (problem !== undefined) errors.push({ path: path(i), message: `entity_id ${problem}`, field: 'entity_id', rule: 'entity_id' })
    }
    if (errors.length > 0) throw new BadRequestError(`Invalid entity id: ${errors[0].message}`, errors)
  }

  /** Drops what this instance's write changed, before the write is answered. */
  invalidate (change: OnlineChange): void {
    this.cache.invalidate(change)
  }

  /** The notification that tells the other instances what a write changed. */
  announcement (change: OnlineChange): string {
    return this.cache.payload(change)
  }

  /** References -> definitions, through the cache; 400 for malformed, 422 for unknown ones. */
  private async resolve (refs: string[], refPath: (ref: string) => string): Promise<FeatureDefinition[]> {
    const defs: FeatureDefinition[] = new Array(refs.length)
    let missing: number[] | undefined
    for (let i = 0; i < refs.length; i++) {
      const d = this.cache.lookupRef(refs[i])
      if (d === undefined) (missing ??= []).push(i)
      else if (d === null) throw unknownFeatures([refs[i]], refPath)
      else defs[i] = d
    }
    if (missing === undefined) return defs
    const bad = missing.map((i) => ({ ref: refs[i], problem: refProblem(refs[i]) })).filter((b) => b.problem !== undefined)
    if (bad.length > 0) {
      throw new BadRequestError(`Invalid feature reference '${bad[0].ref}': ${bad[0].problem!}`, bad.map((b) => ({ path: refPath(b.ref), field: 'features', rule: 'ref', message: `'${b.ref}': ${b.problem!}` })))
    }
    const generation = this.cache.refGeneration
    const found = await findDefinitionsByRefs(this.sql, missing.map((i) => parseRef(refs[i])))
    const unknown: string[] = []
    for (const i of missing) {
      const d = found.get(refs[i])
      this.cache.storeRef(refs[i], d ?? null, generation)
      if (d === undefined) unknown.push(refs[i])
      else defs[i] = d
    }
    if (unknown.length > 0) throw unknownFeatures(unknown, refPath)
    return defs
  }
}

function unknownFeatures (refs: string[], refPath: (ref: string) => string): UnprocessableError {
  return new UnprocessableError(`Unknown feature${refs.length > 1 ? 's' : ''}: ${refs.join(', ')} (no such feature, or no active version)`,
    refs.map((r) => ({ path: refPath(r), field: 'features', rule: 'unknown_feature', message: `feature '${r}' does not exist or has no active version` })))
}

function toCached (def: FeatureDefinition, r: OnlineRow): CachedValue {
  const eventTime = new Date(r.event_ms).toISOString()
  const value = decodeValue(def.dtype, r.value_num, r.value_text)
  const json = JSON.stringify(valueAnswer(value, eventTime))
  return { eventMs: r.event_ms, eventTime, value, json }
}

const NOT_FOUND_JSON = JSON.stringify(NOT_FOUND)
const OUTSIDE_TTL_JSON = JSON.stringify(OUTSIDE_TTL)

/** answer() as JSON text. */
function answerJson (def: FeatureDefinition, row: CachedValue | null, now: number): string {
  if (row === null) return NOT_FOUND_JSON
  if (outsideTtl(def, row, now)) return OUTSIDE_TTL_JSON
  return row.json
}

/** ttl, enforced online: the latest value is older than the feature's ttl at `now`. */
function outsideTtl (def: FeatureDefinition, row: CachedValue, now: number): boolean {
  return def.ttl_ms !== null && now - row.eventMs > def.ttl_ms
}

/** The answer for a latest value within ttl: PRESENT, or NULL_VALUE when the value is null. */
function valueAnswer (value: CachedValue['value'], eventTime: string): OnlineValue {
  return value === null ? { value: null, event_time: eventTime, status: 'NULL_VALUE' } : { value, event_time: eventTime, status: 'PRESENT' }
}

/** The SPEC rule at T = now for the latest row at or before now (or none). */
function answer (def: FeatureDefinition, row: CachedValue | null, now: number): OnlineValue {
  if (row === null) return NOT_FOUND
  // as POST /v1/retrieve answers it: no candidate, so neither value nor event_time
  if (outsideTtl(def, row, now)) return OUTSIDE_TTL
  return valueAnswer(row.value, row.eventTime)
}
