import { streamReleasing } from './streams.js'
import { Type } from 'typebox'
import type { App } from '../src/app.js'
import { AppError } from '../src/domain/errors.js'
import { chooseOutputFormat, rowRenderer, type AnsweredRows } from '../src/domain/training-output.js'
import { formatTimestamp } from '../src/domain/time.js'
import { problems } from './schemas/common.js'
import { useEntityRowsJsonParser } from './entity-rows-body.js'
import { TRAINING_SET_HEADERS, TrainingSetJson, TrainingSetRequestSchema, type TrainingSetRequest } from './schemas/training-sets.js'

/** Rows rendered per chunk written to the response. */
const CHUNK_ROWS = 512

export default async function trainingSetRoutes (app: App): Promise<void> {
  // entity_rows are read from the body's bytes into columns (routes/entity-rows-body.ts)
  const inlineRows = useEntityRowsJsonParser(app, TrainingSetRequestSchema)

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
    const resolved = await service.resolve(request.body, inlineRows(request.body))
    const blocks = service.answeredBlocks(resolved)[Symbol.asyncIterator]()
    // The first block is computed before answering, so that its failure is still a problem+json.
    const first = await blocks.next()
    const outputFormat = format
    const layout = { columns: resolved.columns, extraColumns: resolved.extraColumns, featureColumns: resolved.featureColumns, includeMetadata: resolved.includeMetadata }
    const renderer = rowRenderer(format, layout)
    // the rows' text written on a render thread (TRAINING_RENDER_THREADS) while this thread reads
    // and merges the next block; pass-through columns are only here, so such rows are written here
    async function * body (release: () => Promise<void>): AsyncGenerator<string> {
      const session = resolved.extraColumns.length === 0 ? app.services.renderPool.open(outputFormat, layout) : undefined
      try {
        yield renderer.start()
        let next: IteratorResult<AnsweredRows> = first
        while (!next.done) {
          if (session !== undefined) yield * session.render(next.value)
          else {
            const size = next.value.answers.block.size
            for (let from = 0; from < size; from += CHUNK_ROWS) yield renderer.rows(next.value, from, Math.min(size, from + CHUNK_ROWS))
          }
          next = await blocks.next()
        }
        yield renderer.end()
      } finally {
        session?.close()
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
