import type { Sql, TxSql } from './connection.js'

type AnySql = Sql | TxSql

/**
 * The time-partitioned tables of the service: hypertables in timescaledb mode, plain tables in
 * postgres mode. Their DDL is the same in both modes (the primary keys include the time column),
 * which is what lets a postgres-mode database be converted in place.
 */
export const TIME_SERIES_TABLES = [
  // defaultIndexes: whether the migration lets create_hypertable add its index on the time column
  { table: 'feature_snapshots', timeColumn: 'event_time', compressed: true, defaultIndexes: true },
  { table: 'pipeline_runs', timeColumn: 'started_at', compressed: false, defaultIndexes: true },
  { table: 'feature_drift_logs', timeColumn: 'checked_at', compressed: false, defaultIndexes: false },
] as const
export type TimeSeriesTable = typeof TIME_SERIES_TABLES[number]['table']

/** Compression settings of feature_snapshots: the same as migrations/002 sets on a fresh database. */
const SNAPSHOT_COMPRESSION = {
  segmentby: 'feature_id, entity_id',
  orderby: 'event_time DESC, ingested_at DESC',
}

/** Serialises storage-policy changes of several instances starting at once. */
const POLICY_LOCK = 7_305_060

// ---------------------------------------------------------------------------------------------
// Intervals

/** The interval as PostgreSQL reads it, or an error message when it is not a positive interval. */
export async function checkInterval (sql: AnySql, text: string): Promise<{ ok: true, normalized: string } | { ok: false, message: string }> {
  try {
    const [row] = await sql<{ normalized: string, positive: boolean }[]>`
      SELECT ${text}::interval::text AS normalized, ${text}::interval > interval '0' AS positive`
    return row.positive ? { ok: true, normalized: row.normalized } : { ok: false, message: 'must be a positive interval' }
  } catch (err) {
    return { ok: false, message: (err as Error).message }
  }
}

// ---------------------------------------------------------------------------------------------
// Hypertables and chunk intervals

export interface HypertableRow {
  table: string
  time_column: string
  chunk_interval: string | null
  chunks: number
  compressed_chunks: number
  compression_enabled: boolean
  before_bytes: number | null
  after_bytes: number | null
  total_bytes: number
}

/** Every hypertable of the public schema with its chunk and compression figures. */
export async function listHypertables (sql: AnySql): Promise<HypertableRow[]> {
  return sql<HypertableRow[]>`
    SELECT h.hypertable_name::text AS table,
           d.column_name::text AS time_column,
           d.time_interval::text AS chunk_interval,
           h.num_chunks::int8 AS chunks,
           (SELECT count(*) FROM timescaledb_information.chunks c
             WHERE c.hypertable_schema = h.hypertable_schema AND c.hypertable_name = h.hypertable_name
               AND c.is_compressed)::int8 AS compressed_chunks,
           h.compression_enabled,
           s.before_compression_total_bytes::int8 AS before_bytes,
           s.after_compression_total_bytes::int8 AS after_bytes,
           hypertable_size(format('%I.%I', h.hypertable_schema, h.hypertable_name)::regclass)::int8 AS total_bytes
    FROM timescaledb_information.hypertables h
    JOIN timescaledb_information.dimensions d
      ON d.hypertable_schema = h.hypertable_schema AND d.hypertable_name = h.hypertable_name AND d.dimension_number = 1
    LEFT JOIN LATERAL hypertable_compression_stats(format('%I.%I', h.hypertable_schema, h.hypertable_name)::regclass) s ON true
    WHERE h.hypertable_schema = 'public'
    ORDER BY 1`
}

export interface PlainTableRow { table: string, total_bytes: number }

/** The given tables that exist as plain tables in the public schema (postgres mode). */
export async function listPlainTables (sql: AnySql, tables: readonly string[]): Promise<PlainTableRow[]> {
  return sql<PlainTableRow[]>`
    SELECT c.relname::text AS table, pg_total_relation_size(c.oid)::int8 AS total_bytes
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname = ANY(${tables as string[]}::text[])
    ORDER BY 1`
}

/** Current chunk interval of a hypertable, or null when the table is not a hypertable. */
export async function chunkInterval (sql: AnySql, table: string): Promise<string | null> {
  const [row] = await sql<{ interval: string }[]>`
    SELECT time_interval::text AS interval FROM timescaledb_information.dimensions
    WHERE hypertable_schema = 'public' AND hypertable_name = ${table} AND dimension_number = 1`
  return row?.interval ?? null
}

/** Sets the interval of chunks created from now on; existing chunks keep theirs. */
export async function setChunkInterval (sql: AnySql, table: string, interval: string): Promise<void> {
  await sql`SELECT set_chunk_time_interval(${`public.${table}`}::regclass, ${interval}::interval)`
}

