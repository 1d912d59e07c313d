import fp from 'fastify-plugin'
import { createHash } from 'node:crypto'
import { getHeapStatistics } from 'node:v8'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import underPressure from '@fastify/under-pressure'
import helmet from '@fastify/helmet'
import cors from '@fastify/cors'
import type { Config } from '../config.js'
import { AppError } from '../domain/errors.js'
import { bearerToken } from './auth.js'
import { RATE_VERDICT, RateLimiter, tooManyRequests, type Verdict } from './rate-limit.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The rate limiter of this instance; null when RATE_LIMIT_MAX is 0. */
    rateLimiter: RateLimiter | null
  }
}

const PRESSURE_RETRY_AFTER_SECONDS = 10

/** Load shedding: answered instead of queueing work the process cannot finish. */
class OverloadedError extends AppError {
  constructor () {
    super(503, 'Service Unavailable', 'The service is overloaded (event loop lag or memory); retry shortly', { headers: { 'retry-after': String(PRESSURE_RETRY_AFTER_SECONDS) } })
  }
}

/** Longest key kept as it is in a bucket name (the auth check refuses longer ones anyway). */
const MAX_BUCKET_KEY = 512

/**
 * The rate limit bucket of a request: the presented key (so the bucket is known without a
 * database lookup and bad keys are limited too), else the client address. The key itself names
 * the bucket, as in the key lookup cache: no hashing per request; a longer header is digested,
 * so the store's memory stays bounded.
 */
export function rateLimitBucket (request: FastifyRequest): string {
  const token = bearerToken(request.headers.authorization)
  return rateLimitBucketOf(token, token === undefined ? request.ip : undefined)
}

/** The bucket of a request presenting `token` (undefined: none) from the client address `ip` (needed without a token). */
export function rateLimitBucketOf (token: string | undefined, ip: string | undefined): string {
  if (token === undefined) return `ip:${ip ?? ''}`
  return token.length <= MAX_BUCKET_KEY ? `key:${token}` : `key#${createHash('sha256').update(token).digest('base64url')}`
}

/** The rate limit headers of an answer, as header name and value pairs. */
export function rateLimitHeaders (v: Verdict): Array<[string, string]> {
  return [['x-ratelimit-limit', String(v.limit)], ['x-ratelimit-remaining', String(v.remaining)], ['x-ratelimit-reset', String(v.resetSeconds)]]
}

/**
 * The same CSP for the API and Swagger UI: Swagger UI loads only its own scripts and styles
 * (plus inline style attributes and data: images). No upgrade-insecure-requests, so the UI
 * keeps working over plain HTTP on a LAN address.
 */
const CSP_DIRECTIVES = {
  'default-src': ["'self'"],
  'base-uri': ["'self'"],
  'connect-src': ["'self'"],
  'font-src': ["'self'", 'data:'],
  'form-action': ["'self'"],
  'frame-ancestors': ["'none'"],
  'img-src': ["'self'", 'data:'],
  'object-src': ["'none'"],
  'script-src': ["'self'"],
  'script-src-attr': ["'none'"],
  'style-src': ["'self'", "'unsafe-inline'"],
}

/**
 * The options given to @fastify/helmet: its defaults, with the CSP above and without
 * Strict-Transport-Security, which the plugin adds to answers over HTTPS only (HSTS below).
 */
const HELMET_OPTIONS = { contentSecurityPolicy: { useDefaults: false, directives: CSP_DIRECTIVES }, strictTransportSecurity: false }

/**
 * The headers @fastify/helmet puts on an answer, rendered once: helmet's headers depend only on
 * its options (no CSP nonces here), but @fastify/helmet rebuilds the whole helmet middleware
 * from its options on every request (two hooks, ~15-25 µs, the largest cost of a cached online
 * read). So @fastify/helmet answers one request of a throwaway instance at start, and the
 * headers it added (those a bare instance does not send) are what every answer gets.
 */
export async function renderHelmetHeaders (options: Record<string, unknown> = HELMET_OPTIONS): Promise<Array<[string, string]>> {
  const probe = async (withHelmet: boolean): Promise<Record<string, unknown>> => {
    const app = Fastify({ logger: false })
    if (withHelmet) await app.register(helmet, { global: true, ...options })
    app.get('/', async () => 'probe')
    const res = await app.inject({ method: 'GET', url: '/' })
    await app.close()
    return res.headers
  }
  const [bare, helmeted] = [await probe(false), await probe(true)]
  const perAnswer = new Set(['date', 'connection', 'keep-alive', 'content-length', 'content-type', 'transfer-encoding'])
  const rendered = Object.entries(helmeted).filter(([k, v]) => !perAnswer.has(k) && bare[k] !== v).map(([k, v]): [string, string] => [k, String(v)])
  if (rendered.length === 0) throw new Error('@fastify/helmet rendered no headers')
  return rendered
}

