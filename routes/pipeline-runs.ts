import { streamReleasing } from './streams.js'
import { useEntityRowsJsonParser } from './entity-rows-body.js'
import { Type } from 'typebox'
import type { App } from '../src/app.js'
import { problems } from './schemas/common.js'
import {
  CreateRunBody, DATASET_HEADERS, DatasetQuery, ListRunsQuery, PatchRunBody, PipelineRun, PipelineRunList, ReproduceQuery, RunIdParams,
} from './schemas/pipeline-runs.js'
import { chooseOutputFormat, OUTPUT_MEDIA_TYPES, type OutputFormat } from '../src/domain/training-output.js'
import type { TrainingRow } from '../src/services/training-sets.js'
import { AppError } from '../src/domain/errors.js'

const RUN_LINK = (id: string): string => `/v1/pipeline-runs/${id}`

export default async function pipelineRunRoutes (app: App): Promise<void> {
  // inline entity_rows are read from the body's bytes into columns (routes/entity-rows-body.ts)
  const inlineRows = useEntityRowsJsonParser(app, CreateRunBody)

  app.post('/v1/pipeline-runs', {
    bodyLimit: app.deps.config.TRAINING_BODY_LIMIT_BYTES,
    schema: {
      tags: ['pipelines'],
      summary: 'Record a training run: pin, build, fingerprint, validate',
      description: 'Pins every feature to its version and the knowledge cutoff K to a sound "now", stores the entity spec (inline rows too, so a rebuild needs nothing from the client), builds the training set from what it stored, validates it against the contract when one is named (`validation`: fail or warn), and records the row count, timings and the SHA-256 fingerprint of the canonical dataset. ' +
        `Runs of up to PIPELINE_SYNC_MAX_ROWS rows (default 50,000) answer 201 when built (status succeeded, or failed with the reason and report); larger runs answer 202 at once (status queued or running) and GET /v1/pipeline-runs/{id} shows their progress. Give features or contract, and entity_rows or grid.`,
      body: CreateRunBody,
      response: { 201: PipelineRun, 202: PipelineRun, ...problems(400, 401, 403, 404, 413, 415, 422, 429, 503) },
    },
  }, async (request, reply) => {
    const { run, background } = await app.services.pipelines.create(request.body, inlineRows(request.body))
    request.auditDetail = { run_id: run.id, name: run.name }
    return reply.code(background ? 202 : 201).header('location', RUN_LINK(run.id)).send(run)
  })

  app.get('/v1/pipeline-runs', {
    schema: {
      tags: ['pipelines'],
      summary: 'List pipeline runs and reproductions',
      description: 'Newest first. Filters: name, status, model, kind (run | reproduction), parent_id (the reproductions of a run), feature (runs that used any version of it), from / to (started_at, from inclusive, to exclusive). Cursor pagination: pass next_cursor as cursor.',
      querystring: ListRunsQuery,
      response: { 200: PipelineRunList, ...problems(400, 401, 403, 429, 503) },
    },
  }, async (request) => app.services.pipelines.list(request.query))

  app.get('/v1/pipeline-runs/:id', {
    schema: {
      tags: ['pipelines'],
      summary: 'Get a pipeline run (status, progress, fingerprint, verdict)',
      description: 'While a background run is queued or running, progress shows rows done of rows total. A reproduction carries its verdict under `reproduction`.',
      params: RunIdParams,
      response: { 200: PipelineRun, ...problems(400, 401, 403, 404, 429, 503) },
    },
  }, async (request) => app.services.pipelines.get(request.params.id))

  app.patch('/v1/pipeline-runs/:id', {
    schema: {
      tags: ['pipelines'],
      summary: 'Report metrics and artifacts, or change the status of a run',
      description: 'metrics and artifacts are merged key by key into what the run holds (a null value removes a key). status: cancelled or failed stop a queued or running build; a built run may move between succeeded and failed (e.g. when training on it failed). Other transitions are 409.',
      params: RunIdParams,
      body: PatchRunBody,
      response: { 200: PipelineRun, ...problems(400, 401, 403, 404, 409, 415, 429, 503) },
    },
  }, async (request) => app.services.pipelines.patch(request.params.id, request.body))

  app.get('/v1/pipeline-runs/:id/dataset', {
    schema: {
      tags: ['pipelines'],
      summary: 'Rebuild and stream the dataset of a run (json, ndjson, csv)',
      description: 'Rebuilds the dataset from the run\'s pinned feature versions, knowledge cutoff and stored entity spec, and streams it in the format of Accept (or ?format=): application/json `{columns, rows}`, application/x-ndjson, or text/csv. ' +
        'The CSV is the canonical form itself, so `sha256sum` of it is the run\'s fingerprint. Columns are entity_id, event_time, the pass-through columns, then one column per feature named name@version. ' +
        'Headers: x-dataset-fingerprint (recorded at the run), x-canonical-format, x-row-count; the trailer x-rebuilt-fingerprint carries the fingerprint of what was streamed. POST .../reproduce compares and records.',
      params: RunIdParams,
      querystring: DatasetQuery,
      produces: ['application/json', 'application/x-ndjson', 'text/csv'],
      response: {
        200: {
          description: 'the dataset, streamed',
          headers: Object.fromEntries(Object.entries(DATASET_HEADERS).map(([k, d]) => [k, { type: 'string', description: d }])),
          content: {
            'application/json': { schema: Type.Object({ columns: Type.Array(Type.String()), rows: Type.Array(Type.Record(Type.String(), Type.Unknown())) }) },
            'application/x-ndjson': { schema: Type.String({ description: 'one JSON object per line' }) },
            'text/csv': { schema: Type.String({ description: 'the canonical form' }) },
          },
        },
        ...problems(400, 401, 403, 404, 406, 409, 429, 503),
      },
    },
  }, async (request, reply) => {
    const format: OutputFormat | undefined = request.query.format ?? chooseOutputFormat(request.headers.accept)
    if (!format) throw new AppError(406, 'Not Acceptable', 'This route answers application/json, application/x-ndjson or text/csv')
    const ds = await app.services.pipelines.openDataset(request.params.id)
    const renderer = format === 'csv' ? undefined : trainingRowsRenderer(format === 'ndjson', ds.columns, ds.extraColumns, ds.featureColumns)
    const batches = ds.batches[Symbol.asyncIterator]()
    // The first block is built before answering, so that its failure is still a problem+json.
    const first = await batches.next()
    async function * body (release: () => Promise<void>): AsyncGenerator<string> {
      try {
        yield renderer ? renderer.start() : ds.header
        for (let next = first; !next.done; next = await batches.next()) yield renderer ? renderer.batch(next.value.rows) : next.value.lines
        if (renderer) yield renderer.end()
      } finally {
        await release()
      }
    }
    reply.header('content-type', `${OUTPUT_MEDIA_TYPES[format]}; charset=utf-8`)
      .header('x-dataset-fingerprint', ds.run.fingerprint ?? '')
      .header('x-canonical-format', ds.run.canonical_format)
      .header('x-row-count', String(ds.run.row_count ?? 0))
      .header('x-pipeline-run', ds.run.id)
      .trailer('x-rebuilt-fingerprint', async () => ds.fingerprint())
    return reply.send(streamReleasing(body, async () => batches.return?.()) as never)
  })

  app.post('/v1/pipeline-runs/:id/reproduce', {
    schema: {
      tags: ['pipelines'],
      summary: 'Rebuild a run and compare: is it reproducible?',
      description: 'Rebuilds the dataset exactly as the run pinned it, compares the fingerprints, and records a reproduction (kind reproduction, parent_id = the run) with its verdict: reproducible; not_reproducible, with the first differing rows and columns (?max_differences=, default 20); or data_removed_by_retention, when values the run used are older than what the retention policy keeps. Large runs answer 202 and are compared in the background.',
      params: RunIdParams,
      querystring: ReproduceQuery,
      response: { 201: PipelineRun, 202: PipelineRun, ...problems(400, 401, 403, 404, 409, 415, 429, 503) },
    },
  }, async (request, reply) => {
    const { run, background } = await app.services.pipelines.reproduce(request.params.id, request.query)
    request.auditDetail = { run_id: request.params.id, reproduction_id: run.id }
    return reply.code(background ? 202 : 201).header('location', RUN_LINK(run.id)).send(run)
  })
}

