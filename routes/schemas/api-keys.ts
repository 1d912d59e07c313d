import { Type, type Static } from 'typebox'
import { Timestamp, Nullable } from './common.js'

export const ScopeSchema = Type.Union([Type.Literal('read'), Type.Literal('write'), Type.Literal('admin')], {
  description: 'read: GET routes and read-only queries; write: also ingestion and registry changes; admin: also API keys and the audit log',
})

export const ApiKeyId = Type.String({
  pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
  description: 'API key id (uuid)',
  examples: ['3f0b8f5e-2a4c-4d7e-9b1a-5c6d7e8f9a0b'],
})

export const CreateApiKeyBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 200, description: 'What the key is for, e.g. the team or job using it', examples: ['trainer-prod'] }),
  scopes: Type.Array(ScopeSchema, { minItems: 1, maxItems: 3, uniqueItems: true, description: 'admin implies write implies read', examples: [['read']] }),
  expires_at: Type.Optional(Timestamp),
}, { additionalProperties: false, examples: [{ name: 'trainer-prod', scopes: ['read'] }] })
export type CreateApiKeyBody = Static<typeof CreateApiKeyBody>

export const ApiKeySchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  prefix: Type.String({ description: 'The first characters of the key, to tell keys apart' }),
  scopes: Type.Array(Type.String()),
  status: Type.Union([Type.Literal('active'), Type.Literal('revoked'), Type.Literal('expired')]),
  created_at: Type.String(),
  created_by: Nullable(Type.String(), 'id of the key that created this one, or ADMIN_API_KEY'),
  expires_at: Nullable(Type.String()),
  revoked_at: Nullable(Type.String()),
  last_used_at: Nullable(Type.String(), 'updated at most once a minute'),
})

export const CreatedApiKeySchema = Type.Object({
  ...ApiKeySchema.properties,
  key: Type.String({ description: 'The API key. Shown only in this answer: store it now; the service keeps only its hash.' }),
})

export const ApiKeyListQuery = Type.Object({
  include_revoked: Type.Optional(Type.Boolean({ default: false, description: 'also list revoked keys' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'page size' })),
  cursor: Type.Optional(Type.String({ maxLength: 200, description: 'next_cursor of the previous page' })),
}, { additionalProperties: false })
export type ApiKeyListQuery = Static<typeof ApiKeyListQuery>

export const ApiKeyList = Type.Object({
  items: Type.Array(ApiKeySchema),
  next_cursor: Nullable(Type.String()),
})
