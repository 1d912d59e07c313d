import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { FastifyBaseLogger } from 'fastify'
import type { Logger } from 'pino'
import type { AppDeps } from '../context.js'
import type { Sql } from '../../db/connection.js'
import * as repo from '../../db/pipeline-runs.js'
import type { EntitySpec, PinnedFeature, RunRecord } from '../../db/pipeline-runs.js'
import { findContractVersion } from '../../db/contracts.js'
import { AppError, BadRequestError, ConflictError, NotFoundError, type FieldError } from '../domain/errors.js'
import { parseTimestamp, formatTimestamp } from '../domain/time.js'
import { buildContractSpec, ContractValidator, type ContractSpec } from '../domain/contract-validation.js'
import { parseRef } from '../domain/feature-ref.js'
import {
  CANONICAL_FORMAT, DIGEST_BLOCK_ROWS, CanonicalDataset, diffDigestBlock,
  type CanonicalLayout, type DigestBlock,
} from '../domain/canonical-dataset.js'
import type { TrainingSetService, ResolvedTrainingSet, TrainingRow, TrainingSetRequest } from './training-sets.js'
import { EventLoopSlices } from './event-loop-slices.js'
import { EntityRowColumns } from '../domain/training-body.js'
import type { CreateRunBody, PatchRunBody, ListRunsQuery, PipelineRunView, ReproduceQuery } from '../../routes/schemas/pipeline-runs.js'

export interface PipelineOptions {
  /** Runs of more rows than this are built in the background. */
  syncMaxRows: number
  /** Background builds at once in this instance. */
  concurrency: number
  /** Sweep for runs abandoned by dead instances every minute (besides at start). */
  backgroundJobs: boolean
}

const DEFAULT_MAX_DIFFERENCES = 20
const PROGRESS_EVERY_MS = 500
const ABANDONED_REASON = 'the service that was building this run stopped (restart or crash) before it finished; nothing of it was kept: start a new run'
const SHUTDOWN_REASON = 'the service shut down before this run finished: start a new run'

/** A reference to a run: its id, a UUIDv7 whose timestamp is the run's started_at. */
export function newRunId (ms: number): string {
  const b = randomBytes(16)
  b.writeUIntBE(ms, 0, 6)
  b[6] = (b[6] & 0x0f) | 0x70
  b[8] = (b[8] & 0x3f) | 0x80
  const h = b.toString('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

/** started_at of a run id, or undefined when the id is not a run id (not a UUIDv7). */
export function runIdTime (id: string): Date | undefined {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i.test(id)) return undefined
  return new Date(Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16))
}

/** Fails the runs that a dead process left queued or running (at start, and periodically). */
export async function recoverAbandonedRuns (sql: Sql, log: Pick<Logger, 'warn'>): Promise<number> {
  const failed = await repo.failAbandonedRuns(sql, ABANDONED_REASON)
  for (const r of failed) log.warn({ run_id: r.id, name: r.name, was: r.status }, 'pipeline run abandoned by a stopped service: marked failed')
  return failed.length
}

class RunCancelled extends Error {}

/**
 * How long the run-lock connection stays open once no run holds a lock: runs created one after
 * another (a trainer's loop, a script) reuse it instead of opening a connection each (~25 ms:
 * TCP, start-up, password exchange), and an instance that builds no runs holds no connection.
 */
export const RUN_LOCK_IDLE_MS = 30_000

/**
 * Holds the session advisory locks of the runs this process builds, on one dedicated
 * connection: while a run is locked, no other instance takes it for abandoned. A lost
 * connection (database restart) loses the locks; they are taken again on the next session.
 */
export class RunLocks {
  private session?: Sql
  private readonly held = new Set<string>()
  private chain: Promise<unknown> = Promise.resolve()
  private idleTimer?: NodeJS.Timeout

  constructor (private readonly url: string, private readonly log: FastifyBaseLogger, private readonly idleMs = RUN_LOCK_IDLE_MS) {}

  acquire (id: string): Promise<void> {
    return this.serial(async () => {
      this.cancelIdleClose()
      this.session ??= repo.openRunLockSession(this.url, () => this.relock())
      // A run id is new: its lock is free unless its hash collides with another live run's.
      if (!await repo.tryLockRun(this.session, id)) this.log.warn({ run_id: id }, 'run lock held elsewhere (hash collision); the run is built all the same')
      this.held.add(id)
    })
  }

  release (id: string): Promise<void> {
    return this.serial(async () => {
      this.held.delete(id)
      if (!this.session) return
      await repo.unlockRun(this.session, id).catch(() => {})
      if (this.held.size === 0) this.closeWhenIdle()
    })
  }

  close (): Promise<void> {
    return this.serial(async () => { this.cancelIdleClose(); this.held.clear(); await this.end() })
  }

  /** Whether the lock connection is open (tests). */
  get open (): boolean { return this.session !== undefined }

