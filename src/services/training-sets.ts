import type { Sql } from '../../db/connection.js'
import { findDefinitionsByRefs } from '../../db/definitions.js'
import { soundCutoff } from '../../db/knowledge.js'
import { findContractVersion, findCurrentContract } from '../../db/contracts.js'
import { blockSavepoint, closePointInTimeSession, isLockTimeout, openPointInTimeSessions, readBlockCandidates, releaseBlockSavepoint, rollbackToBlockSavepoint, waitForLocksFreely, type BoundedReads, type ReservedSql } from '../../db/point-in-time.js'
import type { EntityRowInput, TrainingSetRequest } from '../../routes/schemas/training-sets.js'
import { BadRequestError, fieldOfPath, PayloadTooLargeError, UnprocessableError, type FieldError } from '../domain/errors.js'
import type { FeatureDefinition } from '../domain/feature.js'
import { formatRef, parseRef, refProblem, type FeatureRef } from '../domain/feature-ref.js'
import { entityIdProblem } from '../domain/names.js'
import { parseDuration, parseTimestamp } from '../domain/time.js'
import { EntityRowColumns, entityRowColumnsSteps } from '../domain/training-body.js'
import { EventLoopSlices, runInSlices } from './event-loop-slices.js'
import {
  BlockAnswers, PointInTimeMerge, entityBlockSteps, featureColumnNames, outputColumns,
  type AnsweredRows, type PointInTime,
} from '../domain/training-output.js'

export type { TrainingSetRequest, EntityRowInput }

/** A training set with everything pinned: feature versions, the cutoff K, the rows. */
export interface ResolvedTrainingSet {
  /** The joined feature versions, in column order. */
  features: FeatureDefinition[]
  /** All output columns, in order. */
  columns: string[]
  /** One column name per feature (name, or name@version when two versions of a name are joined). */
  featureColumns: string[]
  pointInTime: PointInTime
  /** The knowledge cutoff K, epoch ms (sound: no later write can be stamped at or before it). */
  cutoffMs: number
  /** Inline entity rows, as columns. */
  entityRows?: EntityRowColumns
  grid?: ResolvedGrid
  rowCount: number
  /** Pass-through columns of the inline rows, in first-seen order. */
  extraColumns: string[]
  includeMetadata: boolean
  /** The contract the features came from, when one was named. */
  contract?: { name: string, version: number }
}

export interface ResolvedGrid {
  entities: string[]
  fromMs: number
  toMs: number
  everyMs: number
  /** Points in time per entity. */
  steps: number
}

/** One output row; values are decoded API values (non-finite floats as "NaN", "Infinity", "-Infinity"). */
export interface TrainingRow {
  entity_id: string
  /** epoch ms */
  event_time: number
  extra: Record<string, unknown>
  values: Array<number | string | boolean | null>
  statuses: string[]
  feature_event_times: Array<number | null>
}

export interface StreamOptions {
  onProgress?: (rowsDone: number) => void
}

export interface TrainingSetOptions {
  maxRows: number
  blockRows: number
  /** Connections a join reads its blocks on, in parallel, on one snapshot (default 1). */
  readConnections?: number
  /** Read blocks with plan-time time bounds (db/point-in-time.ts); default: one direct COPY. */
  boundedReads?: BoundedReads
  /** Read the settled past of numeric features from series packs where they are current (db/series-packs.ts). */
  packs?: boolean
}

/** Rows per batch handed out by stream(). */
const BATCH_ROWS = 1024
/** At most this many row errors are reported. */
const MAX_ROW_ERRORS = 100
const EMPTY: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>

/**
 * Point-in-time training sets: resolve() validates and pins a request; stream() answers it
 * in input order, block by block, in memory proportional to the block size.
 */
export class TrainingSetService {
  constructor (private readonly sql: Sql, private readonly opts: TrainingSetOptions) {}

