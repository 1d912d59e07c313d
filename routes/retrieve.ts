import type { App } from '../src/app.js'
import { problems } from './schemas/common.js'
import { RetrieveRequestSchema, RetrieveResponseSchema } from './schemas/retrieve.js'

export default async function retrieveRoutes (app: App): Promise<void> {
  app.post('/v1/retrieve', {
    config: { scope: 'read' },
    schema: {
      tags: ['retrieval'],
      summary: 'Time travel: feature values of entities at one past moment',
      description: [
        'For each entity and feature: the value with the greatest event_time <= as_of among those ingested at or before',
        'as_of_system_time (default now), ties going to the latest correction, with its event_time and a status:',
        'PRESENT, NULL_VALUE, NOT_FOUND, or OUTSIDE_TTL when the latest value is older than the feature\'s ttl.',
        'One result per requested entity, in request order, duplicates kept; values keyed by the reference as given.',
        'Features listed, or taken from a contract (`contract`: name or name@version; values keyed by the contract\'s references).',
      ].join('\n'),
      body: RetrieveRequestSchema,
      response: { 200: RetrieveResponseSchema, ...problems(400, 401, 403, 413, 422, 503) },
    },
  }, async (request) => app.services.retrieval.retrieve(request.body))
}
