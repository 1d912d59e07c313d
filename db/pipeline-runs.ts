import type { Writable } from 'node:stream'
import postgres from 'postgres'
import type { Sql, TxSql } from './connection.js'
import { copyText } from './values.js'

export type RunStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled'
export type RunKind = 'run' | 'reproduction'

export interface PinnedFeature { name: string, version: number, id: number }

export type EntitySpec =
  | { type: 'rows', row_count: number, extra_columns: string[], min_event_time: string | null, max_event_time: string | null }
  | { type: 'grid', row_count: number, grid: Record<string, unknown> }

/** A row of pipeline_runs as the service sees it. */
export interface RunRecord {
  id: string
  started_at: Date
  parent_id: string | null
  kind: RunKind
  name: string
  status: RunStatus
  finished_at: Date | null
  updated_at: Date
  features: PinnedFeature[]
  contract_name: string | null
  contract_version: number | null
  point_in_time: 'event' | 'known'
  cutoff: Date
  entity_spec: EntitySpec
  params: Record<string, unknown>
  model: string | null
  code_version: string | null
  validation_mode: 'fail' | 'warn'
  validation_report: Record<string, unknown> | null
  row_count: number | null
  rows_done: number
  fingerprint: string | null
  oldest_value_time: Date | null
  metrics: Record<string, unknown>
  artifacts: Record<string, unknown>
  error: string | null
  timings: Record<string, number>
  reproduction: Record<string, unknown> | null
}

export type NewRun = Pick<RunRecord, 'id' | 'started_at' | 'parent_id' | 'kind' | 'name' | 'status' | 'features' | 'contract_name' | 'contract_version'
| 'point_in_time' | 'cutoff' | 'entity_spec' | 'params' | 'model' | 'code_version' | 'validation_mode'> & { row_count: number }

/** Advisory lock class of running runs: a run is locked by the process building it. */
const RUN_LOCK_CLASS = 7_305_005

export async function insertRun (sql: Sql | TxSql, run: NewRun): Promise<RunRecord> {
  const [row] = await sql<RunRecord[]>`
    INSERT INTO pipeline_runs (id, started_at, parent_id, kind, name, status, features, contract_name, contract_version,
                               point_in_time, cutoff, entity_spec, params, model, code_version, validation_mode, row_count)
    VALUES (${run.id}, ${run.started_at}, ${run.parent_id}, ${run.kind}, ${run.name}, ${run.status}, ${sql.json(run.features as never)},
            ${run.contract_name}, ${run.contract_version}, ${run.point_in_time}, ${run.cutoff}, ${sql.json(run.entity_spec as never)},
            ${sql.json(run.params as never)}, ${run.model}, ${run.code_version}, ${run.validation_mode}, ${run.row_count})
    RETURNING *`
  return row
}

export interface StoredEntityRow {
  entity_id: string
  /** epoch milliseconds */
  event_time: number
  /** pass-through columns; null when the row has none */
  extra: Record<string, unknown> | null
}

/**
 * Streams the inline entity rows of a run into pipeline_run_entities with COPY, in order;
 * `pause` (if any) after each chunk, e.g. to give other requests a turn of the event loop.
 */
export async function copyRunEntities (tx: TxSql, runId: string, rows: Iterable<StoredEntityRow>, pause?: () => Promise<void>): Promise<number> {
  const stream: Writable = await tx`COPY pipeline_run_entities (run_id, ord, entity_id, event_time, extra) FROM STDIN`.writable()
  let failure: Error | undefined
  stream.on('error', (err) => { failure = err })
  let ord = 0
  let buffer: string[] = []
  let size = 0
  const flush = async (): Promise<void> => {
    if (failure) throw failure
    const chunk = buffer.join('')
    buffer = []
    size = 0
    if (!stream.write(chunk)) await new Promise<void>((resolve, reject) => { stream.once('drain', resolve); stream.once('error', reject) })
    await pause?.()
  }
  for (const r of rows) {
    const line = `${runId}\t${ord++}\t${copyText(r.entity_id)}\t${new Date(r.event_time).toISOString()}\t${r.extra === null ? '\\N' : copyText(JSON.stringify(r.extra))}\n`
    buffer.push(line)
    size += line.length
    if (size >= 256 * 1024) await flush()
  }
  await flush()
  await new Promise<void>((resolve, reject) => {
    if (failure) return reject(failure)
    stream.once('error', reject)
    stream.end(() => resolve())
  })
  if (failure) throw failure
  return ord
}

