import type { Dtype, FeatureDefinition } from './feature.js'
import type { FieldError } from './errors.js'
import { UnprocessableError } from './errors.js'
import { parseRef } from './feature-ref.js'
import { checkValue } from './value-validation.js'
import { entityIdProblem } from './names.js'
import { parseTimestamp } from './time.js'
import { mergeRules, ruleProblems, type CompleteRules, type RulesInput } from './validation-rules.js'

/** A feature entry of a contract as stored: a reference, required or optional, rule overrides. */
export interface ContractFeatureEntry {
  feature: string
  required?: boolean
  rules?: RulesInput & { max_null_fraction?: number | null }
}

/** Rules on the whole data set. max_null_fraction is the default for every feature. */
export interface ContractRules {
  min_rows?: number | null
  max_null_fraction?: number | null
}

export interface ContractLike {
  name: string
  version: number
  entity: string
  features: ContractFeatureEntry[]
  rules: ContractRules
}

/** One feature of a contract, resolved to a definition version, with its effective rules. */
export interface ContractFeatureSpec {
  name: string
  /** The reference as written in the contract (`name` or `name@version`). */
  ref: string
  version: number
  dtype: Dtype
  required: boolean
  rules: CompleteRules
  maxNullFraction: number | null
}

export interface ContractSpec {
  name: string
  version: number
  entity: string
  features: ContractFeatureSpec[]
  minRows: number | null
}

/**
 * Resolves a contract against definitions (`resolve` maps a reference to its definition, or
 * undefined) into the spec a validator runs on. Unresolvable references, features of another
 * entity and overrides that do not fit the resolved definition are 422s naming the feature
 * (paths under `pathPrefix`, e.g. `/body`).
 */
export function buildContractSpec (contract: ContractLike, resolve: (ref: string) => FeatureDefinition | undefined, pathPrefix = ''): ContractSpec {
  const errors: FieldError[] = []
  const features: ContractFeatureSpec[] = []
  contract.features.forEach((entry, i) => {
    const path = `${pathPrefix}/features/${i}`
    const def = resolve(entry.feature)
    if (!def) {
      errors.push({ path: `${path}/feature`, field: 'feature', rule: 'unknown_feature', message: `feature '${entry.feature}' has no active definition` })
      return
    }
    if (def.entity !== contract.entity) {
      errors.push({ path: `${path}/feature`, field: 'feature', rule: 'entity_type', message: `feature '${entry.feature}' is keyed by entity '${def.entity}', the contract by '${contract.entity}'` })
      return
    }
    const { max_null_fraction: maxNull, ...overrides } = entry.rules ?? {}
    const rules = mergeRules(def.validation, overrides)
    const problems = ruleProblems(def.dtype, rules, `${path}/rules`)
    if (problems.length > 0) { errors.push(...problems.map((p) => ({ ...p, message: `${entry.feature}: ${p.message}` }))); return }
    features.push({
      name: parseRef(entry.feature).name,
      ref: entry.feature,
      version: def.version,
      dtype: def.dtype,
      required: entry.required ?? true,
      rules,
      maxNullFraction: maxNull !== undefined ? maxNull : (contract.rules.max_null_fraction ?? null),
    })
  })
  if (errors.length > 0) {
    throw new UnprocessableError(`Contract ${contract.name}@${contract.version} cannot be resolved: ${errors.map((e) => e.message).join('; ')}`, errors)
  }
  return { name: contract.name, version: contract.version, entity: contract.entity, features, minRows: contract.rules.min_rows ?? null }
}

export interface RowError {
  /** 0-based row number. */
  row: number
  /** The feature (or key column: entity_id, event_time) that broke the rule. */
  feature: string
  rule: string
  message: string
}

/** A rule on the whole data set (min_rows, max_null_fraction). */
export interface DatasetError {
  feature: string | null
  rule: string
  message: string
}

export interface FeatureSummary {
  version: number
  required: boolean
  /** Rows where the feature was present (null included). */
  checked: number
  nulls: number
  /** Rows without the feature (only an optional feature may be missing without an error). */
  missing: number
  null_fraction: number | null
  /** Broken rules and how many rows broke each. */
  violations: Record<string, number>
}

export interface ValidationReport {
  contract: { name: string, version: number }
  valid: boolean
  /** The first row errors, in row order (at most maxErrors). */
  errors: RowError[]
  errors_truncated: boolean
  dataset_errors: DatasetError[]
  per_feature: Record<string, FeatureSummary>
  summary: { rows: number, valid_rows: number, invalid_rows: number, error_count: number }
}

export interface ValidatorOptions {
  /** How many row errors the report lists (all are counted). Default 100. */
  maxErrors?: number
  /** Values are text (CSV cells): numbers and booleans are parsed, an empty cell is null. */
  fromText?: boolean
  /** Check entity_id and event_time of each row (default true). */
  checkKeys?: boolean
}