/** JSON / NDJSON of rebuilt rows, in the same shape as POST /v1/training-sets answers. */
function trainingRowsRenderer (ndjson: boolean, columns: string[], extraColumns: string[], featureColumns: string[]): { start: () => string, batch: (rows: TrainingRow[]) => string, end: () => string } {
  let first = true
  const json = (v: unknown): string => (typeof v === 'number' && !Number.isFinite(v) ? `"${String(v)}"` : (v === undefined ? 'null' : JSON.stringify(v)))
  return {
    start: () => (ndjson ? '' : `{"columns":${JSON.stringify(columns)},"rows":[`),
    batch: (rows) => {
      let out = ''
      for (const r of rows) {
        const o: string[] = [`"entity_id":${JSON.stringify(r.entity_id)}`, `"event_time":"${new Date(r.event_time).toISOString()}"`]
        for (const c of extraColumns) o.push(`${JSON.stringify(c)}:${json(r.extra[c])}`)
        featureColumns.forEach((c, i) => { o.push(`${JSON.stringify(c)}:${json(r.values[i])}`) })
        const line = `{${o.join(',')}}`
        if (ndjson) out += `${line}\n`
        else { out += first ? line : `,${line}`; first = false }
      }
      return out
    },
    end: () => (ndjson ? '' : ']}'),
  }
}