/** The stored entity rows of a run, in order, in batches (a cursor: constant memory on the way out). */
export async function * readRunEntities (sql: Sql, runId: string, batchSize = 10_000): AsyncIterable<StoredEntityRow[]> {
  const cursor = sql<{ entity_id: string, t: number, extra: Record<string, unknown> | null }[]>`
    SELECT entity_id, (extract(epoch FROM event_time) * 1000)::int8 AS t, extra
    FROM pipeline_run_entities WHERE run_id = ${runId} ORDER BY ord`.cursor(batchSize)
  for await (const rows of cursor) yield rows.map((r) => ({ entity_id: r.entity_id, event_time: r.t, extra: r.extra }))
}

export async function getRun (sql: Sql, id: string, startedAt: Date): Promise<RunRecord | undefined> {
  const [row] = await sql<RunRecord[]>`SELECT * FROM pipeline_runs WHERE id = ${id} AND started_at = ${startedAt}`
  return row
}

export async function markRunning (sql: Sql, id: string, startedAt: Date): Promise<boolean> {
  const res = await sql`UPDATE pipeline_runs SET status = 'running', updated_at = now()
                        WHERE id = ${id} AND started_at = ${startedAt} AND status = 'queued'`
  return res.count === 1
}

/** Records progress; returns the run's status (anything but 'running' tells the builder to stop). */
export async function recordProgress (sql: Sql, id: string, startedAt: Date, rowsDone: number): Promise<RunStatus | undefined> {
  const [row] = await sql<{ status: RunStatus }[]>`
    WITH progress AS (
      UPDATE pipeline_runs SET rows_done = GREATEST(rows_done, ${rowsDone}), updated_at = now()
      WHERE id = ${id} AND started_at = ${startedAt} AND status = 'running'
    )
    SELECT status FROM pipeline_runs WHERE id = ${id} AND started_at = ${startedAt}`
  return row?.status
}

export interface RunOutcome {
  status: 'succeeded' | 'failed' | 'cancelled'
  row_count?: number | null
  rows_done?: number
  fingerprint?: string | null
  validation_report?: Record<string, unknown> | null
  oldest_value_time?: Date | null
  error?: string | null
  timings?: Record<string, number>
  reproduction?: Record<string, unknown> | null
}

/** Ends a queued or running run; undefined when it had already ended (e.g. cancelled meanwhile). */
export async function finishRun (sql: Sql, id: string, startedAt: Date, o: RunOutcome): Promise<RunRecord | undefined> {
  // A second try when the first finds no row: on a TimescaleDB hypertable an UPDATE that waited
  // for another transaction's update of the same row (a PATCH of metrics) can skip the row; the
  // retry reads the committed version, and the status condition still guards against a run that
  // really ended meanwhile.
  return await finishRunOnce(sql, id, startedAt, o) ?? await finishRunOnce(sql, id, startedAt, o)
}

async function finishRunOnce (sql: Sql, id: string, startedAt: Date, o: RunOutcome): Promise<RunRecord | undefined> {
  const [row] = await sql<RunRecord[]>`
    UPDATE pipeline_runs SET
      status = ${o.status}, finished_at = now(), updated_at = now(),
      row_count = COALESCE(${o.row_count ?? null}::int8, row_count),
      rows_done = COALESCE(${o.rows_done ?? null}::int8, rows_done),
      fingerprint = ${o.fingerprint ?? null},
      validation_report = ${o.validation_report ? sql.json(o.validation_report as never) : null},
      oldest_value_time = ${o.oldest_value_time ?? null},
      error = ${o.error ?? null},
      timings = ${sql.json((o.timings ?? {}) as never)},
      reproduction = ${o.reproduction ? sql.json(o.reproduction as never) : null}
    WHERE id = ${id} AND started_at = ${startedAt} AND status IN ('queued', 'running')
    RETURNING *`
  return row
}

