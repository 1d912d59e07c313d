import t, { type Test } from 'tap'
import postgres from 'postgres'
import { buildTestApp } from '../lib/helper.js'
import { insertDefinition, appendValues } from '../lib/fixtures.js'
import { buildApp } from '../../src/app.js'
import type { Sql } from '../../db/connection.js'
import { onlyIn } from '../lib/test-server-mode.js'

const HOUR = 3_600_000
const DAY = 24 * HOUR
const T0 = Date.UTC(2023, 0, 1)
const DAYS = 60

interface Statement { conn: number, query: string, params: unknown[] }
interface PlanNode { 'Node Type': string, 'Relation Name'?: string, 'Actual Loops'?: number, Plans?: PlanNode[], [k: string]: unknown }

/**
 * The app on its own connection pool, recording every statement it sends, so the test can
 * replay the exact training-set query of the service under EXPLAIN ANALYZE.
 */
async function tracedApp (t: Test, url: string, config: Parameters<typeof buildApp>[0]['config']) {
  const statements: Statement[] = []
  const sql = postgres(url, {
    max: 3,
    onnotice: () => {},
    types: { int8: { to: 20, from: [20], serialize: (x: number | bigint | string) => String(x), parse: (x: string) => Number(x) } },
    debug: (conn, query, params) => { statements.push({ conn, query, params: params as unknown[] }) },
  }) as unknown as Sql
  const app = await buildApp({ config, sql, storageMode: 'timescaledb', databaseUrl: url }, { logger: false, backgroundJobs: false })
  await app.ready()
  t.teardown(async () => { await app.close(); await sql.end({ timeout: 2 }) })
  return { app, statements }
}

