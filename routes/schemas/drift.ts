import { Type, type Static } from 'typebox'
import { Cursor, EntityId, Limit, Name, RangeFrom, RangeTo, Ref, Timestamp, TimestampFilter, Nullable } from './common.js'


export const DriftMethodSchema = Type.Union(
  [Type.Literal('psi'), Type.Literal('ks'), Type.Literal('js'), Type.Literal('wasserstein')],
  { description: 'psi: population stability index; ks: Kolmogorov-Smirnov; js: Jensen-Shannon distance; wasserstein: Wasserstein-1 distance / reference stddev' },
)

export const Thresholds = Type.Object({
  psi: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: 'drift when PSI >= this (default 0.2)' })),
  ks: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1, description: 'drift when the KS p-value < this (default 0.05)' })),
  js: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1, description: 'drift when the Jensen-Shannon distance >= this (default 0.1)' })),
  wasserstein: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: 'drift when the normalised Wasserstein distance >= this (default 0.1)' })),
}, { additionalProperties: false, description: 'Threshold overrides per method' })

const Methods = Type.Array(DriftMethodSchema, { minItems: 1, maxItems: 4, uniqueItems: true, description: 'Methods to run (default: all four)' })

export const DriftReference = Type.Object({
  from: Type.Optional(Timestamp),
  to: Type.Optional(Timestamp),
  pipeline_run: Type.Optional(Type.String({ description: 'id of a pipeline run: its training dataset is the reference', examples: ['0190a6d2-7b7e-7c4e-9f0a-3c1d2e4f5a6b'] })),
}, { additionalProperties: false, description: 'A time window {from, to} (event_time, from inclusive, to exclusive) or {pipeline_run}' })

export const DriftWindow = Type.Object({
  from: Timestamp,
  to: Timestamp,
}, { additionalProperties: false, description: 'event_time window: from inclusive, to exclusive' })

export const DriftCheckBody = Type.Object({
  feature: Ref,
  entity_id: Type.Optional(EntityId),
  reference: DriftReference,
  current: DriftWindow,
  methods: Type.Optional(Methods),
  thresholds: Type.Optional(Thresholds),
  as_of_system_time: Type.Optional(Type.Union([Type.String(), Type.Integer()], { description: 'knowledge cutoff: read values as known at this moment (default: now)' })),
}, {
  additionalProperties: false,
  examples: [{
    feature: 'volume', entity_id: 'BTCUSDT',
    reference: { from: '2021-01-01T00:00:00Z', to: '2022-01-01T00:00:00Z' },
    current: { from: '2023-01-01T00:00:00Z', to: '2024-01-01T00:00:00Z' },
    methods: ['psi', 'ks'], thresholds: { psi: 0.25 },
  }],
})
export type DriftCheckBody = Static<typeof DriftCheckBody>

const SampleSide = Type.Object({
  from: Type.Optional(Type.String()),
  to: Type.Optional(Type.String()),
  pipeline_run: Type.Optional(Type.String()),
  cutoff: Type.Optional(Type.String({ description: 'the run\'s knowledge cutoff' })),
  point_in_time: Type.Optional(Type.String({ description: 'the run\'s point-in-time mode' })),
  feature_version: Type.Optional(Type.Integer({ description: 'the feature version the values were read from' })),
  count: Type.Integer({ description: 'numeric values in the sample (nulls, NaN and infinities left out)' }),
  mean: Nullable(Type.Number()),
  stddev: Nullable(Type.Number(), 'sample standard deviation'),
  min: Nullable(Type.Number()),
  max: Nullable(Type.Number()),
})

export const MethodResultSchema = Type.Object({
  method: DriftMethodSchema,
  status: Type.Union([Type.Literal('ok'), Type.Literal('insufficient_data')]),
  statistic: Nullable(Type.Number(), 'PSI, KS D, JS distance or normalised Wasserstein distance; null without a verdict'),
  p_value: Nullable(Type.Number(), 'KS only'),
  threshold: Type.Number(),
  drifted: Nullable(Type.Boolean()),
  distance: Type.Optional(Nullable(Type.Number(), 'Wasserstein only: the distance before normalisation, in the feature\'s unit')),
  note: Type.Optional(Type.String()),
})

export const BinSchema = Type.Object({
  lower: Nullable(Type.Number(), 'inclusive lower edge; null = minus infinity'),
  upper: Nullable(Type.Number(), 'exclusive upper edge; null = plus infinity'),
  reference_count: Type.Integer(),
  current_count: Type.Integer(),
  reference: Type.Number({ description: 'proportion of the reference in this bin' }),
  current: Type.Number({ description: 'proportion of the current window in this bin' }),
})

