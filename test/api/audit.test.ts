import t from 'tap'
import { buildTestApp } from '../lib/helper.js'

const ADMIN_API_KEY = 'env-admin-key-for-tests-0123456789'
const admin = { authorization: `Bearer ${ADMIN_API_KEY}` }

t.test('every mutation is audited: who, what, when, outcome', async (t) => {
  const { app } = await buildTestApp(t, { auth: true, config: { ADMIN_API_KEY } })
  const before = Date.now()
  const created = (await app.inject({ method: 'POST', url: '/v1/api-keys', headers: admin, payload: { name: 'reader', scopes: ['read'] } })).json()
  const reader = { authorization: `Bearer ${created.key}` }

  // a refused mutation (403) is audited with the key that tried; 401 and reads are not
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/api-keys/${created.id}`, headers: reader })).statusCode, 403)
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/api-keys/${created.id}` })).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url: '/v1/api-keys', headers: admin })).statusCode, 200)
  // a failed mutation (404) is audited with its outcome
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/api-keys/3f0b8f5e-2a4c-4d7e-9b1a-5c6d7e8f9a0b?reason=x%27%3B--', headers: admin })).statusCode, 404)
  await app.services.audit.flush()

  const res = await app.inject({ method: 'GET', url: '/v1/audit', headers: admin })
  t.equal(res.statusCode, 200)
  const items = res.json().items
  t.equal(items.length, 3, 'the create, the refused revoke, the failed revoke')
  const [notFound, refused, create] = items
  t.match(create, { key_id: null, key_name: 'ADMIN_API_KEY', method: 'POST', route: '/v1/api-keys', url: '/v1/api-keys', status: 201 })
  t.same(create.params.detail, { created_key_id: created.id, name: 'reader', scopes: ['read'] }, 'the route adds what it created')
  t.match(refused, { key_id: created.id, key_name: 'reader', method: 'DELETE', route: '/v1/api-keys/:id', status: 403 })
  t.same(refused.params.path, { id: created.id })
  t.match(notFound, { status: 404, key_name: 'ADMIN_API_KEY' })
  t.same(notFound.params.query, { reason: "x';--" }, 'parameters stored verbatim')
  for (const e of items) {
    t.ok(Date.parse(e.at) >= before - 1000 && Date.parse(e.at) <= Date.now() + 1000, 'when')
    t.match(e.request_id, /.+/)
    t.type(e.duration_ms, 'number')
  }
  t.notOk(res.body.includes(created.key), 'the audit log never holds a key')

  // filters
  const q = async (query: string): Promise<Array<{ status: number }>> => {
    const r = await app.inject({ method: 'GET', url: `/v1/audit?${query}`, headers: admin })
    t.equal(r.statusCode, 200, query)
    return r.json().items
  }
  t.equal((await q(`key_id=${created.id}`)).length, 1)
  t.equal((await q('method=POST')).length, 1)
  t.equal((await q('route=/v1/api-keys/:id')).length, 2)
  t.equal((await q('status=404')).length, 1)
  t.equal((await q(`from=${before - 60_000}&to=${Date.now() + 60_000}`)).length, 3)
  t.equal((await q('to=2000-01-01T00:00:00Z')).length, 0)

  // cursor pagination, newest first
  const first = (await app.inject({ method: 'GET', url: '/v1/audit?limit=2', headers: admin })).json()
  t.equal(first.items.length, 2)
  t.ok(first.next_cursor)
  const second = (await app.inject({ method: 'GET', url: `/v1/audit?limit=2&cursor=${first.next_cursor}`, headers: admin })).json()
  t.equal(second.items.length, 1)
  t.equal(second.next_cursor, null)
  t.ok(second.items[0].id < first.items[1].id)

  // bad filters
  for (const bad of ['from=yesterday', 'to=2024-01-01T00:00:00', 'status=abc', 'key_id=nope', 'cursor=!!', 'method=GET', 'limit=5000']) {
    const r = await app.inject({ method: 'GET', url: `/v1/audit?${bad}`, headers: admin })
    t.equal(r.statusCode, 400, bad)
    t.match(r.headers['content-type'], /problem\+json/)
  }

  // admin only
  t.equal((await app.inject({ method: 'GET', url: '/v1/audit', headers: reader })).statusCode, 403)
})

t.test('with auth off, mutations are audited as anonymous', async (t) => {
  const { app } = await buildTestApp(t)
  t.equal((await app.inject({ method: 'POST', url: '/v1/api-keys', payload: { name: 'x', scopes: ['read'] } })).statusCode, 201)
  await app.services.audit.flush()
  const items = (await app.inject({ method: 'GET', url: '/v1/audit' })).json().items
  t.equal(items.length, 1)
  t.match(items[0], { key_id: null, key_name: null, status: 201 })
})

t.test('a mutation whose query holds a NUL character is audited, the NUL shown as U+2400', async (t) => {
  const { app } = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/v1/api-keys?note=a%00b', payload: { name: 'x', scopes: ['read'] } })
  t.equal(res.statusCode, 201)
  await app.services.audit.flush()
  const items = (await app.inject({ method: 'GET', url: '/v1/audit' })).json().items
  t.equal(items.length, 1, 'the entry was written')
  t.match(items[0], { status: 201, url: '/v1/api-keys?note=a%00b', params: { query: { note: 'a\u2400b' } } })
})
