import { createHash, type Hash } from 'node:crypto'
import type { Readable } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'
import type { FastifyBaseLogger } from 'fastify'
import type { Sql, TxSql } from '../../db/connection.js'
import { ValueStaging, loadDefinitions, type CommitResult } from '../../db/values.js'
import { findIdempotentAnswer, lockIdempotencyKey, purgeIdempotencyKeys, saveIdempotentAnswer, type IdempotencySlot } from '../../db/idempotency.js'
import { notifyOnlineChange } from '../../db/online.js'
import { CsvRecordReader, CsvRecordTooLongError, CsvSyntaxError } from '../domain/csv-records.js'
import { AppError, BadRequestError, PayloadTooLargeError, UnprocessableError, type FieldError } from '../domain/errors.js'
import {
  DefinitionCatalog, RowErrors, checkCell, checkKey, checkLongRow, csvLayout, resolveFeature,
  type CsvLayout, type OnInvalid, type RowPosition, type ValueRow, rowPath,
} from '../domain/ingest-rows.js'
import type { IngestResponse } from '../../routes/schemas/values.js'
import type { OnlineChange } from './online-cache.js'
import type { OnlineService } from './online.js'
import type { Principal } from './api-keys.js'
import { EventLoopSlices } from './event-loop-slices.js'

export type BodyFormat = 'json' | 'ndjson' | 'csv'

export interface IngestRequest {
  format: BodyFormat
  onInvalid: OnInvalid
  idempotencyKey?: string
  /** Who sent the key (idempotencyPrincipal): the same key from another caller is another key. */
  idempotencyPrincipal?: string
  /** json: the parsed body */
  body?: unknown
  /** json: SHA-256 (hex) of the raw body bytes, when an idempotency key is given */
  bodySha256?: string
  /** ndjson, csv: the raw body, read once, as it arrives */
  stream?: Readable
}

export interface IngestAnswer {
  statusCode: number
  body: IngestResponse
  /** a retry answered with the stored first answer */
  replayed: boolean
}

export interface IngestSettings {
  maxJsonRows: number
  idempotencyKeepHours: number
  /** above this many rows, changed online keys are flushed per feature */
  keyListLimit?: number
}

const IDEMPOTENCY_SCOPE = 'POST /v1/values'
const MAX_LINE_BYTES = 1024 * 1024
const PURGE_EVERY_MS = 10 * 60_000

/**
 * The owner of an Idempotency-Key: the API key's id; one fixed value for the ADMIN_API_KEY of
 * the environment; one for every caller when authentication is off (there is no caller to tell
 * apart then). Revoking a key and creating a new one makes a new owner.
 */
export function idempotencyPrincipal (principal: Principal | null): string {
  if (principal === null) return 'anonymous'
  return principal.keyId === null ? 'env:ADMIN_API_KEY' : `key:${principal.keyId}`
}

/**
 * POST /v1/values: checks every row against its definition and writes the valid ones in one
 * transaction (one ingested_at stamp, online table and cache kept current). The answer is
 * returned only after COMMIT. Bodies are read as they arrive, in constant memory.
 */
export class IngestService {
  private lastPurge = 0

  constructor (
    private readonly sql: Sql,
    private readonly online: OnlineService,
    private readonly settings: IngestSettings,
    private readonly log?: FastifyBaseLogger,
  ) {}

