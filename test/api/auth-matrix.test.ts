import t from 'tap'
import { randomUUID } from 'node:crypto'
import { buildTestApp } from '../lib/helper.js'

const ADMIN_API_KEY = 'env-admin-key-for-tests-0123456789'

/** POSTs that only read (queries with a body): they must demand `read`, not `write`. */
const READ_ONLY_POSTS = new Set([
  'POST /v1/online',
  'POST /v1/retrieve',
  'POST /v1/training-sets',
  'POST /v1/contracts/{name}/validate',
  'POST /v1/drift/checks',
])
const PUBLIC = new Set(['GET /health', 'GET /ready', 'GET /metrics'])
const ADMIN_PREFIXES = ['/v1/api-keys', '/v1/audit']
/** Admin operations outside those prefixes. */
const ADMIN_OPS = new Set(['POST /v1/drift/write-log/rebuild'])

type Access = 'public' | 'read' | 'write' | 'admin'

/** The policy, independent of the code under test. */
function expectedAccess (method: string, path: string): Access {
  const op = `${method} ${path}`
  if (PUBLIC.has(op)) return 'public'
  if (ADMIN_OPS.has(op) || ADMIN_PREFIXES.some((p) => path === p || path.startsWith(`${p}/`))) return 'admin'
  if (method === 'GET' || method === 'HEAD') return 'read'
  if (READ_ONLY_POSTS.has(op)) return 'read'
  return 'write'
}

function documentedAccess (security: unknown): Access | 'undocumented' {
  if (!Array.isArray(security)) return 'undocumented'
  if (security.length === 0) return 'public'
  const scopes = (security[0] as { bearer?: string[] }).bearer
  return (scopes?.[0] as Access | undefined) ?? 'undocumented'
}

function sampleParam (name: string): string {
  return /id$/.test(name) ? randomUUID() : 'no_such_thing'
}

t.test('every route in the OpenAPI document x no key / read / write / admin key', async (t) => {
  const { app } = await buildTestApp(t, { auth: true, config: { ADMIN_API_KEY } })
  const doc = app.swagger() as { paths: Record<string, Record<string, { security?: unknown }>> }
  const keys = {
    read: (await app.services.apiKeys.create({ name: 'matrix-read', scopes: ['read'] }, null)).key,
    write: (await app.services.apiKeys.create({ name: 'matrix-write', scopes: ['write'] }, null)).key,
    admin: (await app.services.apiKeys.create({ name: 'matrix-admin', scopes: ['admin'] }, null)).key,
  }
  const credentials: Array<{ label: string, key?: string, level: number }> = [
    { label: 'no key', level: 0 },
    { label: 'read key', key: keys.read, level: 1 },
    { label: 'write key', key: keys.write, level: 2 },
    { label: 'admin key', key: keys.admin, level: 3 },
    { label: 'ADMIN_API_KEY', key: ADMIN_API_KEY, level: 3 },
  ]
  const LEVEL: Record<Access, number> = { public: 0, read: 1, write: 2, admin: 3 }
  let operations = 0

  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [m, op] of Object.entries(ops)) {
      const method = m.toUpperCase()
      if (!['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD'].includes(method)) continue
      operations++
      const expected = expectedAccess(method, path)
      t.equal(documentedAccess(op.security), expected, `${method} ${path}: the document says it needs ${expected}`)
      const url = path.replace(/\{([^}]+)\}/g, (_m, name: string) => encodeURIComponent(sampleParam(name)))
      for (const c of credentials) {
        const headers: Record<string, string> = {}
        if (c.key) headers.authorization = `Bearer ${c.key}`
        const hasBody = ['POST', 'PUT', 'PATCH'].includes(method)
        const res = await app.inject({ method: method as 'GET', url, headers: hasBody ? { ...headers, 'content-type': 'application/json' } : headers, ...(hasBody ? { payload: '{}' } : {}) })
        const what = `${method} ${path} with ${c.label} -> ${res.statusCode}`
        if (expected === 'public') {
          t.ok(res.statusCode !== 401 && res.statusCode !== 403, `${what}: public`)
        } else if (c.level === 0) {
          t.equal(res.statusCode, 401, `${what}: 401 without a key`)
          t.match(res.headers['content-type'], /application\/problem\+json/)
          t.equal(res.headers['www-authenticate'], 'Bearer')
        } else if (c.level < LEVEL[expected]) {
          t.equal(res.statusCode, 403, `${what}: 403, needs ${expected}`)
          t.match(res.headers['content-type'], /application\/problem\+json/)
          t.match(res.json(), { status: 403, title: 'Forbidden', detail: new RegExp(`'${expected}' scope`) })
        } else {
          t.ok(res.statusCode !== 401 && res.statusCode !== 403, `${what}: allowed`)
        }
      }
    }
  }
  t.ok(operations >= 5, `${operations} operations checked`)

  for (const url of ['/documentation/json', '/documentation/', '/documentation/static/swagger-initializer.js']) {
    const res = await app.inject({ method: 'GET', url })
    t.equal(res.statusCode, 200, `${url} needs no key`)
  }
})

t.test('bad, revoked and expired keys are 401; the header must be Bearer', async (t) => {
  const { app } = await buildTestApp(t, { auth: true })
  const created = await app.services.apiKeys.create({ name: 'soon-revoked', scopes: ['read'] }, null)
  const get = (authorization?: string): Promise<{ statusCode: number, json: () => { detail: string } }> =>
    app.inject({ method: 'GET', url: '/v1/system', headers: authorization === undefined ? {} : { authorization } })

  t.equal((await get(`Bearer ${created.key}`)).statusCode, 200)
  t.equal((await get(`bearer   ${created.key} `)).statusCode, 200, 'the scheme is case-insensitive')
  for (const bad of [`Basic ${created.key}`, 'Bearer', `Bearer ${created.key}x`, `Bearer ${created.key} extra`, 'Bearer fs_nope', `Bearer ${'a'.repeat(600)}`, '']) {
    const res = await get(bad)
    t.equal(res.statusCode, 401, `Authorization '${bad.slice(0, 40)}' -> 401`)
  }
  t.match((await get()).json().detail, /Authorization: Bearer/)

  await app.services.apiKeys.revoke(created.id)
  const revoked = await get(`Bearer ${created.key}`)
  t.equal(revoked.statusCode, 401, 'a revoked key is refused at once on this instance')
  t.match(revoked.json().detail, /unknown, revoked or expired/)

  const expiring = await app.services.apiKeys.create({ name: 'expiring', scopes: ['read'], expires_at: Date.now() + 1500 }, null)
  t.equal((await get(`Bearer ${expiring.key}`)).statusCode, 200)
  await new Promise((resolve) => setTimeout(resolve, 1600))
  t.equal((await get(`Bearer ${expiring.key}`)).statusCode, 401, 'an expired key is refused, even from the cache')
})

t.test('auth off: every route open, the caller is anonymous', async (t) => {
  const { app } = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/v1/api-keys' })
  t.equal(res.statusCode, 200)
})
