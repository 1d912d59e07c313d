import t from 'tap'
import { buildTestApp } from '../lib/helper.js'
import { insertDefinition, appendValues } from '../lib/fixtures.js'
import type { Sql } from '../../db/connection.js'
import { onlyIn } from '../lib/test-server-mode.js'
import type { App } from '../../src/app.js'

const HOUR = 3_600_000
const DAY = 24 * HOUR
const T0 = Date.UTC(2023, 0, 2)

interface Answer { eventMs: number, value: unknown }

/** The value of close_price for an entity at T known at K, through POST /v1/training-sets. */
async function valueAt (app: App, entityId: string, tMs: number, kMs: number): Promise<Answer | null> {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/training-sets',
    payload: { features: ['close_price'], entity_rows: [{ entity_id: entityId, event_time: tMs }], as_of_system_time: kMs, include_metadata: true },
  })
  if (res.statusCode !== 200) throw new Error(`training set: ${res.statusCode} ${res.body}`)
  const row = res.json().rows[0]
  return row.close_price__status === 'PRESENT' ? { eventMs: Date.parse(row.close_price__event_time), value: row.close_price } : null
}

async function chunkStates (sql: Sql): Promise<{ total: number, compressed: number, partial: number }> {
  const [row] = await sql<{ total: number, compressed: number, partial: number }[]>`
    SELECT count(*)::int8 AS total,
           count(*) FILTER (WHERE c.is_compressed)::int8 AS compressed,
           count(*) FILTER (WHERE ch.status & 8 = 8)::int8 AS partial
    FROM timescaledb_information.chunks c
    JOIN _timescaledb_catalog.chunk ch ON ch.schema_name = c.chunk_schema AND ch.table_name = c.chunk_name
    WHERE c.hypertable_name = 'feature_snapshots'`
  return row
}