  private closeWhenIdle (): void {
    this.cancelIdleClose()
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined
      void this.serial(async () => { if (this.held.size === 0) await this.end() }).catch(() => {})
    }, this.idleMs)
    this.idleTimer.unref()
  }

  private cancelIdleClose (): void {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer)
    this.idleTimer = undefined
  }

  private relock (): void {
    if (this.held.size === 0) return
    void this.serial(async () => {
      if (!this.session) return
      for (const id of this.held) await repo.tryLockRun(this.session, id).catch(() => false)
      this.log.warn({ runs: this.held.size }, 'run lock connection was lost; locks taken again')
    }).catch(() => {})
  }

  private async end (): Promise<void> {
    const session = this.session
    this.session = undefined
    await session?.end({ timeout: 2 }).catch(() => {})
  }

  private serial<T> (fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn)
    this.chain = next.catch(() => {})
    return next
  }
}

export interface RebuiltDataset {
  run: PipelineRunView
  /** canonical column names: entity_id, event_time, pass-through columns, name@version per feature */
  columns: string[]
  extraColumns: string[]
  featureColumns: string[]
  /** the canonical header line */
  header: string
  batches: AsyncIterable<{ rows: TrainingRow[], lines: string }>
  /** SHA-256 of the canonical form of what was streamed; empty until every batch was read */
  fingerprint: () => string
}

interface BuildContext {
  contract?: ContractSpec
  maxDifferences: number
}

/** What a build streams: the canonical form, row by row, and the rows themselves. */
interface OpenedDataset {
  layout: CanonicalLayout
  resolved: ResolvedTrainingSet
  rows: AsyncIterable<TrainingRow[]>
}

/**
 * Pipeline runs: pin feature versions and the knowledge cutoff, store the entity spec, build
 * the training set from what was stored (the first build and every rebuild take the same path),
 * fingerprint its canonical form, validate it against the contract, and reproduce it later.
 */
export class PipelineService {
  private readonly locks: RunLocks
  private readonly queue: Array<{ run: RunRecord, ctx: BuildContext }> = []
  private readonly building = new Map<string, AbortController>()
  /**
   * The progress write in flight per run. A run's final UPDATE waits for it: on a TimescaleDB
   * hypertable an UPDATE that waited on another transaction's update of the same row can find
   * no row at all (seen under load), so the two must not overlap.
   */
  private readonly progressWrites = new Map<string, Promise<void>>()
  private readonly tasks = new Set<Promise<unknown>>()
  private active = 0
  private closed = false
  private sweepTimer?: NodeJS.Timeout

  constructor (
    private readonly deps: AppDeps,
    private readonly trainingSets: TrainingSetService,
    private readonly log: FastifyBaseLogger,
    private readonly opts: PipelineOptions,
  ) {
    this.locks = new RunLocks(deps.databaseUrl, log)
    if (opts.backgroundJobs) {
      this.sweepTimer = setInterval(() => {
        recoverAbandonedRuns(this.sql, this.log).catch((err: unknown) => this.log.error({ err }, 'abandoned pipeline run sweep failed'))
      }, 60_000)
      this.sweepTimer.unref()
    }
  }

  private get sql (): Sql { return this.deps.sql }

  /**
   * Creates a run; answers when it is built, or at once (background) when it is large.
   * `inlineRows`: the entity rows already read into columns (the HTTP route reads them from the
   * body's bytes, and body.entity_rows is then empty).
   */
  async create (body: CreateRunBody, inlineRows?: EntityRowColumns): Promise<{ run: PipelineRunView, background: boolean }> {
    this.assertOpen()
    rejectNul({ name: body.name, model: body.model, code_version: body.code_version, params: body.params })
    const t0 = performance.now()
    const request: TrainingSetRequest = {
      ...(body.features !== undefined ? { features: body.features } : {}),
      ...(body.contract !== undefined ? { contract: body.contract } : {}),
      ...(body.entity_rows !== undefined ? { entity_rows: body.entity_rows } : {}),
      ...(body.grid !== undefined ? { grid: body.grid } : {}),
      point_in_time: body.point_in_time ?? 'event',
    } as TrainingSetRequest
    // Validates the request, pins each feature to its definition and K to a sound "now".
    const resolved = await this.trainingSets.resolve(request, inlineRows)
    const features: PinnedFeature[] = resolved.features.map((d) => ({ name: d.name, version: d.version, id: d.id }))
    const contract = resolved.contract ? await this.contractSpec(resolved.contract, resolved) : undefined
    const entityRows = resolved.entityRows !== undefined ? await storedEntityRows(resolved.entityRows) : undefined
    const spec: EntitySpec = entityRows !== undefined
      ? { type: 'rows', row_count: entityRows.rows.length, extra_columns: [...resolved.extraColumns], min_event_time: entityRows.min, max_event_time: entityRows.max }
      : { type: 'grid', row_count: resolved.rowCount, grid: body.grid as Record<string, unknown> }
    const pinMs = performance.now() - t0

    const startedAt = Date.now()
    const id = newRunId(startedAt)
    const background = resolved.rowCount > this.opts.syncMaxRows
    await this.locks.acquire(id)
    let run: RunRecord
    try {
      run = await this.sql.begin(async (tx) => {
        const inserted = await repo.insertRun(tx, {
          id,
          started_at: new Date(startedAt),
          parent_id: null,
          kind: 'run',
          name: body.name,
          status: background ? 'queued' : 'running',
          features,
          contract_name: contract?.name ?? null,
          contract_version: contract?.version ?? null,
          point_in_time: body.point_in_time ?? 'event',
          cutoff: new Date(resolved.cutoffMs),
          entity_spec: spec,
          params: body.params ?? {},
          model: body.model ?? null,
          code_version: body.code_version ?? null,
          validation_mode: body.validation ?? 'fail',
          row_count: resolved.rowCount,
        })
        if (entityRows) {
          const slices = new EventLoopSlices()
          await repo.copyRunEntities(tx, id, entityRows.rows, async () => slices.pause())
        }
        return inserted
      }) as RunRecord
    } catch (err) {
      await this.locks.release(id)
      throw err
    }
    const ctx: BuildContext = { contract, maxDifferences: DEFAULT_MAX_DIFFERENCES }
    const timings = { pin_ms: round(pinMs), store_ms: round(performance.now() - t0 - pinMs) }
    if (background) {
      this.enqueue(run, ctx, timings)
      return { run: toView(run), background: true }
    }
    return { run: toView(await this.execute(run, ctx, timings)), background: false }
  }

