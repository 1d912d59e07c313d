import { randomUUID } from 'node:crypto'
import { entityIdProblem } from '../domain/names.js'
import type { AppDeps } from '../context.js'
import { findDefinitionsByRefs } from '../../db/definitions.js'
import { soundCutoff } from '../../db/knowledge.js'
import { rebuildWriteLog, writeLogStatus } from '../../db/write-log.js'
import {
  driftSummary, findRunForDrift, insertDriftLogs, listDriftDaily, listDriftLogs,
  type DriftLogRow, type GridSpec, type SampleSpec,
} from '../../db/drift.js'
import {
  DEFAULT_THRESHOLDS, DRIFT_METHODS, judgeDrift, quantileFractions,
  type DriftMethod, type DriftVerdict, type SampleSummary,
} from '../domain/drift-stats.js'
import { BadRequestError, fieldOfPath, UnprocessableError, type FieldError } from '../domain/errors.js'
import { formatRef, parseRef } from '../domain/feature-ref.js'
import type { FeatureDefinition } from '../domain/feature.js'
import { formatTimestamp, parseDuration, parseTimestamp } from '../domain/time.js'
import type {
  DriftCheckBody, DriftCheckResult, DriftDailyList, DriftDailyQuery, DriftLogEntry, DriftLogQuery, WriteLogRebuilt, WriteLogStatus,
} from '../../routes/schemas/drift.js'

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const DAY_MS = 86_400_000

/** Who asked for a check: a person (through the API) or a monitor's tick. */
export interface CheckOrigin {
  monitorId?: number
  /** Extra facts written to every log row's details (the monitor's tick). */
  details?: Record<string, unknown>
}

/** A window in epoch milliseconds, [fromMs, toMs). */
export interface MsWindow { fromMs: number, toMs: number }

/** A check with everything already parsed (monitors build these directly). */
export interface ResolvedCheck {
  feature: string
  entityId?: string
  reference: MsWindow | { pipelineRun: string }
  current: MsWindow
  methods: DriftMethod[]
  thresholds: Partial<Record<DriftMethod, number>>
  asOfMs?: number
}

/**
 * Drift checks: resolves the feature and the two samples, has the database compute the
 * summary (src/domain/drift-stats.ts says what is computed), judges it, and logs every check,
 * one feature_drift_logs row per method.
 */
export class DriftService {
  constructor (private readonly deps: AppDeps) {}

  /** POST /v1/drift/checks */
  async checkRequest (body: DriftCheckBody): Promise<DriftCheckResult> {
    const errors: FieldError[] = []
    const time = (v: unknown, path: string): number => {
      const t = parseTimestamp(v)
      if (t.ok) return t.ms
      errors.push({ path, field: fieldOfPath(path), rule: 'timestamp', message: t.message })
      return Number.NaN
    }
    const current = { fromMs: time(body.current.from, '/body/current/from'), toMs: time(body.current.to, '/body/current/to') }
    let reference: ResolvedCheck['reference']
    const ref = body.reference
    if (ref.pipeline_run !== undefined) {
      if (ref.from !== undefined || ref.to !== undefined) errors.push({ path: '/body/reference', field: 'reference', rule: 'one_of_window_run', message: 'give either from and to, or pipeline_run, not both' })
      if (!UUID_RE.test(ref.pipeline_run)) errors.push({ path: '/body/reference/pipeline_run', field: 'pipeline_run', rule: 'uuid', message: 'must be the id (a UUID) of a pipeline run' })
      reference = { pipelineRun: ref.pipeline_run.toLowerCase() }
    } else if (ref.from !== undefined && ref.to !== undefined) {
      reference = { fromMs: time(ref.from, '/body/reference/from'), toMs: time(ref.to, '/body/reference/to') }
    } else {
      errors.push({ path: '/body/reference', field: 'reference', rule: 'one_of_window_run', message: 'needs either from and to (a time window) or pipeline_run' })
      reference = { fromMs: Number.NaN, toMs: Number.NaN }
    }
    for (const [w, path] of [[current, '/body/current'], [reference, '/body/reference']] as const) {
      if ('fromMs' in w && Number.isFinite(w.fromMs) && Number.isFinite(w.toMs) && w.fromMs >= w.toMs) {
        errors.push({ path: `${path}/to`, field: 'to', rule: 'range', message: 'must be later than from (windows are [from, to))' })
      }
    }
    const asOfMs = body.as_of_system_time === undefined ? undefined : time(body.as_of_system_time, '/body/as_of_system_time')
    assertFiniteThresholds(body.thresholds, '/body/thresholds')
    const entityProblem = body.entity_id === undefined ? undefined : entityIdProblem(body.entity_id)
    if (entityProblem !== undefined) errors.push({ path: '/body/entity_id', field: 'entity_id', rule: 'entity_id', message: entityProblem })
    if (errors.length > 0) throw new UnprocessableError(`The drift check is invalid: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`, errors)
    return this.check({
      feature: body.feature,
      entityId: body.entity_id,
      reference,
      current,
      methods: body.methods ?? [...DRIFT_METHODS],
      thresholds: body.thresholds ?? {},
      asOfMs,
    })
  }

