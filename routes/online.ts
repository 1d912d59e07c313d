import type { FastifyReply } from 'fastify'
import type { App } from '../src/app.js'
import { problems } from './schemas/common.js'
import { MAX_ONLINE_FEATURES, OnlineEntityAnswer, OnlineParams, OnlineQuery, OnlineRequest, OnlineResponse } from './schemas/online.js'
import { BadRequestError } from '../src/domain/errors.js'
import { contractRefsWithin, requireFeaturesOrContract } from '../src/services/training-sets.js'

const JSON_TYPE = 'application/json; charset=utf-8'

const STATUS_TEXT = 'Each value comes with its event_time and a status: PRESENT, NULL_VALUE (the latest value is null), NOT_FOUND (no value at or before now), OUTSIDE_TTL (the latest value is older than the feature\'s ttl; value and event_time null). The rule is the point-in-time rule with T = K = now: a latest value dated in the future is not used; the latest one at or before now is.'

export default async function onlineRoutes (app: App): Promise<void> {
  app.get('/v1/online/:entity_id', {
    schema: {
      tags: ['online'],
      summary: 'Latest values of one entity',
      description: `Served from the in-process cache (kept coherent across instances). Features listed (\`features=close_price,volume\`) or taken from a contract (\`contract=name\` or \`name@version\`: the same features a training set of that contract joins; the answer says which contract version). ${STATUS_TEXT}`,
      params: OnlineParams,
      querystring: OnlineQuery,
      response: { 200: OnlineEntityAnswer, ...problems(400, 401, 403, 422, 503) },
    },
  }, (request, reply) => {
    const { features, contract } = request.query
    const online = app.services.online
    const entities = [request.params.entity_id]
    online.checkEntities(entities, () => '/params/entity_id')
    if (features === undefined || contract !== undefined) {
      requireFeaturesOrContract(features !== undefined, contract !== undefined, true)
      // a contract the cache knows, and values it holds: answered at once, as by features
      const known = online.cachedContract(contract!)
      const text = known === undefined ? undefined : online.readCachedJson(entities, contractRefs(known, '/querystring/contract'))
      if (text !== undefined) return sendJsonText(reply, withContract(text[0], known!))
      return online.contractRefs(contract!, '/querystring/contract').then(async (c) => {
        const [result] = await online.read(entities, contractRefs(c, '/querystring/contract'), () => '/querystring/contract')
        return { ...result, contract: { name: c.name, version: c.version } }
      })
    }
    const refs = splitRefs(features)
    // answered at once from the cache when it holds everything: no promise, and the JSON text
    // of each value was made when it entered the cache
    const cached = online.readCachedJson(entities, refs)
    if (cached !== undefined) return sendJsonText(reply, cached[0])
    return online.read(entities, refs, () => '/querystring/features').then(([result]) => result)
  })

  app.post('/v1/online', {
    config: { scope: 'read' },
    schema: {
      tags: ['online'],
      summary: 'Latest values of several entities',
      description: `One result per requested entity, in request order. Features listed, or taken from a contract (\`contract\`: the same features a training set of that contract joins). ${STATUS_TEXT}`,
      body: OnlineRequest,
      response: { 200: OnlineResponse, ...problems(400, 401, 403, 422, 503) },
    },
  }, (request, reply) => {
    const online = app.services.online
    const { entities, features, contract } = request.body
    online.checkEntities(entities, (i) => `/body/entities/${i}`)
    if (features === undefined || contract !== undefined) {
      requireFeaturesOrContract(features !== undefined, contract !== undefined)
      const known = online.cachedContract(contract!)
      const text = known === undefined ? undefined : online.readCachedJson(entities, contractRefs(known, '/body/contract'))
      if (text !== undefined) return sendJsonText(reply, withContract(`{"results":[${text.join(',')}]}`, known!))
      return online.contractRefs(contract!, '/body/contract').then(async (c) => {
        return { results: await online.read(entities, contractRefs(c, '/body/contract'), () => '/body/contract'), contract: { name: c.name, version: c.version } }
      })
    }
    const cached = online.readCachedJson(entities, features)
    if (cached !== undefined) return sendJsonText(reply, `{"results":[${cached.join(',')}]}`)
    return online.read(entities, features, (ref) => `/body/features/${features.indexOf(ref)}`).then((results) => ({ results }))
  })
}

/**
 * Sends JSON text made by the online service (what the route's response serializer would make
 * of the same answer): sent as it is, not serialised again.
 */
function sendJsonText (reply: FastifyReply, text: string): undefined {
  void reply.type(JSON_TYPE).send(text)
  return undefined
}

/** A contract's references, within the limit of features an online read may have (as a list of them is). */
function contractRefs (c: { name: string, version: number, refs: string[] }, path: string): string[] {
  return contractRefsWithin(c, MAX_ONLINE_FEATURES, 'an online read', path)
}

/** A JSON object's text with the contract that was read added as its last member. */
function withContract (objectText: string, c: { name: string, version: number }): string {
  return `${objectText.slice(0, -1)},"contract":${JSON.stringify({ name: c.name, version: c.version })}}`
}

/** `features` strings seen lately -> their references: clients repeat the same few lists. */
const recentRefs = new Map<string, string[]>()
const RECENT_REFS_MAX = 1000
const RECENT_REFS_MAX_LENGTH = 1024

/** The references of a `features` query string (400 when it lists none or too many); the list is never changed afterwards. */
export function splitRefs (features: string): string[] {
  let refs = recentRefs.get(features)
  if (refs === undefined) {
    refs = parseRefList(features)
    if (features.length <= RECENT_REFS_MAX_LENGTH) {
      if (recentRefs.size >= RECENT_REFS_MAX) recentRefs.clear()
      recentRefs.set(features, refs)
    }
  }
  return refs
}

/** The references of a `features` query string; the list is never changed afterwards. */
function parseRefList (features: string): string[] {
  const refs = features.split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (refs.length === 0) throw new BadRequestError('features must list at least one feature reference, e.g. ?features=close_price,volume', [{ path: '/querystring/features', message: 'is empty' }])
  if (refs.length > MAX_ONLINE_FEATURES) throw new BadRequestError(`at most ${MAX_ONLINE_FEATURES} features per request`, [{ path: '/querystring/features', message: `lists ${refs.length} features` }])
  return refs
}