  /**
   * Validates everything (throws 4xx AppErrors), pins each feature to its definition and K
   * (soundCutoff), and expands nothing: a grid stays a grid. Never touches the values.
   * `inlineRows`: the entity rows already read into columns (the HTTP route reads them from
   * the body's bytes); then request.entity_rows only says that rows were given.
   */
  async resolve (request: TrainingSetRequest, inlineRows?: EntityRowColumns): Promise<ResolvedTrainingSet> {
    const hasContract = request.contract !== undefined
    requireFeaturesOrContract(request.features !== undefined, hasContract)
    const hasRows = request.entity_rows !== undefined
    const hasGrid = request.grid !== undefined
    if (hasRows === hasGrid) {
      throw new UnprocessableError('Give either entity_rows or grid, not both and not neither', [{ path: '/body/entity_rows', field: 'entity_rows', rule: 'one_of_entity_rows_grid', message: 'exactly one of entity_rows and grid is required' }])
    }

    let refs: string[]
    let refsPath: string
    let contract: { name: string, version: number } | undefined
    let entityType: string | undefined
    if (hasContract) {
      const found = await resolveContract(this.sql, request.contract!, '/body/contract')
      refs = found.refs
      refsPath = '/body/contract'
      contract = { name: found.name, version: found.version }
      entityType = found.entity
    } else {
      refs = request.features!
      refsPath = '/body/features'
    }
    const features = await resolveFeatures(this.sql, refs, refsPath)
    const seen = new Map<number, number>()
    const dupErrors: FieldError[] = []
    features.forEach((f, i) => {
      const first = seen.get(f.id)
      if (first !== undefined) dupErrors.push({ path: `${refsPath}/${i}`, field: fieldOfPath(refsPath), rule: 'duplicate_feature', message: `${refs[i]} is ${f.name}@${f.version}, already joined as ${refs[first]}` })
      else seen.set(f.id, i)
    })
    if (dupErrors.length > 0) throw new UnprocessableError(`A feature version is listed twice: ${dupErrors.map((e) => e.message).join('; ')}`, dupErrors)
    entityType ??= features[0].entity
    const odd = features.map((f, i) => ({ f, i })).filter(({ f }) => f.entity !== entityType)
    if (odd.length > 0) {
      const names = odd.map(({ f }) => `${f.name}@${f.version} (entity ${f.entity})`).join(', ')
      throw new UnprocessableError(`All features of a training set must share one entity type (${entityType}); these do not: ${names}`,
        odd.map(({ f, i }) => ({ path: `${refsPath}/${i}`, field: fieldOfPath(refsPath), rule: 'entity_type', message: `${f.name}@${f.version} has entity type ${f.entity}, not ${entityType}` })))
    }

    const pointInTime: PointInTime = request.point_in_time ?? 'event'
    const includeMetadata = request.include_metadata ?? false
    const featureColumns = featureColumnNames(features)

    let rowCount: number
    let extraColumns: string[] = []
    let entityRows: EntityRowColumns | undefined
    let grid: ResolvedGrid | undefined
    if (hasRows) {
      const count = inlineRows?.count ?? request.entity_rows!.length
      if (count > this.opts.maxRows) throw new PayloadTooLargeError(`${count} entity rows is more than the ${this.opts.maxRows} a training set may have`)
      entityRows = inlineRows ?? await runInSlices(entityRowColumnsSteps(request.entity_rows!))
      checkEntityRows(entityRows)
      extraColumns = [...entityRows.extraNames]
      rowCount = count
    } else {
      grid = resolveGrid(request.grid!, this.opts.maxRows)
      rowCount = grid.entities.length * grid.steps
    }
    const columns = outputColumns(extraColumns, featureColumns, includeMetadata)
    const clash = extraColumns.filter((c) => columns.indexOf(c) !== columns.lastIndexOf(c))
    if (clash.length > 0) {
      throw new UnprocessableError(`Pass-through columns of the entity rows clash with output columns: ${clash.join(', ')}; rename them`,
        clash.map((c) => ({ path: '/body/entity_rows', field: c, rule: 'duplicate_column', message: `column ${c} would appear twice in the output` })))
    }

    const cutoffMs = await resolveCutoff(this.sql, request.as_of_system_time)
    return {
      features,
      columns,
      featureColumns,
      pointInTime,
      cutoffMs,
      ...(hasRows ? { entityRows } : { grid }),
      rowCount,
      extraColumns,
      includeMetadata,
      ...(contract ? { contract } : {}),
    }
  }

