import { Type, type Static } from 'typebox'
import { Value } from 'typebox/value'

/** Environment -> typed configuration, validated once at start. */
export const ConfigSchema = Type.Object({
  HOST: Type.String({ default: '127.0.0.1', description: 'Address the HTTP server binds to' }),
  PORT: Type.Integer({ default: 3000, minimum: 0, maximum: 65535, description: 'HTTP port' }),
  DATABASE_URL: Type.Optional(Type.String({ description: 'PostgreSQL URL; unset = embedded PostgreSQL under DATA_DIR' })),
  DATA_DIR: Type.String({ default: './data', description: 'Where the embedded PostgreSQL keeps its files' }),
  EMBEDDED_PG_PORT: Type.Integer({ default: 54329, minimum: 1, maximum: 65535, description: 'Port of the embedded PostgreSQL (loopback only)' }),
  STORAGE_MODE: Type.Union([Type.Literal('auto'), Type.Literal('timescaledb'), Type.Literal('postgres')], { default: 'auto', description: 'auto | timescaledb | postgres' }),
  LOG_LEVEL: Type.String({ default: 'info', description: 'pino log level' }),
  LOG_REQUESTS: Type.Union([Type.Literal('all'), Type.Literal('mutations'), Type.Literal('errors')], { default: 'mutations', description: 'Access log: all = two lines per request (received, completed); mutations = one line per mutation and per failed request (status >= 400); errors = one line per failed request only' }),
  DB_POOL_MAX: Type.Integer({ default: 10, minimum: 1, description: 'Database connection pool size' }),
  DB_IDLE_TIMEOUT_SECONDS: Type.Integer({ default: 600, minimum: 0, description: 'Seconds an unused pooled connection stays open; 0 = until it reaches its lifetime (30-60 min). A new connection reads its first pages of shared memory slowly (~+45 % for a first drift check over a million values)' }),
  BODY_LIMIT_BYTES: Type.Integer({ default: 10 * 1024 * 1024, minimum: 1024, description: 'Maximum JSON body size' }),
  MAX_JSON_ROWS: Type.Integer({ default: 100_000, minimum: 1, description: 'Maximum rows in one JSON request' }),
  VALUES_BODY_LIMIT_BYTES: Type.Integer({ default: 32 * 1024 * 1024, minimum: 1024, description: 'Maximum JSON body size of POST /v1/values (room for MAX_JSON_ROWS rows of ~330 bytes; NDJSON and CSV are streamed without a limit)' }),
  MAX_TRAINING_ROWS: Type.Integer({ default: 1_000_000, minimum: 1, description: 'Maximum entity rows of one training set (inline or grid)' }),
  TRAINING_BODY_LIMIT_BYTES: Type.Integer({ default: 256 * 1024 * 1024, minimum: 1024, description: 'Maximum body size of POST /v1/training-sets and /v1/pipeline-runs' }),
  TRAINING_BLOCK_ROWS: Type.Integer({ default: 131_072, minimum: 1, description: 'Training sets are answered in blocks of this many entity rows, the first an eighth of it (memory per request is proportional to it)' }),
  TRAINING_READ_CONNECTIONS: Type.Union([Type.Literal('auto'), Type.Integer({ minimum: 1 })], { default: 'auto', description: 'Connections one training set reads its blocks on in parallel, all on one snapshot (1 reads a block while the previous one is rendered; 2 lets PostgreSQL read on a second core meanwhile); auto = 2 in postgres mode, 1 in TimescaleDB mode; fewer are used while the pool is busy' }),
  TRAINING_RENDER_THREADS: Type.Integer({ default: 1, minimum: 0, maximum: 64, description: 'Threads that write training sets\' text (CSV, JSON, NDJSON) while the main thread reads and merges the next block; each training set uses one; 0 = written on the main thread' }),
  PIT_READS: Type.Union([Type.Literal('auto'), Type.Literal('bounded'), Type.Literal('direct')], { default: 'auto', description: 'Point-in-time reads (retrieve, training sets, pipeline runs): bounded = each block read plans with its time bounds as constants, so a hypertable plans only the chunks it can touch; direct = one COPY with run-time bounds (cheapest on plain tables); auto = bounded in TimescaleDB mode, direct in postgres mode' }),
  PIT_LOOKBACK_SECONDS: Type.Integer({ default: 604_800, minimum: 1, maximum: 3_153_600_000, description: 'Bounded point-in-time reads look this far before a block\'s earliest point in time for the value in force first; only a value in force since longer (none within the lookback, an older one stored) costs a read over the older chunks' }),
  CACHE_MAX_KEYS: Type.Integer({ default: 1_000_000, minimum: 1, description: 'Online cache capacity (feature x entity keys)' }),
  ONLINE_FAST_PATH: Type.Union([Type.Literal('on'), Type.Literal('off')], { default: 'on', description: 'on: a cached GET /v1/online/{entity}?features=… with a plain URL is answered before routing (same answer, about 1.3x less server CPU); off: every request goes through the router and its hooks. Off anyway with LOG_REQUESTS=all or CORS_ORIGINS' }),
  CACHE_TTL_SECONDS: Type.Integer({ default: 300, minimum: 0, description: 'Online cache entry lifetime; 0 = until invalidated' }),
  COMPRESS_AFTER: Type.String({ default: '7 days', description: 'TimescaleDB: compress feature_snapshots chunks older than this' }),
  RETENTION: Type.Optional(Type.String({ description: 'TimescaleDB: drop feature_snapshots chunks older than this (e.g. 400 days); unset = keep forever' })),
  SNAPSHOT_CHUNK_INTERVAL: Type.String({ default: '7 days', description: 'TimescaleDB chunk interval of feature_snapshots' }),
  RUNS_CHUNK_INTERVAL: Type.String({ default: '30 days', description: 'TimescaleDB chunk interval of pipeline_runs' }),
  PIPELINE_SYNC_MAX_ROWS: Type.Integer({ default: 50_000, minimum: 0, description: 'Pipeline runs and reproductions of more rows than this run in the background (202); smaller ones answer when done' }),
  PIPELINE_CONCURRENCY: Type.Integer({ default: 2, minimum: 1, description: 'Background pipeline runs built at once by one instance; the rest wait as queued' }),
  DRIFT_CHUNK_INTERVAL: Type.String({ default: '30 days', description: 'TimescaleDB chunk interval of feature_drift_logs' }),
  STATS_REFRESH_SECONDS: Type.Integer({ default: 300, minimum: 1, description: 'postgres mode: how often the stats materialized views are refreshed' }),
  FRESHNESS_METRICS_SECONDS: Type.Integer({ default: 30, minimum: 0, description: 'The freshness gauges of /metrics (entities, newest and stalest event time, stale entities per feature) are read from the database at most this often; 0 = not exported' }),
  DRIFT_MIN_SAMPLES: Type.Integer({ default: 30, minimum: 1, description: 'Fewest numeric values a drift window needs for a verdict (fewer: "insufficient data")' }),
  MONITOR_POLL_MS: Type.Integer({ default: 5000, minimum: 50, description: 'How often an instance looks for due drift monitors' }),
  SERIES_PACKS: Type.Boolean({ default: true, description: 'postgres mode: point-in-time reads (training sets, retrieve, pipeline runs; "event" mode) read numeric values before the pack horizon from series packs, a packed copy a background job keeps, where the write log proves it current (exactly the same answers, a fraction of the database work); off = always from the rows, and no packs are built' }),
  SERIES_PACK_INTERVAL_SECONDS: Type.Integer({ default: 300, minimum: 1, description: 'How often an instance with BACKGROUND_JOBS brings the series packs up to date' }),
  SERIES_PACK_SETTLE_SECONDS: Type.Integer({ default: 86_400, minimum: 0, description: 'The pack horizon is the start of the UTC month this long before now: values of earlier months are packed, later ones always read from the rows' }),
  BACKGROUND_JOBS: Type.Boolean({ default: true, description: 'Run background jobs (monitors, view refresh) in this instance' }),
  LOAD_DEFAULTS: Type.Boolean({ default: true, description: 'Load the default definitions and contract on start' }),
  IDEMPOTENCY_KEEP_HOURS: Type.Integer({ default: 24, minimum: 24, description: 'POST /v1/values: how long Idempotency-Key answers are kept (at least 24 h)' }),
  AUTH: Type.Optional(Type.Union([Type.Literal('on'), Type.Literal('off')], { description: 'on | off; unset = on, except the zero-setup mode (embedded PostgreSQL on a loopback HOST)' })),
  ADMIN_API_KEY: Type.Optional(Type.String({ minLength: 20, description: 'An admin API key accepted from the environment (at least 20 characters; bootstraps key management)' })),
  AUTH_CACHE_SECONDS: Type.Integer({ default: 5, minimum: 0, description: 'How long a key lookup is cached in this instance (revocations reach other instances within this time)' }),
  RATE_LIMIT_MAX: Type.Integer({ default: 6000, minimum: 0, description: 'Requests per key (or per IP without a key) per RATE_LIMIT_WINDOW_MS; 0 = no rate limit' }),
  RATE_LIMIT_WINDOW_MS: Type.Integer({ default: 60_000, minimum: 1000, description: 'Rate limit window' }),
  CORS_ORIGINS: Type.Optional(Type.String({ description: 'Comma-separated origins allowed by CORS, or *; unset = CORS off' })),
  TRUST_PROXY: Type.Boolean({ default: false, description: 'Trust X-Forwarded-* from a reverse proxy (client IP for rate limits and the audit log; X-Forwarded-Proto https turns on Strict-Transport-Security)' }),
  PRESSURE_MAX_EVENT_LOOP_DELAY_MS: Type.Integer({ default: 1000, minimum: 0, description: 'Answer 503 while the event loop lags more than this; 0 = off' }),
  PRESSURE_MAX_HEAP_USED_BYTES: Type.Optional(Type.Integer({ minimum: 0, description: 'Answer 503 while the V8 heap holds more than this; unset = 90 % of the heap limit; 0 = off' })),
  DB_HEARTBEAT_SECONDS: Type.Integer({ default: 5, minimum: 0, description: 'How often a SELECT 1 checks the database is reachable (answers given meanwhile from caches are marked stale); 0 = only when a request fails' }),
  SHUTDOWN_TIMEOUT_MS: Type.Integer({ default: 10_000, minimum: 0, description: 'On SIGTERM: how long in-flight requests may take before their connections are closed' }),
})
export type Config = Static<typeof ConfigSchema>

