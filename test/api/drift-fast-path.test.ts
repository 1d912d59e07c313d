import t from 'tap'
import type { Test } from 'tap'
import { buildTestApp } from '../lib/helper.js'
import { appendValues, insertDefinition, transactionsOpen, type RawValue } from '../lib/fixtures.js'
import { driftSummary, type SampleSpec } from '../../db/drift.js'
import { pruneWriteLog, rebuildWriteLog, windowHasNoCorrections } from '../../db/write-log.js'
import { soundCutoff } from '../../db/knowledge.js'
import { quantileFractions, summarise, type DriftSummary } from '../../src/domain/drift-stats.js'
import type { Sql } from '../../db/connection.js'
import { seededRandom, standardNormal } from '../lib/random.js'
import { onlyIn } from '../lib/test-server-mode.js'

/**
 * A drift window that the write log proves free of corrections at the cutoff is read with a plain
 * range scan instead of the point-in-time dedupe (db/write-log.ts). Both reads must give the same
 * summary, whatever the log says: windows with corrections, cutoffs before a correction, writes of
 * one or several entities, writes that bypass the ingest path, and writes running concurrently.
 */
const H = 3_600_000
const T0 = Date.UTC(2021, 0, 1)
const REF: [number, number] = [T0, T0 + 400 * H]
const CUR: [number, number] = [T0 + 400 * H, T0 + 800 * H]

const r = seededRandom(7)
const normal = (): number => standardNormal(r)
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Hourly values of one entity over [from, to): around `mean`, ties every seventh hour. */
function series (featureId: number, entityId: string, [from, to]: [number, number], mean: number): RawValue[] {
  const rows: RawValue[] = []
  for (let t = from, i = 0; t < to; t += H, i++) rows.push({ featureId, entityId, eventTimeMs: t, num: i % 7 === 0 ? Math.round(mean) : mean + 5 * normal() })
  return rows
}

const window = (featureId: number, [fromMs, toMs]: [number, number], cutoffMs: number, entityId?: string): SampleSpec & { kind: 'window' } =>
  ({ kind: 'window', featureId, fromMs, toMs, cutoffMs, ...(entityId === undefined ? {} : { entityId }) })

/** The point-in-time values of a window, computed here from what was written: latest stamp <= cutoff per key, finite only. */
async function expected (sql: Sql, featureId: number, [from, to]: [number, number], cutoffMs: number, entityId?: string): Promise<number[]> {
  const rows = await sql<{ x: number | null }[]>`
    SELECT DISTINCT ON (entity_id, event_time) value_num AS x FROM feature_snapshots
    WHERE feature_id = ${featureId} AND event_time >= ${new Date(from)} AND event_time < ${new Date(to)}
      AND ingested_at <= ${new Date(cutoffMs)} ${entityId === undefined ? sql`` : sql`AND entity_id = ${entityId}`}
    ORDER BY entity_id, event_time, ingested_at DESC`
  return rows.map((row) => row.x).filter((x): x is number => x !== null && Number.isFinite(x))
}

/** Fast and exact reads agree with each other and with the in-memory summary; returns what the log proved. */
async function agree (t: Test, sql: Sql, featureId: number, cutoffMs: number, label: string, entityId?: string): Promise<{ ref: boolean, cur: boolean }> {
  const ref = window(featureId, REF, cutoffMs, entityId)
  const cur = window(featureId, CUR, cutoffMs, entityId)
  const clean = { ref: await windowHasNoCorrections(sql, ref), cur: await windowHasNoCorrections(sql, cur) }
  const fast = await driftSummary(sql, ref, cur, quantileFractions())
  const exact = await driftSummary(sql, ref, cur, quantileFractions(), { exactRead: true })
  const want = summarise(await expected(sql, featureId, REF, cutoffMs, entityId), await expected(sql, featureId, CUR, cutoffMs, entityId))
  same(t, fast, exact, `${label}: fast read = exact read`)
  same(t, fast, want, `${label}: = the in-memory summary of the point-in-time values`)
  return clean
}

