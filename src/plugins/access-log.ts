import fp from 'fastify-plugin'
import { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest, type HookHandlerDoneFunction, type RouteOptions } from 'fastify'
import type { Bindings, ChildLoggerOptions } from 'pino'
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
 * A request's logger (its lines carry the request id), made only when the request first logs:
 * Fastify gives every request a child logger, and making a pino child costs more than many a
 * cached read's whole handler, while most reads (LOG_REQUESTS other than `all`) log nothing.
 */
export class LazyChildLogger implements FastifyBaseLogger {
  private made?: FastifyBaseLogger

  constructor (private readonly parent: FastifyBaseLogger, private readonly bindings: Bindings, private readonly options: ChildLoggerOptions) {}

  private get logger (): FastifyBaseLogger {
    return this.made ??= this.parent.child(this.bindings, this.options)
  }

  get level (): string { return this.made?.level ?? this.options.level ?? this.parent.level }
  set level (level: string) { this.logger.level = level }

  fatal (...args: unknown[]): void { Reflect.apply(this.logger.fatal, this.logger, args) }
  error (...args: unknown[]): void { Reflect.apply(this.logger.error, this.logger, args) }
  warn (...args: unknown[]): void { Reflect.apply(this.logger.warn, this.logger, args) }
  info (...args: unknown[]): void { Reflect.apply(this.logger.info, this.logger, args) }
  debug (...args: unknown[]): void { Reflect.apply(this.logger.debug, this.logger, args) }
  trace (...args: unknown[]): void { Reflect.apply(this.logger.trace, this.logger, args) }
  silent (...args: unknown[]): void { Reflect.apply(this.logger.silent, this.logger, args) }

  child (bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.logger.child(bindings, options)
  }
}

/** Fastify's childLoggerFactory for LazyChildLogger. */
export function lazyChildLogger (logger: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  return new LazyChildLogger(logger, bindings, options)
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
