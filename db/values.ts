import { createReadStream } from 'node:fs'
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { Readable, Writable } from 'node:stream'
import type postgres from 'postgres'
import type { TxSql } from './connection.js'
import { takeIngestStamp } from './knowledge.js'
import { beginLoggedWrite, logWrites, WrittenRanges } from './write-log.js'
import { toDefinition } from './definitions.js'
import type { FeatureDefinition } from '../src/domain/feature.js'
import type { ValueRow } from '../src/domain/ingest-rows.js'

export type { ValueRow }

type Fragment = postgres.PendingQuery<postgres.Row[]>

export interface CommitResult {
  /** The ingested_at stamp shared by every row of the transaction (RFC 3339, UTC, rounded up to the ms). */
  ingestedAt: string
  /** Rows written to feature_snapshots (after collapsing same-key duplicates of the request). */
  inserted: number
  /**
   * Online keys whose latest value changed: the cache entries to invalidate. Undefined when
   * the request staged more rows than `keyListLimit`; then `changedFeatures` is what changed.
   */
  changedKeys?: Array<{ featureId: number, entityId: string }>
  /** Every feature that received rows. */
  changedFeatures: number[]
}

/** Above this many staged rows the online keys that changed are not listed one by one. */
export const DEFAULT_KEY_LIST_LIMIT = 2000
/**
 * The latest row per (feature, entity) is tracked in memory while rows are staged, so that
 * the online upsert needs no pass over the rows; past this many keys the slow path does it.
 */
const LATEST_KEYS_LIMIT = 100_000
/** Staged rows stay in memory up to this size, then go to a spool file. */
const SPILL_BYTES = 4 * 1024 * 1024
const CHUNK_BYTES = 256 * 1024

interface Latest { featureId: number, entityId: string, eventTimeMs: number, num: number | null, text: string | null, firstMs: number }

/**
 * The write path of values. Validated rows are staged as COPY text, in memory and past a few
 * MiB in a spool file (constant memory, no database work, no lock). At commit the one
 * ingested_at stamp is taken under the knowledge lock (db/knowledge.ts) and the rows go into
 * feature_snapshots with one COPY, the cheapest way into the table; the online table is then
 * brought up to date from the latest row per key, tracked while staging. All in the caller's
 * transaction. Within one request the last row for a (feature, entity, event_time) wins: such
 * duplicates (rare) make the COPY fail on the primary key, and the slow path stages the rows
 * in a temporary table and keeps the last of each.
 */
export class ValueStaging {
  private chunks: string[] = []
  private buffered = 0
  private line = ''
  private spool?: { dir: string, file: string, handle: FileHandle }
  private rows = 0
  private readonly features = new Set<number>()
  /** What the write log (db/write-log.ts) records of this write: event_time range and entity per feature. */
  private readonly written = new WrittenRanges()
  private latest: Map<string, Latest> | undefined = new Map()
  private closed = false
  private lastMs = Number.NaN
  private lastIso = ''
  private lastEntity = ''
  private lastEntityText = ''
  private writing: Promise<void> = Promise.resolve()

  constructor (private readonly tx: TxSql, private readonly keyListLimit = DEFAULT_KEY_LIST_LIMIT) {}

  get rowCount (): number { return this.rows }
  get isOpen (): boolean { return this.rows > 0 }

  /** Kept for callers that open explicitly; staging needs no set-up. */
  async open (): Promise<void> {}

  /**
   * Adds a row. Returns a promise only when a chunk was written to the spool file
   * (back-pressure): callers await it, and rows in between cost no promise.
   */
  add (row: ValueRow): Promise<void> | undefined {
    this.rows++
    this.features.add(row.featureId)
    this.written.add(row.featureId, row.entityId, row.eventTimeMs)
    if (this.latest !== undefined) this.trackLatest(row)
    // rows mostly repeat the event time and entity of the row before: their text is kept
    if (row.eventTimeMs !== this.lastMs) {
      this.lastMs = row.eventTimeMs
      this.lastIso = new Date(row.eventTimeMs).toISOString()
    }
    if (row.entityId !== this.lastEntity) {
      this.lastEntity = row.entityId
      this.lastEntityText = copyText(row.entityId)
    }
    this.line += `${row.featureId}\t${this.lastEntityText}\t${this.lastIso}\t${row.num === null ? '\\N' : (Object.is(row.num, -0) ? '-0' : String(row.num))}\t${row.text === null ? '\\N' : copyText(row.text)}\n`
    if (this.line.length >= CHUNK_BYTES) return this.pushChunk()
    return undefined
  }

