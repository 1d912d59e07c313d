import { randomBytes } from 'node:crypto'
import pino from 'pino'
import { connect, withDatabase } from '../db/connection.js'
import { openDatabase } from '../db/bootstrap.js'
import { loadConfig } from '../src/config.js'
import { buildApp } from '../src/app.js'
import { startUp } from '../src/services/startup.js'
import { insertDefinition } from '../test/lib/fixtures.js'
import { ValueStaging } from '../db/values.js'
import { judgeDrift, summarise, quantileFractions, DRIFT_METHODS } from '../src/domain/drift-stats.js'
import { driftSummary, type SampleSpec } from '../db/drift.js'
import type { Bench, BenchResult } from './lib/harness.js'
import { seededRandom, standardNormal } from '../test/lib/random.js'

/**
 * Benchmark: one drift check (all four methods) over 1,000,000 values (a reference window of
 * 500,000 and a current window of 500,000, 10 entities), through POST /v1/drift/checks: the
 * knowledge cutoff, the summary computed in the database, the verdicts and the log write.
 * Target: < 0.5 s. A second shape, a million values of 1,000 entities over 1,000 hours (on a
 * hypertable: 7 chunks instead of 596), is checked too. Beside it, in the same run on the same rows: a plain
 * SELECT count(*), avg(value_num) (the floor: reading the rows once), and the same statistics
 * computed in Node after pulling the rows (what "not in the database" would cost).
 * The rows are written through the ingest path (ValueStaging, as POST /v1/values writes them),
 * not by direct SQL: the write log that the ingest path keeps is what lets a check read a
 * window without the point-in-time dedupe (db/write-log.ts), so this measures what a user who
 * ingested the values sees. Rows written by direct SQL would make every check take the exact,
 * slower read.
 */
const ENTITIES = 10
const PER_ENTITY = 100_000
/** The second shape: many entities over weeks, as monitors usually see them. */
const WIDE_ENTITIES = 1000
const WIDE_HOURS = 1000
const RUNS = 9
const H = 3_600_000
const T0 = Date.UTC(2010, 0, 1)

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

async function timed<T> (fn: () => Promise<T>): Promise<{ ms: number, value: T }> {
  const started = process.hrtime.bigint()
  const value = await fn()
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, value }
}