  /** Batches of rows in input order (the grid's order: entity by entity, then time). */
  async * stream (resolved: ResolvedTrainingSet, opts: StreamOptions = {}): AsyncIterable<TrainingRow[]> {
    let done = 0
    // builds and reproductions consume this in the background: other requests get turns
    const slices = new EventLoopSlices()
    const nFeatures = resolved.features.length
    for await (const block of this.answeredBlocks(resolved)) {
      const { answers, entityAt, extraAt } = block
      const size = answers.block.size
      for (let from = 0; from < size; from += BATCH_ROWS) {
        const to = Math.min(size, from + BATCH_ROWS)
        const batch: TrainingRow[] = new Array(to - from)
        for (let r = from; r < to; r++) {
          const values = new Array<number | string | boolean | null>(nFeatures)
          const statuses = new Array<string>(nFeatures)
          const times = new Array<number | null>(nFeatures)
          for (let f = 0; f < nFeatures; f++) {
            values[f] = answers.value(r, f)
            statuses[f] = answers.statusName(r, f)
            times[f] = answers.answerTime(r, f)
          }
          batch[r - from] = { entity_id: entityAt(r), event_time: answers.block.t[r], extra: extraAt(r), values, statuses, feature_event_times: times }
        }
        done += batch.length
        yield batch
        opts.onProgress?.(done)
        await slices.pause()
      }
    }
  }

  /**
   * The same rows as stream(), as answered blocks (columns, no row objects): what the HTTP
   * route renders from. Blocks come in input order.
   */
  async * answeredBlocks (resolved: ResolvedTrainingSet): AsyncIterable<AnsweredRows> {
    const source = rowSource(resolved)
    for await (const { answers, offset } of joinPointInTime(this.sql, resolved.features, source, resolved.pointInTime, resolved.cutoffMs, this.opts.blockRows, this.opts.readConnections, { boundedReads: this.opts.boundedReads, packs: this.opts.packs })) {
      yield { answers, entityAt: (r) => source.entityAt(offset + r), extraAt: (r) => source.extraAt(offset + r) }
    }
  }
}

/** Where the rows of a join come from: inline rows or a grid, by index. */
export interface RowSource {
  count: number
  entityAt: (i: number) => string
  timeAt: (i: number) => number
  extraAt: (i: number) => Record<string, unknown>
}

function rowSource (r: ResolvedTrainingSet): RowSource {
  if (r.grid) {
    const g = r.grid
    return {
      count: r.rowCount,
      entityAt: (i) => g.entities[Math.floor(i / g.steps)],
      timeAt: (i) => g.fromMs + (i % g.steps) * g.everyMs,
      extraAt: () => EMPTY,
    }
  }
  const rows = r.entityRows!
  return {
    count: rows.count,
    entityAt: (i) => rows.entityAt(i),
    timeAt: (i) => rows.timeAt(i),
    extraAt: rows.extraNames.length === 0 ? () => EMPTY : (i) => rows.extraAt(i),
  }
}

/** The first block of a join has blockRows / this many rows (rounded up). */
const FIRST_BLOCK_DIVISOR = 8

/** A block's session was retired, or the block was queued on one (see joinPointInTime). */
class SessionRetired extends Error {}

export interface JoinOptions {
  /** Read blocks with plan-time time bounds (db/point-in-time.ts); default: one direct COPY. */
  boundedReads?: BoundedReads
  /** Read from series packs where they are current (db/point-in-time.ts PairsSpec.packs). */
  packs?: boolean
  /** Tests: called around each block's read (to stage lock queues between the sessions). */
  beforeRead?: (block: number) => Promise<void>
  afterRead?: (block: number) => void
}

/**
 * The point-in-time join: answers `source` block by block on `connections` sessions sharing
 * one snapshot (db/point-in-time.ts openPointInTimeSessions; fewer when the pool is busy).
 * Blocks 0 .. n-1 start on the n sessions; once block b is consumed, the next block not yet
 * started goes to the session that read b. So while the caller consumes block b the next
 * blocks are being read, at most n + 1 blocks are held, and blocks are yielded in input order.
 *
 * A session whose read gave up waiting for a lock (JOIN_LOCK_TIMEOUT_MS: the wait may be part
 * of a cycle through another session of the join) is rolled back, which releases its locks,
 * and its block is read again on a remaining session. The last session waits for locks as long
 * as it takes; a wait of its own that began before it was the last and ran out is undone to the
 * start of its block (a savepoint) and waited out. Every session reads the same snapshot, so
 * the answers do not change.
 */
