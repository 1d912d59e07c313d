import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import { Problem } from '../../routes/schemas/common.js'
import { DOCUMENTATION_PREFIX } from './security.js'

export const API_TAGS = [
  { name: 'features', description: 'Feature definitions: registry, versions, metadata' },
  { name: 'contracts', description: 'Contracts: named, versioned sets of features and the rules a training set must satisfy' },
  { name: 'values', description: 'Ingestion of feature values (bitemporal, append-only)' },
  { name: 'online', description: 'Latest values, served through the in-process cache' },
  { name: 'retrieval', description: 'Time travel and point-in-time training sets' },
  { name: 'pipelines', description: 'Reproducible pipeline runs' },
  { name: 'monitoring', description: 'Drift checks, monitors, statistics' },
  { name: 'lineage', description: 'Dependencies between features, and what uses them' },
  { name: 'admin', description: 'API keys and audit log' },
  { name: 'system', description: 'Health, readiness, metrics, storage' },
]

async function swaggerPlugin (app: FastifyInstance): Promise<void> {
  app.addSchema(Problem)
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Feature Store',
        version: '0.1.0',
        description: 'Feature definitions and contracts, bitemporal feature values, point-in-time retrieval and training sets, reproducible pipeline runs, drift monitoring and lineage. Every error is application/problem+json (RFC 9457).',
      },
      servers: [{ url: '/' }],
      tags: API_TAGS,
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'API key: Authorization: Bearer <key>' } },
      },
      security: [{ bearer: [] }],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (json.$id as string) ?? `def-${i}` },
  })
  await app.register(swaggerUi, { routePrefix: DOCUMENTATION_PREFIX, uiConfig: { docExpansion: 'list', deepLinking: true } })
}

export default fp(swaggerPlugin, { name: 'swagger', dependencies: ['errors'] })
