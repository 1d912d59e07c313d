import type { Logger } from 'pino'
import type { Sql, TxSql } from '../../db/connection.js'
import { findDefinitionsByRefs, type Queryable } from '../../db/definitions.js'
import { findLatestDefinition, notifyRegistryChange } from '../../db/registry.js'
import {
  findContractVersion, findCurrentContract, findLatestContract, insertContract, listContractVersions, listCurrentContracts,
  retireContracts, setContractStatus, updateContractMetadata, type StoredContract,
} from '../../db/contracts.js'
import { formatRef, parseRef, refProblem, type FeatureRef } from '../domain/feature-ref.js'
import { BadRequestError, ConflictError, NotFoundError, PayloadTooLargeError, type FieldError } from '../domain/errors.js'
import {
  buildContractSpec, ContractValidator, type ContractFeatureEntry, type ContractLike, type ContractRules, type ContractSpec, type ValidationReport,
} from '../domain/contract-validation.js'
import { DEFAULT_CONTRACTS, DEFAULT_DEFINITIONS } from '../domain/default-content.js'
import { createDefinitionTx, decodeCursor, page, registryWrite, type Page } from './registry.js'
import { EventLoopSlices } from './event-loop-slices.js'
import type {
  ContractApi, CreateContractInput, ListContractsFilter, NewContractVersionInput, PatchContractInput,
} from '../../routes/schemas/contracts.js'

export function presentContract (c: StoredContract): ContractApi {
  return {
    name: c.name,
    version: c.version,
    description: c.description,
    entity: c.entity,
    owner: c.owner,
    tags: c.tags,
    features: c.features.map((f) => ({ feature: f.feature, required: f.required ?? true, rules: f.rules ?? {} })),
    rules: { min_rows: c.rules.min_rows ?? null, max_null_fraction: c.rules.max_null_fraction ?? null },
    status: c.status,
    created_at: c.created_at.toISOString(),
    updated_at: c.updated_at.toISOString(),
  }
}

interface CheckedFeatures {
  entries: ContractFeatureEntry[]
  refs: FeatureRef[]
  names: string[]
}

/** Syntax of the feature list: references (400 naming the entry), each feature once. */
function checkFeatureList (features: NonNullable<CreateContractInput['features']>): CheckedFeatures {
  const errors: FieldError[] = []
  const out: CheckedFeatures = { entries: [], refs: [], names: [] }
  features.forEach((f, i) => {
    const problem = refProblem(f.feature)
    if (problem) { errors.push({ path: `/body/features/${i}/feature`, field: 'feature', rule: 'ref', message: `'${f.feature}': ${problem}` }); return }
    const ref = parseRef(f.feature)
    if (out.names.includes(ref.name)) { errors.push({ path: `/body/features/${i}/feature`, field: 'feature', rule: 'duplicate_feature', message: `'${ref.name}' is listed twice` }); return }
    out.names.push(ref.name)
    out.refs.push(ref)
    out.entries.push({ feature: formatRef(ref), required: f.required ?? true, rules: f.rules ?? {} })
  })
  if (errors.length > 0) throw new BadRequestError(`The contract is invalid: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`, errors)
  return out
}

function normaliseRules (r: ContractRules | undefined): ContractRules {
  return { min_rows: r?.min_rows ?? null, max_null_fraction: r?.max_null_fraction ?? null }
}

/**
 * Resolves a contract's features against the definitions visible to `sql` (the latest active
 * version for `name`, that exact version for `name@v`) into the spec validators run on. 422
 * when a feature is unknown, of another entity, or an override does not fit it. A pinned
 * version that was deprecated since still resolves for checking data (`activeOnly` false), but
 * not for creating or activating a contract.
 */
export async function resolveContractSpec (sql: Queryable, contract: ContractLike, opts: { pathPrefix?: string, activeOnly?: boolean } = {}): Promise<ContractSpec> {
  const refs = contract.features.map((f) => parseRef(f.feature))
  const defs = await findDefinitionsByRefs(sql, refs)
  return buildContractSpec(contract, (ref) => {
    const d = defs.get(formatRef(parseRef(ref)))
    return d && (d.status === 'active' || opts.activeOnly === false) ? d : undefined
  }, opts.pathPrefix)
}

