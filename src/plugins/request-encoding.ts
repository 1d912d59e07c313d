import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify'
import { UnsupportedMediaTypeError } from '../domain/errors.js'
import { withHook } from './route-hooks.js'
import { problems } from '../../routes/schemas/common.js'

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH'])

/**
 * Why a request body would be misread: it is compressed (Content-Encoding other than identity;
 * the service does not decompress) or its Content-Type names a charset other than UTF-8 (every
 * body is read as UTF-8). Undefined when neither.
 */
export function bodyEncodingProblem (contentEncoding: string | undefined, contentType: string | undefined): string | undefined {
  if (contentEncoding !== undefined && contentEncoding.trim() !== '' && contentEncoding.trim().toLowerCase() !== 'identity') {
    return `Content-Encoding ${contentEncoding} is not accepted: send the body uncompressed`
  }
  if (contentType !== undefined) {
    const m = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType)
    if (m !== null && !/^utf-?8$/i.test(m[1])) return `charset=${m[1]} is not accepted: bodies are read as UTF-8`
  }
  return undefined
}

/**
 * Routes that take a body refuse, with 415 before reading it, a body they would misread (see
 * bodyEncodingProblem). A hook of those routes only (after the key check), not of every request.
 */
async function requestEncodingPlugin (app: FastifyInstance): Promise<void> {
  const check = (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void => {
    const problem = bodyEncodingProblem(request.headers['content-encoding'], request.headers['content-type'])
    done(problem === undefined ? undefined : new UnsupportedMediaTypeError(problem))
  }
  app.addHook('onRoute', (route: RouteOptions) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    if (!methods.some((m) => BODY_METHODS.has(m))) return
    route.onRequest = withHook(route.onRequest, check) as RouteOptions['onRequest']
    // the OpenAPI document lists the answer
    const response = route.schema?.response as Record<string, unknown> | undefined
    if (response !== undefined && !('415' in response)) route.schema = { ...route.schema, response: { ...response, ...problems(415) } }
  })
}

export default fp(requestEncodingPlugin, { name: 'request-encoding', dependencies: ['auth'] })
