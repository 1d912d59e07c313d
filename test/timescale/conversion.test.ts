import t from 'tap'
import pino from 'pino'
import { buildTestApp, createTestDatabase } from '../lib/helper.js'
import { insertDefinition, appendValues } from '../lib/fixtures.js'
import { openDatabase } from '../../db/bootstrap.js'
import { connect, type Sql } from '../../db/connection.js'
import { StorageModeError } from '../../db/storage-mode.js'
import { loadConfig } from '../../src/config.js'
import { startUp } from '../../src/services/startup.js'
import { continuousAggregateQuery, dependencyOrder } from '../../db/timescale.js'
import { onlyIn } from '../lib/test-server-mode.js'

const silent = pino({ level: 'silent' })
const HOUR = 3_600_000
const T0 = Date.UTC(2023, 0, 2)

/** The storage-relevant structure of a database, comparable between two databases. */
async function structure (sql: Sql): Promise<Record<string, unknown>> {
  const hypertables = await sql`
    SELECT hypertable_name::text AS name, column_name::text AS time_column, time_interval::text AS chunk_interval
    FROM timescaledb_information.dimensions WHERE hypertable_schema = 'public' ORDER BY 1`
  const compression = await sql`
    SELECT hypertable_name::text AS name, attname::text AS column, segmentby_column_index, orderby_column_index, orderby_asc
    FROM timescaledb_information.compression_settings WHERE hypertable_schema = 'public' ORDER BY 1, 2`
  const caggs = await sql`
    SELECT view_name::text AS name, materialized_only, regexp_replace(view_definition, '\\s+', ' ', 'g') AS definition
    FROM timescaledb_information.continuous_aggregates WHERE view_schema = 'public' ORDER BY 1`
  const tables = await sql`
    SELECT c.relname::text AS name, c.relkind::text AS kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p') ORDER BY 1`
  const indexes = await sql`
    SELECT tablename::text AS table, regexp_replace(indexdef, 'INDEX \\S+ ON', 'INDEX ON') AS def
    FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2`
  return { hypertables: [...hypertables], compression: [...compression], caggs: [...caggs], tables: [...tables], indexes: [...indexes] }
}

t.test('continuousAggregateQuery turns the postgres-mode stand-in back into time_bucket', async (t) => {
  const def = ` SELECT date_bin('01:00:00'::interval, s.event_time, '2000-01-01 00:00:00+00'::timestamp with time zone) AS bucket, count(*) AS n
   FROM s GROUP BY (date_bin('01:00:00'::interval, s.event_time, '2000-01-01 00:00:00+00'::timestamp with time zone));`
  t.equal(continuousAggregateQuery(def),
    `SELECT time_bucket('01:00:00'::interval, s.event_time) AS bucket, count(*) AS n
   FROM s GROUP BY (time_bucket('01:00:00'::interval, s.event_time))`)
  t.match(continuousAggregateQuery(`SELECT date_bin('7 days'::interval, b, '2000-01-03 00:00:00+00'::timestamp with time zone) AS w FROM x GROUP BY 1`),
    /time_bucket\('7 days'::interval, b, origin => '2000-01-03 00:00:00\+00'::timestamp with time zone\)/, 'another origin is kept')
  t.equal(continuousAggregateQuery('SELECT 1'), null, 'a view without a bucket is not an aggregate')
  const order = dependencyOrder([{ name: 'daily', depends_on: ['hourly'] }, { name: 'hourly', depends_on: ['feature_snapshots'] }, { name: 'drift', depends_on: [] }])
  t.same(order.map((v) => v.name), ['hourly', 'daily', 'drift'])
  t.throws(() => dependencyOrder([{ name: 'a', depends_on: ['b'] }, { name: 'b', depends_on: ['a'] }]), /cycle/)
})