  async get (id: string): Promise<PipelineRunView> {
    return toView(await this.find(id))
  }

  async list (q: ListRunsQuery): Promise<{ items: PipelineRunView[], next_cursor: string | null }> {
    const limit = q.limit ?? 100
    const from = q.from !== undefined ? timestampParam(q.from, 'from') : undefined
    const to = q.to !== undefined ? timestampParam(q.to, 'to') : undefined
    const rows = await repo.listRuns(this.sql, {
      name: q.name,
      status: q.status,
      model: q.model,
      kind: q.kind,
      parentId: q.parent_id,
      feature: q.feature,
      from: from !== undefined ? new Date(from) : undefined,
      to: to !== undefined ? new Date(to) : undefined,
      after: q.cursor !== undefined ? decodeCursor(q.cursor) : undefined,
      limit: limit + 1,
    })
    const page = rows.slice(0, limit)
    const last = page[page.length - 1]
    return {
      items: page.map(toView),
      next_cursor: rows.length > limit && last ? encodeCursor(last) : null,
    }
  }

  /**
   * Trainer feedback: metrics and artifacts are merged key by key (null removes a key); status
   * may cancel or fail a run still being built, or move a built run between succeeded and failed.
   */
  async patch (id: string, body: PatchRunBody): Promise<PipelineRunView> {
    rejectNul({ metrics: body.metrics, artifacts: body.artifacts, error: body.error })
    for (let attempt = 0; attempt < 5; attempt++) {
      const run = await this.find(id)
      const next = body.status
      if (next !== undefined && next !== run.status) {
        const building = run.status === 'queued' || run.status === 'running'
        if (building && next === 'succeeded') throw new ConflictError(`Run ${id} is ${run.status}: it succeeds when its dataset is built, it cannot be set to succeeded`)
        if (!building && next === 'cancelled') throw new ConflictError(`Run ${id} has already ended (${run.status}); only a queued or running run can be cancelled`)
        if (!building && run.status === 'cancelled') throw new ConflictError(`Run ${id} was cancelled; a cancelled run stays cancelled`)
        if (!building && next === 'succeeded' && run.fingerprint === null) throw new ConflictError(`Run ${id} has no dataset (it ${run.status} before it was built), so it cannot be set to succeeded`)
      }
      const metrics = splitPatch(body.metrics)
      const artifacts = splitPatch(body.artifacts)
      const updated = await repo.patchRun(this.sql, run.id, run.started_at, run.status, {
        status: next,
        metricsSet: metrics.set,
        metricsRemove: metrics.remove,
        artifactsSet: artifacts.set,
        artifactsRemove: artifacts.remove,
        error: next === 'cancelled'
          ? 'cancelled by request'
          : next === 'succeeded' && run.status !== 'succeeded'
            ? null
            : next === 'failed' && body.error === undefined && run.status !== 'failed' ? 'marked failed by request' : body.error,
      })
      if (updated) {
        if (next === 'cancelled' || (next === 'failed' && (run.status === 'queued' || run.status === 'running'))) this.building.get(run.id)?.abort()
        return toView(updated)
      }
      // the status changed under us (the build finished meanwhile): decide again
    }
    throw new ConflictError(`Run ${id} kept changing while it was being updated; retry`)
  }

  /**
   * Rebuilds a run's dataset for streaming: batches of rows with their canonical lines; the
   * fingerprint of what was streamed is known once the batches are consumed.
   */
  async openDataset (id: string): Promise<RebuiltDataset> {
    const run = await this.find(id)
    const opened = await this.open(this.datasetSource(run), {})
    const canonical = new CanonicalDataset(opened.layout)
    let fingerprint = ''
    async function * batches (): AsyncIterable<{ rows: TrainingRow[], lines: string }> {
      for await (const rows of opened.rows) {
        let lines = ''
        for (const row of rows) lines += canonical.add(row).line
        canonical.takeBlocks()
        yield { rows, lines }
      }
      fingerprint = canonical.finish().fingerprint
    }
    return {
      run: toView(run),
      columns: canonical.columns,
      extraColumns: opened.layout.extraColumns,
      featureColumns: canonical.columns.slice(2 + opened.layout.extraColumns.length),
      header: canonical.headerLine,
      batches: batches(),
      fingerprint: () => fingerprint,
    }
  }