export interface RunPatch {
  status?: RunStatus
  /** top-level keys to set, and to remove */
  metricsSet: Record<string, unknown>
  metricsRemove: string[]
  artifactsSet: Record<string, unknown>
  artifactsRemove: string[]
  /** the new error text; null clears it (a run set back to succeeded) */
  error?: string | null
}

/** Applies a PATCH when the run is still in the status the caller checked (optimistic). */
export async function patchRun (sql: Sql, id: string, startedAt: Date, expectedStatus: RunStatus, p: RunPatch): Promise<RunRecord | undefined> {
  const ending = p.status !== undefined && p.status !== expectedStatus && ['failed', 'cancelled'].includes(p.status) && ['queued', 'running'].includes(expectedStatus)
  const [row] = await sql<RunRecord[]>`
    UPDATE pipeline_runs SET
      status = ${p.status ?? expectedStatus},
      metrics = (metrics || ${sql.json(p.metricsSet as never)}) - ${p.metricsRemove}::text[],
      artifacts = (artifacts || ${sql.json(p.artifactsSet as never)}) - ${p.artifactsRemove}::text[],
      error = CASE WHEN ${p.error === null} THEN NULL ELSE COALESCE(${p.error ?? null}, error) END,
      finished_at = CASE WHEN ${ending} THEN now() ELSE finished_at END,
      updated_at = now()
    WHERE id = ${id} AND started_at = ${startedAt} AND status = ${expectedStatus}
    RETURNING *`
  return row
}

export interface RunFilter {
  name?: string
  status?: RunStatus
  model?: string
  kind?: RunKind
  parentId?: string
  feature?: string
  from?: Date
  to?: Date
  /** keyset: runs strictly after this one in (started_at DESC, id DESC) order */
  after?: { startedAt: Date, id: string }
  limit: number
}

export async function listRuns (sql: Sql, f: RunFilter): Promise<RunRecord[]> {
  const none = sql``
  return sql<RunRecord[]>`
    SELECT * FROM pipeline_runs
    WHERE true
      ${f.name !== undefined ? sql`AND name = ${f.name}` : none}
      ${f.status !== undefined ? sql`AND status = ${f.status}` : none}
      ${f.model !== undefined ? sql`AND model = ${f.model}` : none}
      ${f.kind !== undefined ? sql`AND kind = ${f.kind}` : none}
      ${f.parentId !== undefined ? sql`AND parent_id = ${f.parentId}` : none}
      ${f.feature !== undefined ? sql`AND features @> ${sql.json([{ name: f.feature }])}` : none}
      ${f.from !== undefined ? sql`AND started_at >= ${f.from}` : none}
      ${f.to !== undefined ? sql`AND started_at < ${f.to}` : none}
      ${f.after !== undefined ? sql`AND (started_at, id) < (${f.after.startedAt}, ${f.after.id}::uuid)` : none}
    ORDER BY started_at DESC, id DESC
    LIMIT ${f.limit}`
}

export async function insertDigestBlocks (sql: Sql, runId: string, blocks: Array<{ block: number, digests: Buffer }>): Promise<void> {
  if (blocks.length === 0) return
  await sql`INSERT INTO pipeline_run_digests ${sql(blocks.map((b) => ({ run_id: runId, block: b.block, digests: b.digests })), 'run_id', 'block', 'digests')}`
}