  /** Hands the current chunk to the spool; chunk writes are chained, so they never overlap. */
  private pushChunk (): Promise<void> {
    const chunk = this.line
    this.line = ''
    this.writing = this.writing.then(() => this.writeChunk(chunk))
    return this.writing
  }

  /** Keeps the newest row per key (greatest event time, then the later row of the request) and its earliest event time. */
  private trackLatest (row: ValueRow): void {
    const key = `${row.featureId}|${row.entityId}`
    const cur = this.latest!.get(key)
    if (cur === undefined) {
      if (this.latest!.size >= LATEST_KEYS_LIMIT) { this.latest = undefined; return }
      this.latest!.set(key, { featureId: row.featureId, entityId: row.entityId, eventTimeMs: row.eventTimeMs, num: row.num, text: row.text, firstMs: row.eventTimeMs })
    } else if (row.eventTimeMs >= cur.eventTimeMs) {
      cur.eventTimeMs = row.eventTimeMs
      cur.num = row.num
      cur.text = row.text
    } else if (row.eventTimeMs < cur.firstMs) {
      cur.firstMs = row.eventTimeMs
    }
  }

  private async writeChunk (chunk: string): Promise<void> {
    if (chunk === '') return
    if (this.spool === undefined && this.buffered + chunk.length <= SPILL_BYTES) {
      this.chunks.push(chunk)
      this.buffered += chunk.length
      return
    }
    if (this.spool === undefined) {
      const dir = await mkdtemp(path.join(tmpdir(), 'feature-store-ingest-'))
      const file = path.join(dir, 'rows.copy')
      this.spool = { dir, file, handle: await open(file, 'w') }
      for (const c of this.chunks) await this.spool.handle.write(c)
      this.chunks = []
      this.buffered = 0
    }
    await this.spool.handle.write(chunk)
  }

  /** The staged rows, as COPY text chunks, each line ended by `suffix` (the stamp column). */
  private async * staged (suffix: string): AsyncIterable<string> {
    if (this.spool === undefined) {
      for (const c of this.chunks) yield c.replaceAll('\n', suffix)
      return
    }
    const stream: Readable = createReadStream(this.spool.file, { encoding: 'utf8', highWaterMark: CHUNK_BYTES })
    for await (const c of stream) yield (c as string).replaceAll('\n', suffix)
  }

  /** Drops the spool file. Safe to call more than once. */
  async abort (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.writing.catch(() => {})
    this.chunks = []
    if (this.spool !== undefined) {
      await this.spool.handle.close().catch(() => {})
      await rm(this.spool.dir, { recursive: true, force: true })
    }
  }

  /** Moves the staged rows into the store under one stamp. Call inside the caller's transaction. */
  async commit (): Promise<CommitResult> {
    try {
      await this.pushChunk()
      if (this.spool !== undefined) await this.spool.handle.close()
      let stamp = await takeIngestStamp(this.tx)
      await beginLoggedWrite(this.tx)
      let inserted: number
      let fast = this.latest !== undefined
      if (fast) {
        try {
          // every staged row is one line of the COPY, and the COPY writes them all or fails
          await this.tx.savepoint(async (sp) => copyInto(sp,
            await sp`COPY feature_snapshots (feature_id, entity_id, event_time, value_num, value_text, ingested_at) FROM STDIN`.writable(),
            this.staged(`\t${stamp}\n`)))
          inserted = this.rows
        } catch (err) {
          // A duplicate key: the request holds a (feature, entity, event_time) twice, or (in
          // theory) another transaction took the very same microsecond, hence a fresh stamp.
          if (!(err instanceof CopyFailedError)) throw err
          fast = false
          stamp = await takeIngestStamp(this.tx)
        }
      }
      let changed: Array<{ feature_id: number, entity_id: string }>
      const listKeys = this.rows <= this.keyListLimit
      if (fast) {
        changed = await this.upsertOnlineFromMemory(stamp, listKeys)
      } else {
        ({ inserted, changed } = await this.slowPath(stamp, listKeys))
      }
      await logWrites(this.tx, stamp, this.written.ranges)
      // Stamps keep microseconds (the knowledge protocol needs them); the answer rounds up to the
      // millisecond, so that as_of_system_time = ingested_at sees this write.
      const [{ at }] = await this.tx<{ at: string }[]>`SELECT to_char(date_trunc('milliseconds', ${stamp}::text::timestamptz + interval '999 microseconds') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at`
      return {
        ingestedAt: at,
        inserted: inserted!,
        ...(listKeys ? { changedKeys: changed.map((r) => ({ featureId: r.feature_id, entityId: r.entity_id })) } : {}),
        changedFeatures: [...this.features],
      }
    } finally {
      await this.abort()
    }
  }