function same (t: Test, got: DriftSummary, want: DriftSummary, label: string): void {
  t.same(got.edges, want.edges, `${label} (edges)`)
  t.same([got.referenceCounts, got.currentCounts], [want.referenceCounts, want.currentCounts], `${label} (bin counts)`)
  t.same([got.reference.count, got.current.count, got.reference.min, got.reference.max, got.current.min, got.current.max],
    [want.reference.count, want.current.count, want.reference.min, want.reference.max, want.current.min, want.current.max], `${label} (sizes and ranges)`)
  const close = (a: number | null, b: number | null): boolean => (a === null || b === null ? a === b : Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)))
  t.ok(close(got.ks, want.ks) && close(got.wasserstein, want.wasserstein), `${label} (KS ${got.ks} = ${want.ks}, Wasserstein ${got.wasserstein} = ${want.wasserstein})`)
  t.ok(close(got.reference.mean, want.reference.mean) && close(got.current.stddev, want.current.stddev), `${label} (moments)`)
}

t.test('windows written once, one entity per write: the fast read, same answers', async (t) => {
  const { sql } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'clean' })
  // one write per entity: their event_time ranges overlap, their entities do not
  for (const e of ['A', 'B', 'C']) await appendValues(sql, [...series(f, e, REF, 100), ...series(f, e, CUR, 102)])
  const clean = await agree(t, sql, f, Date.now() + 1000, 'clean')
  t.same(clean, { ref: true, cur: true }, 'both windows proven free of corrections')
  t.same(await agree(t, sql, f, Date.now() + 1000, 'one entity', 'B'), { ref: true, cur: true })
})

t.test('a window with corrections takes the exact read; a cutoff before the correction may take the fast one', async (t) => {
  const { sql } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'corrected' })
  await appendValues(sql, [...series(f, 'A', REF, 100), ...series(f, 'A', CUR, 103)])
  await appendValues(sql, [...series(f, 'B', REF, 100), ...series(f, 'B', CUR, 103)])
  const before = Date.parse(await appendValues(sql, series(f, 'C', [REF[0], CUR[1]], 101)))
  await sleep(5)
  // corrections of B inside the reference window (and a value that becomes null), and a
  // correction of C outside both windows
  const fixes: RawValue[] = [
    ...Array.from({ length: 40 }, (_, i) => ({ featureId: f, entityId: 'B', eventTimeMs: REF[0] + (3 * i + 1) * H, num: 140 + i })),
    { featureId: f, entityId: 'B', eventTimeMs: REF[0] + 200 * H, num: null },
  ]
  await appendValues(sql, fixes)
  await appendValues(sql, [{ featureId: f, entityId: 'C', eventTimeMs: CUR[1] + 10 * H, num: 1 }, { featureId: f, entityId: 'C', eventTimeMs: CUR[1] + 34 * H, num: 2 }])
  await appendValues(sql, [{ featureId: f, entityId: 'C', eventTimeMs: CUR[1] + 10 * H, num: 3 }])
  const now = Date.now() + 1000
  t.same(await agree(t, sql, f, now, 'after the corrections'), { ref: false, cur: true }, 'the corrected window is read point-in-time, the other plainly')
  t.same(await agree(t, sql, f, before, 'cutoff before the corrections'), { ref: true, cur: true }, 'at a cutoff before the correction no window holds one')
  t.same(await agree(t, sql, f, now, 'entity A only', 'A'), { ref: true, cur: true }, 'corrections of B do not concern A')
  t.same(await agree(t, sql, f, now, 'entity B only', 'B'), { ref: false, cur: true })
})

t.test('a write of several entities overlapping another write: not proven, same answers', async (t) => {
  const { sql } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'multi' })
  await appendValues(sql, [...series(f, 'A', REF, 100), ...series(f, 'B', REF, 100)])
  await appendValues(sql, [...series(f, 'C', [REF[0] + 100 * H, CUR[1]], 100), ...series(f, 'D', CUR, 104)])
  t.same(await agree(t, sql, f, Date.now() + 1000, 'overlapping multi-entity writes'), { ref: false, cur: true })
})