  /** Runs one check and logs it. */
  async check (c: ResolvedCheck, origin: CheckOrigin = {}): Promise<DriftCheckResult> {
    const { sql, config } = this.deps
    const def = await this.resolveFeature(c.feature)
    const cutoffMs = await soundCutoff(sql, c.asOfMs)

    let refSpec: SampleSpec
    let refSide: Record<string, unknown>
    if ('pipelineRun' in c.reference) {
      const run = await this.runReference(c.reference.pipelineRun, def, c.entityId)
      refSpec = run.spec
      refSide = run.side
    } else {
      refSpec = { kind: 'window', featureId: def.id, entityId: c.entityId, ...c.reference, cutoffMs }
      refSide = { from: formatTimestamp(c.reference.fromMs), to: formatTimestamp(c.reference.toMs) }
    }
    const curSpec: SampleSpec = { kind: 'window', featureId: def.id, entityId: c.entityId, ...c.current, cutoffMs }
    const curSide = { from: formatTimestamp(c.current.fromMs), to: formatTimestamp(c.current.toMs) }

    const summary = await driftSummary(sql, refSpec, curSpec, quantileFractions()).catch((err: unknown) => {
      if ((err as { code?: string }).code === '22003') {
        throw new UnprocessableError(`The values of '${def.name}' in these windows are too far apart for drift statistics (beyond about 1e150 times their usual spread)`)
      }
      throw err
    })
    const judged = judgeDrift(summary, c.methods, c.thresholds, config.DRIFT_MIN_SAMPLES)
    const verdict = {
      ...judged,
      results: judged.results.map((r) => ({
        ...r, statistic: finite(r.statistic), p_value: finite(r.p_value), ...(r.distance === undefined ? {} : { distance: finite(r.distance) }),
      })),
    }
    const reference = { ...refSide, ...sampleView(summary.reference) }
    const current = { ...curSide, ...sampleView(summary.current) }
    const checkId = randomUUID()
    const checkedAt = await insertDriftLogs(sql, verdict.results.map((r) => ({
      checkId,
      featureId: def.id,
      featureName: def.name,
      featureVersion: def.version,
      entityId: c.entityId ?? null,
      method: r.method,
      status: r.status,
      statistic: r.statistic,
      pValue: r.p_value,
      threshold: r.threshold,
      drifted: r.drifted,
      reference,
      current,
      referenceCount: summary.reference.count,
      currentCount: summary.current.count,
      cutoffMs,
      monitorId: origin.monitorId ?? null,
      details: logDetails(r.method, verdict, origin.details),
    })))
    return {
      check_id: checkId,
      checked_at: formatTimestamp(checkedAt.getTime()),
      feature: { name: def.name, version: def.version },
      entity_id: c.entityId ?? null,
      knowledge_cutoff: formatTimestamp(cutoffMs),
      min_samples: config.DRIFT_MIN_SAMPLES,
      status: verdict.status,
      drifted: verdict.drifted,
      ...(verdict.note ? { note: verdict.note } : {}),
      reference,
      current,
      results: verdict.results,
      bins: verdict.bins,
    } as DriftCheckResult
  }

  private async resolveFeature (feature: string): Promise<FeatureDefinition> {
    const ref = parseRef(feature, '/body/feature')
    const found = (await findDefinitionsByRefs(this.deps.sql, [ref])).get(formatRef(ref))
    if (!found) {
      throw new UnprocessableError(ref.version === undefined
        ? `Feature '${ref.name}' has no active version`
        : `Feature '${formatRef(ref)}' does not exist`, [{ path: '/body/feature', field: 'feature', rule: 'unknown_feature', message: `'${formatRef(ref)}' is not a feature with ${ref.version === undefined ? 'an active version' : 'that version'}` }])
    }
    if (found.dtype === 'string') {
      throw new UnprocessableError(`Feature '${found.name}' is of dtype string: drift is measured on numeric features (float64, int64, bool)`, [{ path: '/body/feature', field: 'feature', rule: 'numeric_feature', message: 'must be a numeric feature' }])
    }
    return found
  }

