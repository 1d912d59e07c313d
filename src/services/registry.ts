import type { FastifyBaseLogger } from 'fastify'
import type { Sql, TxSql } from '../../db/connection.js'
import { findDefinitionsByRefs } from '../../db/definitions.js'
import {
  deprecateDefinitions, findActiveDependentFeatures, findCurrentDefinition, findDefinitionVersion, findLatestDefinition,
  insertDefinition, insertDependencies, listCurrentDefinitions, listDefinitionVersions, loadActiveDependencyEdges,
  lockRegistry, notifyRegistryChange, updateDefinitionMetadata, type NewDefinition,
} from '../../db/registry.js'
import { findContractsUsingFeatures } from '../../db/contracts.js'
import type { FeatureDefinition } from '../domain/feature.js'
import { formatRef, parseRef, refProblem, type FeatureRef } from '../domain/feature-ref.js'
import { BadRequestError, ConflictError, NotFoundError, UnprocessableError, type FieldError } from '../domain/errors.js'
import { completeRules, mergeRules, ruleProblems, type CompleteRules } from '../domain/validation-rules.js'
import { DependencyGraph, formatCycle } from '../domain/dependency-graph.js'
import { formatDuration, parseDuration } from '../domain/time.js'
import { entityIdProblem } from '../domain/names.js'
import type {
  CreateFeatureInput, DeprecationResultApi, FeatureDefinitionApi, ListFeaturesFilter, NewVersionInput, PatchFeatureInput,
} from '../../routes/schemas/features.js'

export type RegistryLog = Pick<FastifyBaseLogger, 'info' | 'warn'>

export interface Page<T> {
  items: T[]
  next_cursor: string | null
}

/** The API form of a definition. */
export function presentDefinition (d: FeatureDefinition): FeatureDefinitionApi {
  return {
    name: d.name,
    version: d.version,
    entity: d.entity,
    dtype: d.dtype,
    description: d.description,
    owner: d.owner,
    tags: d.tags,
    unit: d.unit,
    validation: completeRules(d.validation),
    ttl: d.ttl_ms === null ? null : formatDuration(d.ttl_ms),
    shared_entity_id: d.shared_entity_id,
    depends_on: d.depends_on,
    status: d.status,
    created_at: d.created_at.toISOString(),
  }
}

/**
 * The definition a route's `{name}` and `?version=` name: that version, or the latest active
 * one; 404 when there is none.
 */
export async function featureVersionOrNotFound (sql: Sql, name: string, version: number | undefined): Promise<FeatureDefinition> {
  const ref = { name, version }
  const def = (await findDefinitionsByRefs(sql, [ref])).get(formatRef(ref))
  if (!def) throw new NotFoundError(version === undefined ? `Feature '${name}' has no active version (ask for one with ?version=)` : `Feature '${name}@${version}' does not exist`)
  return def
}

/** Opaque keyset cursors: base64url of the last key of the page. */
export function encodeCursor (key: string | number): string {
  return Buffer.from(JSON.stringify({ k: key })).toString('base64url')
}

export function decodeCursor<K extends 'string' | 'number'> (cursor: string | undefined, kind: K): (K extends 'string' ? string : number) | undefined {
  if (cursor === undefined) return undefined
  try {
    const k = (JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { k?: unknown }).k
    // a key the database could not hold (NUL) or no listing gives (very long) is not a cursor
    if (typeof k === kind && (typeof k !== 'string' || (k.length <= 1024 && !k.includes('\u0000')))) return k as K extends 'string' ? string : number
  } catch { /* reported below */ }
  throw new BadRequestError('The cursor is not one this service issued: pass next_cursor of the previous page unchanged', [{ path: '/querystring/cursor', rule: 'cursor', message: 'is not a valid cursor' }])
}

export function page<T> (rows: T[], limit: number, keyOf: (row: T) => string | number): Page<T> {
  const more = rows.length > limit
  const items = more ? rows.slice(0, limit) : rows
  return { items, next_cursor: more ? encodeCursor(keyOf(items[items.length - 1])) : null }
}

/**
 * A registry write: one transaction holding the registry lock. A unique-key race (possible
 * only for writers that bypass the lock) is a 409, not a 500.
 */
