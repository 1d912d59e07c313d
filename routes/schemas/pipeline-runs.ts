import { Type, type Static } from 'typebox'
import { Cursor, Limit, Name, NAME_PATTERN, Timestamp, TimestampFilter, UUID_PATTERN, Nullable } from './common.js'
import { TrainingSetRequestSchema } from './training-sets.js'

const Uuid = Type.String({ pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$', description: 'pipeline run id (UUIDv7)', examples: ['0190f1c2-7a3b-7c4d-8e5f-6a7b8c9d0e1f'] })

export const RunStatus = Type.Union([Type.Literal('queued'), Type.Literal('running'), Type.Literal('succeeded'), Type.Literal('failed'), Type.Literal('cancelled')], {
  description: 'queued (waiting for a background slot), running (being built), succeeded (built; for a reproduction: compared), failed (with error), cancelled',
})
const RunKind = Type.Union([Type.Literal('run'), Type.Literal('reproduction')])
const JsonObject = (description: string) => Type.Record(Type.String(), Type.Unknown(), { description })

const ts = TrainingSetRequestSchema.properties

export const CreateRunBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 200, description: 'what is being trained, e.g. the pipeline or experiment name', examples: ['phase5b_ensemble'] }),
  features: ts.features,
  contract: ts.contract,
  entity_rows: ts.entity_rows,
  grid: ts.grid,
  point_in_time: ts.point_in_time,
  params: Type.Optional(JsonObject('free-form training parameters, kept with the run')),
  model: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'the model trained on the dataset (a name; filterable)', examples: ['lgbm_ensemble'] })),
  code_version: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'version of the training code, e.g. a git commit', examples: ['9f1c2ab'] })),
  validation: Type.Optional(Type.Union([Type.Literal('fail'), Type.Literal('warn')], {
    default: 'fail',
    description: 'with a contract: fail (default) = a dataset breaking the contract fails the run, with the report; warn = the run succeeds and the report is recorded',
  })),
}, {
  additionalProperties: false,
  examples: [{
    name: 'phase5b_ensemble',
    contract: 'phase5b_ensemble_features',
    grid: { entities: ['BTCUSDT', 'ETHUSDT'], from: '2023-06-01T00:00:00Z', to: '2023-06-30T23:00:00Z', every: '1h' },
    point_in_time: 'known',
    params: { learning_rate: 0.05, n_estimators: 400 },
    model: 'lgbm_ensemble',
    code_version: '9f1c2ab',
    validation: 'fail',
  }],
})
export type CreateRunBody = Static<typeof CreateRunBody>

export const PatchRunBody = Type.Object({
  status: Type.Optional(Type.Union([Type.Literal('succeeded'), Type.Literal('failed'), Type.Literal('cancelled')], {
    description: 'cancelled or failed stop a queued or running build; a built run may move between succeeded and failed (e.g. training failed)',
  })),
  error: Type.Optional(Type.String({ maxLength: 2000, description: 'why, when setting status failed' })),
  metrics: Type.Optional(JsonObject('merged into the run\'s metrics key by key; a null value removes the key')),
  artifacts: Type.Optional(JsonObject('merged into the run\'s artifacts key by key (e.g. model URIs); a null value removes the key')),
}, {
  additionalProperties: false,
  minProperties: 1,
  examples: [{ metrics: { accuracy: 0.613, sharpe: 1.42 }, artifacts: { model_uri: 's3://models/lgbm_ensemble/2023-07-01.txt' } }],
})
export type PatchRunBody = Static<typeof PatchRunBody>

export const ReproduceQuery = Type.Object({
  max_differences: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 20, description: 'how many differing cells to list when the rebuild differs' })),
}, { additionalProperties: false })
export type ReproduceQuery = Static<typeof ReproduceQuery>

export const ListRunsQuery = Type.Object({
  name: Type.Optional(Type.String({ maxLength: 200 })),
  status: Type.Optional(RunStatus),
  model: Type.Optional(Type.String({ maxLength: 200 })),
  kind: Type.Optional(RunKind),
  parent_id: Type.Optional(Type.String({ pattern: UUID_PATTERN, description: 'the run a reproduction reproduced' })),
  feature: Type.Optional(Type.String({ pattern: NAME_PATTERN, description: 'runs that pinned this feature' })),
  from: Type.Optional(TimestampFilter),
  to: Type.Optional(TimestampFilter),
  cursor: Cursor,
  limit: Limit,
}, { additionalProperties: false })
export type ListRunsQuery = Static<typeof ListRunsQuery>

export const RunIdParams = Type.Object({ id: Uuid })

export const DatasetQuery = Type.Object({
  format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('ndjson'), Type.Literal('csv')], {
    description: 'overrides Accept: json, ndjson, or csv (the canonical form: its SHA-256 is the fingerprint)',
  })),
}, { additionalProperties: false })

const Difference = Type.Object({
  row: Type.Integer({ description: '0-based row of the dataset' }),
  entity_id: Nullable(Type.String()),
  event_time: Nullable(Type.String()),
  column: Nullable(Type.String({ description: 'canonical column name: entity_id, event_time, a pass-through column, or name@version' })),
  rebuilt: Nullable(Type.String({ description: 'the cell as rebuilt, in canonical form (the original value is not kept, only its digest)' })),
  detail: Type.Optional(Type.String()),
})

