import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import type { App } from '../src/app.js'
import { problems } from './schemas/common.js'
import { CsvBody, IdempotencyHeaders, IngestResponse, JsonBody, NdjsonBody, OnInvalidQuery } from './schemas/values.js'
import { idempotencyPrincipal, type BodyFormat } from '../src/services/ingest.js'

const STREAMED: Record<string, BodyFormat> = { 'application/x-ndjson': 'ndjson', 'application/ndjson': 'ndjson', 'text/csv': 'csv' }

/** SHA-256 of raw JSON bodies that carry an Idempotency-Key (the parsed body has lost the bytes). */
const jsonBodyHashes = new WeakMap<object, string>()

export default async function valuesRoutes (app: App): Promise<void> {
  // Content-type parsers of this route only: JSON keeps its raw bytes' hash, and the streamed
  // types hand the raw request to the handler, unread and without a size limit.
  const defaultJson = app.getDefaultJsonParser('error', 'ignore')
  app.removeContentTypeParser(['application/json', 'text/plain'])
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: app.deps.config.VALUES_BODY_LIMIT_BYTES }, (request, body, done) => {
    const buf = body as Buffer
    if (request.headers['idempotency-key'] !== undefined) jsonBodyHashes.set(request.raw, createHash('sha256').update(buf).digest('hex'))
    defaultJson(request, buf.toString('utf8'), done)
  })
  app.addContentTypeParser(Object.keys(STREAMED), (_request, payload, done) => { done(null, payload) })

  app.post('/v1/values', {
    schema: {
      tags: ['values'],
      summary: 'Ingest feature values (JSON, NDJSON or CSV)',
      description: [
        'Appends values to the bitemporal store: every row is stamped with the same `ingested_at` (the moment the store learned it), a correction is a new row, nothing is updated in place. The online table and cache are updated in the same transaction; the answer comes only after COMMIT.',
        '',
        'Bodies: `application/json` `{rows: [...]}` (at most MAX_JSON_ROWS rows and VALUES_BODY_LIMIT_BYTES, else 413); `application/x-ndjson` (one row per line) and `text/csv` (long or wide), both streamed with no size limit.',
        '',
        'Every value is checked against its definition (dtype, nullable, min, max, allowed_values, non-finite numbers), every entity id and timestamp too; an unknown feature is an error naming it. With `on_invalid=reject` (default) any error gives a 422 listing `{row, field, rule, message, path}` (the first 100, `error_count` says how many in total) and nothing is written. With `on_invalid=skip` the valid rows are written and the invalid ones reported in the 200 answer.',
        '',
        'Row numbers: JSON 0-based index into `rows`; NDJSON 1-based line number; CSV 1-based data row (the header is row 0). Within one request the last row for the same feature, entity and event_time wins.',
      ].join('\n'),
      querystring: OnInvalidQuery,
      headers: IdempotencyHeaders,
      body: { content: { 'application/json': { schema: JsonBody }, 'application/x-ndjson': { schema: NdjsonBody }, 'text/csv': { schema: CsvBody } } },
      response: {
        200: IngestResponse,
        ...problems(400, 401, 403, 413, 415, 422, 503),
      },
    },
  }, async (request, reply) => {
    const mediaType = (request.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()
    const format: BodyFormat = STREAMED[mediaType] ?? 'json'
    const key = request.headers['idempotency-key'] as string | undefined
    const stream = format === 'json' ? undefined : request.body as Readable
    const answer = await app.services.ingest.ingest({
      format,
      onInvalid: (request.query as { on_invalid?: 'reject' | 'skip' }).on_invalid ?? 'reject',
      idempotencyKey: key,
      idempotencyPrincipal: idempotencyPrincipal(request.principal),
      ...(stream === undefined ? { body: request.body, bodySha256: jsonBodyHashes.get(request.raw) } : { stream }),
    }).catch((err: unknown) => {
      // An answer before the end of a streamed body: close the connection rather than read the rest.
      if (stream !== undefined && !stream.readableEnded) reply.header('connection', 'close')
      throw err
    })
    if (answer.replayed) reply.header('idempotent-replayed', 'true')
    return reply.code(answer.statusCode as 200).send(answer.body)
  })
}