  /** The dataset of a pipeline run as a reference sample: its pinned version of the feature, its cutoff and mode. */
  private async runReference (runId: string, def: FeatureDefinition, entityId?: string): Promise<{ spec: SampleSpec, side: Record<string, unknown> }> {
    const run = await findRunForDrift(this.deps.sql, runId)
    if (!run) throw new UnprocessableError(`Pipeline run ${runId} does not exist`, [{ path: '/body/reference/pipeline_run', field: 'pipeline_run', rule: 'unknown_pipeline_run', message: 'no pipeline run has this id' }])
    const pinned = run.features.find((f) => f.name === def.name)
    if (!pinned) {
      throw new UnprocessableError(`Pipeline run ${runId} did not use feature '${def.name}' (it used ${run.features.map((f) => `${f.name}@${f.version}`).join(', ') || 'no features'})`,
        [{ path: '/body/reference/pipeline_run', field: 'pipeline_run', rule: 'feature_not_in_run', message: `the run has no feature '${def.name}'` }])
    }
    const pinnedDef = pinned.id === def.id ? def : (await findDefinitionsByRefs(this.deps.sql, [{ name: pinned.name, version: pinned.version }])).get(`${pinned.name}@${pinned.version}`)
    let grid: GridSpec | undefined
    if (run.entity_spec.type === 'grid') grid = expandGrid(run.entity_spec.grid ?? {}, runId)
    const cutoffMs = new Date(run.cutoff).getTime()
    return {
      spec: { kind: 'run', featureId: pinned.id, entityId, runId: run.id, cutoffMs, known: run.point_in_time === 'known', ttlMs: pinnedDef?.ttl_ms ?? null, grid },
      side: { pipeline_run: run.id, cutoff: formatTimestamp(cutoffMs), point_in_time: run.point_in_time, feature_version: pinned.version },
    }
  }

  /** GET /v1/drift/logs */
  async logs (q: DriftLogQuery): Promise<{ items: DriftLogEntry[], next_cursor: string | null }> {
    const limit = q.limit ?? 100
    const ref = q.feature === undefined ? undefined : parseRef(q.feature, '/querystring/feature')
    const fromMs = q.from === undefined ? undefined : queryTime(q.from, 'from')
    const toMs = q.to === undefined ? undefined : queryTime(q.to, 'to')
    const after = q.cursor === undefined ? undefined : decodeLogCursor(q.cursor)
    const rows = await listDriftLogs(this.deps.sql, {
      featureName: ref?.name, featureVersion: ref?.version, entityId: q.entity_id, method: q.method, drifted: q.drifted,
      status: q.status, fromMs, toMs, checkId: q.check_id, monitorId: q.monitor_id, after, limit: limit + 1,
    })
    const page = rows.slice(0, limit)
    const last = page[page.length - 1]
    return {
      items: page.map(logView),
      next_cursor: rows.length > limit ? Buffer.from(JSON.stringify([last.checked_at.getTime(), last.id])).toString('base64url') : null,
    }
  }

  /** GET /v1/drift/daily */
  async daily (q: DriftDailyQuery): Promise<DriftDailyList> {
    const toMs = q.to === undefined ? Math.ceil(Date.now() / DAY_MS) * DAY_MS : queryTime(q.to, 'to')
    const fromMs = q.from === undefined ? toMs - 30 * DAY_MS : queryTime(q.from, 'from')
    if (fromMs >= toMs) throw new BadRequestError('to must be later than from', [{ path: '/querystring/to', field: 'to', rule: 'range', message: 'must be later than from' }])
    if (toMs - fromMs > 3700 * DAY_MS) throw new BadRequestError('the range is too long: at most about 10 years of days', [{ path: '/querystring/from', field: 'from', rule: 'range', message: 'range longer than 3700 days' }])
    const rows = await listDriftDaily(this.deps.sql, this.deps.storageMode, { featureName: q.feature, method: q.method, fromMs, toMs })
    return {
      from: formatTimestamp(fromMs),
      to: formatTimestamp(toMs),
      items: rows.map((r) => ({
        day: formatTimestamp(r.bucket.getTime()),
        feature: r.feature_name,
        method: r.method,
        checks: r.checks,
        drifted: r.drifted_checks,
        insufficient_data: r.insufficient_checks,
        mean_statistic: r.statistic_count > 0 && r.statistic_sum !== null ? r.statistic_sum / r.statistic_count : null,
        min_statistic: r.statistic_min,
        max_statistic: r.statistic_max,
      })),
    }
  }

  /** GET /v1/drift/write-log */
  async writeLog (): Promise<WriteLogStatus> {
    const s = await writeLogStatus(this.deps.sql)
    return {
      range_read: s.untrackedWrites === 0 ? 'available' : 'off_until_rebuilt',
      logged_writes: s.loggedWrites,
      untracked_writes: s.untrackedWrites,
      first_untracked_at: s.firstUntrackedMs === null ? null : formatTimestamp(s.firstUntrackedMs),
      last_untracked_at: s.lastUntrackedMs === null ? null : formatTimestamp(s.lastUntrackedMs),
    }
  }