t.test('late backfills and corrections into compressed chunks are written and read back', await onlyIn('timescaledb'), async (t) => {
  const { sql, app } = await buildTestApp(t)
  // the test compresses itself: the policy's background runs would race with its assertions;
  // and a refresh of the statistics between the first write and the backfill would materialize
  // the backfill's bucket, which then shows the backfill only after the next refresh (as the
  // README says): its assertion on real-time statistics failed in 2 of 3 runs here
  await sql`SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE proc_name IN ('policy_compression', 'policy_refresh_continuous_aggregate')`

  const f = await insertDefinition(sql, { name: 'close_price' })
  // six weeks of hourly values for two symbols, then every chunk compressed
  const rows = []
  for (let h = 0; h < 42 * 24; h++) {
    rows.push({ featureId: f, entityId: 'BTC', eventTimeMs: T0 + h * HOUR, num: h })
    rows.push({ featureId: f, entityId: 'ETH', eventTimeMs: T0 + h * HOUR, num: -h })
  }
  await appendValues(sql, rows)
  await sql`SELECT compress_chunk(c) FROM show_chunks('feature_snapshots') c`
  const before = await chunkStates(sql)
  t.ok(before.total >= 6, `several chunks (${before.total})`)
  t.equal(before.compressed, before.total, 'every chunk compressed')
  const kBefore = Date.now()
  await new Promise((resolve) => setTimeout(resolve, 5))

  const corrected = T0 + 10 * DAY + 5 * HOUR // an existing event, in a compressed chunk
  const backfilled = T0 + 20 * DAY + 5 * HOUR + 30 * 60_000 // a new event between two hours
  const stamp = await appendValues(sql, [
    { featureId: f, entityId: 'BTC', eventTimeMs: corrected, num: 1000 },
    { featureId: f, entityId: 'BTC', eventTimeMs: backfilled, num: 2000 },
    { featureId: f, entityId: 'SOL', eventTimeMs: T0 + 3 * DAY, num: 3 }, // a new segment in a compressed chunk
    { featureId: f, entityId: 'BTC', eventTimeMs: T0 + 60 * DAY, num: 4 }, // and a new chunk
  ])
  t.match(stamp, /^\d{4}-/)
  const after = await chunkStates(sql)
  t.ok(after.partial >= 2, `the written chunks are partially compressed (${after.partial})`)
  const [{ n }] = await sql<{ n: number }[]>`SELECT count(*)::int8 AS n FROM feature_snapshots`
  t.equal(n, rows.length + 4, 'the correction is a new row; nothing was overwritten')

  const read = async (label: string): Promise<void> => {
    const now = Date.now() + 1000
    t.match(await valueAt(app, 'BTC', corrected, now), { eventMs: corrected, value: 1000 }, `${label}: the correction wins at its event time`)
    t.match(await valueAt(app, 'BTC', corrected, kBefore), { eventMs: corrected, value: 10 * 24 + 5 }, `${label}: known before the correction, the original value`)
    t.match(await valueAt(app, 'BTC', backfilled + 1000, now), { eventMs: backfilled, value: 2000 }, `${label}: the backfill is the latest value after its event time`)
    t.match(await valueAt(app, 'BTC', backfilled + 1000, kBefore), { eventMs: backfilled - 30 * 60_000, value: 20 * 24 + 5 }, `${label}: invisible before it was known`)
    t.match(await valueAt(app, 'BTC', backfilled - 1000, now), { value: 20 * 24 + 5 }, `${label}: not visible before its event time`)
    t.match(await valueAt(app, 'SOL', T0 + 4 * DAY, now), { value: 3 }, `${label}: the new entity`)
    t.match(await valueAt(app, 'ETH', corrected, now), { value: -(10 * 24 + 5) }, `${label}: other segments untouched`)
    const [stats] = await sql<{ row_count: number, max: number }[]>`
      SELECT row_count::int8 AS row_count, max FROM feature_stats_hourly
      WHERE feature_id = ${f} AND entity_id = 'BTC' AND bucket = ${new Date(backfilled - 30 * 60_000)}`
    t.match(stats, { row_count: 2, max: 2000 }, `${label}: real-time statistics include the backfill`)
  }
  await read('partially compressed')

  // The compression policy's work: recompress what was written, then read again.
  await sql`SELECT compress_chunk(c) FROM show_chunks('feature_snapshots') c`
  const recompressed = await chunkStates(sql)
  t.equal(recompressed.partial, 0, 'recompressed')
  t.equal(recompressed.compressed, recompressed.total)
  await read('recompressed')
})

t.test('the upsert of the write path resolves a key conflict inside a compressed chunk', await onlyIn('timescaledb'), async (t) => {
  const { sql } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'volume' })
  await appendValues(sql, [{ featureId: f, entityId: 'BTC', eventTimeMs: T0, num: 1 }, { featureId: f, entityId: 'BTC', eventTimeMs: T0 + HOUR, num: 2 }])
  await sql`SELECT compress_chunk(c) FROM show_chunks('feature_snapshots') c`
  // the stamp as text (it has microseconds; a Date, or a string postgres.js turns into one, drops them)
  const [row] = await sql<{ ingested_at: string }[]>`SELECT ingested_at::text FROM feature_snapshots WHERE event_time = ${new Date(T0)}`
  // A conflict needs the same stamp, which the write path never produces twice; the statement's
  // ON CONFLICT clause is exercised here with the key of the compressed row.
  await sql`
    INSERT INTO feature_snapshots (feature_id, entity_id, event_time, ingested_at, value_num, value_text)
    VALUES (${f}, 'BTC', ${new Date(T0)}, ${row.ingested_at}::text::timestamptz, 42, NULL)
    ON CONFLICT (feature_id, entity_id, event_time, ingested_at)
      DO UPDATE SET value_num = EXCLUDED.value_num, value_text = EXCLUDED.value_text`
  const values = await sql<{ value_num: number }[]>`SELECT value_num FROM feature_snapshots ORDER BY event_time`
  t.same(values.map((v) => v.value_num), [42, 2], 'updated in place of the compressed row, no duplicate')
})