/**
 * The security headers of the JSON API's answers: the set OWASP's REST Security Cheat Sheet
 * gives for API responses, with a CSP that allows nothing (a JSON answer loads no resource and
 * may not be framed). helmet's full set (legacy X-XSS-Protection, X-Download-Options, DNS
 * prefetch, Flash cross-domain policies, Origin-Agent-Cluster, COOP, a CSP for pages) is made for
 * HTML pages: it goes on Swagger UI's answers, not on every JSON answer, where its ~600 extra
 * bytes cost every client of the hot read path.
 */
export const API_SECURITY_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ['cache-control', 'no-store'],
  ['content-security-policy', "default-src 'none'; frame-ancestors 'none'"],
  ['x-content-type-options', 'nosniff'],
  ['x-frame-options', 'DENY'],
]

/**
 * Strict-Transport-Security, on answers sent over HTTPS only: RFC 6797 (7.2) forbids it over
 * plain HTTP, where a browser ignores it anyway. Behind a TLS-terminating proxy the request's
 * protocol is the proxy's X-Forwarded-Proto when TRUST_PROXY is set.
 */
export const HSTS: readonly [string, string] = ['strict-transport-security', 'max-age=31536000; includeSubDomains']

/** Where Swagger UI and the OpenAPI document are served: HTML pages get helmet's full set. */
export const DOCUMENTATION_PREFIX = '/documentation'

/**
 * The request id and the security headers every answer carries: the API set, or `pageHeaders`
 * (helmet's, rendered at start) on Swagger UI's pages; HSTS over HTTPS. Set by the first
 * onRequest hook, and for the answers given before any hook runs (URLs the router refuses).
 */
export function setAnswerHeaders (request: FastifyRequest, reply: FastifyReply, pageHeaders: ReadonlyArray<readonly [string, string]> = API_SECURITY_HEADERS): void {
  reply.header('x-request-id', request.id)
  const headers = request.url.startsWith(DOCUMENTATION_PREFIX) ? pageHeaders : API_SECURITY_HEADERS
  for (let i = 0; i < headers.length; i++) reply.header(headers[i][0], headers[i][1])
  if (request.protocol === 'https') reply.header(HSTS[0], HSTS[1])
}

/**
 * Cross-cutting protection, in the order a request meets it: the request id and security
 * headers (the API set on JSON answers, helmet's rendered once on Swagger UI's pages; on every
 * answer including refusals; HSTS over HTTPS), load shedding (@fastify/under-pressure), rate
 * limits per key or address (RateLimiter, before authentication, so bad keys are limited too)
 * and, only when configured, CORS (@fastify/cors). Body size limits are Fastify's own
 * (bodyLimit, 413).
 */
async function securityPlugin (app: FastifyInstance, opts: { config: Config }): Promise<void> {
  const c = opts.config
  const pageHeaders = await renderHelmetHeaders()
  app.addHook('onRequest', (request, reply, done) => {
    setAnswerHeaders(request, reply, pageHeaders)
    done()
  })

  const heapLimit = c.PRESSURE_MAX_HEAP_USED_BYTES ?? Math.floor(getHeapStatistics().heap_size_limit * 0.9)
  if (c.PRESSURE_MAX_EVENT_LOOP_DELAY_MS > 0 || heapLimit > 0) {
    // No health check: it would run against the database, and an unreachable database must not
    // stop the cached online reads (readiness is /ready's job).
    await app.register(underPressure, {
      maxEventLoopDelay: c.PRESSURE_MAX_EVENT_LOOP_DELAY_MS,
      maxHeapUsedBytes: heapLimit,
      customError: OverloadedError,
      retryAfter: PRESSURE_RETRY_AFTER_SECONDS,
    })
  }

  if (c.RATE_LIMIT_MAX > 0) {
    // every answer says where its bucket stands; a request over the limit is refused with 429
    // and Retry-After before anything else runs (authentication included)
    const limiter = new RateLimiter(c.RATE_LIMIT_MAX, c.RATE_LIMIT_WINDOW_MS)
    app.decorate('rateLimiter', limiter)
    app.addHook('onRequest', (request, reply, done) => {
      const raw = request.raw as { [RATE_VERDICT]?: Verdict }
      const v = raw[RATE_VERDICT] ?? limiter.hit(rateLimitBucket(request))
      for (const [name, value] of rateLimitHeaders(v)) reply.header(name, value)
      done(v.allowed ? undefined : tooManyRequests(v, c.RATE_LIMIT_WINDOW_MS))
    })
  } else {
    app.decorate('rateLimiter', null)
  }

  if (c.CORS_ORIGINS) {
    const origins = c.CORS_ORIGINS.split(',').map((o) => o.trim()).filter(Boolean)
    await app.register(cors, {
      origin: origins.includes('*') ? '*' : origins,
      methods: ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE'],
      allowedHeaders: ['Authorization', 'Content-Type', 'Accept', 'Idempotency-Key', 'X-Request-Id'],
      exposedHeaders: ['Retry-After', 'X-Request-Id', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset', 'Location'],
      maxAge: 600,
    })
  }
}

export default fp(securityPlugin, { name: 'security', dependencies: ['errors'] })