  /**
   * The online upsert from the latest row per key tracked while staging; in the same statement,
   * each key's earliest event time (feature_first_events, what bounded point-in-time reads go by).
   */
  private async upsertOnlineFromMemory (stamp: string, listKeys: boolean): Promise<Array<{ feature_id: number, entity_id: string }>> {
    const rows = [...this.latest!.values()]
    return this.tx<{ feature_id: number, entity_id: string }[]>`
      WITH u AS (
        SELECT * FROM unnest(${rows.map((r) => r.featureId)}::int4[], ${rows.map((r) => r.entityId)}::text[], ${rows.map((r) => r.eventTimeMs)}::int8[],
                             ${rows.map((r) => r.num)}::float8[], ${rows.map((r) => r.text)}::text[], ${rows.map((r) => r.firstMs)}::int8[])
          AS u(feature_id, entity_id, event_ms, value_num, value_text, first_ms)
      ), firsts AS (
        ${this.firstEventsUpsert(this.tx`SELECT feature_id, entity_id, timestamptz 'epoch' + first_ms * interval '1 millisecond' AS first FROM u`)}
      )
      INSERT INTO feature_online AS o (feature_id, entity_id, event_time, ingested_at, value_num, value_text)
      SELECT feature_id, entity_id, timestamptz 'epoch' + event_ms * interval '1 millisecond', ${stamp}::text::timestamptz, value_num, value_text
      FROM u
      -- key order, so that concurrent ingests lock online rows in one order
      ORDER BY feature_id, entity_id
      ON CONFLICT (feature_id, entity_id) DO UPDATE
        SET event_time = EXCLUDED.event_time, ingested_at = EXCLUDED.ingested_at,
            value_num = EXCLUDED.value_num, value_text = EXCLUDED.value_text
        WHERE (EXCLUDED.event_time, EXCLUDED.ingested_at) >= (o.event_time, o.ingested_at)
      ${listKeys ? this.tx`RETURNING o.feature_id, o.entity_id` : this.tx``}`
  }

  /**
   * Moves each key's earliest event time back to `firsts` (rows of feature_id, entity_id, first)
   * where that is earlier. Keys whose first event stays as it is are left alone (an upsert would
   * lock their rows); key order, as the online rows, so that concurrent ingests lock in one order.
   */
  private firstEventsUpsert (firsts: Fragment): Fragment {
    return this.tx`
      INSERT INTO feature_first_events AS f (feature_id, entity_id, first_event)
      SELECT feature_id, entity_id, first FROM (${firsts}) n
      WHERE NOT EXISTS (SELECT 1 FROM feature_first_events k WHERE k.feature_id = n.feature_id AND k.entity_id = n.entity_id AND k.first_event <= n.first)
      ORDER BY feature_id, entity_id
      ON CONFLICT (feature_id, entity_id) DO UPDATE SET first_event = EXCLUDED.first_event
        WHERE EXCLUDED.first_event < f.first_event`
  }

