import { Type } from 'typebox'
import type { App } from '../src/app.js'
import { problems } from './schemas/common.js'
import { migrationsCurrent } from '../db/migrate.js'
import { describeSystem } from '../db/system.js'
import { SystemInfo } from './schemas/system.js'
import { ServiceUnavailableError } from '../src/domain/errors.js'

export default async function systemRoutes (app: App): Promise<void> {
  app.get('/health', {
    schema: {
      tags: ['system'], summary: 'Liveness: the process is up (no database needed)', security: [],
      response: { 200: Type.Object({ status: Type.Literal('ok') }) },
    },
  }, async () => ({ status: 'ok' as const }))

  app.get('/ready', {
    schema: {
      tags: ['system'], summary: 'Readiness: database reachable and migrations current', security: [],
      response: { 200: Type.Object({ status: Type.Literal('ready'), storage_mode: Type.String() }), ...problems(503) },
    },
  }, async () => {
    let current = false
    try {
      current = await migrationsCurrent(app.deps.sql)
    } catch {
      throw new ServiceUnavailableError('The database is not reachable')
    }
    if (!current) throw new ServiceUnavailableError('Database migrations are not current')
    return { status: 'ready' as const, storage_mode: app.deps.storageMode }
  })

  app.get('/metrics', {
    schema: {
      tags: ['system'], summary: 'Prometheus metrics', produces: ['text/plain'], security: [],
      response: { 200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } } },
    },
  }, async (_request, reply) => {
    reply.type(app.metrics.contentType)
    return app.metrics.metrics()
  })

  app.get('/v1/system', {
    schema: {
      tags: ['system'],
      summary: 'Versions, storage mode, hypertables, chunks, compression and aggregates',
      description: 'The database behind the service: PostgreSQL and TimescaleDB versions, the storage mode, each time-series table (hypertable: chunk count, compressed chunks, compression ratio), the statistics aggregates with their last refresh, and the storage jobs (compression, retention, refresh policies) with their last run. The same shape in both storage modes.',
      response: { 200: SystemInfo, ...problems(401, 503) },
    },
  }, async () => describeSystem(app.deps.sql, app.deps.storageMode))
}