/** Replays the session of the last COPY the app sent and returns the EXPLAIN ANALYZE of its query. */
async function explainLastCopy (sql: Sql, statements: Statement[]): Promise<PlanNode> {
  const copyAt = lastIndex(statements, (s) => /^\s*COPY \(/.test(s.query) && /TO STDOUT/.test(s.query))
  if (copyAt < 0) throw new Error('the training set sent no COPY (...) TO STDOUT statement')
  const copy = statements[copyAt]
  const session = statements.slice(0, copyAt).filter((s) => s.conn === copy.conn)
  const begin = lastIndex(session, (s) => /^\s*BEGIN/i.test(s.query))
  // the session's temporary tables are made before its transaction (and kept by its connection)
  const pairsTable = ['pit_pairs', 'pit_anchor'].flatMap((table) => session.slice(0, begin).filter((s) => s.query.includes(`CREATE TEMP TABLE IF NOT EXISTS ${table}`)).slice(-1))
  const select = copy.query.trim().replace(/^COPY \(/, '').replace(/\)\s*TO STDOUT[\s\S]*$/, '')
  const conn = await sql.reserve()
  try {
    await conn.unsafe('BEGIN')
    for (const s of [...pairsTable, ...session.slice(begin + 1)]) await conn.unsafe(s.query, s.params as never[])
    const [row] = await conn.unsafe(`EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) ${select}`)
    return (row['QUERY PLAN'] as Array<{ Plan: PlanNode }>)[0].Plan
  } finally {
    await conn.unsafe('ROLLBACK').catch(() => {})
    conn.release()
  }
}

function lastIndex<T> (items: T[], test: (item: T) => boolean): number {
  for (let i = items.length - 1; i >= 0; i--) if (test(items[i])) return i
  return -1
}

/** Chunk name -> executed (loops > 0) for every chunk the plan mentions. */
function chunkExecutions (plan: PlanNode): Map<string, boolean> {
  const out = new Map<string, boolean>()
  const walk = (n: PlanNode): void => {
    const rel = n['Relation Name']
    if (rel && /^_hyper_\d+_\d+_chunk$/.test(rel)) out.set(rel, (out.get(rel) ?? false) || (n['Actual Loops'] ?? 0) > 0)
    for (const c of n.Plans ?? []) walk(c)
  }
  walk(plan)
  return out
}

t.test('a bounded training set reads only the chunks of its window, and with bounded reads plans only those', await onlyIn('timescaledb'), async (t) => {
  const { sql, url, config } = await buildTestApp(t, { config: { SNAPSHOT_CHUNK_INTERVAL: '1 day' } })
  // the test decides which chunks are compressed: no background compression meanwhile
  await sql`SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression'`

  const price = await insertDefinition(sql, { name: 'close_price' })
  const volume = await insertDefinition(sql, { name: 'volume' })
  const rows = []
  for (let h = 0; h < DAYS * 24; h++) {
    for (const entityId of ['BTC', 'ETH']) {
      rows.push({ featureId: price, entityId, eventTimeMs: T0 + h * HOUR, num: h })
      rows.push({ featureId: volume, entityId, eventTimeMs: T0 + h * HOUR, num: 2 * h })
    }
  }
  await appendValues(sql, rows)
  // the older half compressed, as the compression policy would leave it
  await sql`SELECT compress_chunk(c) FROM show_chunks('feature_snapshots', older_than => ${new Date(T0 + 30 * DAY)}::timestamptz) c`
  await sql`ANALYZE feature_snapshots`
  const chunks = await sql<{ name: string, start: Date, end: Date, compressed: boolean }[]>`
    SELECT chunk_name::text AS name, range_start AS start, range_end AS end, is_compressed AS compressed
    FROM timescaledb_information.chunks WHERE hypertable_name = 'feature_snapshots'`
  t.ok(chunks.length >= DAYS, `many chunks (${chunks.length})`)
  const range = new Map(chunks.map((c) => [c.name, c]))

  for (const reads of ['bounded', 'direct'] as const) {
    // bounded: the default of TimescaleDB mode (PIT_READS=auto)
    const { app, statements } = await tracedApp(t, url, reads === 'bounded' ? config : { ...config, PIT_READS: 'direct' })
    for (const [label, fromDay] of [[`${reads}, uncompressed`, 40], [`${reads}, compressed`, 10]] as const) {
      const from = T0 + fromDay * DAY
      const to = from + 2 * DAY
      const entityRows = []
      for (let ms = from; ms <= to; ms += 6 * HOUR) for (const entityId of ['BTC', 'ETH']) entityRows.push({ entity_id: entityId, event_time: ms })
      statements.length = 0
      const res = await app.inject({ method: 'POST', url: '/v1/training-sets', payload: { features: ['close_price', 'volume'], entity_rows: entityRows } })
      t.equal(res.statusCode, 200, `${label}: 200`)
      t.equal(res.json().rows[0].close_price, fromDay * 24, `${label}: the answer is right`)

      const executions = chunkExecutions(await explainLastCopy(sql, statements))
      const executed = [...executions].filter(([, ran]) => ran).map(([name]) => range.get(name)!)
      t.ok(executed.length > 0, `${label}: chunks were read`)
      const outside = executed.filter((c) => c.end.getTime() <= from || c.start.getTime() > to)
      t.same(outside.map((c) => `${c.name} ${c.start.toISOString()}`), [], `${label}: no chunk outside the window [${new Date(from).toISOString()}, ${new Date(to).toISOString()}] was read`)
      t.ok(executed.length <= 3, `${label}: only the window's chunks were read (${executed.length} of ${chunks.length})`)
      if (reads === 'bounded') {
        // the window's bounds were constants when the COPY was planned: no other chunk is in the plan
        const planned = [...executions.keys()].map((name) => range.get(name)!)
        t.same(planned.filter((c) => c.end.getTime() <= from || c.start.getTime() > to).map((c) => c.name), [], `${label}: no chunk outside the window was even planned (${planned.length} planned)`)
      } else {
        t.ok(executions.size > 3 * executed.length, `${label}: the direct read plans more chunks (${executions.size}) than it reads`)
      }
      if (fromDay === 10) t.ok(executed.every((c) => c.compressed), `${label}: and they were compressed chunks`)
    }
  }
})
