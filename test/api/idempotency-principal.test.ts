import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { buildTestApp } from '../lib/helper.js'
import { insertDefinition } from '../lib/fixtures.js'

/**
 * An Idempotency-Key belongs to the caller that sent it: the same key and body from another API
 * key is another request (written and answered on its own), while each caller still gets its
 * own first answer replayed.
 */
const ADMIN_API_KEY = 'env-admin-key-for-tests-0123456789'
const T0 = Date.UTC(2023, 5, 1, 12)

const { app, sql } = await buildTestApp(t, { auth: true, config: { ADMIN_API_KEY, AUTH_CACHE_SECONDS: 0 } })
await insertDefinition(sql, { name: 'close_price' })
const newKey = async (name: string): Promise<{ id: string, bearer: string }> => {
  const created = await app.services.apiKeys.create({ name, scopes: ['write'] }, null)
  return { id: created.id, bearer: created.key }
}
const alice = await newKey('alice')
const bob = await newKey('bob')

const body = (entity: string, value = 1): string =>
  JSON.stringify({ rows: [{ feature: 'close_price', entity_id: entity, event_time: T0, value }] })
const post = (bearer: string, key: string, payload: string): Promise<LightMyRequestResponse> =>
  app.inject({ method: 'POST', url: '/v1/values', headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json', 'idempotency-key': key }, payload })
const rowsOf = async (entity: string): Promise<number> =>
  (await sql`SELECT count(*)::int AS n FROM feature_snapshots WHERE entity_id = ${entity}`)[0].n as number

t.test('the same key and body from two API keys: two independent requests', async (t) => {
  const a = await post(alice.bearer, 'shared-key', body('P1'))
  t.equal(a.statusCode, 200)
  t.notOk(a.headers['idempotent-replayed'])
  const b = await post(bob.bearer, 'shared-key', body('P1'))
  t.equal(b.statusCode, 200)
  t.notOk(b.headers['idempotent-replayed'], 'not the first caller\'s answer')
  t.equal(await rowsOf('P1'), 2, 'the second request wrote too')

  const aAgain = await post(alice.bearer, 'shared-key', body('P1'))
  t.equal(aAgain.headers['idempotent-replayed'], 'true', 'the first caller still replays')
  t.same(aAgain.json(), a.json())
  const bAgain = await post(bob.bearer, 'shared-key', body('P1'))
  t.equal(bAgain.headers['idempotent-replayed'], 'true', 'the second caller replays its own answer')
  t.same(bAgain.json(), b.json())
  t.equal(await rowsOf('P1'), 2, 'the replays wrote nothing')

  const stored = await sql`SELECT principal FROM idempotency_keys WHERE key = 'shared-key' ORDER BY created_at`
  t.same(stored.map((r) => r.principal), [`key:${alice.id}`, `key:${bob.id}`])
})

t.test('another caller may use a key with another body: no 422', async (t) => {
  t.equal((await post(alice.bearer, 'body-key', body('P2', 1))).statusCode, 200)
  const other = await post(bob.bearer, 'body-key', body('P2', 2))
  t.equal(other.statusCode, 200, 'not a reuse: the key is bob\'s own')
  t.notOk(other.headers['idempotent-replayed'])
  t.equal((await post(alice.bearer, 'body-key', body('P2', 2))).statusCode, 422, 'the owner still gets 422 for another body')
})

t.test('the ADMIN_API_KEY of the environment is a caller of its own', async (t) => {
  const a = await post(alice.bearer, 'admin-key', body('P3'))
  const env = await post(ADMIN_API_KEY, 'admin-key', body('P3'))
  t.equal(env.statusCode, 200)
  t.notOk(env.headers['idempotent-replayed'])
  t.equal(a.statusCode, 200)
  const envAgain = await post(ADMIN_API_KEY, 'admin-key', body('P3'))
  t.equal(envAgain.headers['idempotent-replayed'], 'true')
  t.same(envAgain.json(), env.json())
  t.equal(await rowsOf('P3'), 2)
  t.same((await sql`SELECT principal FROM idempotency_keys WHERE key = 'admin-key' AND principal LIKE 'env:%'`).map((r) => r.principal), ['env:ADMIN_API_KEY'])
})

t.test('concurrent requests from two callers with one key: one write each', async (t) => {
  const payload = body('P4')
  const answers = await Promise.all([alice, bob, alice, bob, alice, bob].map((k) => post(k.bearer, 'race-key', payload)))
  t.same(answers.map((a) => a.statusCode), [200, 200, 200, 200, 200, 200])
  t.equal(answers.filter((a) => a.headers['idempotent-replayed'] !== 'true').length, 2, 'one original answer per caller')
  t.equal(await rowsOf('P4'), 2)
})

t.test('keys stored before keys had owners replay for no one', async (t) => {
  await sql`INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response)
            VALUES ('POST /v1/values', 'legacy-key', 'x', 200, '{"received": 0}'::jsonb)`
  const res = await post(alice.bearer, 'legacy-key', body('P5'))
  t.equal(res.statusCode, 200)
  t.notOk(res.headers['idempotent-replayed'])
  t.equal(await rowsOf('P5'), 1)
})

t.test('with authentication off every caller is one owner: the key replays', async (t) => {
  const open = await buildTestApp(t, { auth: false })
  await insertDefinition(open.sql, { name: 'close_price' })
  const send = (): Promise<LightMyRequestResponse> => open.app.inject({ method: 'POST', url: '/v1/values', headers: { 'content-type': 'application/json', 'idempotency-key': 'open-key' }, payload: body('P6') })
  const first = await send()
  const again = await send()
  t.equal(first.statusCode, 200)
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.same((await open.sql`SELECT principal FROM idempotency_keys WHERE key = 'open-key'`).map((r) => r.principal), ['anonymous'])
})