export async function * joinPointInTime (sql: Sql, features: FeatureDefinition[], source: RowSource, mode: PointInTime, cutoffMs: number, blockRows: number, connections = 1, opts: JoinOptions = {}): AsyncIterable<{ answers: BlockAnswers, offset: number }> {
  if (source.count === 0) return
  // the first block an eighth of the others: its answer (and the render thread's work) starts
  // sooner, while the later blocks keep the per-block costs low (~0.06 s less per 1M inline rows)
  const firstRows = Math.max(1, Math.ceil(blockRows / FIRST_BLOCK_DIVISOR))
  const startOf = (b: number): number => (b === 0 ? 0 : Math.min(source.count, firstRows + (b - 1) * blockRows))
  const blocks = source.count <= firstRows ? 1 : 1 + Math.ceil((source.count - firstRows) / blockRows)
  let live = await openPointInTimeSessions(sql, Math.max(1, Math.min(connections, blocks)))
  // sessions without the join's lock timeout: a join's only session never had it
  const unbounded = new Set(live.length === 1 ? live : [])
  const reads = new Map<number, { session: ReservedSql, answers: Promise<BlockAnswers> }>()
  // a session reads one block at a time (a read is several statements on its temporary table):
  // a block given to a session that is still reading waits for the read before it
  const busy = new Map<ReservedSql, Promise<unknown>>()
  const read = async (b: number, session: ReservedSql): Promise<BlockAnswers> =>
    answerBlock(session, features, source, mode, cutoffMs, startOf(b), startOf(b + 1), opts.boundedReads, opts.packs === true)
  const guardedRead = async (b: number, session: ReservedSql): Promise<BlockAnswers> => {
    if (live.length === 1 && !unbounded.has(session)) {
      await waitForLocksFreely(session)
      unbounded.add(session)
    }
    if (unbounded.has(session)) return read(b, session)
    await blockSavepoint(session)
    let answers: BlockAnswers
    try {
      answers = await read(b, session)
    } catch (err) {
      if (!isLockTimeout(err)) throw err
      if (live.length > 1) {
        // the wait may close a cycle through another session: this session is rolled back
        // whole (releasing its locks) and its block read elsewhere (`live` changes before any
        // await, so of two sessions failing at once exactly one is retired)
        live = live.filter((s) => s !== session)
        await closePointInTimeSession(session)
        throw new SessionRetired()
      }
      // the join's last session (the others were retired meanwhile): alone it closes no cycle
      await rollbackToBlockSavepoint(session)
      await waitForLocksFreely(session)
      unbounded.add(session)
      return read(b, session)
    }
    await releaseBlockSavepoint(session)
    return answers
  }
  let next = 0
  const start = (b: number, session: ReservedSql): void => {
    const before = busy.get(session)
    const answers = (async () => {
      await before?.catch(() => {})
      if (!live.includes(session)) throw new SessionRetired()
      await opts.beforeRead?.(b)
      const a = await guardedRead(b, session)
      opts.afterRead?.(b)
      return a
    })()
    answers.catch(() => {}) // awaited below; this only keeps an early failure from being "unhandled"
    busy.set(session, answers)
    reads.set(b, { session, answers })
  }
  try {
    for (const session of live) if (next < blocks) start(next++, session)
    for (let b = 0; b < blocks; b++) {
      let answers: BlockAnswers | undefined
      while (answers === undefined) {
        try {
          answers = await reads.get(b)!.answers
        } catch (err) {
          // its session was retired (by this read or one before it): read it on one still live
          if (!(err instanceof SessionRetired)) throw err
          start(b, live[0])
        }
      }
      const { session } = reads.get(b)!
      reads.delete(b)
      if (next < blocks) start(next++, session) // on the session block b used
      yield { answers, offset: startOf(b) }
    }
  } finally {
    // after a failure or an early return: let the reads still running end, then roll back
    await Promise.all([...reads.values()].map(async (r) => r.answers.catch(() => {})))
    await Promise.all(live.map(async (s) => closePointInTimeSession(s)))
  }
}

async function answerBlock (session: ReservedSql, features: FeatureDefinition[], source: RowSource, mode: PointInTime, cutoffMs: number, from: number, to: number, bounded: BoundedReads | undefined, packs: boolean): Promise<BlockAnswers> {
  const block = await runInSlices(entityBlockSteps(to - from, (i) => source.entityAt(from + i), (i) => source.timeAt(from + i)))
  const answers = new BlockAnswers(block, features)
  const merge = new PointInTimeMerge(answers, mode)
  await readBlockCandidates(session, {
    mode,
    cutoffMs,
    featureIds: features.map((f) => f.id),
    textFeatures: features.map((f) => f.dtype === 'string'),
    sharedEntityIds: features.map((f) => f.shared_entity_id),
    entityIds: block.entityIds,
    minT: block.minT,
    maxT: block.maxT,
    ...(bounded ? { bounded } : {}),
    packs,
  }, (pair, eventMs, ingestedUs, num, text) => merge.push(pair, eventMs, ingestedUs, num, text), new EventLoopSlices(),
  (pair, dv, ev, ing, val, n, minT, maxT, cutoffUs) => merge.pushPacked(pair, dv, ev, ing, val, n, minT, maxT, cutoffUs))
  merge.finish()
  return answers
}