export async function registryWrite<T> (sql: Sql, what: string, work: (tx: TxSql) => Promise<T>): Promise<T> {
  try {
    return await sql.begin(async (tx) => {
      await lockRegistry(tx)
      return work(tx)
    }) as T
  } catch (err) {
    if ((err as { code?: string }).code === '23505') throw new ConflictError(`${what} was created concurrently; retry the request`)
    throw err
  }
}

interface SchemaFields {
  entity: string
  dtype: FeatureDefinition['dtype']
  validation: CompleteRules
  ttl_ms: number | null
  dependsOn: FeatureRef[]
}

/** Checks the schema-affecting fields of a definition (400 naming the field) and normalises them. */
function checkSchemaFields (dtype: FeatureDefinition['dtype'], validation: CompleteRules, ttl: string | null | undefined, previousTtl: number | null, dependsOn: string[]): Omit<SchemaFields, 'entity' | 'dtype'> {
  const errors: FieldError[] = ruleProblems(dtype, validation, '/body/validation')
  let ttlMs = previousTtl
  if (ttl === null) ttlMs = null
  else if (ttl !== undefined) {
    const parsed = parseDuration(ttl)
    if (parsed.ok) ttlMs = parsed.ms
    else errors.push({ path: '/body/ttl', field: 'ttl', rule: 'duration', message: parsed.message })
  }
  const refs: FeatureRef[] = []
  const seen = new Set<string>()
  dependsOn.forEach((ref, i) => {
    const problem = refProblem(ref)
    if (problem) { errors.push({ path: `/body/depends_on/${i}`, field: 'depends_on', rule: 'ref', message: `'${ref}': ${problem}` }); return }
    const parsed = parseRef(ref)
    if (seen.has(parsed.name)) errors.push({ path: `/body/depends_on/${i}`, field: 'depends_on', rule: 'duplicate_feature', message: `'${parsed.name}' is listed twice` })
    seen.add(parsed.name)
    refs.push(parsed)
  })
  if (errors.length > 0) throw new BadRequestError(`The definition is invalid: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`, errors)
  return { validation, ttl_ms: ttlMs, dependsOn: refs }
}

/**
 * Every dependency must be an active definition (422 naming it), and the new edges must keep
 * the name graph acyclic (409 naming the cycle). Runs under the registry lock.
 */
async function checkDependencies (tx: TxSql, name: string, refs: FeatureRef[]): Promise<void> {
  if (refs.length === 0) return
  const found = await findDefinitionsByRefs(tx, refs)
  const errors: FieldError[] = []
  refs.forEach((ref, i) => {
    const def = found.get(formatRef(ref))
    if (!def) errors.push({ path: `/body/depends_on/${i}`, field: 'depends_on', rule: 'unknown_feature', message: `'${formatRef(ref)}' is not a feature definition${ref.version === undefined ? ' with an active version' : ''}` })
    else if (def.status !== 'active') errors.push({ path: `/body/depends_on/${i}`, field: 'depends_on', rule: 'deprecated_feature', message: `'${formatRef(ref)}' is deprecated` })
  })
  if (errors.length > 0) {
    throw new UnprocessableError(`Unknown dependency: ${errors.map((e) => e.message).join('; ')}`, errors)
  }
  const graph = DependencyGraph.fromEdges(await loadActiveDependencyEdges(tx))
  const cycle = graph.cycleIfAdded(name, refs.map((r) => r.name))
  if (cycle) throw new ConflictError(`depends_on would close a dependency cycle: ${formatCycle(cycle)}`, { cycle })
}

async function insertVersion (tx: TxSql, d: NewDefinition, refs: FeatureRef[], action: string): Promise<FeatureDefinition> {
  const def = await insertDefinition(tx, d)
  await insertDependencies(tx, def.id, refs)
  await notifyRegistryChange(tx, { kind: 'feature', name: d.name, action })
  return def
}

/** A market-wide feature's entity id follows the entity id rules (400 otherwise); undefined keeps the previous one. */
function checkSharedEntityId (given: string | null | undefined, previous: string | null): string | null {
  if (given === undefined) return previous
  if (given === null) return null
  const problem = entityIdProblem(given)
  if (problem) throw new BadRequestError(`shared_entity_id ${problem}`, [{ path: '/body/shared_entity_id', field: 'shared_entity_id', rule: 'entity_id', message: problem }])
  return given
}

