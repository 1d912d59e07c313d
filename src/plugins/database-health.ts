import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import { withHook } from './route-hooks.js'

/** The header on answers given while the database is unreachable (from caches, so maybe stale). */
export const STALE_HEADER = 'x-stale'

/**
 * Degraded mode: connection errors met by any request mark the database down (see
 * DatabaseHealth); while it is down, every successful answer that is not a public system
 * route carries `x-stale: database-unavailable`, since it can only have come from a cache
 * (the online values, the API key lookups) that no write could have invalidated.
 */
async function databaseHealthPlugin (app: FastifyInstance): Promise<void> {
  app.addHook('onError', async (_request, _reply, err) => {
    app.services.databaseHealth.reportFailure(err)
  })
  // a hook of each non-public route (known when it is registered), not of every request
  const markStale = (_request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void): void => {
    if (app.services.databaseHealth.unavailableSince !== null && reply.statusCode < 400) reply.header(STALE_HEADER, 'database-unavailable')
    done(null, payload)
  }
  app.addHook('onRoute', (route: RouteOptions) => {
    if (route.config?.access !== 'public') route.onSend = withHook(route.onSend, markStale) as RouteOptions['onSend']
  })
}

export default fp(databaseHealthPlugin, { name: 'database-health', dependencies: ['auth'] })
