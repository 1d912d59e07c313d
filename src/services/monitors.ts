import type { FastifyBaseLogger } from 'fastify'
import { entityIdProblem } from '../domain/names.js'
import type { AppDeps } from '../context.js'
import {
  claimMonitorTick, deleteMonitor, dueMonitorIds, findMonitor, insertMonitor, listMonitors, recordMonitorRun, updateMonitor,
  withMonitorLock, type MonitorFields, type MonitorRow,
} from '../../db/drift.js'
import { findDefinitionsByRefs } from '../../db/definitions.js'
import { DRIFT_METHODS } from '../domain/drift-stats.js'
import { BadRequestError, ConflictError, fieldOfPath, NotFoundError, UnprocessableError, type FieldError } from '../domain/errors.js'
import { formatRef, parseRef } from '../domain/feature-ref.js'
import { formatDuration, formatTimestamp, parseDuration } from '../domain/time.js'
import type { MonitorBody, MonitorPatch, MonitorQuery, MonitorView } from '../../routes/schemas/drift.js'
import { assertFiniteThresholds, effectiveThresholds, type DriftService } from './drift.js'
import { BackgroundLoop } from './background-loop.js'

const MIN_EVERY_MS = 1000
/** Due monitors taken per look; the rest wait for the next look. */
const BATCH = 50

/**
 * Drift monitors: stored checks over windows relative to the moment they run, on a schedule.
 *
 * Every instance with background jobs looks for due monitors every MONITOR_POLL_MS (and once at
 * start). A tick runs only in the instance that claims it: the claim moves next_run_at to the
 * first slot of the schedule after now in one UPDATE, so of several instances exactly one gets
 * it, and ticks missed while every instance was down collapse into one run. The monitor's
 * advisory lock is held during the run, so a slow run never overlaps its own next tick.
 */
export class MonitorService {
  /** Set by stop(): a look in progress leaves its remaining monitors to the next look. */
  private closing = false
  private readonly looker: BackgroundLoop

  constructor (private readonly deps: AppDeps, private readonly drift: DriftService, private readonly log: FastifyBaseLogger) {
    this.looker = new BackgroundLoop(async () => { await this.tick() }, () => this.deps.config.MONITOR_POLL_MS,
      (err) => { this.log.error({ err }, 'drift monitor look failed') })
  }

  async create (body: MonitorBody): Promise<MonitorView> {
    const fields = await this.fields(body, '/body')
    const row = await insertMonitor(this.deps.sql, fields)
    if (!row) throw new ConflictError(`A monitor named '${body.name}' already exists`)
    return monitorView(row)
  }

  async get (id: number): Promise<MonitorView> {
    return monitorView(await this.row(id))
  }

  async list (q: MonitorQuery): Promise<{ items: MonitorView[], next_cursor: string | null }> {
    const limit = q.limit ?? 100
    let afterId: number | undefined
    if (q.cursor !== undefined) {
      const decoded = Buffer.from(q.cursor, 'base64url').toString('utf8')
      afterId = Number(decoded)
      if (!/^[1-9][0-9]{0,15}$/.test(decoded) || !Number.isSafeInteger(afterId)) throw new BadRequestError('cursor is invalid: pass next_cursor of the previous page unchanged', [{ path: '/querystring/cursor', field: 'cursor', rule: 'cursor', message: 'is not a cursor of this listing' }])
    }
    const rows = await listMonitors(this.deps.sql, { featureName: q.feature, enabled: q.enabled, afterId, limit: limit + 1 })
    const page = rows.slice(0, limit)
    return {
      items: page.map(monitorView),
      next_cursor: rows.length > limit ? Buffer.from(String(page[page.length - 1].id)).toString('base64url') : null,
    }
  }