const bench: Bench = {
  name: 'drift',
  run: async (adminUrl) => {
    const dbName = `bench_drift_${randomBytes(4).toString('hex')}`
    const admin = connect(adminUrl, { max: 1 })
    await admin.unsafe(`CREATE DATABASE "${dbName}"`)
    const url = withDatabase(adminUrl, dbName)
    const config = loadConfig({}, { LOAD_DEFAULTS: false, BACKGROUND_JOBS: false, AUTH: 'off', RATE_LIMIT_MAX: 0, DB_POOL_MAX: 4 })
    const db = await openDatabase(url, config)
    try {
      await startUp(db, config, pino({ level: 'silent' }))
      const app = await buildApp({ config, sql: db.sql, storageMode: db.storageMode, databaseUrl: url }, { logger: false, backgroundJobs: false })
      await app.ready()
      const sql = db.sql
      // `entities` x `hours` hourly values of a new feature: the first half around 100, the
      // second shifted to 103 (drift), normal with sd 10 (Box-Muller over mulberry32, seeded:
      // every run checks the same values). One ingest transaction, as one POST /v1/values
      // request writes them.
      const uniform = seededRandom(42)
      const load = async (name: string, prefix: string, entities: number, hours: number): Promise<number> => {
        const id = await insertDefinition(sql, { name })
        await sql.begin(async (tx) => {
          const staging = new ValueStaging(tx)
          for (let e = 0; e < entities; e++) {
            for (let i = 0; i < hours; i++) {
              const x = 100 + (i >= hours / 2 ? 3 : 0) + 10 * standardNormal(uniform)
              const wait = staging.add({ featureId: id, entityId: `${prefix}${e}`, eventTimeMs: T0 + i * H, num: x, text: null })
              if (wait !== undefined) await wait
            }
          }
          await staging.commit()
        })
        await sql`VACUUM ANALYZE feature_snapshots`
        return id
      }
      /** POST /v1/drift/checks; the sample sizes and the verdict. */
      const post = async (body: object): Promise<{ count: number, drifted: boolean }> => {
        const res = await app.inject({ method: 'POST', url: '/v1/drift/checks', payload: body })
        if (res.statusCode !== 201) throw new Error(`drift check failed: ${res.statusCode} ${res.body}`)
        const answer = res.json()
        return { count: answer.reference.count + answer.current.count, drifted: answer.drifted }
      }
      const f = await load('bench_value', 'E', ENTITIES, PER_ENTITY)
      const half = PER_ENTITY / 2
      const mid = new Date(T0 + half * H).toISOString()
      const end = new Date(T0 + PER_ENTITY * H).toISOString()
      const payload = { feature: 'bench_value', reference: { from: new Date(T0).toISOString(), to: mid }, current: { from: mid, to: end }, methods: [...DRIFT_METHODS] }

      const check = async (): Promise<{ count: number, drifted: boolean }> => post(payload)
      await check() // warm-up: plans, buffers
      const checkMs: number[] = []
      let last = { count: 0, drifted: false }
      for (let i = 0; i < RUNS; i++) { const r = await timed(check); checkMs.push(r.ms); last = r.value }

      // the same million values split as a monitor's windows usually are: a reference 29 times
      // as long as the current window (the check reads each window in two halves, one per
      // session, so that unequal windows still share the work)
      const split = new Date(T0 + Math.round(PER_ENTITY * 29 / 30) * H).toISOString()
      const lopsided = { ...payload, reference: { from: payload.reference.from, to: split }, current: { from: split, to: end } }
      const lopsidedMs: number[] = []
      for (let i = 0; i < RUNS; i++) lopsidedMs.push((await timed(async () => post(lopsided))).ms)

      const scan = async (): Promise<number> => {
        const [row] = await sql<{ n: number }[]>`
          SELECT count(*)::int8 AS n, avg(value_num) AS mean FROM feature_snapshots
          WHERE feature_id = ${f} AND event_time >= ${new Date(T0)}::timestamptz AND event_time < ${end}::timestamptz`
        return row.n
      }
      await scan()
      const scanMs: number[] = []
      for (let i = 0; i < RUNS; i++) scanMs.push((await timed(scan)).ms)

      const inNode = async (): Promise<boolean> => {
        const pull = async (from: string, to: string): Promise<Float64Array> => {
          // the same point-in-time sample the check reads: latest correction per (entity, event_time)
          // (TimescaleDB's SkipScan off, as the check has it: it makes this walk several times slower)
          const rows = await sql.begin(async (tx) => {
            await tx`SELECT set_config('timescaledb.enable_skipscan', 'off', true)`
            return tx<{ x: number }[]>`
            SELECT x FROM (
              SELECT DISTINCT ON (entity_id, event_time) value_num AS x FROM feature_snapshots
              WHERE feature_id = ${f} AND event_time >= ${from}::timestamptz AND event_time < ${to}::timestamptz AND ingested_at <= now()
              ORDER BY entity_id DESC, event_time DESC, ingested_at DESC) s
            WHERE x - x = 0`
          })
          return Float64Array.from(rows, (r) => r.x)
        }
        const [ref, cur] = await Promise.all([pull(payload.reference.from, mid), pull(mid, end)])
        return judgeDrift(summarise(ref, cur), DRIFT_METHODS).drifted === true
      }
      // the database part alone, the write log's fast read beside the point-in-time walk (what a
      // window with corrections, or any window before the write log, is read with)
      const window = (fromMs: number, toMs: number): SampleSpec => ({ kind: 'window', featureId: f, fromMs, toMs, cutoffMs: Date.now() })
      const summary = async (exactRead: boolean): Promise<number> => (await timed(async () => driftSummary(sql, window(T0, T0 + half * H), window(T0 + half * H, T0 + PER_ENTITY * H), quantileFractions(), { exactRead }))).ms
      await summary(true)
      const fastMs: number[] = []
      const exactMs: number[] = []
      for (let i = 0; i < RUNS; i++) { fastMs.push(await summary(false)); exactMs.push(await summary(true)) }

      const nodeMs: number[] = []
      for (let i = 0; i < 3; i++) nodeMs.push((await timed(inNode)).ms)

      // the usual shape of a monitor's data: many entities over weeks (1,000 entities x 1,000
      // hours), a million values again, in another feature; on a hypertable a few large chunks
      // instead of hundreds of small ones
      await load('bench_wide', 'W', WIDE_ENTITIES, WIDE_HOURS)
      const wideMid = new Date(T0 + (WIDE_HOURS / 2) * H).toISOString()
      const wide = { ...payload, feature: 'bench_wide', reference: { from: payload.reference.from, to: wideMid }, current: { from: wideMid, to: new Date(T0 + WIDE_HOURS * H).toISOString() } }
      await post(wide)
      const wideMs: number[] = []
      let wideCount = 0
      for (let i = 0; i < RUNS; i++) { const r = await timed(async () => post(wide)); wideMs.push(r.ms); wideCount = r.value.count }
      await app.close()

      const checkS = median(checkMs) / 1000
      const notes = `${last.count.toLocaleString('en-US')} values, drifted=${last.drifted}, ${db.storageMode} mode, median of ${RUNS} (check) / ${RUNS} (scan) / 3 (Node)`
      const results: BenchResult[] = [
        {
          bench: 'drift', measured: 'drift check, 4 methods, 1,000,000 values', value: checkS, unit: 's',
          reference: 'SELECT count(*), avg() over the same rows', reference_value: median(scanMs) / 1000,
          ratio: checkS / (median(scanMs) / 1000), target: '< 0.5 s', met: checkS < 0.5 && last.count === ENTITIES * PER_ENTITY, notes,
        },
        {
          bench: 'drift', measured: 'drift check, 4 methods, 1,000,000 values', value: checkS, unit: 's',
          reference: 'same statistics in Node after pulling the same point-in-time rows', reference_value: median(nodeMs) / 1000,
          ratio: checkS / (median(nodeMs) / 1000), target: '< 0.5 s and faster than pulling', met: checkS < 0.5 && checkS < median(nodeMs) / 1000,
        },
        {
          bench: 'drift', measured: 'drift check, 4 methods, 1,000,000 values, reference window 29x the current one', value: median(lopsidedMs) / 1000, unit: 's',
          reference: 'the same values in two equal windows', reference_value: checkS,
          ratio: median(lopsidedMs) / 1000 / checkS, target: '< 0.5 s', met: median(lopsidedMs) / 1000 < 0.5, notes: `median of ${RUNS}`,
        },
        {
          bench: 'drift', measured: 'drift check, 4 methods, 1,000,000 values of 1,000 entities over 1,000 hours', value: median(wideMs) / 1000, unit: 's',
          reference: 'the same number of values of 10 entities over 100,000 hours', reference_value: checkS,
          ratio: median(wideMs) / 1000 / checkS, target: '< 0.5 s', met: median(wideMs) / 1000 < 0.5 && wideCount === WIDE_ENTITIES * WIDE_HOURS, notes: `median of ${RUNS}`,
        },
        {
          bench: 'drift', measured: 'drift summary in the database, windows read without the dedupe (write log: no corrections)', value: median(fastMs) / 1000, unit: 's',
          reference: 'same summary, windows read point-in-time (backward walk + DISTINCT ON)', reference_value: median(exactMs) / 1000,
          ratio: median(fastMs) / median(exactMs), target: 'informational (lower is better)', met: true, notes: `median of ${RUNS} each, alternating`,
        },
      ]
      return results
    } finally {
      await db.sql.end({ timeout: 2 })
      await admin.unsafe(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).catch(() => {})
      await admin.end()
    }
  },
}
export default bench
