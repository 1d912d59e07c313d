import Fastify, { type FastifyBaseLogger, type FastifyInstance, type RawReplyDefaultExpression, type RawRequestDefaultExpression, type RawServerDefault } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { AppDeps } from './context.js'
import errorsPlugin, { clientErrorProblem, sendProblem, toProblem } from './plugins/errors.js'
import swaggerPlugin from './plugins/swagger.js'
import metricsPlugin from './plugins/metrics.js'
import securityPlugin, { setAnswerHeaders } from './plugins/security.js'
import authPlugin from './plugins/auth.js'
import accessLogPlugin, { QuietRequestLogController, lazyChildLogger } from './plugins/access-log.js'
import { requestIdFor } from './plugins/request-id.js'
import { installOnlineFastPath } from './plugins/online-fast-path.js'
import databaseHealthPlugin from './plugins/database-health.js'
import requestEncodingPlugin from './plugins/request-encoding.js'
import { buildServices, type Services } from './services/index.js'
import routes from '../routes/index.js'

export type App = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>

declare module 'fastify' {
  interface FastifyInstance {
    deps: AppDeps
    services: Services
  }
}

export interface BuildOptions {
  /** A pino logger or logger options; false silences logs (tests). */
  logger?: boolean | Record<string, unknown>
  /** Start background jobs (monitors, view refresh, cache listener). Tests may turn them off. */
  backgroundJobs?: boolean
}

/**
 * Builds the whole service on open database connections: plugins first (errors, metrics,
 * swagger), then the services, then the routes. Used by server.ts and by every test.
 */
export async function buildApp (deps: AppDeps, opts: BuildOptions = {}): Promise<App> {
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: deps.config.BODY_LIMIT_BYTES,
    genReqId: (req) => requestIdFor(req.headers['x-request-id']),
    ajv: { customOptions: { allErrors: true, removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
    routerOptions: { maxParamLength: 512 },
    // malformed URLs are refused by the router before any handler: problem+json for them too
    // (no onRequest hook has run: the request id and security headers are set here)
    frameworkErrors: (err, request, reply) => {
      setAnswerHeaders(request, reply)
      void sendProblem(reply, toProblem(err, request))
    },
    // and what Node's HTTP parser refuses before there is a request (e.g. 431)
    clientErrorHandler: clientErrorProblem,
    trustProxy: deps.config.TRUST_PROXY,
    // a request's child logger is made when the request first logs (most reads never do)
    childLoggerFactory: lazyChildLogger,
    // LOG_REQUESTS=all keeps Fastify's two lines per request; otherwise the access-log plugin
    // writes one line per mutation and per failed request
    ...(deps.config.LOG_REQUESTS === 'all' ? {} : { logController: new QuietRequestLogController() }),
  }).withTypeProvider<TypeBoxTypeProvider>()

  app.decorate('deps', deps)
  // every answer carries x-request-id (set by the security plugin with its headers)

  await app.register(errorsPlugin)
  await app.register(metricsPlugin)
  await app.register(securityPlugin, { config: deps.config })
  await app.register(authPlugin, { config: deps.config })
  await app.register(accessLogPlugin, { config: deps.config })
  await app.register(databaseHealthPlugin)
  await app.register(requestEncodingPlugin)
  await app.register(swaggerPlugin)

  const services = await buildServices(deps, app, { backgroundJobs: opts.backgroundJobs ?? deps.config.BACKGROUND_JOBS })
  app.decorate('services', services)
  app.addHook('onClose', async () => { await services.close() })

  await app.register(routes)
  installOnlineFastPath(app, deps.config)
  return app
}