  async update (id: number, patch: MonitorPatch): Promise<MonitorView> {
    const row = await this.row(id)
    const merged: MonitorBody = {
      name: patch.name ?? row.name,
      description: patch.description ?? row.description,
      feature: patch.feature ?? row.feature,
      entity_id: patch.entity_id === undefined ? (row.entity_id ?? undefined) : (patch.entity_id ?? undefined),
      reference: patch.reference ?? { offset: showDuration(row.reference_offset_ms), length: showDuration(row.reference_length_ms) },
      current: patch.current ?? { offset: showDuration(row.current_offset_ms), length: showDuration(row.current_length_ms) },
      methods: patch.methods ?? row.methods,
      thresholds: patch.thresholds ?? row.thresholds,
      schedule: patch.schedule ?? { every: showDuration(row.every_ms) },
      enabled: patch.enabled ?? row.enabled,
    }
    const fields = await this.fields(merged, '/body')
    // a new schedule, or a monitor switched back on, runs at the next look
    const reschedule = fields.every_ms !== row.every_ms || (fields.enabled && !row.enabled)
    const updated = await updateMonitor(this.deps.sql, id, fields, reschedule)
    if (updated === 'name_taken') throw new ConflictError(`A monitor named '${fields.name}' already exists`)
    if (!updated) throw new NotFoundError(`Monitor ${id} does not exist`)
    return monitorView(updated)
  }

  async remove (id: number): Promise<void> {
    if (!await deleteMonitor(this.deps.sql, id)) throw new NotFoundError(`Monitor ${id} does not exist`)
  }

  // -------------------------------------------------------------------------------------------
  // The runner

  start (): void {
    if (this.looker.running) return
    this.closing = false
    this.looker.start(0)
  }

  /** Stops looking for ticks and waits for a run in progress to finish. */
  async stop (): Promise<void> {
    this.closing = true
    await this.looker.stop()
  }

  /** Runs every due tick this instance can claim; returns how many it ran. */
  async tick (): Promise<number> {
    let ran = 0
    for (const id of await dueMonitorIds(this.deps.sql, BATCH)) {
      if (this.closing) break
      const done = await withMonitorLock(this.deps.sql, id, async () => this.runTick(id))
      if (done) ran++
    }
    return ran
  }

  private async runTick (id: number): Promise<boolean> {
    const claim = await claimMonitorTick(this.deps.sql, id)
    if (!claim) return false
    const m = claim.monitor
    const now = claim.now.getTime()
    try {
      const result = await this.drift.check({
        feature: m.feature,
        entityId: m.entity_id ?? undefined,
        reference: { fromMs: now - m.reference_offset_ms - m.reference_length_ms, toMs: now - m.reference_offset_ms },
        current: { fromMs: now - m.current_offset_ms - m.current_length_ms, toMs: now - m.current_offset_ms },
        methods: m.methods,
        thresholds: m.thresholds,
      }, { monitorId: m.id, details: { monitor: m.name, tick: formatTimestamp(claim.dueAt.getTime()) } })
      await recordMonitorRun(this.deps.sql, m.id, { checkId: result.check_id, status: result.status, drifted: result.drifted, error: null })
      // a warning when drift starts (not on every tick while it lasts: a monitor on a 1 s schedule
      // would write one a second); info while it lasts and when it ends
      const fields = { monitor: m.name, feature: m.feature, check_id: result.check_id }
      if (result.drifted === true && m.last_drifted !== true) this.log.warn(fields, 'drift monitor: drift detected')
      else if (result.drifted === true) this.log.info(fields, 'drift monitor: drift continues')
      else if (result.drifted === false && m.last_drifted === true) this.log.info(fields, 'drift monitor: drift no longer detected')
    } catch (err) {
      // The tick is spent either way: a monitor whose feature went away reports it, and waits for its next slot.
      const message = err instanceof Error ? err.message : String(err)
      this.log.error({ err, monitor: m.name }, 'drift monitor run failed')
      await recordMonitorRun(this.deps.sql, m.id, { checkId: null, status: 'error', drifted: null, error: message })
    }
    return true
  }

  private async row (id: number): Promise<MonitorRow> {
    const row = await findMonitor(this.deps.sql, id)
    if (!row) throw new NotFoundError(`Monitor ${id} does not exist`)
    return row
  }