export class ConfigError extends Error {}

const BOOLEAN_KEYS = new Set(['BACKGROUND_JOBS', 'LOAD_DEFAULTS', 'TRUST_PROXY', 'SERIES_PACKS'])

export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Config> = {}): Config {
  const raw: Record<string, unknown> = {}
  for (const key of Object.keys(ConfigSchema.properties)) {
    const v = env[key]
    if (v === undefined || v === '') continue
    if (BOOLEAN_KEYS.has(key)) raw[key] = !['0', 'false', 'no', 'off'].includes(v.toLowerCase())
    else {
      const prop = (ConfigSchema.properties as Record<string, { type?: string, anyOf?: Array<{ type?: string }> }>)[key]
      const integer = prop.type === 'integer' || (prop.anyOf?.some((p) => p.type === 'integer') === true && /^-?\d+$/.test(v.trim()))
      raw[key] = integer ? Number(v) : v
    }
  }
  Object.assign(raw, overrides)
  const withDefaults = Value.Default(ConfigSchema, raw)
  const errors = [...Value.Errors(ConfigSchema, withDefaults)]
  if (errors.length > 0) {
    const detail = errors.map((e) => `${e.instancePath.replace(/^\//, '') || 'config'}: ${e.message}`).join('; ')
    throw new ConfigError(`Invalid configuration: ${detail}`)
  }
  return withDefaults as Config
}

/**
 * The connections a training set reads on: TRAINING_READ_CONNECTIONS, where `auto` is 2 in
 * postgres mode and 1 in TimescaleDB mode. A second connection paid off on plain tables (0.75-0.80
 * of one connection's time for 1M inline rows, 2-core Intel machine); on compressed hypertables
 * there was no gain to count on (0.83-1.21 of the time), and a run right after loading, with the
 * compression policy most likely running, took 1.6x as long.
 */
export function trainingReadConnections (config: Pick<Config, 'TRAINING_READ_CONNECTIONS'>, storageMode: 'postgres' | 'timescaledb'): number {
  const v = config.TRAINING_READ_CONNECTIONS
  if (v !== 'auto') return v
  return storageMode === 'timescaledb' ? 1 : 2
}
