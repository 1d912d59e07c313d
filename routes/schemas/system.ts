import { Type, type Static } from 'typebox'
import { Nullable } from './common.js'

const DateTime = (description?: string) => Type.String({ format: 'date-time', ...(description ? { description } : {}) })

export const StorageTable = Type.Object({
  name: Type.String({ examples: ['feature_snapshots'] }),
  hypertable: Type.Boolean({ description: 'true: a TimescaleDB hypertable; false: a plain table (postgres mode)' }),
  time_column: Type.String({ examples: ['event_time'] }),
  chunk_interval: Nullable(Type.String({ description: 'interval of new chunks (null for a plain table)', examples: ['7 days'] })),
  chunks: Type.Integer({ description: 'number of chunks (0 for a plain table)' }),
  compressed_chunks: Type.Integer({ description: 'chunks stored compressed (columnstore)' }),
  compression_enabled: Type.Boolean(),
  compression_ratio: Nullable(Type.Number({ description: 'bytes before / bytes after compression of the compressed chunks; null when none is compressed' })),
  bytes_before_compression: Nullable(Type.Integer()),
  bytes_after_compression: Nullable(Type.Integer()),
  total_bytes: Type.Integer({ description: 'table, indexes and toast, all chunks' }),
})

export const Aggregate = Type.Object({
  name: Type.String({ examples: ['feature_stats_hourly'] }),
  kind: Type.Union([Type.Literal('continuous_aggregate'), Type.Literal('materialized_view')]),
  source: Nullable(Type.String({ description: 'the hypertable, table or aggregate it is computed from' })),
  real_time: Type.Boolean({ description: 'reads include rows not materialized yet' }),
  materialized_until: Nullable(DateTime('buckets before this are materialized; later ones are computed when read')),
  last_refresh: Nullable(DateTime('end of the last successful refresh')),
  last_refresh_status: Nullable(Type.String({ examples: ['Success', 'Failed'] })),
})

export const StorageJob = Type.Object({
  id: Nullable(Type.Integer({ description: 'TimescaleDB job id (null for a refresh run by the service in postgres mode)' })),
  kind: Type.String({ description: 'policy_compression, policy_retention, policy_refresh_continuous_aggregate, refresh_materialized_view, ...' }),
  target: Nullable(Type.String({ description: 'hypertable or aggregate the job works on' })),
  schedule_interval: Nullable(Type.String({ examples: ['12:00:00'] })),
  config: Nullable(Type.Object({}, { additionalProperties: true })),
  scheduled: Type.Boolean(),
  last_run_status: Nullable(Type.String({ examples: ['Success', 'Failed'] })),
  last_run_started_at: Nullable(DateTime()),
  last_successful_finish: Nullable(DateTime()),
  next_start: Nullable(DateTime()),
  total_runs: Nullable(Type.Integer()),
  total_failures: Nullable(Type.Integer()),
})

export const SystemInfo = Type.Object({
  service_version: Type.String({ examples: ['0.1.0'] }),
  postgres_version: Type.String({ examples: ['15.18'] }),
  timescaledb_version: Nullable(Type.String({ description: 'installed extension version; null in postgres mode', examples: ['2.28.3'] })),
  timescaledb_available_version: Nullable(Type.String({ description: 'version the server offers; differs from the installed one until ALTER EXTENSION timescaledb UPDATE' })),
  storage_mode: Type.Union([Type.Literal('timescaledb'), Type.Literal('postgres')]),
  tables: Type.Array(StorageTable, { description: 'the time-series tables: hypertables in timescaledb mode, plain tables in postgres mode' }),
  aggregates: Type.Array(Aggregate, { description: 'statistics aggregates: continuous aggregates (timescaledb) or materialized views refreshed by the service (postgres)' }),
  jobs: Type.Array(StorageJob, { description: 'storage policies and refreshes with their last run' }),
}, {
  examples: [{
    service_version: '0.1.0',
    postgres_version: '15.18',
    timescaledb_version: '2.28.3',
    timescaledb_available_version: '2.28.3',
    storage_mode: 'timescaledb',
    tables: [{ name: 'feature_snapshots', hypertable: true, time_column: 'event_time', chunk_interval: '7 days', chunks: 53, compressed_chunks: 52, compression_enabled: true, compression_ratio: 11.4, bytes_before_compression: 912261120, bytes_after_compression: 80019456, total_bytes: 96731136 }],
    aggregates: [{ name: 'feature_stats_hourly', kind: 'continuous_aggregate', source: 'feature_snapshots', real_time: true, materialized_until: '2024-06-01T11:00:00.000Z', last_refresh: '2024-06-01T11:30:02.114Z', last_refresh_status: 'Success' }],
    jobs: [{ id: 1000, kind: 'policy_compression', target: 'feature_snapshots', schedule_interval: '12:00:00', config: { hypertable_id: 1, compress_after: '7 days' }, scheduled: true, last_run_status: 'Success', last_run_started_at: '2024-06-01T06:00:00.000Z', last_successful_finish: '2024-06-01T06:00:03.512Z', next_start: '2024-06-01T18:00:03.512Z', total_runs: 40, total_failures: 0 }],
  }],
})
export type SystemInfo = Static<typeof SystemInfo>