  /** Validates a monitor body (durations, feature) into stored fields. */
  private async fields (b: MonitorBody, base: string): Promise<MonitorFields> {
    const errors: FieldError[] = []
    const duration = (v: string, path: string, allowZero: boolean, min = 1): number => {
      if (allowZero && /^0+(ms|s|m|h|d|w)$/.test(v)) return 0
      const d = parseDuration(v)
      if (!d.ok) { errors.push({ path, field: fieldOfPath(path), rule: 'duration', message: d.message }); return 0 }
      if (d.ms < min) errors.push({ path, field: fieldOfPath(path), rule: 'min_duration', message: `must be at least ${showDuration(min)}` })
      return d.ms
    }
    const fields: MonitorFields = {
      name: b.name,
      description: b.description ?? '',
      feature: b.feature,
      entity_id: b.entity_id ?? null,
      reference_offset_ms: duration(b.reference.offset, `${base}/reference/offset`, true),
      reference_length_ms: duration(b.reference.length, `${base}/reference/length`, false),
      current_offset_ms: duration(b.current.offset, `${base}/current/offset`, true),
      current_length_ms: duration(b.current.length, `${base}/current/length`, false),
      methods: b.methods ?? [...DRIFT_METHODS],
      thresholds: b.thresholds ?? {},
      every_ms: duration(b.schedule.every, `${base}/schedule/every`, false, MIN_EVERY_MS),
      enabled: b.enabled ?? true,
    }
    // as in a drift check: thresholds that are no numbers are 400; windows, the schedule and
    // the entity id that do not make sense are 422
    assertFiniteThresholds(b.thresholds, `${base}/thresholds`)
    if (b.entity_id !== undefined && b.entity_id !== null) {
      const problem = entityIdProblem(b.entity_id)
      if (problem !== undefined) errors.push({ path: `${base}/entity_id`, field: 'entity_id', rule: 'entity_id', message: problem })
    }
    if (errors.length > 0) throw new UnprocessableError(`The monitor is invalid: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`, errors)
    const ref = parseRef(b.feature, `${base}/feature`)
    const def = (await findDefinitionsByRefs(this.deps.sql, [ref])).get(formatRef(ref))
    if (!def) throw new UnprocessableError(ref.version === undefined ? `Feature '${ref.name}' has no active version` : `Feature '${formatRef(ref)}' does not exist`, [{ path: `${base}/feature`, field: 'feature', rule: 'unknown_feature', message: `'${formatRef(ref)}' is not a feature with ${ref.version === undefined ? 'an active version' : 'that version'}` }])
    if (def.dtype === 'string') throw new UnprocessableError(`Feature '${def.name}' is of dtype string: drift is measured on numeric features`, [{ path: `${base}/feature`, field: 'feature', rule: 'numeric_feature', message: 'must be a numeric feature' }])
    return fields
  }
}

function monitorView (m: MonitorRow): MonitorView {
  return {
    id: m.id,
    name: m.name,
    description: m.description,
    feature: m.feature,
    entity_id: m.entity_id,
    reference: { offset: showDuration(m.reference_offset_ms), length: showDuration(m.reference_length_ms) },
    current: { offset: showDuration(m.current_offset_ms), length: showDuration(m.current_length_ms) },
    methods: m.methods,
    thresholds: effectiveThresholds(m.thresholds),
    schedule: { every: showDuration(m.every_ms) },
    enabled: m.enabled,
    next_run_at: formatTimestamp(m.next_run_at.getTime()),
    runs: m.runs,
    last_run: m.last_run_at === null
      ? null
      : { at: formatTimestamp(m.last_run_at.getTime()), check_id: m.last_check_id, status: m.last_status, drifted: m.last_drifted, error: m.last_error },
    created_at: formatTimestamp(m.created_at.getTime()),
    updated_at: formatTimestamp(m.updated_at.getTime()),
  }
}

function showDuration (ms: number): string {
  return ms === 0 ? '0s' : formatDuration(ms)
}