export async function intervalsEqual (sql: AnySql, a: string, b: string): Promise<boolean> {
  const [row] = await sql<{ eq: boolean }[]>`SELECT ${a}::interval = ${b}::interval AS eq`
  return row.eq
}

// ---------------------------------------------------------------------------------------------
// Policies (background jobs of TimescaleDB)

export type PolicyKind = 'policy_compression' | 'policy_retention'

/** The interval a policy of a hypertable runs with (compress_after / drop_after), or null when absent. */
export async function policyInterval (sql: AnySql, table: string, kind: PolicyKind): Promise<string | null> {
  const key = kind === 'policy_compression' ? 'compress_after' : 'drop_after'
  const [row] = await sql<{ after: string }[]>`
    SELECT config ->> ${key} AS after FROM timescaledb_information.jobs
    WHERE proc_name = ${kind} AND hypertable_schema = 'public' AND hypertable_name = ${table}
    ORDER BY job_id LIMIT 1`
  return row?.after ?? null
}

export async function addCompressionPolicy (sql: AnySql, table: string, after: string): Promise<void> {
  await sql`SELECT add_compression_policy(${`public.${table}`}::regclass, compress_after => ${after}::interval)`
}

export async function removeCompressionPolicy (sql: AnySql, table: string): Promise<void> {
  await sql`SELECT remove_compression_policy(${`public.${table}`}::regclass, if_exists => true)`
}

export async function addRetentionPolicy (sql: AnySql, table: string, after: string): Promise<void> {
  await sql`SELECT add_retention_policy(${`public.${table}`}::regclass, drop_after => ${after}::interval)`
}

export async function removeRetentionPolicy (sql: AnySql, table: string): Promise<void> {
  await sql`SELECT remove_retention_policy(${`public.${table}`}::regclass, if_exists => true)`
}

