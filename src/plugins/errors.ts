import fp from 'fastify-plugin'
import type { Duplex } from 'node:stream'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AppError, fieldOfPath, pointerSegment, type FieldError } from '../domain/errors.js'

export const PROBLEM_CONTENT_TYPE = 'application/problem+json'

export interface Problem {
  type: string
  title: string
  status: number
  detail: string
  instance?: string
  request_id?: string
  errors?: FieldError[]
  [key: string]: unknown
}

const PG_UNAVAILABLE = new Set(['57P01', '57P02', '57P03', '08000', '08003', '08006', '08001', '08004', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT', 'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT'])

/** Node's socket error codes among PG_UNAVAILABLE: the driver's come from a socket call (syscall set). */
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT'])

/**
 * The client hung up: its upload was cut off ("aborted" from the HTTP request stream: ECONNRESET
 * with no socket call named), or the answer's stream was closed before its end.
 */
function isClientHangUp (e: { code?: unknown, syscall?: unknown } | null): boolean {
  return e?.code === 'ERR_STREAM_PREMATURE_CLOSE' || (e?.code === 'ECONNRESET' && e.syscall === undefined)
}

/**
 * True for the errors of a database that is down, restarting or unreachable. A client that
 * hangs up during its upload fails the request with ECONNRESET too ("aborted", from the HTTP
 * request stream, with no socket call named): that one says nothing about the database.
 */
export function isDatabaseUnavailable (err: unknown): boolean {
  const e = err as { code?: unknown, syscall?: unknown } | null
  const code = e?.code
  if (typeof code !== 'string' || !PG_UNAVAILABLE.has(code)) return false
  return !SOCKET_CODES.has(code) || typeof e?.syscall === 'string'
}

/** Maps any error to an RFC 9457 problem. The only place that turns errors into answers. */
export function toProblem (err: unknown, request?: FastifyRequest): Problem {
  const base = { instance: request?.url, request_id: request?.id as string | undefined }
  if (err instanceof AppError) {
    return { type: err.type, title: err.title, status: err.status, detail: err.message, ...base, ...(err.errors ? { errors: err.errors } : {}), ...(err.extra ?? {}) }
  }
  const e = err as FastifyError & { code?: string, validationContext?: string }
  if (e.validation) {
    const errors: FieldError[] = mergeChoices(e.validation).map((v) => {
      const params = v.params as Record<string, unknown>
      let path = `/${e.validationContext ?? 'body'}${v.instancePath}`
      if (typeof params?.missingProperty === 'string') path += `/${params.missingProperty}`
      if (typeof params?.additionalProperty === 'string') path += `/${params.additionalProperty}`
      const rowMatch = /^\/body\/(?:rows|entity_rows|entities)\/(\d+)/.exec(path)
      return { path, ...(rowMatch ? { row: Number(rowMatch[1]) } : {}), field: fieldOfPath(path), rule: v.keyword, message: v.message ?? 'is invalid' }
    })
    return problem(400, 'Bad Request', `Request ${e.validationContext ?? 'body'} is invalid: ${errors.map((x) => `${x.path} ${x.message}`).slice(0, 5).join('; ')}`, base, { errors })
  }
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE': return problem(413, 'Payload Too Large', 'The request body is larger than this route accepts', base)
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return problem(415, 'Unsupported Media Type', `Content-Type ${request?.headers['content-type'] ?? '(none)'} is not accepted by this route`, base)
    case 'FST_ERR_CTP_EMPTY_JSON_BODY': return problem(400, 'Bad Request', 'The JSON body is empty', base)
    case 'FST_ERR_CTP_INVALID_JSON_BODY': return problem(400, 'Bad Request', `The body is not valid JSON: ${e.message}`, base)
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH': return problem(400, 'Bad Request', 'Content-Length does not match the body', base)
    case 'FST_ERR_CTP_INVALID_TYPE': return problem(400, 'Bad Request', 'Content-Type header is invalid', base)
    case 'FST_ERR_NOT_FOUND': return problem(404, 'Not Found', `No route ${request?.method} ${request?.url}`, base)
    case 'FST_ERR_BAD_URL': return problem(400, 'Bad Request', 'The URL is malformed', base)
    case 'FST_ERR_ASYNC_CONSTRAINT': return problem(400, 'Bad Request', 'The request is malformed', base)
  }
  if (e instanceof SyntaxError) return problem(400, 'Bad Request', `The body is not valid JSON: ${e.message}`, base)
  // no one reads this answer, and it is not a server failure (logged at info, counted as a 4xx)
  if (isClientHangUp(e)) {
    return problem(400, 'Bad Request', 'The client closed the connection before the exchange was complete', base)
  }
  if (isDatabaseUnavailable(e)) return problem(503, 'Service Unavailable', 'The database is unavailable; retry shortly', base)
  // a lock not granted within lock_timeout (set by an operator, or a join's own) or a deadlock
  // PostgreSQL broke: nothing wrong with the request, and the next try usually succeeds
  if (e.code === '55P03' || e.code === '40P01') return problem(503, 'Service Unavailable', 'The database could not take a lock in time (maintenance or a concurrent change held it); retry shortly', base)
  const fromDatabase = databaseRefusal(e)
  if (fromDatabase) {
    // text cannot hold NUL: name the field of the request that has one
    const nul = (e.code === '22021' || e.code === '22P05') && request !== undefined ? findNul(request) : undefined
    if (nul !== undefined) {
      return problem(400, 'Bad Request', `${nul} contains a NUL character (\\u0000), which text values cannot hold`, base,
        { errors: [{ path: nul, field: fieldOfPath(nul), rule: 'no_nul_character', message: 'contains a NUL character (\\u0000)' }] })
    }
    return problem(fromDatabase.status, titleFor(fromDatabase.status), fromDatabase.detail, base)
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return problem(e.statusCode, titleFor(e.statusCode), e.message, base)
  }
  return problem(500, 'Internal Server Error', 'An unexpected error occurred; it has been logged with the request id', base)
}

type ValidationIssue = NonNullable<FastifyError['validation']>[number]

/**
 * A choice among fixed values (a union of literals: anyOf of const) fails with one "must be
 * equal to constant" per choice and a "must match a schema in anyOf": said once instead, with
 * the values allowed. Other failures are kept as they are (identical ones once).
 */
function mergeChoices (issues: ValidationIssue[]): ValidationIssue[] {
  const dropped = new Set<ValidationIssue>()
  const merged = new Map<ValidationIssue, ValidationIssue>()
  for (const any of issues) {
    if (any.keyword !== 'anyOf') continue
    const branches = issues.filter((v) => v !== any && v.instancePath === any.instancePath && (v.schemaPath ?? '').startsWith(`${any.schemaPath}/`))
    if (branches.length === 0 || !branches.every((v) => v.keyword === 'const' || v.keyword === 'enum')) continue
    const allowed = branches.flatMap((v) => {
      const p = v.params as { allowedValue?: unknown, allowedValues?: unknown[] }
      return v.keyword === 'const' ? [p.allowedValue] : (p.allowedValues ?? [])
    })
    for (const b of branches) dropped.add(b)
    merged.set(any, { ...any, keyword: 'enum', params: { allowedValues: allowed }, message: `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}` })
  }
  const seen = new Set<string>()
  const out: ValidationIssue[] = []
  for (const v of issues) {
    if (dropped.has(v)) continue
    const issue = merged.get(v) ?? v
    const key = `${issue.instancePath}\u0000${issue.keyword}\u0000${issue.message ?? ''}\u0000${JSON.stringify(issue.params ?? {})}`
    if (seen.has(key)) continue
    seen.add(key)
    out.push(issue)
  }
  return out
}

/** Strings and keys looked at, at most, to find a NUL character in a refused request. */
const NUL_SEARCH_LIMIT = 1_000_000

/**
 * The JSON pointer (/params, /querystring or /body) of the first string or key of the request
 * that holds a NUL character; undefined when there is none (or it lies beyond the search limit).
 */
export function findNul (request: Pick<FastifyRequest, 'params' | 'query' | 'body'>): string | undefined {
  let budget = NUL_SEARCH_LIMIT
  const walk = (v: unknown, path: string): string | undefined => {
    if (--budget < 0) return undefined
    if (typeof v === 'string') return v.includes('\u0000') ? path : undefined
    if (v === null || typeof v !== 'object' || Buffer.isBuffer(v)) return undefined
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const found = walk(v[i], `${path}/${i}`)
        if (found !== undefined || budget < 0) return found
      }
      return undefined
    }
    for (const [k, x] of Object.entries(v)) {
      if (k.includes('\u0000')) return `${path}/${pointerSegment(k)}`
      const found = walk(x, `${path}/${pointerSegment(k)}`)
      if (found !== undefined || budget < 0) return found
    }
    return undefined
  }
  return walk(request.params, '/params') ?? walk(request.query, '/querystring') ?? walk(request.body, '/body')
}

