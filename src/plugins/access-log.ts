import fp from 'fastify-plugin'
import { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest, type HookHandlerDoneFunction, type RouteOptions } from 'fastify'
import { isMutation } from '../domain/access.js'
import type { Config } from '../config.js'
import { withHook } from './route-hooks.js'

type Hook = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void

function completed (request: FastifyRequest, reply: FastifyReply): void {
  request.log.info({ req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed')
}

/** Logs every answer of the route. */
const logAll: Hook = (request, reply, done) => {
  completed(request, reply)
  done()
}

/** Logs the failed answers of the route (status >= 400). */
const logFailed: Hook = (request, reply, done) => {
  if (reply.statusCode >= 400) completed(request, reply)
  done()
}

/**
 * Fastify's request logging without its two lines per request (received, completed): with
 * LOG_REQUESTS other than `all` the plugin below writes the access log. Answers that failed to
 * be sent, stream errors and the like are still logged by Fastify.
 */
export class QuietRequestLogController extends LogController {
  override incomingRequest (): void {}
  override requestCompleted (error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (error) super.requestCompleted(error, request, reply)
  }
}

/**
 * The access log (LOG_REQUESTS). `all`: Fastify's own two lines per request (app.ts leaves its
 * request logging on; else it gives Fastify the QuietRequestLogController). Otherwise one `request completed` line (method, URL, status, time,
 * request id) for each failed answer (status >= 400) and, with `mutations` (the default), for
 * every mutation whatever its outcome; successful reads write nothing. The hooks belong to the
 * routes, chosen when each is registered; URLs no route matches are logged by the not-found
 * handler (errors plugin).
 */
async function accessLogPlugin (app: FastifyInstance, opts: { config: Config }): Promise<void> {
  const mode = opts.config.LOG_REQUESTS
  if (mode === 'all') return
  app.addHook('onRoute', (route: RouteOptions) => {
    const access = route.config?.access ?? 'public'
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    const mutates = mode === 'mutations' && methods.some((m) => isMutation(m, access))
    route.onResponse = withHook(route.onResponse, mutates ? logAll : logFailed) as RouteOptions['onResponse']
  })
}

export default fp(accessLogPlugin, { name: 'access-log', dependencies: ['auth'] })