  /** Rebuilds a run and compares; records a reproduction linked to the run. */
  async reproduce (id: string, q: ReproduceQuery): Promise<{ run: PipelineRunView, background: boolean }> {
    this.assertOpen()
    const parent = await this.find(id)
    const source = this.datasetSource(parent)
    const startedAt = Date.now()
    const reproId = newRunId(startedAt)
    const background = (source.row_count ?? 0) > this.opts.syncMaxRows
    await this.locks.acquire(reproId)
    let run: RunRecord
    try {
      run = await repo.insertRun(this.sql, {
        id: reproId,
        started_at: new Date(startedAt),
        parent_id: source.id,
        kind: 'reproduction',
        name: source.name,
        status: background ? 'queued' : 'running',
        features: source.features,
        contract_name: source.contract_name,
        contract_version: source.contract_version,
        point_in_time: source.point_in_time,
        cutoff: source.cutoff,
        entity_spec: source.entity_spec,
        params: source.params,
        model: source.model,
        code_version: source.code_version,
        validation_mode: source.validation_mode,
        row_count: source.row_count ?? 0,
      })
    } catch (err) {
      await this.locks.release(reproId)
      throw err
    }
    const ctx: BuildContext = { maxDifferences: q.max_differences ?? DEFAULT_MAX_DIFFERENCES }
    if (background) {
      this.enqueue(run, ctx, {})
      return { run: toView(run), background: true }
    }
    return { run: toView(await this.execute(run, ctx, {})), background: false }
  }