/**
 * Last line of defence for input the routes did not catch: PostgreSQL refusing a value (a
 * number out of an integer's range, a NUL character, a row too big to index) is the caller's
 * input, not a server fault. Only the SQLSTATE classes that mean that are mapped; the
 * database's own message names the problem (it never contains the query or other rows).
 */
function databaseRefusal (e: { code?: unknown, message?: string, severity?: unknown }): { status: number, detail: string } | undefined {
  if (typeof e.code !== 'string' || !/^[0-9A-Z]{5}$/.test(e.code) || e.severity === undefined) return undefined
  const said = `the database refused a value of the request: ${e.message ?? e.code}`
  if (e.code.startsWith('22')) return { status: 400, detail: said }
  if (e.code === '23505') return { status: 409, detail: `${said} (it already exists)` }
  if (e.code.startsWith('23')) return { status: 422, detail: said }
  if (e.code === '54000') return { status: 422, detail: said }
  return undefined
}

function problem (status: number, title: string, detail: string, base: Record<string, unknown>, extra: Record<string, unknown> = {}): Problem {
  return { type: `https://feature-store.dev/problems/${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`, title, status, detail, ...base, ...extra }
}

function titleFor (status: number): string {
  return ({ 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 406: 'Not Acceptable', 409: 'Conflict', 413: 'Payload Too Large', 415: 'Unsupported Media Type', 422: 'Unprocessable Content', 429: 'Too Many Requests' } as Record<number, string>)[status] ?? 'Error'
}