const FeatureVersion = Type.Object({ name: Type.String(), version: Type.Integer() })

export const DriftCheckResult = Type.Object({
  check_id: Type.String({ description: 'groups the log rows of this check (one per method)' }),
  checked_at: Type.String(),
  feature: FeatureVersion,
  entity_id: Nullable(Type.String(), 'null: all entities'),
  knowledge_cutoff: Type.String({ description: 'values were read as known at this moment (ingested_at <= it)' }),
  min_samples: Type.Integer({ description: 'values each sample needs for a verdict' }),
  status: Type.Union([Type.Literal('ok'), Type.Literal('insufficient_data')]),
  drifted: Nullable(Type.Boolean(), 'true when any method flags drift; null on insufficient data'),
  note: Type.Optional(Type.String()),
  reference: SampleSide,
  current: SampleSide,
  results: Type.Array(MethodResultSchema),
  bins: Type.Array(BinSchema, { description: 'the reference-quantile bins PSI and JS are computed over' }),
})
export type DriftCheckResult = Static<typeof DriftCheckResult>

export const DriftLogQuery = Type.Object({
  feature: Type.Optional(Type.String({ description: 'feature reference: name or name@version' })),
  entity_id: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'entity id' })),
  method: Type.Optional(DriftMethodSchema),
  drifted: Type.Optional(Type.Boolean()),
  status: Type.Optional(Type.Union([Type.Literal('ok'), Type.Literal('insufficient_data')])),
  from: Type.Optional(TimestampFilter),
  to: Type.Optional(TimestampFilter),
  check_id: Type.Optional(Type.String({ format: 'uuid' })),
  monitor_id: Type.Optional(Type.Integer({ minimum: 1, maximum: 9007199254740991 })),
  limit: Limit,
  cursor: Cursor,
}, { additionalProperties: false })
export type DriftLogQuery = Static<typeof DriftLogQuery>

export const DriftLogEntry = Type.Object({
  id: Type.Integer(),
  check_id: Type.String(),
  checked_at: Type.String(),
  feature: FeatureVersion,
  entity_id: Nullable(Type.String()),
  method: DriftMethodSchema,
  status: Type.Union([Type.Literal('ok'), Type.Literal('insufficient_data')]),
  statistic: Nullable(Type.Number()),
  p_value: Nullable(Type.Number()),
  threshold: Type.Number(),
  drifted: Nullable(Type.Boolean()),
  reference: Type.Object({}, { additionalProperties: true }),
  current: Type.Object({}, { additionalProperties: true }),
  knowledge_cutoff: Type.String(),
  monitor_id: Nullable(Type.Integer()),
  details: Type.Object({}, { additionalProperties: true, description: 'bins (psi, js), raw distance (wasserstein), notes, the monitor tick' }),
})
export type DriftLogEntry = Static<typeof DriftLogEntry>

export const DriftLogList = Type.Object({
  items: Type.Array(DriftLogEntry),
  next_cursor: Nullable(Type.String()),
})

export const DriftDailyQuery = Type.Object({
  feature: Type.Optional(Name),
  method: Type.Optional(DriftMethodSchema),
  from: Type.Optional(RangeFrom),
  to: Type.Optional(RangeTo),
}, { additionalProperties: false })
export type DriftDailyQuery = Static<typeof DriftDailyQuery>

export const DriftDailyList = Type.Object({
  from: Type.String(),
  to: Type.String(),
  items: Type.Array(Type.Object({
    day: Type.String(),
    feature: Type.String(),
    method: DriftMethodSchema,
    checks: Type.Integer(),
    drifted: Type.Integer({ description: 'checks that flagged drift' }),
    insufficient_data: Type.Integer({ description: 'checks without a verdict' }),
    mean_statistic: Nullable(Type.Number()),
    min_statistic: Nullable(Type.Number()),
    max_statistic: Nullable(Type.Number()),
  })),
})
export type DriftDailyList = Static<typeof DriftDailyList>

// ---------------------------------------------------------------------------------------------
// The write log (what each ingest wrote; lets a check read a correction-free window as a range)

export const WriteLogStatus = Type.Object({
  range_read: Type.Union([Type.Literal('available'), Type.Literal('off_until_rebuilt')], {
    description: 'available: checks read windows the log proves free of corrections with a plain range scan; off_until_rebuilt: values were written by SQL outside the ingest path, so every check takes the point-in-time read (same answers, slower) until the log is rebuilt',
  }),
  logged_writes: Type.Integer({ description: 'rows of the log: one per ingest transaction and feature' }),
  untracked_writes: Type.Integer({ description: 'statements that wrote feature values outside the ingest path since the last rebuild' }),
  first_untracked_at: Nullable(Type.String({ description: 'RFC 3339' })),
  last_untracked_at: Nullable(Type.String({ description: 'RFC 3339' })),
})
export type WriteLogStatus = Static<typeof WriteLogStatus>