  async close (): Promise<void> {
    this.closed = true
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    for (const { run } of this.queue.splice(0, this.queue.length)) {
      await repo.finishRun(this.sql, run.id, run.started_at, { status: 'failed', error: SHUTDOWN_REASON }).catch(() => {})
      await this.locks.release(run.id)
    }
    for (const c of this.building.values()) c.abort(new Error(SHUTDOWN_REASON))
    // A build stops at its next batch; one stuck in a query is not waited for long: its run is
    // failed here, and its lock goes with the lock connection.
    const stopped = Promise.allSettled([...this.tasks])
    let timer: NodeJS.Timeout | undefined
    const late = await Promise.race([stopped.then(() => false), new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), 5_000) })])
    clearTimeout(timer)
    if (late) {
      for (const id of this.building.keys()) {
        const startedAt = runIdTime(id)
        if (startedAt) await repo.finishRun(this.sql, id, startedAt, { status: 'failed', error: SHUTDOWN_REASON }).catch(() => {})
      }
    }
    await this.locks.close()
  }

  // ---------------------------------------------------------------------------------------

  private assertOpen (): void {
    if (this.closed) throw new AppError(503, 'Service Unavailable', 'The service is shutting down', { headers: { 'retry-after': '5' } })
  }

  private async find (id: string): Promise<RunRecord> {
    const startedAt = runIdTime(id)
    const run = startedAt ? await repo.getRun(this.sql, id.toLowerCase(), startedAt) : undefined
    if (!run) throw new NotFoundError(`No pipeline run ${id}`)
    return run
  }

  /** A run whose dataset can be rebuilt: a run (not a reproduction) that was built. */
  private datasetSource (run: RunRecord): RunRecord {
    if (run.kind === 'reproduction') throw new ConflictError(`${run.id} is a reproduction of run ${run.parent_id ?? '?'}: ask the run itself`, { parent_id: run.parent_id })
    if (run.fingerprint === null) {
      throw new ConflictError(run.status === 'queued' || run.status === 'running'
        ? `Run ${run.id} is ${run.status}: its dataset is not built yet (progress ${run.rows_done} of ${run.row_count ?? '?'} rows)`
        : `Run ${run.id} ${run.status} before its dataset was built: there is nothing to rebuild`, { run_status: run.status })
    }
    return run
  }

  /** The contract the engine resolved, with its rules, against the pinned definitions. */
  private async contractSpec (ref: { name: string, version: number }, resolved: ResolvedTrainingSet): Promise<ContractSpec> {
    const contract = await findContractVersion(this.sql, ref.name, ref.version)
    if (!contract) throw new NotFoundError(`No contract ${ref.name}@${ref.version}`)
    const byName = new Map(resolved.features.map((d) => [d.name, d]))
    return buildContractSpec(contract, (r) => {
      const parsed = parseRef(r)
      const def = byName.get(parsed.name)
      return def && (parsed.version === undefined || parsed.version === def.version) ? def : undefined
    })
  }

  private enqueue (run: RunRecord, ctx: BuildContext, timings: Record<string, number>): void {
    const queuedAt = performance.now()
    this.queue.push({ run, ctx: { ...ctx } })
    const pump = (): void => {
      while (this.active < this.opts.concurrency && this.queue.length > 0 && !this.closed) {
        const next = this.queue.shift()!
        this.active++
        const task = this.execute(next.run, next.ctx, next.run.id === run.id ? { ...timings, queue_ms: round(performance.now() - queuedAt) } : {})
          .catch((err: unknown) => { this.log.error({ err, run_id: next.run.id }, 'background pipeline run failed') })
          .finally(() => { this.active--; this.tasks.delete(task); pump() })
        this.tasks.add(task)
      }
    }
    pump()
  }

  /** Builds a run (or a reproduction) to its end. The caller holds the run's lock; this releases it. */
  private async execute (run: RunRecord, ctx: BuildContext, timings: Record<string, number>): Promise<RunRecord> {
    const abort = new AbortController()
    this.building.set(run.id, abort)
    const t0 = performance.now()
    try {
      if (run.status === 'queued' && !await repo.markRunning(this.sql, run.id, run.started_at)) {
        return (await repo.getRun(this.sql, run.id, run.started_at)) ?? run
      }
      const finished = run.kind === 'reproduction'
        ? await this.executeReproduction(run, ctx, abort.signal, timings, t0)
        : await this.executeRun(run, ctx, abort.signal, timings, t0)
      return finished ?? (await repo.getRun(this.sql, run.id, run.started_at)) ?? run
    } catch (err) {
      if (run.kind === 'run') await repo.deleteDigestBlocks(this.sql, run.id).catch(() => {})
      const reason = err instanceof RunCancelled
        ? (abort.signal.reason instanceof Error ? abort.signal.reason.message : 'cancelled')
        : err instanceof AppError ? err.message : `the build failed: ${(err as Error).message}`
      if (!(err instanceof RunCancelled) && !(err instanceof AppError)) this.log.error({ err, run_id: run.id }, 'pipeline run build failed')
      await this.progressWrites.get(run.id)
      const failed = await repo.finishRun(this.sql, run.id, run.started_at, {
        status: 'failed', error: reason, timings: { ...timings, total_ms: round(performance.now() - t0) },
      }).catch(() => undefined)
      return failed ?? (await repo.getRun(this.sql, run.id, run.started_at).catch(() => undefined)) ?? run
    } finally {
      this.building.delete(run.id)
      await this.locks.release(run.id)
    }
  }

  private async executeRun (run: RunRecord, ctx: BuildContext, signal: AbortSignal, timings: Record<string, number>, t0: number): Promise<RunRecord | undefined> {
    const opened = await this.open(run, { signal, progress: this.progressReporter(run, signal) })
    const canonical = new CanonicalDataset(opened.layout)
    const validator = ctx.contract ? new ContractValidator(ctx.contract, { checkKeys: false }) : undefined
    const tValidate = { ms: 0 }
    let oldest = Number.POSITIVE_INFINITY
    for await (const batch of opened.rows) {
      if (signal.aborted) throw new RunCancelled()
      for (const row of batch) {
        canonical.add(row)
        for (const t of row.feature_event_times) if (t !== null && t < oldest) oldest = t
        if (validator) {
          const v0 = performance.now()
          validator.add(wideRow(row, opened.layout))
          tValidate.ms += performance.now() - v0
        }
      }
      await repo.insertDigestBlocks(this.sql, run.id, canonical.takeBlocks())
    }
    const done = canonical.finish()
    await repo.insertDigestBlocks(this.sql, run.id, done.blocks)
    const report = validator?.report()
    const violated = report !== undefined && !report.valid
    const failed = violated && run.validation_mode === 'fail'
    await this.progressWrites.get(run.id)
    const finished = await repo.finishRun(this.sql, run.id, run.started_at, {
      status: failed ? 'failed' : 'succeeded',
      row_count: done.rowCount,
      rows_done: done.rowCount,
      fingerprint: done.fingerprint,
      validation_report: report ? { ...report } as unknown as Record<string, unknown> : null,
      oldest_value_time: Number.isFinite(oldest) ? new Date(oldest) : null,
      error: failed ? `the dataset violates contract ${report.contract.name}@${report.contract.version}: ${violationSummary(report)}` : null,
      timings: { ...timings, build_ms: round(performance.now() - t0), ...(validator ? { validate_ms: round(tValidate.ms) } : {}) },
    })
    // cancelled or failed meanwhile: its digests go with it
    if (!finished) await repo.deleteDigestBlocks(this.sql, run.id)
    return finished
  }

  private async executeReproduction (run: RunRecord, ctx: BuildContext, signal: AbortSignal, timings: Record<string, number>, t0: number): Promise<RunRecord | undefined> {
    const parent = await repo.getRun(this.sql, run.parent_id!, runIdTime(run.parent_id!)!)
    if (!parent || parent.fingerprint === null) throw new ConflictError(`The parent run ${run.parent_id ?? '?'} has no dataset to compare with`)
    const opened = await this.open(parent, { signal, progress: this.progressReporter(run, signal) })
    const canonical = new CanonicalDataset(opened.layout)
    const columns = canonical.columns
    const differences: Array<Record<string, unknown>> = []
    let differentCells = 0
    const differentRows = new Set<number>()
    let blockRows: string[][] = []
    let expected: DigestBlock[] = []
    const compare = async (blocks: DigestBlock[]): Promise<void> => {
      for (const b of blocks) {
        if (expected.length === 0 || expected[0].block > b.block) {
          expected = (await repo.readDigestBlocks(this.sql, parent.id, b.block, 16))
        }
        while (expected.length > 0 && expected[0].block < b.block) expected.shift()
        const want = expected[0]?.block === b.block ? expected.shift()!.digests : Buffer.alloc(0)
        const firstRow = b.block * DIGEST_BLOCK_ROWS
        for (const d of diffDigestBlock(want, b.digests, columns.length, firstRow, Number.MAX_SAFE_INTEGER)) {
          differentCells++
          differentRows.add(d.row)
          if (differences.length < ctx.maxDifferences) {
            const cells = blockRows[d.row - firstRow]
            differences.push({
              row: d.row,
              entity_id: cells ? unquote(cells[0]) : null,
              event_time: cells ? cells[1] : null,
              column: d.column >= 0 ? columns[d.column] : null,
              rebuilt: cells && d.column >= 0 ? cells[d.column] : null,
              ...(d.column < 0 ? { detail: cells ? 'row missing from the original dataset' : 'row missing from the rebuilt dataset' } : {}),
            })
          }
        }
        blockRows = blockRows.slice(b.digests.length / (columns.length * 4))
      }
    }
    for await (const batch of opened.rows) {
      if (signal.aborted) throw new RunCancelled()
      for (const row of batch) {
        blockRows.push(canonical.add(row).cells)
        const ready = canonical.takeBlocks()
        if (ready.length > 0) await compare(ready)
      }
    }
    const done = canonical.finish()
    await compare(done.blocks)
    const expectedRows = parent.row_count ?? 0
    if (done.rowCount < expectedRows && differences.length < ctx.maxDifferences) {
      differences.push({ row: done.rowCount, entity_id: null, event_time: null, column: null, rebuilt: null, detail: `the rebuilt dataset has ${done.rowCount} rows, the original ${expectedRows}` })
    }
    const same = done.fingerprint === parent.fingerprint
    const retention = same ? null : await this.retentionLoss(parent)
    const verdict = same ? 'reproducible' : retention ? 'data_removed_by_retention' : 'not_reproducible'
    const detail = same
      ? `The rebuilt dataset is byte-identical to the original: ${done.rowCount} rows, fingerprint ${done.fingerprint}`
      : retention
        ? retention.detail
        : `The rebuilt dataset differs from the original in ${differentCells} cell(s) of ${differentRows.size} row(s)${done.rowCount !== expectedRows ? ` and has ${done.rowCount} rows instead of ${expectedRows}` : ''}; the stored values it was built from have changed`
    await this.progressWrites.get(run.id)
    return repo.finishRun(this.sql, run.id, run.started_at, {
      status: 'succeeded',
      row_count: done.rowCount,
      rows_done: done.rowCount,
      fingerprint: done.fingerprint,
      timings: { ...timings, build_ms: round(performance.now() - t0) },
      reproduction: {
        verdict,
        reproducible: same,
        detail,
        expected_fingerprint: parent.fingerprint,
        fingerprint: done.fingerprint,
        expected_row_count: expectedRows,
        row_count: done.rowCount,
        different_cells: same ? 0 : differentCells,
        different_rows: same ? 0 : differentRows.size,
        differences: same ? [] : differences,
        differences_truncated: !same && differentCells > differences.length,
        retention: retention?.facts ?? null,
      },
    })
  }

  /** What retention did to the data a run used (TimescaleDB mode; postgres mode keeps every value). */
  private async retentionLoss (parent: RunRecord): Promise<RetentionFinding | undefined> {
    if (this.deps.storageMode !== 'timescaledb' || !parent.oldest_value_time) return undefined
    const retention = this.deps.config.RETENTION
    const oldestChunk = await repo.oldestRetainedChunkStart(this.sql)
    return retentionFinding({
      oldestValueUsedMs: parent.oldest_value_time.getTime(),
      retention: retention ?? null,
      horizonMs: retention ? await repo.retentionHorizonMs(this.sql, retention) : null,
      oldestRetainedMs: oldestChunk ? oldestChunk.getTime() : null,
    })
  }

  /** Resolves a run's pinned spec again (same versions, same K, same entity rows) and streams it. */
  private async open (run: RunRecord, o: { signal?: AbortSignal, progress?: (rowsDone: number) => void }): Promise<OpenedDataset> {
    const spec = run.entity_spec
    const request = {
      features: run.features.map((f) => `${f.name}@${f.version}`),
      point_in_time: run.point_in_time,
      as_of_system_time: formatTimestamp(run.cutoff.getTime()),
      // the stored rows come in as columns (entity_rows is only the marker that there are rows)
      ...(spec.type === 'rows' ? { entity_rows: [] } : { grid: spec.grid }),
    } as unknown as TrainingSetRequest
    const inlineRows = spec.type === 'rows' ? await this.loadEntityRows(run.id, spec.extra_columns) : undefined
    const resolved = await this.trainingSets.resolve(request, inlineRows)
    const pinned = run.features.map((f) => f.id).join(',')
    if (resolved.features.map((d) => d.id).join(',') !== pinned) {
      throw new ConflictError(`The pinned feature versions of run ${run.id} no longer resolve to the same definitions`)
    }
    if (resolved.cutoffMs !== run.cutoff.getTime()) {
      throw new ConflictError(`The knowledge cutoff of run ${run.id} (${formatTimestamp(run.cutoff.getTime())}) could not be applied`)
    }
    const layout: CanonicalLayout = {
      extraColumns: spec.type === 'rows' ? spec.extra_columns : [],
      features: run.features.map((f) => ({ name: f.name, version: f.version })),
    }
    const rows = this.trainingSets.stream(resolved, o.progress ? { onProgress: o.progress } : undefined)
    return { layout, resolved, rows }
  }

  /**
   * The stored entity rows as the training-set engine reads them, as columns: pass-through
   * members in the original column order (as the request's rows had them).
   */
  private async loadEntityRows (runId: string, extraColumns: string[]): Promise<EntityRowColumns> {
    const cols = new EntityRowColumns()
    for await (const batch of repo.readRunEntities(this.sql, runId)) {
      for (const r of batch) {
        const row = cols.addParsed(r.entity_id, r.event_time, r.event_time)
        if (r.extra !== null) for (const c of extraColumns) if (Object.hasOwn(r.extra, c)) cols.setExtra(row, c, r.extra[c])
      }
    }
    return cols.finish()
  }

  /** Throttled progress: rows done go to the table at most every PROGRESS_EVERY_MS; a run cancelled elsewhere stops. */
  private progressReporter (run: RunRecord, signal: AbortSignal): (rowsDone: number) => void {
    let last = 0
    let inFlight = false
    const abort = this.building.get(run.id)
    return (rowsDone: number) => {
      const now = performance.now()
      if (inFlight || now - last < PROGRESS_EVERY_MS || signal.aborted) return
      last = now
      inFlight = true
      const write = repo.recordProgress(this.sql, run.id, run.started_at, rowsDone)
        .then((status) => { if (status !== undefined && status !== 'running') abort?.abort(new Error(`the run was ${status} while it was being built`)) })
        .catch((err: unknown) => this.log.warn({ err, run_id: run.id }, 'could not record pipeline run progress'))
        .finally(() => { inFlight = false; if (this.progressWrites.get(run.id) === write) this.progressWrites.delete(run.id) })
      this.progressWrites.set(run.id, write)
    }
  }
}