/** A contract's features, as the training sets, online reads and retrievals that name it use them. */
export interface ResolvedContract {
  name: string
  version: number
  /** The entity type of its features. */
  entity: string
  /** Its features' references (`name@version` when pinned, else `name`), in the contract's order. */
  refs: string[]
}

/**
 * Exactly one of `features` and `contract` (training sets, retrievals, online reads): else a 422
 * for a body, a 400 for a query string.
 */
export function requireFeaturesOrContract (hasFeatures: boolean, hasContract: boolean, inQuery = false): void {
  if (hasFeatures !== hasContract) return
  const errors = [{ path: inQuery ? '/querystring/features' : '/body/features', field: 'features', rule: 'one_of_features_contract', message: 'exactly one of features and contract is required' }]
  if (inQuery) throw new BadRequestError('Give either features (comma-separated references) or contract, not both and not neither', errors)
  throw new UnprocessableError('Give either features (a list of references) or contract (a contract name), not both and not neither', errors)
}

/** A contract's references, when it has at most `max` features (the limit of a list of them in `read`, e.g. "an online read"); else 422 at `path`. */
export function contractRefsWithin (c: { name: string, version: number, refs: string[] }, max: number, read: string, path: string): string[] {
  if (c.refs.length <= max) return c.refs
  throw new UnprocessableError(`Contract '${c.name}@${c.version}' has ${c.refs.length} features, more than the ${max} ${read} may have; list the features needed instead`,
    [{ path, field: 'contract', rule: 'too_many_features', message: `${c.refs.length} features, at most ${max}` }])
}

/**
 * A contract reference: `name` is the contract's latest active version, else its latest (as the
 * registry reads it); `name@version` that version. A malformed reference is 400; a contract that
 * does not exist, or requires no features, 422 at `path`.
 */
export async function resolveContract (sql: Sql, ref: string, path: string): Promise<ResolvedContract> {
  const c = parseRef(ref, path)
  const found = c.version === undefined ? await findCurrentContract(sql, c.name) : await findContractVersion(sql, c.name, c.version)
  const field = fieldOfPath(path)
  if (!found) throw new UnprocessableError(`Contract '${formatRef(c)}' does not exist`, [{ path, field, rule: 'unknown_contract', message: 'unknown contract' }])
  if (found.features.length === 0) throw new UnprocessableError(`Contract '${found.name}@${found.version}' requires no features`, [{ path, field, rule: 'empty_contract', message: 'contract has no features' }])
  return { name: found.name, version: found.version, entity: found.entity, refs: found.features.map((f) => f.feature) }
}

/**
 * Resolves references to definitions, in order. Malformed references are 400; references
 * that name nothing are 422, all of them at once.
 */
export async function resolveFeatures (sql: Sql, refs: string[], path: string): Promise<FeatureDefinition[]> {
  const bad: FieldError[] = []
  refs.forEach((r, i) => {
    const p = refProblem(r)
    if (p) bad.push({ path: `${path}/${i}`, field: fieldOfPath(path), rule: 'ref', message: `'${r}': ${p}` })
  })
  if (bad.length > 0) throw new BadRequestError(`Invalid feature references: ${bad.map((e) => e.message).join('; ')}`, bad)
  const parsed: FeatureRef[] = refs.map((r) => parseRef(r))
  const found = await findDefinitionsByRefs(sql, parsed)
  const missing: FieldError[] = []
  const out: FeatureDefinition[] = []
  parsed.forEach((ref, i) => {
    const def = found.get(formatRef(ref))
    if (def) out.push(def)
    else missing.push({ path: `${path}/${i}`, field: fieldOfPath(path), rule: 'unknown_feature', message: ref.version === undefined ? `unknown feature ${ref.name} (or it has no active version)` : `unknown feature version ${formatRef(ref)}` })
  })
  if (missing.length > 0) throw new UnprocessableError(`Unknown features: ${missing.map((m) => m.message).join('; ')}`, missing)
  return out
}