/** Creates version 1 of a contract inside the caller's transaction (which holds the registry lock). */
export async function createContractTx (tx: TxSql, input: CreateContractInput): Promise<StoredContract> {
  const checked = checkFeatureList(input.features)
  const latest = await findLatestContract(tx, input.name)
  if (latest) {
    throw new ConflictError(`Contract '${input.name}' already exists (latest version ${latest.version}); create a new version with POST /v1/contracts/${input.name}/versions`, { contract: input.name, latest_version: latest.version })
  }
  const rules = normaliseRules(input.rules)
  await resolveContractSpec(tx, { name: input.name, version: 1, entity: input.entity, features: checked.entries, rules }, { pathPrefix: '/body' })
  const created = await insertContract(tx, {
    name: input.name,
    version: 1,
    description: input.description ?? '',
    entity: input.entity,
    owner: input.owner ?? null,
    tags: input.tags ?? [],
    features: checked.entries,
    featureNames: checked.names,
    rules,
    status: input.status ?? 'draft',
  })
  await notifyRegistryChange(tx, { kind: 'contract', name: input.name, action: 'created' })
  return created
}

export interface ContractServiceOptions {
  /** Most rows one validate request may carry. */
  maxRows: number
}

/** Contracts: named, versioned sets of features with the rules a data set must satisfy. */
export class ContractService {
  /** `afterWrite`: called once a change has committed (this instance's caches forget what it changed). */
  constructor (private readonly sql: Sql, private readonly opts: ContractServiceOptions, private readonly afterWrite?: () => void) {}

  private async write<T> (what: string, work: (tx: TxSql) => Promise<T>): Promise<T> {
    const out = await registryWrite(this.sql, what, work)
    this.afterWrite?.()
    return out
  }

  async create (input: CreateContractInput): Promise<ContractApi> {
    return presentContract(await this.write(`Contract '${input.name}'`, (tx) => createContractTx(tx, input)))
  }

  async list (filter: ListContractsFilter): Promise<Page<ContractApi>> {
    const limit = filter.limit ?? 100
    const rows = await listCurrentContracts(this.sql, {
      entity: filter.entity,
      tags: filter.tag && filter.tag.length > 0 ? filter.tag : undefined,
      status: filter.status,
      feature: filter.feature,
      text: filter.text,
      after: decodeCursor(filter.cursor, 'string') ?? '',
      limit: limit + 1,
    })
    const p = page(rows, limit, (c) => c.name)
    return { items: p.items.map(presentContract), next_cursor: p.next_cursor }
  }

  /** The stored contract a reference names: `name@v` exactly, `name` its latest active version (else its latest). */
  async find (ref: string, sql: Queryable = this.sql): Promise<StoredContract> {
    const r = parseRef(ref, '/params/name')
    const c = r.version === undefined ? await findCurrentContract(sql, r.name) : await findContractVersion(sql, r.name, r.version)
    if (!c) throw await this.notFound(r, sql)
    return c
  }

  async get (ref: string): Promise<ContractApi> {
    return presentContract(await this.find(ref))
  }

  async versions (name: string, q: { limit?: number, cursor?: string }): Promise<Page<ContractApi>> {
    const limit = q.limit ?? 100
    const rows = await listContractVersions(this.sql, name, decodeCursor(q.cursor, 'number') ?? 0, limit + 1)
    if (rows.length === 0 && !await findLatestContract(this.sql, name)) throw await this.notFound({ name })
    const p = page(rows, limit, (c) => c.version)
    return { items: p.items.map(presentContract), next_cursor: p.next_cursor }
  }

  async version (name: string, version: number): Promise<ContractApi> {
    return this.get(formatRef({ name, version }))
  }

  /** Version n+1: given fields replace the latest version's, the rest is carried over; draft unless said. */
  async newVersion (name: string, input: NewContractVersionInput): Promise<ContractApi> {
    const created = await this.write(`Contract '${name}' version`, async (tx) => {
      const latest = await findLatestContract(tx, name)
      if (!latest) throw await this.notFound({ name }, tx)
      const checked = input.features ? checkFeatureList(input.features) : { entries: latest.features, names: latest.features.map((f) => parseRef(f.feature).name) }
      const entity = input.entity ?? latest.entity
      const rules = input.rules ? normaliseRules(input.rules) : normaliseRules(latest.rules)
      const version = latest.version + 1
      await resolveContractSpec(tx, { name, version, entity, features: checked.entries, rules }, { pathPrefix: '/body' })
      const c = await insertContract(tx, {
        name,
        version,
        description: input.description ?? latest.description,
        entity,
        owner: input.owner !== undefined ? input.owner : latest.owner,
        tags: input.tags ?? latest.tags,
        features: checked.entries,
        featureNames: checked.names,
        rules,
        status: input.status ?? 'draft',
      })
      await notifyRegistryChange(tx, { kind: 'contract', name, action: 'versioned' })
      return c
    })
    return presentContract(created)
  }