t.test('writes that bypass the ingest path turn the fast read off until the log is rebuilt', async (t) => {
  const { sql } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'direct' })
  await appendValues(sql, [...series(f, 'A', REF, 100), ...series(f, 'A', CUR, 101)])
  t.same(await agree(t, sql, f, Date.now() + 1000, 'logged writes'), { ref: true, cur: true })
  // a correction by direct SQL, invisible to the log
  await sql`INSERT INTO feature_snapshots (feature_id, entity_id, event_time, ingested_at, value_num)
            VALUES (${f}, 'A', ${new Date(REF[0] + 5 * H)}, clock_timestamp(), 1e6)`
  t.same(await agree(t, sql, f, Date.now() + 1000, 'after a direct correction'), { ref: false, cur: false }, 'no window is proven while an untracked write exists')
  const [{ n }] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM feature_untracked_writes`
  t.ok(n >= 1, 'the trigger recorded the untracked write')
  // an UPDATE is an untracked write too, even of no rows
  await sql`UPDATE feature_snapshots SET value_num = value_num WHERE false`
  const [{ m }] = await sql<{ m: number }[]>`SELECT count(*)::int AS m FROM feature_untracked_writes`
  t.equal(m, n + 1, 'the UPDATE was recorded')
  await rebuildWriteLog(sql)
  t.same(await agree(t, sql, f, Date.now() + 1000, 'after the rebuild'), { ref: false, cur: true }, 'the rebuilt log sees the correction')
})

t.test('the values endpoint logs each write: one row per feature, its range and stamp', async (t) => {
  const { app, sql } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'logged' })
  const g = await insertDefinition(sql, { name: 'logged_too' })
  const res = await app.inject({
    method: 'POST', url: '/v1/values', headers: { 'content-type': 'application/json' },
    payload: { rows: [
      { feature: 'logged', entity_id: 'A', event_time: new Date(T0 + 5 * H).toISOString(), value: 1 },
      { feature: 'logged', entity_id: 'A', event_time: new Date(T0 + 2 * H).toISOString(), value: 2 },
      { feature: 'logged_too', entity_id: 'A', event_time: new Date(T0).toISOString(), value: 3 },
      { feature: 'logged_too', entity_id: 'B', event_time: new Date(T0 + 9 * H).toISOString(), value: 4 },
    ] },
  })
  t.equal(res.statusCode, 200, res.body)
  const rows = await sql<Array<{ feature_id: number, first_ms: number, last_ms: number, entity_id: string | null, same_stamp: boolean }>>`
    SELECT l.feature_id, (extract(epoch FROM l.first_event) * 1000)::int8 AS first_ms, (extract(epoch FROM l.last_event) * 1000)::int8 AS last_ms,
           l.entity_id, l.ingested_at = (SELECT max(ingested_at) FROM feature_snapshots) AS same_stamp
    FROM feature_write_log l ORDER BY l.feature_id`
  t.same(rows, [
    { feature_id: f, first_ms: T0 + 2 * H, last_ms: T0 + 5 * H, entity_id: 'A', same_stamp: true },
    { feature_id: g, first_ms: T0, last_ms: T0 + 9 * H, entity_id: null, same_stamp: true },
  ])
  const [{ n }] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM feature_untracked_writes`
  t.equal(n, 0, 'the ingest path is not an untracked write')
  const [{ setting }] = await sql<{ setting: string | null }[]>`SELECT current_setting('feature_store.logged_write', true) AS setting`
  t.notOk(setting, 'the mark does not outlive the write')
})