export interface RetentionFacts {
  /** event_time of the oldest stored value the run's dataset used */
  oldestValueUsedMs: number
  /** the RETENTION setting, if any */
  retention: string | null
  /** now - RETENTION */
  horizonMs: number | null
  /** start of the oldest feature_snapshots chunk still kept; null when none is left */
  oldestRetainedMs: number | null
}

export interface RetentionFinding { detail: string, facts: Record<string, unknown> }

/**
 * Whether retention removed values a run used. Retention drops whole chunks, oldest first, so
 * only the oldest value the dataset used matters: dropping older data cannot change any answer
 * (the chosen value is the latest candidate; values older than it never win). Lost when that
 * value is older than the retention horizon, or than the oldest chunk still kept.
 */
export function retentionFinding (f: RetentionFacts): RetentionFinding | undefined {
  const used = formatTimestamp(f.oldestValueUsedMs)
  const facts = {
    oldest_value_used: used,
    retention: f.retention,
    retention_horizon: f.horizonMs !== null ? formatTimestamp(f.horizonMs) : null,
    oldest_retained_chunk_start: f.oldestRetainedMs !== null ? formatTimestamp(f.oldestRetainedMs) : null,
  }
  if (f.horizonMs !== null && f.oldestValueUsedMs < f.horizonMs) {
    return { facts, detail: `Not reproducible because of retention: the run used values with event_time from ${used} on, older than the retention horizon ${facts.retention_horizon} (RETENTION=${f.retention ?? ''}); the retention policy drops those values, so the dataset can no longer be rebuilt exactly` }
  }
  if (f.oldestRetainedMs === null || f.oldestValueUsedMs < f.oldestRetainedMs) {
    return { facts, detail: `Not reproducible because of retention: the run used values with event_time from ${used} on, but feature_snapshots keeps data ${f.oldestRetainedMs === null ? 'from no time at all (every chunk was dropped)' : `from ${facts.oldest_retained_chunk_start} on only`}; the chunks holding the older values were dropped` }
  }
  return undefined
}