/** Creates version 1 of a feature inside the caller's transaction (which holds the registry lock). */
export async function createDefinitionTx (tx: TxSql, input: CreateFeatureInput): Promise<FeatureDefinition> {
  const rules = mergeRules(undefined, input.validation)
  const fields = checkSchemaFields(input.dtype, rules, input.ttl, null, input.depends_on ?? [])
  const latest = await findLatestDefinition(tx, input.name)
  if (latest) {
    throw new ConflictError(`Feature '${input.name}' already exists (latest version ${latest.version}); create a new version with POST /v1/features/${input.name}/versions`, { feature: input.name, latest_version: latest.version })
  }
  await checkDependencies(tx, input.name, fields.dependsOn)
  return insertVersion(tx, {
    name: input.name,
    version: 1,
    entity: input.entity,
    dtype: input.dtype,
    description: input.description ?? '',
    owner: input.owner ?? null,
    tags: input.tags ?? [],
    unit: input.unit ?? null,
    validation: fields.validation,
    ttl_ms: fields.ttl_ms,
    shared_entity_id: checkSharedEntityId(input.shared_entity_id, null),
    depends_on: fields.dependsOn.map(formatRef),
  }, fields.dependsOn, 'created')
}

/** The feature registry: definitions, their versions, metadata and deprecation. */
export class RegistryService {
  /** `afterWrite`: called once a change has committed (this instance's caches forget what it changed). */
  constructor (private readonly sql: Sql, private readonly afterWrite?: () => void) {}

  private async write<T> (what: string, work: (tx: TxSql) => Promise<T>): Promise<T> {
    const out = await registryWrite(this.sql, what, work)
    this.afterWrite?.()
    return out
  }

  async create (input: CreateFeatureInput): Promise<FeatureDefinitionApi> {
    return presentDefinition(await this.write(`Feature '${input.name}'`, (tx) => createDefinitionTx(tx, input)))
  }

  async list (filter: ListFeaturesFilter): Promise<Page<FeatureDefinitionApi>> {
    const limit = filter.limit ?? 100
    const rows = await listCurrentDefinitions(this.sql, {
      entity: filter.entity,
      tags: filter.tag && filter.tag.length > 0 ? filter.tag : undefined,
      status: filter.status,
      text: filter.text,
      after: decodeCursor(filter.cursor, 'string') ?? '',
      limit: limit + 1,
    })
    const p = page(rows, limit, (d) => d.name)
    return { items: p.items.map(presentDefinition), next_cursor: p.next_cursor }
  }

  /** `name` (latest active version, else the latest) or `name@version`. */
  async get (ref: string): Promise<FeatureDefinitionApi> {
    const r = parseRef(ref, '/params/name')
    const def = r.version === undefined ? await findCurrentDefinition(this.sql, r.name) : await findDefinitionVersion(this.sql, r.name, r.version)
    if (!def) throw await this.notFound(r)
    return presentDefinition(def)
  }

  async versions (name: string, q: { limit?: number, cursor?: string }): Promise<Page<FeatureDefinitionApi>> {
    const limit = q.limit ?? 100
    const rows = await listDefinitionVersions(this.sql, name, decodeCursor(q.cursor, 'number') ?? 0, limit + 1)
    if (rows.length === 0 && !await findLatestDefinition(this.sql, name)) throw await this.notFound({ name })
    const p = page(rows, limit, (d) => d.version)
    return { items: p.items.map(presentDefinition), next_cursor: p.next_cursor }
  }

  async version (name: string, version: number): Promise<FeatureDefinitionApi> {
    return this.get(formatRef({ name, version }))
  }