  async ingest (req: IngestRequest): Promise<IngestAnswer> {
    if (req.format === 'json') checkJsonShape(req.body, this.settings.maxJsonRows)
    const key = req.idempotencyKey
    const slot: IdempotencySlot | undefined = key === undefined ? undefined : { scope: IDEMPOTENCY_SCOPE, principal: req.idempotencyPrincipal ?? idempotencyPrincipal(null), key }
    const hash = key === undefined ? undefined : createHash('sha256').update(`${req.format}\n${req.onInvalid}\n`)
    if (hash && req.format === 'json') hash.update(req.bodySha256 ?? JSON.stringify(req.body))
    let change: OnlineChange | undefined
    const answer = await this.sql.begin(async (tx) => {
      if (slot !== undefined) {
        await lockIdempotencyKey(tx, slot)
        const prior = await findIdempotentAnswer(tx, slot)
        if (prior !== undefined) {
          if (req.stream) await drain(req.stream, hash!)
          if (prior.requestHash !== hash!.digest('hex')) {
            throw new UnprocessableError(`Idempotency-Key '${key}' was already used with a different request (body, content type or on_invalid); use a new key for a new request`, [{ path: '/headers/idempotency-key', field: 'idempotency-key', rule: 'idempotency_key_reuse', message: 'already used with a different request' }])
          }
          return { statusCode: prior.statusCode, body: prior.response as IngestResponse, replayed: true }
        }
      }
      const run = new IngestRun(tx, new DefinitionCatalog(await loadDefinitions(tx)), req.onInvalid, this.settings.keyListLimit)
      try {
        if (req.format === 'json') await run.readJson((req.body as { rows: unknown[] }).rows)
        else if (req.format === 'ndjson') await run.readNdjson(req.stream!, hash)
        else await run.readCsv(req.stream!, hash)
        run.rejectIfInvalid()
      } catch (err) {
        await run.abort()
        throw cutOff(err) ? new BadRequestError('The request body ended before it was complete (the client went away?); nothing was written') : err
      }
      const result = await run.commit()
      change = result === undefined ? undefined : changeOf(result)
      if (change !== undefined) await notifyOnlineChange(tx, this.online.announcement(change))
      const body = run.response(result)
      if (slot !== undefined) await saveIdempotentAnswer(tx, slot, hash!.digest('hex'), 200, body)
      return { statusCode: 200, body, replayed: false }
    })
    // Read-your-writes: this instance forgets the changed keys before it answers.
    if (change !== undefined) this.online.invalidate(change)
    if (key !== undefined) this.purgeOldKeys()
    return answer
  }

  /** Opportunistic clean-up of old idempotency keys, at most every ten minutes per instance. */
  private purgeOldKeys (): void {
    const now = Date.now()
    if (now - this.lastPurge < PURGE_EVERY_MS) return
    this.lastPurge = now
    purgeIdempotencyKeys(this.sql, this.settings.idempotencyKeepHours)
      .catch((err: unknown) => { this.log?.warn({ err }, 'purging old idempotency keys failed') })
  }
}

function checkJsonShape (body: unknown, maxRows: number): void {
  if (body === null || typeof body !== 'object' || !Array.isArray((body as { rows?: unknown }).rows)) {
    throw new BadRequestError('The body must be an object {rows: [...]}', [{ path: '/body/rows', rule: 'type', message: 'must be an array' }])
  }
  const n = (body as { rows: unknown[] }).rows.length
  if (n > maxRows) throw new PayloadTooLargeError(`${n} rows in one JSON request; at most ${maxRows} are accepted: split the request, or stream it as application/x-ndjson or text/csv`)
}

function changeOf (result: CommitResult): OnlineChange | undefined {
  if (result.changedKeys !== undefined) return result.changedKeys.length > 0 ? { keys: result.changedKeys } : undefined
  return result.changedFeatures.length > 0 ? { features: result.changedFeatures } : undefined
}

/** A body stream that ended before its end: the client aborted or the connection broke. */
function cutOff (err: unknown): boolean {
  const code = (err as { code?: string })?.code
  return code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'BODY_CUT_OFF' || (err as Error)?.message === 'aborted'
}

async function drain (stream: Readable, hash: Hash): Promise<void> {
  for await (const chunk of stream) hash.update(chunk as Buffer)
}

/** One request's rows on their way in: checks, counts, errors, and the staging they go to. */
class IngestRun {
  private readonly staging: ValueStaging
  readonly errors = new RowErrors()
  received = 0
  skipped = 0
  /** the body was left unread (reject mode, error list full) */
  private stoppedEarly = false

  constructor (tx: TxSql, private readonly catalog: DefinitionCatalog, private readonly onInvalid: OnInvalid, keyListLimit?: number) {
    this.staging = new ValueStaging(tx, keyListLimit)
  }

  /** Under reject, reading stops once the error list is full: the answer is a 422 anyway. */
  private get done (): boolean { return this.onInvalid === 'reject' && this.errors.full }

  /** Stages a valid value (under reject, only while no row has failed). */
  private put (v: ValueRow): Promise<void> | undefined {
    if (this.onInvalid === 'reject' && this.errors.count > 0) return undefined
    return this.staging.add(v)
  }

  /** One long row (JSON, NDJSON or long CSV); a promise only when staging needs a wait. */
  private longRow (raw: unknown, fromText: boolean, at: RowPosition): Promise<void> | undefined {
    this.received++
    const v = checkLongRow(this.catalog, raw, fromText, at, this.errors)
    if (v === undefined) { this.skipped++; return undefined }
    return this.put(v)
  }