t.test('checks while writes and corrections run concurrently: fast = exact at every sound cutoff', async (t) => {
  const { sql } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'busy' })
  await appendValues(sql, [...series(f, 'A', REF, 100), ...series(f, 'B', REF, 100)])
  await appendValues(sql, series(f, 'A', [CUR[0], CUR[0] + 100 * H], 102))
  let writing = true
  let writes = 0
  const writer = (async () => {
    // alternately: new hours of the current window (no corrections), and corrections of the
    // reference window, each its own ingest transaction
    for (let i = 0; writing && i < 200; i++) {
      const at = CUR[0] + (100 + i) * H
      if (i % 2 === 0) await appendValues(sql, [{ featureId: f, entityId: 'A', eventTimeMs: at, num: 102 + normal() }])
      else await appendValues(sql, [{ featureId: f, entityId: i % 4 === 1 ? 'A' : 'B', eventTimeMs: REF[0] + ((7 * i) % 400) * H, num: 90 + i }])
      writes++
    }
  })()
  let fastRef = 0
  let fastCur = 0
  for (let round = 0; round < 12; round++) {
    const k = await soundCutoff(sql)
    const clean = await agree(t, sql, f, k, `round ${round}`)
    if (clean.ref) fastRef++
    if (clean.cur) fastCur++
    await sleep(5)
  }
  writing = false
  await writer
  t.ok(writes > 0, `${writes} writes ran during the checks`)
  t.ok(fastCur > 0, `the current window (appends only) took the fast read in ${fastCur} of 12 rounds`)
  t.comment(`reference window proven in ${fastRef} of 12 rounds (corrections arrive there)`)
})

t.test('checks at once on a small pool: each reads with one or two sessions, the same answers, no connection kept', async (t) => {
  // 3 connections: a check takes a second session only while the pool keeps two for others
  const { sql } = await buildTestApp(t, { config: { DB_POOL_MAX: 3 } })
  const f = await insertDefinition(sql, { name: 'crowded' })
  await appendValues(sql, [...series(f, 'A', REF, 100), ...series(f, 'B', CUR, 104)])
  const k = await soundCutoff(sql)
  const alone = await driftSummary(sql, window(f, REF, k), window(f, CUR, k), quantileFractions())
  const together = await Promise.all(Array.from({ length: 6 }, async (_, i) =>
    driftSummary(sql, window(f, REF, k), window(f, CUR, k), quantileFractions(), { exactRead: i % 2 === 1 })))
  together.forEach((s, i) => same(t, s, alone, `check ${i} of 6 at once`))
  // client sessions only: TimescaleDB's policy jobs run as background workers of this database
  t.equal(await transactionsOpen(sql), 0, 'no session left in a transaction')
  const [{ tables }] = await sql<{ tables: number }[]>`SELECT count(*)::int AS tables FROM pg_class WHERE relname LIKE 'drift_bins_%' AND relpersistence = 't'`
  t.equal(tables, 0, 'the temporary tables are gone')
})

