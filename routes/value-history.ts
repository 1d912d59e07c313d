import { Type } from 'typebox'
import type { App } from '../src/app.js'
import { AppError } from '../src/domain/errors.js'
import { formatTimestamp } from '../src/domain/time.js'
import { chooseOutputFormat, csvCell } from '../src/domain/training-output.js'
import type { ValueHistoryItem } from './schemas/value-history.js'
import { problems } from './schemas/common.js'
import { FeatureNameParams } from './schemas/stats.js'
import { ValueHistory, ValueHistoryQuery } from './schemas/value-history.js'
import { streamReleasing } from './streams.js'

const COLUMNS = ['entity_id', 'event_time', 'ingested_at', 'ingested_at_us', 'value', 'status', 'superseded'] as const

/** GET /v1/features/{name}/values: the stored rows of a feature, corrections included. */
export default async function valueHistoryRoutes (app: App): Promise<void> {
  app.get('/v1/features/:name/values', {
    schema: {
      tags: ['values'],
      summary: 'The stored values of a feature, corrections included (bitemporal history)',
      description: 'Every stored row of the feature version with its event_time and ingested_at, ordered by entity, event_time, ingested_at. '
        + 'What a point-in-time answer was chosen from: `superseded` marks a row that a later correction of the same entity and event_time replaces; `corrections=latest` leaves those out. '
        + '`as_of_system_time` shows the history as the store knew it then (rows ingested at or before it). '
        + 'For a market-wide feature, entity_id reads the rows of its shared entity id (`stored_under`).\n\n'
        + 'By Accept: application/json (default) answers one page of `limit` rows with `next_cursor`; application/x-ndjson and text/csv stream every row of the listing (after `cursor`, if given; `limit` does not apply) in constant memory, '
        + 'with the listing\'s cutoff in the `x-as-of-system-time` header.',
      params: FeatureNameParams,
      querystring: ValueHistoryQuery,
      response: {
        200: {
          description: 'A page (JSON), or every row (NDJSON, CSV)',
          content: {
            'application/json': { schema: ValueHistory },
            'application/x-ndjson': { schema: Type.String({ description: 'one item per line: {entity_id, event_time, ingested_at, ingested_at_us, value, status, superseded}' }) },
            'text/csv': { schema: Type.String({ description: `RFC 4180 with a header line (${COLUMNS.join(',')}); a null value is an empty cell` }) },
          },
        },
        ...problems(400, 401, 403, 404, 406, 429, 503),
      },
    },
  }, async (request, reply) => {
    const format = chooseOutputFormat(request.headers.accept)
    if (!format) throw new AppError(406, 'Not Acceptable', `Accept ${request.headers.accept} names no format this route produces: application/json, application/x-ndjson or text/csv`)
    if (format === 'json') return reply.type('application/json; charset=utf-8').send(await app.services.valueHistory.history(request.params.name, request.query))
    const { listing, pages } = await app.services.valueHistory.export(request.params.name, request.query)
    // The first batch is read before answering, so that a failure of the statement is still a problem+json.
    const first = await pages.next()
    const line = format === 'csv' ? csvLine : ndjsonLine
    async function * body (release: () => Promise<void>): AsyncGenerator<string> {
      try {
        if (format === 'csv') yield `${COLUMNS.join(',')}\n`
        for (let next = first; next.done !== true; next = await pages.next()) {
          let text = ''
          for (const item of next.value) text += line(item)
          yield text
        }
      } finally {
        await release()
      }
    }
    reply.header('x-as-of-system-time', formatTimestamp(listing.cutoffMs))
    reply.header('x-feature-version', `${listing.def.name}@${listing.def.version}`)
    reply.type(format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8')
    // a stream is sent as is; the 200 schema documents it and serialises nothing
    return reply.send(streamReleasing(body, async () => pages.return(undefined)) as never)
  })
}

function ndjsonLine (item: ValueHistoryItem): string {
  return `${JSON.stringify(item)}\n`
}

function csvLine (item: ValueHistoryItem): string {
  return `${csvCell(item.entity_id)},${item.event_time},${item.ingested_at},${item.ingested_at_us},${csvCell(item.value)},${item.status},${item.superseded ? 'true' : 'false'}\n`
}