interface Tally {
  spec: ContractFeatureSpec
  checked: number
  nulls: number
  missing: number
  violations: Record<string, number>
}

/**
 * Checks wide rows ({entity_id, event_time, <feature>: value, ...}) against a contract, one row
 * at a time, in constant memory: counters per feature and the first maxErrors errors. A feature
 * column is found under its name, or under its reference when the contract pins a version and
 * the row has that key. Columns the contract does not name are ignored.
 */
export class ContractValidator {
  private readonly tallies: Tally[]
  private readonly maxErrors: number
  private readonly fromText: boolean
  private readonly checkKeys: boolean
  private readonly errors: RowError[] = []
  private rows = 0
  private invalidRows = 0
  private errorCount = 0

  constructor (private readonly spec: ContractSpec, opts: ValidatorOptions = {}) {
    this.tallies = spec.features.map((f) => ({ spec: f, checked: 0, nulls: 0, missing: 0, violations: {} }))
    this.maxErrors = opts.maxErrors ?? 100
    this.fromText = opts.fromText ?? false
    this.checkKeys = opts.checkKeys ?? true
  }

  /** Checks one row; true when it breaks no rule. */
  add (row: Record<string, unknown>): boolean {
    const index = this.rows++
    let valid = true
    const fail = (feature: string, rule: string, message: string): void => {
      valid = false
      this.errorCount++
      if (this.errors.length < this.maxErrors) this.errors.push({ row: index, feature, rule, message })
    }
    if (row === null || typeof row !== 'object' || Array.isArray(row)) {
      fail('(row)', 'type', 'a row must be an object of columns')
      this.invalidRows++
      return false
    }
    if (this.checkKeys) {
      const entityId = row.entity_id
      if (entityId === undefined || entityId === null) fail('entity_id', 'required', 'entity_id is missing')
      else {
        const problem = entityIdProblem(entityId)
        if (problem) fail('entity_id', 'entity_id', `entity_id ${problem}`)
      }
      const eventTime = row.event_time
      if (eventTime === undefined || eventTime === null) fail('event_time', 'required', 'event_time is missing')
      else {
        const t = parseTimestamp(this.fromText && typeof eventTime === 'string' && /^\d+$/.test(eventTime) ? Number(eventTime) : eventTime)
        if (!t.ok) fail('event_time', 'timestamp', `event_time ${t.message}`)
      }
    }
    for (const tally of this.tallies) {
      const f = tally.spec
      const raw = f.ref !== f.name && Object.hasOwn(row, f.ref) ? row[f.ref] : row[f.name]
      if (raw === undefined) {
        tally.missing++
        if (f.required) {
          tally.violations.required = (tally.violations.required ?? 0) + 1
          fail(f.name, 'required', `${f.name} is required by the contract but missing from the row`)
        }
        continue
      }
      tally.checked++
      if (raw === null || (this.fromText && raw === '')) tally.nulls++
      const check = checkValue({ dtype: f.dtype, validation: f.rules }, raw, this.fromText)
      if (!check.ok) {
        tally.violations[check.rule] = (tally.violations[check.rule] ?? 0) + 1
        fail(f.name, check.rule, `${f.name}: ${check.message}`)
      }
    }
    if (!valid) this.invalidRows++
    return valid
  }

  report (): ValidationReport {
    const datasetErrors: DatasetError[] = []
    if (this.spec.minRows !== null && this.rows < this.spec.minRows) {
      datasetErrors.push({ feature: null, rule: 'min_rows', message: `${this.rows} rows, the contract requires at least ${this.spec.minRows}` })
    }
    const perFeature: Record<string, FeatureSummary> = {}
    for (const t of this.tallies) {
      const nullFraction = t.checked > 0 ? t.nulls / t.checked : null
      if (t.spec.maxNullFraction !== null && nullFraction !== null && nullFraction > t.spec.maxNullFraction) {
        datasetErrors.push({ feature: t.spec.name, rule: 'max_null_fraction', message: `${t.spec.name} is null in ${t.nulls} of ${t.checked} rows (${round(nullFraction)}), above the maximum ${t.spec.maxNullFraction}` })
      }
      perFeature[t.spec.name] = {
        version: t.spec.version,
        required: t.spec.required,
        checked: t.checked,
        nulls: t.nulls,
        missing: t.missing,
        null_fraction: nullFraction,
        violations: { ...t.violations },
      }
    }
    return {
      contract: { name: this.spec.name, version: this.spec.version },
      valid: this.invalidRows === 0 && datasetErrors.length === 0,
      errors: [...this.errors],
      errors_truncated: this.errorCount > this.errors.length,
      dataset_errors: datasetErrors,
      per_feature: perFeature,
      summary: { rows: this.rows, valid_rows: this.rows - this.invalidRows, invalid_rows: this.invalidRows, error_count: this.errorCount },
    }
  }
}

function round (x: number): number {
  return Math.round(x * 10_000) / 10_000
}