/** (feature, ingested_at) groups of the stored values that have no log row of their own. */
async function unloggedWrites (sql: Sql): Promise<number> {
  const [{ n }] = await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM (SELECT DISTINCT feature_id, ingested_at FROM feature_snapshots) v
    WHERE NOT EXISTS (SELECT 1 FROM feature_write_log l WHERE l.feature_id = v.feature_id AND l.ingested_at = v.ingested_at)`
  return n
}

t.test('pruning drops the log rows of values that are gone; the window they spoiled reads fast again', async (t) => {
  const { sql } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'pruned' })
  const cut = REF[0] + 100 * H
  // an old stretch written twice (a correction), then the rest once
  await appendValues(sql, series(f, 'A', [REF[0], cut], 100))
  await appendValues(sql, series(f, 'A', [REF[0], cut], 100))
  await appendValues(sql, series(f, 'A', [cut, CUR[1]], 100))
  t.same(await agree(t, sql, f, Date.now() + 1000, 'before'), { ref: false, cur: true }, 'the correction keeps the reference window on the exact read')
  t.equal(await pruneWriteLog(sql), 0, 'nothing to prune while every value is kept')
  // the old stretch goes (as TimescaleDB's retention drops chunks; here by hand, which is not a tracked write)
  await sql`DELETE FROM feature_snapshots WHERE feature_id = ${f} AND event_time < ${new Date(cut)}`
  t.equal(await pruneWriteLog(sql), 2, 'the two writes of the old stretch')
  t.equal(await unloggedWrites(sql), 0, 'every stored value keeps its log row')
  t.same(await agree(t, sql, f, Date.now() + 1000, 'after'), { ref: true, cur: true }, 'same answers, now on the fast read')
})

t.test('pruning beside writes of older values than any stored: no stored value loses its log row', async (t) => {
  const { sql } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'backfilled' })
  await appendValues(sql, series(f, 'A', CUR, 100))
  // each round writes values older than everything stored, while prunes run
  let pruned = 0
  for (let round = 1; round <= 8; round++) {
    const at = REF[1] - round * 40 * H
    const writes = [appendValues(sql, series(f, 'A', [at, at + 10 * H], 100)), appendValues(sql, series(f, 'B', [at + 5 * H, at + 15 * H], 100))]
    const prunes = Array.from({ length: 3 }, async () => { pruned += await pruneWriteLog(sql) })
    await Promise.all([...writes, ...prunes])
    t.equal(await unloggedWrites(sql), 0, `round ${round}: every write of stored values is in the log`)
  }
  t.equal(pruned, 0, 'nothing was gone, so nothing was pruned')
  t.same(await agree(t, sql, f, Date.now() + 1000, 'after the backfills'), { ref: true, cur: true })
})

t.test('TimescaleDB: after retention drops chunks, the write log is pruned to what is kept', await onlyIn('timescaledb'), async (t) => {
  const { sql, app } = await buildTestApp(t, { config: { RETENTION: '30 days' } })
  await sql`SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'`
  const f = await insertDefinition(sql, { name: 'retained' })
  const now = Date.now()
  const old: [number, number] = [now - 120 * 24 * H, now - 100 * 24 * H]
  const recent: [number, number] = [now - 20 * 24 * H, now - 24 * H]
  await appendValues(sql, series(f, 'A', old, 100))
  await appendValues(sql, series(f, 'A', old, 100))
  await appendValues(sql, series(f, 'A', recent, 100))
  // the aggregates' refresh policy may be running: drop_chunks can deadlock with it (40P01),
  // which PostgreSQL breaks by failing one of them; the retention policy would simply run again
  for (let attempt = 1; ; attempt++) {
    try {
      await sql`SELECT drop_chunks('feature_snapshots', older_than => now() - interval '30 days')`
      break
    } catch (err) {
      if ((err as { code?: string }).code !== '40P01' || attempt === 5) throw err
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  }
  t.equal(await app.services.writeLog.pruneNow(), 2, 'the log rows of the dropped chunks')
  t.equal(await unloggedWrites(sql), 0)
  const k = Date.now() + 1000
  const whole = window(f, [old[0], recent[1]], k)
  t.ok(await windowHasNoCorrections(sql, whole), 'the dropped correction no longer spoils a window over both stretches')
  const fast = await driftSummary(sql, whole, window(f, recent, k), quantileFractions())
  const exact = await driftSummary(sql, whole, window(f, recent, k), quantileFractions(), { exactRead: true })
  same(t, fast, exact, 'fast read = exact read after the prune')
})

t.test('windows of unequal length are read in halves on the two sessions; equal ones one per session: same answers', async (t) => {
  const { sql } = await buildTestApp(t)
  const f = await insertDefinition(sql, { name: 'lopsided' })
  await appendValues(sql, [...series(f, 'A', [REF[0], CUR[1]], 100), ...series(f, 'B', [REF[0], CUR[1]], 103)])
  await appendValues(sql, [{ featureId: f, entityId: 'A', eventTimeMs: REF[0] + 30 * H, num: 500 }]) // a correction
  const k = Date.now() + 1000
  const want = async (ref: [number, number], cur: [number, number]): Promise<DriftSummary> =>
    summarise(await expected(sql, f, ref, k), await expected(sql, f, cur, k))
  for (const [label, ref, cur] of [
    ['29:1', [REF[0], REF[0] + 29 * 20 * H], [REF[0] + 29 * 20 * H, REF[0] + 30 * 20 * H]],
    ['1:3', [REF[0], REF[0] + 200 * H], [REF[0] + 200 * H, CUR[1]]],
    ['1:1.4', [REF[0], REF[0] + 300 * H], [REF[0] + 300 * H, REF[0] + 720 * H]],
  ] as Array<[string, [number, number], [number, number]]>) {
    for (const exactRead of [false, true]) {
      const got = await driftSummary(sql, window(f, ref, k), window(f, cur, k), quantileFractions(), { exactRead })
      same(t, got, await want(ref, cur), `${label}${exactRead ? ', point-in-time read' : ''}`)
    }
  }
})