export const WriteLogRebuilt = Type.Object({
  logged_writes: Type.Integer({ description: 'rows of the rebuilt log: one per (feature, ingested_at) of the stored values' }),
  cleared_untracked_writes: Type.Integer({ description: 'untracked-write records cleared' }),
  took_ms: Type.Number(),
  range_read: Type.Literal('available'),
})
export type WriteLogRebuilt = Static<typeof WriteLogRebuilt>

// ---------------------------------------------------------------------------------------------
// Monitors

const Duration = Type.String({ pattern: '^\\d{1,12}(ms|s|m|h|d|w)$', description: 'a duration: whole number and unit (ms, s, m, h, d, w)', examples: ['7d'] })

export const RelativeWindow = Type.Object({
  offset: Duration,
  length: Duration,
}, { additionalProperties: false, description: 'the window [now - offset - length, now - offset)' })

export const MonitorBody = Type.Object({
  name: Name,
  description: Type.Optional(Type.String({ maxLength: 2000 })),
  feature: Ref,
  entity_id: Type.Optional(EntityId),
  reference: RelativeWindow,
  current: RelativeWindow,
  methods: Type.Optional(Methods),
  thresholds: Type.Optional(Thresholds),
  schedule: Type.Object({ every: Duration }, { additionalProperties: false }),
  enabled: Type.Optional(Type.Boolean({ default: true })),
}, {
  additionalProperties: false,
  examples: [{
    name: 'btc_volume_daily', feature: 'volume', entity_id: 'BTCUSDT',
    reference: { offset: '7d', length: '30d' }, current: { offset: '0s', length: '1d' },
    methods: ['psi', 'ks'], schedule: { every: '1h' },
  }],
})
export type MonitorBody = Static<typeof MonitorBody>

export const MonitorPatch = Type.Object({
  name: Type.Optional(Name),
  description: Type.Optional(Type.String({ maxLength: 2000 })),
  feature: Type.Optional(Ref),
  entity_id: Type.Optional(Nullable(EntityId, 'null: all entities')),
  reference: Type.Optional(RelativeWindow),
  current: Type.Optional(RelativeWindow),
  methods: Type.Optional(Methods),
  thresholds: Type.Optional(Thresholds),
  schedule: Type.Optional(Type.Object({ every: Duration }, { additionalProperties: false })),
  enabled: Type.Optional(Type.Boolean()),
}, { additionalProperties: false, minProperties: 1, examples: [{ enabled: false }, { schedule: { every: '6h' }, thresholds: { psi: 0.3 } }] })
export type MonitorPatch = Static<typeof MonitorPatch>

export const MonitorId = Type.Object({ id: Type.Integer({ minimum: 1, maximum: 9007199254740991, description: 'monitor id', examples: [1] }) })

export const MonitorView = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  description: Type.String(),
  feature: Type.String(),
  entity_id: Nullable(Type.String()),
  reference: Type.Object({ offset: Type.String(), length: Type.String() }),
  current: Type.Object({ offset: Type.String(), length: Type.String() }),
  methods: Type.Array(DriftMethodSchema),
  thresholds: Type.Object({ psi: Type.Number(), ks: Type.Number(), js: Type.Number(), wasserstein: Type.Number() }, { description: 'effective thresholds (overrides over defaults)' }),
  schedule: Type.Object({ every: Type.String() }),
  enabled: Type.Boolean(),
  next_run_at: Type.String(),
  runs: Type.Integer({ description: 'ticks run so far' }),
  last_run: Nullable(Type.Object({
    at: Type.String(),
    check_id: Nullable(Type.String()),
    status: Nullable(Type.String({ description: 'ok, insufficient_data or error' })),
    drifted: Nullable(Type.Boolean()),
    error: Nullable(Type.String()),
  })),
  created_at: Type.String(),
  updated_at: Type.String(),
})
export type MonitorView = Static<typeof MonitorView>

export const MonitorQuery = Type.Object({
  feature: Type.Optional(Name),
  enabled: Type.Optional(Type.Boolean()),
  limit: Limit,
  cursor: Cursor,
}, { additionalProperties: false })
export type MonitorQuery = Static<typeof MonitorQuery>

export const MonitorList = Type.Object({
  items: Type.Array(MonitorView),
  next_cursor: Nullable(Type.String()),
})