  /**
   * description, owner and tags change on every version; status on the version addressed
   * (name@v) or the latest one. Activation re-checks the features; nothing becomes a draft again.
   */
  async patch (ref: string, input: PatchContractInput): Promise<ContractApi> {
    const r = parseRef(ref, '/params/name')
    const updated = await this.write(`Contract '${r.name}'`, async (tx) => {
      const target = r.version === undefined ? await findLatestContract(tx, r.name) : await findContractVersion(tx, r.name, r.version)
      if (!target) throw await this.notFound(r, tx)
      const { status, ...metadata } = input
      if (Object.keys(metadata).length > 0) await updateContractMetadata(tx, r.name, metadata)
      if (status !== undefined && status !== target.status) {
        if (status === 'draft') throw new ConflictError(`Contract ${target.name}@${target.version} is ${target.status}; it cannot become a draft again (create a new version instead)`)
        if (status === 'active') await resolveContractSpec(tx, target)
        await setContractStatus(tx, target.name, target.version, status)
      }
      await notifyRegistryChange(tx, { kind: 'contract', name: r.name, action: 'updated' })
      return (await findContractVersion(tx, target.name, target.version))!
    })
    return presentContract(updated)
  }

  /** Retires every version (DELETE). */
  async retire (name: string, log: Pick<Logger, 'info'>): Promise<{ name: string, retired_versions: number }> {
    return this.write(`Contract '${name}'`, async (tx) => {
      if (!await findLatestContract(tx, name)) throw await this.notFound({ name }, tx)
      const count = await retireContracts(tx, name)
      await notifyRegistryChange(tx, { kind: 'contract', name, action: 'retired' })
      log.info({ contract: name, retired_versions: count }, 'contract retired')
      return { name, retired_versions: count }
    })
  }

  /** The contract a reference names and the spec its rows are checked against. */
  async resolve (ref: string): Promise<{ contract: StoredContract, spec: ContractSpec }> {
    const contract = await this.find(ref)
    return { contract, spec: await resolveContractSpec(this.sql, contract, { activeOnly: false }) }
  }

  /** Checks rows against a contract; writes nothing. */
  async validate (ref: string, rows: Array<Record<string, unknown>>, maxErrors: number): Promise<ValidationReport> {
    if (rows.length > this.opts.maxRows) throw new PayloadTooLargeError(`${rows.length} rows is more than the ${this.opts.maxRows} one request may carry`)
    const { spec } = await this.resolve(ref)
    const validator = new ContractValidator(spec, { maxErrors })
    // the rows are in memory: other requests get turns of the event loop meanwhile
    const slices = new EventLoopSlices()
    for (let i = 0; i < rows.length; i++) {
      validator.add(rows[i])
      if ((i & 1023) === 1023) await slices.pause()
    }
    return validator.report()
  }

  private async notFound (ref: FeatureRef, sql: Queryable = this.sql): Promise<NotFoundError> {
    if (ref.version !== undefined && await findLatestContract(sql, ref.name)) {
      return new NotFoundError(`Contract '${ref.name}' has no version ${ref.version}`, { contract: ref.name })
    }
    return new NotFoundError(`Contract '${ref.name}' does not exist`, { contract: ref.name })
  }
}

/**
 * The default definitions and contracts, each created when no version of its name exists yet:
 * loading twice (or from two instances at once) creates nothing twice, and a definition a user
 * changed or deprecated is left alone.
 */
export async function loadDefaultContent (sql: Sql, log: Pick<Logger, 'info'>): Promise<{ definitions: string[], contracts: string[] }> {
  const result = await registryWrite(sql, 'Default content', async (tx) => {
    const definitions: string[] = []
    const contracts: string[] = []
    for (const d of DEFAULT_DEFINITIONS) {
      if (await findLatestDefinition(tx, d.name)) continue
      await createDefinitionTx(tx, d)
      definitions.push(d.name)
    }
    for (const c of DEFAULT_CONTRACTS) {
      if (await findLatestContract(tx, c.name)) continue
      await createContractTx(tx, c)
      contracts.push(c.name)
    }
    return { definitions, contracts }
  })
  if (result.definitions.length + result.contracts.length > 0) log.info(result, 'default definitions and contracts loaded')
  return result
}