/** K for a request: a sound cutoff, the requested one when earlier. */
export async function resolveCutoff (sql: Sql, requested: string | number | undefined, path = '/body/as_of_system_time'): Promise<number> {
  if (requested === undefined) return soundCutoff(sql)
  const t = parseTimestamp(requested)
  if (!t.ok) throw new UnprocessableError(`as_of_system_time: ${t.message}`, [{ path, field: fieldOfPath(path), rule: 'timestamp', message: t.message }])
  return soundCutoff(sql, t.ms)
}

/** 422 for entity rows whose event_time did not parse or whose entity id is not allowed (the first 100, in row order). */
function checkEntityRows (rows: EntityRowColumns): void {
  // each distinct entity id is checked once
  const idProblems = rows.entityIds.map((id) => (isPlainEntityId(id) ? undefined : entityIdProblem(id)))
  const anyIdProblem = idProblems.some((p) => p !== undefined)
  if (rows.badTimes.size === 0 && !anyIdProblem) return
  const errors: FieldError[] = []
  for (let i = 0; i < rows.count && errors.length < MAX_ROW_ERRORS; i++) {
    if (rows.badTimes.has(i)) {
      const t = parseTimestamp(rows.badTimes.get(i))
      if (!t.ok) errors.push({ path: `/body/entity_rows/${i}/event_time`, row: i, field: 'event_time', rule: 'timestamp', message: t.message })
    }
    const idProblem = anyIdProblem ? idProblems[rows.entityIndexAt(i)] : undefined
    if (idProblem && errors.length < MAX_ROW_ERRORS) errors.push({ path: `/body/entity_rows/${i}/entity_id`, row: i, field: 'entity_id', rule: 'entity_id', message: idProblem })
  }
  if (errors.length === 0) return
  throw new UnprocessableError(`${errors.length === MAX_ROW_ERRORS ? 'At least ' : ''}${errors.length} entity row${errors.length === 1 ? ' is' : 's are'} invalid: ${errors.slice(0, 3).map((e) => `row ${e.row} ${e.field}: ${e.message}`).join('; ')}`, errors)
}

/** 1 to 256 printable ASCII characters: valid without the full (Unicode) check of entityIdProblem. */
function isPlainEntityId (id: unknown): boolean {
  if (typeof id !== 'string' || id.length === 0 || id.length > 256) return false
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i)
    if (c < 0x20 || c > 0x7e) return false
  }
  return true
}

function resolveGrid (grid: NonNullable<TrainingSetRequest['grid']>, maxRows: number): ResolvedGrid {
  const errors: FieldError[] = []
  const from = parseTimestamp(grid.from)
  if (!from.ok) errors.push({ path: '/body/grid/from', field: 'from', rule: 'timestamp', message: from.message })
  const to = parseTimestamp(grid.to)
  if (!to.ok) errors.push({ path: '/body/grid/to', field: 'to', rule: 'timestamp', message: to.message })
  const every = parseDuration(grid.every)
  if (!every.ok) errors.push({ path: '/body/grid/every', field: 'every', rule: 'duration', message: every.message })
  grid.entities.forEach((id, i) => {
    const p = entityIdProblem(id)
    if (p && errors.length < MAX_ROW_ERRORS) errors.push({ path: `/body/grid/entities/${i}`, field: 'entities', rule: 'entity_id', message: p })
  })
  if (from.ok && to.ok && from.ms > to.ms) errors.push({ path: '/body/grid/to', field: 'to', rule: 'range', message: 'must not be earlier than from' })
  if (errors.length > 0 || !from.ok || !to.ok || !every.ok) {
    throw new UnprocessableError(`The grid is invalid: ${errors.map((e) => `${e.path} ${e.message}`).slice(0, 3).join('; ')}`, errors)
  }
  const steps = Math.floor((to.ms - from.ms) / every.ms) + 1
  const rows = steps * grid.entities.length
  if (rows > maxRows) {
    throw new PayloadTooLargeError(`The grid has ${grid.entities.length} entities x ${steps} points in time = ${rows} rows, more than the ${maxRows} a training set may have; narrow from/to, widen every, or split the request`)
  }
  return { entities: grid.entities, fromMs: from.ms, toMs: to.ms, everyMs: every.ms, steps }
}