/** A training row as the contract validator reads it: columns by feature name and by name@version. */
function wideRow (row: TrainingRow, layout: CanonicalLayout): Record<string, unknown> {
  const out: Record<string, unknown> = { entity_id: row.entity_id, event_time: row.event_time }
  layout.features.forEach((f, i) => {
    out[f.name] = row.values[i]
    out[`${f.name}@${f.version}`] = row.values[i]
  })
  return out
}

function violationSummary (report: { summary: { invalid_rows: number, rows: number }, dataset_errors: Array<{ message: string }>, errors: Array<{ row: number, message: string }> }): string {
  const parts: string[] = []
  if (report.summary.invalid_rows > 0) parts.push(`${report.summary.invalid_rows} of ${report.summary.rows} rows break a rule (first: row ${report.errors[0]?.row}: ${report.errors[0]?.message})`)
  for (const e of report.dataset_errors) parts.push(e.message)
  return parts.join('; ')
}

/**
 * The inline entity rows as stored: entity_id, event_time in ms, the pass-through columns,
 * from the columns the training-set engine read and checked (so a rebuild reads the same
 * times). Strings that PostgreSQL's jsonb cannot hold (NUL characters) are refused here,
 * naming the row and field. Other requests get turns of the event loop meanwhile.
 */
async function storedEntityRows (cols: EntityRowColumns): Promise<{ rows: repo.StoredEntityRow[], min: string | null, max: string | null }> {
  const out: repo.StoredEntityRow[] = new Array(cols.count)
  const errors: FieldError[] = []
  const hasExtras = cols.extraNames.length > 0
  const slices = new EventLoopSlices()
  let min = Number.POSITIVE_INFINITY
  let max = Number.NEGATIVE_INFINITY
  for (let i = 0; i < cols.count; i++) {
    const ms = cols.timeAt(i)
    let extra: Record<string, unknown> | null = null
    if (hasExtras) {
      const members = cols.extraAt(i)
      for (const c in members) {
        if (hasNul(c) || hasNul(members[c])) errors.push({ path: `/body/entity_rows/${i}/${c}`, row: i, field: c, rule: 'no_nul_character', message: 'pass-through columns must not contain NUL (\\u0000) characters' })
        extra = members // a row without pass-through members stores null
      }
    }
    if (ms < min) min = ms
    if (ms > max) max = ms
    out[i] = { entity_id: cols.entityAt(i), event_time: ms, extra }
    if ((i & 4095) === 4095) await slices.pause()
  }
  if (errors.length > 0) throw new BadRequestError(`${errors.length} entity row(s) cannot be stored: ${errors.slice(0, 3).map((e) => `row ${e.row} ${e.field ?? ''}: ${e.message}`).join('; ')}`, errors.slice(0, 100))
  return { rows: out, min: Number.isFinite(min) ? formatTimestamp(min) : null, max: Number.isFinite(max) ? formatTimestamp(max) : null }
}

