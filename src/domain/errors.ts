/**
 * The one error hierarchy of the service. The errors plugin maps each to an
 * application/problem+json answer (RFC 9457); nothing else decides status codes.
 */
export interface FieldError {
  /** JSON pointer or dotted path of the bad field, e.g. `/rows/3/value`. */
  path: string
  message: string
  /** 0-based row number in the request, where the error is about a row. */
  row?: number
  field?: string
  rule?: string
  [key: string]: unknown
}

/** A key as one segment of a JSON pointer (RFC 6901: ~ as ~0, / as ~1). */
export function pointerSegment (key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1')
}

/**
 * The `field` of a FieldError at `path`: the name of the field the path ends at, i.e. its last
 * segment that is not an array index (a pointer such as /body/rows/3/value gives value; the
 * part it is in, /body or /querystring, is not a field). A path without a leading / is a field
 * name itself.
 */
export function fieldOfPath (path: string): string | undefined {
  const segments = path.split('/')
  const first = path.startsWith('/') ? 2 : 0
  for (let i = segments.length - 1; i >= first; i--) {
    if (segments[i] !== '' && !/^\d+$/.test(segments[i])) return segments[i].replace(/~1/g, '/').replace(/~0/g, '~')
  }
  return undefined
}

export class AppError extends Error {
  readonly status: number
  readonly title: string
  readonly type: string
  readonly errors?: FieldError[]
  readonly extra?: Record<string, unknown>
  readonly headers?: Record<string, string>

  constructor(status: number, title: string, detail: string, opts: { type?: string, errors?: FieldError[], extra?: Record<string, unknown>, headers?: Record<string, string> } = {}) {
    super(detail)
    this.status = status
    this.title = title
    this.type = opts.type ?? `https://feature-store.dev/problems/${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`
    this.errors = opts.errors
    this.extra = opts.extra
    this.headers = opts.headers
  }
}

export class BadRequestError extends AppError {
  constructor (detail: string, errors?: FieldError[], extra?: Record<string, unknown>) { super(400, 'Bad Request', detail, { errors, extra }) }
}
export class NotFoundError extends AppError {
  constructor (detail: string, extra?: Record<string, unknown>) { super(404, 'Not Found', detail, { extra }) }
}
export class ConflictError extends AppError {
  constructor (detail: string, extra?: Record<string, unknown>) { super(409, 'Conflict', detail, { extra }) }
}
export class UnprocessableError extends AppError {
  constructor (detail: string, errors?: FieldError[], extra?: Record<string, unknown>) { super(422, 'Unprocessable Content', detail, { errors, extra }) }
}
export class PayloadTooLargeError extends AppError {
  constructor (detail: string) { super(413, 'Payload Too Large', detail) }
}
export class UnsupportedMediaTypeError extends AppError {
  constructor (detail: string) { super(415, 'Unsupported Media Type', detail) }
}
export class ServiceUnavailableError extends AppError {
  constructor (detail: string, retryAfterSeconds = 5) { super(503, 'Service Unavailable', detail, { headers: { 'retry-after': String(retryAfterSeconds) } }) }
}
export class UnauthorizedError extends AppError {
  constructor (detail: string) { super(401, 'Unauthorized', detail, { headers: { 'www-authenticate': 'Bearer' } }) }
}
export class ForbiddenError extends AppError {
  constructor (detail: string) { super(403, 'Forbidden', detail) }
}
