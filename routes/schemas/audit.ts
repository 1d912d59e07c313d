import { Type, type Static } from 'typebox'
import { TimestampFilter, UUID_PATTERN, Nullable } from './common.js'

export const AuditQuery = Type.Object({
  key_id: Type.Optional(Type.String({ pattern: UUID_PATTERN, description: 'API key id (uuid)' })),
  method: Type.Optional(Type.Union([Type.Literal('POST'), Type.Literal('PUT'), Type.Literal('PATCH'), Type.Literal('DELETE')], { description: 'HTTP method' })),
  route: Type.Optional(Type.String({ maxLength: 512, description: 'route pattern, e.g. /v1/features/:name' })),
  status: Type.Optional(Type.Integer({ minimum: 100, maximum: 599, description: 'HTTP status of the answer' })),
  from: Type.Optional(TimestampFilter),
  to: Type.Optional(TimestampFilter),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'page size' })),
  cursor: Type.Optional(Type.String({ maxLength: 200, description: 'next_cursor of the previous page' })),
}, { additionalProperties: false })
export type AuditQuery = Static<typeof AuditQuery>

export const AuditEntrySchema = Type.Object({
  id: Type.Integer(),
  at: Type.String({ description: 'when the answer was sent' }),
  key_id: Nullable(Type.String(), 'who: the key (null for ADMIN_API_KEY or when auth is off)'),
  key_name: Nullable(Type.String()),
  method: Type.String(),
  route: Type.String({ description: 'route pattern' }),
  url: Type.String(),
  params: Type.Object({}, { additionalProperties: true, description: '{path, query, detail?}: path and query parameters, and what the route added' }),
  status: Type.Integer({ description: 'outcome: the HTTP status of the answer' }),
  request_id: Nullable(Type.String()),
  ip: Nullable(Type.String()),
  duration_ms: Nullable(Type.Number()),
})

export const AuditList = Type.Object({
  items: Type.Array(AuditEntrySchema),
  next_cursor: Nullable(Type.String()),
})