/** The digest blocks of a run from `fromBlock` on, in order, `count` at most. */
export async function readDigestBlocks (sql: Sql, runId: string, fromBlock: number, count: number): Promise<Array<{ block: number, digests: Buffer }>> {
  return sql<Array<{ block: number, digests: Buffer }>>`
    SELECT block, digests FROM pipeline_run_digests
    WHERE run_id = ${runId} AND block >= ${fromBlock} ORDER BY block LIMIT ${count}`
}

export async function deleteDigestBlocks (sql: Sql, runId: string): Promise<void> {
  await sql`DELETE FROM pipeline_run_digests WHERE run_id = ${runId}`
}

/**
 * The session that holds the advisory locks of the runs this process builds: one connection
 * that lives as long as the process needs it. Not a connection of the shared pool: the pool
 * closes idle connections and recycles old ones, and either would drop the locks. When the
 * connection is lost anyway (database restart), `onLost` is told, and the next query opens a
 * new session.
 */
export function openRunLockSession (url: string, onLost: () => void): Sql {
  return postgres(url, {
    max: 1,
    idle_timeout: 0,
    max_lifetime: 0,
    connect_timeout: 10,
    onnotice: () => {},
    onclose: () => { onLost() },
    connection: { application_name: 'feature-store-run-locks' },
  }) as unknown as Sql
}

/** Takes a run's lock on a session; false when another session holds it. */
export async function tryLockRun (conn: Sql, id: string): Promise<boolean> {
  const [row] = await conn<{ locked: boolean }[]>`SELECT pg_try_advisory_lock(${RUN_LOCK_CLASS}, hashtext(${id})) AS locked`
  return row.locked
}

export async function unlockRun (conn: Sql, id: string): Promise<void> {
  await conn`SELECT pg_advisory_unlock(${RUN_LOCK_CLASS}, hashtext(${id}))`
}

/**
 * Marks failed, with `reason`, every queued or running run whose builder is gone: its lock is
 * free (the process that held it died, and with it its connection). Runs that a live process is
 * building stay as they are. Returns the runs it failed.
 */
export async function failAbandonedRuns (sql: Sql, reason: string): Promise<Array<{ id: string, name: string, status: RunStatus }>> {
  const candidates = await sql<{ id: string, started_at: Date, name: string, status: RunStatus }[]>`
    SELECT id, started_at, name, status FROM pipeline_runs WHERE status IN ('queued', 'running')`
  if (candidates.length === 0) return []
  const failed: Array<{ id: string, name: string, status: RunStatus }> = []
  const conn = await sql.reserve()
  try {
    for (const c of candidates) {
      if (!await tryLockRun(conn, c.id)) continue
      try {
        const res = await conn`
          UPDATE pipeline_runs SET status = 'failed', error = ${reason}, finished_at = now(), updated_at = now()
          WHERE id = ${c.id} AND started_at = ${c.started_at} AND status IN ('queued', 'running')`
        if (res.count === 1) {
          failed.push({ id: c.id, name: c.name, status: c.status })
          await conn`DELETE FROM pipeline_run_digests WHERE run_id = ${c.id}`
        }
      } finally {
        await unlockRun(conn, c.id)
      }
    }
  } finally {
    conn.release()
  }
  return failed
}

/** What a reproduction needs to know about retention: the oldest feature_snapshots data kept. */
export async function oldestRetainedChunkStart (sql: Sql): Promise<Date | undefined> {
  const [row] = await sql<{ start: Date | null, chunks: number }[]>`
    SELECT min(range_start) AS start, count(*)::int AS chunks FROM timescaledb_information.chunks
    WHERE hypertable_schema = current_schema() AND hypertable_name = 'feature_snapshots'`
  return row.chunks === 0 || row.start === null ? undefined : row.start
}

/** now() - retention, in epoch ms: feature_snapshots older than this are dropped by the retention policy. */
export async function retentionHorizonMs (sql: Sql, retention: string): Promise<number> {
  const [row] = await sql<{ h: number }[]>`SELECT (extract(epoch FROM now() - ${retention}::interval) * 1000)::int8 AS h`
  return row.h
}
