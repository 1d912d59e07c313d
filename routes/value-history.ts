import type { App } from '../src/app.js'
import { problems } from './schemas/common.js'
import { FeatureNameParams } from './schemas/stats.js'
import { ValueHistory, ValueHistoryQuery } from './schemas/value-history.js'

/** GET /v1/features/{name}/values: the stored rows of a feature, corrections included. */
export default async function valueHistoryRoutes (app: App): Promise<void> {
  app.get('/v1/features/:name/values', {
    schema: {
      tags: ['values'],
      summary: 'The stored values of a feature, corrections included (bitemporal history)',
      description: 'Every stored row of the feature version with its event_time and ingested_at, ordered by entity, event_time, ingested_at, in pages (cursor). '
        + 'What a point-in-time answer was chosen from: `superseded` marks a row that a later correction of the same entity and event_time replaces; `corrections=latest` leaves those out. '
        + '`as_of_system_time` shows the history as the store knew it then (rows ingested at or before it). '
        + 'For a market-wide feature, entity_id reads the rows of its shared entity id (`stored_under`).',
      params: FeatureNameParams,
      querystring: ValueHistoryQuery,
      response: { 200: ValueHistory, ...problems(400, 401, 403, 404, 429, 503) },
    },
  }, async (request) => app.services.valueHistory.history(request.params.name, request.query))
}