export const Reproduction = Type.Object({
  verdict: Type.Union([Type.Literal('reproducible'), Type.Literal('not_reproducible'), Type.Literal('data_removed_by_retention')]),
  reproducible: Type.Boolean(),
  detail: Type.String(),
  expected_fingerprint: Type.String(),
  fingerprint: Type.String(),
  expected_row_count: Type.Integer(),
  row_count: Type.Integer(),
  different_cells: Type.Integer(),
  different_rows: Type.Integer(),
  differences: Type.Array(Difference),
  differences_truncated: Type.Boolean(),
  retention: Nullable(JsonObject('the facts behind a retention verdict')),
})

export const PipelineRun = Type.Object({
  id: Type.String(),
  kind: RunKind,
  parent_id: Nullable(Type.String({ description: 'for a reproduction: the run it rebuilt' })),
  name: Type.String(),
  status: RunStatus,
  started_at: Type.String(),
  finished_at: Nullable(Type.String()),
  updated_at: Type.String(),
  features: Type.Array(Type.Object({ name: Type.String(), version: Type.Integer(), id: Type.Integer() }), { description: 'the pinned feature definitions, in column order' }),
  contract: Nullable(Type.Object({ name: Type.String(), version: Type.Integer() })),
  point_in_time: Type.Union([Type.Literal('event'), Type.Literal('known')]),
  as_of_system_time: Type.String({ description: 'the pinned knowledge cutoff K: the dataset holds only values ingested at or before it' }),
  entity_spec: Type.Union([
    Type.Object({ type: Type.Literal('rows'), row_count: Type.Integer(), extra_columns: Type.Array(Type.String()), min_event_time: Nullable(Type.String()), max_event_time: Nullable(Type.String()) }),
    Type.Object({ type: Type.Literal('grid'), row_count: Type.Integer(), grid: JsonObject('the grid as given') }),
  ], { description: 'the entity rows (stored with the run) or the grid the dataset was built from' }),
  params: JsonObject('training parameters'),
  model: Nullable(Type.String()),
  code_version: Nullable(Type.String()),
  validation: Type.Union([Type.Literal('fail'), Type.Literal('warn')]),
  validation_report: Nullable(JsonObject('the contract validation report (valid, errors, per_feature, summary)')),
  row_count: Nullable(Type.Integer()),
  progress: Type.Object({ rows_done: Type.Integer(), rows_total: Type.Integer(), fraction: Type.Number() }),
  fingerprint: Nullable(Type.String({ description: 'SHA-256 (hex) of the canonical dataset' })),
  fingerprint_algorithm: Type.Literal('sha256'),
  canonical_format: Type.String(),
  oldest_value_time: Nullable(Type.String({ description: 'event_time of the oldest stored value the dataset used (retention checks)' })),
  metrics: JsonObject('what the trainer reported, e.g. accuracy'),
  artifacts: JsonObject('what the trainer produced, e.g. model URIs'),
  error: Nullable(Type.String()),
  timings: Type.Record(Type.String(), Type.Number(), { description: 'milliseconds: pin_ms, store_ms, queue_ms, build_ms, validate_ms' }),
  reproduction: Nullable(Reproduction),
}, {
  examples: [{
    id: '0190f1c2-7a3b-7c4d-8e5f-6a7b8c9d0e1f', kind: 'run', parent_id: null, name: 'phase5b_ensemble', status: 'succeeded',
    started_at: '2024-07-01T10:00:00.000Z', finished_at: '2024-07-01T10:00:02.310Z', updated_at: '2024-07-01T10:00:02.310Z',
    features: [{ name: 'close_price', version: 1, id: 1 }, { name: 'volume', version: 1, id: 2 }],
    contract: null, point_in_time: 'event', as_of_system_time: '2024-07-01T10:00:00.120Z',
    entity_spec: { type: 'grid', row_count: 1440, grid: { entities: ['BTCUSDT', 'ETHUSDT'], from: '2023-06-01T00:00:00Z', to: '2023-06-30T23:00:00Z', every: '1h' } },
    params: { learning_rate: 0.05 }, model: 'lgbm_ensemble', code_version: '9f1c2ab', validation: 'fail', validation_report: null,
    row_count: 1440, progress: { rows_done: 1440, rows_total: 1440, fraction: 1 },
    fingerprint: '5f2b9c0d7e1a4b3c8d6e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e', fingerprint_algorithm: 'sha256', canonical_format: 'feature-store-canonical-csv/1',
    oldest_value_time: '2023-05-31T23:00:00.000Z', metrics: { accuracy: 0.613 }, artifacts: {}, error: null,
    timings: { pin_ms: 3.1, store_ms: 1.2, build_ms: 40.5 }, reproduction: null,
  }],
})
export type PipelineRunView = Static<typeof PipelineRun>

export const PipelineRunList = Type.Object({
  items: Type.Array(PipelineRun),
  next_cursor: Nullable(Type.String({ description: 'pass as cursor for the next page; null on the last page' })),
})

export const DATASET_HEADERS = {
  'x-dataset-fingerprint': 'the fingerprint recorded when the run was built (SHA-256 of the canonical form)',
  'x-canonical-format': 'the version of the canonical form',
  'x-row-count': 'rows that follow',
}
