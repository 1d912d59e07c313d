import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { connect, type Sql } from '../../db/connection.js'
import { openDatabase } from '../../db/bootstrap.js'
import { insertRun } from '../../db/pipeline-runs.js'
import { loadConfig } from '../../src/config.js'
import { buildApp } from '../../src/app.js'
import { startUp } from '../../src/services/startup.js'
import { newRunId } from '../../src/services/pipelines.js'

/*
 * Background runs: 202, progress, the queue, cancellation, and restart recovery with a real
 * process that dies (a child process runs the service, starts a background run and is killed
 * with SIGKILL while the run is being built; the next start marks the run failed with the
 * reason, and leaves alone a run that a live instance is building). Builds are held up
 * deterministically by a lock on feature_snapshots. This file is the child when
 * CHILD_DATABASE_URL is set.
 */
const H = 3_600_000
const T0 = Date.UTC(2023, 5, 1)
const CHILD_URL = process.env.CHILD_DATABASE_URL

if (CHILD_URL) {
  const config = loadConfig({}, { LOAD_DEFAULTS: false, BACKGROUND_JOBS: false, DB_POOL_MAX: 3, PIPELINE_SYNC_MAX_ROWS: 10 })
  const db = await openDatabase(CHILD_URL, config)
  await startUp(db, config, pino({ level: 'silent' }))
  const app = await buildApp({ config, sql: db.sql, storageMode: db.storageMode, databaseUrl: CHILD_URL }, { logger: false, backgroundJobs: false })
  const res = await app.inject({
    method: 'POST',
    url: '/v1/pipeline-runs',
    payload: { name: 'doomed', features: ['close_price'], grid: { entities: ['BTC'], from: new Date(T0).toISOString(), to: new Date(T0 + 23 * H).toISOString(), every: '1m' } },
  })
  process.stdout.write(`${JSON.stringify(res.json())}\n`)
  setInterval(() => {}, 60_000) // lives until killed
} else {
  const { default: t } = await import('tap')
  const { buildTestApp, until: untilHolds } = await import('../lib/helper.js')
  const { insertDefinition, appendValues } = await import('../lib/fixtures.js')
  type TestContext = Awaited<ReturnType<typeof buildTestApp>>
  const iso = (ms: number): string => new Date(ms).toISOString()
  const sha256 = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex')

  /** close_price and volume for BTC and ETH, hourly over a day. */
  const seed = async (sql: Sql): Promise<number> => {
    const price = await insertDefinition(sql, { name: 'close_price' })
    const volume = await insertDefinition(sql, { name: 'volume' })
    const rows = []
    for (let h = 0; h < 24; h++) {
      for (const e of ['BTC', 'ETH']) rows.push({ featureId: price, entityId: e, eventTimeMs: T0 + h * H, num: 100 + h }, { featureId: volume, entityId: e, eventTimeMs: T0 + h * H, num: h })
    }
    await appendValues(sql, rows)
    return price
  }
  const post = (ctx: TestContext, body: Record<string, unknown>) => ctx.app.inject({ method: 'POST', url: '/v1/pipeline-runs', payload: body })

  /** Holds an ACCESS EXCLUSIVE lock on feature_snapshots: builds wait at their first read of values. */
  const holdValueReads = async (url: string): Promise<() => Promise<void>> => {
    const conn = connect(url, { max: 1 })
    let release!: () => void
    const gate = new Promise<void>((resolve) => { release = resolve })
    let locked!: () => void
    const ready = new Promise<void>((resolve) => { locked = resolve })
    const tx = conn.begin(async (tx) => {
      await tx`LOCK TABLE feature_snapshots IN ACCESS EXCLUSIVE MODE`
      locked()
      await gate
    })
    await ready
    return async () => { release(); await tx; await conn.end() }
  }

  const status = async (sql: Sql, id: string): Promise<{ status: string, error: string | null, finished_at: Date | null }> =>
    (await sql<Array<{ status: string, error: string | null, finished_at: Date | null }>>`SELECT status, error, finished_at FROM pipeline_runs WHERE id = ${id}`)[0]

  const until = async (what: () => Promise<boolean>, ms = 20_000): Promise<boolean> => untilHolds(what, ms)

  /** GETs a run until `done` says so (or 30 s pass). */
  const waitFor = async (ctx: TestContext, id: string, done: (run: { status: string }) => boolean) => {
    let run = (await ctx.app.inject({ method: 'GET', url: `/v1/pipeline-runs/${id}` })).json()
    await until(async () => done(run = (await ctx.app.inject({ method: 'GET', url: `/v1/pipeline-runs/${id}` })).json()), 30_000)
    return run
  }

  /** The first two tests share a service that builds every run of more than 10 rows in the background, one at a time. */
  let ctx: TestContext
  t.before(async () => {
    ctx = await buildTestApp(t, { config: { PIPELINE_SYNC_MAX_ROWS: 10, PIPELINE_CONCURRENCY: 1 } })
    await seed(ctx.sql)
  })

  t.test('large runs build in the background: 202, progress, queue, cancel', async (t) => {
    const grid = { entities: ['BTC', 'ETH'], from: iso(T0), to: iso(T0 + 23 * H), every: '1m' } // 2 x 1381 rows
    const release = await holdValueReads(ctx.url)
    let released = false
    t.teardown(async () => { if (!released) await release() })

    const first = await post(ctx, { name: 'big', features: ['close_price', 'volume'], grid })
    t.equal(first.statusCode, 202, "accepted")
    t.match(first.json(), { status: 'queued', progress: { rows_done: 0, rows_total: 2762 } })
    const second = await post(ctx, { name: 'big', features: ['close_price'], grid })
    t.equal(second.statusCode, 202)
    const third = await post(ctx, { name: 'big', features: ['volume'], grid })

    const running = await waitFor(ctx, first.json().id, (r) => r.status === 'running')
    t.match(running, { status: 'running', progress: { rows_total: 2762 } })
    t.equal((await ctx.app.inject({ method: 'GET', url: `/v1/pipeline-runs/${second.json().id}` })).json().status, 'queued', 'one build at a time: the next waits queued')
    const ds = await ctx.app.inject({ method: 'GET', url: `/v1/pipeline-runs/${first.json().id}/dataset` })
    t.equal(ds.statusCode, 409, 'no dataset before the run is built')
    t.match(ds.json().detail, /not built yet/)

    const cancelQueued = await ctx.app.inject({ method: 'PATCH', url: `/v1/pipeline-runs/${second.json().id}`, payload: { status: 'cancelled' } })
    t.match(cancelQueued.json(), { status: 'cancelled', error: 'cancelled by request' })
    const cancelRunning = await ctx.app.inject({ method: 'PATCH', url: `/v1/pipeline-runs/${third.json().id}`, payload: { status: 'succeeded' } })
    t.equal(cancelRunning.statusCode, 409, 'a run being built cannot be declared succeeded')

    released = true
    await release()
    const done = await waitFor(ctx, first.json().id, (r) => r.status !== 'running' && r.status !== 'queued')
    t.match(done, { status: 'succeeded', row_count: 2762, progress: { rows_done: 2762, rows_total: 2762, fraction: 1 }, fingerprint: /^[0-9a-f]{64}$/ })
    t.ok(done.timings.queue_ms >= 0)
    const third2 = await waitFor(ctx, third.json().id, (r) => r.status === 'succeeded')
    t.equal(third2.status, 'succeeded', 'the queue moves on past the cancelled run')
    t.equal((await ctx.app.inject({ method: 'GET', url: `/v1/pipeline-runs/${second.json().id}` })).json().status, 'cancelled', 'a cancelled run stays cancelled')

    const csv = await ctx.app.inject({ method: 'GET', url: `/v1/pipeline-runs/${first.json().id}/dataset?format=csv` })
    t.equal(sha256(csv.body), done.fingerprint)
    t.equal(csv.body.split('\n').length, 2762 + 2)

    const repro = await ctx.app.inject({ method: 'POST', url: `/v1/pipeline-runs/${first.json().id}/reproduce` })
    t.equal(repro.statusCode, 202, 'large reproductions run in the background too')
    const verdict = await waitFor(ctx, repro.json().id, (r) => r.status === 'succeeded' || r.status === 'failed')
    t.match(verdict, { kind: 'reproduction', parent_id: first.json().id, status: 'succeeded', reproduction: { verdict: 'reproducible' } })
  })

  t.test('a running build can be cancelled; its digests are not kept', async (t) => {
    const release = await holdValueReads(ctx.url)
    const res = await post(ctx, { name: 'big', features: ['close_price'], grid: { entities: ['BTC'], from: iso(T0), to: iso(T0 + 23 * H), every: '1m' } })
    const id = res.json().id
    await waitFor(ctx, id, (r) => r.status === 'running')
    const cancelled = await ctx.app.inject({ method: 'PATCH', url: `/v1/pipeline-runs/${id}`, payload: { status: 'cancelled' } })
    t.match(cancelled.json(), { status: 'cancelled' })
    t.ok(cancelled.json().finished_at)
    await release()
    await new Promise((resolve) => setTimeout(resolve, 300))
    t.equal((await ctx.app.inject({ method: 'GET', url: `/v1/pipeline-runs/${id}` })).json().status, 'cancelled')
    t.equal((await ctx.sql`SELECT count(*)::int AS n FROM pipeline_run_digests WHERE run_id = ${id}`)[0].n, 0)
    const repro = await ctx.app.inject({ method: 'POST', url: `/v1/pipeline-runs/${id}/reproduce` })
    t.equal(repro.statusCode, 409, 'nothing to reproduce')
  })


  t.test('a run of a killed service is marked failed at the next start; a live one is left alone', async (t) => {
    const first = await buildTestApp(t)
    const price = await seed(first.sql)

    // a run row left "running" by a process long gone (nobody holds its lock)
    const startedAt = Date.now() - 60_000
    const orphan = await insertRun(first.sql, {
      id: newRunId(startedAt), started_at: new Date(startedAt), parent_id: null, kind: 'run', name: 'orphan', status: 'running',
      features: [{ name: 'close_price', version: 1, id: price }], contract_name: null, contract_version: null, point_in_time: 'event',
      cutoff: new Date(startedAt), entity_spec: { type: 'grid', row_count: 1, grid: {} }, params: {}, model: null, code_version: null, validation_mode: 'fail', row_count: 1,
    })

    const release = await holdValueReads(first.url)
    let released = false
    t.teardown(async () => { if (!released) await release() })

    const env: NodeJS.ProcessEnv = { ...process.env, CHILD_DATABASE_URL: first.url }
    delete env.NODE_OPTIONS
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout }).once('line', resolve)
      child.once('exit', (code) => reject(new Error(`child exited (${code}) before starting its run`)))
    })
    const run = JSON.parse(line) as { id: string, status: string }
    t.match(run.status, /^(queued|running)$/, 'the child answered 202 with its background run')
    t.ok(await until(async () => (await status(first.sql, run.id)).status === 'running'), 'the child is building it')

    // another instance starting now fails the orphan but not the child's live run
    const second = await buildTestApp(t, { url: first.url })
    t.match(await status(second.sql, orphan.id), { status: 'failed', error: /stopped \(restart or crash\)/ })
    t.ok((await status(second.sql, orphan.id)).finished_at)
    t.equal((await status(second.sql, run.id)).status, 'running', 'a run a live instance builds is left alone')

    child.kill('SIGKILL')
    await new Promise((resolve) => child.once('exit', resolve))
    t.ok(await until(async () => (await first.sql`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = 7305005`)[0].n === 0), 'the dead process\'s run locks are gone')

    // the service restarts
    const third = await buildTestApp(t, { url: first.url })
    const after = await third.app.inject({ method: 'GET', url: `/v1/pipeline-runs/${run.id}` })
    t.match(after.json(), { status: 'failed', error: /stopped \(restart or crash\) before it finished/, finished_at: /Z$/ }, 'failed with the reason, not left running')

    released = true
    await release()
    t.equal((await status(third.sql, run.id)).status, 'failed')
  })
}
