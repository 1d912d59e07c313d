import t from 'tap'
import { buildTestApp } from '../lib/helper.js'
import { appendValues, insertDefinition } from '../lib/fixtures.js'
import { onlyIn } from '../lib/test-server-mode.js'

/** Series packs are read and built in postgres mode only (TimescaleDB compresses its chunks itself). */
const POSTGRES_ONLY = await onlyIn('postgres')

/** /metrics says where point-in-time pairs were read from, and what this instance's builds did. */
t.test('pit_pairs_read_total counts pairs read from packs and from rows; series_pack_builds_total the builds', POSTGRES_ONLY, async (t) => {
  const { app, sql } = await buildTestApp(t)
  const H = 3_600_000
  const T0 = Date.UTC(2021, 0, 1)
  const x = await insertDefinition(sql, { name: 'x' })
  await appendValues(sql, Array.from({ length: 48 }, (_, i) => ({ featureId: x, entityId: 'A', eventTimeMs: T0 + i * H, num: i })))
  const metric = async (name: string, labels: string): Promise<number> => {
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
    const m = new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(text)
    return m === null ? Number.NaN : Number(m[1])
  }
  const body = { features: ['x'], grid: { entities: ['A'], from: new Date(T0 + H).toISOString(), to: new Date(T0 + 40 * H).toISOString(), every: '1h' } }
  const before = { packs: await metric('pit_pairs_read_total', 'source="packs"'), rows: await metric('pit_pairs_read_total', 'source="rows"') }
  t.equal((await app.inject({ method: 'POST', url: '/v1/training-sets', headers: { accept: 'text/csv' }, payload: body })).statusCode, 200)
  t.equal(await metric('pit_pairs_read_total', 'source="packs"'), before.packs, 'no packs yet')
  t.ok(await metric('pit_pairs_read_total', 'source="rows"') > before.rows, 'read from the rows')

  const run = await app.services.seriesPacks.buildNow()
  t.same(run.features.map((f) => f.action), ['rebuilt'])
  t.equal(await metric('series_pack_builds_total', 'action="rebuilt"'), 1)
  const packsBefore = await metric('pit_pairs_read_total', 'source="packs"')
  t.equal((await app.inject({ method: 'POST', url: '/v1/training-sets', headers: { accept: 'text/csv' }, payload: body })).statusCode, 200)
  t.ok(await metric('pit_pairs_read_total', 'source="packs"') > packsBefore, 'read from the packs')
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
  const last = Number(/^series_pack_last_run_seconds (\S+)$/m.exec(text)?.[1])
  t.ok(Math.abs(last - Date.now() / 1000) < 60, 'the last run: now')
})
