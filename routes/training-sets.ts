import { streamReleasing } from './streams.js'
import { errorCodes, type FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { App } from '../src/app.js'
import { AppError } from '../src/domain/errors.js'
import { scanTrainingBody, type EntityRowColumns, type RowSchemaError } from '../src/domain/training-body.js'
import { chooseOutputFormat, rowRenderer, type AnsweredRows } from '../src/domain/training-output.js'
import { formatTimestamp } from '../src/domain/time.js'
import { problems } from './schemas/common.js'
import { EntityRow, TRAINING_SET_HEADERS, TrainingSetJson, TrainingSetRequestSchema, type TrainingSetRequest } from './schemas/training-sets.js'

/** Rows rendered per chunk written to the response. */
const CHUNK_ROWS = 4096

/** Entity rows read into columns by the body parser, by the parsed body they belong to. */
const inlineRows = new WeakMap<object, EntityRowColumns>()

export default async function trainingSetRoutes (app: App): Promise<void> {
  // This route's JSON parser reads entity_rows from the body's bytes into columns (no object
  // per row, no string of the whole body); the rest of the body goes through the ordinary
  // parser and schema. Bodies of any other shape are parsed as usual.
  const defaultJson = app.getDefaultJsonParser('error', 'error')
  const limit = app.deps.config.TRAINING_BODY_LIMIT_BYTES
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', (request, payload, done) => {
    readBody(request, payload, limit).then((buf) => {
      try {
        parseTrainingBody(request, buf, defaultJson, done)
      } catch (err) {
        done(err as Error, undefined)
      }
    }, (err) => { done(err as Error, undefined) })
  })

  app.post('/v1/training-sets', {
    config: { scope: 'read' },
    bodyLimit: app.deps.config.TRAINING_BODY_LIMIT_BYTES,
    schema: {
      tags: ['retrieval'],
      summary: 'Build a point-in-time correct training set (streamed as JSON, NDJSON or CSV)',
      description: [
        'Joins each entity row (entity_id, event_time T) with the value every feature had at T, as known at the knowledge cutoff K',
        '(as_of_system_time; default now): the value with the greatest event_time <= T among those ingested at or before K,',
        'ties going to the latest correction; null with status NOT_FOUND when there is none, OUTSIDE_TTL when the latest is older',
        'than the feature\'s ttl, NULL_VALUE when it is null. point_in_time "known" makes K = min(T, K) per row, so values',
        'backfilled after T stay invisible to row T.',
        '',
        'Features: a list of references, or a contract\'s. Rows: inline entity_rows (other members pass through as columns) or',
        'a grid (for each entity, from, from+every, ... <= to). One output row per entity row, in input order, duplicates kept.',
        '',
        'Output by Accept: application/json (`{"columns": [...], "rows": [{...}, ...]}`, the default), application/x-ndjson',
        '(one object per line) or text/csv (header line; null is an empty cell). Rows are streamed as they are computed.',
        'Every input error is answered with problem+json before the first row. The headers x-as-of-system-time and',
        'x-feature-versions pin the build: the same features as name@version with that as_of_system_time rebuild the same rows.',
      ].join('\n'),
      body: TrainingSetRequestSchema,
      response: {
        200: {
          description: 'The training set, streamed',
          headers: Object.fromEntries(Object.entries(TRAINING_SET_HEADERS).map(([k, description]) => [k, { type: 'string', description }])),
          content: {
            'application/json': { schema: TrainingSetJson },
            'application/x-ndjson': { schema: Type.String({ description: 'one JSON object per row and line, keys in column order' }) },
            'text/csv': { schema: Type.String({ description: 'RFC 4180 with a header line; null is an empty cell, an empty string is ""' }) },
          },
        },
        ...problems(400, 401, 403, 406, 413, 415, 422, 503),
      },
    },
  }, async (request, reply) => {
    const format = chooseOutputFormat(request.headers.accept)
    if (!format) {
      throw new AppError(406, 'Not Acceptable', `Accept ${request.headers.accept} names no format this route produces: application/json, application/x-ndjson or text/csv`)
    }
    const service = app.services.trainingSets
    const resolved = await service.resolve(request.body, inlineRows.get(request.body))
    const blocks = service.answeredBlocks(resolved)[Symbol.asyncIterator]()
    // The first block is computed before answering, so that its failure is still a problem+json.
    const first = await blocks.next()
    const renderer = rowRenderer(format, { columns: resolved.columns, extraColumns: resolved.extraColumns, featureColumns: resolved.featureColumns, includeMetadata: resolved.includeMetadata })
    async function * body (release: () => Promise<void>): AsyncGenerator<string> {
      try {
        yield renderer.start()
        let next: IteratorResult<AnsweredRows> = first
        while (!next.done) {
          const size = next.value.answers.block.size
          for (let from = 0; from < size; from += CHUNK_ROWS) yield renderer.rows(next.value, from, Math.min(size, from + CHUNK_ROWS))
          next = await blocks.next()
        }
        yield renderer.end()
      } finally {
        await release()
      }
    }
    reply.header('x-as-of-system-time', formatTimestamp(resolved.cutoffMs))
    reply.header('x-feature-versions', resolved.features.map((f) => `${f.name}@${f.version}`).join(','))
    reply.header('x-row-count', String(resolved.rowCount))
    reply.type(format === 'csv' ? 'text/csv; charset=utf-8' : renderer.mediaType)
    // a stream is sent as is; the 200 schema documents it and serialises nothing
    return reply.send(streamReleasing(body, async () => blocks.return?.()) as never)
  })
}

