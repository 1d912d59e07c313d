import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify'
import { UnauthorizedError, ForbiddenError } from '../domain/errors.js'
import { isMutation, resolveAuthMode, routeAccess, scopeSatisfies, strongestScope, type RouteAccess, type Scope } from '../domain/access.js'
import type { Principal } from '../services/api-keys.js'
import type { Config } from '../config.js'
import { withHook } from './route-hooks.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The scope a route demands, when the default by method is wrong: read-only POSTs
     * (queries with a body) declare `config: { scope: 'read' }`.
     */
    scope?: RouteAccess
    /** Set by the auth plugin: what the route demands, after defaults. */
    access?: RouteAccess
  }
  interface FastifyRequest {
    /** The caller, once authenticated; null on public routes and when auth is off. */
    principal: Principal | null
    /** Extra facts a route adds to its audit entry (e.g. the id of what it created). */
    auditDetail: Record<string, unknown> | null
  }
}

const AUTHENTICATED = Symbol('authenticated')
type Marked = FastifyRequest & { [AUTHENTICATED]?: boolean }
type Hook = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void

const MAX_AUDIT_URL = 2048

/** The key of an `Authorization: Bearer <key>` header; undefined when there is none. */
export function bearerToken (header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  // the usual form, without a regular expression (this runs twice per request)
  if (header.startsWith('Bearer ') && header.length > 7 && !/\s/.test(header.slice(7))) return header.slice(7)
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(header)
  return m ? m[1] : ''
}

/**
 * Access control for every route, including routes added later: each route gets its scope
 * when registered (declared in `config.scope`, else by method and path; see routeAccess) and
 * the scope is written into the route's OpenAPI `security`, so the document says what every
 * operation needs. Requests carry `Authorization: Bearer <key>`: no or a bad key -> 401, a
 * key without the scope -> 403. Every mutation that got past authentication (whatever its
 * outcome) is written to the audit log after the answer is sent.
 *
 * The checks are hooks of the routes themselves, attached when each route is registered with
 * its scope already known: public routes run none, reads run the key check only, and only
 * mutations carry the audit hook.
 */
async function authPlugin (app: FastifyInstance, opts: { config: Config }): Promise<void> {
  const mode = resolveAuthMode(opts.config)
  if (mode.enabled) {
    app.log.info({ auth: 'on', reason: mode.reason }, 'authentication is ON: API keys (Authorization: Bearer <key>) are required')
    if (!opts.config.ADMIN_API_KEY) app.log.info('ADMIN_API_KEY is not set: only keys already in the database are accepted; set it to create the first keys')
  } else {
    app.log.warn({ auth: 'off', reason: mode.reason }, `AUTHENTICATION IS OFF (${mode.reason}): anyone who can reach this port can read, write and administer`)
  }

  app.decorateRequest('principal', null)
  app.decorateRequest('auditDetail', null)

  /** The verdict on a request's principal for a route that demands `access`: an error, or none. */
  const admit = (request: FastifyRequest, principal: Principal | null, access: Scope): Error | undefined => {
    if (!principal) return new UnauthorizedError('The API key is unknown, revoked or expired')
    request.principal = principal;
    (request as Marked)[AUTHENTICATED] = true
    if (!scopeSatisfies(principal.scopes, access)) {
      return new ForbiddenError(`This operation needs the '${access}' scope; the key '${principal.name}' has '${strongestScope(principal.scopes) ?? 'none'}'`)
    }
    return undefined
  }
  /**
   * The key check of a route that demands `access`. A key this instance looked up lately is
   * checked without waiting (no promise on the hot read path); others are looked up.
   */
  const authenticate = (access: Scope): Hook => (request, _reply, done) => {
    const token = bearerToken(request.headers.authorization)
    if (token === undefined) return done(new UnauthorizedError('An API key is required: send Authorization: Bearer <key>'))
    if (token === '' || token.length > 512) return done(new UnauthorizedError('The Authorization header is malformed: send Authorization: Bearer <key>'))
    const known = app.services.apiKeys.cachedPrincipal(token)
    if (known !== undefined) return done(admit(request, known, access))
    app.services.apiKeys.authenticate(token).then((principal) => { done(admit(request, principal, access)) }, done)
  }
  /** With auth off every request is let through as anonymous (and so audited when it mutates). */
  const letThrough: Hook = (request, _reply, done) => {
    (request as Marked)[AUTHENTICATED] = true
    done()
  }
  const audit = (access: RouteAccess, route: string): Hook => (request, reply, done) => {
    done()
    if (!(request as Marked)[AUTHENTICATED] || !isMutation(request.method, access)) return
    const p = request.principal
    void app.services.audit.record({
      keyId: p?.keyId ?? null,
      keyName: p?.name ?? null,
      method: request.method,
      route,
      url: request.url.length > MAX_AUDIT_URL ? `${request.url.slice(0, MAX_AUDIT_URL)}...` : request.url,
      params: {
        path: request.params ?? {},
        query: request.query ?? {},
        ...(request.auditDetail ? { detail: request.auditDetail } : {}),
      },
      status: reply.statusCode,
      requestId: String(request.id),
      ip: request.ip,
      durationMs: Math.round(reply.elapsedTime * 1000) / 1000,
    })
  }

  app.addHook('onRoute', (route: RouteOptions) => {
    const access = routeAccess({ method: String(route.method), url: route.url, declared: route.config?.scope, security: route.schema?.security })
    route.config = { ...route.config, access }
    if (route.schema && !(route.schema as { hide?: boolean }).hide) {
      const note = access === 'public' ? 'No API key needed.' : `Needs an API key with scope \`${access}\`${access === 'admin' ? '' : ' or stronger'}.`
      route.schema = {
        ...route.schema,
        security: access === 'public' ? [] : [{ bearer: [access] }],
        description: route.schema.description ? `${route.schema.description}\n\n${note}` : note,
      }
    }
    if (access === 'public') return
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    const mutates = methods.some((m) => isMutation(m, access))
    if (mode.enabled) route.onRequest = withHook(route.onRequest, authenticate(access)) as RouteOptions['onRequest']
    else if (mutates) route.onRequest = withHook(route.onRequest, letThrough) as RouteOptions['onRequest']
    if (mutates) route.onResponse = withHook(route.onResponse, audit(access, route.url)) as RouteOptions['onResponse']
  })
}

export default fp(authPlugin, { name: 'auth', dependencies: ['errors'] })
