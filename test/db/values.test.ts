import t from 'tap'
import { buildTestApp } from '../lib/helper.js'
import { insertDefinition, appendValues } from '../lib/fixtures.js'
import { soundCutoff } from '../../db/knowledge.js'
import { rebuildWriteLog } from '../../db/write-log.js'

t.test('the write path stamps one ingested_at per transaction and keeps the online table current', async (t) => {
  const { sql } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'close_price' })
  const t0 = Date.UTC(2023, 0, 1)
  const at1 = await appendValues(sql, [
    { featureId: f, entityId: 'BTC', eventTimeMs: t0, num: 1 },
    { featureId: f, entityId: 'BTC', eventTimeMs: t0 + 3_600_000, num: 2 },
    { featureId: f, entityId: 'BTC', eventTimeMs: t0 + 3_600_000, num: 3 }, // same key: last wins
    { featureId: f, entityId: 'we\tird\\id\n', eventTimeMs: t0, num: Number.NaN },
  ])
  t.match(at1, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/)
  const rows = await sql`SELECT entity_id, value_num, ingested_at FROM feature_snapshots ORDER BY entity_id, event_time`
  t.equal(rows.length, 3)
  t.equal(new Set(rows.map((r) => String(r.ingested_at))).size, 1, 'one stamp per transaction')
  t.equal(rows[1].value_num, 3)
  t.equal(rows[2].entity_id, 'we\tird\\id\n', 'entity ids are stored verbatim')
  t.ok(Number.isNaN(rows[2].value_num))
  const online = await sql`SELECT entity_id, value_num FROM feature_online WHERE entity_id = 'BTC'`
  t.equal(online[0].value_num, 3)

  // an older event does not replace the online value; a correction of the latest does
  await appendValues(sql, [{ featureId: f, entityId: 'BTC', eventTimeMs: t0, num: 10 }])
  t.equal((await sql`SELECT value_num FROM feature_online WHERE entity_id = 'BTC'`)[0].value_num, 3)
  await appendValues(sql, [{ featureId: f, entityId: 'BTC', eventTimeMs: t0 + 3_600_000, num: 4 }])
  t.equal((await sql`SELECT value_num FROM feature_online WHERE entity_id = 'BTC'`)[0].value_num, 4)

  const k = await soundCutoff(sql)
  t.ok(Math.abs(k - Date.now()) < 60_000, 'the cutoff is now')
  t.equal(await soundCutoff(sql, k - 1000), k - 1000, 'an earlier requested cutoff is kept')
  t.equal(await soundCutoff(sql, k + 3_600_000) <= Date.now() + 1000, true, 'a future cutoff is taken as now')
})

t.test('negative zero is stored as itself', async (t) => {
  const { sql } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'signed' })
  await appendValues(sql, [{ featureId: f, entityId: 'A', eventTimeMs: Date.UTC(2023, 0, 1), num: -0 }])
  const [row] = await sql<{ v: number }[]>`SELECT value_num AS v FROM feature_snapshots`
  t.ok(Object.is(row.v, -0), '-0 reads back as -0')
})

t.test('the earliest event time per key is kept with the values, and rebuilt with the write log', async (t) => {
  const { sql } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'close_price' })
  const H = 3_600_000
  const t0 = Date.UTC(2023, 0, 1)
  const firsts = async (): Promise<Record<string, string>> => Object.fromEntries((await sql<Array<{ entity_id: string, first_event: Date }>>`
    SELECT entity_id, first_event FROM feature_first_events WHERE feature_id = ${f} ORDER BY entity_id`).map((r) => [r.entity_id, r.first_event.toISOString()]))
  const iso = (ms: number): string => new Date(ms).toISOString()

  // the fast path (one COPY), rows out of order
  await appendValues(sql, [
    { featureId: f, entityId: 'BTC', eventTimeMs: t0 + 2 * H, num: 1 },
    { featureId: f, entityId: 'BTC', eventTimeMs: t0 + H, num: 2 },
    { featureId: f, entityId: 'BTC', eventTimeMs: t0 + 3 * H, num: 3 },
    { featureId: f, entityId: 'ETH', eventTimeMs: t0, num: 4 },
  ])
  t.same(await firsts(), { BTC: iso(t0 + H), ETH: iso(t0) })
  // later values and corrections leave it; a backfill before it moves it
  await appendValues(sql, [{ featureId: f, entityId: 'BTC', eventTimeMs: t0 + 5 * H, num: 5 }, { featureId: f, entityId: 'ETH', eventTimeMs: t0, num: 6 }])
  t.same(await firsts(), { BTC: iso(t0 + H), ETH: iso(t0) })
  await appendValues(sql, [{ featureId: f, entityId: 'BTC', eventTimeMs: t0 - H, num: 7 }])
  t.same(await firsts(), { BTC: iso(t0 - H), ETH: iso(t0) })
  // the slow path (a key twice in one request)
  await appendValues(sql, [
    { featureId: f, entityId: 'ETH', eventTimeMs: t0 - 5 * H, num: 8 },
    { featureId: f, entityId: 'ETH', eventTimeMs: t0 - 5 * H, num: 9 },
    { featureId: f, entityId: 'SOL', eventTimeMs: t0 + 9 * H, num: 10 },
  ])
  t.same(await firsts(), { BTC: iso(t0 - H), ETH: iso(t0 - 5 * H), SOL: iso(t0 + 9 * H) })

  // values written by SQL are not described until the write log is rebuilt, which rebuilds these too
  await sql`INSERT INTO feature_snapshots (feature_id, entity_id, event_time, ingested_at, value_num)
            VALUES (${f}, 'ADA', ${iso(t0 - 9 * H)}, now(), 1), (${f}, 'SOL', ${iso(t0)}, now(), 2)`
  await sql`DELETE FROM feature_snapshots WHERE entity_id = 'BTC' AND event_time < ${iso(t0 + 5 * H)}`
  t.same(await firsts(), { BTC: iso(t0 - H), ETH: iso(t0 - 5 * H), SOL: iso(t0 + 9 * H) }, 'a lower bound until then')
  await rebuildWriteLog(sql)
  t.same(await firsts(), { ADA: iso(t0 - 9 * H), BTC: iso(t0 + 5 * H), ETH: iso(t0 - 5 * H), SOL: iso(t0) })
  t.equal((await sql`SELECT 1 FROM feature_untracked_writes`).length, 0, 'the marker is cleared')
})