t.test('a database first run in postgres mode is converted in place when TimescaleDB appears', await onlyIn('timescaledb'), async (t) => {

  // First life: postgres mode, with values, a run, and refreshed materialized views.
  const url = await createTestDatabase(t)
  const pgConfig = loadConfig({}, { STORAGE_MODE: 'postgres', LOAD_DEFAULTS: false, BACKGROUND_JOBS: false, DB_POOL_MAX: 3 })
  const first = await openDatabase(url, pgConfig)
  t.equal(first.storageMode, 'postgres')
  await startUp(first, pgConfig, silent)
  const f = await insertDefinition(first.sql, { name: 'close_price' })
  const rows = Array.from({ length: 24 * 40 }, (_, i) => ({ featureId: f, entityId: i % 2 === 0 ? 'BTC' : 'ETH', eventTimeMs: T0 + i * HOUR, num: i }))
  await appendValues(first.sql, rows)
  await appendValues(first.sql, [{ featureId: f, entityId: 'BTC', eventTimeMs: T0, num: -1 }]) // a correction
  await first.sql`INSERT INTO pipeline_runs (id, started_at, name, status, features, point_in_time, cutoff, entity_spec)
    VALUES (gen_random_uuid(), now(), 'r', 'succeeded', '[]', 'event', now(), '{"type": "rows"}')`.catch((err: Error) => {
    t.comment(`pipeline_runs not inserted: ${err.message}`)
  })
  await first.sql`REFRESH MATERIALIZED VIEW feature_stats_hourly`
  await first.sql`REFRESH MATERIALIZED VIEW feature_stats_daily`
  const statsBefore = await first.sql`SELECT bucket, feature_id, entity_id, row_count, sum, min, max FROM feature_stats_daily ORDER BY 1, 2, 3`
  t.ok(statsBefore.length >= 80, 'the materialized views hold the data')
  await first.sql.end()

  // Second life: auto mode on a server with TimescaleDB, on a pool of one connection (the
  // conversion runs on the migration's connection: there is no other)
  const { db, sql, app } = await buildTestApp(t, { url, config: { DB_POOL_MAX: 1 } })
  t.equal(db.storageMode, 'timescaledb')
  t.ok(db.converted, 'the database was converted')
  t.ok(db.converted!.hypertables.includes('feature_snapshots'))
  const caggs = db.converted!.continuousAggregates
  t.ok(caggs.includes('feature_stats_hourly') && caggs.indexOf('feature_stats_hourly') < caggs.indexOf('feature_stats_daily'), 'hourly before the daily built on it')
  t.same(db.converted!.dropped, ['stats_refresh_state'])

  const [counts] = await sql<{ n: number, chunks: number }[]>`
    SELECT (SELECT count(*) FROM feature_snapshots)::int8 AS n,
           (SELECT count(*) FROM show_chunks('feature_snapshots'))::int8 AS chunks`
  t.equal(counts.n, rows.length + 1, 'every row moved into the hypertable')
  t.ok(counts.chunks >= 6, `rows spread over chunks (${counts.chunks})`)
  const [{ only }] = await sql<{ only: number }[]>`SELECT count(*)::int8 AS only FROM ONLY feature_snapshots`
  t.equal(only, 0, 'nothing left in the parent table')

  const statsAfter = await sql`SELECT bucket, feature_id, entity_id, row_count, sum, min, max FROM feature_stats_daily ORDER BY 1, 2, 3`
  t.same([...statsAfter], [...statsBefore], 'the continuous aggregates answer what the materialized views did')

  const system = (await app.inject({ method: 'GET', url: '/v1/system' })).json()
  t.equal(system.storage_mode, 'timescaledb')
  t.ok(system.jobs.some((j: { kind: string, target: string }) => j.kind === 'policy_compression' && j.target === 'feature_snapshots'), 'start-up added the compression policy')

  // The converted database has the structure of one created in timescaledb mode.
  const fresh = await buildTestApp(t)
  t.same(await structure(sql), await structure(fresh.sql), 'same hypertables, compression, aggregates, tables and indexes as a fresh timescaledb database')

  // Third start: nothing more to do.
  const again = await openDatabase(url, loadConfig({}, { LOAD_DEFAULTS: false, DB_POOL_MAX: 2 }))
  t.equal(again.converted, null, 'converted once')
  t.same(again.applied, [])
  await again.sql.end()

  // And back is refused with a message that says what to do.
  const refused = await openDatabase(url, pgConfig).then(() => null, (err: unknown) => err)
  t.ok(refused instanceof StorageModeError, 'a start-up error, not a crash')
  t.match((refused as Error).message, /set up in timescaledb mode.*STORAGE_MODE=auto/)
})

t.test('migrations and policies are idempotent on a database that already has TimescaleDB', await onlyIn('timescaledb'), async (t) => {
  const url = await createTestDatabase(t)
  const pre = connect(url, { max: 1 })
  await pre`CREATE EXTENSION IF NOT EXISTS timescaledb`
  await pre.end()
  const config = loadConfig({}, { LOAD_DEFAULTS: false, BACKGROUND_JOBS: false, DB_POOL_MAX: 2 })
  const jobsOf = async (sql: Sql) => [...await sql`SELECT job_id, proc_name, config FROM timescaledb_information.jobs WHERE hypertable_schema = 'public' ORDER BY job_id`]

  const one = await openDatabase(url, config)
  t.equal(one.storageMode, 'timescaledb')
  t.ok(one.applied.length > 0)
  await startUp(one, config, silent)
  const jobs = await jobsOf(one.sql)
  const shape = await structure(one.sql)
  await one.sql.end()

  const two = await openDatabase(url, config)
  t.teardown(() => two.sql.end())
  await startUp(two, config, silent)
  t.same(two.applied, [], 'no migration applied twice')
  t.equal(two.converted, null)
  t.same(await jobsOf(two.sql), jobs, 'the same policies, not re-created')
  t.same(await structure(two.sql), shape)
})