/** Runs `fn` in one transaction holding the policy lock, so concurrent starts do not race. */
export async function withPolicyLock<T> (sql: Sql, fn: (tx: TxSql) => Promise<T>): Promise<T> {
  return sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${POLICY_LOCK})`
    return fn(tx)
  }) as Promise<T>
}

// ---------------------------------------------------------------------------------------------
// What GET /v1/system reports

export interface AggregateRow {
  name: string
  source: string
  materialized_only: boolean
  watermark: Date | null
}

/** Continuous aggregates with the point up to which they are materialized. */
export async function listContinuousAggregates (sql: AnySql): Promise<AggregateRow[]> {
  return sql<AggregateRow[]>`
    SELECT ca.view_name::text AS name,
           coalesce(parent.view_name, ca.hypertable_name)::text AS source,
           ca.materialized_only,
           CASE WHEN w.w IS NULL OR w.w = '-infinity' OR w.w < timestamptz '1000-01-01' THEN NULL ELSE w.w END AS watermark
    FROM timescaledb_information.continuous_aggregates ca
    JOIN _timescaledb_catalog.hypertable mh
      ON mh.schema_name = ca.materialization_hypertable_schema AND mh.table_name = ca.materialization_hypertable_name
    -- an aggregate on an aggregate reads the parent's materialization hypertable
    LEFT JOIN timescaledb_information.continuous_aggregates parent
      ON parent.materialization_hypertable_schema = ca.hypertable_schema AND parent.materialization_hypertable_name = ca.hypertable_name
    CROSS JOIN LATERAL (SELECT _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(mh.id)) AS w) w
    WHERE ca.view_schema = 'public'
    ORDER BY 1`
}

export interface JobRow {
  id: number
  kind: string
  target: string | null
  schedule_interval: string
  config: Record<string, unknown> | null
  scheduled: boolean
  last_run_status: string | null
  last_run_started_at: Date | null
  last_successful_finish: Date | null
  next_start: Date | null
  total_runs: number | null
  total_failures: number | null
}

/** The policies (jobs) of the service's hypertables and continuous aggregates, with their last run. */
export async function listJobs (sql: AnySql): Promise<JobRow[]> {
  return sql<JobRow[]>`
    SELECT j.job_id AS id, j.proc_name::text AS kind, coalesce(ca.view_name, j.hypertable_name)::text AS target,
           j.schedule_interval::text AS schedule_interval, j.config, j.scheduled,
           s.last_run_status, s.last_run_started_at, s.last_successful_finish, s.next_start,
           s.total_runs::int8 AS total_runs, s.total_failures::int8 AS total_failures
    FROM timescaledb_information.jobs j
    -- older TimescaleDB versions name a refresh policy's materialization hypertable, not its aggregate
    LEFT JOIN timescaledb_information.continuous_aggregates ca
      ON ca.materialization_hypertable_schema = j.hypertable_schema AND ca.materialization_hypertable_name = j.hypertable_name
    LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
    WHERE j.hypertable_schema = 'public' OR ca.view_schema = 'public'
    ORDER BY j.job_id`
}

export interface MaterializedViewRow {
  name: string
  source: string | null
  populated: boolean
  refreshed_at: Date | null
  watermark: Date | null
}

/** postgres mode: the materialized views, with the refresh state the service keeps for them. */
export async function listMaterializedViews (sql: AnySql): Promise<MaterializedViewRow[]> {
  const views = await sql<Omit<MaterializedViewRow, 'refreshed_at' | 'watermark'>[]>`
    SELECT c.relname::text AS name, c.relispopulated AS populated,
           (SELECT d.relname::text
              FROM pg_rewrite r
              JOIN pg_depend dep ON dep.classid = 'pg_rewrite'::regclass AND dep.objid = r.oid
              JOIN pg_class d ON d.oid = dep.refobjid
             WHERE r.ev_class = c.oid AND d.oid <> c.oid AND d.relkind IN ('r', 'p', 'v', 'm')
             ORDER BY d.relname LIMIT 1) AS source
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind = 'm'
    ORDER BY 1`
  const [state] = await sql<{ exists: boolean }[]>`SELECT to_regclass('public.stats_refresh_state') IS NOT NULL AS exists`
  const refreshed = new Map<string, { refreshed_at: Date, watermark: Date }>()
  if (state.exists) {
    const rows = await sql<{ view_name: string, refreshed_at: Date, watermark: Date }[]>`
      SELECT view_name, refreshed_at, watermark FROM stats_refresh_state`
    for (const r of rows) refreshed.set(r.view_name, r)
  }
  return views.map((v) => ({ ...v, refreshed_at: refreshed.get(v.name)?.refreshed_at ?? null, watermark: refreshed.get(v.name)?.watermark ?? null }))
}

export async function serverVersions (sql: AnySql): Promise<{ postgres: string, timescaledb: string | null, timescaledb_available: string | null }> {
  const [v] = await sql<{ postgres: string, timescaledb: string | null, timescaledb_available: string | null }[]>`
    SELECT split_part(current_setting('server_version'), ' ', 1) AS postgres,
           (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS timescaledb,
           (SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb') AS timescaledb_available`
  return v
}

// ---------------------------------------------------------------------------------------------
// Converting a postgres-mode database to timescaledb mode

/** Time-series tables that exist as plain tables while the timescaledb extension is installed. */
export async function plainTimeSeriesTables (sql: AnySql): Promise<string[]> {
  const rows = await sql<{ table: string }[]>`
    SELECT c.relname::text AS table
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind = 'r'
      AND c.relname = ANY(${TIME_SERIES_TABLES.map((t) => t.table)}::text[])
      AND NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables h
                      WHERE h.hypertable_schema = 'public' AND h.hypertable_name = c.relname)
    ORDER BY 1`
  return rows.map((r) => r.table)
}

/** True when the public schema holds hypertables (the database was set up in timescaledb mode). */
export async function hasHypertables (sql: AnySql): Promise<boolean> {
  const [row] = await sql<{ any: boolean }[]>`
    SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
       AND EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = '_timescaledb_catalog' AND c.relname = 'hypertable') AS any`
  if (!row.any) return false
  const [h] = await sql<{ n: number }[]>`
    SELECT count(*)::int8 AS n FROM _timescaledb_catalog.hypertable WHERE schema_name = 'public'`
  return h.n > 0
}

export interface PlainViewRow { name: string, definition: string, depends_on: string[] }

/** Plain materialized views of the public schema with their definitions and the relations they read. */
export async function listPlainMaterializedViews (sql: AnySql): Promise<PlainViewRow[]> {
  return sql<PlainViewRow[]>`
    SELECT c.relname::text AS name,
           pg_get_viewdef(c.oid, true) AS definition,
           coalesce(array(
             SELECT DISTINCT d.relname::text
             FROM pg_rewrite r
             JOIN pg_depend dep ON dep.classid = 'pg_rewrite'::regclass AND dep.objid = r.oid
             JOIN pg_class d ON d.oid = dep.refobjid
             WHERE r.ev_class = c.oid AND d.oid <> c.oid AND d.relkind IN ('r', 'p', 'v', 'm')
           ), '{}') AS depends_on
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind = 'm'
    ORDER BY 1`
}

/**
 * Rewrites the definition of a postgres-mode materialized view into the query of the
 * continuous aggregate a timescaledb-mode database has: the migrations use
 * date_bin(width, col, '2000-01-01 00:00:00+00') as the stand-in for time_bucket(width, col).
 * Another origin is kept as time_bucket's origin. Returns null when the view buckets nothing.
 */
export function continuousAggregateQuery (definition: string): string | null {
  const re = /date_bin\(('[^']*'::interval), ([^,()]+), ('[^']*'::timestamp with time zone)\)/g
  if (!re.test(definition)) return null
  return definition.trim().replace(/;$/, '').replace(re, (_m, width: string, col: string, origin: string) =>
    /^'2000-01-01 00:00:00\+00'::/.test(origin) ? `time_bucket(${width}, ${col})` : `time_bucket(${width}, ${col}, origin => ${origin})`)
}

/** Orders views so that each comes after the views it reads. */
export function dependencyOrder<T extends { name: string, depends_on: string[] }> (views: T[]): T[] {
  const byName = new Map(views.map((v) => [v.name, v]))
  const out: T[] = []
  const seen = new Set<string>()
  const visit = (v: T, path: Set<string>): void => {
    if (seen.has(v.name)) return
    if (path.has(v.name)) throw new Error(`materialized views depend on each other in a cycle through ${v.name}`)
    path.add(v.name)
    for (const d of v.depends_on) { const dep = byName.get(d); if (dep) visit(dep, path) }
    path.delete(v.name)
    seen.add(v.name)
    out.push(v)
  }
  for (const v of views) visit(v, new Set())
  return out
}

/** The views (in dependency order) that read one of `tables`, directly or through other views. */
function readersOf<T extends { name: string, depends_on: string[] }> (ordered: T[], tables: Set<string>): T[] {
  const reached = new Set(tables)
  const out: T[] = []
  for (const v of ordered) {
    if (v.depends_on.some((d) => reached.has(d))) { reached.add(v.name); out.push(v) }
  }
  return out
}

/** Tables that only postgres mode has (the refresh state of the materialized views). */
const POSTGRES_ONLY_TABLES = ['stats_refresh_state']

export interface ConversionReport { hypertables: string[], continuousAggregates: string[], dropped: string[] }

/**
 * Converts the plain time-series tables and materialized views of a database first migrated in
 * postgres mode into what timescaledb mode has: hypertables (existing rows moved into chunks
 * with migrate_data), compression settings, and continuous aggregates with real-time
 * aggregation (created empty: real-time aggregation answers until the refresh policies catch up).
 * One transaction: either all of it or nothing.
 */
export async function convertToTimescale (tx: TxSql, intervals: Record<TimeSeriesTable, string>): Promise<ConversionReport> {
  const report: ConversionReport = { hypertables: [], continuousAggregates: [], dropped: [] }
  const plain = new Set(await plainTimeSeriesTables(tx))
  const views = readersOf(dependencyOrder(await listPlainMaterializedViews(tx)), plain)
  // The views read the tables: drop them (dependents first) before the tables change shape.
  for (const v of [...views].reverse()) await tx`DROP MATERIALIZED VIEW ${tx(v.name)}`
  for (const spec of TIME_SERIES_TABLES) {
    if (!plain.has(spec.table)) continue
    await tx`SELECT create_hypertable(${`public.${spec.table}`}::regclass, ${spec.timeColumn}::name,
      chunk_time_interval => ${intervals[spec.table]}::interval, create_default_indexes => ${spec.defaultIndexes}::boolean,
      migrate_data => true)`
    if (spec.compressed) {
      await tx.unsafe(`ALTER TABLE public.${spec.table} SET (timescaledb.compress, timescaledb.compress_segmentby = '${SNAPSHOT_COMPRESSION.segmentby}', timescaledb.compress_orderby = '${SNAPSHOT_COMPRESSION.orderby}')`)
    }
    report.hypertables.push(spec.table)
  }
  for (const v of views) {
    const query = continuousAggregateQuery(v.definition)
    if (query === null) throw new Error(`materialized view ${v.name} has no date_bin bucket and cannot become a continuous aggregate`)
    // The definition text comes from the database's own catalog (pg_get_viewdef), not from input.
    await tx.unsafe(`CREATE MATERIALIZED VIEW public.${quoteIdent(v.name)} WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS ${query} WITH NO DATA`)
    report.continuousAggregates.push(v.name)
  }
  // the daily statistics of timescaledb mode aggregate the values, not the hourly aggregate
  // (migrations/080); a database that ran that migration in postgres mode has the function
  const [daily] = await tx<{ exists: boolean }[]>`SELECT to_regprocedure('public.feature_store_stats_daily_from_values()') IS NOT NULL AS exists`
  if (daily.exists) await tx`SELECT feature_store_stats_daily_from_values()`
  for (const table of POSTGRES_ONLY_TABLES) {
    const [row] = await tx<{ exists: boolean }[]>`SELECT to_regclass(${`public.${table}`}) IS NOT NULL AS exists`
    if (!row.exists) continue
    await tx`DROP TABLE ${tx(table)}`
    report.dropped.push(table)
  }
  return report
}

function quoteIdent (name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}
