import type { App } from '../src/app.js'
import { problems } from './schemas/common.js'
import { FeatureNameParams } from './schemas/stats.js'
import { EntityInventory, EntityInventoryQuery } from './schemas/entity-inventory.js'

/** GET /v1/features/{name}/entities: the entities a feature has values for, and how fresh each is. */
export default async function entityInventoryRoutes (app: App): Promise<void> {
  app.get('/v1/features/:name/entities', {
    schema: {
      tags: ['values'],
      summary: 'The entities a feature has values for, and how fresh each is',
      description: 'One item per entity with values of the feature version: its earliest and latest event_time, the latest value and when it was ingested, its age and whether it is stale (older than `stale_after`, by default the feature\'s ttl). Ordered by entity_id, in pages (cursor). '
        + 'Read from the online table (what online reads answer from) and the earliest-event index, both kept by POST /v1/values in the values\' transaction: values written into the database by hand bypass them, as they bypass online reads.',
      params: FeatureNameParams,
      querystring: EntityInventoryQuery,
      response: { 200: EntityInventory, ...problems(400, 401, 403, 404, 429, 503) },
    },
  }, async (request) => app.services.entityInventory.inventory(request.params.name, request.query))
}