/**
 * Fastify's clientErrorHandler: what Node's HTTP parser refuses before there is a request
 * (headers too large, a malformed request line, a client too slow to send its headers) is
 * answered as a problem too, then the connection is closed (Node's own behaviour).
 */
export function clientErrorProblem (err: NodeJS.ErrnoException, socket: Duplex): void {
  // a connection reset: the socket is gone, nothing to answer
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [status, title, detail] = err.code === 'HPE_HEADER_OVERFLOW'
    ? [431, 'Request Header Fields Too Large', 'The request headers (the URL included) are larger than this server accepts (16 KiB)']
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'Request Timeout', 'The request was not received in time']
      : [400, 'Bad Request', 'The request is not valid HTTP']
  const body = JSON.stringify(problem(status, title, detail, {}))
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${title}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroy(err)
}

export function sendProblem (reply: FastifyReply, p: Problem, headers?: Record<string, string>): FastifyReply {
  if (headers) reply.headers(headers)
  if (p.status === 503 && !reply.hasHeader('retry-after')) reply.header('retry-after', '5')
  return reply.code(p.status).type(PROBLEM_CONTENT_TYPE).send(p)
}

async function errorsPlugin (app: FastifyInstance): Promise<void> {
  app.setErrorHandler((err, request, reply) => {
    const p = toProblem(err, request)
    // a 5xx the service chose to answer (load shedding, database unavailable) is a warning with
    // its reason; any other is a failure, logged with its stack
    if (p.status >= 500 && !(err instanceof AppError)) request.log.error({ err }, 'request failed')
    else if (p.status >= 500) request.log.warn({ status: p.status, detail: p.detail }, 'request refused')
    else request.log.info({ status: p.status, detail: p.detail }, 'request rejected')
    return sendProblem(reply, p, err instanceof AppError ? err.headers : undefined)
  })
  app.setNotFoundHandler((request, reply) => {
    request.log.info({ req: request, status: 404 }, 'request rejected: no such route')
    return sendProblem(reply, toProblem({ code: 'FST_ERR_NOT_FOUND' }, request))
  })
}

export default fp(errorsPlugin, { name: 'errors' })