  async readJson (rows: unknown[]): Promise<void> {
    // the rows are in memory: other requests get turns of the event loop meanwhile
    const slices = new EventLoopSlices()
    const at: RowPosition = { row: 0, base: '/body/rows' }
    for (let i = 0; i < rows.length && !this.done; i++) {
      at.row = i
      const p = this.longRow(rows[i], false, at)
      if (p !== undefined) await p
      if ((i & 1023) === 1023) await slices.pause()
    }
  }

  async readNdjson (stream: Readable, hash?: Hash): Promise<void> {
    const decoder = new StringDecoder('utf8')
    let pending = ''
    let line = 0
    const at: RowPosition = { row: 0, base: '/lines' }
    const handle = (text: string): Promise<void> | undefined => {
      line++
      at.row = line
      // a byte order mark before the first line (as CSV accepts one)
      if (line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1)
      if (text.length === 0 || text.trim() === '') return undefined
      let raw: unknown
      try {
        raw = JSON.parse(text)
      } catch (err) {
        this.received++
        this.skipped++
        this.errors.add({ row: line, path: rowPath(at), rule: 'json', message: `line ${line} is not valid JSON: ${(err as Error).message}` })
        this.errors.rowsWithErrors++
        return undefined
      }
      return this.longRow(raw, false, at)
    }
    for await (const chunk of stream.iterator({ destroyOnReturn: false })) {
      hash?.update(chunk as Buffer)
      pending += decoder.write(chunk as Buffer)
      let start = 0
      let nl: number
      while ((nl = pending.indexOf('\n', start)) >= 0) {
        const p = handle(pending.charCodeAt(nl - 1) === 13 ? pending.slice(start, nl - 1) : pending.slice(start, nl))
        start = nl + 1
        if (p !== undefined) await p
        if (this.done) { this.stoppedEarly = true; return }
      }
      pending = pending.slice(start)
      if (pending.length > MAX_LINE_BYTES) throw new PayloadTooLargeError(`Line ${line + 1} is longer than ${MAX_LINE_BYTES} bytes`)
    }
    pending += decoder.end()
    const p = handle(pending.endsWith('\r') ? pending.slice(0, -1) : pending)
    if (p !== undefined) await p
  }

  async readCsv (stream: Readable, hash?: Hash): Promise<void> {
    const decoder = new StringDecoder('utf8')
    const reader = new CsvRecordReader(MAX_LINE_BYTES)
    let layout: CsvLayout | undefined
    let wide: WideColumns | undefined
    let record = 0
    const at: RowPosition = { row: 0, base: '/records' }
    const onRecord = (rec: string[]): Promise<void> | undefined => {
      if (layout === undefined) {
        layout = csvLayout(rec)
        if (layout.kind === 'wide') wide = this.wideColumns(layout)
        return undefined
      }
      record++
      at.row = record
      if (rec.length !== layout.width) {
        this.received++
        this.skipped++
        this.errors.add({ row: record, path: rowPath(at), rule: 'csv_columns', message: `data row ${record} has ${rec.length} fields; the header has ${layout.width}` })
        this.errors.rowsWithErrors++
        return undefined
      }
      if (layout.kind === 'long') return this.longRow({ feature: rec[layout.feature], entity_id: rec[layout.entity], event_time: rec[layout.time], value: rec[layout.value] }, true, at)
      return this.wideRow(layout, wide!, rec, at)
    }
    // the records of one piece of the body, handled in order; false once reading should stop
    const handle = async (records: string[][]): Promise<boolean> => {
      for (let i = 0; i < records.length; i++) {
        const p = onRecord(records[i])
        if (p !== undefined) await p
        if (this.done) { this.stoppedEarly = true; return false }
      }
      return true
    }
    try {
      for await (const chunk of stream.iterator({ destroyOnReturn: false })) {
        hash?.update(chunk as Buffer)
        if (!await handle(reader.push(decoder.write(chunk as Buffer)))) return
      }
      if (!await handle(reader.push(decoder.end()))) return
      if (!await handle(reader.end())) return
    } catch (err) {
      if (err instanceof CsvSyntaxError) {
        throw new BadRequestError(`The CSV body is malformed at line ${err.line}: ${err.message}`, [{ path: `/lines/${err.line}`, rule: 'csv', message: err.message }])
      }
      if (err instanceof CsvRecordTooLongError) throw new PayloadTooLargeError(`The CSV body is malformed: ${err.message}`)
      throw err
    }
    if (layout === undefined) throw new BadRequestError('The CSV body is empty: it needs a header row (long: feature,entity_id,event_time,value; wide: entity_id,event_time,<feature>...)')
  }