/** PostgreSQL text and jsonb cannot hold NUL characters: a 400 naming the field, not a 500. */
function rejectNul (fields: Record<string, unknown>): void {
  const bad = Object.entries(fields).filter(([, v]) => v !== undefined && hasNul(v)).map(([k]) => k)
  if (bad.length > 0) {
    throw new BadRequestError(`${bad.join(', ')} must not contain NUL (\\u0000) characters`, bad.map((k) => ({ path: `/body/${k}`, field: k, message: 'must not contain NUL (\\u0000) characters' })))
  }
}

function hasNul (v: unknown): boolean {
  if (typeof v === 'string') return v.includes('\u0000')
  if (Array.isArray(v)) return v.some(hasNul)
  if (v !== null && typeof v === 'object') return Object.entries(v).some(([k, x]) => k.includes('\u0000') || hasNul(x))
  return false
}

function splitPatch (patch: Record<string, unknown> | undefined): { set: Record<string, unknown>, remove: string[] } {
  const set: Record<string, unknown> = {}
  const remove: string[] = []
  for (const [k, v] of Object.entries(patch ?? {})) {
    if (v === null) remove.push(k)
    else set[k] = v
  }
  return { set, remove }
}

function unquote (cell: string): string {
  return cell.startsWith('"') ? cell.slice(1, -1).replace(/""/g, '"') : cell
}

function round (ms: number): number {
  return Math.round(ms * 10) / 10
}

function timestampParam (v: string | number, field: string): number {
  const t = parseTimestamp(v)
  if (!t.ok) throw new BadRequestError(`${field}: ${t.message}`, [{ path: `/querystring/${field}`, message: t.message }])
  return t.ms
}

function encodeCursor (r: RunRecord): string {
  return Buffer.from(JSON.stringify([r.started_at.getTime(), r.id])).toString('base64url')
}

function decodeCursor (c: string): { startedAt: Date, id: string } {
  try {
    const [ms, id] = JSON.parse(Buffer.from(c, 'base64url').toString('utf8')) as [unknown, unknown]
    if (typeof ms === 'number' && Number.isInteger(ms) && typeof id === 'string' && runIdTime(id)) return { startedAt: new Date(ms), id }
  } catch { /* fall through */ }
  throw new BadRequestError('cursor is not a cursor this service gave out', [{ path: '/querystring/cursor', rule: 'cursor', message: 'invalid cursor' }])
}

/** The API form of a run. */
export function toView (r: RunRecord): PipelineRunView {
  const total = r.row_count ?? 0
  const done = r.status === 'succeeded' ? total : Math.min(r.rows_done, total)
  return {
    id: r.id,
    kind: r.kind,
    parent_id: r.parent_id,
    name: r.name,
    status: r.status,
    started_at: formatTimestamp(r.started_at.getTime()),
    finished_at: r.finished_at ? formatTimestamp(r.finished_at.getTime()) : null,
    updated_at: formatTimestamp(r.updated_at.getTime()),
    features: r.features,
    contract: r.contract_name !== null ? { name: r.contract_name, version: r.contract_version ?? 0 } : null,
    point_in_time: r.point_in_time,
    as_of_system_time: formatTimestamp(r.cutoff.getTime()),
    entity_spec: r.entity_spec as PipelineRunView['entity_spec'],
    params: r.params,
    model: r.model,
    code_version: r.code_version,
    validation: r.validation_mode,
    validation_report: r.validation_report,
    row_count: r.row_count,
    progress: { rows_done: done, rows_total: total, fraction: total > 0 ? Math.round((done / total) * 10_000) / 10_000 : (r.status === 'succeeded' ? 1 : 0) },
    fingerprint: r.fingerprint,
    fingerprint_algorithm: 'sha256',
    canonical_format: CANONICAL_FORMAT,
    oldest_value_time: r.oldest_value_time ? formatTimestamp(r.oldest_value_time.getTime()) : null,
    metrics: r.metrics,
    artifacts: r.artifacts,
    error: r.error,
    timings: r.timings,
    reproduction: r.reproduction as PipelineRunView['reproduction'],
  }
}