  /** POST /v1/drift/write-log/rebuild */
  async rebuildWriteLog (): Promise<WriteLogRebuilt> {
    const started = performance.now()
    const r = await rebuildWriteLog(this.deps.sql)
    return { logged_writes: r.loggedWrites, cleared_untracked_writes: r.clearedUntrackedWrites, took_ms: Math.round(performance.now() - started), range_read: 'available' }
  }
}

/**
 * Thresholds must be finite numbers: the schema's bounds let through a string the body coerces
 * to Infinity ("Infinity", "1e400"), and JSON's 1e400 is Infinity too. 400 naming each one.
 */
export function assertFiniteThresholds (thresholds: Partial<Record<DriftMethod, number>> | undefined, base: string): void {
  const errors: FieldError[] = []
  for (const [method, v] of Object.entries(thresholds ?? {})) {
    if (typeof v === 'number' && !Number.isFinite(v)) errors.push({ path: `${base}/${method}`, field: method, rule: 'finite', message: 'must be a finite number' })
  }
  if (errors.length > 0) throw new BadRequestError(`Invalid thresholds: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`, errors)
}

/** Effective thresholds: overrides over the defaults. */
export function effectiveThresholds (overrides: Partial<Record<DriftMethod, number>>): Record<DriftMethod, number> {
  return { ...DEFAULT_THRESHOLDS, ...overrides }
}

/**
 * The entity rows of a grid run: every entity at from, from + every, ... up to and including
 * `to`, as the training-set grid expands them.
 */
function expandGrid (grid: Record<string, unknown>, runId: string): GridSpec {
  const entities = Array.isArray(grid.entities) ? grid.entities.filter((e): e is string => typeof e === 'string') : []
  const from = parseTimestamp(grid.from)
  const to = parseTimestamp(grid.to)
  const every = parseDuration(grid.every)
  if (!from.ok || !to.ok || !every.ok || entities.length === 0) {
    throw new UnprocessableError(`Pipeline run ${runId} has a grid this service cannot read back`)
  }
  const timesMs: number[] = []
  for (let t = from.ms; t <= to.ms; t += every.ms) timesMs.push(t)
  return { entities, timesMs }
}

function sampleView (s: SampleSummary): Record<string, unknown> {
  return { count: s.count, mean: finite(s.mean), stddev: finite(s.stddev), min: s.min, max: s.max }
}

/** JSON has no infinities: sums of squares of values near 1e308 overflow, and say nothing then. */
function finite (x: number | null | undefined): number | null {
  return x !== null && x !== undefined && Number.isFinite(x) ? x : null
}

function logDetails (method: DriftMethod, verdict: DriftVerdict, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const r = verdict.results.find((x) => x.method === method)!
  const out: Record<string, unknown> = { ...extra }
  if ((method === 'psi' || method === 'js') && verdict.bins.length > 0) out.bins = verdict.bins
  if (r.distance !== undefined) out.distance = r.distance
  if (r.note) out.note = r.note
  return out
}

function logView (r: DriftLogRow): DriftLogEntry {
  return {
    id: r.id,
    check_id: r.check_id,
    checked_at: formatTimestamp(r.checked_at.getTime()),
    feature: { name: r.feature_name, version: r.feature_version },
    entity_id: r.entity_id,
    method: r.method,
    status: r.status,
    statistic: r.statistic,
    p_value: r.p_value,
    threshold: r.threshold,
    drifted: r.drifted,
    reference: r.reference,
    current: r.current,
    knowledge_cutoff: formatTimestamp(r.knowledge_cutoff.getTime()),
    monitor_id: r.monitor_id,
    details: r.details,
  }
}

function decodeLogCursor (cursor: string): { checkedAtMs: number, id: number } {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown
    if (Array.isArray(v) && v.length === 2 && Number.isSafeInteger(v[0]) && Number.isSafeInteger(v[1])) return { checkedAtMs: v[0], id: v[1] }
  } catch { /* below */ }
  throw new BadRequestError('cursor is invalid: pass next_cursor of the previous page unchanged', [{ path: '/querystring/cursor', field: 'cursor', rule: 'cursor', message: 'is not a cursor of this listing' }])
}

function queryTime (input: string | number, field: string): number {
  const t = parseTimestamp(input)
  if (!t.ok) throw new BadRequestError(`${field}: ${t.message}`, [{ path: `/querystring/${field}`, field, message: t.message }])
  return t.ms
}