  /** Resolves the feature columns of a wide CSV once, from the header. */
  private wideColumns (layout: Extract<CsvLayout, { kind: 'wide' }>): WideColumns {
    const columns: WideColumns = []
    const unknown: string[] = []
    for (const c of layout.columns) {
      const f = resolveFeature(this.catalog, c.ref)
      if (f.ok) columns.push({ index: c.index, ref: c.ref, def: f.def })
      else {
        unknown.push(c.ref)
        columns.push({ index: c.index, ref: c.ref })
        this.errors.add({ row: 0, path: `/header/${c.index}`, field: c.ref, rule: f.rule, message: f.message })
        if (f.unknown !== undefined) this.errors.unknownFeatures.add(f.unknown)
      }
    }
    if (unknown.length > 0 && this.onInvalid === 'reject') {
      throw new UnprocessableError(`Unknown feature column${unknown.length > 1 ? 's' : ''} in the CSV header: ${unknown.join(', ')}; nothing was written`, this.errors.listed, { error_count: this.errors.count })
    }
    // two columns of one feature version (close_price and close_price@1): which value is meant is
    // unknowable, so the request is refused whatever on_invalid says
    const seen = new Map<number, { index: number, ref: string }>()
    const twice: FieldError[] = []
    for (const c of columns) {
      if (c.def === undefined) continue
      const first = seen.get(c.def.id)
      if (first === undefined) seen.set(c.def.id, c)
      else twice.push({ row: 0, path: `/header/${c.index}`, field: c.ref, rule: 'duplicate_column', message: `'${c.ref}' is ${c.def.name}@${c.def.version}, already column ${first.index} ('${first.ref}')` })
    }
    if (twice.length > 0) throw new UnprocessableError(`The CSV header names a feature version twice: ${twice.map((e) => e.message).join('; ')}; nothing was written`, twice)
    return columns
  }

  /** One wide CSV row: a value per non-empty feature cell; a promise only when staging needs a wait. */
  private wideRow (layout: Extract<CsvLayout, { kind: 'wide' }>, columns: WideColumns, rec: string[], at: RowPosition): Promise<void> | undefined {
    let present = 0
    for (const c of columns) if (rec[c.index] !== '') present++
    this.received += present
    if (present === 0) return undefined
    const before = this.errors.count
    const key = checkKey(rec[layout.entity], rec[layout.time], at, this.errors)
    if (key === undefined) {
      this.skipped += present
      this.errors.rowsWithErrors++
      return undefined
    }
    let waits: Array<Promise<void>> | undefined
    for (const c of columns) {
      const cell = rec[c.index]
      if (cell === '') continue
      if (c.def === undefined) { this.skipped++; continue }
      const value = checkCell(c.def, cell, true, at, c.ref, this.errors)
      if (value === undefined) { this.skipped++; continue }
      const p = this.put({ featureId: c.def.id, entityId: key.entityId, eventTimeMs: key.eventTimeMs, num: value.num, text: value.text })
      if (p !== undefined) (waits ??= []).push(p)
    }
    if (this.errors.count > before) this.errors.rowsWithErrors++
    return waits === undefined ? undefined : Promise.all(waits).then(() => undefined)
  }

  /** Under reject, any error fails the request (the transaction rolls back). */
  rejectIfInvalid (): void {
    if (this.onInvalid !== 'reject' || this.errors.count === 0) return
    const detail = `The request was rejected and nothing was written: ${this.errors.summary()}${this.stoppedEarly ? ' Reading stopped at the error limit, so more rows may be invalid.' : ''} Fix the rows, or send on_invalid=skip to write the valid ones.`
    throw new AppError(422, 'Unprocessable Content', detail, {
      errors: this.errors.listed,
      extra: { error_count: this.errors.count, rows_with_errors: this.errors.rowsWithErrors, complete: !this.stoppedEarly },
      // the rest of the body was not read: close the connection rather than read it
      ...(this.stoppedEarly ? { headers: { connection: 'close' } } : {}),
    })
  }

  async abort (): Promise<void> {
    await this.staging.abort()
  }

  /** Writes the staged rows (if any) under one stamp. */
  async commit (): Promise<CommitResult | undefined> {
    return this.staging.isOpen ? this.staging.commit() : undefined
  }

  response (result: CommitResult | undefined): IngestResponse {
    return {
      received: this.received,
      written: result?.inserted ?? 0,
      skipped: this.skipped,
      ingested_at: result?.ingestedAt ?? null,
      ...(this.errors.count > 0 ? { error_count: this.errors.count, errors: this.errors.listed as IngestResponse['errors'] } : {}),
    }
  }
}

type WideColumns = Array<{ index: number, ref: string, def?: import('../domain/feature.js').FeatureDefinition }>