  /**
   * Same-key duplicates in the request, or too many keys to track: the rows are staged in a
   * temporary table (ord keeps their request order) and the last of each key is kept.
   */
  private async slowPath (stamp: string, listKeys: boolean): Promise<{ inserted: number, changed: Array<{ feature_id: number, entity_id: string }> }> {
    await this.tx`CREATE TEMP TABLE ingest_staging (
      ord int8 GENERATED ALWAYS AS IDENTITY, feature_id int4 NOT NULL, entity_id text NOT NULL,
      event_time timestamptz NOT NULL, value_num float8, value_text text
    ) ON COMMIT DROP`
    await copyInto(this.tx, await this.tx`COPY ingest_staging (feature_id, entity_id, event_time, value_num, value_text) FROM STDIN`.writable(), this.staged('\n'))
    const inserted = await this.tx`
      INSERT INTO feature_snapshots (feature_id, entity_id, event_time, ingested_at, value_num, value_text)
      SELECT DISTINCT ON (feature_id, entity_id, event_time)
             feature_id, entity_id, event_time, ${stamp}::text::timestamptz, value_num, value_text
      FROM ingest_staging
      ORDER BY feature_id, entity_id, event_time, ord DESC`
    // before the online rows, as the fast path (one lock order for concurrent ingests)
    await this.firstEventsUpsert(this.tx`SELECT feature_id, entity_id, min(event_time) AS first FROM ingest_staging GROUP BY feature_id, entity_id`)
    const changed = await this.tx<{ feature_id: number, entity_id: string }[]>`
      INSERT INTO feature_online AS o (feature_id, entity_id, event_time, ingested_at, value_num, value_text)
      SELECT feature_id, entity_id, event_time, ${stamp}::text::timestamptz, value_num, value_text
      FROM (
        SELECT DISTINCT ON (feature_id, entity_id) feature_id, entity_id, event_time, value_num, value_text
        FROM ingest_staging
        ORDER BY feature_id, entity_id, event_time DESC, ord DESC
      ) latest
      ORDER BY feature_id, entity_id
      ON CONFLICT (feature_id, entity_id) DO UPDATE
        SET event_time = EXCLUDED.event_time, ingested_at = EXCLUDED.ingested_at,
            value_num = EXCLUDED.value_num, value_text = EXCLUDED.value_text
        WHERE (EXCLUDED.event_time, EXCLUDED.ingested_at) >= (o.event_time, o.ingested_at)
      ${listKeys ? this.tx`RETURNING o.feature_id, o.entity_id` : this.tx``}`
    await this.tx`DROP TABLE ingest_staging`
    return { inserted: inserted.count, changed }
  }
}

/**
 * Writes chunks into a COPY ... FROM STDIN, or throws CopyFailedError if the server rejected
 * the COPY. postgres.js never settles a COPY that fails after its last chunk
 * (porsager/postgres#1173), so the outcome is read from a probe query pipelined behind the
 * COPY: it succeeds only if the COPY did.
 */
async function copyInto (sql: TxSql, stream: Writable, chunks: AsyncIterable<string>): Promise<void> {
  for await (const c of chunks) {
    await new Promise<void>((resolve, reject) => { stream.write(c, (err) => { if (err) reject(err); else resolve() }) })
  }
  stream.end()
  for (let attempt = 0; ; attempt++) {
    try {
      await sql`SELECT 1`
      return
    } catch (err) {
      // the COPY has not sent its end yet: try again on the next turn
      if ((err as { code?: string }).code === 'COPY_IN_PROGRESS' && attempt < 1000) {
        await new Promise((resolve) => setImmediate(resolve))
        continue
      }
      throw new CopyFailedError(err)
    }
  }
}

class CopyFailedError extends Error {
  constructor (readonly reason: unknown) { super(`COPY failed: ${(reason as Error)?.message ?? String(reason)}`) }
}

/** Every definition, for resolving the references of a request before its rows are read. */
export async function loadDefinitions (tx: TxSql): Promise<FeatureDefinition[]> {
  const rows = await tx<Array<Parameters<typeof toDefinition>[0]>>`SELECT * FROM feature_definitions`
  return rows.map(toDefinition)
}

/** COPY text format escaping. */
export function copyText (s: string): string {
  return /[\\\t\n\r]/.test(s) ? s.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r') : s
}
