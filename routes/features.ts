import type { App } from '../src/app.js'
import { problems } from './schemas/common.js'
import {
  CreateFeatureBody, DeprecateQuery, DeprecationResult, FeatureDefinition, FeatureList, FeatureNameParams, FeatureRefParams,
  FeatureVersionList, FeatureVersionParams, ListFeaturesQuery, NewVersionBody, PatchFeatureBody, VersionsQuery,
} from './schemas/features.js'

/** Feature definitions: the registry. */
export default async function featureRoutes (app: App): Promise<void> {
  const registry = app.services.registry

  app.post('/v1/features', {
    schema: {
      tags: ['features'],
      summary: 'Create a feature definition (version 1)',
      description: 'Registers a new feature. Later schema changes (entity, dtype, validation, ttl, depends_on) are new versions (POST /v1/features/{name}/versions). depends_on names existing features; a dependency that is unknown is a 422, one that would close a cycle a 409.',
      body: CreateFeatureBody,
      response: { 201: FeatureDefinition, ...problems(400, 401, 403, 409, 413, 415, 422) },
    },
  }, async (request, reply) => {
    const def = await registry.create(request.body)
    request.auditDetail = { feature: def.name, version: def.version }
    return reply.code(201).header('location', `/v1/features/${def.name}/versions/${def.version}`).send(def)
  })

  app.get('/v1/features', {
    schema: {
      tags: ['features'],
      summary: 'List features (filters, cursor pagination)',
      description: 'One entry per feature: its latest active version, or its latest version when every version is deprecated. Filters: entity, tag (all given), status, text (in the name or description). Ordered by name; follow next_cursor for the next page.',
      querystring: ListFeaturesQuery,
      response: { 200: FeatureList, ...problems(400, 401, 403) },
    },
  }, async (request) => registry.list(request.query))

  app.get('/v1/features/:name', {
    schema: {
      tags: ['features'],
      summary: 'Get a feature: latest active version, or name@version',
      description: '`close_price` answers the latest active version (the latest version when all are deprecated); `close_price@2` answers version 2 whatever its status.',
      params: FeatureRefParams,
      response: { 200: FeatureDefinition, ...problems(400, 401, 403, 404) },
    },
  }, async (request) => registry.get(request.params.name))

  app.get('/v1/features/:name/versions', {
    schema: {
      tags: ['features'],
      summary: 'List the versions of a feature',
      description: 'Every version, oldest first, active and deprecated.',
      params: FeatureNameParams,
      querystring: VersionsQuery,
      response: { 200: FeatureVersionList, ...problems(400, 401, 403, 404) },
    },
  }, async (request) => registry.versions(request.params.name, request.query))

  app.get('/v1/features/:name/versions/:version', {
    schema: {
      tags: ['features'],
      summary: 'Get one version of a feature',
      description: 'That version whatever its status (the same as GET /v1/features/{name}@{version}).',
      params: FeatureVersionParams,
      response: { 200: FeatureDefinition, ...problems(400, 401, 403, 404) },
    },
  }, async (request) => registry.version(request.params.name, request.params.version))

  app.post('/v1/features/:name/versions', {
    schema: {
      tags: ['features'],
      summary: 'Create the next version of a feature (schema change)',
      description: 'Makes version n+1 from the latest version and the changes given: fields left out are carried over, validation is merged into the previous rules (a key replaces that rule; null clears min, max or allowed_values). The new version is active at once and is what the plain name means from then on; earlier versions stay active for whoever pins them. Values are stored per version: the new one starts with none (reads of the plain name answer NOT_FOUND until values are written for it; `name@1` still reads the old ones). Concurrent requests get distinct consecutive versions.',
      params: FeatureNameParams,
      body: NewVersionBody,
      response: { 201: FeatureDefinition, ...problems(400, 401, 403, 404, 409, 413, 415, 422) },
    },
  }, async (request, reply) => {
    const def = await registry.newVersion(request.params.name, request.body)
    request.auditDetail = { feature: def.name, version: def.version }
    return reply.code(201).header('location', `/v1/features/${def.name}/versions/${def.version}`).send(def)
  })

  app.patch('/v1/features/:name', {
    schema: {
      tags: ['features'],
      summary: 'Change metadata (description, owner, tags, unit) of every version',
      description: 'Metadata describes the feature as a whole, so the change applies to every version; no new version is made. Answers the current version.',
      params: FeatureNameParams,
      body: PatchFeatureBody,
      response: { 200: FeatureDefinition, ...problems(400, 401, 403, 404, 413, 415) },
    },
  }, async (request) => registry.patch(request.params.name, request.body))

  app.delete('/v1/features/:name', {
    schema: {
      tags: ['features'],
      summary: 'Deprecate a feature (every version)',
      description: 'Deprecated versions stay readable (and resolvable as name@version) but `name` no longer resolves. While active features depend on it or active contracts require it the answer is 409 listing them; ?force=true deprecates anyway and is logged.',
      params: FeatureNameParams,
      querystring: DeprecateQuery,
      response: { 200: DeprecationResult, ...problems(400, 401, 403, 404, 409) },
    },
  }, async (request) => {
    const result = await registry.deprecate(request.params.name, { force: request.query.force ?? false, log: request.log })
    request.auditDetail = { feature: result.name, deprecated_versions: result.deprecated_versions, forced: result.forced }
    return result
  })
}
