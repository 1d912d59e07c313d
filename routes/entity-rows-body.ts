import { errorCodes, type FastifyRequest } from 'fastify'
import type { TObject } from 'typebox'
import type { App } from '../src/app.js'
import { scanTrainingBodySteps, type EntityRowColumns, type RowSchemaError } from '../src/domain/training-body.js'
import { runInSlices } from '../src/services/event-loop-slices.js'
import { EntityRow } from './schemas/training-sets.js'

/**
 * The JSON body parser of routes whose body may carry `entity_rows` (training sets, pipeline
 * runs): the rows are read from the body's bytes into columns (no object per row, no string of
 * the whole body, other requests served meanwhile); the rest of the body goes through the
 * ordinary parser and the route's schema, with `entity_rows: []` in place of the rows. Bodies
 * of any other shape are parsed as usual. Replaces the JSON parser of the plugin it is called
 * in; the answer gives the columns read for a parsed body (undefined when it had no rows read
 * this way).
 */
export function useEntityRowsJsonParser (app: App, bodySchema: TObject): (body: unknown) => EntityRowColumns | undefined {
  const inlineRows = new WeakMap<object, EntityRowColumns>()
  // body members the schema lists before entity_rows: their errors come before the rows' ones
  const members = Object.keys(bodySchema.properties)
  const before = new Set(members.slice(0, members.indexOf('entity_rows')))
  const defaultJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', (request, payload, done) => {
    // the route's body limit, else the server's (each route of the plugin keeps its own)
    readBody(request, payload, request.routeOptions.bodyLimit)
      .then(async (buf) => parseEntityRowsBody(request, buf, defaultJson, before, (err, body, columns) => {
        if (columns !== undefined) inlineRows.set(body as object, columns)
        done(err, body)
      }))
      .catch((err: unknown) => { done(err as Error, undefined) })
  })
  return (body) => (body !== null && typeof body === 'object' ? inlineRows.get(body) : undefined)
}

type Done = (err: Error | null, body?: unknown) => void
type ParsedDone = (err: Error | null, body?: unknown, columns?: EntityRowColumns) => void
type JsonParser = (request: FastifyRequest, body: string, done: Done) => void

/**
 * The raw body as one Buffer, allocated once from Content-Length when given. The same limits
 * and errors as Fastify's own body reader: 413 past `limit`, 400 when the length is wrong.
 */
async function readBody (request: FastifyRequest, payload: NodeJS.ReadableStream, limit: number): Promise<Buffer> {
  const declared = Number(request.headers['content-length'])
  if (declared > limit) throw new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE()
  const sized = Number.isInteger(declared) && declared >= 0
  return new Promise<Buffer>((resolve, reject) => {
    let buf = sized ? Buffer.allocUnsafe(declared) : undefined
    const chunks: Buffer[] = []
    let received = 0
    const cleanup = (): void => {
      payload.removeListener('data', onData)
      payload.removeListener('end', onEnd)
      payload.removeListener('error', onEnd)
    }
    const onData = (chunk: Buffer | string): void => {
      const c = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
      if (received + c.length > limit) {
        cleanup()
        buf = undefined
        reject(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE())
        return
      }
      if (buf !== undefined && received + c.length <= buf.length) c.copy(buf, received)
      else if (buf === undefined) chunks.push(c)
      received += c.length
    }
    const onEnd = (err?: Error & { statusCode?: number }): void => {
      cleanup()
      if (err != null) {
        if (!(typeof err.statusCode === 'number' && err.statusCode >= 400)) err.statusCode = 400
        reject(err)
        return
      }
      if (sized && received !== declared) { reject(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH()); return }
      resolve(buf ?? Buffer.concat(chunks, received))
    }
    payload.on('data', onData)
    payload.on('end', onEnd)
    payload.on('error', onEnd)
    payload.resume()
  })
}

/**
 * Scans the body (src/domain/training-body.ts), giving other requests turns of the event loop
 * while a large one is read; rows that are not of the usual shape are checked against the row
 * schema, and their errors are reported together with those of the rest of the body (members
 * in `before` first), as the schema of the whole body would.
 */
async function parseEntityRowsBody (request: FastifyRequest, buf: Buffer, defaultJson: JsonParser, before: ReadonlySet<string>, done: ParsedDone): Promise<void> {
  const validateRow = request.compileValidationSchema(EntityRow, 'body')
  const scan = await runInSlices(scanTrainingBodySteps(buf, (row) => (validateRow(row) ? null : (validateRow.errors as RowSchemaError[] | null | undefined) ?? [])))
  if (scan.kind === 'invalid') { done(new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY(), undefined); return }
  if (scan.kind === 'fallback') { defaultJson(request, buf.toString('utf8'), done); return }
  defaultJson(request, scan.rest, (err, body) => {
    if (err) { done(err, undefined); return }
    const rows = (body as { entity_rows?: unknown } | null)?.entity_rows
    if (!Array.isArray(rows) || rows.length !== 0) {
      // not where the scanner saw it: parse the whole body as usual
      defaultJson(request, buf.toString('utf8'), done)
      return
    }
    if (scan.rowErrors.length > 0) {
      const validateBody = request.getValidationFunction('body')
      const bodyErrors = validateBody && !validateBody(body) ? ((validateBody.errors ?? []) as unknown as RowSchemaError[]) : []
      // in the schema's member order
      const first = bodyErrors.filter((e) => e.instancePath === '' || before.has(e.instancePath.split('/')[1]))
      const after = bodyErrors.filter((e) => !first.includes(e))
      const validation = [...first, ...scan.rowErrors, ...after]
      done(Object.assign(new Error(`body is invalid: ${validation.length} errors`), { statusCode: 400, code: 'FST_ERR_VALIDATION', validation, validationContext: 'body' }), undefined)
      return
    }
    done(null, body, scan.columns)
  })
}