  /**
   * Version n+1: the fields given replace those of the latest version (validation is merged
   * into its rules), the rest is carried over. Always makes a new version, active at once.
   */
  async newVersion (name: string, input: NewVersionInput): Promise<FeatureDefinitionApi> {
    const def = await this.write(`Feature '${name}' version`, async (tx) => {
      const latest = await findLatestDefinition(tx, name)
      if (!latest) throw await this.notFound({ name }, tx)
      const dtype = input.dtype ?? latest.dtype
      const entity = input.entity ?? latest.entity
      const rules = mergeRules(latest.validation, input.validation)
      const fields = checkSchemaFields(dtype, rules, input.ttl, latest.ttl_ms, input.depends_on ?? latest.depends_on)
      if (entity !== latest.entity) await this.guardEntityChange(tx, name, entity)
      await checkDependencies(tx, name, fields.dependsOn)
      return insertVersion(tx, {
        name,
        version: latest.version + 1,
        entity,
        dtype,
        description: input.description ?? latest.description,
        owner: input.owner !== undefined ? input.owner : latest.owner,
        tags: input.tags ?? latest.tags,
        unit: input.unit !== undefined ? input.unit : latest.unit,
        validation: fields.validation,
        ttl_ms: fields.ttl_ms,
        shared_entity_id: checkSharedEntityId(input.shared_entity_id, latest.shared_entity_id),
        depends_on: fields.dependsOn.map(formatRef),
      }, fields.dependsOn, 'versioned')
    })
    return presentDefinition(def)
  }

  /** An active contract that follows the latest version must keep its entity. */
  private async guardEntityChange (tx: TxSql, name: string, entity: string): Promise<void> {
    const contracts = (await findContractsUsingFeatures(tx, [name], 'active'))
      .filter((c) => c.entity !== entity && c.features.some((f) => f.feature === name))
    if (contracts.length > 0) {
      const list = contracts.map((c) => `${c.name}@${c.version} (entity ${c.entity})`).join(', ')
      throw new ConflictError(`Changing the entity of '${name}' to '${entity}' would break active contracts that use its latest version: ${list}. Pin them to a version or retire them first.`, {
        contracts: contracts.map((c) => ({ name: c.name, version: c.version })),
      })
    }
  }

  /** Metadata of every version; answers with the current version. */
  async patch (name: string, input: PatchFeatureInput): Promise<FeatureDefinitionApi> {
    const def = await this.write(`Feature '${name}'`, async (tx) => {
      const count = await updateDefinitionMetadata(tx, name, input)
      if (count === 0) throw await this.notFound({ name }, tx)
      await notifyRegistryChange(tx, { kind: 'feature', name, action: 'updated' })
      return (await findCurrentDefinition(tx, name))!
    })
    return presentDefinition(def)
  }

  /**
   * Deprecates every version. While active features depend on it or active contracts require
   * it, 409 listing them, unless `force` (then the override is logged).
   */
  async deprecate (name: string, opts: { force: boolean, log: RegistryLog }): Promise<DeprecationResultApi> {
    return this.write(`Feature '${name}'`, async (tx) => {
      const current = await findCurrentDefinition(tx, name)
      if (!current) throw await this.notFound({ name }, tx)
      if (current.status !== 'active') return { name, deprecated_versions: 0, forced: false, dependents: { features: [], contracts: [] } }
      const features = await findActiveDependentFeatures(tx, name)
      const contracts = (await findContractsUsingFeatures(tx, [name], 'active')).map((c) => ({ name: c.name, version: c.version }))
      const dependents = { features, contracts }
      if (features.length + contracts.length > 0) {
        if (!opts.force) {
          const parts = [
            ...(features.length > 0 ? [`features ${features.map((f) => `${f.name}@${f.version}`).join(', ')}`] : []),
            ...(contracts.length > 0 ? [`contracts ${contracts.map((c) => `${c.name}@${c.version}`).join(', ')}`] : []),
          ]
          throw new ConflictError(`Feature '${name}' is still in use by active ${parts.join(' and ')}; update them first, or pass ?force=true`, { dependents })
        }
        opts.log.warn({ feature: name, dependents }, 'feature deprecated with force=true although active features or contracts depend on it')
      }
      const count = await deprecateDefinitions(tx, name)
      await notifyRegistryChange(tx, { kind: 'feature', name, action: 'deprecated' })
      opts.log.info({ feature: name, deprecated_versions: count }, 'feature deprecated')
      return { name, deprecated_versions: count, forced: opts.force && features.length + contracts.length > 0, dependents }
    })
  }

  private async notFound (ref: FeatureRef, sql: Sql | TxSql = this.sql): Promise<NotFoundError> {
    if (ref.version !== undefined && await findLatestDefinition(sql, ref.name)) {
      return new NotFoundError(`Feature '${ref.name}' has no version ${ref.version}`, { feature: ref.name })
    }
    return new NotFoundError(`Feature '${ref.name}' does not exist`, { feature: ref.name })
  }
}
