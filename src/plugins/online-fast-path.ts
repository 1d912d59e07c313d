import type { IncomingMessage, ServerResponse } from 'node:http'
import type { TLSSocket } from 'node:tls'
import { performance } from 'node:perf_hooks'
import { Counter } from 'prom-client'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.js'
import { resolveAuthMode, routeAccess, scopeSatisfies, type Scope } from '../domain/access.js'
import { entityIdProblem } from '../domain/names.js'
import { splitRefs } from '../../routes/online.js'
import { bearerToken } from './auth.js'
import { RATE_VERDICT, type Verdict } from './rate-limit.js'
import { requestIdFor } from './request-id.js'
import type { Series } from './metrics.js'
import { API_SECURITY_HEADERS, rateLimitBucketOf, rateLimitHeaders } from './security.js'

const PREFIX = '/v1/online/'
const ROUTE = '/v1/online/:entity_id'
/** Entity ids the router takes as they are (no percent-decoding, no character with a meaning in a path). */
const PLAIN_ENTITY = /^[A-Za-z0-9._~:@!$'()*+,=-]{1,256}$/
/** `features=` with nothing to decode (names, versions, commas), and no other parameter. */
const PLAIN_QUERY = /^features=[A-Za-z0-9_.@,-]+$/
const JSON_TYPE = 'application/json; charset=utf-8'

type Handler = (req: IncomingMessage, res: ServerResponse) => void

/**
 * The online fast path: a cached GET /v1/online/{entity}?features=… answered before Fastify's
 * routing, when the answer is certain to be the one the route would give: a plain URL (nothing
 * to decode, no other parameter), a valid entity id and feature list, a key this instance has
 * checked lately with the scope the route needs, a request the rate limit allows, the database
 * reachable, no load shedding, and every value in the cache. The answer carries the same
 * headers (request id, the API's security headers, rate limit headers) and body, is observed in
 * the same duration histogram series, counts as the same cache hits (a read it hands on counts
 * none: the route counts it), and is counted in online_fast_path_answers_total.
 *
 * Anything else goes on to Fastify, which answers it as always (errors, misses, HEAD, contracts,
 * percent-encoded URLs, ...). A request the fast path counted against the rate limit carries its
 * verdict, so it is not counted again. Off with ONLINE_FAST_PATH=off, and when an answer could
 * need more than the above: the access log of every request (LOG_REQUESTS=all) or CORS.
 *
 * Why: Fastify's per-request work (request and reply objects, hook chains, validation, the
 * router) cost about 1.5x the CPU of a bare route on the cached online read, the hottest path
 * of the service; answered here it costs about as much as a bare Fastify route (README,
 * benchmarks).
 */
export function onlineFastPath (app: FastifyInstance, config: Config): ((req: IncomingMessage, res: ServerResponse) => boolean) | undefined {
  if (config.ONLINE_FAST_PATH === 'off' || config.LOG_REQUESTS === 'all' || config.CORS_ORIGINS) return undefined
  const authOn = resolveAuthMode(config).enabled
  const access = routeAccess({ method: 'GET', url: ROUTE }) as Scope
  const trustProxy = config.TRUST_PROXY
  const limiter = app.rateLimiter
  // @fastify/under-pressure's check, when load shedding is on
  const isUnderPressure = app.hasDecorator('isUnderPressure') ? app.isUnderPressure : undefined
  const online = app.services.online
  const apiKeys = app.services.apiKeys
  const health = app.services.databaseHealth
  // the route's series of 200s, made at the first answer (as the route's own hook does)
  let series: Series | undefined
  let closing = false
  app.addHook('preClose', (done) => {
    closing = true
    done()
  })
  let answered = 0
  // eslint-disable-next-line no-new
  new Counter({ name: 'online_fast_path_answers_total', help: 'Cached online GETs answered before routing (ONLINE_FAST_PATH)', registers: [app.metrics], collect () { this.reset(); this.inc(answered) } })

  return (req, res) => {
    if (req.method !== 'GET' || closing) return false
    const url = req.url
    if (url === undefined || !url.startsWith(PREFIX)) return false
    const t0 = performance.now()
    const q = url.indexOf('?', PREFIX.length)
    if (q < 0) return false
    const entity = url.slice(PREFIX.length, q)
    if (!PLAIN_ENTITY.test(entity) || !PLAIN_QUERY.test(url.slice(q + 1))) return false
    if (entityIdProblem(entity) !== undefined) return false
    const headers = req.headers
    // a body (never read by this route), HTTPS (HSTS) or a proxy's word on it: left to Fastify
    if (headers['content-length'] !== undefined || headers['transfer-encoding'] !== undefined) return false
    if ((req.socket as TLSSocket).encrypted === true || (trustProxy && headers['x-forwarded-proto'] !== undefined)) return false
    if (health.unavailableSince !== null || (isUnderPressure !== undefined && isUnderPressure())) return false
    const token = bearerToken(headers.authorization)
    let verdict: Verdict | undefined
    if (limiter !== null) {
      // without a key the bucket is the client address, which a trusted proxy names
      if (token === undefined && trustProxy) return false
      verdict = limiter.hit(rateLimitBucketOf(token, token === undefined ? req.socket.remoteAddress : undefined))
      ;(req as { [RATE_VERDICT]?: Verdict })[RATE_VERDICT] = verdict
      if (!verdict.allowed) return false
    }
    if (authOn) {
      if (token === undefined || token === '' || token.length > 512) return false
      const principal = apiKeys.cachedPrincipal(token)
      if (principal == null || !scopeSatisfies(principal.scopes, access)) return false
    }
    // parsed (and remembered by splitRefs) only for a request the route would get to
    let refs: string[]
    try {
      refs = splitRefs(url.slice(q + 10))
    } catch {
      return false
    }
    const text = online.readCachedJson([entity], refs, true)
    if (text === undefined) return false
    const body = text[0]
    const out: string[] = ['x-request-id', requestIdFor(headers['x-request-id'])]
    for (let i = 0; i < API_SECURITY_HEADERS.length; i++) out.push(API_SECURITY_HEADERS[i][0], API_SECURITY_HEADERS[i][1])
    if (verdict !== undefined) for (const [k, v] of rateLimitHeaders(verdict)) out.push(k, v)
    out.push('content-type', JSON_TYPE, 'content-length', String(Buffer.byteLength(body)))
    res.writeHead(200, out)
    res.end(body)
    answered++
    app.requestDurations.observe(series ??= app.requestDurations.series({ method: 'GET', route: ROUTE, status: '200' }), (performance.now() - t0) / 1000)
    return true
  }
}

/**
 * Puts the online fast path (see onlineFastPath) in front of Fastify's request handler on the
 * app's HTTP server; the server itself stays the one Fastify made, with its settings. (When HOST
 * names several addresses, e.g. localhost for 127.0.0.1 and ::1, Fastify serves the others from
 * servers of their own, without the fast path: their answers are the route's.)
 */
export function installOnlineFastPath (app: FastifyInstance, config: Config): void {
  const fast = onlineFastPath(app, config)
  if (fast === undefined) return
  const server = app.server
  const [fastify] = server.listeners('request') as Handler[]
  if (fastify === undefined || server.listenerCount('request') !== 1) throw new Error('the online fast path expects one request handler on the server')
  server.removeListener('request', fastify)
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    let served = false
    try {
      served = fast(req, res)
    } catch (err) {
      if (res.headersSent) {
        res.destroy(err as Error)
        return
      }
      app.log.error({ err }, 'online fast path failed; the request goes to the route')
    }
    if (!served) fastify(req, res)
  })
}
