import { Type, type Static, type TSchema, type TUnsafe } from 'typebox'

/** RFC 9457 problem details, the body of every error answer. */
export const Problem = Type.Object({
  type: Type.String({ description: 'URI identifying the problem type' }),
  title: Type.String(),
  status: Type.Integer(),
  detail: Type.String({ description: 'What went wrong, in words a person can act on' }),
  instance: Type.Optional(Type.String()),
  request_id: Type.Optional(Type.String()),
  errors: Type.Optional(Type.Array(Type.Object({
    path: Type.String({ description: 'JSON pointer of the bad field' }),
    message: Type.String(),
    row: Type.Optional(Type.Integer({ description: '0-based row number in the request' })),
    field: Type.Optional(Type.String()),
    rule: Type.Optional(Type.String()),
  }, { additionalProperties: true }))),
}, { $id: 'Problem', additionalProperties: true, description: 'application/problem+json (RFC 9457)' })

/** Response entries for the usual error answers of a route. */
export function problems (...codes: number[]): Record<number, unknown> {
  const out: Record<number, unknown> = {}
  const text: Record<number, string> = {
    400: 'Malformed request', 401: 'Missing or invalid API key', 403: 'API key lacks the scope', 404: 'Not found',
    409: 'Conflict', 413: 'Body too large', 415: 'Unsupported media type', 422: 'Semantically invalid input', 429: 'Rate limited', 503: 'Database unavailable',
  }
  for (const c of codes) out[c] = { description: text[c] ?? 'Error', content: { 'application/problem+json': { schema: Type.Ref('Problem') } } }
  return out
}

const TIMESTAMP_TEXT = 'RFC 3339 with a zone (Z or offset), millisecond precision, or epoch milliseconds'

export const Timestamp = Type.Union([Type.String(), Type.Integer()], {
  description: TIMESTAMP_TEXT,
  examples: ['2023-06-01T12:00:00Z'],
})

// Query parameters: Swagger UI's "Try it out" fills in every example, so an optional filter has
// none (it would filter the list down to nothing) and the bounds of a range differ.

/** A timestamp filter of a list, with no example. */
export const TimestampFilter = Type.Union([Type.String(), Type.Integer()], { description: TIMESTAMP_TEXT })
/** The start of a range (inclusive). */
export const RangeFrom = Type.Union([Type.String(), Type.Integer()], { description: `${TIMESTAMP_TEXT}; inclusive`, examples: ['2023-06-01T00:00:00Z'] })
/** The end of a range (exclusive). */
export const RangeTo = Type.Union([Type.String(), Type.Integer()], { description: `${TIMESTAMP_TEXT}; exclusive`, examples: ['2023-06-08T00:00:00Z'] })

export const NAME_PATTERN = '^[a-z][a-z0-9_]{0,62}$'
export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
export const Name = Type.String({ pattern: NAME_PATTERN, description: 'lowercase name: ^[a-z][a-z0-9_]{0,62}$', examples: ['close_price'] })
export const Ref = Type.String({ description: 'feature reference: name (latest active version) or name@version', examples: ['close_price', 'close_price@2'] })
export const EntityId = Type.String({ minLength: 1, maxLength: 256, description: 'entity id: 1 to 256 printable characters', examples: ['BTCUSDT'] })
/** `?version=` of a feature route: a version number (int4, as stored); absent: the latest active one. */
export const FeatureVersionFilter = Type.Optional(Type.Integer({ minimum: 1, maximum: 2_147_483_647, description: 'feature version (default: the latest active one)' }))
export const Cursor = Type.Optional(Type.String({ description: 'opaque cursor from next_cursor of the previous page' }))
export const Limit = Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'page size' }))

const SCALAR_TYPES = new Set(['string', 'number', 'integer', 'boolean'])

/**
 * A value or null. A scalar schema (string, number, integer or boolean, without const or enum)
 * becomes `type: [<type>, "null"]` (OpenAPI 3.1): the response serializer writes it directly,
 * where an anyOf makes it compile a validator to choose the branch on the route's first answer
 * (40-110 ms once per process and route), and the request validator's type coercion leaves null
 * as null instead of trying the scalar branch first. Any other schema: anyOf [schema, null].
 */
export function Nullable<T extends TSchema> (t: T, description?: string): TUnsafe<Static<T> | null> {
  const schema = t as TSchema & { type?: unknown, const?: unknown, enum?: unknown }
  const extra = description === undefined ? {} : { description }
  if (typeof schema.type === 'string' && SCALAR_TYPES.has(schema.type) && schema.const === undefined && schema.enum === undefined) {
    return Type.Unsafe<Static<T> | null>({ ...schema, type: [schema.type, 'null'], ...extra })
  }
  return Type.Unsafe<Static<T> | null>(Type.Union([t, Type.Null()], extra))
}

/**
 * A feature value in an answer: a number, string, boolean or null (non-finite floats as the
 * strings "NaN", "Infinity", "-Infinity"). A type list, which the serializer checks with typeof;
 * an anyOf would be validated for every value.
 */
export const FeatureValue = (description: string) => Type.Unsafe<number | string | boolean | null>({ type: ['number', 'string', 'boolean', 'null'], description })