type Done = (err: Error | null, body?: unknown) => void
type JsonParser = (request: FastifyRequest, body: string, done: Done) => void

/**
 * The raw body as one Buffer, allocated once from Content-Length when given. The same limits
 * and errors as Fastify's own body reader: 413 past `limit`, 400 when the length is wrong.
 */
async function readBody (request: FastifyRequest, payload: NodeJS.ReadableStream, limit: number): Promise<Buffer> {
  const declared = Number(request.headers['content-length'])
  if (declared > limit) throw new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE()
  const sized = Number.isInteger(declared) && declared >= 0
  return new Promise<Buffer>((resolve, reject) => {
    let buf = sized ? Buffer.allocUnsafe(declared) : undefined
    const chunks: Buffer[] = []
    let received = 0
    const cleanup = (): void => {
      payload.removeListener('data', onData)
      payload.removeListener('end', onEnd)
      payload.removeListener('error', onEnd)
    }
    const onData = (chunk: Buffer | string): void => {
      const c = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
      if (received + c.length > limit) {
        cleanup()
        buf = undefined
        reject(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE())
        return
      }
      if (buf !== undefined && received + c.length <= buf.length) c.copy(buf, received)
      else if (buf === undefined) chunks.push(c)
      received += c.length
    }
    const onEnd = (err?: Error & { statusCode?: number }): void => {
      cleanup()
      if (err != null) {
        if (!(typeof err.statusCode === 'number' && err.statusCode >= 400)) err.statusCode = 400
        reject(err)
        return
      }
      if (sized && received !== declared) { reject(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH()); return }
      resolve(buf ?? Buffer.concat(chunks, received))
    }
    payload.on('data', onData)
    payload.on('end', onEnd)
    payload.on('error', onEnd)
    payload.resume()
  })
}

/**
 * Scans the body (src/domain/training-body.ts); rows that are not of the usual shape are
 * checked against the row schema, and their errors are reported together with those of the
 * rest of the body, as the schema of the whole body would.
 */
function parseTrainingBody (request: FastifyRequest, buf: Buffer, defaultJson: JsonParser, done: Done): void {
  const validateRow = request.compileValidationSchema(EntityRow, 'body')
  const scan = scanTrainingBody(buf, (row) => (validateRow(row) ? null : (validateRow.errors as RowSchemaError[] | null | undefined) ?? []))
  if (scan.kind === 'invalid') { done(new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY(), undefined); return }
  if (scan.kind === 'fallback') { defaultJson(request, buf.toString('utf8'), done); return }
  defaultJson(request, scan.rest, (err, body) => {
    if (err) { done(err, undefined); return }
    const rows = (body as { entity_rows?: unknown } | null)?.entity_rows
    if (!Array.isArray(rows) || rows.length !== 0) {
      // not where the scanner saw it: parse the whole body as usual
      defaultJson(request, buf.toString('utf8'), done)
      return
    }
    if (scan.rowErrors.length > 0) {
      const validateBody = request.getValidationFunction('body')
      const bodyErrors = validateBody && !validateBody(body) ? ((validateBody.errors ?? []) as unknown as RowSchemaError[]) : []
      // in the schema's member order: entity_rows comes after features and contract
      const before = bodyErrors.filter((e) => /^\/(features|contract)(\/|$)/.test(e.instancePath) || e.instancePath === '')
      const after = bodyErrors.filter((e) => !before.includes(e))
      const validation = [...before, ...scan.rowErrors, ...after]
      done(Object.assign(new Error(`body is invalid: ${validation.length} errors`), { statusCode: 400, code: 'FST_ERR_VALIDATION', validation, validationContext: 'body' }), undefined)
      return
    }
    inlineRows.set(body as object, scan.columns)
    done(null, body as TrainingSetRequest)
  })
}
